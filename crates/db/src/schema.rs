//! Numbered schema updates. Append only: update N is applied once, in order, and recorded
//! in `schema(version)`; a DB at a higher version than [`LATEST`] is refused.
//!
//! # Schema changes in a cluster
//!
//! Every member holds a copy of the same DB, so a schema change must happen at the same
//! point of the replicated log on every member, never when each one happens to restart on
//! a new binary. The smallest design that keeps that true:
//!
//! - A new file (version 0, no data) is brought to [`LATEST`] when opened: a first member
//!   is alone, and a joiner's copy is replaced by the cluster's snapshot. An existing file
//!   gets, when opened or restored, only the updates up to [`LOCAL_UNTIL`] (those from
//!   before this rule); every later update reaches it as a replicated
//!   [`crate::Command::UpdateSchema`], applied inside the log entry's transaction.
//! - Each member reports its binary's [`LATEST`] and API extension count in its member row
//!   at join and at every start ([`crate::Command::ReportMember`]). Once every member
//!   reports at least `v` and the DB is below it, a member proposes `UpdateSchema { v }`
//!   (harmless if two do: the second changes nothing).
//! - A member whose binary is older than the cluster (the DB or another member reports a
//!   higher version) refuses writes (LXD: "this node's version is behind, please
//!   upgrade"). Should it still meet an `UpdateSchema` beyond its binary, applying fails as
//!   an environment failure ([`crate::Error::SchemaTooNew`]) and its Raft node stops
//!   instead of diverging.

use rusqlite::{Connection, params};

use crate::{Error, Result};

/// The updates, in order; update `i + 1` is `UPDATES[i]`.
const UPDATES: &[&str] = &[
    // 1: the first schema.
    r#"
CREATE TABLE members (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    address TEXT NOT NULL,
    state INTEGER NOT NULL,
    architecture TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    failure_domain TEXT NOT NULL DEFAULT 'default'
);
CREATE TABLE config (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE storage_pools (
    name TEXT PRIMARY KEY,
    driver TEXT NOT NULL,
    description TEXT NOT NULL,
    config TEXT NOT NULL
);
CREATE TABLE profiles (
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    config TEXT NOT NULL,
    devices TEXT NOT NULL,
    PRIMARY KEY (project, name)
);
CREATE TABLE images (
    fingerprint TEXT PRIMARY KEY,
    filename TEXT NOT NULL,
    size INTEGER NOT NULL,
    architecture TEXT NOT NULL,
    type TEXT NOT NULL,
    public INTEGER NOT NULL,
    properties TEXT NOT NULL,
    templates TEXT NOT NULL,
    created_at TEXT NOT NULL,
    uploaded_at TEXT NOT NULL,
    last_used_at TEXT NOT NULL
);
CREATE TABLE image_aliases (
    name TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL REFERENCES images(fingerprint) ON DELETE CASCADE,
    description TEXT NOT NULL
);
CREATE TABLE instances (
    id INTEGER PRIMARY KEY,
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    member TEXT NOT NULL,
    architecture TEXT NOT NULL,
    config TEXT NOT NULL,
    devices TEXT NOT NULL,
    profiles TEXT NOT NULL,
    ephemeral INTEGER NOT NULL,
    description TEXT NOT NULL,
    created_at TEXT NOT NULL,
    last_used_at TEXT NOT NULL,
    UNIQUE (project, name)
);
"#,
    // 2: where the replicated log stands. Written only together with the commands it
    // accounts for (`Store::apply_entries`), so the data and its log position never disagree.
    r#"
CREATE TABLE raft_state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#,
    // 3: the trust store: certificates whose holders may use the API over HTTPS.
    r#"
CREATE TABLE certificates (
    fingerprint TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    name TEXT NOT NULL,
    certificate TEXT NOT NULL,
    restricted INTEGER NOT NULL DEFAULT 0,
    projects TEXT NOT NULL DEFAULT '[]'
);
"#,
    // 4: clustering. A member's certificate fingerprint (members trust each other by it),
    // the join tokens not used yet, and the highest member id ever handed out (ids are
    // never reused, even after a member leaves).
    r#"
ALTER TABLE members ADD COLUMN fingerprint TEXT NOT NULL DEFAULT '';
CREATE TABLE cluster_tokens (
    secret TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    operation TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE TABLE member_ids (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"#,
    // 5: cluster groups (membership by member id, so it survives renames; every member
    // starts in `default`), member config, and what each member reports of itself: the
    // schema and API extension count of its binary, and its memory and CPUs (placement).
    r#"
ALTER TABLE members ADD COLUMN config TEXT NOT NULL DEFAULT '{}';
ALTER TABLE members ADD COLUMN schema INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN api_extensions INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN memory INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN cpus INTEGER NOT NULL DEFAULT 0;
CREATE TABLE cluster_groups (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL
);
CREATE TABLE cluster_group_members (
    group_name TEXT NOT NULL REFERENCES cluster_groups(name) ON UPDATE CASCADE ON DELETE CASCADE,
    member_id INTEGER NOT NULL REFERENCES members(id) ON DELETE CASCADE,
    PRIMARY KEY (group_name, member_id)
);
INSERT INTO cluster_groups (name, description) VALUES ('default', 'Default cluster group');
INSERT INTO cluster_group_members (group_name, member_id) SELECT 'default', id FROM members;
"#,
    // 6: the journal of instance moves between members (one row per move and its step).
    r#"
CREATE TABLE moves (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    instance TEXT NOT NULL,
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    pool TEXT NOT NULL,
    copy_data INTEGER NOT NULL,
    was_running INTEGER NOT NULL,
    step TEXT NOT NULL,
    error TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX moves_unfinished ON moves (step) WHERE step NOT IN ('done', 'failed');
"#,
    // 7: the journal of a member's evacuation or restore (one row per instance of its plan).
    r#"
CREATE TABLE evacuations (
    member TEXT NOT NULL,
    kind TEXT NOT NULL,
    operation TEXT NOT NULL,
    project TEXT NOT NULL,
    instance TEXT NOT NULL,
    action TEXT NOT NULL,
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    reason TEXT NOT NULL,
    step TEXT NOT NULL,
    was_running INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    error TEXT NOT NULL,
    PRIMARY KEY (member, project, instance)
);
"#,
    // 8: storage pools per member (each member's own `source` and state; LXD's pending
    // pools) and the volumes of instances with their pool, member and size.
    r#"
ALTER TABLE storage_pools ADD COLUMN state TEXT NOT NULL DEFAULT 'Created';
CREATE TABLE storage_pool_members (
    pool TEXT NOT NULL REFERENCES storage_pools(name) ON DELETE CASCADE,
    member TEXT NOT NULL,
    config TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (pool, member)
);
CREATE TABLE storage_volumes (
    pool TEXT NOT NULL,
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    member TEXT NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (pool, project, name, type)
);
"#,
];

/// The newest schema version this binary knows.
pub const LATEST: i64 = UPDATES.len() as i64;

/// The last update a member applies to its own copy when it opens it. These predate
/// replicated schema changes; every later one is applied only by
/// [`crate::Command::UpdateSchema`], at the same log index on every member.
pub const LOCAL_UNTIL: i64 = 6;

/// The schema version of a DB opened through [`crate::Store`], whose `schema` table exists:
/// [`version`] without its `CREATE TABLE IF NOT EXISTS`, with a statement compiled once.
/// Every replicated write checks it ([`crate::members::schemas`] too), concurrently with the
/// work it records: compiling both statements each time was the SQL parser's share of a
/// start.
pub fn current(conn: &Connection) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT COALESCE(MAX(version), 0) FROM schema")?
        .query_row([], |r| r.get(0))?)
}

/// The schema version of `conn` (`0` for a new file).
pub fn version(conn: &Connection) -> Result<i64> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema (version INTEGER NOT NULL)")?;
    Ok(
        conn.query_row("SELECT COALESCE(MAX(version), 0) FROM schema", [], |r| {
            r.get(0)
        })?,
    )
}

/// Brings a DB opened or restored on this member up to date, one transaction per update:
/// a new file (version 0, no data yet) to [`LATEST`]; an existing one only up to
/// [`LOCAL_UNTIL`], the later updates arriving through the replicated log. Returns the
/// version reached.
pub fn update(conn: &mut Connection) -> Result<i64> {
    let current = version(conn)?;
    if current > LATEST {
        return Err(Error::SchemaTooNew {
            found: current,
            supported: LATEST,
        });
    }
    let target = if current == 0 {
        LATEST
    } else {
        LOCAL_UNTIL.min(LATEST).max(current)
    };
    for (i, sql) in UPDATES
        .iter()
        .enumerate()
        .take(target as usize)
        .skip(current as usize)
    {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema (version) VALUES (?1)",
            params![i as i64 + 1],
        )?;
        tx.commit()?;
    }
    Ok(target)
}

