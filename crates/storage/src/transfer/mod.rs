//! Volume transfer: a directory tree as one checksummed byte stream, rebuilt exactly on the
//! other side.
//!
//! # What is carried
//!
//! Regular files, directories, symlinks, hard links (kept as links), character and block
//! devices, fifos, ownership, modes (setuid, setgid, sticky), mtimes and xattrs (`user.*`,
//! `trusted.*` — overlayfs' `trusted.overlay.opaque` —, `security.*`, POSIX ACLs). Overlayfs
//! whiteouts (char devices 0:0) are devices like any other. Sockets are skipped; the
//! contents of other filesystems mounted below the root are not sent.
//!
//! # Modes
//!
//! - **full** ([`send_full`]): everything, into an empty directory.
//! - **delta since a pre-copy** ([`send_delta`]): the receiver already holds the result of an
//!   earlier stream of the same source; only new or changed entries (by inode, mode, size,
//!   mtime and ctime, so any content, metadata, xattr or link change) and deletions travel.
//!   Pass the [`Manifest`] returned by the previous send.
//! - **delta against the image**: an instance volume on a `dir` pool is an overlay upper
//!   directory over its image (see [`crate::DirPool`]); a full send of the volume directory
//!   *is* the instance's own changes, and the target rebuilds the rest from its own copy of
//!   the image.
//!
//! # Integrity
//!
//! Every file's data is followed by its SHA-256, and the stream ends with a record holding
//! the entry and byte counts and the SHA-256 of all framing (which includes the per-file
//! digests, so it covers the data too). [`receive`] checks all of it before it returns `Ok`;
//! a short, cut, corrupt or extended stream is an error and the destination is left to be
//! removed. SHA-256 is used because this CPU kind has SHA-NI, which the `sha2` crate
//! detects at run time (numbers below).
//!
//! # Throughput
//!
//! Measured on this machine kind (2 cores, ext4, page cache warm, same data, pipe between
//! two threads vs. `tar -C src -cf - . | tar -C dst -xf -`), `drover-bench transfer`:
//! see `bench/results/transfer.json` for the committed numbers.
//!
//! # Usage by the mover
//!
//! ```text
//! source member                               target member
//! pool.volume_path(name)  ──send_stream──▶    receive_stream(pool.stage(name)?)
//!   (pre-copy, running)      full                     ↓ ok
//! stop; send_stream(base = manifest) ─delta─▶ receive_stream(same staging dir)
//!                                             pool.commit(name)   (syncfs + rename)
//! switch ownership in the DB; start on target; source deletes its copy
//! any failure before the switch ─────────────▶ pool.discard(name)
//! ```

mod error;
mod format;
mod manifest;
mod receive;
mod send;
mod stream;

pub use error::TransferError;
pub use format::Kind;
pub use manifest::{Manifest, Stamp};
pub use receive::{ReceiveSummary, receive};
pub use send::{SendSummary, send_delta, send_full};
pub use stream::{CHUNK, receive_stream, send_stream};
