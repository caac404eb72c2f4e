//! Command-line interface.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::roles::Role;

#[derive(Debug, Parser)]
#[command(name = "foldline", version, about = "Event-sourced commerce on Kafka")]
pub struct Cli {
    /// A TOML configuration file; FOLDLINE__SECTION__KEY variables override it.
    #[arg(long, global = true, env = "FOLDLINE_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every service in one process on the embedded default (the default command).
    Up,
    /// Run roles against an external broker, registry and store.
    Run {
        /// Roles to run in this process: gateway, registry, and for each
        /// domain `<domain>` (processor and projectors), `<domain>-processor`
        /// or `<domain>-projector`.
        #[arg(required = true, value_parser = parse_role)]
        roles: Vec<Role>,
    },
    /// Create the CQL keyspace and apply pending table migrations
    /// (`store.kind = "scylla"`), under a lock shared with other replicas.
    Migrate,
    /// Show or apply the topic topology.
    Topology {
        #[command(subcommand)]
        action: Option<TopologyAction>,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    text.parse::<Role>().map_err(|error| error.to_string())
}

#[derive(Clone, Copy, Debug, Subcommand)]
pub enum TopologyAction {
    /// Print topics, partitions and configs (the default).
    Print,
    /// Create missing topics through the admin API.
    Apply,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles::DomainPart;

    #[test]
    fn no_arguments_means_up() {
        let cli = Cli::try_parse_from(["foldline"]).unwrap();
        assert!(cli.command.is_none());
    }

    #[test]
    fn roles_parse_and_garbage_is_refused() {
        let cli = Cli::try_parse_from(["foldline", "run", "gateway", "orders-processor"]).unwrap();
        let processor = Role::Domain {
            name: "orders".to_owned(),
            part: DomainPart::Processor,
        };
        assert!(
            matches!(cli.command, Some(Command::Run { ref roles }) if roles == &[Role::Gateway, processor])
        );
        assert!(Cli::try_parse_from(["foldline", "run"]).is_err());
        let error = Cli::try_parse_from(["foldline", "run", "payments-ish"]).unwrap_err();
        assert!(
            error.to_string().contains("unknown role payments-ish"),
            "{error}"
        );
        assert!(Cli::try_parse_from(["foldline", "--bogus"]).is_err());
    }

    #[test]
    fn migrate_takes_no_arguments() {
        let cli = Cli::try_parse_from(["foldline", "migrate"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Migrate)));
        assert!(Cli::try_parse_from(["foldline", "migrate", "now"]).is_err());
    }
}
