//! drover's cluster database.
//!
//! SQLite with numbered schema updates (module `schema`). Every write is one [`Command`],
//! applied deterministically by [`apply`]: the proposer stamps times and ids into the
//! command, and `apply` reads no clock, randomness, environment or file. That is what lets a
//! replicated log (openraft, in the `raft` crate) sit under the writes without any caller
//! changing. Reads are typed queries, one module per table.
//!
//! For replication, [`Store::apply_entries`] applies a batch of log entries and records the
//! log position ([`RaftState`]) in the same transaction; [`Store::backup_to`] and
//! [`Store::restore_from`] copy the whole DB out and in for snapshots.

pub mod certificates;
pub mod cluster_groups;
pub mod cluster_tokens;
mod command;
pub mod config;
mod error;
pub mod evacuations;
pub mod images;
pub mod instances;
pub mod members;
pub mod moves;
pub mod pools;
pub mod profiles;
pub mod raft_state;
mod schema;
mod store;
pub mod volumes;

pub use command::{Command, apply};
pub use error::{Error, Result};
pub use raft_state::RaftState;
pub use rusqlite::Connection;
/// The schema version this binary writes: members of one cluster must agree on it.
pub use schema::LATEST as SCHEMA_VERSION;
/// The schema version of a DB (`0` for a new file).
pub use schema::current as schema_current;
pub use schema::version as schema_version;
pub use store::Store;
