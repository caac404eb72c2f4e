//! The registry's in-memory state: a pure fold of the `_schemas` records.
//!
//! Every instance builds its state only by applying the topic's records in
//! log order with [`decode`] then [`State::apply_decoded`]; nothing else
//! mutates it. Two instances that have read the same prefix of the log
//! therefore hold the same state, whichever of them wrote which record.
//!
//! # First in the log wins
//!
//! Instances do not coordinate before writing: each picks the next version
//! (`max version + 1`) and the next id (`max id seen + 1`) from its own view
//! and appends. When two of them race, the log decides, with the rule the
//! rest of Foldline uses for conflicting facts: **the first record in log
//! order wins, later contradicting ones are ignored by the fold**.
//!
//! - Two records for the same subject and version with different schemas
//!   (or ids): the first one is that version.
//! - Two different schemas claiming the same global id: the first one owns
//!   the id.
//!
//! The writer learns it lost by reading its own record back (it waits for
//! its offset) and finding the state unchanged; it then retries with a fresh
//! version and id, re-checking compatibility against what won.
//!
//! Compaction keeps the *last* record of each key, which would resurrect a
//! losing record written under the same key as the winner. So when a record
//! loses a same-key race the key is remembered as *contested*, and the loser
//! (or any instance, at start-up) re-appends the winner's value under that
//! key; afterwards the last record for the key is the winner again, and a
//! fold of the compacted topic gives the same state as a fold of the full
//! one. An id-race loser writes its retry under its own key, which has the
//! same effect.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use apache_avro::Schema;

use super::avro::{ParsedSchema, SchemaError};
use super::compat::{CompatibilityLevel, DEFAULT_LEVEL};
use super::record::{
    decode_config_value, decode_key, decode_schema_value, DecodeError, RecordKey, SchemaKey,
    SchemaValue, MAX_ID, MAX_VERSION,
};

/// One record of the topic, as read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LogRecord<'a> {
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) value: Option<&'a [u8]>,
}

/// A record decoded (and its schema parsed) without looking at the state,
/// so that the expensive part of the fold can run outside the state lock.
#[derive(Debug, Clone)]
pub(crate) enum SchemasEntry {
    Schema {
        key: SchemaKey,
        /// `None` is a tombstone (a hard delete).
        value: Option<Box<(SchemaValue, ParsedSchema)>>,
    },
    Config {
        subject: Option<String>,
        /// `None` is a tombstone: back to the default.
        level: Option<CompatibilityLevel>,
    },
    Noop,
    Other(String),
    Invalid(Invalid),
}

/// Why a record cannot be applied at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Invalid {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("key and value disagree on subject or version")]
    KeyValueMismatch,
    #[error("id outside 1..=2147483647")]
    IdOutOfRange,
    #[error("unsupported schema type {0:?}")]
    UnsupportedType(String),
    #[error("schema references are not supported")]
    References,
    #[error("invalid schema: {0}")]
    Schema(#[from] SchemaError),
}

/// What applying a record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Applied {
    Registered {
        subject: String,
        version: u32,
        id: u32,
    },
    /// The record restated what the state already holds.
    Unchanged,
    /// A soft delete (or its reversal).
    DeletedFlag {
        deleted: bool,
    },
    /// A tombstone removed a version.
    Removed,
    ConfigSet(CompatibilityLevel),
    ConfigCleared,
    /// A key type this registry does not interpret (`NOOP`, `MODE`, ...).
    Ignored {
        keytype: String,
    },
    Rejected(Rejection),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rejection {
    Invalid(Invalid),
    /// The subject version already holds another schema (first wins).
    VersionTaken {
        existing_id: u32,
    },
    /// The id already belongs to another schema (first wins).
    IdTaken {
        id: u32,
    },
}

/// One version of a subject.
#[derive(Debug, Clone)]
pub(crate) struct VersionEntry {
    pub(crate) id: u32,
    pub(crate) deleted: bool,
    /// The schema text of the record that created the version, kept so the
    /// value can be re-appended verbatim to settle a contested key.
    text: Arc<str>,
}

