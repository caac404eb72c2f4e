//! The `[payments]` section: how the provider worker reaches the payment
//! provider, and how the provider simulator behaves.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, Secret};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentsConfig {
    pub provider: ProviderClientConfig,
    pub simulator: ProviderSimulatorConfig,
}

/// The payment provider as the provider worker calls it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderClientConfig {
    /// Base URL of the provider's API (`http://` or `https://`). The
    /// embedded default points it at its own simulator.
    pub url: String,
    /// Sent as a bearer token; never logged.
    pub api_key: Secret,
    /// One request's time limit; a request that takes longer is retried
    /// with the same idempotency key.
    pub request_timeout_ms: u64,
    /// Backoff between retries of a failed request: from the first delay,
    /// doubling, up to the max (with jitter).
    pub retry_first_delay_ms: u64,
    pub retry_max_delay_ms: u64,
    /// How long after a payment was requested an authorization may take:
    /// with no answer by then the payment is declined (`deadline_exceeded`).
    pub authorization_deadline_ms: u64,
}

impl Default for ProviderClientConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8090".to_owned(),
            api_key: Secret::new("sk_test_foldline_simulator"),
            request_timeout_ms: 2_000,
            retry_first_delay_ms: 50,
            retry_max_delay_ms: 2_000,
            authorization_deadline_ms: 30_000,
        }
    }
}

/// When the simulator refuses every request: `after_ms` from its start,
/// for `for_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutageWindow {
    pub after_ms: u64,
    pub for_ms: u64,
}

/// The provider simulator (`foldline run provider-simulator`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderSimulatorConfig {
    pub listen: SocketAddr,
    /// Added to every request before it is answered.
    pub latency_ms: u64,
    /// Share of requests (0 to 1) refused with 503 before they execute
    /// (nothing is stored under their key).
    pub error_rate: f64,
    /// Share of requests (0 to 1) that execute but whose answer is lost
    /// (504): the client must retry with the same key and gets the stored
    /// answer.
    pub lost_answer_rate: f64,
    /// After an answer is lost, every request with its idempotency key is
    /// refused with 503 for this long (the provider executed, then could
    /// not be reached), so a client whose deadline falls in that window
    /// gives up without the answer. 0: a retry gets the answer at once.
    pub unreachable_after_lost_answer_ms: u64,
    /// Seeds the draws of both rates, so a run can be repeated.
    pub seed: u64,
    /// Card tokens the issuer declines (`card_declined`).
    pub decline_card_tokens: Vec<String>,
    /// Authorizations above this many minor units are declined
    /// (`insufficient_funds`); unset, none is.
    pub decline_amount_above: Option<i64>,
    pub outages: Vec<OutageWindow>,
}

impl Default for ProviderSimulatorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8090)),
            latency_ms: 0,
            error_rate: 0.0,
            lost_answer_rate: 0.0,
            unreachable_after_lost_answer_ms: 0,
            seed: 1,
            decline_card_tokens: vec!["tok_chargeDeclined".to_owned()],
            decline_amount_above: Some(1_000_000),
            outages: Vec::new(),
        }
    }
}

