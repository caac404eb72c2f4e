//! The users domain's values. Plaintext personal data (email, name, phone)
//! is validated here by the edge before it is sealed; the decider itself
//! only ever sees [`Sealed`] values and [`ClaimKey`]s.

use foldline_eventsourcing::uuid_id;
pub use foldline_eventsourcing::IdError;
use serde::{Deserialize, Serialize};
use thiserror::Error;

uuid_id!(
    /// Identifies one user; also the key of its event stream.
    UserId
);

/// Why a value does not parse. Messages name only what the client sent.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ValueError {
    #[error("email must look like local@domain.tld (at most 254 characters)")]
    Email,
    #[error("name must be 1 to {MAX_NAME_CHARS} characters without control characters")]
    Name,
    #[error("phone must be in international form: + and 8 to 15 digits")]
    Phone,
    #[error("must be at most {MAX_TEXT_CHARS} characters without control characters")]
    Text,
    #[error("must not be empty")]
    Empty,
    #[error("is not a claim key (claim- and 64 lowercase hex digits)")]
    ClaimKey,
    #[error("is not a sealed value (v1. and base64url, at most {MAX_SEALED_CHARS} characters)")]
    Sealed,
}

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_TEXT_CHARS: usize = 500;
pub const MAX_SEALED_CHARS: usize = 4_096;
const CLAIM_PREFIX: &str = "claim-";
const SEALED_PREFIX: &str = "v1.";

fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// An email address, normalised: trimmed and lower-cased as a whole. Two
/// spellings that normalise alike are one address for uniqueness.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        let normalised = text.trim().to_lowercase();
        let Some((local, domain)) = normalised.split_once('@') else {
            return Err(ValueError::Email);
        };
        let domain_ok = !domain.is_empty()
            && domain.len() <= 253
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '.');
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.contains('@')
            && local.chars().all(|c| !c.is_whitespace() && !c.is_control());
        if normalised.len() > 254 || !domain_ok || !local_ok {
            return Err(ValueError::Email);
        }
        Ok(Self(normalised))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A person's name as given (trimmed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonName(String);

impl PersonName {
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        let trimmed = text.trim();
        let chars = trimmed.chars().count();
        if chars == 0 || chars > MAX_NAME_CHARS || has_control(trimmed) {
            return Err(ValueError::Name);
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A phone number in E.164 form (`+` and 8–15 digits); spaces, dashes,
/// dots and brackets in the input are dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Phone(String);

impl Phone {
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        let compact: String = text
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect();
        let Some(digits) = compact.strip_prefix('+') else {
            return Err(ValueError::Phone);
        };
        if !(8..=15).contains(&digits.len())
            || !digits.chars().all(|c| c.is_ascii_digit())
            || digits.starts_with('0')
        {
            return Err(ValueError::Phone);
        }
        Ok(Self(compact))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Free text recorded with a decision (a reason, who asked).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Note(String);

impl Note {
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        if text.chars().count() > MAX_TEXT_CHARS || has_control(text) {
            return Err(ValueError::Text);
        }
        Ok(Self(text.to_owned()))
    }

    /// Like [`Note::parse`], and not blank.
    pub fn parse_required(text: &str) -> Result<Self, ValueError> {
        if text.trim().is_empty() {
            return Err(ValueError::Empty);
        }
        Self::parse(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email claim's key: a keyed hash (HMAC) of the normalised address, so
/// the log and the store never name the address itself.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClaimKey(String);

impl ClaimKey {
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        let hex = text
            .strip_prefix(CLAIM_PREFIX)
            .ok_or(ValueError::ClaimKey)?;
        if hex.len() != 64 || !hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) {
            return Err(ValueError::ClaimKey);
        }
        Ok(Self(text.to_owned()))
    }

    /// The key of a digest (32 bytes of HMAC-SHA256).
    pub fn from_digest(digest: &[u8; 32]) -> Self {
        let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
        Self(format!("{CLAIM_PREFIX}{hex}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ClaimKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// A personal-data field sealed under its user's data key. Opaque to the
/// domain: only its shape is checked, so a foreign writer cannot put
/// plaintext where ciphertext belongs without it looking wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sealed(String);

impl Sealed {
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        let body = text.strip_prefix(SEALED_PREFIX).ok_or(ValueError::Sealed)?;
        if body.is_empty()
            || text.len() > MAX_SEALED_CHARS
            || !body
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ValueError::Sealed);
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_normalise_and_garbage_is_refused() {
        let email = EmailAddress::parse("  Ada.Lovelace@Example.ORG ").unwrap();
        assert_eq!(email.as_str(), "ada.lovelace@example.org");
        for garbage in [
            "",
            "ada",
            "ada@",
            "@example.org",
            "ada@example",
            "ada@@example.org",
            "ada lovelace@example.org",
            "ada@exa mple.org",
            "ada@.example.org",
            "ada@example..org",
            "a\u{7}@example.org",
        ] {
            assert_eq!(
                EmailAddress::parse(garbage),
                Err(ValueError::Email),
                "{garbage:?}"
            );
        }
        let long_local = format!("{}@example.org", "a".repeat(65));
        assert!(EmailAddress::parse(&long_local).is_err());
    }

    #[test]
    fn names_phones_and_notes_are_bounded() {
        assert_eq!(PersonName::parse(" Ada ").unwrap().as_str(), "Ada");
        assert!(PersonName::parse("   ").is_err());
        assert!(PersonName::parse(&"x".repeat(MAX_NAME_CHARS + 1)).is_err());
        assert!(PersonName::parse("Ada\nLovelace").is_err());
        assert_eq!(
            Phone::parse("+44 20 7946-0958").unwrap().as_str(),
            "+442079460958"
        );
        for garbage in [
            "",
            "020 7946 0958",
            "+12",
            "+1234567890123456",
            "+44abc79460958",
            "+0441234567",
        ] {
            assert!(Phone::parse(garbage).is_err(), "{garbage:?}");
        }
        assert!(Note::parse("").is_ok());
        assert_eq!(Note::parse_required(" "), Err(ValueError::Empty));
        assert!(Note::parse(&"x".repeat(MAX_TEXT_CHARS + 1)).is_err());
    }

    #[test]
    fn claim_keys_and_sealed_values_are_shape_checked() {
        let key = ClaimKey::from_digest(&[0xab; 32]);
        assert_eq!(ClaimKey::parse(key.as_str()), Ok(key.clone()));
        assert!(key.as_str().starts_with("claim-abab"));
        for garbage in [
            "",
            "claim-",
            "claim-ABAB",
            "ada@example.org",
            &format!("claim-{}", "g".repeat(64)),
        ] {
            assert!(ClaimKey::parse(garbage).is_err(), "{garbage:?}");
        }
        assert!(Sealed::parse("v1.AbC-_9").is_ok());
        for garbage in ["", "v1.", "ada@example.org", "v2.AAAA", "v1.AA==", "v1.a b"] {
            assert!(Sealed::parse(garbage).is_err(), "{garbage:?}");
        }
        assert!(Sealed::parse(&format!("v1.{}", "A".repeat(MAX_SEALED_CHARS))).is_err());
    }
}