/// A schema under its global id.
#[derive(Debug, Clone)]
pub(crate) struct IdEntry {
    /// The text first registered under this id.
    pub(crate) text: Arc<str>,
    pub(crate) parsed: ParsedSchema,
    /// How many subject versions point at this id; the id disappears with
    /// its last version, as it would from a compacted topic.
    uses: usize,
}

/// Selects a version of a subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VersionSelector {
    Latest,
    Number(u32),
}

#[derive(Debug, Default)]
pub(crate) struct State {
    subjects: BTreeMap<String, BTreeMap<u32, VersionEntry>>,
    schemas: BTreeMap<u32, IdEntry>,
    /// Identity -> the first id registered for it.
    identities: HashMap<Arc<str>, u32>,
    subject_levels: BTreeMap<String, CompatibilityLevel>,
    global_level: Option<CompatibilityLevel>,
    max_id: u32,
    contested: BTreeSet<SchemaKey>,
}

/// Decodes a record and parses its schema. Pure; [`State::apply_decoded`]
/// does the rest.
pub(crate) fn decode(record: LogRecord<'_>) -> SchemasEntry {
    let key = match decode_key(record.key) {
        Ok(key) => key,
        Err(e) => return SchemasEntry::Invalid(e.into()),
    };
    match key {
        RecordKey::Schema(key) => {
            let Some(bytes) = record.value else {
                return SchemasEntry::Schema { key, value: None };
            };
            match decode_schema(&key, bytes) {
                Ok(value) => SchemasEntry::Schema {
                    key,
                    value: Some(Box::new(value)),
                },
                Err(e) => SchemasEntry::Invalid(e),
            }
        }
        RecordKey::Config(subject) => match record.value {
            None => SchemasEntry::Config {
                subject,
                level: None,
            },
            Some(bytes) => match decode_config_value(bytes) {
                Ok(level) => SchemasEntry::Config {
                    subject,
                    level: Some(level),
                },
                Err(e) => SchemasEntry::Invalid(e.into()),
            },
        },
        RecordKey::Noop => SchemasEntry::Noop,
        RecordKey::Other(keytype) => SchemasEntry::Other(keytype),
    }
}

fn decode_schema(key: &SchemaKey, bytes: &[u8]) -> Result<(SchemaValue, ParsedSchema), Invalid> {
    let value = decode_schema_value(bytes)?;
    if value.subject != key.subject || value.version != key.version {
        return Err(Invalid::KeyValueMismatch);
    }
    if value.id == 0 || value.id > MAX_ID {
        return Err(Invalid::IdOutOfRange);
    }
    if let Some(kind) = &value.schema_type {
        if !kind.eq_ignore_ascii_case("AVRO") {
            return Err(Invalid::UnsupportedType(kind.clone()));
        }
    }
    if !value.references.is_empty() {
        return Err(Invalid::References);
    }
    let parsed = ParsedSchema::parse(&value.schema)?;
    Ok((value, parsed))
}

impl State {
    /// Applies one record: [`decode`] then [`State::apply_decoded`]. The
    /// tail calls the two halves itself, to parse outside the state lock.
    #[cfg(test)]
    pub(crate) fn apply(&mut self, record: LogRecord<'_>) -> Applied {
        self.apply_decoded(decode(record))
    }

    pub(crate) fn apply_decoded(&mut self, decoded: SchemasEntry) -> Applied {
        match decoded {
            SchemasEntry::Schema {
                key,
                value: Some(value),
            } => {
                let (value, parsed) = *value;
                self.apply_schema(key, value, parsed)
            }
            SchemasEntry::Schema { key, value: None } => self.apply_tombstone(&key),
            SchemasEntry::Config { subject, level } => {
                match (subject, level) {
                    (Some(subject), Some(level)) => {
                        self.subject_levels.insert(subject, level);
                    }
                    (Some(subject), None) => {
                        self.subject_levels.remove(&subject);
                    }
                    (None, level) => self.global_level = level,
                }
                level.map_or(Applied::ConfigCleared, Applied::ConfigSet)
            }
            SchemasEntry::Noop => Applied::Ignored {
                keytype: "NOOP".to_owned(),
            },
            SchemasEntry::Other(keytype) => Applied::Ignored { keytype },
            SchemasEntry::Invalid(invalid) => Applied::Rejected(Rejection::Invalid(invalid)),
        }
    }

