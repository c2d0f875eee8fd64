//! The sending side: walk a directory and write a transfer stream.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File, Metadata};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::error::TransferError;
use super::format::{
    EntryHead, FrameWriter, Kind, MODE_DELTA, MODE_FULL, Out, PutError, Sum, WriteOut, Xattrs,
};
use super::manifest::{Manifest, Stamp};

/// Size of the read buffer for file data and of the stream's write buffer: small enough
/// that sender and receiver overlap through a pipe or channel of a few of them, big enough
/// for the hash's SIMD lanes and few syscalls.
const BUF: usize = 256 << 10;

/// What a send did.
#[derive(Debug, Clone, Default)]
pub struct SendSummary {
    /// Entry records written (directories, files, links, devices…; the root counts).
    pub entries: u64,
    /// Of those, regular files whose data was sent.
    pub files: u64,
    /// File data bytes sent.
    pub bytes: u64,
    /// Total bytes of the stream (framing and data).
    pub stream_bytes: u64,
    /// Deletion records written (delta only).
    pub deleted: u64,
    /// Entries skipped because a stream cannot carry them (sockets).
    pub skipped: u64,
    /// What every entry looked like when it was sent: the base of the next delta.
    pub manifest: Manifest,
}

/// Sends everything under `src` (which must be a directory; its own metadata included) as a
/// full stream to `out`.
///
/// The receiver rebuilds the tree exactly: regular files, directories, symlinks, hard links
/// (as links), character/block devices (overlayfs whiteouts included), fifos, ownership,
/// modes (setuid/sticky too), mtimes and xattrs (`trusted.*`, `security.*`, ACLs). Sockets
/// are skipped. Mount points below `src` are sent as empty directories.
///
/// `src` may change while it is read (pre-copy of a running instance): the stream stays
/// well-formed, a file that shrinks is padded with zeros, and the returned
/// [`SendSummary::manifest`] marks such entries so the next [`send_delta`] resends them.
pub fn send_full(src: &Path, out: impl Write) -> Result<SendSummary, TransferError> {
    send(src, None, WriteOut::new(out, BUF))
}

/// Sends only what changed under `src` since the send that returned `base`: entries whose
/// stamp (inode, mode, size, mtime, ctime) differs or that are new, every name of a changed
/// hard-linked inode, the parent directory of every change (so its mtime is right again
/// after the receiver's edits), and a deletion for every path of `base` that is gone.
///
/// Apply it with [`super::receive`] to the directory that received the earlier stream(s);
/// the result equals a full copy of `src` as it is now.
pub fn send_delta(
    src: &Path,
    base: &Manifest,
    out: impl Write,
) -> Result<SendSummary, TransferError> {
    send(src, Some(base), WriteOut::new(out, BUF))
}

/// One entry found by the walk.
struct Found {
    rel: PathBuf,
    meta: Metadata,
}

