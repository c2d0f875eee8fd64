//! The `cluster_groups` table and who belongs to which group.
//!
//! Membership is kept by member id, so it follows a member through a rename and goes with
//! it when the member is removed. The group `default` always exists; every new member
//! joins it.

use rusqlite::{Connection, OptionalExtension, params};

use crate::Result;

/// The group every new member joins, which cannot be deleted or renamed.
pub const DEFAULT: &str = "default";

/// One cluster group as stored, with its members' names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterGroupRecord {
    /// `"default"`, `"gpu"`.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Its members' names, by member id.
    pub members: Vec<String>,
}

/// All groups, by name.
pub fn list(conn: &Connection) -> Result<Vec<ClusterGroupRecord>> {
    let mut stmt = conn.prepare("SELECT name, description FROM cluster_groups ORDER BY name")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (name, description) = row?;
        let members = members_of(conn, &name)?;
        out.push(ClusterGroupRecord {
            name,
            description,
            members,
        });
    }
    Ok(out)
}

/// The group `name`, if any.
pub fn get(conn: &Connection, name: &str) -> Result<Option<ClusterGroupRecord>> {
    let Some(description) = conn
        .query_row(
            "SELECT description FROM cluster_groups WHERE name = ?1",
            params![name],
            |r| r.get::<_, String>(0),
        )
        .optional()?
    else {
        return Ok(None);
    };
    Ok(Some(ClusterGroupRecord {
        name: name.to_string(),
        description,
        members: members_of(conn, name)?,
    }))
}

fn members_of(conn: &Connection, group: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT m.name FROM cluster_group_members g JOIN members m ON m.id = g.member_id
         WHERE g.group_name = ?1 ORDER BY m.id",
    )?;
    let rows = stmt.query_map(params![group], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
