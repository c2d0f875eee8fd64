//! `/1.0/instances/{name}/files?path=...` (`lxc file pull|push|delete`, pylxd's
//! `instance.files`): read, write and delete files in an instance's root filesystem, as
//! LXD 5.0.2 answers them.
//!
//! - `GET`: a file's bytes with `X-LXD-uid`, `X-LXD-gid`, `X-LXD-mode` (octal) and
//!   `X-LXD-type: file`; a directory's entry names as a `sync` list (`X-LXD-type:
//!   directory`); a symlink's target (`X-LXD-type: symlink`).
//! - `POST`: `X-LXD-type` `file` (the body, `X-LXD-write` `overwrite` or `append`),
//!   `directory` or `symlink` (the body is the target), with `X-LXD-uid`/`-gid`/`-mode`
//!   when given (a new file defaults to root, 0644; a directory to 0755).
//! - `DELETE`: a file, a symlink or an empty directory.
//!
//! Paths resolve inside the instance's root, never outside it: the last-but-one
//! component is opened with `openat2(RESOLVE_IN_ROOT)` (an absolute symlink or `..` in
//! the instance stays in the instance) and the last one is never followed. Containers
//! share the host's ids (no id map), so the ids are written as given. The root filesystem
//! is the one the instance runs on (mounted when it is layered on an image), so a running
//! instance sees the change at once.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use db::instances::InstanceRecord;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{Mode, fstat, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, unlinkat};

use super::{missing_profile, read_profiles, read_root_pool};
use crate::error::{ApiError, ApiResult};
use crate::state::Daemon;

/// What a `POST` asks for, from its `X-LXD-*` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushHeaders {
    /// Owner, when given.
    pub uid: Option<u32>,
    /// Group, when given.
    pub gid: Option<u32>,
    /// Permission bits, when given.
    pub mode: Option<u32>,
    /// `file`, `directory` or `symlink`.
    pub kind: String,
    /// Append instead of replacing (`X-LXD-write: append`).
    pub append: bool,
}

impl PushHeaders {
    /// Reads LXD's file headers; `-1` or an absent header means "not given".
    ///
    /// # Errors
    ///
    /// 400 for a value that is not a number, an unknown type or write mode.
    pub fn parse(h: &HeaderMap) -> ApiResult<Self> {
        let text = |k: &str| {
            h.get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let id = |k: &str| -> ApiResult<Option<u32>> {
            match text(k) {
                None => Ok(None),
                Some(v) => match v.parse::<i64>() {
                    Ok(n) if n < 0 => Ok(None),
                    Ok(n) => u32::try_from(n)
                        .map(Some)
                        .map_err(|_| ApiError::bad_request(format!("Invalid {k} header"))),
                    Err(_) => Err(ApiError::bad_request(format!("Invalid {k} header"))),
                },
            }
        };
        let mode = match text("x-lxd-mode") {
            None => None,
            Some(v) if v.starts_with('-') => None,
            Some(v) => Some(
                u32::from_str_radix(v, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| ApiError::bad_request("Invalid X-LXD-mode header"))?,
            ),
        };
        let kind = text("x-lxd-type").unwrap_or("file").to_string();
        if !["file", "directory", "symlink"].contains(&kind.as_str()) {
            return Err(ApiError::bad_request(format!("Bad file type: {kind}")));
        }
        let append = match text("x-lxd-write").unwrap_or("overwrite") {
            "overwrite" => false,
            "append" => true,
            other => return Err(ApiError::bad_request(format!("Bad write mode: {other}"))),
        };
        Ok(PushHeaders {
            uid: id("x-lxd-uid")?,
            gid: id("x-lxd-gid")?,
            mode,
            kind,
            append,
        })
    }
}

/// The refusal of the files API on a virtual machine.
const VM_FILES: &str = "Files of a virtual machine are not reachable through drover's VM agent, which only runs commands: use lxc exec (for example lxc exec VM -- cat /etc/hostname)";

/// The root filesystem of `rec` on this member, mounted if need be.
async fn rootfs(d: &Daemon, rec: &InstanceRecord) -> ApiResult<PathBuf> {
    if rec.kind != "container" {
        // LXD reaches a VM's files through its agent; drover's agent runs commands only.
        // Saying the agent is not running would be false (exec works) and misleading.
        return Err(ApiError::bad_request(VM_FILES));
    }
    let (store, d2, rec) = (d.store.clone(), d.clone(), rec.clone());
    tokio::task::spawn_blocking(move || {
        let (profiles, pool) = store.read(|c| {
            let profiles = read_profiles(c, &rec.project, &rec.profiles)?;
            let pool = read_root_pool(&rec, &profiles, |name| db::pools::get(c, name))?;
            Ok((profiles, pool))
        })?;
        profiles.map_err(missing_profile)?;
        let (name, pool) =
            pool.ok_or_else(|| ApiError::bad_request("Instance has no root disk device"))?;
        let source = crate::volumes::pool_source_checked(&d2, &name, pool)?;
        crate::volumes::rootfs_at(source, &rec)
    })
    .await?
}

/// `path` split into its parent (relative to the instance's root) and last component.
fn split(path: &str) -> ApiResult<(String, String)> {
    if path.is_empty() {
        return Err(ApiError::bad_request("Missing path argument"));
    }
    if path.contains('\0') {
        return Err(ApiError::bad_request("Invalid path"));
    }
    let trimmed = path.trim_end_matches('/');
    let (parent, last) = match trimmed.rsplit_once('/') {
        Some((p, l)) => (p, l),
        None => ("", trimmed),
    };
    let parent = format!("./{}", parent.trim_start_matches('/'));
    Ok((parent, last.to_string()))
}

fn io_error(e: Errno, path: &str) -> ApiError {
    match e {
        // LXD 5.0.2's words for a missing file (`lxc file pull`, `delete`, `push`).
        Errno::ENOENT | Errno::ENOTDIR => ApiError::not_found("Not Found"),
        Errno::EEXIST => ApiError::conflict(format!("File {path:?} already exists")),
        Errno::ENOTEMPTY => ApiError::bad_request(format!("Directory {path:?} is not empty")),
        e => ApiError::internal(format!("{path}: {e}")),
    }
}

/// Opens `rel` (relative, inside `root`) with `flags`, never leaving `root`.
fn open_in(root: &OwnedFd, rel: &str, flags: OFlag) -> Result<OwnedFd, Errno> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root, rel, how)
}

