//! `foldline`: the one binary. It parses flags, loads configuration once,
//! and hands over to [`foldline::app`]; everything else lives in libraries.

use std::process::ExitCode;

use clap::Parser;

mod app;
mod cli;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(app::main(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The one place a fatal error is reported: the whole chain, once.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
