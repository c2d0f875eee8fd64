//! Volume transfer streams: full and delta round trips on real files, and refusals of
//! corrupt, cut and unsafe streams.
#![allow(clippy::unwrap_used)]

mod tree;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use drover_storage::DirPool;
use drover_storage::transfer::{
    Manifest, TransferError, receive, receive_stream, send_delta, send_full, send_stream,
};
use nix::sys::stat::{Mode, SFlag, mknod};
use tree::{assert_same, build_tree, set_mtime};

/// Runs a full send of `src` into a fresh `dst` through an OS pipe (two threads).
fn round_trip_pipe(
    src: &Path,
    dst: &Path,
) -> (
    drover_storage::transfer::SendSummary,
    drover_storage::transfer::ReceiveSummary,
) {
    fs::create_dir(dst).unwrap();
    let (r, w) = std::io::pipe().unwrap();
    let src2 = src.to_path_buf();
    let sender = std::thread::spawn(move || send_full(&src2, w));
    let received = receive(dst, r).unwrap();
    (sender.join().unwrap().unwrap(), received)
}

/// What does this test do?
/// - builds a tree with hard links, symlinks, devices, a fifo, a whiteout, xattrs (user,
///   trusted, overlay opaque), setuid/sticky modes, owners, mtimes and a 200 MiB file
/// - sends it in full through a pipe and checks every entry of the copy is identical
///   (content checksums, metadata, hard links still links)
#[test]
fn full_round_trip_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    build_tree(&src, 200 << 20);

    tracing::info!("--- full send through a pipe");
    let (sent, got) = round_trip_pipe(&src, &dst);
    assert_eq!(sent.entries, got.entries);
    assert_eq!(sent.bytes, got.bytes);
    assert!(sent.bytes >= 200 << 20);
    assert!(!got.delta);

    tracing::info!("--- the copy is identical");
    assert_same(&src, &dst);
    let a = fs::metadata(dst.join("bin/busybox")).unwrap();
    assert_eq!(a.ino(), fs::metadata(dst.join("bin/cat")).unwrap().ino());
    assert_eq!(a.nlink(), 4);
}

/// What does this test do?
/// - pre-copies a tree, then changes it in every way (content behind a restored mtime,
///   mode, xattr, deletions of a file and a whole dir, a file becoming a dir, a hard link
///   broken and one added, a new device)
/// - a delta against the pre-copy's manifest makes the copy identical again, carrying
///   only the changed data
/// - a second delta with no change carries no file data
#[test]
fn delta_after_precopy_is_exact_and_small() {
    let dir = tempfile::tempdir().unwrap();
    let (src, dst) = (dir.path().join("src"), dir.path().join("dst"));
    build_tree(&src, 8 << 20);
    let (sent, _) = round_trip_pipe(&src, &dst);

    tracing::info!("--- change the source");
    // Same size, same mtime, different content: only ctime tells.
    let conf = src.join("etc/deep/er/conf");
    let old = fs::symlink_metadata(&conf).unwrap();
    fs::write(&conf, b"a=2\n").unwrap();
    set_mtime(&conf, old.mtime(), old.mtime_nsec());
    fs::set_permissions(src.join("etc/f002"), fs::Permissions::from_mode(0o600)).unwrap();
    xattr::set(src.join("etc/empty"), "user.note", b"changed").unwrap();
    xattr::remove(src.join("etc/empty"), "trusted.big").unwrap();
    fs::remove_file(src.join("etc/f003")).unwrap();
    fs::remove_dir_all(src.join("opaque")).unwrap();
    fs::remove_file(src.join("etc/f004")).unwrap();
    fs::create_dir(src.join("etc/f004")).unwrap();
    fs::write(src.join("etc/f004/inside"), b"x").unwrap();
    // Break one link of busybox (bin/ls becomes its own file) and add another name.
    fs::remove_file(src.join("bin/ls")).unwrap();
    fs::write(src.join("bin/ls"), b"own ls").unwrap();
    fs::hard_link(src.join("bin/busybox"), src.join("bin/ash")).unwrap();
    mknod(
        &src.join("dev/zero"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 5),
    )
    .unwrap();
    // Change 1 MiB inside the big file.
    {
        use std::os::unix::fs::FileExt;
        let f = fs::OpenOptions::new()
            .write(true)
            .open(src.join("big.bin"))
            .unwrap();
        f.write_all_at(&[9u8; 1 << 20], 1 << 20).unwrap();
    }

    tracing::info!("--- delta");
    let mut stream = Vec::new();
    let delta = send_delta(&src, &sent.manifest, &mut stream).unwrap();
    let got = receive(&dst, stream.as_slice()).unwrap();
    assert!(got.delta);
    assert_eq!(got.deleted, delta.deleted);
    assert_eq!(
        delta.deleted, 2,
        "f003 and opaque/ (its contents go with it)"
    );
    assert_same(&src, &dst);
    // The big file (8 MiB) is resent whole; the rest is small.
    assert!(delta.bytes < (8 << 20) + 4096, "{}", delta.bytes);
    assert!(delta.entries < 30, "{} entries", delta.entries);

    tracing::info!("--- an empty delta");
    let mut stream = Vec::new();
    let again = send_delta(&src, &delta.manifest, &mut stream).unwrap();
    assert_eq!((again.bytes, again.entries, again.deleted), (0, 0, 0));
    receive(&dst, stream.as_slice()).unwrap();
    assert_same(&src, &dst);
}

