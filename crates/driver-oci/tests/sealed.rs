//! The runtime run from a sealed in-memory copy of its binary.
#![allow(clippy::unwrap_used)]

mod common;

use std::mem::MaybeUninit;
use std::path::Path;

use common::runtime_under_test;
use drover_driver_oci::{Isolation, Runtime, RuntimeKind};
use rustix::fs::inotify;

/// Runs `<runtime> state nope` with `_LIBCONTAINER_STATEDIR=<dir>` (where the runtime
/// makes its own copy of itself when it needs one) and returns how many files were
/// created in `dir` meanwhile.
async fn files_created_by_a_call(rt: &Runtime, dir: &Path) -> usize {
    let watch =
        inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC).unwrap();
    inotify::add_watch(&watch, dir, inotify::WatchFlags::CREATE).unwrap();
    let out = rt
        .command(["state", "nope"])
        .env("_LIBCONTAINER_STATEDIR", dir)
        .output()
        .await
        .unwrap();
    // The container does not exist: the call fails, after the runtime's start-up.
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nope"), "{stderr}");
    let mut buf = [MaybeUninit::<u8>::uninit(); 4096];
    let mut reader = inotify::Reader::new(&watch, &mut buf);
    let mut created = 0;
    while let Ok(ev) = reader.next() {
        if ev.events().contains(inotify::ReadFlags::CREATE) {
            created += 1;
        }
    }
    created
}

/// What does this test do?
/// - crun run from its binary on disk copies itself before each call (a file appears in
///   its state directory for it)
/// - the same call through the sealed copy creates nothing: the runtime takes the memfd
///   as its protected copy
/// - the sealed copy takes no write and no truncation
/// - pointing the runtime at another binary drops the copy
#[tokio::test]
async fn the_sealed_copy_spares_the_runtime_its_own_copy() {
    if !runtime_under_test(RuntimeKind::Crun) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    // `state` needs no cgroup view: the direct path works in this test process too.
    let stock =
        Runtime::new(RuntimeKind::Crun, dir.path().join("root")).with_isolation(Isolation::Direct);
    let sealed = stock.clone().sealed().await;
    assert!(!stock.is_sealed());
    assert!(sealed.is_sealed(), "no sealed copy was made");
    assert!(
        sealed.program().starts_with("/proc/self/fd"),
        "{}",
        sealed.program().display()
    );

    assert!(files_created_by_a_call(&stock, &state).await >= 1);
    assert_eq!(files_created_by_a_call(&sealed, &state).await, 0);

    // The runtime process resolves /proc/self/fd/<n> in its own table: open it here the
    // same way, through this process's table.
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(sealed.program())
        .unwrap();
    let write = std::io::Write::write(&mut file, b"x");
    assert!(write.is_err(), "the sealed copy took a write");
    assert!(file.set_len(0).is_err(), "the sealed copy was truncated");
    // (An open writable descriptor would make its execution fail: text file busy.)
    drop(file);
    assert_eq!(
        sealed.version().await.unwrap(),
        stock.version().await.unwrap()
    );

    let other = sealed.with_binary("/usr/bin/crun");
    assert!(!other.is_sealed());
}

/// What does this test do?
/// - a runtime whose calls go through `unshare` and `sh` (which would not see the
///   descriptor) is left unsealed
#[tokio::test]
async fn the_unshare_wrapper_is_not_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::new(RuntimeKind::Crun, dir.path())
        .with_isolation(Isolation::UnshareWrapper)
        .sealed()
        .await;
    assert!(!rt.is_sealed());
}
