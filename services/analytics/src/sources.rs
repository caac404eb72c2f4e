//! The sources analytics folds, read from the topology's `analytics`
//! groups, and the adapter each events topic is folded through.

use std::sync::Arc;

use foldline_contracts::topology::{TopicKind, Topology, TopologyError};
use foldline_platform::projector::{self, Projection, ProjectorOptions};
use foldline_platform::service::{RoleContext, RoleFuture, ServiceError};

use crate::adapters::{NotifyAdapter, OrdersAdapter, PaymentsAdapter, UsersAdapter};
use crate::fold::{dlq_metric, DlqFold, EventsAdapter, EventsFold};

/// Records one projector of a fold reads and writes per batch.
const MAX_BATCH: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// Permanent: the topology asks analytics to fold events it has no
    /// adapter for.
    #[error("analytics has no adapter for the events of domain {0} (add one in services/analytics/src/adapters.rs)")]
    NoAdapter(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    Events,
    DeadLetters,
}

/// One topic analytics folds. Names are the topology's, without the
/// environment's prefix: rows are keyed by them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub domain: String,
    pub kind: SourceKind,
    pub topic: String,
    pub group: String,
    /// Where the fold parks what it cannot read.
    pub dlq: String,
    pub partitions: i32,
}

/// Every source the topology declares, in declaration order.
pub fn sources(topology: &Topology) -> Result<Vec<Source>, AnalyticsError> {
    let mut sources = Vec::new();
    for domain in &topology.domains {
        for group in domain.analytics_groups() {
            let Some(topic) = group.reads.first() else {
                continue;
            };
            let kind = match *topic == domain.topic(TopicKind::Dlq) {
                true => SourceKind::DeadLetters,
                false => SourceKind::Events,
            };
            if kind == SourceKind::Events && adapter(&domain.name).is_none() {
                return Err(AnalyticsError::NoAdapter(domain.name.clone()));
            }
            sources.push(Source {
                domain: domain.name.clone(),
                kind,
                topic: topic.clone(),
                group: group.name.clone(),
                dlq: domain.topic(TopicKind::Dlq),
                partitions: domain.partitions,
            });
        }
    }
    Ok(sources)
}

/// What a route may ask for: every source's partitions and every metric.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Catalog {
    pub sources: Vec<(String, i32)>,
    metrics: Vec<String>,
}

impl Catalog {
    pub fn of(topology: &Topology) -> Result<Catalog, AnalyticsError> {
        let sources = sources(topology)?;
        let mut metrics = Vec::new();
        for source in &sources {
            match source.kind {
                SourceKind::Events => {
                    if let Some(adapter) = adapter(&source.domain) {
                        metrics.extend(adapter.metrics.iter().map(|metric| (*metric).to_owned()));
                    }
                }
                SourceKind::DeadLetters => {
                    let metric = dlq_metric(&source.domain);
                    metrics.push(format!("{metric}.*"));
                    metrics.push(metric);
                }
            }
        }
        Ok(Catalog {
            sources: sources
                .into_iter()
                .map(|source| (source.topic, source.partitions))
                .collect(),
            metrics,
        })
    }

    /// Whether `metric` is one the folds write (a family member's suffix
    /// is a short word: a currency, a cause).
    pub fn knows(&self, metric: &str) -> bool {
        self.metrics
            .iter()
            .any(|known| match known.strip_suffix('*') {
                Some(family) => metric.strip_prefix(family).is_some_and(|member| {
                    (1..=32).contains(&member.len())
                        && member
                            .bytes()
                            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
                }),
                None => known == metric,
            })
    }

    pub fn metrics(&self) -> &[String] {
        &self.metrics
    }
}

/// An events adapter, runnable.
#[derive(Clone, Copy)]
struct AdapterEntry {
    metrics: &'static [&'static str],
    run: fn(Source, RoleContext) -> RoleFuture,
}

fn entry<A: EventsAdapter + Default>() -> (&'static str, AdapterEntry) {
    (
        A::DOMAIN,
        AdapterEntry {
            metrics: A::METRICS,
            run: |source, context| {
                let fold = EventsFold::new(source.topic.clone(), A::default());
                Box::pin(run_fold(fold, source, context))
            },
        },
    )
}

