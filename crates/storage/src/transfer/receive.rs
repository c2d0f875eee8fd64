//! The receiving side: read a transfer stream and rebuild the tree under a directory.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, UtimensatFlags, mknod, utimensat};
use nix::sys::time::TimeSpec;

use super::error::TransferError;
use super::format::{EntryHead, FrameReader, Kind, MODE_FULL, Sum, TAG_DELETE, TAG_END, TAG_ENTRY};

/// Buffer of a plain reader (see `send::BUF`).
const BUF: usize = 256 << 10;
/// After each this many bytes of a file, its writeback to disk starts (see
/// [`start_writeback`]).
const WRITEBACK_WINDOW: u64 = 8 << 20;

/// What a receive did, as verified against the sender's end record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiveSummary {
    /// Whether the stream was a delta (else full).
    pub delta: bool,
    /// Entry records applied (the root counts).
    pub entries: u64,
    /// Regular files written.
    pub files: u64,
    /// File data bytes written.
    pub bytes: u64,
    /// Deletion records applied.
    pub deleted: u64,
}

/// Reads a stream from `input` and applies it under `dst`, an existing directory: empty for
/// a full stream, or holding the result of the earlier stream(s) a delta is based on.
///
/// Returns only after the end record was read and everything was checked: each file's
/// digest, the whole-stream digest of the framing, the entry and byte counts, and that
/// nothing follows the end. Every path is checked to stay under `dst` (no absolute paths, no
/// `..`, never through a symlink; hard links only to entries already there).
///
/// # Correctness
///
/// On error `dst` holds a partial tree that must not be used: remove it. Nothing is synced
/// to disk here; [`crate::DirPool::commit`] publishes a staged volume
/// and syncs the filesystem before it returns.
pub fn receive(dst: &Path, input: impl Read) -> Result<ReceiveSummary, TransferError> {
    receive_buffered(dst, BufReader::with_capacity(BUF, input))
}

/// [`receive`] from a buffered input, whose buffer file data is written from (no copy).
pub(crate) fn receive_buffered(
    dst: &Path,
    input: impl BufRead,
) -> Result<ReceiveSummary, TransferError> {
    let mut r = FrameReader::new(input);
    let mode = r.header()?;
    let mut rx = Receiver {
        dst,
        real_dirs: BTreeSet::new(),
        dir_times: Vec::new(),
        summary: ReceiveSummary {
            delta: mode != MODE_FULL,
            ..Default::default()
        },
    };
    loop {
        let tag = r.u8()?;
        match tag {
            TAG_ENTRY => {
                let head = r.entry_head()?;
                rx.entry(&mut r, head)?;
                r.entries += 1;
            }
            TAG_DELETE => {
                if mode == MODE_FULL {
                    return Err(r.corrupt("deletion in a full stream"));
                }
                let path = r.str()?;
                rx.delete(&path)?;
            }
            TAG_END => {
                let (entries, bytes) = r.end()?;
                if entries != rx.summary.entries || bytes != rx.summary.bytes {
                    return Err(TransferError::CountMismatch {
                        expected_entries: entries,
                        expected_bytes: bytes,
                        entries: rx.summary.entries,
                        bytes: rx.summary.bytes,
                    });
                }
                break;
            }
            t => return Err(r.corrupt(format!("unknown record tag {t}"))),
        }
    }
    // Directory mtimes last: creating their children changed them.
    for (path, s, ns) in std::mem::take(&mut rx.dir_times) {
        set_times(&path, s, ns)?;
    }
    Ok(rx.summary)
}

struct Receiver<'a> {
    dst: &'a Path,
    /// Relative paths known to be real directories (not symlinks) under `dst`.
    real_dirs: BTreeSet<Vec<u8>>,
    dir_times: Vec<(PathBuf, i64, u32)>,
    summary: ReceiveSummary,
}

