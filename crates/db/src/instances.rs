//! The `instances` table.

use api::{ConfigMap, DeviceMap};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One instance as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// `"default"`.
    pub project: String,
    /// Name, unique in its project.
    pub name: String,
    /// `"container"` or `"virtual-machine"`.
    pub kind: String,
    /// The member that holds it.
    pub member: String,
    /// `"x86_64"`.
    pub architecture: String,
    /// Local config.
    pub config: ConfigMap,
    /// Local devices.
    pub devices: DeviceMap,
    /// Profiles, in order.
    pub profiles: Vec<String>,
    /// Deleted when stopped.
    pub ephemeral: bool,
    /// Free text.
    pub description: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339 of the last start (`1970-01-01T00:00:00Z` if never).
    pub last_used_at: String,
}

const COLUMNS: &str = "project, name, type, member, architecture, config, devices, profiles, ephemeral, description, created_at, last_used_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<(InstanceRecord, String, String, String)> {
    Ok((
        InstanceRecord {
            project: r.get(0)?,
            name: r.get(1)?,
            kind: r.get(2)?,
            member: r.get(3)?,
            architecture: r.get(4)?,
            config: ConfigMap::new(),
            devices: DeviceMap::new(),
            profiles: Vec::new(),
            ephemeral: r.get(8)?,
            description: r.get(9)?,
            created_at: r.get(10)?,
            last_used_at: r.get(11)?,
        },
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

fn finish(raw: (InstanceRecord, String, String, String)) -> Result<InstanceRecord> {
    let (mut rec, config, devices, profiles) = raw;
    rec.config = serde_json::from_str(&config)?;
    rec.devices = serde_json::from_str(&devices)?;
    rec.profiles = serde_json::from_str(&profiles)?;
    Ok(rec)
}

pub(crate) fn insert(conn: &Connection, rec: &InstanceRecord) -> Result<()> {
    conn.execute(
        &format!("INSERT INTO instances ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
        params![
            rec.project,
            rec.name,
            rec.kind,
            rec.member,
            rec.architecture,
            serde_json::to_string(&rec.config)?,
            serde_json::to_string(&rec.devices)?,
            serde_json::to_string(&rec.profiles)?,
            rec.ephemeral,
            rec.description,
            rec.created_at,
            rec.last_used_at,
        ],
    )
    .map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
            Error::Exists(format!("instance {:?}", rec.name))
        }
        e => Error::Sqlite(e),
    })?;
    Ok(())
}

/// The instance `name` in `project`, if any.
pub fn get(conn: &Connection, project: &str, name: &str) -> Result<Option<InstanceRecord>> {
    // Cached: every instance request reads its record (a statement compiled once).
    let raw = conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM instances WHERE project = ?1 AND name = ?2"
        ))?
        .query_row(params![project, name], from_row)
        .optional()?;
    raw.map(finish).transpose()
}

/// All instances of `project`, by name.
pub fn list(conn: &Connection, project: &str) -> Result<Vec<InstanceRecord>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM instances WHERE project = ?1 ORDER BY name"
    ))?;
    let rows = stmt.query_map(params![project], from_row)?;
    rows.map(|r| finish(r?)).collect()
}

/// All instances held by `member`, any project.
pub fn list_on_member(conn: &Connection, member: &str) -> Result<Vec<InstanceRecord>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM instances WHERE member = ?1 ORDER BY project, name"
    ))?;
    let rows = stmt.query_map(params![member], from_row)?;
    rows.map(|r| finish(r?)).collect()
}

/// Names of instances whose profiles include `profile`, as `(project, name)`.
pub fn using_profile(conn: &Connection, project: &str, profile: &str) -> Result<Vec<String>> {
    Ok(list(conn, project)?
        .into_iter()
        .filter(|i| i.profiles.iter().any(|p| p == profile))
        .map(|i| i.name)
        .collect())
}