/// Encodes a full stream of `src` in memory.
fn encode(src: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    send_full(src, &mut v).unwrap();
    v
}

fn try_receive(dir: &Path, stream: &[u8]) -> Result<(), TransferError> {
    let dst = dir.join(format!("dst-{}", rand_suffix()));
    fs::create_dir(&dst).unwrap();
    receive(&dst, stream).map(drop)
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// What does this test do?
/// - a byte flipped in file data, in the framing, or in the final digest; a cut stream; a
///   stream with trailing bytes; a full stream into a non-empty directory; something that
///   is not a stream at all: each is refused with the matching error
#[test]
fn corrupt_streams_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("a"), b"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
    fs::write(src.join("b"), b"bbbb").unwrap();
    let good = encode(&src);
    try_receive(dir.path(), &good).unwrap();

    tracing::info!("--- flipped data byte");
    let pos = good.windows(8).position(|w| w == b"AAAAAAAA").unwrap();
    let mut bad = good.clone();
    bad[pos + 3] ^= 1;
    let e = try_receive(dir.path(), &bad).unwrap_err();
    assert!(
        matches!(e, TransferError::FileChecksum { ref path } if path == "a"),
        "{e}"
    );

    tracing::info!("--- flipped framing byte (b's mode)");
    // path "b" is `1u32 b`, then the kind byte, then the mode's low byte.
    let pos = good
        .windows(5)
        .position(|w| w == b"\x01\x00\x00\x00b")
        .unwrap();
    let mut bad = good.clone();
    bad[pos + 6] ^= 0o2;
    let e = try_receive(dir.path(), &bad).unwrap_err();
    assert!(matches!(e, TransferError::StreamChecksum), "{e}");

    tracing::info!("--- flipped digest byte");
    let mut bad = good.clone();
    *bad.last_mut().unwrap() ^= 0xff;
    let e = try_receive(dir.path(), &bad).unwrap_err();
    assert!(matches!(e, TransferError::StreamChecksum), "{e}");

    tracing::info!("--- cut short, everywhere");
    for cut in [9, 20, good.len() / 2, good.len() - 33, good.len() - 1] {
        let e = try_receive(dir.path(), &good[..cut]).unwrap_err();
        assert!(
            matches!(e, TransferError::Truncated { .. }),
            "cut at {cut}: {e}"
        );
    }

    tracing::info!("--- trailing bytes");
    let mut bad = good.clone();
    bad.push(0);
    let e = try_receive(dir.path(), &bad).unwrap_err();
    assert!(matches!(e, TransferError::Corrupt { .. }), "{e}");

    tracing::info!("--- a full stream into a directory that has its entries already");
    let twice = dir.path().join("twice");
    fs::create_dir(&twice).unwrap();
    receive(&twice, good.as_slice()).unwrap();
    let e = receive(&twice, good.as_slice()).unwrap_err();
    assert!(matches!(e, TransferError::Io { .. }), "{e}");

    tracing::info!("--- not a stream");
    let e = try_receive(dir.path(), b"GET / HTTP/1.1\r\n\r\n").unwrap_err();
    assert!(matches!(e, TransferError::BadMagic), "{e}");
    let e = try_receive(dir.path(), b"").unwrap_err();
    assert!(matches!(e, TransferError::BadMagic), "{e}");
}