impl Receiver<'_> {
    /// Checks `rel` is a clean relative path whose parents are real directories under `dst`,
    /// and returns its absolute path.
    fn resolve(&mut self, rel: &[u8]) -> Result<PathBuf, TransferError> {
        if rel.is_empty() {
            return Ok(self.dst.to_path_buf());
        }
        let unsafe_path = || TransferError::UnsafePath(String::from_utf8_lossy(rel).into_owned());
        if rel.contains(&0) {
            return Err(unsafe_path());
        }
        let comps: Vec<&[u8]> = rel.split(|b| *b == b'/').collect();
        if comps
            .iter()
            .any(|c| c.is_empty() || *c == b"." || *c == b"..")
        {
            return Err(unsafe_path());
        }
        // Every proper prefix must be a real directory.
        let mut end = 0;
        for c in &comps[..comps.len() - 1] {
            end += c.len();
            let prefix = &rel[..end];
            if !self.real_dirs.contains(prefix) {
                let p = self.dst.join(OsStr::from_bytes(prefix));
                match fs::symlink_metadata(&p) {
                    Ok(m) if m.is_dir() => {
                        self.real_dirs.insert(prefix.to_vec());
                    }
                    _ => return Err(unsafe_path()),
                }
            }
            end += 1;
        }
        Ok(self.dst.join(OsStr::from_bytes(rel)))
    }

    /// Forgets `rel` and everything below it as real directories.
    fn forget(&mut self, rel: &[u8]) {
        self.real_dirs.remove(rel);
        let mut prefix = rel.to_vec();
        prefix.push(b'/');
        let below: Vec<Vec<u8>> = self
            .real_dirs
            .range(prefix.clone()..)
            .take_while(|k| k.starts_with(&prefix))
            .cloned()
            .collect();
        for k in below {
            self.real_dirs.remove(&k);
        }
    }

    fn delete(&mut self, rel: &[u8]) -> Result<(), TransferError> {
        if rel.is_empty() {
            return Err(TransferError::UnsafePath(String::new()));
        }
        let path = self.resolve(rel)?;
        self.forget(rel);
        remove_any(&path)?;
        self.summary.deleted += 1;
        Ok(())
    }

    fn entry<R: BufRead>(
        &mut self,
        r: &mut FrameReader<R>,
        h: EntryHead,
    ) -> Result<(), TransferError> {
        let path = self.resolve(&h.path)?;
        let is_root = h.path.is_empty();
        if is_root && h.kind != Kind::Dir {
            return Err(r.corrupt("the root is not a directory"));
        }
        // In a full stream into an empty directory only the root exists: a collision is
        // an error from create itself (EEXIST), so skip a stat per entry.
        let existing = if self.summary.delta || is_root {
            fs::symlink_metadata(&path).ok()
        } else {
            None
        };
        // Whatever is in the way goes, except a directory that stays a directory.
        if let Some(m) = &existing
            && !(m.is_dir() && h.kind == Kind::Dir)
        {
            self.forget(&h.path);
            remove_any(&path)?;
        }
        match h.kind {
            Kind::Dir => {
                if existing.as_ref().is_none_or(|m| !m.is_dir()) {
                    fs::create_dir(&path).map_err(TransferError::io("create dir", &path))?;
                }
                if !is_root {
                    self.real_dirs.insert(h.path.clone());
                }
                std::os::unix::fs::lchown(&path, Some(h.uid), Some(h.gid))
                    .map_err(TransferError::io("chown", &path))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(h.mode))
                    .map_err(TransferError::io("chmod", &path))?;
                set_xattrs(&path, &h.xattrs, existing.is_some())?;
                self.dir_times.push((path, h.mtime_s, h.mtime_ns));
            }
            Kind::File => {
                let size = r.u64()?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(TransferError::io("create", &path))?;
                let mut hash = Sum::new();
                let (mut left, mut written, mut flushed) = (size, 0u64, 0u64);
                while left > 0 {
                    let piece = r.piece(usize::try_from(left).unwrap_or(usize::MAX))?;
                    let n = piece.len();
                    hash.update(piece);
                    file.write_all(piece)
                        .map_err(TransferError::io("write", &path))?;
                    r.consume(n);
                    left -= n as u64;
                    written += n as u64;
                    if written - flushed >= WRITEBACK_WINDOW {
                        start_writeback(&file, flushed, written - flushed);
                        flushed = written;
                    }
                }
                let want = r.digest()?;
                if hash.digest() != want {
                    return Err(TransferError::FileChecksum {
                        path: String::from_utf8_lossy(&h.path).into_owned(),
                    });
                }
                // chown clears setuid/setgid and file capabilities: chown, chmod, xattrs.
                std::os::unix::fs::fchown(&file, Some(h.uid), Some(h.gid))
                    .map_err(TransferError::io("chown", &path))?;
                file.set_permissions(fs::Permissions::from_mode(h.mode))
                    .map_err(TransferError::io("chmod", &path))?;
                set_xattrs(&path, &h.xattrs, false)?;
                nix::sys::stat::futimens(
                    &file,
                    &TimeSpec::UTIME_OMIT,
                    &TimeSpec::new(h.mtime_s, h.mtime_ns.into()),
                )
                .map_err(|e| TransferError::io("set times of", &path)(e.into()))?;
                drop::<File>(file);
                self.summary.files += 1;
                self.summary.bytes += size;
            }
            Kind::Symlink => {
                let target = r.str()?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
                    .map_err(TransferError::io("create symlink", &path))?;
                std::os::unix::fs::lchown(&path, Some(h.uid), Some(h.gid))
                    .map_err(TransferError::io("chown", &path))?;
                set_xattrs(&path, &h.xattrs, false)?;
                set_times(&path, h.mtime_s, h.mtime_ns)?;
            }
            Kind::HardLink => {
                let target = r.str()?;
                let target_path = self.resolve(&target)?;
                match fs::symlink_metadata(&target_path) {
                    Ok(m) if !m.is_dir() => {}
                    _ => {
                        return Err(TransferError::UnsafePath(
                            String::from_utf8_lossy(&target).into_owned(),
                        ));
                    }
                }
                fs::hard_link(&target_path, &path).map_err(TransferError::io("link", &path))?;
            }
            Kind::CharDev | Kind::BlockDev | Kind::Fifo => {
                let (kind, rdev) = match h.kind {
                    Kind::CharDev => (SFlag::S_IFCHR, r.u64()?),
                    Kind::BlockDev => (SFlag::S_IFBLK, r.u64()?),
                    _ => (SFlag::S_IFIFO, 0),
                };
                mknod(&path, kind, Mode::from_bits_truncate(0o600), rdev)
                    .map_err(|e| TransferError::io("mknod", &path)(e.into()))?;
                std::os::unix::fs::lchown(&path, Some(h.uid), Some(h.gid))
                    .map_err(TransferError::io("chown", &path))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(h.mode))
                    .map_err(TransferError::io("chmod", &path))?;
                set_xattrs(&path, &h.xattrs, false)?;
                set_times(&path, h.mtime_s, h.mtime_ns)?;
            }
        }
        self.summary.entries += 1;
        Ok(())
    }
}

