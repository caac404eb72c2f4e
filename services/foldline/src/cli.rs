//! Command-line interface.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "foldline", version, about = "Event-sourced commerce on Kafka")]
pub(crate) struct Cli {
    /// A TOML configuration file; FOLDLINE__SECTION__KEY variables override it.
    #[arg(long, global = true, env = "FOLDLINE_CONFIG")]
    pub(crate) config: Option<PathBuf>,

    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Every service in one process on the embedded default (the default command).
    Up,
    /// Run roles against an external broker, registry and store.
    Run {
        /// Roles to run in this process.
        #[arg(required = true, value_enum)]
        roles: Vec<Role>,
    },
    /// Show or apply the topic topology.
    Topology {
        #[command(subcommand)]
        action: Option<TopologyAction>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Role {
    /// The HTTP API.
    Gateway,
    /// The schema registry (Confluent-compatible REST API on `_schemas`).
    Registry,
    /// The orders command processor and projector.
    Orders,
    /// Only the orders command processor.
    OrdersProcessor,
    /// Only the orders projector.
    OrdersProjector,
}

#[derive(Clone, Copy, Debug, Subcommand)]
pub(crate) enum TopologyAction {
    /// Print topics, partitions and configs (the default).
    Print,
    /// Create missing topics through the admin API.
    Apply,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_arguments_means_up() {
        let cli = Cli::try_parse_from(["foldline"]).unwrap();
        assert!(cli.command.is_none());
    }

    #[test]
    fn roles_parse_and_garbage_is_refused() {
        let cli = Cli::try_parse_from(["foldline", "run", "gateway", "orders-processor"]).unwrap();
        assert!(
            matches!(cli.command, Some(Command::Run { ref roles }) if roles == &[Role::Gateway, Role::OrdersProcessor])
        );
        assert!(Cli::try_parse_from(["foldline", "run"]).is_err());
        assert!(Cli::try_parse_from(["foldline", "run", "payments-ish"]).is_err());
        assert!(Cli::try_parse_from(["foldline", "--bogus"]).is_err());
    }
}
