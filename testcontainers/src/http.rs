//! A small JSON client of the gateway's API.

use std::time::Duration;

use anyhow::Context;
use reqwest::header::{HeaderMap, CONTENT_TYPE, LOCATION};
use reqwest::Method;
use serde_json::Value;

/// A gateway response, read whole.
#[derive(Clone, Debug)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body as JSON; `Value::Null` when empty, a string when not JSON.
    pub body: Value,
}

impl ApiResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    pub fn location(&self) -> Option<&str> {
        self.header(LOCATION.as_str())
    }

    pub fn content_type(&self) -> Option<&str> {
        self.header(CONTENT_TYPE.as_str())
    }

    /// Whether this is an RFC 9457 problem with a code.
    pub fn is_problem(&self) -> bool {
        self.content_type()
            .is_some_and(|content_type| content_type.starts_with("application/problem+json"))
            && self.body.get("code").and_then(Value::as_str).is_some()
    }

    /// A string field of the body.
    pub fn str(&self, field: &str) -> Option<&str> {
        self.body.get(field).and_then(Value::as_str)
    }

    /// The problem code, when the body has one.
    pub fn code(&self) -> Option<&str> {
        self.str("code")
    }
}

impl std::fmt::Display for ApiResponse {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "HTTP {} {}", self.status, self.body)
    }
}

/// Options of a command request.
#[derive(Clone, Debug, Default)]
pub struct CommandOptions<'a> {
    pub idempotency_key: Option<&'a str>,
    /// `Prefer: wait=<seconds>`.
    pub wait_seconds: Option<u64>,
}

impl<'a> CommandOptions<'a> {
    pub fn keyed(key: &'a str) -> Self {
        Self {
            idempotency_key: Some(key),
            wait_seconds: None,
        }
    }

    pub fn waiting(seconds: u64) -> Self {
        Self {
            idempotency_key: None,
            wait_seconds: Some(seconds),
        }
    }

    pub fn keyed_waiting(key: &'a str, seconds: u64) -> Self {
        Self {
            idempotency_key: Some(key),
            wait_seconds: Some(seconds),
        }
    }
}

/// The gateway's API. Transport errors are `Err`; any HTTP status is `Ok`.
#[derive(Clone, Debug)]
pub struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> anyhow::Result<Api> {
        Api::with_timeout(base, Duration::from_secs(30))
    }

    /// A client whose requests give up after `timeout` (a fault test's
    /// client must not hang for the default 30 s on a frozen gateway).
    pub fn with_timeout(base: &str, timeout: Duration) -> anyhow::Result<Api> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .pool_max_idle_per_host(32)
            .build()
            .context("cannot build the http client")?;
        Ok(Api {
            base: base.trim_end_matches('/').to_owned(),
            client,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request with an optional raw body (sent as
    /// `application/json`) and extra headers.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        headers: &[(&str, String)],
    ) -> anyhow::Result<ApiResponse> {
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        let mut request = self.client.request(method.clone(), &url);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("reading the body of {method} {url}"))?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok(ApiResponse {
            status,
            headers,
            body,
        })
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<ApiResponse> {
        self.send(Method::GET, path, None, &[]).await
    }

    /// POSTs a command body with the idempotency and wait headers.
    pub async fn command(
        &self,
        path: &str,
        body: String,
        options: &CommandOptions<'_>,
    ) -> anyhow::Result<ApiResponse> {
        let mut headers = Vec::new();
        if let Some(key) = options.idempotency_key {
            headers.push(("idempotency-key", key.to_owned()));
        }
        if let Some(seconds) = options.wait_seconds {
            headers.push(("prefer", format!("wait={seconds}")));
        }
        self.send(Method::POST, path, Some(body), &headers).await
    }

    /// POST /v1/orders.
    pub async fn place_order(
        &self,
        body: &Value,
        options: &CommandOptions<'_>,
    ) -> anyhow::Result<ApiResponse> {
        self.command("/v1/orders", body.to_string(), options).await
    }

    /// POST /v1/orders/{id}/cancel.
    pub async fn cancel_order(
        &self,
        order_id: &str,
        reason: &str,
        options: &CommandOptions<'_>,
    ) -> anyhow::Result<ApiResponse> {
        let body = serde_json::json!({ "reason": reason });
        self.command(
            &format!("/v1/orders/{order_id}/cancel"),
            body.to_string(),
            options,
        )
        .await
    }

    /// GET /v1/orders/{id}.
    pub async fn order(&self, order_id: &str) -> anyhow::Result<ApiResponse> {
        self.get(&format!("/v1/orders/{order_id}")).await
    }

    /// GET /v1/commands/{id}.
    pub async fn command_status(&self, command_id: &str) -> anyhow::Result<ApiResponse> {
        self.get(&format!("/v1/commands/{command_id}")).await
    }

    /// GET /v1/customers/{id}/orders with optional limit and cursor.
    pub async fn customer_orders(
        &self,
        customer_id: &str,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> anyhow::Result<ApiResponse> {
        let mut query = Vec::new();
        if let Some(limit) = limit {
            query.push(format!("limit={limit}"));
        }
        if let Some(cursor) = cursor {
            query.push(format!("cursor={cursor}"));
        }
        let suffix = if query.is_empty() {
            String::new()
        } else {
            format!("?{}", query.join("&"))
        };
        self.get(&format!("/v1/customers/{customer_id}/orders{suffix}"))
            .await
    }
}

/// The body of a placement: `lines` are `(sku, quantity, unit_price)`.
pub fn place_body(customer_id: &str, currency: &str, lines: &[(&str, i64, i64)]) -> Value {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(sku, quantity, unit_price)| serde_json::json!({"sku": sku, "quantity": quantity, "unit_price": unit_price}))
        .collect();
    serde_json::json!({ "customer_id": customer_id, "currency": currency, "lines": lines })
}