    fn apply_schema(
        &mut self,
        key: SchemaKey,
        value: SchemaValue,
        parsed: ParsedSchema,
    ) -> Applied {
        if let Some(existing) = self
            .subjects
            .get_mut(&key.subject)
            .and_then(|versions| versions.get_mut(&key.version))
        {
            let same = existing.id == value.id
                && self
                    .schemas
                    .get(&existing.id)
                    .is_some_and(|entry| entry.parsed.identity == parsed.identity);
            if !same {
                let existing_id = existing.id;
                self.contested.insert(key);
                return Applied::Rejected(Rejection::VersionTaken { existing_id });
            }
            self.contested.remove(&key);
            if existing.deleted == value.deleted {
                return Applied::Unchanged;
            }
            existing.deleted = value.deleted;
            return Applied::DeletedFlag {
                deleted: value.deleted,
            };
        }

        match self.schemas.get_mut(&value.id) {
            Some(entry) if entry.parsed.identity != parsed.identity => {
                return Applied::Rejected(Rejection::IdTaken { id: value.id });
            }
            Some(entry) => entry.uses += 1,
            None => {
                self.identities
                    .entry(parsed.identity.clone())
                    .or_insert(value.id);
                self.schemas.insert(
                    value.id,
                    IdEntry {
                        text: value.schema.as_str().into(),
                        parsed,
                        uses: 1,
                    },
                );
            }
        }
        self.max_id = self.max_id.max(value.id);
        self.contested.remove(&key);
        self.subjects
            .entry(key.subject.clone())
            .or_default()
            .insert(
                key.version,
                VersionEntry {
                    id: value.id,
                    deleted: value.deleted,
                    text: value.schema.into(),
                },
            );
        Applied::Registered {
            subject: key.subject,
            version: key.version,
            id: value.id,
        }
    }

    fn apply_tombstone(&mut self, key: &SchemaKey) -> Applied {
        self.contested.remove(key);
        let Some(versions) = self.subjects.get_mut(&key.subject) else {
            return Applied::Unchanged;
        };
        let Some(removed) = versions.remove(&key.version) else {
            return Applied::Unchanged;
        };
        if versions.is_empty() {
            self.subjects.remove(&key.subject);
        }
        let unused = match self.schemas.get_mut(&removed.id) {
            Some(entry) => {
                entry.uses = entry.uses.saturating_sub(1);
                entry.uses == 0
            }
            None => false,
        };
        if unused {
            if let Some(entry) = self.schemas.remove(&removed.id) {
                let identity = entry.parsed.identity;
                if self.identities.get(&identity) == Some(&removed.id) {
                    self.identities.remove(&identity);
                    // Another id may hold the same schema; it takes over.
                    if let Some((&other, _)) = self
                        .schemas
                        .iter()
                        .find(|(_, e)| e.parsed.identity == identity)
                    {
                        self.identities.insert(identity, other);
                    }
                }
            }
        }
        Applied::Removed
    }

    // ---- queries -------------------------------------------------------

    /// Subjects with at least one version (live, unless `include_deleted`).
    pub(crate) fn subjects(&self, include_deleted: bool) -> Vec<String> {
        self.subjects
            .iter()
            .filter(|(_, versions)| versions.values().any(|v| include_deleted || !v.deleted))
            .map(|(subject, _)| subject.clone())
            .collect()
    }

