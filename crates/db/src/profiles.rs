//! The `profiles` table.

use api::{ConfigMap, DeviceMap};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::Result;

/// One profile as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileRecord {
    /// Name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Config.
    pub config: ConfigMap,
    /// Devices.
    pub devices: DeviceMap,
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<(String, String, String, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn finish(raw: (String, String, String, String)) -> Result<ProfileRecord> {
    Ok(ProfileRecord {
        name: raw.0,
        description: raw.1,
        config: serde_json::from_str(&raw.2)?,
        devices: serde_json::from_str(&raw.3)?,
    })
}

/// All profiles of `project`, by name.
pub fn list(conn: &Connection, project: &str) -> Result<Vec<ProfileRecord>> {
    let mut stmt = conn.prepare(
        "SELECT name, description, config, devices FROM profiles WHERE project = ?1 ORDER BY name",
    )?;
    let rows = stmt.query_map(params![project], from_row)?;
    rows.map(|r| finish(r?)).collect()
}

/// The profile `name`, if any.
pub fn get(conn: &Connection, project: &str, name: &str) -> Result<Option<ProfileRecord>> {
    // Cached: every start and stop reads its instance's profiles.
    conn.prepare_cached(
        "SELECT name, description, config, devices FROM profiles WHERE project = ?1 AND name = ?2",
    )?
    .query_row(params![project, name], from_row)
    .optional()?
    .map(finish)
    .transpose()
}