fn open_root(rootfs: &std::path::Path) -> Result<OwnedFd, Errno> {
    nix::fcntl::open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// The parent directory of `path` inside `rootfs`, and the last component (`""` for the
/// root itself).
fn open_parent(rootfs: &std::path::Path, path: &str) -> ApiResult<(OwnedFd, String)> {
    let (parent, last) = split(path)?;
    let root = open_root(rootfs).map_err(|e| io_error(e, path))?;
    let dir = open_in(&root, &parent, OFlag::O_PATH | OFlag::O_DIRECTORY)
        .map_err(|e| io_error(e, path))?;
    Ok((dir, last))
}

/// A path through `/proc/self/fd` to an open file (what the fd refers to, nothing else).
fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn file_headers(resp: &mut Response, st: &nix::sys::stat::FileStat, kind: &str) {
    let h = resp.headers_mut();
    for (k, v) in [
        ("x-lxd-uid", st.st_uid.to_string()),
        ("x-lxd-gid", st.st_gid.to_string()),
        ("x-lxd-mode", format!("{:04o}", st.st_mode & 0o7777)),
        ("x-lxd-type", kind.to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
}

/// `GET`: the file, directory listing or symlink target at `path` in `rec`.
///
/// # Errors
///
/// 404 when it does not exist; 400 without a path.
pub async fn get(d: &Daemon, rec: &InstanceRecord, path: &str) -> ApiResult<Response> {
    let rootfs = rootfs(d, rec).await?;
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        let (dir, last) = open_parent(&rootfs, &path)?;
        let name = if last.is_empty() { "." } else { last.as_str() };
        let target = openat(
            &dir,
            name,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_error(e, &path))?;
        let st = fstat(&target).map_err(|e| io_error(e, &path))?;
        let fmt = st.st_mode & libc::S_IFMT;
        if fmt == libc::S_IFLNK {
            let link = nix::fcntl::readlinkat(&dir, name).map_err(|e| io_error(e, &path))?;
            let mut resp = Body::from(link.as_encoded_bytes().to_vec()).into_response();
            file_headers(&mut resp, &st, "symlink");
            return Ok(resp);
        }
        if fmt == libc::S_IFDIR {
            let mut names: Vec<String> = std::fs::read_dir(fd_path(&target))
                .map_err(|e| ApiError::internal(format!("{path}: {e}")))?
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            let mut resp = axum::Json(api::Response::sync(names)).into_response();
            file_headers(&mut resp, &st, "directory");
            return Ok(resp);
        }
        if fmt != libc::S_IFREG {
            return Err(ApiError::bad_request(format!(
                "{path:?} is not a regular file, directory or symlink"
            )));
        }
        let mut data = Vec::new();
        std::fs::File::open(fd_path(&target))
            .and_then(|mut f| f.read_to_end(&mut data))
            .map_err(|e| ApiError::internal(format!("{path}: {e}")))?;
        let mut resp = Body::from(data).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        file_headers(&mut resp, &st, "file");
        Ok(resp)
    })
    .await?
}

/// `POST`: writes a file, makes a directory or a symlink at `path` in `rec`.
///
/// # Errors
///
/// 400 without a path or for the root itself; 404 when the parent does not exist.
pub async fn push(
    d: &Daemon,
    rec: &InstanceRecord,
    path: &str,
    how: PushHeaders,
    body: bytes::Bytes,
) -> ApiResult<()> {
    let rootfs = rootfs(d, rec).await?;
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        let (dir, last) = open_parent(&rootfs, &path)?;
        if last.is_empty() || last == "." || last == ".." {
            return Err(ApiError::bad_request(format!("Invalid path {path:?}")));
        }
        let name = last.as_str();
        let fail = |e: Errno| io_error(e, &path);
        match how.kind.as_str() {
            "directory" => {
                let mode = Mode::from_bits_truncate(how.mode.unwrap_or(0o755));
                match mkdirat(&dir, name, mode) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(fail(e)),
                }
                let fd = openat(
                    &dir,
                    name,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(fail)?;
                if let Some(m) = how.mode {
                    nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(m)).map_err(fail)?;
                }
                nix::unistd::fchown(&fd, how.uid.map(Uid::from), how.gid.map(Gid::from))
                    .map_err(fail)?;
            }
            "symlink" => {
                let target = String::from_utf8(body.to_vec())
                    .map_err(|_| ApiError::bad_request("Invalid symlink target"))?;
                match unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir) {
                    Ok(()) | Err(Errno::ENOENT) => {}
                    Err(e) => return Err(fail(e)),
                }
                nix::unistd::symlinkat(target.as_str(), &dir, name).map_err(fail)?;
                fchownat(
                    &dir,
                    name,
                    how.uid.map(Uid::from),
                    how.gid.map(Gid::from),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(fail)?;
            }
            _ => {
                let mut flags =
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                flags |= if how.append {
                    OFlag::O_APPEND
                } else {
                    OFlag::O_TRUNC
                };
                let fd =
                    openat(&dir, name, flags, Mode::from_bits_truncate(0o644)).map_err(fail)?;
                let st = fstat(&fd).map_err(fail)?;
                if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                    return Err(ApiError::bad_request(format!(
                        "{path:?} is not a regular file"
                    )));
                }
                let mut f = std::fs::File::from(fd);
                f.write_all(&body)
                    .and_then(|()| f.flush())
                    .map_err(|e| ApiError::internal(format!("{path}: {e}")))?;
                if let Some(m) = how.mode {
                    nix::sys::stat::fchmod(&f, Mode::from_bits_truncate(m)).map_err(fail)?;
                }
                nix::unistd::fchown(&f, how.uid.map(Uid::from), how.gid.map(Gid::from))
                    .map_err(fail)?;
            }
        }
        Ok(())
    })
    .await?
}