/// Hand-encodes a stream header and entries (the format is documented in the module).
struct Raw(Vec<u8>);

impl Raw {
    fn new() -> Self {
        let mut v = b"DRVXFER\x03".to_vec();
        v.push(0);
        Self(v)
    }
    fn str(&mut self, s: &[u8]) {
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.0.extend_from_slice(s);
    }
    fn head(&mut self, path: &[u8], kind: u8) {
        self.0.push(1);
        self.str(path);
        self.0.push(kind);
        self.0.extend_from_slice(&0o755u32.to_le_bytes());
        self.0.extend_from_slice(&[0; 4 + 4 + 8 + 4 + 4]);
    }
    fn file(&mut self, path: &[u8], data: &[u8]) {
        self.head(path, 2);
        self.0.extend_from_slice(&(data.len() as u64).to_le_bytes());
        self.0.extend_from_slice(data);
        self.0
            .extend_from_slice(&xxhash_rust::xxh3::xxh3_128(data).to_le_bytes());
    }
}

/// What does this test do?
/// - streams whose paths escape the destination (`..`, absolute, through a symlink the
///   stream itself created, a hard link to outside) are refused before anything is written
///   outside it
#[test]
fn unsafe_paths_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(dir.path().join("secret"), b"s").unwrap();

    for (what, raw) in [
        ("dotdot", {
            let mut r = Raw::new();
            r.file(b"../escape", b"x");
            r
        }),
        ("absolute", {
            let mut r = Raw::new();
            r.file(b"/escape", b"x");
            r
        }),
        ("through symlink", {
            let mut r = Raw::new();
            r.head(b"ln", 3);
            r.str(outside.as_os_str().as_bytes());
            r.file(b"ln/escape", b"x");
            r
        }),
        ("hard link out", {
            let mut r = Raw::new();
            r.head(b"h", 4);
            r.str(b"../secret");
            r
        }),
    ] {
        let e = try_receive(dir.path(), &raw.0).unwrap_err();
        assert!(matches!(e, TransferError::UnsafePath(_)), "{what}: {e}");
        assert!(fs::read_dir(&outside).unwrap().next().is_none(), "{what}");
        assert!(!dir.path().join("escape").exists(), "{what}");
    }
}

/// What does this test do?
/// - the async adapters carry a full stream and then a delta between a sender task and a
///   receiver task, as the daemon does over HTTP bodies
/// - into a pool's staging directory, which is then committed as a volume; a broken body
///   fails the receive and the staging is discarded
/// - a body in 1000-byte pieces (smaller than a TLS record) rebuilds the same tree; cut
///   half-way, it fails
#[tokio::test]
async fn async_stream_into_pool_staging() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    build_tree(&src, 3 << 20);
    let pool = DirPool::new(dir.path().join("pool")).unwrap();

    tracing::info!("--- full, into staging");
    let staging = pool.stage("c1").unwrap();
    let (body, sender) = send_stream(src.clone(), None);
    let got = receive_stream(staging.clone(), body).await.unwrap();
    let sent = sender.await.unwrap().unwrap();
    assert_eq!(got.bytes, sent.bytes);

    tracing::info!("--- delta, into the same staging");
    fs::write(src.join("etc/new"), b"new").unwrap();
    let (body, sender) = send_stream(src.clone(), Some(sent.manifest));
    let got = receive_stream(staging.clone(), body).await.unwrap();
    let delta = sender.await.unwrap().unwrap();
    assert!(got.delta && got.bytes == 3 && delta.bytes == 3, "{got:?}");

    tracing::info!("--- commit");
    assert!(pool.is_staged("c1"));
    let vol = pool.commit("c1").unwrap();
    assert!(!pool.is_staged("c1") && pool.volume_exists("c1"));
    assert_same(&src, &vol);
    assert!(matches!(
        pool.stage("c1"),
        Err(drover_storage::PoolError::AlreadyExists(_))
    ));

    tracing::info!("--- a broken body");
    let staging = pool.stage("c2").unwrap();
    let (body, sender) = send_stream(src.clone(), None);
    let cut = futures::StreamExt::take(body, 3);
    let broken = futures::StreamExt::chain(
        cut,
        futures::stream::iter([Err(std::io::Error::other("peer reset"))]),
    );
    let e = receive_stream(staging, broken).await.unwrap_err();
    assert!(
        matches!(
            e,
            TransferError::Stream(..) | TransferError::Truncated { .. }
        ),
        "{e}"
    );
    drop(sender);
    pool.discard("c2").unwrap();
    assert!(!pool.is_staged("c2") && !pool.volume_exists("c2"));
    let e = pool.commit("c2").unwrap_err();
    assert!(matches!(e, drover_storage::PoolError::NotFound(_)), "{e}");

    tracing::info!("--- a body in pieces smaller than a TLS record: whole, then cut");
    let (body, sender) = send_stream(src.clone(), None);
    let whole: Vec<u8> = futures::StreamExt::collect::<Vec<_>>(body)
        .await
        .into_iter()
        .flat_map(|b| b.unwrap().to_vec())
        .collect();
    let sent = sender.await.unwrap().unwrap();
    let pieces = |n: usize| {
        let v: Vec<std::io::Result<bytes::Bytes>> = whole[..n]
            .chunks(1000)
            .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
            .collect();
        futures::stream::iter(v)
    };
    let staging = pool.stage("c3").unwrap();
    let got = receive_stream(staging, pieces(whole.len())).await.unwrap();
    assert_eq!((got.entries, got.bytes), (sent.entries, sent.bytes));
    assert_same(&src, &pool.commit("c3").unwrap());
    let staging = pool.stage("c4").unwrap();
    let cut = futures::StreamExt::chain(
        pieces(whole.len() / 2),
        futures::stream::iter([Err(std::io::Error::other("peer reset"))]),
    );
    assert!(receive_stream(staging, cut).await.is_err());
    let _ = Manifest::default();
}

