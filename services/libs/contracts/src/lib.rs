//! The published language of Foldline: what crosses a topic.
//!
//! # Layout
//! - [`topology`]: topics, partitions, retention, groups and subjects, read
//!   from `topology/topology.toml` (the one declaration).
//! - [`schema`]: the `.avsc` files of `schemas/avro/`, embedded, and the
//!   record → subject mapping (TopicRecordNameStrategy).
//! - [`envelope`]: metadata every command and event carries, the command
//!   outcome, and the Kafka header names.
//! - [`orders`]: the orders commands and events as Avro-bound wire types.
//!
//! Wire types are plain data with string ids and integer money; domains map
//! them to and from their validated domain types. A test proves every wire
//! type's derived Avro schema equals its `.avsc` file.

pub mod envelope;
pub mod orders;
pub mod schema;
pub mod topology;
