//! The payment provider port: the four operations of a card processor,
//! each with the caller's idempotency key, and what their answers mean.
//!
//! - [`http`]: the adapter, a card processor's REST API over reqwest.
//! - [`simulator`]: a provider to run against (embedded default, tests).

pub mod http;
pub mod simulator;

use std::future::Future;

use serde::{Deserialize, Serialize};

/// Authorize (hold) an amount on a card.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizeRequest {
    /// Minor units.
    pub amount: i64,
    pub currency: String,
    pub card_token: String,
    /// Our payment id, so the provider's records name it.
    pub reference: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureRequest {
    pub amount: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRequest {
    pub amount: i64,
    /// Our refund id.
    pub reference: String,
}

/// What the provider did with a request it executed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderAnswer {
    /// Done; the provider's id of the authorization, capture, refund or void.
    Approved { reference: String },
    /// Refused for good (declined card, nothing left to refund, ...):
    /// `code` is the provider's, `message` a reason fit for the log.
    Refused {
        code: String,
        message: String,
        reference: Option<String>,
    },
}

/// Why no answer came. Transient errors are retried with the same key;
/// a permanent one means the request itself is wrong and is recorded as
/// a refusal.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("the payment provider did not answer, will retry: {0}")]
    Transient(String),
    #[error("the payment provider refused the request: {0}")]
    Permanent(String),
}

impl ProviderError {
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

pub type ProviderResult = Result<ProviderAnswer, ProviderError>;

/// A card processor. Every call carries an idempotency key: the same key
/// must get the same answer and never a second effect.
pub trait PaymentProvider: Send + Sync + 'static {
    fn authorize(
        &self,
        key: &str,
        request: &AuthorizeRequest,
    ) -> impl Future<Output = ProviderResult> + Send;
    fn capture(
        &self,
        key: &str,
        authorization: &str,
        request: &CaptureRequest,
    ) -> impl Future<Output = ProviderResult> + Send;
    fn refund(
        &self,
        key: &str,
        capture: &str,
        request: &RefundRequest,
    ) -> impl Future<Output = ProviderResult> + Send;
    fn void(&self, key: &str, authorization: &str) -> impl Future<Output = ProviderResult> + Send;
}
