//! The `storage_volumes` table: every instance volume, its pool, the member holding it and
//! its size.
//!
//! Written with the instance's own commands where they go together (a rename, a delete and
//! a move's ownership switch update the volume row in the same transaction) and by
//! [`crate::Command::UpsertVolume`] / [`crate::Command::DeleteVolume`]. Before schema update
//! 8 reaches a member's DB the table does not exist: reads are then empty and the writes
//! that ride on instance commands do nothing, so the log applies the same on every member.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use crate::Result;

/// One volume as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    /// Pool name.
    pub pool: String,
    /// Project (`"default"`).
    pub project: String,
    /// Volume name: the instance name for instance volumes.
    pub name: String,
    /// LXD's volume type: `"container"` (or `"virtual-machine"`, `"custom"`).
    pub kind: String,
    /// The member holding the volume (for `shared-fs`, the one that owns it).
    pub member: String,
    /// Bytes on disk: for a volume layered on an image, its own changes only.
    pub size: u64,
}

/// The type of an instance volume.
pub const CONTAINER: &str = "container";

/// Whether schema update 8 has created the table in this DB.
pub(crate) fn table_exists(conn: &Connection) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'storage_volumes'",
            [],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<VolumeRecord> {
    Ok(VolumeRecord {
        pool: r.get(0)?,
        project: r.get(1)?,
        name: r.get(2)?,
        kind: r.get(3)?,
        member: r.get(4)?,
        size: r.get::<_, i64>(5)?.max(0) as u64,
    })
}

const COLUMNS: &str = "pool, project, name, type, member, size";

/// The volumes of `pool`, by project, type and name.
pub fn list(conn: &Connection, pool: &str) -> Result<Vec<VolumeRecord>> {
    if !table_exists(conn)? {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM storage_volumes WHERE pool = ?1 ORDER BY project, type, name"
    ))?;
    let rows = stmt.query_map(params![pool], from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The volume of instance `name` in `project`, on whatever pool.
pub fn of_instance(conn: &Connection, project: &str, name: &str) -> Result<Option<VolumeRecord>> {
    if !table_exists(conn)? {
        return Ok(None);
    }
    Ok(conn
        .query_row(
            &format!(
                "SELECT {COLUMNS} FROM storage_volumes WHERE project = ?1 AND name = ?2 AND type = ?3"
            ),
            params![project, name, CONTAINER],
            from_row,
        )
        .optional()?)
}

pub(crate) fn upsert(conn: &Connection, v: &VolumeRecord) -> Result<()> {
    if !table_exists(conn)? {
        return Ok(());
    }
    conn.execute(
        "INSERT INTO storage_volumes (pool, project, name, type, member, size)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (pool, project, name, type)
         DO UPDATE SET member = excluded.member, size = excluded.size",
        params![
            v.pool,
            v.project,
            v.name,
            v.kind,
            v.member,
            v.size.min(i64::MAX as u64) as i64
        ],
    )?;
    Ok(())
}

pub(crate) fn delete(
    conn: &Connection,
    pool: &str,
    project: &str,
    name: &str,
    kind: &str,
) -> Result<()> {
    if table_exists(conn)? {
        conn.execute(
            "DELETE FROM storage_volumes WHERE pool = ?1 AND project = ?2 AND name = ?3 AND type = ?4",
            params![pool, project, name, kind],
        )?;
    }
    Ok(())
}

/// The instance `name` was renamed: so is its volume.
pub(crate) fn rename_instance(
    conn: &Connection,
    project: &str,
    name: &str,
    new_name: &str,
) -> Result<()> {
    if table_exists(conn)? {
        conn.execute(
            "UPDATE storage_volumes SET name = ?3 WHERE project = ?1 AND name = ?2 AND type = ?4",
            params![project, name, new_name, CONTAINER],
        )?;
    }
    Ok(())
}

/// The instance `name` was deleted: so is its volume row.
pub(crate) fn delete_instance(conn: &Connection, project: &str, name: &str) -> Result<()> {
    if table_exists(conn)? {
        conn.execute(
            "DELETE FROM storage_volumes WHERE project = ?1 AND name = ?2 AND type = ?3",
            params![project, name, CONTAINER],
        )?;
    }
    Ok(())
}

/// The instance `name` now belongs to `member`: so does its volume.
pub(crate) fn move_instance(
    conn: &Connection,
    project: &str,
    name: &str,
    member: &str,
) -> Result<()> {
    if table_exists(conn)? {
        conn.execute(
            "UPDATE storage_volumes SET member = ?3 WHERE project = ?1 AND name = ?2 AND type = ?4",
            params![project, name, member, CONTAINER],
        )?;
    }
    Ok(())
}