    /// The subject's version numbers, ascending; `None` if it has none.
    pub(crate) fn versions(&self, subject: &str, include_deleted: bool) -> Option<Vec<u32>> {
        let versions: Vec<u32> = self
            .subjects
            .get(subject)?
            .iter()
            .filter(|(_, v)| include_deleted || !v.deleted)
            .map(|(n, _)| *n)
            .collect();
        (!versions.is_empty()).then_some(versions)
    }

    pub(crate) fn subject_exists(&self, subject: &str, include_deleted: bool) -> bool {
        self.versions(subject, include_deleted).is_some()
    }

    pub(crate) fn version(
        &self,
        subject: &str,
        selector: VersionSelector,
        include_deleted: bool,
    ) -> Option<(u32, &VersionEntry)> {
        let versions = self.subjects.get(subject)?;
        let visible = |v: &&VersionEntry| include_deleted || !v.deleted;
        match selector {
            VersionSelector::Latest => versions
                .iter()
                .rev()
                .find(|(_, v)| visible(v))
                .map(|(n, v)| (*n, v)),
            VersionSelector::Number(n) => versions.get(&n).filter(visible).map(|v| (n, v)),
        }
    }

    /// The newest version of `subject` holding a schema with `identity`.
    pub(crate) fn find_in_subject(
        &self,
        subject: &str,
        identity: &str,
        include_deleted: bool,
    ) -> Option<(u32, u32)> {
        self.subjects
            .get(subject)?
            .iter()
            .rev()
            .filter(|(_, v)| include_deleted || !v.deleted)
            .find(|(_, v)| {
                self.schemas
                    .get(&v.id)
                    .is_some_and(|e| &*e.parsed.identity == identity)
            })
            .map(|(n, v)| (*n, v.id))
    }

    pub(crate) fn schema(&self, id: u32) -> Option<&IdEntry> {
        self.schemas.get(&id)
    }

    /// Where an id is used, as `(subject, version)`.
    pub(crate) fn usages(&self, id: u32, include_deleted: bool) -> Vec<(String, u32)> {
        self.subjects
            .iter()
            .flat_map(|(subject, versions)| {
                versions
                    .iter()
                    .filter(move |(_, v)| v.id == id && (include_deleted || !v.deleted))
                    .map(move |(n, _)| (subject.clone(), *n))
            })
            .collect()
    }

    pub(crate) fn id_for_identity(&self, identity: &str) -> Option<u32> {
        self.identities.get(identity).copied()
    }

    /// `true` if `id` is above every id applied so far: it may be in the
    /// log already, just not read yet.
    pub(crate) fn is_future_id(&self, id: u32) -> bool {
        id > self.max_id
    }

    /// `max id seen + 1`, or `None` once the id space is exhausted.
    pub(crate) fn next_id(&self) -> Option<u32> {
        self.max_id.checked_add(1).filter(|id| *id <= MAX_ID)
    }

    /// One past the subject's highest version, soft-deleted ones included
    /// (Confluent never reuses a version number).
    pub(crate) fn next_version(&self, subject: &str) -> Option<u32> {
        let max = self
            .subjects
            .get(subject)
            .and_then(|versions| versions.keys().next_back().copied())
            .unwrap_or(0);
        max.checked_add(1).filter(|v| *v <= MAX_VERSION)
    }

    /// The subject's live versions as `(version, schema)`, oldest first:
    /// what compatibility is checked against.
    pub(crate) fn live_schemas(&self, subject: &str) -> Vec<(u32, Arc<Schema>)> {
        let Some(versions) = self.subjects.get(subject) else {
            return Vec::new();
        };
        versions
            .iter()
            .filter(|(_, v)| !v.deleted)
            .filter_map(|(n, v)| {
                self.schemas
                    .get(&v.id)
                    .map(|e| (*n, Arc::clone(&e.parsed.schema)))
            })
            .collect()
    }

    pub(crate) fn subject_level(&self, subject: &str) -> Option<CompatibilityLevel> {
        self.subject_levels.get(subject).copied()
    }

