//! The notify domain's validated values. Each parses from text once, at
//! the edge, and is valid by construction after that.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

foldline_eventsourcing::uuid_id!(
    /// Identifies one notification: its stream, and the de-duplication key
    /// of its delivery (the providers' idempotency key).
    NotificationId
);

pub const MAX_RECIPIENT_CHARS: usize = 320;
pub const MAX_TEMPLATE_CHARS: usize = 64;
pub const MAX_PARAMETERS: usize = 32;
pub const MAX_PARAMETER_CHARS: usize = 1_024;
pub const MAX_REASON_CHARS: usize = 500;
pub const MAX_PROVIDER_CHARS: usize = 64;

/// Why text is not a value of this domain. Messages are shown to clients.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("must be one of email, sms, webhook")]
    UnknownChannel,
    #[error("must be an email address")]
    NotAnEmail,
    #[error("must be an E.164 phone number (+ and 8 to 15 digits)")]
    NotAPhone,
    #[error("must be an http or https url")]
    NotAUrl,
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {0} characters")]
    TooLong(usize),
    #[error("may hold only lowercase letters, digits, '.', '_' and '-'")]
    BadName,
    #[error("at most {MAX_PARAMETERS} parameters")]
    TooManyParameters,
    #[error("parameter {0} is given twice")]
    DuplicateParameter(String),
    #[error("attempts count from 1")]
    NotAnAttempt,
}

/// How a notification reaches its recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Sms,
    Webhook,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Email, Channel::Sms, Channel::Webhook];

    pub fn parse(text: &str) -> Result<Channel, ValueError> {
        match text {
            "email" => Ok(Channel::Email),
            "sms" => Ok(Channel::Sms),
            "webhook" => Ok(Channel::Webhook),
            _ => Err(ValueError::UnknownChannel),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
            Channel::Webhook => "webhook",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

fn bounded(text: &str, max: usize) -> Result<&str, ValueError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ValueError::Empty);
    }
    if trimmed.chars().count() > max {
        return Err(ValueError::TooLong(max));
    }
    Ok(trimmed)
}

/// Where a notification goes, valid for its channel: an email address, an
/// E.164 phone number, or an http(s) url.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Recipient(String);

