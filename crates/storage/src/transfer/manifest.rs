//! What a sender saw of each entry when it sent it: the base of a later delta.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

/// The identity and change stamps of one entry as it was when sent.
///
/// `ctime` is the key field: the kernel updates it on every content, metadata, xattr or link
/// count change and user space cannot set it back, so an unchanged stamp means an unchanged
/// entry (mtime and size alone can be forged by `touch -r` after a write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    mode: u32,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    pub(crate) fn of(m: &Metadata) -> Self {
        Self {
            dev: m.dev(),
            ino: m.ino(),
            mode: m.mode(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }

    /// A stamp that equals no real one: the entry changed while it was read (it shrank), so
    /// the next delta must send it again.
    pub(crate) fn dirty(mut self) -> Self {
        self.ctime = (i64::MIN, -1);
        self
    }
}

/// Every entry a `send_full`/`send_delta` of one source directory covered, by path relative
/// to that directory, with its [`Stamp`] taken *before* its data was read.
///
/// # Correctness
///
/// A manifest is only meaningful as the base of a delta of the **same directory on the same
/// machine** (it holds device and inode numbers and ctimes): pass the manifest returned by
/// the previous send of that directory to [`super::send_delta`]. It is kept in memory by the
/// mover; after a daemon restart, start again with a full send into a fresh staging dir.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    pub(crate) entries: HashMap<PathBuf, Stamp>,
}

impl Manifest {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