/// Starts writing `len` bytes of `file` from `offset` back to disk without waiting for it,
/// so that big files reach the disk while the stream goes on and the sync that commits a
/// received volume finds little left to write (with GiBs of RAM the kernel would otherwise
/// start only at that sync: ≈ 65 ms per 200 MiB here, inside the move). Advice only:
/// `POSIX_FADV_DONTNEED` starts writeback of the range's dirty pages (Linux), which stay
/// cached (only clean pages are dropped, and these were just written); failure changes
/// nothing.
fn start_writeback(file: &File, offset: u64, len: u64) {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    let _ = nix::fcntl::posix_fadvise(
        file,
        offset,
        len,
        nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
    );
}

/// Sets `xattrs` on `path` (not following symlinks); when `prune`, first removes the ones
/// it has that are not in the list (a directory kept from an earlier stream).
fn set_xattrs(
    path: &Path,
    xattrs: &[(Vec<u8>, Vec<u8>)],
    prune: bool,
) -> Result<(), TransferError> {
    if prune {
        let have = xattr::list(path).map_err(TransferError::io("list xattrs of", path))?;
        for name in have {
            if !xattrs.iter().any(|(k, _)| k.as_slice() == name.as_bytes()) {
                xattr::remove(path, &name).map_err(TransferError::io("remove xattr of", path))?;
            }
        }
    }
    for (k, v) in xattrs {
        xattr::set(path, OsStr::from_bytes(k), v)
            .map_err(TransferError::io("set xattr of", path))?;
    }
    Ok(())
}

/// Sets the mtime of `path` without following a symlink (atime is left as is).
fn set_times(path: &Path, s: i64, ns: u32) -> Result<(), TransferError> {
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &TimeSpec::UTIME_OMIT,
        &TimeSpec::new(s, ns.into()),
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| TransferError::io("set times of", path)(e.into()))
}

/// Removes a file, link, device or whole directory tree; absent is fine.
fn remove_any(path: &Path) -> Result<(), TransferError> {
    let r = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    r.map_err(TransferError::io("remove", path))
}
