//! Operations and events.
//!
//! An [`Operation`](api::Operation) is long work that answered its request at once (202) and
//! goes on: it has a status, progress metadata, and an outcome that clients wait for (by
//! `GET /1.0/operations/{id}/wait` or by the `operation` events). [`Registry`] holds them;
//! [`EventBus`] fans events out to `/1.0/events` listeners.

mod bus;
mod registry;

pub use bus::EventBus;
pub use registry::{OpHandle, Registry, WaitError};

/// The current time as LXD prints it (RFC 3339 with nanoseconds, UTC).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
