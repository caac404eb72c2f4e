//! Crypto-shredding: personal data sealed under a per-subject data key, the
//! data keys wrapped by a key-encryption key (KEK) from configuration and
//! kept in the store's `data_keys` table, and destroyed on erasure.
//!
//! - A sealed value is `v1.` and base64url (no padding) of a 24-byte random
//!   nonce followed by the XChaCha20-Poly1305 ciphertext and tag. The
//!   associated data binds it to its subject and field, so a value copied
//!   into another user's record or field does not open.
//! - A data key is 32 random bytes, stored only wrapped (sealed under the
//!   KEK, bound to its subject). Destroying it overwrites the row with a
//!   tombstone; every sealed value of that subject is unreadable from then
//!   on, wherever a copy of it lives (the log, backups, the data team's
//!   lake), and a destroyed subject never gets a new key.
//! - Lookup keys (an email claim) are a keyed hash (HMAC-SHA256) under a key
//!   derived from the KEK, so neither the log nor the store names an
//!   address, and nobody without the KEK can test guesses against them.
//!
//! Why the store and not a compacted topic: a compacted topic keeps a
//! tombstoned key readable until the log cleaner runs (never, for the
//! active segment), and every consumer would hold a copy in memory; a store
//! row is overwritten in place and read on demand. See
//! `services/users/src/design.md` for the whole argument.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::config::Secret;
use crate::store::{RowKey, Store, StoreError, StoredRow};

pub const DATA_KEYS: &str = "data_keys";
const SEALED_PREFIX: &str = "v1.";
const NONCE_BYTES: usize = 24;
const KEY_BYTES: usize = 32;
const INDEX_KEY_LABEL: &[u8] = b"foldline/v1/lookup-index";

#[derive(Debug, thiserror::Error)]
pub enum PersonalDataError {
    #[error("the key-encryption key must be 64 hex digits (32 bytes)")]
    MalformedKek,
    #[error("the key-encryption key is not configured (set personal_data.key_encryption_key, FOLDLINE__PERSONAL_DATA__KEY_ENCRYPTION_KEY)")]
    MissingKek,
    #[error("no randomness available: {0}")]
    Randomness(String),
    #[error("a sealed value of {subject} does not open (wrong key, or tampered)")]
    DoesNotOpen { subject: String },
    #[error("a sealed value is malformed")]
    Malformed,
    #[error("the data key of {subject} is destroyed")]
    Destroyed { subject: String },
    #[error("the data key row of {subject} is unreadable: {reason}")]
    UnreadableKeyRow { subject: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PersonalDataError {
    /// Whether retrying can succeed (only a store outage can pass).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Store(error) if error.is_transient())
    }
}

fn random<const N: usize>() -> Result<[u8; N], PersonalDataError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|error| PersonalDataError::Randomness(error.to_string()))?;
    Ok(bytes)
}

/// The key-encryption key. Never printed: `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyEncryptionKey([u8; KEY_BYTES]);

impl fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("KeyEncryptionKey(***)")
    }
}

impl KeyEncryptionKey {
    /// Parses 64 hex digits. The error never repeats the input.
    pub fn parse(secret: &Secret) -> Result<Self, PersonalDataError> {
        let text = secret.expose().trim();
        if text.len() != KEY_BYTES * 2 || !text.is_ascii() {
            return Err(PersonalDataError::MalformedKek);
        }
        let mut key = [0u8; KEY_BYTES];
        for (index, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[index * 2..index * 2 + 2], 16)
                .map_err(|_| PersonalDataError::MalformedKek)?;
        }
        Ok(Self(key))
    }

    /// The configured KEK; a missing one is an error.
    pub fn from_config(secret: Option<&Secret>) -> Result<Self, PersonalDataError> {
        Self::parse(secret.ok_or(PersonalDataError::MissingKek)?)
    }

    /// A fresh random key: only for a development deployment whose data
    /// dies with the process (the embedded default).
    pub fn generate_for_development() -> Result<Self, PersonalDataError> {
        Ok(Self(random()?))
    }

    /// The key as 64 hex digits, for handing to a child process in tests.
    pub fn to_hex(&self) -> Secret {
        Secret::new(
            self.0
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect::<String>(),
        )
    }
}

