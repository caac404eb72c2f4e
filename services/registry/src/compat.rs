//! Compatibility levels and the checks they imply.

use std::fmt;

use apache_avro::error::CompatibilityError;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use apache_avro::Schema;

/// A subject's (or the registry's) compatibility level, as Confluent names
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CompatibilityLevel {
    None,
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

/// Confluent's default when neither the subject nor the registry sets one.
pub(crate) const DEFAULT_LEVEL: CompatibilityLevel = CompatibilityLevel::Backward;

impl CompatibilityLevel {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Backward => "BACKWARD",
            Self::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Self::Forward => "FORWARD",
            Self::ForwardTransitive => "FORWARD_TRANSITIVE",
            Self::Full => "FULL",
            Self::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    /// Parses a level name. Confluent's REST layer upper-cases before
    /// matching, so `"backward"` is accepted too.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        [
            Self::None,
            Self::Backward,
            Self::BackwardTransitive,
            Self::Forward,
            Self::ForwardTransitive,
            Self::Full,
            Self::FullTransitive,
        ]
        .into_iter()
        .find(|level| level.as_str().eq_ignore_ascii_case(name.trim()))
    }

    fn transitive(self) -> bool {
        matches!(
            self,
            Self::BackwardTransitive | Self::ForwardTransitive | Self::FullTransitive
        )
    }

    /// The new schema must be able to read data written with the old one.
    fn backward(self) -> bool {
        matches!(
            self,
            Self::Backward | Self::BackwardTransitive | Self::Full | Self::FullTransitive
        )
    }

    /// The old schema must be able to read data written with the new one.
    fn forward(self) -> bool {
        matches!(
            self,
            Self::Forward | Self::ForwardTransitive | Self::Full | Self::FullTransitive
        )
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which existing versions a check runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Against {
    /// What registration does: the latest version, or every version when the
    /// level is transitive.
    Level,
    /// Every given version, whatever the level says (Confluent's
    /// `POST /compatibility/subjects/{s}/versions`).
    All,
}

/// Checks `candidate` against a subject's live versions (`existing`, oldest
/// first, as `(version, schema)`). Returns the reasons it is incompatible,
/// or `Ok` if it may be registered.
///
/// Only [`Compatibility::Full`] counts as compatible: the Rust crate reports
/// `Partial` when *some* written values cannot be read (a reader enum missing
/// a writer symbol without a default, a union losing a branch), which
/// Confluent, following the Java Avro checker, rejects.
pub(crate) fn check(
    level: CompatibilityLevel,
    against: Against,
    candidate: &Schema,
    existing: &[(u32, &Schema)],
) -> Result<(), Vec<String>> {
    if level == CompatibilityLevel::None {
        return Ok(());
    }
    let targets: &[(u32, &Schema)] = match against {
        Against::All => existing,
        Against::Level if level.transitive() => existing,
        Against::Level => match existing.split_last() {
            Some((last, _)) => std::slice::from_ref(last),
            None => &[],
        },
    };
    let mut problems = Vec::new();
    // Newest first, so the most relevant message leads.
    for (version, old) in targets.iter().rev() {
        if level.backward() {
            if let Err(reason) = can_read(old, candidate) {
                problems.push(format!(
                    "the new schema cannot read data written with version {version}: {reason}"
                ));
            }
        }
        if level.forward() {
            if let Err(reason) = can_read(candidate, old) {
                problems.push(format!(
                    "version {version} cannot read data written with the new schema: {reason}"
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn can_read(writer: &Schema, reader: &Schema) -> Result<(), String> {
    match SchemaCompatibility::can_read(writer, reader) {
        Ok(Compatibility::Full) => Ok(()),
        Ok(Compatibility::Partial) => Err(
            "some written values cannot be read (missing enum symbols or union branches)"
                .to_owned(),
        ),
        Err(e) => Err(describe(&e)),
    }
}

/// A short, lowercase explanation. The crate's own messages embed `Debug`
/// dumps of whole schemas, which are neither readable nor ours to expose.
fn describe(error: &CompatibilityError) -> String {
    match error {
        CompatibilityError::FieldTypeMismatch(field, inner) => {
            format!(
                "field '{field}' has an incompatible type ({})",
                describe(inner)
            )
        }
        CompatibilityError::MissingDefaultValue(field) => {
            format!("reader field '{field}' is missing from the writer and has no default")
        }
        CompatibilityError::MissingSymbols => {
            "the reader enum has none of the writer's symbols".to_owned()
        }
        CompatibilityError::MissingUnionElements
        | CompatibilityError::SchemaMismatchAllUnionElements => {
            "union branches do not match".to_owned()
        }
        CompatibilityError::FixedMismatch => "fixed sizes differ".to_owned(),
        CompatibilityError::DecimalMismatch { .. } => {
            "decimal precision or scale differ".to_owned()
        }
        CompatibilityError::NameMismatch {
            writer_name,
            reader_name,
        } => format!("names differ: writer '{writer_name}', reader '{reader_name}'"),
        CompatibilityError::WrongType { .. } | CompatibilityError::TypeExpected { .. } => {
            "the types differ".to_owned()
        }
        _ => "the schemas cannot be resolved against each other".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(text: &str) -> Schema {
        Schema::parse_str(text).expect("valid schema")
    }

    fn v1() -> Schema {
        schema(r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#)
    }
    /// v1 plus a required field without default.
    fn added_required() -> Schema {
        schema(
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"string"}]}"#,
        )
    }
    /// v1 plus a field with a default.
    fn added_optional() -> Schema {
        schema(
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"string","default":""}]}"#,
        )
    }
    /// v1 without field `a`.
    fn removed_a() -> Schema {
        schema(r#"{"type":"record","name":"R","fields":[]}"#)
    }

    fn ok(level: CompatibilityLevel, new: &Schema, old: &[&Schema]) -> bool {
        let existing: Vec<(u32, &Schema)> = old
            .iter()
            .enumerate()
            .map(|(i, s)| (u32::try_from(i + 1).expect("small"), *s))
            .collect();
        check(level, Against::Level, new, &existing).is_ok()
    }

    #[test]
    fn level_names_round_trip_and_garbage_is_refused() {
        for name in [
            "NONE",
            "BACKWARD",
            "BACKWARD_TRANSITIVE",
            "FORWARD",
            "FORWARD_TRANSITIVE",
            "FULL",
            "FULL_TRANSITIVE",
        ] {
            let level = CompatibilityLevel::parse(name).expect("known level");
            assert_eq!(level.as_str(), name);
        }
        assert_eq!(
            CompatibilityLevel::parse("full"),
            Some(CompatibilityLevel::Full)
        );
        assert_eq!(CompatibilityLevel::parse("SIDEWAYS"), None);
        assert_eq!(CompatibilityLevel::parse(""), None);
    }

    #[test]
    fn backward_refuses_a_new_required_field_and_accepts_one_with_default() {
        use CompatibilityLevel::Backward;
        assert!(!ok(Backward, &added_required(), &[&v1()]));
        assert!(ok(Backward, &added_optional(), &[&v1()]));
        // Removing a field is backward compatible: the new reader ignores it.
        assert!(ok(Backward, &removed_a(), &[&v1()]));
    }

    #[test]
    fn forward_is_the_mirror_of_backward() {
        use CompatibilityLevel::Forward;
        // The old reader ignores the new field.
        assert!(ok(Forward, &added_required(), &[&v1()]));
        // The old reader needs `a`, which the new writer no longer writes.
        assert!(!ok(Forward, &removed_a(), &[&v1()]));
    }

    #[test]
    fn full_needs_both_directions() {
        use CompatibilityLevel::Full;
        assert!(ok(Full, &added_optional(), &[&v1()]));
        assert!(!ok(Full, &added_required(), &[&v1()]));
        assert!(!ok(Full, &removed_a(), &[&v1()]));
    }

    #[test]
    fn none_accepts_anything() {
        let unrelated = schema(r#""string""#);
        assert!(ok(CompatibilityLevel::None, &unrelated, &[&v1()]));
    }

    #[test]
    fn transitive_checks_every_version_plain_checks_only_the_latest() {
        // v1 wrote `a` as an int, v2 as a string; a candidate reading `a`
        // as a string can read v2's data but not v1's.
        let old = schema(r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#);
        let latest =
            schema(r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}"#);
        let candidate =
            schema(r#"{"type":"record","name":"R","fields":[{"name":"a","type":"string"}]}"#);
        assert!(ok(
            CompatibilityLevel::Backward,
            &candidate,
            &[&old, &latest]
        ));
        assert!(!ok(
            CompatibilityLevel::BackwardTransitive,
            &candidate,
            &[&old, &latest]
        ));
        let existing = [(1, &old), (2, &latest)];
        let existing: Vec<(u32, &Schema)> = existing.iter().map(|(v, s)| (*v, *s)).collect();
        assert!(check(
            CompatibilityLevel::Backward,
            Against::All,
            &candidate,
            &existing
        )
        .is_err());
    }

    #[test]
    fn first_version_is_always_compatible() {
        assert!(ok(CompatibilityLevel::FullTransitive, &v1(), &[]));
    }

    #[test]
    fn partial_compatibility_is_refused() {
        let abc = schema(r#"{"type":"enum","name":"E","symbols":["A","B","C"]}"#);
        let ab = schema(r#"{"type":"enum","name":"E","symbols":["A","B"]}"#);
        // A reader without C cannot read everything a writer with C writes.
        assert!(!ok(CompatibilityLevel::Backward, &ab, &[&abc]));
        assert!(ok(CompatibilityLevel::Backward, &abc, &[&ab]));
    }

    #[test]
    fn messages_are_lowercase_and_name_the_field() {
        let existing = [(1, &v1())];
        let existing: Vec<(u32, &Schema)> = existing.iter().map(|(v, s)| (*v, *s)).collect();
        let problems = check(
            CompatibilityLevel::Backward,
            Against::Level,
            &added_required(),
            &existing,
        )
        .expect_err("incompatible");
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("'b'"), "{problems:?}");
        assert_eq!(problems[0], problems[0].to_lowercase());
    }
}
