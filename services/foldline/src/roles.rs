//! Roles: what one process runs. Derived from the compiled domains, so a
//! new domain brings its roles (`<domain>`, `<domain>-processor`,
//! `<domain>-projector`) with it and this file does not change.

use std::fmt;
use std::str::FromStr;

use foldline_gateway::EdgeDeclaration;
use foldline_platform::store::{migrations, Migration};
use foldline_platform::DomainService;

/// A domain compiled into this binary: how to run it, how to serve it.
#[derive(Clone, Debug)]
pub struct Domain {
    pub service: DomainService,
    pub edge: EdgeDeclaration,
    /// The CQL tables of its projections (`schemas/cql/`).
    pub cql_migrations: &'static [Migration],
}

/// Every domain this binary carries: one line per domain.
pub fn domains() -> Vec<Domain> {
    vec![
        Domain {
            service: foldline_orders::service(),
            edge: foldline_orders::edge(),
            cql_migrations: foldline_orders::CQL_MIGRATIONS,
        },
        Domain {
            service: foldline_users::service(),
            edge: foldline_users::edge(),
            cql_migrations: foldline_users::CQL_MIGRATIONS,
        },
        Domain {
            service: foldline_payments::service(),
            edge: foldline_payments::edge(),
            cql_migrations: foldline_payments::CQL_MIGRATIONS,
        },
    ]
}

/// The CQL schema of this binary: the platform's tables, then every
/// domain's.
pub fn cql_migrations() -> Vec<Migration> {
    let mut all = migrations::PLATFORM.to_vec();
    for domain in domains() {
        all.extend_from_slice(domain.cql_migrations);
    }
    all
}

/// Which part of a domain a role runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainPart {
    /// The processor and every projector.
    All,
    Processor,
    Projectors,
}

const PROVIDER_SIMULATOR: &str = "provider-simulator";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// The HTTP API of every domain.
    Gateway,
    /// The schema registry (Confluent-compatible REST API on `_schemas`).
    Registry,
    /// The payment provider simulator (a card processor's API, for the
    /// embedded default and tests).
    ProviderSimulator,
    Domain {
        name: String,
        part: DomainPart,
    },
}

impl Role {
    /// Whether this role runs `part` of `domain`.
    pub fn runs(&self, domain: &str, part: DomainPart) -> bool {
        match self {
            Role::Domain { name, part: mine } => {
                name == domain && (*mine == DomainPart::All || *mine == part)
            }
            Role::Gateway | Role::Registry | Role::ProviderSimulator => false,
        }
    }

    /// Every role name this binary accepts, for help and errors.
    pub fn names() -> Vec<String> {
        let mut names = vec![
            "gateway".to_owned(),
            "registry".to_owned(),
            PROVIDER_SIMULATOR.to_owned(),
        ];
        for domain in domains() {
            let name = domain.service.name();
            names.push(name.to_owned());
            names.push(format!("{name}-processor"));
            names.push(format!("{name}-projector"));
        }
        names
    }
}

impl fmt::Display for Role {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Gateway => formatter.write_str("gateway"),
            Role::Registry => formatter.write_str("registry"),
            Role::ProviderSimulator => formatter.write_str(PROVIDER_SIMULATOR),
            Role::Domain { name, part } => match part {
                DomainPart::All => formatter.write_str(name),
                DomainPart::Processor => write!(formatter, "{name}-processor"),
                DomainPart::Projectors => write!(formatter, "{name}-projector"),
            },
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown role {given}; roles are: {}", known.join(", "))]
pub struct UnknownRole {
    given: String,
    known: Vec<String>,
}

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(text: &str) -> Result<Role, UnknownRole> {
        match text {
            "gateway" => return Ok(Role::Gateway),
            "registry" => return Ok(Role::Registry),
            PROVIDER_SIMULATOR => return Ok(Role::ProviderSimulator),
            _ => {}
        }
        let (name, part) = match text.rsplit_once('-') {
            Some((name, "processor")) => (name, DomainPart::Processor),
            Some((name, "projector")) => (name, DomainPart::Projectors),
            _ => (text, DomainPart::All),
        };
        if domains().iter().any(|domain| domain.service.name() == name) {
            Ok(Role::Domain {
                name: name.to_owned(),
                part,
            })
        } else {
            Err(UnknownRole {
                given: text.to_owned(),
                known: Role::names(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use foldline_contracts::topology::Topology;

    use super::*;

    #[test]
    fn roles_are_derived_from_the_domains() {
        assert_eq!("gateway".parse(), Ok(Role::Gateway));
        assert_eq!(
            "orders-processor".parse(),
            Ok(Role::Domain {
                name: "orders".to_owned(),
                part: DomainPart::Processor
            })
        );
        let orders: Role = "orders".parse().unwrap();
        assert!(orders.runs("orders", DomainPart::Processor));
        assert!(orders.runs("orders", DomainPart::Projectors));
        let projector: Role = "orders-projector".parse().unwrap();
        assert!(!projector.runs("orders", DomainPart::Processor));
        for name in Role::names() {
            let role: Role = name.parse().unwrap();
            assert_eq!(role.to_string(), name);
        }
    }

    #[test]
    fn garbage_roles_are_refused_with_the_list_of_roles() {
        for garbage in [
            "payments-ish",
            "",
            "orders-",
            "-processor",
            "orders-everything",
        ] {
            let error = garbage.parse::<Role>().unwrap_err();
            assert!(
                error.to_string().contains("orders-processor"),
                "{garbage}: {error}"
            );
        }
    }

    #[test]
    fn every_compiled_domain_is_declared_in_the_topology_and_back() {
        let topology = Topology::embedded().unwrap();
        let compiled = domains();
        for domain in &compiled {
            domain.service.check_against(&topology).unwrap();
            assert_eq!(domain.edge.domain, domain.service.name());
        }
        for declared in &topology.domains {
            assert!(
                compiled
                    .iter()
                    .any(|domain| domain.service.name() == declared.name),
                "topology domain {} has no code",
                declared.name
            );
        }
    }
}
