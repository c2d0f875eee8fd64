//! `transfer`: throughput of drover's volume transfer stream against `tar | tar` of the
//! same data, and what moving an instance with 1 MiB of own changes costs against a full
//! `cp -a` of its rootfs.
//!
//! Both sides copy from and to the same disk with the page cache warm, through a pipe:
//! `sh -c 'tar -C src -cf - . | tar -C dst -xf -'` against `transfer::send_full` and
//! `transfer::receive` on two threads joined by `std::io::pipe` (per-file and whole-stream
//! SHA-256 included). `sync` runs before every timed run (not timed) so one run's writeback
//! does not land in the next; runs of the two sides alternate.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use storage::DirPool;
use storage::transfer::{receive, send_full};

use crate::droverd::workspace_dir;
use crate::report::{self, Metadata, Summary};

/// Arguments of `drover-bench transfer`.
#[derive(Debug, clap::Args)]
pub struct TransferArgs {
    /// Timed runs per cell.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Size of the single big file, MiB.
    #[arg(long, default_value_t = 1024)]
    big_mib: u64,
    /// Number of 10 KiB files of the many-files set.
    #[arg(long, default_value_t = 20_000)]
    files: usize,
    /// Scratch directory (on the disk to measure; removed afterwards).
    #[arg(long, default_value = "/var/tmp/drover-bench-transfer")]
    scratch: PathBuf,
    /// Result file.
    #[arg(long, default_value = "bench/results/transfer.json")]
    out: PathBuf,
}

#[derive(Debug, Serialize)]
struct DataSet {
    name: String,
    bytes: u64,
    entries: u64,
    tar: Summary,
    drover: Summary,
    tar_mib_s: f64,
    drover_mib_s: f64,
    /// drover throughput ÷ tar throughput (medians); the target is ≥ 0.8.
    ratio: f64,
}

#[derive(Debug, Serialize)]
struct OwnChanges {
    /// Size of the instance's own changes written before the move (MiB).
    own_mib: u64,
    /// Bytes of the transfer stream (framing and data) of the volume directory.
    stream_bytes: u64,
    /// File data bytes in that stream.
    data_bytes: u64,
    /// Send + receive into the target's staging + commit (syncfs + rename) + mount on a
    /// target that has the image base.
    move_own_changes: Summary,
    /// `cp -a` of the instance's whole merged rootfs (image + own changes), no sync.
    cp_a_rootfs: Summary,
    /// `move_own_changes` ÷ `cp_a_rootfs` (medians); the target is < 0.5.
    ratio: f64,
    /// Creating an instance volume layered on the image (mkdir + mount), ms.
    create_layered: Summary,
    /// Creating it as today's full copy of the image (`cp -a`), ms.
    create_copy: Summary,
}

#[derive(Debug, Serialize)]
struct TransferResult {
    metadata: Metadata,
    checksum: &'static str,
    datasets: Vec<DataSet>,
    own_changes: OwnChanges,
}

/// Runs the benchmark and writes the JSON result.
pub fn run(a: TransferArgs) -> Result<()> {
    let metadata = Metadata::collect();
    if a.scratch.exists() {
        fs::remove_dir_all(&a.scratch).context("clear scratch")?;
    }
    fs::create_dir_all(&a.scratch)?;
    let result = measure(&a, metadata);
    let cleanup = fs::remove_dir_all(&a.scratch);
    let mut r = result?;
    cleanup.context("remove scratch")?;
    r.metadata.finish();
    let out = workspace_dir().join(&a.out);
    report::write_json(&out, &r)?;
    print(&r);
    println!("written to {}", out.display());
    Ok(())
}