    pub(crate) fn global_level(&self) -> CompatibilityLevel {
        self.global_level.unwrap_or(DEFAULT_LEVEL)
    }

    pub(crate) fn effective_level(&self, subject: &str) -> CompatibilityLevel {
        self.subject_level(subject)
            .unwrap_or_else(|| self.global_level())
    }

    /// The records that settle contested keys: the winning value of each,
    /// to be appended again (see the module documentation).
    pub(crate) fn repairs(&self) -> Vec<(SchemaKey, SchemaValue)> {
        self.contested
            .iter()
            .filter_map(|key| {
                let entry = self.subjects.get(&key.subject)?.get(&key.version)?;
                Some((
                    key.clone(),
                    SchemaValue {
                        subject: key.subject.clone(),
                        version: key.version,
                        id: entry.id,
                        schema: entry.text.to_string(),
                        deleted: entry.deleted,
                        schema_type: None,
                        references: Vec::new(),
                    },
                ))
            })
            .collect()
    }

    pub(crate) fn is_contested(&self, key: &SchemaKey) -> bool {
        self.contested.contains(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{
        encode_config_key, encode_config_value, encode_schema_key, encode_schema_value,
    };

    const A: &str = r#"{"type":"record","name":"A","fields":[{"name":"x","type":"int"}]}"#;
    const A_REFORMATTED: &str =
        r#"{ "name": "A", "type": "record", "fields": [ { "type": "int", "name": "x" } ] }"#;
    const B: &str = r#"{"type":"record","name":"B","fields":[{"name":"y","type":"string"}]}"#;
    const C: &str = r#""string""#;

    /// An owned record, as a test log holds them.
    #[derive(Debug, Clone)]
    struct Rec {
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
    }

    fn schema_rec(subject: &str, version: u32, id: u32, schema: &str) -> Rec {
        schema_rec_deleted(subject, version, id, schema, false)
    }

    fn schema_rec_deleted(
        subject: &str,
        version: u32,
        id: u32,
        schema: &str,
        deleted: bool,
    ) -> Rec {
        let key = SchemaKey {
            subject: subject.to_owned(),
            version,
        };
        Rec {
            key: Some(encode_schema_key(&key)),
            value: Some(encode_schema_value(&SchemaValue {
                subject: subject.to_owned(),
                version,
                id,
                schema: schema.to_owned(),
                deleted,
                schema_type: None,
                references: Vec::new(),
            })),
        }
    }

    fn tombstone(subject: &str, version: u32) -> Rec {
        Rec {
            key: Some(encode_schema_key(&SchemaKey {
                subject: subject.to_owned(),
                version,
            })),
            value: None,
        }
    }

    fn config_rec(subject: Option<&str>, level: Option<CompatibilityLevel>) -> Rec {
        Rec {
            key: Some(encode_config_key(subject)),
            value: level.map(encode_config_value),
        }
    }

    fn raw(key: &[u8], value: Option<&[u8]>) -> Rec {
        Rec {
            key: Some(key.to_vec()),
            value: value.map(<[u8]>::to_vec),
        }
    }

    fn apply(state: &mut State, rec: &Rec) -> Applied {
        state.apply(LogRecord {
            key: rec.key.as_deref(),
            value: rec.value.as_deref(),
        })
    }

    fn fold(log: &[Rec]) -> State {
        let mut state = State::default();
        for rec in log {
            apply(&mut state, rec);
        }
        state
    }

    /// Everything observable, in a comparable form.
    fn view(state: &State) -> String {
        let mut out = String::new();
        for (subject, versions) in &state.subjects {
            for (n, v) in versions {
                out.push_str(&format!(
                    "{subject}/{n}=id{}{}\n",
                    v.id,
                    if v.deleted { " deleted" } else { "" }
                ));
            }
        }
        for (id, e) in &state.schemas {
            out.push_str(&format!("id{id}={}\n", e.text));
        }
        out.push_str(&format!(
            "global={} levels={:?} next_id={:?}\n",
            state.global_level(),
            state.subject_levels,
            state.next_id()
        ));
        out
    }

    /// What a compacted topic would hold: the last record of each key, in
    /// log order, tombstones included (before `delete.retention.ms`).
    fn compact(log: &[Rec]) -> Vec<Rec> {
        log.iter()
            .enumerate()
            .filter(|(i, rec)| !log[i + 1..].iter().any(|later| later.key == rec.key))
            .map(|(_, rec)| rec.clone())
            .collect()
    }

    fn identity(text: &str) -> Arc<str> {
        ParsedSchema::parse(text).expect("valid").identity
    }

    #[test]
    fn registering_builds_subjects_versions_and_ids() {
        let mut state = State::default();
        assert_eq!(
            apply(&mut state, &schema_rec("s", 1, 1, A)),
            Applied::Registered {
                subject: "s".to_owned(),
                version: 1,
                id: 1
            }
        );
        apply(&mut state, &schema_rec("s", 2, 2, B));
        assert_eq!(state.subjects(false), vec!["s".to_owned()]);
        assert_eq!(state.versions("s", false), Some(vec![1, 2]));
        assert_eq!(
            state
                .version("s", VersionSelector::Latest, false)
                .map(|(n, v)| (n, v.id)),
            Some((2, 2))
        );
        assert_eq!(state.schema(1).map(|e| &*e.text), Some(A));
        assert_eq!(state.next_id(), Some(3));
        assert!(!state.is_future_id(2));
        assert!(state.is_future_id(3));
        assert_eq!(state.next_version("s"), Some(3));
        assert_eq!(state.next_version("other"), Some(1));
        assert_eq!(state.live_schemas("s").len(), 2);
    }

    #[test]
    fn restating_a_record_changes_nothing() {
        let mut state = State::default();
        apply(&mut state, &schema_rec("s", 1, 1, A));
        let before = view(&state);
        assert_eq!(
            apply(&mut state, &schema_rec("s", 1, 1, A_REFORMATTED)),
            Applied::Unchanged
        );
        assert_eq!(view(&state), before);
    }

    #[test]
    fn same_schema_in_another_subject_shares_the_id() {
        let state = fold(&[
            schema_rec("s", 1, 1, A),
            schema_rec("t", 1, 1, A_REFORMATTED),
        ]);
        assert_eq!(state.versions("t", false), Some(vec![1]));
        assert_eq!(state.id_for_identity(&identity(A)), Some(1));
        assert_eq!(
            state.usages(1, false),
            vec![("s".to_owned(), 1), ("t".to_owned(), 1)]
        );
        assert_eq!(
            state.find_in_subject("t", &identity(A_REFORMATTED), false),
            Some((1, 1))
        );
    }

    #[test]
    fn first_record_wins_a_version_race_and_the_key_is_repaired() {
        let mut state = State::default();
        apply(&mut state, &schema_rec("s", 1, 1, A));
        // Another instance raced for s/1 with a different schema.
        let loser = schema_rec("s", 1, 2, B);
        assert_eq!(
            apply(&mut state, &loser),
            Applied::Rejected(Rejection::VersionTaken { existing_id: 1 })
        );
        assert_eq!(state.schema(2).map(|e| &*e.text), None);
        let key = SchemaKey {
            subject: "s".to_owned(),
            version: 1,
        };
        assert!(state.is_contested(&key));
        let repairs = state.repairs();
        assert_eq!(repairs.len(), 1);
        assert_eq!(repairs[0].1.id, 1);
        assert_eq!(repairs[0].1.schema, A);
        // The loser re-appends the winner, then retries at version 2.
        let repair = Rec {
            key: Some(encode_schema_key(&repairs[0].0)),
            value: Some(encode_schema_value(&repairs[0].1)),
        };
        assert_eq!(apply(&mut state, &repair), Applied::Unchanged);
        assert!(!state.is_contested(&key));
        apply(&mut state, &schema_rec("s", 2, 2, B));

        let log = vec![
            schema_rec("s", 1, 1, A),
            loser,
            repair,
            schema_rec("s", 2, 2, B),
        ];
        assert_eq!(view(&fold(&log)), view(&state));
        // The compacted topic folds to the same state.
        assert_eq!(view(&fold(&compact(&log))), view(&state));
    }

    #[test]
    fn first_record_wins_an_id_race_and_the_loser_retries_with_a_fresh_id() {
        let mut state = State::default();
        apply(&mut state, &schema_rec("s", 1, 1, A));
        // Another instance gave id 1 to a different schema under t.
        assert_eq!(
            apply(&mut state, &schema_rec("t", 1, 1, B)),
            Applied::Rejected(Rejection::IdTaken { id: 1 })
        );
        assert_eq!(state.versions("t", false), None);
        assert!(state.repairs().is_empty());
        assert_eq!(state.next_version("t"), Some(1));
        assert_eq!(state.next_id(), Some(2));
        // Its retry overwrites its own key.
        apply(&mut state, &schema_rec("t", 1, 2, B));
        assert_eq!(state.schema(1).map(|e| &*e.text), Some(A));
        assert_eq!(state.schema(2).map(|e| &*e.text), Some(B));

        let log = vec![
            schema_rec("s", 1, 1, A),
            schema_rec("t", 1, 1, B),
            schema_rec("t", 1, 2, B),
        ];
        assert_eq!(view(&fold(&compact(&log))), view(&state));
    }

    #[test]
    fn folding_is_deterministic() {
        let log = vec![
            schema_rec("s", 1, 1, A),
            config_rec(None, Some(CompatibilityLevel::Full)),
            schema_rec("t", 1, 1, B),
            schema_rec("t", 1, 2, B),
            schema_rec("s", 2, 3, C),
            config_rec(Some("s"), Some(CompatibilityLevel::None)),
            schema_rec_deleted("s", 1, 1, A, true),
        ];
        assert_eq!(view(&fold(&log)), view(&fold(&log)));
        assert_eq!(view(&fold(&log)), view(&fold(&compact(&log))));
    }

    #[test]
    fn config_is_last_write_wins_and_tombstones_restore_the_default() {
        let mut state = State::default();
        assert_eq!(state.global_level(), CompatibilityLevel::Backward);
        assert_eq!(
            apply(
                &mut state,
                &config_rec(None, Some(CompatibilityLevel::Forward))
            ),
            Applied::ConfigSet(CompatibilityLevel::Forward)
        );
        apply(
            &mut state,
            &config_rec(Some("s"), Some(CompatibilityLevel::Full)),
        );
        apply(
            &mut state,
            &config_rec(Some("s"), Some(CompatibilityLevel::None)),
        );
        assert_eq!(state.global_level(), CompatibilityLevel::Forward);
        assert_eq!(state.effective_level("s"), CompatibilityLevel::None);
        assert_eq!(state.effective_level("other"), CompatibilityLevel::Forward);
        assert_eq!(
            apply(&mut state, &config_rec(Some("s"), None)),
            Applied::ConfigCleared
        );
        assert_eq!(state.subject_level("s"), None);
        apply(&mut state, &config_rec(None, None));
        assert_eq!(state.global_level(), CompatibilityLevel::Backward);
    }

    #[test]
    fn soft_delete_hides_the_version_but_keeps_the_id() {
        let mut state = fold(&[schema_rec("s", 1, 1, A), schema_rec("s", 2, 2, B)]);
        assert_eq!(
            apply(&mut state, &schema_rec_deleted("s", 2, 2, B, true)),
            Applied::DeletedFlag { deleted: true }
        );
        assert_eq!(state.versions("s", false), Some(vec![1]));
        assert_eq!(state.versions("s", true), Some(vec![1, 2]));
        assert_eq!(
            state
                .version("s", VersionSelector::Latest, false)
                .map(|(n, _)| n),
            Some(1)
        );
        assert!(state
            .version("s", VersionSelector::Number(2), false)
            .is_none());
        assert!(state.schema(2).is_some());
        assert_eq!(state.live_schemas("s").len(), 1);
        // Version numbers are never reused.
        assert_eq!(state.next_version("s"), Some(3));
    }

    #[test]
    fn tombstones_remove_versions_and_unused_ids() {
        let mut state = fold(&[
            schema_rec("s", 1, 1, A),
            schema_rec("t", 1, 1, A),
            schema_rec("s", 2, 2, B),
        ]);
        assert_eq!(apply(&mut state, &tombstone("s", 1)), Applied::Removed);
        assert!(state.schema(1).is_some(), "t/1 still uses id 1");
        assert_eq!(apply(&mut state, &tombstone("t", 1)), Applied::Removed);
        assert!(state.schema(1).is_none());
        assert_eq!(state.id_for_identity(&identity(A)), None);
        assert_eq!(apply(&mut state, &tombstone("t", 1)), Applied::Unchanged);
        assert_eq!(state.subjects(true), vec!["s".to_owned()]);
    }

    #[test]
    fn garbage_records_are_rejected_without_touching_the_state() {
        let mut state = fold(&[schema_rec("s", 1, 1, A)]);
        let before = view(&state);
        let key = encode_schema_key(&SchemaKey {
            subject: "s".to_owned(),
            version: 2,
        });
        let cases: Vec<Rec> = vec![
            Rec { key: None, value: Some(b"{}".to_vec()) },
            raw(b"not json", Some(b"{}")),
            raw(&key, Some(b"not json")),
            raw(&key, Some(br#"{"subject":"s","version":2,"id":2,"schema":"{nope","deleted":false}"#)),
            raw(&key, Some(br#"{"subject":"other","version":2,"id":2,"schema":"\"int\"","deleted":false}"#)),
            raw(&key, Some(br#"{"subject":"s","version":2,"id":0,"schema":"\"int\"","deleted":false}"#)),
            raw(
                &key,
                Some(br#"{"subject":"s","version":2,"id":2,"schema":"syntax = \"proto3\";","schemaType":"PROTOBUF","deleted":false}"#),
            ),
            raw(
                &key,
                Some(br#"{"subject":"s","version":2,"id":2,"schema":"\"int\"","references":[{"name":"x","subject":"y","version":1}],"deleted":false}"#),
            ),
            raw(&encode_config_key(None), Some(br#"{"compatibilityLevel":"SIDEWAYS"}"#)),
        ];
        for rec in &cases {
            assert!(
                matches!(
                    apply(&mut state, rec),
                    Applied::Rejected(Rejection::Invalid(_))
                ),
                "{rec:?}"
            );
        }
        assert_eq!(view(&state), before);
    }

    #[test]
    fn noop_and_unknown_key_types_are_ignored() {
        let mut state = State::default();
        assert_eq!(
            apply(&mut state, &raw(br#"{"keytype":"NOOP","magic":0}"#, None)),
            Applied::Ignored {
                keytype: "NOOP".to_owned()
            }
        );
        assert_eq!(
            apply(
                &mut state,
                &raw(
                    br#"{"keytype":"DELETE_SUBJECT","subject":"s","magic":0}"#,
                    Some(br#"{"subject":"s","version":1}"#)
                )
            ),
            Applied::Ignored {
                keytype: "DELETE_SUBJECT".to_owned()
            }
        );
        assert_eq!(view(&state), view(&State::default()));
    }

    #[test]
    fn explicit_avro_schema_type_is_accepted() {
        let mut state = State::default();
        let key = encode_schema_key(&SchemaKey {
            subject: "s".to_owned(),
            version: 1,
        });
        let value = br#"{"subject":"s","version":1,"id":5,"schema":"\"int\"","schemaType":"AVRO","deleted":false}"#;
        assert!(matches!(
            apply(&mut state, &raw(&key, Some(value))),
            Applied::Registered { id: 5, .. }
        ));
        assert_eq!(state.next_id(), Some(6));
    }
}