/// What does this test do?
/// - sends a directory through the async adapters while another thread keeps growing and
///   shrinking a file in it (a running instance's pre-copy): every stream is well-formed
///   and received whole (file data read straight into the stream's chunks stops at the
///   size the stream announced; a file that shrank is padded)
/// - once the writer stops, a delta makes the copy identical to the source
#[tokio::test]
async fn files_changing_size_while_sent_keep_streams_whole() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("steady"), vec![7u8; 3 << 20]).unwrap();
    let moving = src.join("moving");
    fs::write(&moving, vec![1u8; 1 << 20]).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, moving) = (stop.clone(), moving.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if i % 3 == 2 {
                    fs::File::create(&moving).unwrap();
                } else {
                    let mut f = fs::OpenOptions::new().append(true).open(&moving).unwrap();
                    f.write_all(&vec![(i % 251) as u8; 300 << 10]).unwrap();
                }
                i += 1;
            }
        })
    };
    let pool = DirPool::new(dir.path().join("pool")).unwrap();
    let mut base = None;
    for round in 0..12 {
        let staging = pool.stage(&format!("c{round}")).unwrap();
        let (body, sender) = send_stream(src.clone(), None);
        let got = receive_stream(staging, body).await.unwrap();
        let sent = sender.await.unwrap().unwrap();
        assert_eq!((got.entries, got.bytes), (sent.entries, sent.bytes));
        base = Some((format!("c{round}"), sent.manifest));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    let (name, manifest) = base.unwrap();
    let (body, sender) = send_stream(src.clone(), Some(manifest));
    receive_stream(pool.staging_path(&name), body)
        .await
        .unwrap();
    sender.await.unwrap().unwrap();
    assert_same(&src, &pool.commit(&name).unwrap());
}

/// What does this test do?
/// - a body far bigger than what the receiver buffers, corrupt in its first file: the
///   receive fails with the checksum error at once, and the async side that feeds it stops
///   too (it does not wait forever for room the failed receiver will never free)
#[tokio::test]
async fn a_receiver_that_fails_early_stops_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("a"), vec![b'A'; 1 << 20]).unwrap();
    let big: Vec<u8> = (0..48u32 << 20).map(|i| (i % 253) as u8).collect();
    fs::write(src.join("b"), big).unwrap();
    let mut stream = encode(&src);
    let pos = stream.windows(8).position(|w| w == b"AAAAAAAA").unwrap();
    stream[pos + 100] ^= 1;
    let pieces: Vec<std::io::Result<bytes::Bytes>> = stream
        .chunks(64 << 10)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let dst = dir.path().join("dst");
    fs::create_dir(&dst).unwrap();
    let got = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        receive_stream(dst, futures::stream::iter(pieces)),
    )
    .await
    .expect("the receive returns");
    assert!(
        matches!(got, Err(TransferError::FileChecksum { ref path }) if path == "a"),
        "{got:?}"
    );
}
