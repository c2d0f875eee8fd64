//! The `raft_state` table: where the replicated log stands relative to this DB.
//!
//! The values are opaque text written by the replication layer (the `raft` crate encodes
//! openraft's log id and membership as JSON); this crate stores and returns them unchanged,
//! and so stays free of openraft types.

use rusqlite::{Connection, OptionalExtension, params};

use crate::Result;

const LAST_APPLIED: &str = "last_applied";
const LAST_MEMBERSHIP: &str = "last_membership";

/// The log position recorded in the DB, as opaque text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftState {
    /// The id of the last log entry whose effect is in this DB (`None`: nothing applied yet).
    pub last_applied: Option<String>,
    /// The last membership config applied, with its log id (`None`: none yet).
    pub last_membership: Option<String>,
}

fn value(conn: &Connection, key: &str) -> Result<Option<String>> {
    Ok(conn
        .query_row(
            "SELECT value FROM raft_state WHERE key = ?1",
            params![key],
            |r| r.get(0),
        )
        .optional()?)
}

fn set_value(conn: &Connection, key: &str, value: Option<&String>) -> Result<()> {
    match value {
        // Compiled once: every replicated write records its position.
        Some(v) => conn
            .prepare_cached(
                "INSERT INTO raft_state (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![key, v])?,
        None => conn
            .prepare_cached("DELETE FROM raft_state WHERE key = ?1")?
            .execute(params![key])?,
    };
    Ok(())
}

/// The recorded log position.
pub fn get(conn: &Connection) -> Result<RaftState> {
    Ok(RaftState {
        last_applied: value(conn, LAST_APPLIED)?,
        last_membership: value(conn, LAST_MEMBERSHIP)?,
    })
}

/// Records `state`; callers do it in the transaction that applies the entries it names.
pub(crate) fn set(conn: &Connection, state: &RaftState) -> Result<()> {
    set_value(conn, LAST_APPLIED, state.last_applied.as_ref())?;
    set_value(conn, LAST_MEMBERSHIP, state.last_membership.as_ref())
}
