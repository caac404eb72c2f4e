//! The HTTP adapter of [`PaymentProvider`]: a card processor's REST API.
//!
//! ```text
//! POST /v1/authorizations                 {amount, currency, card_token, reference}
//! POST /v1/authorizations/{id}/capture    {amount}
//! POST /v1/authorizations/{id}/void       {}
//! POST /v1/captures/{id}/refunds          {amount, reference}
//! ```
//! Amounts are minor units; every request carries `Idempotency-Key` and a
//! bearer API key. 2xx is done (`{"id": ...}`); 402 and other 4xx are
//! refusals (`{"error": {"type", "code", "message"}}`), except 409
//! `idempotency_key_in_use` (the same key is executing: retry); 429, 5xx,
//! timeouts and connection failures are transient.

use std::time::Duration;

use foldline_platform::payments_config::ProviderClientConfig;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use super::{
    AuthorizeRequest, CaptureRequest, PaymentProvider, ProviderAnswer, ProviderError,
    ProviderResult, RefundRequest,
};

pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
/// The code of a 409 for a key whose first request is still executing.
pub const KEY_IN_USE: &str = "idempotency_key_in_use";

#[derive(Debug, Deserialize)]
struct Done {
    id: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(rename = "type")]
    pub kind: String,
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

/// The provider over HTTP.
#[derive(Clone, Debug)]
pub struct HttpProvider {
    client: reqwest::Client,
    base: String,
    api_key: foldline_platform::config::Secret,
}

impl HttpProvider {
    pub fn new(config: &ProviderClientConfig) -> Result<Self, ProviderError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.request_timeout_ms))
            .build()
            .map_err(|error| ProviderError::Permanent(format!("cannot build a client: {error}")))?;
        Ok(Self {
            client,
            base: config.url.trim_end_matches('/').to_owned(),
            api_key: config.api_key.clone(),
        })
    }

    async fn post(&self, key: &str, path: &str, body: &impl Serialize) -> ProviderResult {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(self.api_key.expose())
            .header(IDEMPOTENCY_KEY, key)
            .json(body)
            .send()
            .await
            .map_err(|error| ProviderError::Transient(without_url(error).to_string()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|error| ProviderError::Transient(without_url(error).to_string()))?;
        answer(status, &bytes)
    }
}

/// A reqwest error names the URL; the provider's URL is not secret, but
/// the message is logged per retry, so keep it short.
fn without_url(error: reqwest::Error) -> reqwest::Error {
    error.without_url()
}

/// What a response means.
fn answer(status: StatusCode, body: &[u8]) -> ProviderResult {
    if status.is_success() {
        return serde_json::from_slice::<Done>(body)
            .map(|done| ProviderAnswer::Approved { reference: done.id })
            .map_err(|error| {
                ProviderError::Transient(format!("unreadable {status} answer: {error}"))
            });
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Err(ProviderError::Transient(format!("answered {status}")));
    }
    let error = serde_json::from_slice::<ErrorEnvelope>(body).map(|envelope| envelope.error);
    match (status, error) {
        (StatusCode::CONFLICT, Ok(error)) if error.code == KEY_IN_USE => Err(
            ProviderError::Transient("the same idempotency key is still executing".to_owned()),
        ),
        (
            StatusCode::PAYMENT_REQUIRED | StatusCode::CONFLICT | StatusCode::NOT_FOUND,
            Ok(error),
        ) => Ok(ProviderAnswer::Refused {
            code: error.code,
            message: error.message,
            reference: error.reference,
        }),
        (_, Ok(error)) => Err(ProviderError::Permanent(format!(
            "{status} {}: {}",
            error.code, error.message
        ))),
        (_, Err(_)) => Err(ProviderError::Permanent(format!(
            "answered {status} without an error body"
        ))),
    }
}

impl PaymentProvider for HttpProvider {
    async fn authorize(&self, key: &str, request: &AuthorizeRequest) -> ProviderResult {
        self.post(key, "/v1/authorizations", request).await
    }

    async fn capture(
        &self,
        key: &str,
        authorization: &str,
        request: &CaptureRequest,
    ) -> ProviderResult {
        self.post(
            key,
            &format!("/v1/authorizations/{authorization}/capture"),
            request,
        )
        .await
    }

    async fn refund(&self, key: &str, capture: &str, request: &RefundRequest) -> ProviderResult {
        self.post(key, &format!("/v1/captures/{capture}/refunds"), request)
            .await
    }

    async fn void(&self, key: &str, authorization: &str) -> ProviderResult {
        self.post(
            key,
            &format!("/v1/authorizations/{authorization}/void"),
            &serde_json::json!({}),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(code: &str) -> Vec<u8> {
        serde_json::json!({"error": {"type": "card_error", "code": code, "message": "no"}})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn answers_are_read_by_status() {
        assert_eq!(
            answer(
                StatusCode::CREATED,
                br#"{"id": "auth_1", "status": "authorized"}"#
            ),
            Ok(ProviderAnswer::Approved {
                reference: "auth_1".to_owned()
            })
        );
        assert!(matches!(
            answer(StatusCode::PAYMENT_REQUIRED, &refusal("card_declined")),
            Ok(ProviderAnswer::Refused { code, .. }) if code == "card_declined"
        ));
        for transient in [
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::GATEWAY_TIMEOUT,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::INTERNAL_SERVER_ERROR,
        ] {
            assert!(
                answer(transient, b"").unwrap_err().is_transient(),
                "{transient}"
            );
        }
        assert!(answer(StatusCode::CONFLICT, &refusal(KEY_IN_USE))
            .unwrap_err()
            .is_transient());
    }

    #[test]
    fn garbage_answers_are_errors_not_approvals() {
        // A 2xx whose body is not an answer may have executed: retry with the key.
        assert!(answer(StatusCode::OK, b"<html>")
            .unwrap_err()
            .is_transient());
        let reused = answer(StatusCode::BAD_REQUEST, &refusal("idempotency_key_reused"));
        assert!(
            matches!(reused, Err(ProviderError::Permanent(reason)) if reason.contains("idempotency_key_reused"))
        );
        assert!(matches!(
            answer(StatusCode::BAD_REQUEST, b"nope"),
            Err(ProviderError::Permanent(_))
        ));
    }
}
