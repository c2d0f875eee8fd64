//! The `storage_pools` table and, per member, `storage_pool_members`.
//!
//! A pool is defined cluster-wide (name, driver, description, global config) and holds, per
//! member, that member's own config (`source`) and state. LXD's flow: each
//! `POST /1.0/storage-pools?target=mX` records member `mX`'s config with the pool
//! [`PoolState::Pending`]; the final `POST` without target makes it [`PoolState::Created`]
//! everywhere. A pool created on a single member directly has no pending phase.
//!
//! Before schema update 8 there is no per-member table and no state column: every pool is
//! created and has no member rows, as before.

use std::collections::BTreeMap;

use api::ConfigMap;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use crate::Result;

/// Where a pool (or one member's part of it) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolState {
    /// Defined on some members with `?target=`, not created yet.
    Pending,
    /// Usable.
    Created,
    /// Creation failed on some member.
    Errored,
}

impl PoolState {
    /// As stored and as LXD's `status` field (`"Pending"`, `"Created"`, `"Errored"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Created => "Created",
            Self::Errored => "Errored",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "Pending" => Self::Pending,
            "Errored" => Self::Errored,
            _ => Self::Created,
        }
    }
}

/// One pool as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolRecord {
    /// Name.
    pub name: String,
    /// `"dir"` or `"shared-fs"`.
    pub driver: String,
    /// Free text.
    pub description: String,
    /// Global config (`source` of a `shared-fs` pool, `user.*`; for a pool created before
    /// per-member config, also the creating member's `source`).
    pub config: ConfigMap,
    /// Pool state.
    pub state: PoolState,
    /// Each member's own config and state, by member name.
    pub members: BTreeMap<String, MemberPool>,
}

/// One member's part of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberPool {
    /// Member-specific config (`source`).
    pub config: ConfigMap,
    /// Its state on that member.
    pub state: PoolState,
}

impl PoolRecord {
    /// The `source` of this pool on `member`: its own, else the global one.
    pub fn source_on(&self, member: &str) -> Option<&str> {
        self.members
            .get(member)
            .and_then(|m| m.config.get("source"))
            .or_else(|| self.config.get("source"))
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
}

fn has_member_table(conn: &Connection) -> Result<bool> {
    // Cached, as every statement of a pool read: a start reads its root disk's pool, and
    // compiling this one and the two below took ~0.1 ms of it.
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'storage_pool_members'",
        )?
        .query_row([], |_| Ok(()))
        .optional()?
        .is_some())
}

fn from_row(r: &Row<'_>) -> rusqlite::Result<(String, String, String, String, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

fn finish(conn: &Connection, raw: (String, String, String, String, String)) -> Result<PoolRecord> {
    let mut members = BTreeMap::new();
    if has_member_table(conn)? {
        let mut stmt = conn.prepare_cached(
            "SELECT member, config, state FROM storage_pool_members WHERE pool = ?1 ORDER BY member",
        )?;
        let rows = stmt.query_map(params![raw.0], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (member, config, state) = row?;
            members.insert(
                member,
                MemberPool {
                    config: serde_json::from_str(&config)?,
                    state: PoolState::parse(&state),
                },
            );
        }
    }
    Ok(PoolRecord {
        name: raw.0,
        driver: raw.1,
        description: raw.2,
        config: serde_json::from_str(&raw.3)?,
        state: PoolState::parse(&raw.4),
        members,
    })
}

fn select(conn: &Connection) -> &'static str {
    if has_member_table(conn).unwrap_or(false) {
        "SELECT name, driver, description, config, state FROM storage_pools"
    } else {
        "SELECT name, driver, description, config, 'Created' FROM storage_pools"
    }
}

/// All pools, by name.
pub fn list(conn: &Connection) -> Result<Vec<PoolRecord>> {
    let mut stmt = conn.prepare(&format!("{} ORDER BY name", select(conn)))?;
    let raws = stmt
        .query_map([], from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    raws.into_iter().map(|r| finish(conn, r)).collect()
}

/// The pool `name`, if any.
pub fn get(conn: &Connection, name: &str) -> Result<Option<PoolRecord>> {
    conn.prepare_cached(&format!("{} WHERE name = ?1", select(conn)))?
        .query_row(params![name], from_row)
        .optional()?
        .map(|r| finish(conn, r))
        .transpose()
}

/// `DefinePoolMember`: the pool (created pending if new) gets `member`'s config.
pub(crate) fn define_member(
    conn: &Connection,
    name: &str,
    driver: &str,
    description: &str,
    member: &str,
    config: &ConfigMap,
) -> Result<()> {
    require_member_table(conn)?;
    match get(conn, name)? {
        None => {
            conn.execute(
                "INSERT INTO storage_pools (name, driver, description, config, state)
                 VALUES (?1, ?2, ?3, '{}', ?4)",
                params![name, driver, description, PoolState::Pending.as_str()],
            )?;
        }
        Some(p) if p.state != PoolState::Pending => {
            return Err(crate::Error::Refused(format!(
                "Storage pool {name:?} is already created"
            )));
        }
        Some(p) if p.driver != driver => {
            return Err(crate::Error::Refused(format!(
                "Storage pool {name:?} is defined with driver {:?}",
                p.driver
            )));
        }
        Some(p) if p.members.contains_key(member) => {
            return Err(crate::Error::Refused(format!(
                "The storage pool already defined on member {member:?}"
            )));
        }
        Some(_) => {}
    }
    set_member(conn, name, member, config, PoolState::Pending)
}

/// `SetPoolMember`: `member`'s config and state of an existing pool.
pub(crate) fn set_member(
    conn: &Connection,
    name: &str,
    member: &str,
    config: &ConfigMap,
    state: PoolState,
) -> Result<()> {
    if !has_member_table(conn)? {
        return Ok(());
    }
    let n = conn.query_row(
        "SELECT COUNT(*) FROM storage_pools WHERE name = ?1",
        params![name],
        |r| r.get::<_, i64>(0),
    )?;
    if n == 0 {
        return Err(crate::Error::NotFound(format!("storage pool {name:?}")));
    }
    conn.execute(
        "INSERT INTO storage_pool_members (pool, member, config, state) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (pool, member) DO UPDATE SET config = excluded.config, state = excluded.state",
        params![name, member, serde_json::to_string(config)?, state.as_str()],
    )?;
    Ok(())
}

/// `FinishPool`: the pending pool gets its global config and description and becomes
/// `state`, as do all its member rows.
pub(crate) fn finish_pool(
    conn: &Connection,
    name: &str,
    description: &str,
    config: &ConfigMap,
    state: PoolState,
) -> Result<()> {
    require_member_table(conn)?;
    let Some(p) = get(conn, name)? else {
        return Err(crate::Error::NotFound(format!("storage pool {name:?}")));
    };
    if p.state == PoolState::Created {
        return Err(crate::Error::Refused(format!(
            "Storage pool {name:?} is already created"
        )));
    }
    conn.execute(
        "UPDATE storage_pools SET description = ?2, config = ?3, state = ?4 WHERE name = ?1",
        params![
            name,
            description,
            serde_json::to_string(config)?,
            state.as_str()
        ],
    )?;
    conn.execute(
        "UPDATE storage_pool_members SET state = ?2 WHERE pool = ?1",
        params![name, state.as_str()],
    )?;
    Ok(())
}

fn require_member_table(conn: &Connection) -> Result<()> {
    if has_member_table(conn)? {
        Ok(())
    } else {
        Err(crate::Error::Refused(
            "per-member storage pool config needs schema update 8 on every member".into(),
        ))
    }
}
