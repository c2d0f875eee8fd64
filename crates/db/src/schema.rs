//! Numbered schema updates. Append only: update N is applied once, in order, and recorded
//! in `schema(version)`; a DB at a higher version than [`LATEST`] is refused.

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
];

/// The newest schema version this binary knows.
pub const LATEST: i64 = UPDATES.len() as i64;

/// Brings `conn` up to [`LATEST`], one transaction per update.
pub fn update(conn: &mut Connection) -> Result<i64> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema (version INTEGER NOT NULL)")?;
    let current: i64 = conn.query_row("SELECT COALESCE(MAX(version), 0) FROM schema", [], |r| {
        r.get(0)
    })?;
    if current > LATEST {
        return Err(Error::SchemaTooNew {
            found: current,
            supported: LATEST,
        });
    }
    for (i, sql) in UPDATES.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema (version) VALUES (?1)",
            params![i as i64 + 1],
        )?;
        tx.commit()?;
    }
    Ok(LATEST)
}
