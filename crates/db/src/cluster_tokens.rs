//! The `cluster_tokens` table: join tokens not used yet.
//!
//! A token is replicated so that any member can check it; it is deleted when used
//! ([`crate::Command::JoinMember`]) or revoked ([`crate::Command::DeleteClusterToken`]).

use rusqlite::{Connection, OptionalExtension, params};

use crate::Result;

/// One join token as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterTokenRecord {
    /// The secret the joiner must present (64 hex characters): the key.
    pub secret: String,
    /// The member name the token is for (`"m2"`).
    pub name: String,
    /// Id of the `token` operation that shows it.
    pub operation: String,
    /// When it expires, RFC 3339 UTC with nanoseconds (so strings compare as times).
    pub expires_at: String,
}

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ClusterTokenRecord> {
    Ok(ClusterTokenRecord {
        secret: r.get(0)?,
        name: r.get(1)?,
        operation: r.get(2)?,
        expires_at: r.get(3)?,
    })
}

/// All tokens, by member name.
pub fn list(conn: &Connection) -> Result<Vec<ClusterTokenRecord>> {
    let mut stmt = conn.prepare(
        "SELECT secret, name, operation, expires_at FROM cluster_tokens ORDER BY name, secret",
    )?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The token with `secret`, if any.
pub fn get(conn: &Connection, secret: &str) -> Result<Option<ClusterTokenRecord>> {
    Ok(conn
        .query_row(
            "SELECT secret, name, operation, expires_at FROM cluster_tokens WHERE secret = ?1",
            params![secret],
            from_row,
        )
        .optional()?)
}