/// [`send_full`] (no `base`) or [`send_delta`] into `out`.
pub(crate) fn send<O: Out>(
    src: &Path,
    base: Option<&Manifest>,
    out: O,
) -> Result<SendSummary, TransferError> {
    let found = walk(src)?;
    let mut summary = SendSummary::default();

    // Which entries to send.
    let selected: Vec<bool> = match base {
        None => vec![true; found.len()],
        Some(base) => select_changed(&found, base),
    };

    let mut w = FrameWriter::new(out);
    w.header(if base.is_some() {
        MODE_DELTA
    } else {
        MODE_FULL
    })?;

    if let Some(base) = base {
        let present: HashSet<&Path> = found.iter().map(|f| f.rel.as_path()).collect();
        let mut gone: Vec<&PathBuf> = base
            .entries
            .keys()
            .filter(|p| !present.contains(p.as_path()))
            .collect();
        gone.sort();
        let gone_set: HashSet<&Path> = gone.iter().map(|p| p.as_path()).collect();
        for p in gone {
            // A deleted directory's contents go with it.
            if p.parent().is_some_and(|parent| gone_set.contains(parent)) {
                continue;
            }
            w.delete(p.as_os_str().as_bytes())?;
            summary.deleted += 1;
        }
    }

    let mut first_name: HashMap<(u64, u64), PathBuf> = HashMap::new();
    for (f, send_it) in found.iter().zip(selected) {
        let ft = f.meta.file_type();
        let mut stamp = Stamp::of(&f.meta);
        if ft.is_socket() {
            summary.skipped += 1;
            continue;
        }
        let linked = !ft.is_dir() && f.meta.nlink() > 1;
        if !send_it {
            if linked {
                first_name
                    .entry((f.meta.dev(), f.meta.ino()))
                    .or_insert_with(|| f.rel.clone());
            }
            summary.manifest.entries.insert(f.rel.clone(), stamp);
            continue;
        }
        let abs = src.join(&f.rel);
        let mut head = EntryHead {
            path: f.rel.as_os_str().as_bytes().to_vec(),
            kind: Kind::Dir,
            mode: f.meta.mode() & 0o7777,
            uid: f.meta.uid(),
            gid: f.meta.gid(),
            mtime_s: f.meta.mtime(),
            mtime_ns: f.meta.mtime_nsec().clamp(0, 999_999_999) as u32,
            xattrs: Vec::new(),
        };
        if linked {
            match first_name.get(&(f.meta.dev(), f.meta.ino())) {
                Some(target) => {
                    head.kind = Kind::HardLink;
                    w.entry_head(&head)?;
                    w.str(target.as_os_str().as_bytes())?;
                    summary.entries += 1;
                    summary.manifest.entries.insert(f.rel.clone(), stamp);
                    continue;
                }
                None => {
                    first_name.insert((f.meta.dev(), f.meta.ino()), f.rel.clone());
                }
            }
        }
        head.xattrs = read_xattrs(&abs)?;
        if ft.is_dir() {
            head.kind = Kind::Dir;
            w.entry_head(&head)?;
        } else if ft.is_file() {
            head.kind = Kind::File;
            w.entry_head(&head)?;
            let (sent, shrank) = send_file(&abs, f.meta.size(), &mut w)?;
            if shrank {
                stamp = stamp.dirty();
            }
            summary.files += 1;
            summary.bytes += sent;
        } else if ft.is_symlink() {
            head.kind = Kind::Symlink;
            let target = fs::read_link(&abs).map_err(TransferError::io("read link", &abs))?;
            w.entry_head(&head)?;
            w.str(target.as_os_str().as_bytes())?;
        } else if ft.is_char_device() || ft.is_block_device() {
            head.kind = if ft.is_char_device() {
                Kind::CharDev
            } else {
                Kind::BlockDev
            };
            w.entry_head(&head)?;
            w.u64(f.meta.rdev())?;
        } else if ft.is_fifo() {
            head.kind = Kind::Fifo;
            w.entry_head(&head)?;
        } else {
            summary.skipped += 1;
            continue;
        }
        summary.entries += 1;
        summary.manifest.entries.insert(f.rel.clone(), stamp);
    }
    summary.stream_bytes = w.written;
    w.end(summary.entries, summary.bytes)?;
    summary.stream_bytes += 8 + 8 + 1 + 32;
    Ok(summary)
}

/// Marks the entries a delta against `base` must carry (see [`send_delta`]).
fn select_changed(found: &[Found], base: &Manifest) -> Vec<bool> {
    let mut sel: Vec<bool> = found
        .iter()
        .map(|f| base.entries.get(&f.rel) != Some(&Stamp::of(&f.meta)))
        .collect();
    // Every name of a changed multiply-linked inode: the receiver recreates the inode, so
    // its other names must be relinked to the new one.
    let changed_inodes: HashSet<(u64, u64)> = found
        .iter()
        .zip(&sel)
        .filter(|(f, s)| **s && !f.meta.is_dir() && f.meta.nlink() > 1)
        .map(|(f, _)| (f.meta.dev(), f.meta.ino()))
        .collect();
    // Parents of every change, and of every deletion.
    let mut parents: HashSet<PathBuf> = HashSet::new();
    for (f, s) in found.iter().zip(sel.iter_mut()) {
        if !f.meta.is_dir()
            && f.meta.nlink() > 1
            && changed_inodes.contains(&(f.meta.dev(), f.meta.ino()))
        {
            *s = true;
        }
        if *s && let Some(p) = f.rel.parent() {
            parents.insert(p.to_path_buf());
        }
    }
    let present: HashSet<&Path> = found.iter().map(|f| f.rel.as_path()).collect();
    for p in base.entries.keys() {
        if !present.contains(p.as_path())
            && let Some(parent) = p.parent()
        {
            parents.insert(parent.to_path_buf());
        }
    }
    for (f, s) in found.iter().zip(sel.iter_mut()) {
        if parents.contains(&f.rel) {
            *s = true;
        }
    }
    sel
}