fn measure(a: &TransferArgs, metadata: Metadata) -> Result<TransferResult> {
    let s = &a.scratch;
    let mut datasets = Vec::new();

    eprintln!("preparing data sets in {}", s.display());
    let big = s.join("big");
    fs::create_dir(&big)?;
    random_file(&big.join("file"), a.big_mib << 20)?;
    let many = s.join("many");
    for i in 0..a.files {
        let d = many.join(format!("d{:03}", i % 100));
        if i < 100 {
            fs::create_dir_all(&d)?;
        }
        fs::write(d.join(format!("f{i:05}")), pattern(i, 10 * 1024))?;
    }
    let image = busybox_image(s)?;

    for (name, src) in [
        (format!("1 file of {} MiB", a.big_mib), big.clone()),
        (format!("{} files of 10 KiB", a.files), many.clone()),
        ("busybox rootfs".to_string(), image.join("rootfs")),
    ] {
        eprintln!("--- {name}");
        datasets.push(compare_copy(&name, &src, s, a.runs)?);
    }
    fs::remove_dir_all(&big)?;
    fs::remove_dir_all(&many)?;

    eprintln!("--- own changes");
    let own_changes = own_changes(&image, s, a.runs)?;
    Ok(TransferResult {
        metadata,
        checksum: "xxh3-128: per file + whole-stream framing",
        datasets,
        own_changes,
    })
}

fn compare_copy(name: &str, src: &Path, scratch: &Path, runs: usize) -> Result<DataSet> {
    let (bytes, entries) = du(src)?;
    let dst = scratch.join("dst");
    let (mut tar, mut drover) = (Vec::new(), Vec::new());
    // One warm-up of each, not counted (page cache, allocator).
    for i in 0..runs + 1 {
        for side in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
            sync();
            fs::create_dir(&dst)?;
            let t = Instant::now();
            if side == 0 {
                let status = Command::new("sh")
                    .arg("-c")
                    .arg("tar -C \"$1\" -cf - . | tar -C \"$2\" -xf -")
                    .arg("sh")
                    .arg(src)
                    .arg(&dst)
                    .status()?;
                if !status.success() {
                    bail!("tar | tar failed: {status}");
                }
            } else {
                pipe_copy(src, &dst)?;
            }
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            if i > 0 {
                if side == 0 { &mut tar } else { &mut drover }.push(ms);
            }
            fs::remove_dir_all(&dst)?;
        }
    }
    let (tar, drover) = (Summary::of(&tar), Summary::of(&drover));
    let mib = bytes as f64 / (1 << 20) as f64;
    let tar_mib_s = report::round(mib / (tar.median_ms / 1000.0));
    let drover_mib_s = report::round(mib / (drover.median_ms / 1000.0));
    Ok(DataSet {
        name: name.to_string(),
        bytes,
        entries,
        ratio: report::round(drover_mib_s / tar_mib_s),
        tar,
        drover,
        tar_mib_s,
        drover_mib_s,
    })
}

/// drover's stream through a pipe between two threads.
fn pipe_copy(src: &Path, dst: &Path) -> Result<(u64, u64)> {
    let (r, w) = std::io::pipe()?;
    // tar moves 10 KiB records through the default 64 KiB pipe; drover moves 256 KiB
    // pieces, so give the pipe room for a few of them (as the daemon's channel has) or
    // sender and receiver take turns instead of overlapping.
    nix::fcntl::fcntl(&w, nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20))?;
    let s = src.to_path_buf();
    let sender = std::thread::spawn(move || send_full(&s, w));
    let got = receive(dst, r);
    let sent = sender
        .join()
        .map_err(|_| anyhow!("sender panicked"))?
        .context("send")?;
    let got = got.context("receive")?;
    Ok((sent.stream_bytes, got.bytes))
}

