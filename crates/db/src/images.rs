//! The `images` and `image_aliases` tables.

use api::ConfigMap;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One image as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// SHA-256.
    pub fingerprint: String,
    /// Upload file name.
    pub filename: String,
    /// Bytes.
    pub size: i64,
    /// `"x86_64"`.
    pub architecture: String,
    /// `"container"`.
    pub kind: String,
    /// Visible to untrusted clients.
    pub public: bool,
    /// From `metadata.yaml`.
    pub properties: ConfigMap,
    /// The `templates` section of `metadata.yaml`, as JSON.
    pub templates: serde_json::Value,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub uploaded_at: String,
    /// RFC 3339.
    pub last_used_at: String,
}

/// An alias.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasRecord {
    /// Alias name.
    pub name: String,
    /// Target fingerprint.
    pub fingerprint: String,
    /// Free text.
    pub description: String,
}

const COLUMNS: &str = "fingerprint, filename, size, architecture, type, public, properties, templates, created_at, uploaded_at, last_used_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<(ImageRecord, String, String)> {
    Ok((
        ImageRecord {
            fingerprint: r.get(0)?,
            filename: r.get(1)?,
            size: r.get(2)?,
            architecture: r.get(3)?,
            kind: r.get(4)?,
            public: r.get(5)?,
            properties: ConfigMap::new(),
            templates: serde_json::Value::Null,
            created_at: r.get(8)?,
            uploaded_at: r.get(9)?,
            last_used_at: r.get(10)?,
        },
        r.get(6)?,
        r.get(7)?,
    ))
}

fn finish(raw: (ImageRecord, String, String)) -> Result<ImageRecord> {
    let (mut rec, props, templates) = raw;
    rec.properties = serde_json::from_str(&props)?;
    rec.templates = serde_json::from_str(&templates)?;
    Ok(rec)
}

pub(crate) fn insert(conn: &Connection, rec: &ImageRecord) -> Result<()> {
    conn.execute(
        &format!(
            "INSERT INTO images ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
        ),
        params![
            rec.fingerprint,
            rec.filename,
            rec.size,
            rec.architecture,
            rec.kind,
            rec.public,
            serde_json::to_string(&rec.properties)?,
            serde_json::to_string(&rec.templates)?,
            rec.created_at,
            rec.uploaded_at,
            rec.last_used_at,
        ],
    )
    .map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Error::Exists(format!("image {:?}", rec.fingerprint))
        }
        e => Error::Sqlite(e),
    })?;
    Ok(())
}

/// All images, by fingerprint.
pub fn list(conn: &Connection) -> Result<Vec<ImageRecord>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM images ORDER BY fingerprint"
    ))?;
    let rows = stmt.query_map([], from_row)?;
    rows.map(|r| finish(r?)).collect()
}

/// The image whose fingerprint is `fp` or starts with it; an error if the prefix is
/// ambiguous.
pub fn get_by_prefix(conn: &Connection, fp: &str) -> Result<Option<ImageRecord>> {
    if fp.is_empty() {
        return Ok(None);
    }
    let pattern = format!("{}%", fp.replace(['%', '_'], ""));
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM images WHERE fingerprint LIKE ?1 LIMIT 2"
    ))?;
    let rows: Vec<_> = stmt
        .query_map(params![pattern], from_row)?
        .collect::<rusqlite::Result<_>>()?;
    match rows.len() {
        0 => Ok(None),
        1 => rows.into_iter().next().map(finish).transpose(),
        _ => Err(Error::Corrupt(format!(
            "image fingerprint prefix {fp:?} is ambiguous"
        ))),
    }
}

/// All aliases, by name.
pub fn aliases(conn: &Connection) -> Result<Vec<AliasRecord>> {
    let mut stmt =
        conn.prepare("SELECT name, fingerprint, description FROM image_aliases ORDER BY name")?;
    let rows = stmt.query_map([], |r| {
        Ok(AliasRecord {
            name: r.get(0)?,
            fingerprint: r.get(1)?,
            description: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The alias `name`, if any.
pub fn alias(conn: &Connection, name: &str) -> Result<Option<AliasRecord>> {
    Ok(conn
        .query_row(
            "SELECT name, fingerprint, description FROM image_aliases WHERE name = ?1",
            params![name],
            |r| {
                Ok(AliasRecord {
                    name: r.get(0)?,
                    fingerprint: r.get(1)?,
                    description: r.get(2)?,
                })
            },
        )
        .optional()?)
}
