//! Space on the filesystem holding a pool.

use std::path::Path;

use super::error::PoolError;

/// Space of the filesystem a pool lives on, in bytes (`GET /1.0/storage-pools/<p>/resources`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    /// Filesystem size.
    pub total: u64,
    /// Used by anything (not only this pool).
    pub used: u64,
    /// Available to unprivileged writers.
    pub available: u64,
}

impl PoolUsage {
    /// Reads `statvfs` of the filesystem holding `path`.
    pub fn of(path: &Path) -> Result<Self, PoolError> {
        let st = nix::sys::statvfs::statvfs(path)
            .map_err(|e| PoolError::io("statvfs", path)(std::io::Error::from(e)))?;
        let frag = st.fragment_size();
        let total = st.blocks() * frag;
        let free = st.blocks_free() * frag;
        Ok(Self {
            total,
            used: total.saturating_sub(free),
            available: st.blocks_available() * frag,
        })
    }
}
