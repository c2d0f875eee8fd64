//! Test-only crash points of evacuations and restores.
//!
//! Some moments of a job are too short to hit from outside with a `kill -9`: the instant
//! after the plan is journaled and before any instance is touched, or after the last
//! instance's step is recorded and before the member's final state is. The crash tests
//! (crates/e2e/tests/evacuation_crash.rs) reach them by starting `droverd` with
//! [`ENV`] set to a comma-separated list of point names; when this daemon reaches one of
//! them it kills itself with `SIGKILL`, exactly as an outside `kill -9` would.
//!
//! Each point fires once per state dir (a marker file `crashed-at-<point>` in it remembers
//! it), so the restarted daemon, which keeps the same environment, runs through. Points:
//! `evacuate-journaled`, `restore-journaled`, `evacuate-steps-done`, `restore-steps-done`,
//! and the live moves' `live-resumed` and `live-target-resumed` ([`at`]).
//!
//! Only debug builds (what the e2e tests run) look at [`ENV`]; release builds ignore it.

use db::evacuations::EvacuationKind;

use crate::state::Daemon;

/// The environment variable naming the crash points of this daemon. Release builds never
/// read it.
#[cfg_attr(not(debug_assertions), expect(dead_code))]
pub const ENV: &str = "DROVER_TEST_CRASH_AT";

/// A named point of a live move (crates/e2e/tests/vm_live.rs): `live-resumed` (the source,
/// once the target confirmed the VM runs there, before the ownership switch) and
/// `live-target-resumed` (the target, right after it resumed the VM, before answering).
pub(crate) fn at(d: &Daemon, name: &str) {
    point(d, name);
}

/// Right after the plan of a job of `kind` is journaled, before any instance is touched.
pub(crate) fn journaled(d: &Daemon, kind: EvacuationKind) {
    point(d, &format!("{}-journaled", kind.as_str()));
}

/// After every step of a job of `kind` is recorded, before the member's final state is.
pub(crate) fn steps_done(d: &Daemon, kind: EvacuationKind) {
    point(d, &format!("{}-steps-done", kind.as_str()));
}

#[cfg(debug_assertions)]
fn point(d: &Daemon, name: &str) {
    let Ok(list) = std::env::var(ENV) else {
        return;
    };
    if !list.split(',').any(|p| p.trim() == name) {
        return;
    }
    let marker = d.paths.state_dir.join(format!("crashed-at-{name}"));
    if marker.exists() || std::fs::write(&marker, name).is_err() {
        return;
    }
    tracing::warn!(point = name, "test crash point reached: SIGKILL");
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
}

#[cfg(not(debug_assertions))]
fn point(_: &Daemon, _: &str) {}
