//! Finding the binaries the tests drive; a missing one is a failure, never a skip.

use std::path::PathBuf;
use std::process::Command;

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` or `<workspace>/target`.
pub(crate) fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(d) => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                workspace_root().join(d)
            }
        }
        None => workspace_root().join("target"),
    }
}

/// The `droverd` binary: `$DROVER_BIN`, else `<target>/debug/droverd`.
///
/// # Panics
///
/// When it does not exist, saying how to build it; and when the tests do not run as root.
pub fn droverd_bin() -> PathBuf {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the e2e tests need root: they run real containers"
    );
    let bin = match std::env::var_os("DROVER_BIN").filter(|b| !b.is_empty()) {
        Some(b) => PathBuf::from(b),
        None => target_dir().join("debug").join("droverd"),
    };
    assert!(
        bin.is_file(),
        "droverd not found at {}: run `cargo build --workspace --bins` first (or set DROVER_BIN)",
        bin.display()
    );
    bin
}

/// # Panics
///
/// When LXD's `lxc` client is not installed.
pub fn require_lxc() {
    let ok = Command::new("lxc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "`lxc` is not installed: apt-get install lxd-client (the lxc 5.0.2 tests need it)"
    );
}

/// # Panics
///
/// When `python3 -c 'import pylxd'` fails.
pub fn require_pylxd() {
    let out = Command::new("python3")
        .args(["-c", "import pylxd"])
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "pylxd is not importable: pip install pylxd ({})",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("python3 does not run ({e}): install python3 and pylxd"),
    }
}
