//! The `members` table.

use api::MemberState;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::{Error, Result};

/// One member as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    /// Never-reused id.
    pub id: i64,
    /// Name (`"m1"`).
    pub name: String,
    /// Cluster address.
    pub address: String,
    /// State.
    pub state: MemberState,
    /// `"x86_64"`.
    pub architecture: String,
    /// Free text.
    pub description: String,
    /// Failure domain.
    pub failure_domain: String,
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<(MemberRecord, i64)> {
    Ok((
        MemberRecord {
            id: r.get(0)?,
            name: r.get(1)?,
            address: r.get(2)?,
            state: MemberState::Created,
            architecture: r.get(4)?,
            description: r.get(5)?,
            failure_domain: r.get(6)?,
        },
        r.get(3)?,
    ))
}

fn finish(raw: (MemberRecord, i64)) -> Result<MemberRecord> {
    let (mut rec, state) = raw;
    rec.state = MemberState::from_i64(state)
        .ok_or_else(|| Error::Corrupt(format!("member state {state}")))?;
    Ok(rec)
}

const COLUMNS: &str = "id, name, address, state, architecture, description, failure_domain";

/// All members, by id.
pub fn list(conn: &Connection) -> Result<Vec<MemberRecord>> {
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM members ORDER BY id"))?;
    let rows = stmt.query_map([], from_row)?;
    rows.map(|r| finish(r?)).collect()
}

/// The member `name`, if any.
pub fn get(conn: &Connection, name: &str) -> Result<Option<MemberRecord>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM members WHERE name = ?1"),
        params![name],
        from_row,
    )
    .optional()?
    .map(finish)
    .transpose()
}
