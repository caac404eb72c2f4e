//! The topology declaration, `topology/topology.toml`, typed.

use std::collections::BTreeMap;

use serde::Deserialize;

const TOPOLOGY_TOML: &str = include_str!("../../../../topology/topology.toml");

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("topology file is invalid: {0}")]
    Invalid(#[from] toml::de::Error),
    #[error("topology declares no domain named {0}")]
    UnknownDomain(String),
    #[error("topology is inconsistent: {0}")]
    Inconsistent(String),
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    pub registry: RegistryTopology,
    pub domains: Vec<DomainTopology>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegistryTopology {
    pub topic: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DomainTopology {
    pub name: String,
    pub partitions: i32,
    pub topics: BTreeMap<TopicKind, TopicSettings>,
    #[serde(default)]
    pub consumer_groups: Vec<ConsumerGroup>,
    #[serde(default)]
    pub subjects: Vec<Subjects>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum TopicKind {
    Commands,
    Events,
    Outcomes,
    Dlq,
    /// Delayed attempts of an external effect (optional): a failed attempt
    /// waits here, off the partition that caused it.
    Retry,
}

impl TopicKind {
    pub fn suffix(&self) -> &'static str {
        match self {
            Self::Commands => "commands",
            Self::Events => "events",
            Self::Outcomes => "outcomes",
            Self::Dlq => "dlq",
            Self::Retry => "retry",
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TopicSettings {
    pub retention_ms: i64,
    pub cleanup_policy: String,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConsumerGroup {
    pub name: String,
    pub kind: GroupKind,
    /// The projection a `projector` group folds into.
    #[serde(default)]
    pub projection: Option<String>,
    pub reads: Vec<String>,
    pub role: String,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GroupKind {
    /// Decides the domain's commands into events and outcomes.
    Processor,
    /// Folds the domain's events into one projection.
    Projector,
    /// Folds one of the domain's events or dead-letter topics into the
    /// analytics read model (`services/analytics`).
    Analytics,
    /// Makes the delayed attempts of the domain's retry topic.
    Retry,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Subjects {
    pub topic: String,
    pub records: Vec<String>,
}

/// A topic to create, with its broker configs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub configs: BTreeMap<String, String>,
}

impl Topology {
    /// The topology compiled into this binary.
    pub fn embedded() -> Result<Self, TopologyError> {
        Self::parse(TOPOLOGY_TOML)
    }

    pub fn parse(text: &str) -> Result<Self, TopologyError> {
        let topology: Topology = toml::from_str(text)?;
        topology.validate()?;
        Ok(topology)
    }

    fn validate(&self) -> Result<(), TopologyError> {
        for domain in &self.domains {
            if domain.partitions < 1 {
                return Err(TopologyError::Inconsistent(format!(
                    "domain {} needs at least one partition",
                    domain.name
                )));
            }
            for kind in [
                TopicKind::Commands,
                TopicKind::Events,
                TopicKind::Outcomes,
                TopicKind::Dlq,
            ] {
                if !domain.topics.contains_key(&kind) {
                    return Err(TopologyError::Inconsistent(format!(
                        "domain {} does not declare its {} topic",
                        domain.name,
                        kind.suffix()
                    )));
                }
            }
            domain.validate_groups(&self.domains)?;
            for subjects in &domain.subjects {
                for record in &subjects.records {
                    if crate::schema::by_full_name(record).is_none() {
                        return Err(TopologyError::Inconsistent(format!(
                            "subject record {record} of {} has no .avsc in schemas/avro",
                            subjects.topic
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    pub fn domain(&self, name: &str) -> Result<&DomainTopology, TopologyError> {
        self.domains
            .iter()
            .find(|domain| domain.name == name)
            .ok_or_else(|| TopologyError::UnknownDomain(name.to_owned()))
    }

    /// Every topic to create, the registry's included.
    pub fn topic_specs(&self) -> Vec<TopicSpec> {
        let mut specs = vec![TopicSpec {
            name: self.registry.topic.clone(),
            partitions: 1,
            configs: BTreeMap::from([("cleanup.policy".to_owned(), "compact".to_owned())]),
        }];
        for domain in &self.domains {
            for (kind, settings) in &domain.topics {
                specs.push(TopicSpec {
                    name: domain.topic(*kind),
                    partitions: domain.partitions,
                    configs: BTreeMap::from([
                        ("retention.ms".to_owned(), settings.retention_ms.to_string()),
                        ("cleanup.policy".to_owned(), settings.cleanup_policy.clone()),
                    ]),
                });
            }
        }
        specs
    }
}

impl DomainTopology {
    pub fn topic(&self, kind: TopicKind) -> String {
        format!("{}.{}", self.name, kind.suffix())
    }

    /// The retention of one of the domain's topics, in milliseconds.
    pub fn retention_ms(&self, kind: TopicKind) -> Option<i64> {
        self.topics.get(&kind).map(|settings| settings.retention_ms)
    }

    /// The domain's command processor group.
    pub fn processor_group(&self) -> Result<&ConsumerGroup, TopologyError> {
        self.consumer_groups
            .iter()
            .find(|group| group.kind == GroupKind::Processor)
            .ok_or_else(|| {
                TopologyError::Inconsistent(format!(
                    "domain {} declares no processor group",
                    self.name
                ))
            })
    }

    /// The domain's retry group, if it declares one.
    pub fn retry_group(&self) -> Option<&ConsumerGroup> {
        self.consumer_groups
            .iter()
            .find(|group| group.kind == GroupKind::Retry)
    }

    /// The projector group of one of the domain's projections.
    pub fn projector_group(&self, projection: &str) -> Result<&ConsumerGroup, TopologyError> {
        self.consumer_groups
            .iter()
            .find(|group| {
                group.kind == GroupKind::Projector
                    && group.projection.as_deref() == Some(projection)
            })
            .ok_or_else(|| {
                TopologyError::Inconsistent(format!(
                    "domain {} declares no projector group for projection {projection}",
                    self.name
                ))
            })
    }

    /// The domain's analytics groups: each folds one of its topics into
    /// the analytics read model.
    pub fn analytics_groups(&self) -> impl Iterator<Item = &ConsumerGroup> + '_ {
        self.consumer_groups
            .iter()
            .filter(|group| group.kind == GroupKind::Analytics)
    }

    /// The events topic a projector group reads: its own domain's, or
    /// (a process manager, a read model of another domain) another
    /// declared domain's.
    pub fn projector_source(&self, group: &ConsumerGroup) -> Option<String> {
        match (group.kind, group.reads.as_slice()) {
            (GroupKind::Projector, [topic]) => Some(topic.clone()),
            _ => None,
        }
    }

    fn validate_groups(&self, domains: &[DomainTopology]) -> Result<(), TopologyError> {
        let inconsistent = |reason: String| Err(TopologyError::Inconsistent(reason));
        let retry_topic = self.topic(TopicKind::Retry);
        let retries_declared = self.topics.contains_key(&TopicKind::Retry);
        let processors = self
            .consumer_groups
            .iter()
            .filter(|group| group.kind == GroupKind::Processor)
            .count();
        if processors != 1 {
            return inconsistent(format!(
                "domain {} declares {processors} processor groups; exactly one is needed",
                self.name
            ));
        }
        let mut projections = std::collections::BTreeSet::new();
        for group in &self.consumer_groups {
            let (expected_topics, projection_allowed) = match group.kind {
                GroupKind::Processor => (vec![self.topic(TopicKind::Commands)], false),
                GroupKind::Projector => (vec![self.topic(TopicKind::Events)], true),
                GroupKind::Analytics => (
                    vec![self.topic(TopicKind::Events), self.topic(TopicKind::Dlq)],
                    true,
                ),
                GroupKind::Retry if !retries_declared => {
                    return inconsistent(format!(
                        "retry group {} of domain {} needs its {retry_topic} topic",
                        group.name, self.name
                    ))
                }
                GroupKind::Retry => (vec![retry_topic.clone()], false),
            };
            let reads_one_expected = match group.reads.as_slice() {
                [topic] => expected_topics.contains(topic),
                _ => false,
            };
            let reads_another_domains_events = group.kind == GroupKind::Projector
                && matches!(group.reads.as_slice(), [topic] if domains
                    .iter()
                    .any(|domain| domain.topic(TopicKind::Events) == *topic));
            if !reads_one_expected && !reads_another_domains_events {
                return inconsistent(format!(
                    "group {} must read exactly one of {}{}",
                    group.name,
                    expected_topics.join(", "),
                    match group.kind {
                        GroupKind::Projector => " or another declared domain's events topic",
                        _ => "",
                    }
                ));
            }
            match (&group.projection, projection_allowed) {
                (Some(_), false) => {
                    return inconsistent(format!(
                        "group {} names a projection; only projector groups do",
                        group.name
                    ))
                }
                (None, true) => {
                    return inconsistent(format!(
                        "projector group {} names no projection",
                        group.name
                    ))
                }
                (Some(projection), true) if !projections.insert(projection.clone()) => {
                    return inconsistent(format!(
                        "projection {projection} of domain {} has two projector groups",
                        self.name
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The same topics under a prefix, so tests and parallel environments
    /// never share a topic.
    pub fn with_prefix(&self, prefix: &str) -> DomainTopology {
        DomainTopology {
            name: format!("{prefix}{}", self.name),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_topology_is_valid_and_co_partitions_commands_with_events() {
        let topology = Topology::embedded().expect("embedded topology parses");
        let orders = topology.domain("orders").expect("orders is declared");
        assert_eq!(orders.topic(TopicKind::Events), "orders.events");
        let specs = topology.topic_specs();
        let partitions_of = |name: &str| {
            specs
                .iter()
                .find(|spec| spec.name == name)
                .map(|spec| spec.partitions)
        };
        assert_eq!(
            partitions_of("orders.commands"),
            partitions_of("orders.events")
        );
        let events = specs
            .iter()
            .find(|spec| spec.name == "orders.events")
            .unwrap();
        assert_eq!(events.configs["retention.ms"], "-1");
        let schemas = specs.iter().find(|spec| spec.name == "_schemas").unwrap();
        assert_eq!(schemas.configs["cleanup.policy"], "compact");
    }

    #[test]
    fn garbage_topology_is_rejected_with_a_reason() {
        assert!(matches!(
            Topology::parse("not toml ["),
            Err(TopologyError::Invalid(_))
        ));
        let zero = TOPOLOGY_TOML.replace("partitions = 6", "partitions = 0");
        assert!(matches!(
            Topology::parse(&zero),
            Err(TopologyError::Inconsistent(_))
        ));
        let unknown_record =
            TOPOLOGY_TOML.replace("foldline.orders.ShipOrder", "foldline.orders.Nope");
        assert!(matches!(
            Topology::parse(&unknown_record),
            Err(TopologyError::Inconsistent(_))
        ));
        let unknown_field = format!("{TOPOLOGY_TOML}\nsurprise = 1\n");
        assert!(Topology::parse(&unknown_field).is_err());
    }

    #[test]
    fn groups_are_found_by_kind_and_projection() {
        let topology = Topology::embedded().expect("embedded topology parses");
        let orders = topology.domain("orders").expect("orders is declared");
        assert_eq!(orders.processor_group().unwrap().name, "orders-processor");
        assert_eq!(
            orders.projector_group("orders").unwrap().name,
            "orders-projector-orders"
        );
        assert!(orders.projector_group("nope").is_err());
        let analytics: Vec<_> = orders
            .analytics_groups()
            .map(|group| group.reads[0].as_str())
            .collect();
        assert_eq!(analytics, ["orders.events", "orders.dlq"]);
    }

    #[test]
    fn inconsistent_groups_are_rejected_with_a_reason() {
        let two_processors =
            TOPOLOGY_TOML.replace(r#"kind = "projector""#, r#"kind = "processor""#);
        let error = Topology::parse(&two_processors).unwrap_err();
        assert!(error.to_string().contains("processor"), "{error}");
        let wrong_topic = TOPOLOGY_TOML.replace(
            r#"reads = ["orders.events"]"#,
            r#"reads = ["orders.commands"]"#,
        );
        assert!(Topology::parse(&wrong_topic).is_err());
        let undeclared_events = TOPOLOGY_TOML.replace(
            r#"reads = ["orders.events"]"#,
            r#"reads = ["nowhere.events"]"#,
        );
        assert!(Topology::parse(&undeclared_events).is_err());
        // Only the orders projection's group: analytics groups must read
        // their own domain's topics.
        let foreign_events = TOPOLOGY_TOML.replacen(
            r#"reads = ["orders.events"]"#,
            r#"reads = ["users.events"]"#,
            1,
        );
        let topology = Topology::parse(&foreign_events).expect("another domain's events");
        let orders = topology.domain("orders").unwrap();
        let group = orders.projector_group("orders").unwrap();
        assert_eq!(
            orders.projector_source(group).as_deref(),
            Some("users.events")
        );
        let unnamed = TOPOLOGY_TOML.replace(r#"projection = "orders""#, "");
        assert!(Topology::parse(&unnamed).is_err());
        let analytics_of_commands = TOPOLOGY_TOML.replace(
            r#"reads = ["orders.dlq"]"#,
            r#"reads = ["orders.commands"]"#,
        );
        assert!(Topology::parse(&analytics_of_commands).is_err());
        let unknown_kind = TOPOLOGY_TOML.replace(r#"kind = "projector""#, r#"kind = "watcher""#);
        assert!(matches!(
            Topology::parse(&unknown_kind),
            Err(TopologyError::Invalid(_))
        ));
    }
}
