//! The server `config` table.

use api::ConfigMap;
use rusqlite::Connection;

use crate::Result;

/// All server config keys.
pub fn all(conn: &Connection) -> Result<ConfigMap> {
    let mut stmt = conn.prepare("SELECT key, value FROM config ORDER BY key")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