impl Recipient {
    pub fn parse(channel: Channel, text: &str) -> Result<Recipient, ValueError> {
        let text = bounded(text, MAX_RECIPIENT_CHARS)?;
        let valid = match channel {
            Channel::Email => {
                let (local, domain) = text.split_once('@').ok_or(ValueError::NotAnEmail)?;
                let ok = !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !text.chars().any(char::is_whitespace)
                    && !domain.contains('@');
                ok.then(|| text.to_lowercase())
                    .ok_or(ValueError::NotAnEmail)?
            }
            Channel::Sms => {
                let digits = text.strip_prefix('+').ok_or(ValueError::NotAPhone)?;
                let ok = (8..=15).contains(&digits.len())
                    && digits.chars().all(|c| c.is_ascii_digit())
                    && !digits.starts_with('0');
                ok.then(|| text.to_owned()).ok_or(ValueError::NotAPhone)?
            }
            Channel::Webhook => {
                let rest = text
                    .strip_prefix("https://")
                    .or_else(|| text.strip_prefix("http://"))
                    .ok_or(ValueError::NotAUrl)?;
                let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
                let ok = !host.is_empty() && !text.chars().any(char::is_whitespace);
                ok.then(|| text.to_owned()).ok_or(ValueError::NotAUrl)?
            }
        };
        Ok(Recipient(valid))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A message template's name: `order.confirmed`, `refund_issued`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Template(String);

fn name_like(text: &str, max: usize) -> Result<String, ValueError> {
    let text = bounded(text, max)?;
    match text
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
    {
        true => Ok(text.to_owned()),
        false => Err(ValueError::BadName),
    }
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, ValueError> {
        name_like(text, MAX_TEMPLATE_CHARS).map(Template)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A template's parameters, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Parameters(BTreeMap<String, String>);

impl Parameters {
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Parameters, ValueError> {
        let mut parameters = BTreeMap::new();
        for (name, value) in pairs {
            let name = name_like(name, MAX_TEMPLATE_CHARS)?;
            if value.chars().count() > MAX_PARAMETER_CHARS {
                return Err(ValueError::TooLong(MAX_PARAMETER_CHARS));
            }
            if parameters.insert(name.clone(), value.to_owned()).is_some() {
                return Err(ValueError::DuplicateParameter(name));
            }
            if parameters.len() > MAX_PARAMETERS {
                return Err(ValueError::TooManyParameters);
            }
        }
        Ok(Parameters(parameters))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }
}

/// A provider's name, as the configured chain names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProviderName(String);

impl ProviderName {
    pub fn parse(text: &str) -> Result<ProviderName, ValueError> {
        name_like(text, MAX_PROVIDER_CHARS).map(ProviderName)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProviderName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// Why an attempt failed, as the worker saw it (bounded: it is logged).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Reason(String);

impl Reason {
    pub fn parse(text: &str) -> Result<Reason, ValueError> {
        bounded(text, MAX_REASON_CHARS).map(|text| Reason(text.to_owned()))
    }

    /// A reason from text we produced, cut to fit rather than refused.
    pub fn truncated(text: &str) -> Reason {
        let text: String = text.trim().chars().take(MAX_REASON_CHARS).collect();
        match text.is_empty() {
            true => Reason("unknown".to_owned()),
            false => Reason(text),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which delivery attempt, from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Attempt(u32);

impl Attempt {
    pub const FIRST: Attempt = Attempt(1);

    pub fn new(number: i64) -> Result<Attempt, ValueError> {
        u32::try_from(number)
            .ok()
            .filter(|number| *number >= 1)
            .map(Attempt)
            .ok_or(ValueError::NotAnAttempt)
    }

    pub fn number(&self) -> u32 {
        self.0
    }

    pub fn next(&self) -> Attempt {
        Attempt(self.0.saturating_add(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_must_fit_their_channel() {
        assert_eq!(
            Recipient::parse(Channel::Email, " Ada@Example.org ")
                .unwrap()
                .as_str(),
            "ada@example.org"
        );
        assert!(Recipient::parse(Channel::Email, "ada").is_err());
        assert!(Recipient::parse(Channel::Email, "ada@example").is_err());
        assert!(Recipient::parse(Channel::Sms, "+447700900123").is_ok());
        assert_eq!(
            Recipient::parse(Channel::Sms, "07700900123"),
            Err(ValueError::NotAPhone)
        );
        assert!(Recipient::parse(Channel::Sms, "+44 7700").is_err());
        assert!(Recipient::parse(Channel::Webhook, "https://hooks.example.org/a").is_ok());
        assert_eq!(
            Recipient::parse(Channel::Webhook, "ftp://x"),
            Err(ValueError::NotAUrl)
        );
        assert_eq!(Recipient::parse(Channel::Sms, "  "), Err(ValueError::Empty));
    }

    #[test]
    fn names_parameters_and_attempts_are_bounded() {
        assert!(Template::parse("order.confirmed").is_ok());
        assert_eq!(Template::parse("Order Confirmed"), Err(ValueError::BadName));
        assert_eq!(
            Parameters::parse([("a", "1"), ("a", "2")]),
            Err(ValueError::DuplicateParameter("a".to_owned()))
        );
        let many: Vec<(String, String)> = (0..=MAX_PARAMETERS)
            .map(|index| (format!("p{index}"), String::new()))
            .collect();
        assert_eq!(
            Parameters::parse(many.iter().map(|(n, v)| (n.as_str(), v.as_str()))),
            Err(ValueError::TooManyParameters)
        );
        let long = "x".repeat(MAX_PARAMETER_CHARS + 1);
        assert!(Parameters::parse([("a", long.as_str())]).is_err());
        assert_eq!(Attempt::new(0), Err(ValueError::NotAnAttempt));
        assert_eq!(Attempt::new(2).unwrap().next().number(), 3);
        assert_eq!(Reason::truncated("").as_str(), "unknown");
        assert_eq!(
            Reason::truncated(&"r".repeat(900)).as_str().len(),
            MAX_REASON_CHARS
        );
        assert_eq!(Channel::parse("pigeon"), Err(ValueError::UnknownChannel));
    }
}
