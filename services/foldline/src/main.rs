//! `foldline`: the one binary. It parses flags and hands over to
//! [`foldline::app::main`]; everything else lives in libraries.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = foldline::cli::Cli::parse();
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
    let result = runtime.block_on(foldline::app::main(cli));
    // Kafka clients still closing on blocking threads (a broker outage can
    // hold them for minutes) must not hold the exit past the drain deadline.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The one place a fatal error is reported: the whole chain, once.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
