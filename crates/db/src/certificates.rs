//! The `certificates` table: the trust store.

use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One trusted certificate as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateRecord {
    /// SHA-256 of the DER certificate, lowercase hex (the key).
    pub fingerprint: String,
    /// `"client"` (LXD also has `"server"` and `"metrics"`).
    #[serde(rename = "type")]
    pub kind: String,
    /// A name for people (`"laptop"`; the certificate's CN when none was given).
    pub name: String,
    /// The certificate, PEM.
    pub certificate: String,
    /// Whether the holder is limited to `projects`.
    pub restricted: bool,
    /// Projects a restricted holder may use.
    pub projects: Vec<String>,
}

const COLUMNS: &str = "fingerprint, type, name, certificate, restricted, projects";

fn from_row(r: &Row<'_>) -> rusqlite::Result<(CertificateRecord, String)> {
    Ok((
        CertificateRecord {
            fingerprint: r.get(0)?,
            kind: r.get(1)?,
            name: r.get(2)?,
            certificate: r.get(3)?,
            restricted: r.get(4)?,
            projects: Vec::new(),
        },
        r.get(5)?,
    ))
}

fn finish(raw: (CertificateRecord, String)) -> Result<CertificateRecord> {
    let (mut rec, projects) = raw;
    rec.projects = serde_json::from_str(&projects)?;
    Ok(rec)
}

/// All certificates, by fingerprint.
pub fn list(conn: &Connection) -> Result<Vec<CertificateRecord>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM certificates ORDER BY fingerprint"
    ))?;
    let rows = stmt.query_map([], from_row)?;
    rows.map(|r| finish(r?)).collect()
}

/// The certificate with exactly this fingerprint, if trusted.
pub fn get(conn: &Connection, fingerprint: &str) -> Result<Option<CertificateRecord>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM certificates WHERE fingerprint = ?1"),
        params![fingerprint],
        from_row,
    )
    .optional()?
    .map(finish)
    .transpose()
}

/// The one certificate whose fingerprint starts with `prefix` (LXD accepts prefixes in
/// `/1.0/certificates/{fingerprint}`).
///
/// # Errors
///
/// [`Error::NotFound`] when none matches, [`Error::Exists`] when several do (the prefix is
/// ambiguous).
pub fn get_by_prefix(conn: &Connection, prefix: &str) -> Result<CertificateRecord> {
    let pattern = format!("{}%", prefix.replace(['%', '_'], ""));
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM certificates WHERE fingerprint LIKE ?1 ORDER BY fingerprint LIMIT 2"
    ))?;
    let mut found = stmt
        .query_map(params![pattern], from_row)?
        .map(|r| finish(r?))
        .collect::<Result<Vec<_>>>()?;
    match found.len() {
        0 => Err(Error::NotFound("certificate".into())),
        1 => Ok(found.remove(0)),
        _ => Err(Error::Exists(format!(
            "more than one certificate matching {prefix:?}"
        ))),
    }
}

pub(crate) fn insert(tx: &Transaction<'_>, rec: &CertificateRecord) -> Result<()> {
    tx.execute(
        &format!("INSERT INTO certificates ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
        params![
            rec.fingerprint,
            rec.kind,
            rec.name,
            rec.certificate,
            rec.restricted,
            serde_json::to_string(&rec.projects)?
        ],
    )
    .map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Error::Exists("certificate".into())
        }
        e => Error::Sqlite(e),
    })?;
    Ok(())
}
