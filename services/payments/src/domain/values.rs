//! The payments domain's values, validated once at the edge of the domain.

use foldline_eventsourcing::uuid_id;
pub use foldline_eventsourcing::IdError;
use serde::{Deserialize, Serialize};
use thiserror::Error;

uuid_id!(
    /// Identifies one payment; also the key of its event stream.
    PaymentId
);
uuid_id!(
    /// The order a payment is for (the orders domain's id, carried as data).
    OrderId
);
uuid_id!(
    /// The paying user (the users domain's id, carried as data).
    CustomerId
);
uuid_id!(
    /// Names one refund within its payment.
    RefundId
);

/// Why a value does not parse. Messages name only what the client sent.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ValueError {
    #[error("amount must be a whole number of minor units from 1 to {MAX_AMOUNT}")]
    Amount,
    #[error("currency must be an ISO 4217 code: three upper-case letters")]
    Currency,
    #[error("card token must be 1 to {MAX_TOKEN_CHARS} characters of letters, digits, _ and -")]
    CardToken,
    #[error(
        "provider reference must be 1 to {MAX_TOKEN_CHARS} characters without control characters"
    )]
    ProviderReference,
    #[error("must be at most {MAX_TEXT_CHARS} characters without control characters")]
    Text,
    #[error("decline code must be one of card_declined, insufficient_funds, provider_rejected, deadline_exceeded")]
    DeclineCode,
}

/// The largest amount accepted, in minor units (ten billion units of the
/// currency): far above any real card payment, far below overflow when
/// amounts are summed.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;
pub const MAX_TOKEN_CHARS: usize = 128;
pub const MAX_TEXT_CHARS: usize = 500;

/// A positive amount of minor units (cents).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Amount(i64);

impl Amount {
    pub fn new(minor_units: i64) -> Result<Self, ValueError> {
        match (1..=MAX_AMOUNT).contains(&minor_units) {
            true => Ok(Self(minor_units)),
            false => Err(ValueError::Amount),
        }
    }

    pub fn minor_units(&self) -> i64 {
        self.0
    }
}

/// An ISO 4217 currency code.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Currency(String);

impl Currency {
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        match text.len() == 3 && text.bytes().all(|byte| byte.is_ascii_uppercase()) {
            true => Ok(Self(text.to_owned())),
            false => Err(ValueError::Currency),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The provider's token for a card: the card number never reaches us.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CardToken(String);

impl CardToken {
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        let valid = !text.is_empty()
            && text.chars().count() <= MAX_TOKEN_CHARS
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        match valid {
            true => Ok(Self(text.to_owned())),
            false => Err(ValueError::CardToken),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The provider's id of an authorization, capture, refund or void.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProviderReference(String);

impl ProviderReference {
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        let valid = !text.trim().is_empty()
            && text.chars().count() <= MAX_TOKEN_CHARS
            && !text.chars().any(char::is_control);
        match valid {
            true => Ok(Self(text.to_owned())),
            false => Err(ValueError::ProviderReference),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A free-text reason (may be empty).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Note(String);

impl Note {
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        let text = text.trim();
        match text.chars().count() <= MAX_TEXT_CHARS && !text.chars().any(char::is_control) {
            true => Ok(Self(text.to_owned())),
            false => Err(ValueError::Text),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a payment was declined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeclineCode {
    /// The issuer refused the card.
    CardDeclined,
    InsufficientFunds,
    /// The provider refused the request itself (for good, not a fault).
    ProviderRejected,
    /// No answer came from the provider within the configured deadline.
    DeadlineExceeded,
    /// Voided by us while the provider's authorization was still awaited
    /// (the order it pays for ended first); a late authorization is voided.
    Abandoned,
}

impl DeclineCode {
    pub const ALL: [DeclineCode; 5] = [
        Self::CardDeclined,
        Self::InsufficientFunds,
        Self::ProviderRejected,
        Self::DeadlineExceeded,
        Self::Abandoned,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::CardDeclined => "card_declined",
            Self::InsufficientFunds => "insufficient_funds",
            Self::ProviderRejected => "provider_rejected",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::Abandoned => "abandoned",
        }
    }

    /// Whether we declined on our own, without the provider's answer: an
    /// authorization the provider makes afterwards is held for nothing.
    pub fn is_ours(&self) -> bool {
        matches!(self, Self::DeadlineExceeded | Self::Abandoned)
    }

    pub fn parse(text: &str) -> Result<Self, ValueError> {
        Self::ALL
            .into_iter()
            .find(|code| code.as_str() == text)
            .ok_or(ValueError::DeclineCode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_positive_and_bounded() {
        assert_eq!(Amount::new(1).unwrap().minor_units(), 1);
        assert!(Amount::new(MAX_AMOUNT).is_ok());
        for garbage in [0, -1, i64::MIN, MAX_AMOUNT + 1, i64::MAX] {
            assert_eq!(Amount::new(garbage), Err(ValueError::Amount), "{garbage}");
        }
    }

    #[test]
    fn currencies_are_three_upper_case_letters() {
        assert_eq!(Currency::parse("EUR").unwrap().as_str(), "EUR");
        for garbage in ["", "eur", "EURO", "EU", "E1R", "€UR", " EUR"] {
            assert_eq!(
                Currency::parse(garbage),
                Err(ValueError::Currency),
                "{garbage}"
            );
        }
    }

    #[test]
    fn card_tokens_and_references_refuse_garbage() {
        assert!(CardToken::parse("tok_visa-4242").is_ok());
        for garbage in ["", "tok visa", "tok\u{0}", "4242 4242", &"t".repeat(129)] {
            assert_eq!(
                CardToken::parse(garbage),
                Err(ValueError::CardToken),
                "{garbage}"
            );
        }
        assert!(ProviderReference::parse("auth_123").is_ok());
        for garbage in ["", "   ", "a\nb", &"r".repeat(129)] {
            assert_eq!(
                ProviderReference::parse(garbage),
                Err(ValueError::ProviderReference)
            );
        }
    }

    #[test]
    fn notes_are_trimmed_and_bounded() {
        assert_eq!(Note::parse("  late  ").unwrap().as_str(), "late");
        assert!(Note::parse("").is_ok());
        assert_eq!(Note::parse("a\u{7}"), Err(ValueError::Text));
        assert_eq!(Note::parse(&"x".repeat(501)), Err(ValueError::Text));
    }

    #[test]
    fn decline_codes_round_trip_and_garbage_is_refused() {
        for code in DeclineCode::ALL {
            assert_eq!(DeclineCode::parse(code.as_str()), Ok(code));
        }
        assert_eq!(DeclineCode::parse("nope"), Err(ValueError::DeclineCode));
        assert_eq!(DeclineCode::parse(""), Err(ValueError::DeclineCode));
    }
}