/// Applies, inside `tx`, every update up to `to` the DB does not have yet; nothing when it
/// has them all.
///
/// # Errors
///
/// [`Error::SchemaTooNew`] (not deterministic: a member whose binary is too old stops
/// applying the log rather than diverge) when `to` is beyond [`LATEST`].
pub(crate) fn update_to(tx: &rusqlite::Transaction<'_>, to: i64) -> Result<()> {
    if to > LATEST {
        return Err(Error::SchemaTooNew {
            found: to,
            supported: LATEST,
        });
    }
    let current = version(tx)?;
    for (i, sql) in UPDATES
        .iter()
        .enumerate()
        .take(to.max(0) as usize)
        .skip(current as usize)
    {
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema (version) VALUES (?1)",
            params![i as i64 + 1],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DB written by a drover whose newest update was [`LOCAL_UNTIL`].
    fn db_at_local_until() -> Connection {
        let mut conn = Connection::open_in_memory().expect("open");
        let tx = conn.transaction().expect("tx");
        update_to(&tx, LOCAL_UNTIL).expect("the local updates");
        tx.commit().expect("commit");
        conn
    }

    #[test]
    fn an_existing_db_gets_later_updates_only_from_the_log() {
        let mut conn = db_at_local_until();
        assert_eq!(version(&conn).expect("version"), LOCAL_UNTIL);
        // Opening it with this binary applies nothing beyond the local updates.
        assert_eq!(update(&mut conn).expect("update"), LOCAL_UNTIL);
        assert_eq!(version(&conn).expect("version"), LOCAL_UNTIL);
        // The replicated command brings it to the end, once; again is a no-op.
        for _ in 0..2 {
            let tx = conn.transaction().expect("tx");
            crate::apply(&tx, &crate::Command::UpdateSchema { version: LATEST })
                .expect("replicated update");
            tx.commit().expect("commit");
            assert_eq!(version(&conn).expect("version"), LATEST);
            assert_eq!(current(&conn).expect("current"), LATEST);
        }
        // A new file gets everything at once.
        let mut fresh = Connection::open_in_memory().expect("open");
        assert_eq!(update(&mut fresh).expect("update"), LATEST);
    }
}