/// One subject's data key, unwrapped. Never printed.
#[derive(Clone)]
pub struct DataKey([u8; KEY_BYTES]);

impl fmt::Debug for DataKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("DataKey(***)")
    }
}

fn associated_data(subject: &str, field: &str) -> Vec<u8> {
    format!("foldline/v1/{subject}/{field}").into_bytes()
}

fn seal_with(
    key: &[u8; KEY_BYTES],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<String, PersonalDataError> {
    let nonce: [u8; NONCE_BYTES] = random()?;
    let cipher = XChaCha20Poly1305::new(key.into());
    let ciphertext = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| PersonalDataError::Malformed)?;
    let mut bytes = nonce.to_vec();
    bytes.extend_from_slice(&ciphertext);
    Ok(format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

fn open_with(
    key: &[u8; KEY_BYTES],
    aad: &[u8],
    sealed: &str,
    subject: &str,
) -> Result<Vec<u8>, PersonalDataError> {
    let body = sealed
        .strip_prefix(SEALED_PREFIX)
        .ok_or(PersonalDataError::Malformed)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| PersonalDataError::Malformed)?;
    if bytes.len() < NONCE_BYTES {
        return Err(PersonalDataError::Malformed);
    }
    let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
    XChaCha20Poly1305::new(key.into())
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| PersonalDataError::DoesNotOpen {
            subject: subject.to_owned(),
        })
}

impl DataKey {
    /// Seals `plaintext` as `field` of `subject`.
    pub fn seal(
        &self,
        subject: &str,
        field: &str,
        plaintext: &str,
    ) -> Result<String, PersonalDataError> {
        seal_with(
            &self.0,
            &associated_data(subject, field),
            plaintext.as_bytes(),
        )
    }

    /// Opens a value sealed as `field` of `subject`.
    pub fn open(
        &self,
        subject: &str,
        field: &str,
        sealed: &str,
    ) -> Result<String, PersonalDataError> {
        let bytes = open_with(&self.0, &associated_data(subject, field), sealed, subject)?;
        String::from_utf8(bytes).map_err(|_| PersonalDataError::Malformed)
    }
}

impl KeyEncryptionKey {
    fn wrap(&self, subject: &str, key: &DataKey) -> Result<String, PersonalDataError> {
        seal_with(&self.0, &associated_data(subject, "data-key"), &key.0)
    }

    fn unwrap_key(&self, subject: &str, wrapped: &str) -> Result<DataKey, PersonalDataError> {
        let bytes = open_with(
            &self.0,
            &associated_data(subject, "data-key"),
            wrapped,
            subject,
        )?;
        let key: [u8; KEY_BYTES] = bytes.try_into().map_err(|_| PersonalDataError::Malformed)?;
        Ok(DataKey(key))
    }

    /// The keyed hash of a lookup value (a normalised email address, a
    /// request body to fingerprint).
    pub fn lookup_digest(&self, value: &[u8]) -> [u8; 32] {
        let mut derive =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("hmac takes keys of any length");
        derive.update(INDEX_KEY_LABEL);
        let index_key = derive.finalize().into_bytes();
        let mut digest = <Hmac<Sha256> as Mac>::new_from_slice(&index_key)
            .expect("hmac takes keys of any length");
        digest.update(value);
        digest.finalize().into_bytes().into()
    }
}

/// A `data_keys` row: the wrapped key, or the fact it was destroyed.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum KeyRow {
    Wrapped(String),
    Destroyed { at: i64 },
}

fn key_row(subject: &str) -> RowKey {
    RowKey::new(DATA_KEYS, subject.as_bytes().to_vec(), Vec::new())
}