/// Writes `size` bytes of `path` then their digest; pads with zeros if the file shrank
/// meanwhile (returned `true`). Returns the data bytes written.
fn send_file<O: Out>(
    path: &Path,
    size: u64,
    w: &mut FrameWriter<O>,
) -> Result<(u64, bool), TransferError> {
    w.u64(size)?;
    let mut hash = Sum::new();
    let mut left = size;
    let mut shrank = false;
    match File::open(path) {
        Ok(file) => {
            while left > 0 {
                let want = usize::try_from(left).unwrap_or(usize::MAX);
                let got = match w.file_data(&file, want) {
                    Ok(got) => got,
                    Err(PutError::Read(e)) => return Err(TransferError::io("read", path)(e)),
                    Err(PutError::Write(e)) => return Err(TransferError::Stream("write", e)),
                };
                if got.is_empty() {
                    shrank = true;
                    break;
                }
                hash.update(got);
                left -= got.len() as u64;
            }
        }
        // Deleted between the walk and now: send zeros, resend (as a deletion) next time.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => shrank = true,
        Err(e) => return Err(TransferError::io("open", path)(e)),
    }
    if left > 0 {
        let zeros = vec![0u8; BUF];
        while left > 0 {
            let n = left.min(BUF as u64) as usize;
            hash.update(&zeros[..n]);
            w.data(&zeros[..n])?;
            left -= n as u64;
        }
    }
    w.raw(&hash.digest())?;
    Ok((size, shrank))
}

/// The xattrs of `path` (not following symlinks), sorted by name.
fn read_xattrs(path: &Path) -> Result<Xattrs, TransferError> {
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(TransferError::io("list xattrs of", path)(e)),
    };
    let mut out = Vec::new();
    for name in names {
        match xattr::get(path, &name) {
            Ok(Some(v)) => out.push((name.as_bytes().to_vec(), v)),
            Ok(None) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(TransferError::io("read xattr of", path)(e)),
        }
    }
    out.sort();
    Ok(out)
}

/// Lists `src` and everything below it in pre-order (parents before children, siblings by
/// name), without following symlinks or descending into other filesystems.
fn walk(src: &Path) -> Result<Vec<Found>, TransferError> {
    let root = fs::symlink_metadata(src).map_err(TransferError::io("stat", src))?;
    if !root.is_dir() {
        return Err(TransferError::io("send", src)(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            "not a directory",
        )));
    }
    let dev = root.dev();
    let mut out = Vec::new();
    let mut stack = vec![Found {
        rel: PathBuf::new(),
        meta: root,
    }];
    while let Some(f) = stack.pop() {
        if f.meta.is_dir() && f.meta.dev() == dev {
            let dir = src.join(&f.rel);
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => Some(rd),
                // Vanished while walking a live tree: the delta will delete it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(TransferError::io("read dir", &dir)(e)),
            };
            let mut kids = Vec::new();
            for entry in rd.into_iter().flatten() {
                let entry = entry.map_err(TransferError::io("read dir", &dir))?;
                match entry.metadata() {
                    Ok(meta) => kids.push(Found {
                        rel: f.rel.join(OsStr::new(&entry.file_name())),
                        meta,
                    }),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(TransferError::io("stat", &entry.path())(e)),
                }
            }
            // Reverse order on the stack pops siblings by name.
            kids.sort_by(|a, b| b.rel.cmp(&a.rel));
            stack.extend(kids);
        }
        out.push(f);
    }
    Ok(out)
}