impl PaymentsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        let provider = &self.provider;
        if !(provider.url.starts_with("http://") || provider.url.starts_with("https://"))
            || provider.url.len() <= "https://".len()
        {
            return invalid(format!(
                "payments.provider.url {:?} must be an http:// or https:// URL",
                provider.url
            ));
        }
        for (name, value) in [
            ("request_timeout_ms", provider.request_timeout_ms),
            ("retry_first_delay_ms", provider.retry_first_delay_ms),
            ("retry_max_delay_ms", provider.retry_max_delay_ms),
            (
                "authorization_deadline_ms",
                provider.authorization_deadline_ms,
            ),
        ] {
            if value == 0 {
                return invalid(format!("payments.provider.{name} must be at least 1"));
            }
        }
        if provider.retry_max_delay_ms < provider.retry_first_delay_ms {
            return invalid(
                "payments.provider.retry_max_delay_ms must be at least retry_first_delay_ms"
                    .to_owned(),
            );
        }
        let simulator = &self.simulator;
        for (name, rate) in [
            ("error_rate", simulator.error_rate),
            ("lost_answer_rate", simulator.lost_answer_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return invalid(format!(
                    "payments.simulator.{name} must be between 0 and 1, not {rate}"
                ));
            }
        }
        if simulator
            .decline_amount_above
            .is_some_and(|amount| amount < 0)
        {
            return invalid(
                "payments.simulator.decline_amount_above must not be negative".to_owned(),
            );
        }
        if simulator
            .decline_card_tokens
            .iter()
            .any(|token| token.is_empty())
        {
            return invalid(
                "payments.simulator.decline_card_tokens must not hold an empty token".to_owned(),
            );
        }
        if simulator.outages.iter().any(|outage| outage.for_ms == 0) {
            return invalid(
                "payments.simulator.outages: every window's for_ms must be at least 1".to_owned(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, String> {
        Config::load(
            None,
            pairs
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned())),
        )
        .map_err(|error| error.to_string())
    }

    #[test]
    fn the_defaults_are_valid_and_the_api_key_is_never_printed() {
        let config = load(&[]).unwrap();
        assert_eq!(config.payments.provider.request_timeout_ms, 2_000);
        assert!(!format!("{config:?}").contains("sk_test_foldline_simulator"));
    }

    #[test]
    fn every_payments_key_can_be_set_from_the_environment() {
        let config = load(&[
            ("FOLDLINE__PAYMENTS__PROVIDER__URL", "http://127.0.0.1:9"),
            (
                "FOLDLINE__PAYMENTS__PROVIDER__AUTHORIZATION_DEADLINE_MS",
                "1500",
            ),
            ("FOLDLINE__PAYMENTS__SIMULATOR__ERROR_RATE", "0.25"),
            ("FOLDLINE__PAYMENTS__SIMULATOR__LATENCY_MS", "7"),
            (
                "FOLDLINE__PAYMENTS__SIMULATOR__UNREACHABLE_AFTER_LOST_ANSWER_MS",
                "2500",
            ),
            (
                "FOLDLINE__PAYMENTS__SIMULATOR__DECLINE_CARD_TOKENS",
                "[\"tok_a\", \"tok_b\"]",
            ),
            ("FOLDLINE__PAYMENTS__SIMULATOR__DECLINE_AMOUNT_ABOVE", "500"),
            (
                "FOLDLINE__PAYMENTS__SIMULATOR__OUTAGES",
                "[{after_ms = 0, for_ms = 3000}]",
            ),
        ])
        .unwrap();
        let payments = &config.payments;
        assert_eq!(payments.provider.url, "http://127.0.0.1:9");
        assert_eq!(payments.provider.authorization_deadline_ms, 1_500);
        assert_eq!(payments.simulator.error_rate, 0.25);
        assert_eq!(payments.simulator.latency_ms, 7);
        assert_eq!(payments.simulator.unreachable_after_lost_answer_ms, 2_500);
        assert_eq!(payments.simulator.decline_card_tokens, ["tok_a", "tok_b"]);
        assert_eq!(payments.simulator.decline_amount_above, Some(500));
        assert_eq!(payments.simulator.outages.len(), 1);
        assert_eq!(payments.simulator.outages[0].for_ms, 3_000);
    }

    #[test]
    fn garbage_payments_values_are_refused_with_their_key() {
        for (key, value, expected) in [
            (
                "FOLDLINE__PAYMENTS__PROVIDER__URL",
                "ftp://x",
                "payments.provider.url",
            ),
            (
                "FOLDLINE__PAYMENTS__PROVIDER__URL",
                "http://",
                "payments.provider.url",
            ),
            (
                "FOLDLINE__PAYMENTS__PROVIDER__REQUEST_TIMEOUT_MS",
                "0",
                "payments.provider.request_timeout_ms",
            ),
            (
                "FOLDLINE__PAYMENTS__PROVIDER__AUTHORIZATION_DEADLINE_MS",
                "0",
                "payments.provider.authorization_deadline_ms",
            ),
            (
                "FOLDLINE__PAYMENTS__PROVIDER__RETRY_MAX_DELAY_MS",
                "1",
                "retry_max_delay_ms",
            ),
            (
                "FOLDLINE__PAYMENTS__PROVIDER__REQUEST_TIMEOUT_MS",
                "soon",
                "request_timeout_ms",
            ),
            (
                "FOLDLINE__PAYMENTS__SIMULATOR__ERROR_RATE",
                "1.5",
                "payments.simulator.error_rate",
            ),
            (
                "FOLDLINE__PAYMENTS__SIMULATOR__LOST_ANSWER_RATE",
                "-0.1",
                "payments.simulator.lost_answer_rate",
            ),
            (
                "FOLDLINE__PAYMENTS__SIMULATOR__DECLINE_AMOUNT_ABOVE",
                "-5",
                "decline_amount_above",
            ),
            ("FOLDLINE__PAYMENTS__SIMULATOR__LISTEN", "nowhere", "listen"),
            (
                "FOLDLINE__PAYMENTS__SIMULATOR__UNREACHABLE_AFTER_LOST_ANSWER_MS",
                "-1",
                "unreachable_after_lost_answer_ms",
            ),
            (
                "FOLDLINE__PAYMENTS__SIMULATOR__OUTAGES",
                "[{after_ms = 0, for_ms = 0}]",
                "outages",
            ),
            ("FOLDLINE__PAYMENTS__SIMULATOR__SURPRISE", "1", "surprise"),
        ] {
            let error = load(&[(key, value)]).unwrap_err();
            assert!(error.contains(expected), "{key}={value}: {error}");
        }
    }
}