/// `DELETE`: removes the file, symlink or empty directory at `path` in `rec`.
///
/// # Errors
///
/// 404 when it does not exist; 400 for a directory that is not empty.
pub async fn delete(d: &Daemon, rec: &InstanceRecord, path: &str) -> ApiResult<()> {
    let rootfs = rootfs(d, rec).await?;
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        let (dir, last) = open_parent(&rootfs, &path)?;
        if last.is_empty() || last == "." || last == ".." {
            return Err(ApiError::bad_request(format!("Invalid path {path:?}")));
        }
        match unlinkat(&dir, last.as_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) => Ok(()),
            Err(Errno::EISDIR) => unlinkat(&dir, last.as_str(), UnlinkatFlags::RemoveDir)
                .map_err(|e| io_error(e, &path)),
            Err(e) => Err(io_error(e, &path)),
        }
    })
    .await?
}

/// The `sync` answer of a successful `POST`/`DELETE`.
pub fn done() -> Response {
    (
        StatusCode::OK,
        axum::Json(api::Response::sync(serde_json::json!({}))),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_parent_and_name() {
        assert_eq!(
            split("/etc/hostname").expect("valid"),
            ("./etc".into(), "hostname".into())
        );
        assert_eq!(split("/x").expect("valid"), ("./".into(), "x".into()));
        assert_eq!(split("/").expect("valid"), ("./".into(), String::new()));
        assert_eq!(split("/a/b/").expect("valid"), ("./a".into(), "b".into()));
        assert!(split("").is_err());
    }

    #[test]
    fn push_headers_as_lxc_sends_them() {
        let mut h = HeaderMap::new();
        h.insert("x-lxd-uid", HeaderValue::from_static("1000"));
        h.insert("x-lxd-gid", HeaderValue::from_static("-1"));
        h.insert("x-lxd-mode", HeaderValue::from_static("0640"));
        h.insert("x-lxd-type", HeaderValue::from_static("file"));
        h.insert("x-lxd-write", HeaderValue::from_static("append"));
        let p = PushHeaders::parse(&h).expect("valid");
        assert_eq!(p.uid, Some(1000));
        assert_eq!(p.gid, None);
        assert_eq!(p.mode, Some(0o640));
        assert!(p.append);
        h.insert("x-lxd-type", HeaderValue::from_static("fifo"));
        assert!(PushHeaders::parse(&h).is_err());
        assert_eq!(
            PushHeaders::parse(&HeaderMap::new()).expect("valid").kind,
            "file"
        );
    }
}