/// The events adapter of `domain`: one line per domain.
fn adapter(domain: &str) -> Option<AdapterEntry> {
    [
        entry::<OrdersAdapter>(),
        entry::<UsersAdapter>(),
        entry::<PaymentsAdapter>(),
        entry::<NotifyAdapter>(),
    ]
    .into_iter()
    .find(|(name, _)| *name == domain)
    .map(|(_, entry)| entry)
}

/// One projector per source, each named by its group, ready to spawn.
pub fn folds(context: &RoleContext) -> Result<Vec<(String, RoleFuture)>, AnalyticsError> {
    let mut folds = Vec::new();
    for source in sources(&context.topology)? {
        let name = source.group.clone();
        let future = match source.kind {
            SourceKind::Events => {
                let adapter = adapter(&source.domain)
                    .ok_or_else(|| AnalyticsError::NoAdapter(source.domain.clone()))?;
                (adapter.run)(source, context.clone())
            }
            SourceKind::DeadLetters => {
                let fold = DlqFold::new(source.topic.clone(), source.domain.clone());
                Box::pin(run_fold(fold, source, context.clone())) as RoleFuture
            }
        };
        folds.push((name, future));
    }
    Ok(folds)
}

async fn run_fold<P: Projection>(
    fold: P,
    source: Source,
    context: RoleContext,
) -> Result<(), ServiceError> {
    let config = &context.config;
    let options = ProjectorOptions {
        name: config.prefixed(&source.group),
        client_id: format!("foldline-{}", source.group),
        topic: config.prefixed(&source.topic),
        dlq: config.prefixed(&source.dlq),
        max_batch: MAX_BATCH,
    };
    // Nothing waits on analytics' progress: its figures are read as they are.
    let (handle, _progress) = projector::watermarks();
    projector::run(
        Arc::new(fold),
        options,
        &config.kafka,
        context.codec,
        context.store,
        handle,
        context.shutdown,
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_topology_declares_an_events_and_a_dlq_fold_per_domain() {
        let topology = Topology::embedded().unwrap();
        let sources = sources(&topology).unwrap();
        let topics: Vec<_> = sources.iter().map(|source| source.topic.as_str()).collect();
        assert_eq!(
            topics,
            [
                "orders.events",
                "orders.dlq",
                "users.events",
                "users.dlq",
                "payments.events",
                "payments.dlq",
                "notify.events",
                "notify.dlq"
            ]
        );
        assert_eq!(sources[1].kind, SourceKind::DeadLetters);
        assert_eq!(sources[0].group, "orders-analytics-events");
    }

    #[test]
    fn the_catalog_knows_metrics_and_families_and_nothing_else() {
        let catalog = Catalog::of(&Topology::embedded().unwrap()).unwrap();
        for known in [
            "orders.placed",
            "orders.revenue.EUR",
            "orders.order_to_payment_ms",
            "users.erased",
            "dlq.orders",
            "dlq.users.poison",
            "payments.declined.card_declined",
            "payments.request_to_outcome_ms",
            "notify.sent",
            "notify.sent.sms.primary",
            "notify.failovers.sms.sms_sink",
            "notify.order_notices_sent.order_confirmed",
            "notify.order_to_notification_ms",
        ] {
            assert!(catalog.knows(known), "{known}");
        }
        for unknown in [
            "",
            "orders",
            "orders.revenue.",
            "orders.revenue.EUR.x",
            "orders.revenue.€",
            "payments.approved",
            "notify.sent.sms",
            "notify.sent.pager.primary",
        ] {
            assert!(!catalog.knows(unknown), "{unknown}");
        }
    }

    #[test]
    fn events_without_an_adapter_are_refused_at_start() {
        let text = include_str!("../../../topology/topology.toml").replace(
            r#"name = "users"
"#,
            r#"name = "ledger"
"#,
        );
        let text = text
            .replace("users.", "ledger.")
            .replace("users-", "ledger-")
            .replace("foldline.ledger.", "foldline.users.");
        let topology = Topology::parse(&text).unwrap();
        assert!(matches!(
            sources(&topology),
            Err(AnalyticsError::NoAdapter(domain)) if domain == "ledger"
        ));
    }
}
