//! The current snapshot on disk: one file holding the snapshot's metadata and the cluster-DB
//! copy it describes, replaced atomically.
//!
//! Layout: [`MAGIC`], the metadata's JSON length as a big-endian `u64`, the metadata JSON,
//! then the SQLite file's bytes.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use openraft::{BasicNode, SnapshotMeta};

use crate::{Error, Result};

const MAGIC: &[u8; 8] = b"DRVSNAP1";

/// The metadata of a snapshot of [`crate::TypeConfig`].
pub(crate) type Meta = SnapshotMeta<u64, BasicNode>;

/// The files of one state machine's snapshot directory.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotDir {
    dir: PathBuf,
}

impl SnapshotDir {
    /// Creates `dir` if needed and removes what an interrupted build or install left.
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).map_err(Error::io(dir))?;
        let this = Self {
            dir: dir.to_path_buf(),
        };
        for leftover in [this.staging(), this.build_copy(), this.incoming_copy()] {
            match fs::remove_file(&leftover) {
                Ok(()) => tracing::info!(file = ?leftover, "removed a leftover snapshot file"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(leftover)(e)),
            }
        }
        Ok(this)
    }

    fn current(&self) -> PathBuf {
        self.dir.join("current.snapshot")
    }

    fn staging(&self) -> PathBuf {
        self.dir.join("current.snapshot.tmp")
    }

    /// Where a build writes its DB copy before it is read into the snapshot.
    pub(crate) fn build_copy(&self) -> PathBuf {
        self.dir.join("build.db.tmp")
    }

    /// Where an install writes the received DB copy to restore from it.
    pub(crate) fn incoming_copy(&self) -> PathBuf {
        self.dir.join("incoming.db.tmp")
    }

    /// Makes `meta` + `db` the current snapshot.
    ///
    /// # Correctness
    ///
    /// Written to a staging file, synced, renamed over the current one, and the directory
    /// synced: after a crash the current snapshot is wholly the old or wholly the new one.
    pub(crate) fn save(&self, meta: &Meta, db: &[u8]) -> Result<()> {
        let staging = self.staging();
        let meta_json = serde_json::to_vec(meta)?;
        {
            let mut f = File::create(&staging).map_err(Error::io(&staging))?;
            let len = meta_json.len() as u64;
            f.write_all(MAGIC)
                .and_then(|()| f.write_all(&len.to_be_bytes()))
                .and_then(|()| f.write_all(&meta_json))
                .and_then(|()| f.write_all(db))
                .and_then(|()| f.sync_all())
                .map_err(Error::io(&staging))?;
        }
        let current = self.current();
        fs::rename(&staging, &current).map_err(Error::io(&current))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(Error::io(&self.dir))?;
        Ok(())
    }

    /// The current snapshot's metadata and DB bytes, if there is one.
    pub(crate) fn load(&self) -> Result<Option<(Meta, Vec<u8>)>> {
        let current = self.current();
        let bytes = match fs::read(&current) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(current)(e)),
        };
        let bad = |what: &str| Error::BadSnapshot(format!("{current:?}: {what}"));
        let rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| bad("not a drover snapshot"))?;
        let (len, rest) = rest
            .split_first_chunk::<8>()
            .ok_or_else(|| bad("truncated header"))?;
        let len = usize::try_from(u64::from_be_bytes(*len)).map_err(|_| bad("bad length"))?;
        if rest.len() < len {
            return Err(bad("truncated metadata"));
        }
        let (meta, db) = rest.split_at(len);
        Ok(Some((serde_json::from_slice(meta)?, db.to_vec())))
    }
}
