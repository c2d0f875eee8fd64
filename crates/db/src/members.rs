//! The `members` table.

use api::{ConfigMap, MemberState};
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
    /// Fingerprint of the member's own certificate (`""` until clustered): other members
    /// admit its Raft and member-to-member requests by it.
    pub fingerprint: String,
    /// Member config (`scheduler.instance`, `user.*`).
    pub config: ConfigMap,
    /// The schema version its binary writes ([`crate::SCHEMA_VERSION`]), as it last
    /// reported (`0`: not reported yet).
    pub schema: i64,
    /// How many API extensions its binary has, as it last reported.
    pub api_extensions: i64,
    /// Its memory in bytes, as it last reported (`0`: unknown).
    pub memory: i64,
    /// Its CPU count, as it last reported (`0`: unknown).
    pub cpus: i64,
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<(MemberRecord, i64, String)> {
    Ok((
        MemberRecord {
            id: r.get(0)?,
            name: r.get(1)?,
            address: r.get(2)?,
            state: MemberState::Created,
            architecture: r.get(4)?,
            description: r.get(5)?,
            failure_domain: r.get(6)?,
            fingerprint: r.get(7)?,
            config: ConfigMap::new(),
            schema: r.get(9)?,
            api_extensions: r.get(10)?,
            memory: r.get(11)?,
            cpus: r.get(12)?,
        },
        r.get(3)?,
        r.get(8)?,
    ))
}

fn finish(raw: (MemberRecord, i64, String)) -> Result<MemberRecord> {
    let (mut rec, state, config) = raw;
    rec.state = MemberState::from_i64(state)
        .ok_or_else(|| Error::Corrupt(format!("member state {state}")))?;
    rec.config = serde_json::from_str(&config)?;
    Ok(rec)
}

const COLUMNS: &str = "id, name, address, state, architecture, description, failure_domain, \
     fingerprint, config, schema, api_extensions, memory, cpus";

/// All members, by id.
pub fn list(conn: &Connection) -> Result<Vec<MemberRecord>> {
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM members ORDER BY id"))?;
    let rows = stmt.query_map([], from_row)?;
    rows.map(|r| finish(r?)).collect()
}

/// The schema version each member last reported ([`MemberRecord::schema`]), by id: what
/// every write checks (a statement compiled once).
pub fn schemas(conn: &Connection) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached("SELECT schema FROM members ORDER BY id")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<i64>>>()?)
}

/// The member `name`, if any.
pub fn get(conn: &Connection, name: &str) -> Result<Option<MemberRecord>> {
    // Cached: every state change reads its member (a statement compiled once).
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM members WHERE name = ?1"))?
        .query_row(params![name], from_row)
        .optional()?
        .map(finish)
        .transpose()
}

/// The member with id `id`, if any.
pub fn get_by_id(conn: &Connection, id: i64) -> Result<Option<MemberRecord>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM members WHERE id = ?1"),
        params![id],
        from_row,
    )
    .optional()?
    .map(finish)
    .transpose()
}

/// The next member id to hand out: above every id ever used, so ids are never reused.
pub(crate) fn next_id(conn: &Connection) -> Result<i64> {
    let used: i64 = conn.query_row(
        "SELECT MAX(COALESCE((SELECT MAX(id) FROM members), 0),
                    COALESCE((SELECT value FROM member_ids WHERE key = 'highest'), 0))",
        [],
        |r| r.get(0),
    )?;
    Ok(used + 1)
}

/// Every member's cluster groups, by member id (groups in name order).
pub fn groups(conn: &Connection) -> Result<std::collections::BTreeMap<i64, Vec<String>>> {
    let mut stmt = conn.prepare(
        "SELECT member_id, group_name FROM cluster_group_members ORDER BY member_id, group_name",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = std::collections::BTreeMap::<i64, Vec<String>>::new();
    for row in rows {
        let (id, group) = row?;
        out.entry(id).or_default().push(group);
    }
    Ok(out)
}
