//! Providers: each channel's ordered chain, from typed config, and the
//! adapters that hand a notification to one provider.
//!
//! An HTTP provider is a provider API at a base url: `POST {url}/v1/messages`
//! with the message as JSON and `Idempotency-Key: <notification id>`, so a
//! provider that honours the key accepts a repeated call once. The local
//! sink (`sink`) writes the message to the store's `notification_sink`
//! table, keyed by recipient and notification id (a repeat overwrites the
//! same row), which `GET /v1/notifications/sink?recipient=…` reads back.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use foldline_platform::breaker::BreakerPolicyError;
use foldline_platform::config::NotifyConfig;
use foldline_platform::store::{RowKey, Store, StoredRow};
use serde::{Deserialize, Serialize};

use crate::domain::{Channel, NotificationId, Parameters, ProviderName, Recipient, Template};

pub const NOTIFICATION_SINK: &str = "notification_sink";
/// The header an HTTP provider de-duplicates by, where it does.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A configured provider chain that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChainError {
    #[error("notify.{channel}_providers names no provider")]
    Empty { channel: &'static str },
    #[error("notify.{channel}_providers entry {entry:?} is not name=target")]
    Malformed {
        channel: &'static str,
        entry: String,
    },
    #[error("notify.{channel}_providers provider name {name:?} is invalid: {reason}")]
    BadName {
        channel: &'static str,
        name: String,
        reason: String,
    },
    #[error("notify.{channel}_providers names {name} twice")]
    Duplicate { channel: &'static str, name: String },
    #[error("notify.{channel}_providers target of {name} must be sink or an http(s) url")]
    BadTarget { channel: &'static str, name: String },
    #[error("notify.{0} is out of range")]
    OutOfRange(&'static str),
    #[error("notify.breaker_*: {0}")]
    Breaker(#[from] BreakerPolicyError),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Http { base_url: String },
    Sink,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderSpec {
    pub name: ProviderName,
    pub target: Target,
}

/// Every channel's chain, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chains(pub BTreeMap<Channel, Vec<ProviderSpec>>);

fn chain_text(config: &NotifyConfig, channel: Channel) -> &str {
    match channel {
        Channel::Email => &config.email_providers,
        Channel::Sms => &config.sms_providers,
        Channel::Webhook => &config.webhook_providers,
    }
}

pub fn parse_chain(channel: Channel, text: &str) -> Result<Vec<ProviderSpec>, ChainError> {
    let channel_name = channel.as_str();
    let mut chain: Vec<ProviderSpec> = Vec::new();
    for entry in text
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
    {
        let (name, target) = entry.split_once('=').ok_or_else(|| ChainError::Malformed {
            channel: channel_name,
            entry: entry.to_owned(),
        })?;
        let name = ProviderName::parse(name).map_err(|error| ChainError::BadName {
            channel: channel_name,
            name: name.to_owned(),
            reason: error.to_string(),
        })?;
        let target = match target.trim() {
            "sink" => Target::Sink,
            url if (url.starts_with("http://") || url.starts_with("https://"))
                && reqwest::Url::parse(url).is_ok() =>
            {
                Target::Http {
                    base_url: url.trim_end_matches('/').to_owned(),
                }
            }
            _ => {
                return Err(ChainError::BadTarget {
                    channel: channel_name,
                    name: name.to_string(),
                })
            }
        };
        if chain.iter().any(|known| known.name == name) {
            return Err(ChainError::Duplicate {
                channel: channel_name,
                name: name.to_string(),
            });
        }
        chain.push(ProviderSpec { name, target });
    }
    match chain.is_empty() {
        true => Err(ChainError::Empty {
            channel: channel_name,
        }),
        false => Ok(chain),
    }
}

impl Chains {
    pub fn from_config(config: &NotifyConfig) -> Result<Chains, ChainError> {
        let in_range = |ok: bool, key: &'static str| match ok {
            true => Ok(()),
            false => Err(ChainError::OutOfRange(key)),
        };
        in_range(config.provider_timeout_ms >= 1, "provider_timeout_ms")?;
        if let Some((key, _)) = config.out_of_range() {
            return Err(ChainError::OutOfRange(key));
        }
        config.breaker_policy().validate()?;
        in_range(config.max_attempts >= 1, "max_attempts")?;
        in_range(
            config.retry_backoff_ms <= config.retry_backoff_max_ms,
            "retry_backoff_ms",
        )?;
        Channel::ALL
            .into_iter()
            .map(|channel| Ok((channel, parse_chain(channel, chain_text(config, channel))?)))
            .collect::<Result<_, _>>()
            .map(Chains)
    }
}

/// What is handed to a provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub notification_id: NotificationId,
    pub channel: Channel,
    pub recipient: Recipient,
    pub template: Template,
    pub parameters: Parameters,
}

/// Why a provider did not take a message.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ProviderError {
    /// Down, slow, overloaded (connect error, timeout, 5xx, 408, 429):
    /// another provider or a later attempt may succeed. Counts against the
    /// provider's breaker.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// The provider refused the message itself (any other 4xx): no provider
    /// and no retry will take it. Does not count against the breaker.
    #[error("provider refused the message: {0}")]
    Refused(String),
}

impl ProviderError {
    pub fn counts_against_breaker(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub message_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AcceptedBody {
    #[serde(default)]
    message_id: Option<String>,
}

/// `notification_sink` row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkRow {
    pub provider: ProviderName,
    pub message: Message,
    pub accepted_at: i64,
}

pub fn sink_key(recipient: &str, notification_id: &NotificationId) -> RowKey {
    RowKey::new(
        NOTIFICATION_SINK,
        recipient.as_bytes().to_vec(),
        notification_id.as_uuid().as_bytes().to_vec(),
    )
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// One provider's adapter.
#[derive(Clone, Debug)]
pub enum Adapter {
    Http {
        client: reqwest::Client,
        messages_url: String,
    },
    Sink {
        store: Store,
    },
}

impl Adapter {
    pub fn new(target: &Target, timeout: Duration, store: &Store) -> Result<Adapter, String> {
        Ok(match target {
            Target::Http { base_url } => Adapter::Http {
                client: reqwest::Client::builder()
                    .timeout(timeout)
                    .build()
                    .map_err(|error| error.to_string())?,
                messages_url: format!("{base_url}/v1/messages"),
            },
            Target::Sink => Adapter::Sink {
                store: store.clone(),
            },
        })
    }

    pub async fn send(
        &self,
        provider: &ProviderName,
        message: &Message,
    ) -> Result<Accepted, ProviderError> {
        match self {
            Adapter::Http {
                client,
                messages_url,
            } => {
                let response = client
                    .post(messages_url)
                    .header(IDEMPOTENCY_KEY, message.notification_id.to_string())
                    .json(message)
                    .send()
                    .await
                    .map_err(|error| {
                        ProviderError::Unavailable(match error.is_timeout() {
                            true => "timed out".to_owned(),
                            false => "cannot be reached".to_owned(),
                        })
                    })?;
                let status = response.status();
                if status.is_success() {
                    // A body we cannot read is still an acceptance.
                    let body = response.json::<AcceptedBody>().await.ok();
                    return Ok(Accepted {
                        message_id: body.and_then(|body| body.message_id),
                    });
                }
                let reason = format!("answered {}", status.as_u16());
                match status.is_server_error() || matches!(status.as_u16(), 408 | 429) {
                    true => Err(ProviderError::Unavailable(reason)),
                    false => Err(ProviderError::Refused(reason)),
                }
            }
            Adapter::Sink { store } => {
                let row = SinkRow {
                    provider: provider.clone(),
                    message: message.clone(),
                    accepted_at: now_millis(),
                };
                let value = serde_json::to_vec(&row)
                    .map_err(|error| ProviderError::Refused(error.to_string()))?;
                store
                    .put(
                        sink_key(message.recipient.as_str(), &message.notification_id),
                        StoredRow { position: 0, value },
                    )
                    .await
                    .map_err(|error| match error.is_transient() {
                        true => ProviderError::Unavailable(error.to_string()),
                        false => ProviderError::Refused(error.to_string()),
                    })?;
                Ok(Accepted {
                    message_id: Some(message.notification_id.to_string()),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chains_parse_in_order_and_bad_ones_say_why() {
        let chain = parse_chain(
            Channel::Sms,
            "primary=http://127.0.0.1:9000/, backup=https://sms.example.org,local=sink",
        )
        .unwrap();
        let names: Vec<_> = chain.iter().map(|spec| spec.name.as_str()).collect();
        assert_eq!(names, ["primary", "backup", "local"]);
        assert_eq!(
            chain[0].target,
            Target::Http {
                base_url: "http://127.0.0.1:9000".to_owned()
            }
        );
        assert_eq!(chain[2].target, Target::Sink);
        assert_eq!(
            parse_chain(Channel::Sms, " "),
            Err(ChainError::Empty { channel: "sms" })
        );
        assert!(matches!(
            parse_chain(Channel::Sms, "primary"),
            Err(ChainError::Malformed { .. })
        ));
        assert!(matches!(
            parse_chain(Channel::Sms, "a=sink,a=sink"),
            Err(ChainError::Duplicate { .. })
        ));
        assert!(matches!(
            parse_chain(Channel::Email, "a=ftp://x"),
            Err(ChainError::BadTarget { .. })
        ));
        assert!(matches!(
            parse_chain(Channel::Email, "Bad Name=sink"),
            Err(ChainError::BadName { .. })
        ));
    }

    #[test]
    fn the_default_config_is_a_sink_per_channel_and_ranges_are_checked() {
        let chains = Chains::from_config(&NotifyConfig::default()).unwrap();
        for channel in Channel::ALL {
            assert_eq!(chains.0[&channel][0].target, Target::Sink);
        }
        let garbage = [
            (
                NotifyConfig {
                    breaker_error_rate: 0.0,
                    ..NotifyConfig::default()
                },
                ChainError::Breaker(BreakerPolicyError::RateOutOfRange),
            ),
            (
                NotifyConfig {
                    breaker_error_rate: f64::NAN,
                    ..NotifyConfig::default()
                },
                ChainError::Breaker(BreakerPolicyError::RateOutOfRange),
            ),
            (
                NotifyConfig {
                    breaker_consecutive_failures: 0,
                    ..NotifyConfig::default()
                },
                ChainError::Breaker(BreakerPolicyError::NoFailures),
            ),
            (
                NotifyConfig {
                    breaker_min_calls: 0,
                    ..NotifyConfig::default()
                },
                ChainError::Breaker(BreakerPolicyError::NoMinCalls),
            ),
            (
                NotifyConfig {
                    breaker_window_secs: 0,
                    ..NotifyConfig::default()
                },
                ChainError::Breaker(BreakerPolicyError::WindowTooShort),
            ),
            (
                NotifyConfig {
                    breaker_open_wait_ms: 0,
                    ..NotifyConfig::default()
                },
                ChainError::Breaker(BreakerPolicyError::NoOpenWait),
            ),
            (
                NotifyConfig {
                    provider_timeout_ms: 0,
                    ..NotifyConfig::default()
                },
                ChainError::OutOfRange("provider_timeout_ms"),
            ),
            (
                NotifyConfig {
                    breaker_slow_call_ms: 0,
                    ..NotifyConfig::default()
                },
                ChainError::OutOfRange("breaker_slow_call_ms"),
            ),
            (
                NotifyConfig {
                    in_flight_per_channel: 0,
                    ..NotifyConfig::default()
                },
                ChainError::OutOfRange("in_flight_per_channel"),
            ),
        ];
        for (config, expected) in garbage {
            assert_eq!(Chains::from_config(&config), Err(expected));
        }
    }
}
