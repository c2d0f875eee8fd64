//! The `storage_pools` table.

use api::ConfigMap;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::Result;

/// One pool as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolRecord {
    /// Name.
    pub name: String,
    /// `"dir"`.
    pub driver: String,
    /// Free text.
    pub description: String,
    /// Config (`source`).
    pub config: ConfigMap,
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<(String, String, String, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn finish(raw: (String, String, String, String)) -> Result<PoolRecord> {
    Ok(PoolRecord {
        name: raw.0,
        driver: raw.1,
        description: raw.2,
        config: serde_json::from_str(&raw.3)?,
    })
}

/// All pools, by name.
pub fn list(conn: &Connection) -> Result<Vec<PoolRecord>> {
    let mut stmt =
        conn.prepare("SELECT name, driver, description, config FROM storage_pools ORDER BY name")?;
    let rows = stmt.query_map([], from_row)?;
    rows.map(|r| finish(r?)).collect()
}

/// The pool `name`, if any.
pub fn get(conn: &Connection, name: &str) -> Result<Option<PoolRecord>> {
    conn.query_row(
        "SELECT name, driver, description, config FROM storage_pools WHERE name = ?1",
        params![name],
        from_row,
    )
    .optional()?
    .map(finish)
    .transpose()
}
