//! Parsing registered schema text and deciding when two schemas are "the same".

use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use apache_avro::Schema;
use serde_json::Value;

/// A schema as the registry keeps it: the parsed form (for compatibility
/// checks) and its identity (for de-duplication).
#[derive(Debug, Clone)]
pub(crate) struct ParsedSchema {
    pub(crate) schema: Arc<Schema>,
    pub(crate) identity: Arc<str>,
}

/// Why a schema text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SchemaError {
    #[error("{0}")]
    Parse(String),
    #[error("the schema could not be normalised")]
    Normalise,
}

impl ParsedSchema {
    /// Parses an Avro schema text (a JSON document, as in Confluent's
    /// `"schema"` field).
    pub(crate) fn parse(text: &str) -> Result<Self, SchemaError> {
        if text.trim().is_empty() {
            return Err(SchemaError::Parse("empty schema".to_owned()));
        }
        let schema = Schema::parse_str(text).map_err(|e| SchemaError::Parse(e.to_string()))?;
        let identity = identity(&schema)?;
        Ok(Self {
            schema: Arc::new(schema),
            identity: identity.into(),
        })
    }
}

/// The de-duplication key of a schema.
///
/// It starts with the Avro Parsing Canonical Form (`Schema::canonical_form`),
/// so whitespace, JSON key order, `doc` strings and the spelling of
/// namespaces never create a new version or id. The canonical form however
/// also strips `default`, `aliases` and `logicalType`, which change how data
/// is *read*: keying on it alone would make "add a default to field x" a
/// silent no-op that returns the old id, and a writer would then never be
/// able to evolve in the direction that default was meant to enable. So the
/// canonical form is followed by a normalised rendering of the full schema
/// with only the `doc` strings removed.
///
/// `canonical_form` panics on input it considers impossible; the fold runs
/// this on every record of a topic other clients may also write, so a panic
/// is turned into an error instead of killing the reader.
fn identity(schema: &Schema) -> Result<String, SchemaError> {
    catch_unwind(AssertUnwindSafe(|| {
        let canonical = schema.canonical_form();
        let full = serde_json::to_value(schema).ok()?;
        let mut out = canonical;
        out.push('\n');
        write_schema_node(&full, &mut out);
        Some(out)
    }))
    .ok()
    .flatten()
    .ok_or(SchemaError::Normalise)
}

/// Renders a schema node (a type name, a union array or a type object) with
/// sorted keys and without `doc`.
fn write_schema_node(node: &Value, out: &mut String) {
    match node {
        Value::Array(branches) => {
            out.push('[');
            for (i, branch) in branches.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_schema_node(branch, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().filter(|k| k.as_str() != "doc").collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(key, out);
                out.push(':');
                let value = &map[key];
                match key.as_str() {
                    "type" | "items" | "values" => write_schema_node(value, out),
                    "fields" => write_fields(value, out),
                    // Defaults and custom attributes are plain JSON values:
                    // a `doc` key inside them is data, not documentation.
                    _ => write_plain(value, out),
                }
            }
            out.push('}');
        }
        other => write_plain(other, out),
    }
}

fn write_fields(fields: &Value, out: &mut String) {
    let Value::Array(fields) = fields else {
        write_plain(fields, out);
        return;
    };
    out.push('[');
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match field {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().filter(|k| k.as_str() != "doc").collect();
                keys.sort();
                out.push('{');
                for (j, key) in keys.into_iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    write_json_string(key, out);
                    out.push(':');
                    if key == "type" {
                        write_schema_node(&map[key], out);
                    } else {
                        write_plain(&map[key], out);
                    }
                }
                out.push('}');
            }
            other => write_plain(other, out),
        }
    }
    out.push(']');
}

/// Plain JSON with object keys sorted, so that the order a client happened
/// to write a default map in does not matter.
fn write_plain(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(key, out);
                out.push(':');
                write_plain(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_plain(item, out);
            }
            out.push(']');
        }
        Value::String(s) => write_json_string(s, out),
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

fn write_json_string(s: &str, out: &mut String) {
    // Serialising a `&str` cannot fail; the fallback only keeps this total.
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => {
            out.push('"');
            out.push_str(s);
            out.push('"');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> Arc<str> {
        ParsedSchema::parse(text).expect("valid schema").identity
    }

    #[test]
    fn formatting_key_order_and_docs_do_not_change_identity() {
        let a = r#"{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"string"}]}"#;
        let b = r#"{
            "fields": [ {"type": "string", "name": "id", "doc": "the order id"} ],
            "doc": "an order",
            "name": "shop.Order",
            "type": "record"
        }"#;
        assert_eq!(id(a), id(b));
    }

    #[test]
    fn identity_starts_with_the_parsing_canonical_form() {
        let text = r#"{"type":"record","name":"A","fields":[{"name":"x","type":"int"}]}"#;
        let parsed = ParsedSchema::parse(text).expect("valid schema");
        let canonical = Schema::parse_str(text).expect("valid").canonical_form();
        assert!(parsed.identity.starts_with(&canonical));
    }

    #[test]
    fn defaults_aliases_and_logical_types_matter() {
        let plain = r#"{"type":"record","name":"A","fields":[{"name":"x","type":"int"}]}"#;
        let with_default =
            r#"{"type":"record","name":"A","fields":[{"name":"x","type":"int","default":0}]}"#;
        let with_alias =
            r#"{"type":"record","name":"A","fields":[{"name":"x","type":"int","aliases":["y"]}]}"#;
        let logical = r#"{"type":"record","name":"A","fields":[{"name":"x","type":{"type":"int","logicalType":"date"}}]}"#;
        assert_ne!(id(plain), id(with_default));
        assert_ne!(id(plain), id(with_alias));
        assert_ne!(id(plain), id(logical));
    }

    #[test]
    fn key_order_inside_defaults_does_not_matter() {
        let a = r#"{"type":"record","name":"A","fields":[{"name":"m","type":{"type":"map","values":"int"},"default":{"a":1,"b":2}}]}"#;
        let b = r#"{"type":"record","name":"A","fields":[{"name":"m","type":{"type":"map","values":"int"},"default":{"b":2,"a":1}}]}"#;
        assert_eq!(id(a), id(b));
    }

    #[test]
    fn garbage_is_refused() {
        assert!(ParsedSchema::parse("").is_err());
        assert!(ParsedSchema::parse("   ").is_err());
        assert!(ParsedSchema::parse("{not json").is_err());
        assert!(ParsedSchema::parse(r#"{"type":"record"}"#).is_err());
        assert!(ParsedSchema::parse(r#""no-such-type""#).is_err());
    }
}