fn encode(subject: &str, row: &KeyRow) -> Result<StoredRow, PersonalDataError> {
    serde_json::to_vec(row)
        .map(|value| StoredRow { position: 0, value })
        .map_err(|error| PersonalDataError::UnreadableKeyRow {
            subject: subject.to_owned(),
            reason: error.to_string(),
        })
}

fn decode(subject: &str, row: &StoredRow) -> Result<KeyRow, PersonalDataError> {
    serde_json::from_slice(&row.value).map_err(|error| PersonalDataError::UnreadableKeyRow {
        subject: subject.to_owned(),
        reason: error.to_string(),
    })
}

/// Per-subject data keys in the store, wrapped by the KEK.
#[derive(Clone, Debug)]
pub struct DataKeys {
    store: Store,
    kek: KeyEncryptionKey,
}

impl DataKeys {
    pub fn new(store: Store, kek: KeyEncryptionKey) -> Self {
        Self { store, kek }
    }

    pub fn kek(&self) -> &KeyEncryptionKey {
        &self.kek
    }

    /// The subject's key, created on first use. Concurrent first uses agree
    /// (the first row written wins); a destroyed key is never recreated.
    pub async fn get_or_create(&self, subject: &str) -> Result<DataKey, PersonalDataError> {
        if let Some(key) = self.get(subject).await? {
            return Ok(key);
        }
        let fresh = DataKey(random()?);
        let row = encode(subject, &KeyRow::Wrapped(self.kek.wrap(subject, &fresh)?))?;
        match self.store.insert_if_absent(key_row(subject), row).await? {
            None => Ok(fresh),
            Some(existing) => {
                self.key_in_row(subject, &existing)?
                    .ok_or_else(|| PersonalDataError::Destroyed {
                        subject: subject.to_owned(),
                    })
            }
        }
    }

    /// The subject's key; `None` if it never had one or it was destroyed.
    pub async fn get(&self, subject: &str) -> Result<Option<DataKey>, PersonalDataError> {
        match self.store.get(key_row(subject)).await? {
            Some(row) => self.key_in_row(subject, &row),
            None => Ok(None),
        }
    }

    /// Whether the subject's key was destroyed.
    pub async fn is_destroyed(&self, subject: &str) -> Result<bool, PersonalDataError> {
        Ok(match self.store.get(key_row(subject)).await? {
            Some(row) => matches!(decode(subject, &row)?, KeyRow::Destroyed { .. }),
            None => false,
        })
    }

    fn key_in_row(
        &self,
        subject: &str,
        row: &StoredRow,
    ) -> Result<Option<DataKey>, PersonalDataError> {
        match decode(subject, row)? {
            KeyRow::Wrapped(wrapped) => self.kek.unwrap_key(subject, &wrapped).map(Some),
            KeyRow::Destroyed { .. } => Ok(None),
        }
    }

    /// Destroys the subject's key for good. Idempotent.
    pub async fn destroy(&self, subject: &str, at: i64) -> Result<(), PersonalDataError> {
        destroy_data_key(&self.store, subject, at).await
    }
}

