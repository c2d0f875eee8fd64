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
//! Every file's data is followed by its XXH3-128 digest, and the stream ends with a record
//! holding the entry and byte counts and the XXH3-128 of all framing (which includes the
//! per-file digests, so it covers the data too). [`receive`] checks all of it before it
//! returns `Ok`; a short, cut, corrupt or extended stream is an error and the destination is
//! left to be removed.
//!
//! Why a non-cryptographic digest: the daemons send streams over the members' mutual TLS,
//! whose AEAD already refuses any byte changed, dropped or forged on the wire. What the
//! digest adds is an end-to-end check of everything between reading the source file and
//! writing the target file (chunks, channels, HTTP framing, reassembly), where the faults to
//! catch are accidents, not an adversary; a 128-bit digest with full avalanche misses one
//! with probability 2^-128. Each side hashes every byte once, so its speed is on the
//! critical path. Measured on this machine kind (1 GiB in 256 KiB updates, release build,
//! machine busy with other builds): `sha2` 0.10 with SHA-NI 706–854 MiB/s, `blake3`
//! 1.9–3.0 GiB/s, `xxh3-128` 8.3–13.4 GiB/s (memcpy speed). Format 2 used BLAKE3: in a
//! 1 GiB move both daemons then spent 3.3–3.9 CPU-seconds per GiB, a fifth of it hashing;
//! format 3 (XXH3-128, and file data read straight into the HTTP body's chunks and written
//! from the received ones, see [`send_stream`]) 2.2–2.4 (`bench/README.md`, `move`).
//!
//! # Throughput
//!
//! `drover-bench transfer` (results in `bench/results/transfer.json`) copies the same data
//! with `tar -C src -cf - . | tar -C dst -xf -` and with [`send_full`] → pipe → [`receive`]
//! on two threads, page cache warm, `sync` before each run, runs interleaved, medians:
//!
//! | data | tar \| tar | SHA-256, 1 MiB pieces | BLAKE3 (format 2), 256 KiB pieces |
//! |---|---:|---:|---:|
//! | 1 file of 1 GiB | 318 / 294 MiB/s | 156 MiB/s (0.49×) | 337 MiB/s (1.15×) |
//! | 20,000 files of 10 KiB | 9 / 8.3 MiB/s | 12 MiB/s (1.28×) | 9.6 MiB/s (1.15×) |
//! | busybox rootfs (287 entries) | 8 / 10 MiB/s | 18 MiB/s (2.22×) | 20 MiB/s (1.93×) |
//!
//! (`tar | tar` of the same run first; medians of 5 and 7 runs with a load average of 6–9 on
//! 2 cores from other builds, so absolute figures are low and only ratios count.) The
//! first version hashed with SHA-256 and moved data in 1 MiB pieces, so through a 64 KiB
//! pipe sender and receiver took turns; BLAKE3 and 256 KiB pieces (the bench gives the
//! pipe 1 MiB, as the daemon's channel holds 4 MiB) fixed the big file. Small files are
//! faster than tar's: one process, no per-member headers to parse.
//!
//! An instance with 1 MiB of own changes moves as a 1,049,423-byte stream in 10.1 ms
//! (send, receive into staging, commit with syncfs, mount) against 119.5 ms for `cp -a` of
//! its whole rootfs in the same run (0.08×).
//!
//! # Usage by the mover
//!
//! ```text
//! source member                               target member
//! pool.volume_path(name)  ──send_stream──▶    receive_stream(pool.stage(name)?)
//!   (pre-copy, running)      full                     ↓ ok
//! stop; send_stream(base = manifest) ─delta─▶ receive_stream(same staging dir)
//!                                             pool.ensure_base(pool_volume_base, image)
//!                                             pool.commit(name)   (rename + syncfs)
//! switch ownership in the DB; start on target; source unmounts and deletes its copy
//! any failure before the switch ─────────────▶ pool.discard(name)
//! ```
//!
//! The volume directory of a `dir` pool holds the instance's own changes and the name of
//! its image base (`DirPool::volume_base`); the target needs that base before
//! `DirPool::mount_rootfs`. A full export with the base merged (LXD's `lxc export`, or a
//! target that cannot get the image) is `send_full(&pool.mount_rootfs(name)?, out)`.

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
