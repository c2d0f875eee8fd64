//! drover's cluster database.
//!
//! SQLite with numbered schema updates ([`schema`]). Every write is one [`Command`], applied
//! deterministically by [`apply`]: the proposer stamps times and ids into the command, and
//! `apply` reads no clock, randomness, environment or file. That is what lets a replicated
//! log (openraft, later) sit under [`Store::execute`] without any caller changing. Reads are
//! typed queries, one module per table.

mod command;
pub mod config;
mod error;
pub mod images;
pub mod instances;
pub mod members;
pub mod pools;
pub mod profiles;
mod schema;
mod store;

pub use command::{Command, apply};
pub use error::{Error, Result};
pub use rusqlite::Connection;
pub use store::Store;