/// Destroys `subject`'s data key for good (no KEK needed). Idempotent: the
/// row is overwritten with a tombstone that no later use recreates.
pub async fn destroy_data_key(
    store: &Store,
    subject: &str,
    at: i64,
) -> Result<(), PersonalDataError> {
    let row = encode(subject, &KeyRow::Destroyed { at })?;
    store.put(key_row(subject), row).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek() -> KeyEncryptionKey {
        KeyEncryptionKey::parse(&Secret::new("0f".repeat(32))).unwrap()
    }

    #[test]
    fn a_kek_is_64_hex_digits_and_never_printed() {
        for garbage in ["", "zz", &"0".repeat(63), &"g".repeat(64), &"é".repeat(32)] {
            let error = KeyEncryptionKey::parse(&Secret::new(garbage.to_owned())).unwrap_err();
            assert!(
                matches!(error, PersonalDataError::MalformedKek),
                "{garbage:?}"
            );
            assert!(!error.to_string().contains(garbage) || garbage.is_empty());
        }
        assert!(matches!(
            KeyEncryptionKey::from_config(None),
            Err(PersonalDataError::MissingKek)
        ));
        let key = kek();
        assert_eq!(format!("{key:?}"), "KeyEncryptionKey(***)");
        assert_eq!(KeyEncryptionKey::parse(&key.to_hex()).unwrap(), key);
        let dev = KeyEncryptionKey::generate_for_development().unwrap();
        assert_ne!(dev, key);
    }

    #[test]
    fn sealed_values_open_only_for_their_subject_field_and_key() {
        let key = DataKey(random().unwrap());
        let sealed = key.seal("u1", "email", "ada@example.org").unwrap();
        assert!(sealed.starts_with("v1.") && !sealed.contains("ada"));
        assert_eq!(key.open("u1", "email", &sealed).unwrap(), "ada@example.org");
        assert!(matches!(
            key.open("u2", "email", &sealed),
            Err(PersonalDataError::DoesNotOpen { .. })
        ));
        assert!(key.open("u1", "name", &sealed).is_err());
        let other = DataKey(random().unwrap());
        assert!(other.open("u1", "email", &sealed).is_err());
        assert!(matches!(
            key.open("u1", "email", "v1.AAAA"),
            Err(PersonalDataError::Malformed)
        ));
        assert!(key.open("u1", "email", "plaintext").is_err());
        // A fresh nonce per seal: equal plaintexts do not look equal.
        assert_ne!(sealed, key.seal("u1", "email", "ada@example.org").unwrap());
        assert_eq!(format!("{key:?}"), "DataKey(***)");
    }

    #[test]
    fn lookup_digests_are_keyed() {
        let other = KeyEncryptionKey::parse(&Secret::new("1e".repeat(32))).unwrap();
        assert_eq!(
            kek().lookup_digest(b"ada@example.org"),
            kek().lookup_digest(b"ada@example.org")
        );
        assert_ne!(
            kek().lookup_digest(b"ada@example.org"),
            kek().lookup_digest(b"bob@example.org")
        );
        assert_ne!(
            kek().lookup_digest(b"ada@example.org"),
            other.lookup_digest(b"ada@example.org")
        );
    }

    #[tokio::test]
    async fn keys_are_created_once_shared_and_destroyed_for_good() {
        let keys = DataKeys::new(Store::in_memory(), kek());
        let first = keys.get_or_create("u1").await.unwrap();
        let sealed = first.seal("u1", "name", "Ada").unwrap();
        let again = keys.get_or_create("u1").await.unwrap();
        assert_eq!(again.open("u1", "name", &sealed).unwrap(), "Ada");
        // Another process with the same KEK reads the same key.
        let other_reader = DataKeys::new(keys.store.clone(), kek());
        let read = other_reader.get("u1").await.unwrap().expect("a key");
        assert_eq!(read.open("u1", "name", &sealed).unwrap(), "Ada");
        // A reader with another KEK cannot unwrap it.
        let wrong = DataKeys::new(
            keys.store.clone(),
            KeyEncryptionKey::parse(&Secret::new("1e".repeat(32))).unwrap(),
        );
        assert!(wrong.get("u1").await.is_err());

        keys.destroy("u1", 7).await.unwrap();
        keys.destroy("u1", 8).await.unwrap();
        assert!(keys.get("u1").await.unwrap().is_none());
        assert!(keys.is_destroyed("u1").await.unwrap());
        assert!(matches!(
            keys.get_or_create("u1").await,
            Err(PersonalDataError::Destroyed { .. })
        ));
        assert!(keys.get("u2").await.unwrap().is_none());
        assert!(!keys.is_destroyed("u2").await.unwrap());
    }
}