fn own_changes(image: &Path, scratch: &Path, runs: usize) -> Result<OwnChanges> {
    let src = DirPool::new(scratch.join("pool-src"))?;
    let dst = DirPool::new(scratch.join("pool-dst"))?;
    let guard = Unmount(vec![src.clone(), dst.clone()]);
    dst.ensure_base("busybox", image)?;
    src.create_volume_on_image("c1", "busybox", image)?;
    let root = src.mount_rootfs("c1")?;
    random_file(&root.join("root/own"), 1 << 20)?;
    fs::write(root.join("etc/hostname"), "c1\n")?;

    let (mut moved, mut copied) = (Vec::new(), Vec::new());
    let (mut stream_bytes, mut data_bytes) = (0, 0);
    let cp_dst = scratch.join("cp");
    for i in 0..runs + 1 {
        for side in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
            sync();
            let t = Instant::now();
            if side == 0 {
                let staging = dst.stage("c1")?;
                (stream_bytes, data_bytes) = pipe_copy(&src.volume_path("c1"), &staging)?;
                dst.commit("c1")?;
                dst.mount_rootfs("c1")?;
            } else {
                let status = Command::new("cp")
                    .arg("-a")
                    .arg("--")
                    .arg(&root)
                    .arg(&cp_dst)
                    .status()?;
                if !status.success() {
                    bail!("cp -a failed: {status}");
                }
            }
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            if i > 0 {
                if side == 0 { &mut moved } else { &mut copied }.push(ms);
            }
            if side == 0 {
                dst.delete_volume("c1")?;
                dst.ensure_base("busybox", image)?;
            } else {
                fs::remove_dir_all(&cp_dst)?;
            }
        }
    }

    let (mut layered, mut copy) = (Vec::new(), Vec::new());
    for i in 0..runs.max(5) * 2 {
        sync();
        let t = Instant::now();
        src.create_volume_on_image(&format!("l{i}"), "busybox", image)?;
        layered.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        src.create_volume_from_image(&format!("f{i}"), image)?;
        copy.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    drop(guard);
    let (moved, copied) = (Summary::of(&moved), Summary::of(&copied));
    Ok(OwnChanges {
        own_mib: 1,
        stream_bytes,
        data_bytes,
        ratio: report::round(moved.median_ms / copied.median_ms),
        move_own_changes: moved,
        cp_a_rootfs: copied,
        create_layered: Summary::of(&layered),
        create_copy: Summary::of(&copy),
    })
}

/// Unmounts every volume of its pools when dropped.
struct Unmount(Vec<DirPool>);

impl Drop for Unmount {
    fn drop(&mut self) {
        for pool in &self.0 {
            if let Ok(rd) = fs::read_dir(pool.source().join("containers")) {
                for e in rd.flatten() {
                    let _ = pool.unmount_rootfs(&e.file_name().to_string_lossy());
                }
            }
        }
    }
}

/// Builds the busybox image and unpacks it; returns the unpacked directory.
fn busybox_image(scratch: &Path) -> Result<PathBuf> {
    let tarball = scratch.join("busybox.tar.gz");
    let out = Command::new(workspace_dir().join("images/busybox/build.sh"))
        .arg(&tarball)
        .output()?;
    if !out.status.success() {
        bail!("build.sh: {}", String::from_utf8_lossy(&out.stderr));
    }
    let dir = scratch.join("image");
    fs::create_dir(&dir)?;
    let status = Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .arg("-xzf")
        .arg(&tarball)
        .status()?;
    if !status.success() {
        bail!("unpack busybox: {status}");
    }
    Ok(dir)
}

fn random_file(path: &Path, len: u64) -> Result<()> {
    let mut f = fs::File::create(path)?;
    std::io::copy(&mut fs::File::open("/dev/urandom")?.take(len), &mut f)?;
    Ok(())
}

fn pattern(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i.wrapping_mul(31) ^ j) as u8).collect()
}

/// Apparent bytes of regular files and number of entries under `dir`.
fn du(dir: &Path) -> Result<(u64, u64)> {
    let (mut bytes, mut entries) = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d)? {
            let e = e?;
            let m = e.metadata()?;
            entries += 1;
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                bytes += m.len();
            }
        }
    }
    Ok((bytes, entries))
}

fn sync() {
    nix::unistd::sync();
}

fn print(r: &TransferResult) {
    let rows = r
        .datasets
        .iter()
        .map(|d| {
            vec![
                d.name.clone(),
                format!("{:.0}", d.tar_mib_s),
                format!("{:.0}", d.drover_mib_s),
                format!("{:.2}", d.ratio),
            ]
        })
        .collect();
    println!(
        "{}",
        report::table(&["data", "tar|tar MiB/s", "drover MiB/s", "ratio"], rows)
    );
    let o = &r.own_changes;
    println!(
        "1 MiB own changes: stream {} bytes, move {} vs cp -a rootfs {} (ratio {:.2}); create layered {} vs copy {}",
        o.stream_bytes,
        report::fmt_summary(&o.move_own_changes),
        report::fmt_summary(&o.cp_a_rootfs),
        o.ratio,
        report::fmt_summary(&o.create_layered),
        report::fmt_summary(&o.create_copy),
    );
}
