//! Extracting an image tarball, safely and faithfully.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, makedev, mknod};

use super::compression::open_tar;
use super::error::ImageError;

/// Extracts the (possibly compressed) tarball at `tarball` into the directory `dst`
/// (created if missing).
///
/// Preserves numeric ownership, modes (with setuid/setgid/sticky), mtimes, symlinks, hard
/// links, device nodes, FIFOs and xattrs. Refuses (with [`ImageError::UnsafePath`]) entries
/// whose path or hard-link target contains `..`, and entries that would be written through a
/// symlink leading outside `dst`. Symlink *targets* may be anything: they are interpreted
/// inside the container later. Directories get their metadata last, so read-only
/// directories do not block their contents.
pub(crate) fn unpack(tarball: &Path, dst: &Path) -> Result<(), ImageError> {
    let (stream, _) = open_tar(tarball)?;
    fs::create_dir_all(dst).map_err(ImageError::io("create", dst))?;
    let dst = dst
        .canonicalize()
        .map_err(ImageError::io("canonicalize", dst))?;
    unpack_stream(stream, tarball, &dst)
}

fn unpack_stream(stream: Box<dyn Read>, tarball: &Path, dst: &Path) -> Result<(), ImageError> {
    let corrupt = |source: std::io::Error| ImageError::CorruptTarball {
        path: tarball.to_path_buf(),
        source,
    };
    let mut archive = tar::Archive::new(stream);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);

    let mut directories = Vec::new();
    let mut root_meta = None;
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let path = entry.path().map_err(corrupt)?.into_owned();
        let rel = checked_relative(&path).ok_or_else(|| unsafe_path(tarball, &path))?;
        let kind = entry.header().entry_type();
        if kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(corrupt)?
                .map(|t| t.into_owned())
                .unwrap_or_default();
            if checked_relative(&target).is_none() {
                return Err(unsafe_path(tarball, &target));
            }
        }
        if rel.as_os_str().is_empty() {
            // `./` itself: tar skips it, but its mode and owner belong to `dst`.
            if kind.is_dir() {
                root_meta = Some(header_meta(entry.header()).map_err(corrupt)?);
            }
            continue;
        }
        if kind.is_dir() {
            directories.push(entry);
        } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            make_node(&entry, dst, &rel, tarball)?;
        } else if !entry
            .unpack_in(dst)
            .map_err(|e| unpack_error(tarball, &path, e))?
        {
            return Err(unsafe_path(tarball, &path));
        }
    }
    // Deepest first, so a directory's own metadata is applied after its children exist.
    directories.sort_by(|a, b| b.path_bytes().cmp(&a.path_bytes()));
    for mut dir in directories {
        let path = dir.path().map_err(corrupt)?.into_owned();
        if !dir
            .unpack_in(dst)
            .map_err(|e| unpack_error(tarball, &path, e))?
        {
            return Err(unsafe_path(tarball, &path));
        }
    }
    if let Some((mode, uid, gid)) = root_meta {
        std::os::unix::fs::lchown(dst, Some(uid), Some(gid))
            .map_err(ImageError::io("chown", dst))?;
        fs::set_permissions(dst, fs::Permissions::from_mode(mode))
            .map_err(ImageError::io("chmod", dst))?;
    }
    Ok(())
}

/// `path` with `.` and leading `/` dropped; `None` when it contains `..`.
fn checked_relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

fn header_meta(h: &tar::Header) -> std::io::Result<(u32, u32, u32)> {
    let uid = u32::try_from(h.uid()?).unwrap_or(0);
    let gid = u32::try_from(h.gid()?).unwrap_or(0);
    Ok((h.mode()? & 0o7777, uid, gid))
}

/// Creates a device node or FIFO, which the tar crate would write as a regular file.
fn make_node<R: Read>(
    entry: &tar::Entry<'_, R>,
    dst: &Path,
    rel: &Path,
    tarball: &Path,
) -> Result<(), ImageError> {
    let target = dst.join(rel);
    let parent = target.parent().unwrap_or(dst);
    fs::create_dir_all(parent).map_err(ImageError::io("create", parent))?;
    let canon = parent
        .canonicalize()
        .map_err(ImageError::io("canonicalize", parent))?;
    if !canon.starts_with(dst) {
        return Err(unsafe_path(tarball, rel));
    }
    let Some(name) = target.file_name() else {
        return Err(unsafe_path(tarball, rel));
    };
    let target = canon.join(name);
    let header = entry.header();
    let corrupt = |source| ImageError::CorruptTarball {
        path: tarball.to_path_buf(),
        source,
    };
    let (mode, uid, gid) = header_meta(header).map_err(corrupt)?;
    let kind = header.entry_type();
    let (flag, dev) = if kind.is_fifo() {
        (SFlag::S_IFIFO, 0)
    } else {
        let major = u64::from(header.device_major().map_err(corrupt)?.unwrap_or(0));
        let minor = u64::from(header.device_minor().map_err(corrupt)?.unwrap_or(0));
        let flag = if kind.is_block_special() {
            SFlag::S_IFBLK
        } else {
            SFlag::S_IFCHR
        };
        (flag, makedev(major, minor))
    };
    match fs::symlink_metadata(&target) {
        Ok(m) if m.is_dir() => {
            fs::remove_dir_all(&target).map_err(ImageError::io("remove", &target))?;
        }
        Ok(_) => fs::remove_file(&target).map_err(ImageError::io("remove", &target))?,
        Err(_) => {}
    }
    mknod(&target, flag, Mode::from_bits_truncate(mode), dev)
        .map_err(|e| ImageError::io("mknod", &target)(std::io::Error::from(e)))?;
    std::os::unix::fs::lchown(&target, Some(uid), Some(gid))
        .map_err(ImageError::io("chown", &target))?;
    fs::set_permissions(&target, fs::Permissions::from_mode(mode))
        .map_err(ImageError::io("chmod", &target))?;
    Ok(())
}

fn unsafe_path(tarball: &Path, entry: &Path) -> ImageError {
    ImageError::UnsafePath {
        path: tarball.to_path_buf(),
        entry: entry.display().to_string(),
    }
}

/// The tar crate reports escapes through symlinked directories as plain I/O errors; tell
/// them apart from other write failures by their message.
fn unpack_error(tarball: &Path, entry: &Path, source: std::io::Error) -> ImageError {
    if source.to_string().contains("outside of destination") {
        unsafe_path(tarball, entry)
    } else {
        ImageError::Extract {
            path: tarball.to_path_buf(),
            entry: entry.display().to_string(),
            source,
        }
    }
}
