//! `move`: what moving a running container between members costs: its downtime measured
//! from inside, and the whole move against copying the same data locally.
//!
//! Two members on loopback, each with its own disk at one pool path (every droverd runs in
//! a private mount namespace where the pool path is a bind mount of its own directory, as
//! separate hosts have), pool `local` (`dir`) and, when the daemon has the driver, pool
//! `shared` (`shared-fs`, one directory for both). Per pool and rootfs size (tiny: 1 MiB of
//! own changes; 200 MiB; 1 GiB, in one file plus 200 small ones), one busybox container
//! whose init first starts a writer that appends `/proc/uptime` (host-wide, 10 ms
//! resolution) to `/ts` every 10 ms. Then `--runs` moves, alternately m1→m2 and m2→m1:
//!
//! - `downtime_ms`: the largest gap between two lines of `/ts` written around the move
//!   (the writer dies with the stop and starts again with the container on the target);
//! - `total_ms`: from the move request to its operation's end;
//! - `server_downtime_ms`, `bytes_sent`: the move's own report;
//! - `timeline`: where the time of a move goes, median ms per step: from the request to
//!   the move's first stage (`request`: checks, the journal's first record), each stage the
//!   move reports (`stopping`, `sync`, `switch`, `starting`, `cleanup`, up to `done`), and
//!   from the move's end to the client having the answer (`answer`).
//!
//! Then the same container, stopped, is moved `--runs` times (`stopped_total`,
//! `stopped_timeline`): a stopped move has no stop and no start, only the data and the
//! journal.
//!
//! Floors in the same run: a clean stop + start of the same container (the shared-fs
//! downtime floor) and `tar -cf - . | tar -xf -` of its volume on one disk (the throughput
//! floor of a dir move).

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use hyper::Method;
use serde::Serialize;
use serde_json::{Value, json};

use crate::droverd::{self, Droverd};
use crate::report::{self, Metadata, Summary};

/// Arguments of `move`.
#[derive(Debug, Args)]
pub struct MoveArgs {
    /// Moves per cell (alternating direction).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Sizes in MiB of the data written into the container (1 = the tiny rootfs case).
    #[arg(long, default_value = "1,200,1024")]
    pub sizes: String,
    /// Two loopback addresses for the members.
    #[arg(long, default_value = "127.0.0.78,127.0.0.79")]
    pub addresses: String,
    /// droverd binary (default: build the release one).
    #[arg(long)]
    pub droverd: Option<PathBuf>,
    /// Result file (default: bench/results/move.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Copy each member's droverd log here (`m1.log`, `m2.log`) before the temporary
    /// directory goes; set `DROVER_LOG=debug` for the per-stage timings.
    #[arg(long)]
    pub logs: Option<PathBuf>,
}

/// One pool × size cell.
#[derive(Debug, Serialize)]
struct Cell {
    pool: String,
    driver: String,
    size_mib: u64,
    runs: usize,
    /// Largest gap in the container's own timestamps around each move.
    downtime: Summary,
    /// Request to end of the move operation.
    total: Summary,
    /// The move's report: stop on the source to start on the target.
    server_downtime: Summary,
    /// Bytes sent per move (median).
    bytes_sent: u64,
    /// Floor: API stop + start of the same container on one member.
    stop_start: Summary,
    /// Floor: `tar | tar` of the volume on one disk (dir pools).
    tar_copy: Option<Summary>,
    /// Floor: `cp -a` of the whole merged rootfs (image and own changes) on one disk (dir
    /// pools): what a move that copies the full rootfs would at least cost.
    cp_a: Option<Summary>,
    /// median(total) / median(tar_copy): move time per local copy time.
    ratio_total_to_tar: Option<f64>,
    /// median(total) / median(cp_a).
    ratio_total_to_cp_a: Option<f64>,
    /// median(downtime) / median(stop_start).
    ratio_downtime_to_stop_start: f64,
    /// Median ms per step of a running move (see the module doc).
    timeline: Vec<(String, f64)>,
    /// The same container moved while stopped: request to end of the move operation.
    stopped_total: Summary,
    /// median(stopped_total) / median(cp_a).
    ratio_stopped_total_to_cp_a: Option<f64>,
    /// Median ms per step of a stopped move.
    stopped_timeline: Vec<(String, f64)>,
}

#[derive(Debug, Serialize)]
struct MoveResult {
    metadata: Metadata,
    droverd: String,
    cells: Vec<Cell>,
    /// Pools that could not be measured, and why.
    skipped: Vec<String>,
}

/// Runs the bench.
pub async fn run(args: MoveArgs) -> Result<()> {
    let sizes: Vec<u64> = args
        .sizes
        .split(',')
        .map(|s| s.trim().parse().context("--sizes"))
        .collect::<Result<_>>()?;
    let ips: Vec<Ipv4Addr> = args
        .addresses
        .split(',')
        .map(|a| a.trim().parse().context("--addresses"))
        .collect::<Result<_>>()?;
    if ips.len() != 2 || args.runs == 0 {
        bail!("--addresses needs two addresses and --runs at least 1");
    }
    let mut meta = Metadata::collect();
    let real = droverd::binary(args.droverd.clone()).await?;
    let tmp = tempfile::Builder::new()
        .prefix("drover-bench-move-")
        .tempdir()
        .context("temporary directory")?;
    let pool_path = tmp.path().join("pool");
    let shared_path = tmp.path().join("shared");
    std::fs::create_dir_all(&pool_path)?;
    std::fs::create_dir_all(&shared_path)?;
    let wrapper = write_wrapper(tmp.path(), &real, &pool_path)?;
    let image = tmp.path().join("busybox.tar.gz");
    droverd::build_busybox_image(&image).await?;

    let mut daemons = Vec::new();
    for i in 0..2 {
        daemons.push(Droverd::start(&wrapper, &tmp.path().join(format!("m{}", i + 1))).await?);
    }
    let outcome = async {
        crate::cluster_writes::form(&daemons, &ips).await?;
        daemons[0].api().import_image(&image, "busybox").await?;
        let mut pools = vec![("local", "dir", pool_path.clone())];
        let mut skipped = Vec::new();
        let r = create_pool(&daemons[0], 2, "shared", "shared-fs", &shared_path).await;
        match r {
            Ok(()) => pools.push(("shared", "shared-fs", shared_path.clone())),
            Err(e) => skipped.push(format!("shared-fs: {e}")),
        }
        create_pool(&daemons[0], 2, "local", "dir", &pool_path).await?;
        let mut cells = Vec::new();
        for (pool, driver, path) in &pools {
            for &size in &sizes {
                eprintln!("--- {pool} ({driver}), {size} MiB");
                let cell = measure(&daemons, pool, driver, path, size, args.runs).await?;
                eprintln!(
                    "    downtime {} ms, total {} ms, stop+start {} ms",
                    cell.downtime.median_ms, cell.total.median_ms, cell.stop_start.median_ms
                );
                eprintln!(
                    "    stopped: total {} ms; cp -a {} ms",
                    cell.stopped_total.median_ms,
                    cell.cp_a.as_ref().map_or(f64::NAN, |c| c.median_ms)
                );
                eprintln!("    running steps (ms): {}", fmt_timeline(&cell.timeline));
                eprintln!(
                    "    stopped steps (ms): {}",
                    fmt_timeline(&cell.stopped_timeline)
                );
                cells.push(cell);
            }
        }
        Ok::<_, anyhow::Error>((cells, skipped))
    }
    .await;
    for (i, d) in daemons.into_iter().enumerate() {
        let log = d.dir().join("droverd.log");
        let _ = d.shutdown().await;
        if let Some(dir) = &args.logs {
            std::fs::create_dir_all(dir)?;
            std::fs::copy(&log, dir.join(format!("m{}.log", i + 1)))?;
        }
    }
    let (cells, skipped) = outcome?;
    meta.finish();
    let rows = cells
        .iter()
        .map(|c| {
            vec![
                c.pool.clone(),
                c.size_mib.to_string(),
                report::fmt_summary(&c.downtime),
                report::fmt_summary(&c.total),
                report::fmt_summary(&c.stopped_total),
                report::fmt_summary(&c.stop_start),
                c.tar_copy
                    .as_ref()
                    .map(report::fmt_summary)
                    .unwrap_or_else(|| "-".into()),
                c.cp_a
                    .as_ref()
                    .map(report::fmt_summary)
                    .unwrap_or_else(|| "-".into()),
                c.bytes_sent.to_string(),
            ]
        })
        .collect();
    println!(
        "{}",
        report::table(
            &[
                "pool",
                "MiB",
                "downtime ms",
                "total ms",
                "stopped total ms",
                "stop+start ms",
                "tar|tar ms",
                "cp -a ms",
                "bytes sent"
            ],
            rows
        )
    );
    let result = MoveResult {
        metadata: meta,
        droverd: real.display().to_string(),
        cells,
        skipped,
    };
    let out = args
        .out
        .unwrap_or_else(|| droverd::workspace_dir().join("bench/results/move.json"));
    report::write_json(&out, &result)?;
    println!("wrote {}", out.display());
    Ok(())
}

/// A droverd wrapper: a private mount namespace where `pool` is the member's own disk
/// (`$DROVER_DIR-disk`).
fn write_wrapper(dir: &Path, real: &Path, pool: &Path) -> Result<PathBuf> {
    let script = format!(
        r#"#!/bin/sh
own="$DROVER_DIR-disk"
mkdir -p "$own"
exec unshare -m --propagation private sh -c 'mount --bind "$1" "$2" || exit 1; shift 2; exec "$@"' \
    sh "$own" "{pool}" "{real}" "$@"
"#,
        pool = pool.display(),
        real = real.display()
    );
    let path = dir.join("droverd-wrapper");
    std::fs::write(&path, script)?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    Ok(path)
}

/// Creates pool `name`: a `dir` pool the way LXD's clients do in a cluster (each member's
/// `source` with `?target=`, then the pool), a `shared-fs` one in one request.
async fn create_pool(
    d: &Droverd,
    members: usize,
    name: &str,
    driver: &str,
    source: &Path,
) -> Result<()> {
    let source = source.display().to_string();
    let mut requests = Vec::new();
    if driver == "dir" {
        for i in 1..=members {
            requests.push((
                format!("/1.0/storage-pools?target=m{i}"),
                json!({"name": name, "driver": driver, "config": {"source": source}}),
            ));
        }
        requests.push((
            "/1.0/storage-pools".to_string(),
            json!({"name": name, "driver": driver}),
        ));
    } else {
        requests.push((
            "/1.0/storage-pools".to_string(),
            json!({"name": name, "driver": driver, "config": {"source": source}}),
        ));
    }
    for (path, body) in requests {
        let r = d.api().send_json(Method::POST, &path, &body).await?;
        if r["type"] == "error" {
            bail!("{path}: {}", r["error"]);
        }
    }
    Ok(())
}

/// The merged rootfs of `name` as `d` sees it (mounted in its namespace while it runs).
fn rootfs(d: &Droverd, pool: &Path, name: &str) -> Result<PathBuf> {
    Ok(volume(d, pool, name)?.join("rootfs"))
}

/// The volume directory of `name` on `d`'s disk.
fn volume(d: &Droverd, pool: &Path, name: &str) -> Result<PathBuf> {
    let pid = d.pid().ok_or_else(|| anyhow!("droverd is not running"))?;
    Ok(PathBuf::from(format!("/proc/{pid}/root"))
        .join(pool.strip_prefix("/").unwrap_or(pool))
        .join("containers")
        .join(format!("default_{name}")))
}

/// Host-wide uptime in centiseconds.
fn uptime_cs() -> Result<u64> {
    let s = std::fs::read_to_string("/proc/uptime")?;
    parse_uptime(s.split_whitespace().next().unwrap_or(""))
        .ok_or_else(|| anyhow!("unreadable /proc/uptime"))
}

fn parse_uptime(s: &str) -> Option<u64> {
    let (a, b) = s.split_once('.')?;
    Some(a.parse::<u64>().ok()? * 100 + b.parse::<u64>().ok()?)
}

/// Writes `mib` MiB of incompressible data (one file, plus 200 small ones when large).
fn write_data(root: &Path, mib: u64) -> Result<()> {
    let dir = root.join("data");
    std::fs::create_dir_all(&dir)?;
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; 1 << 20];
    let mut fill = |buf: &mut [u8]| {
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
    };
    let mut f = std::fs::File::create(dir.join("big"))?;
    for _ in 0..mib {
        fill(&mut buf);
        f.write_all(&buf)?;
    }
    f.sync_all()?;
    if mib > 1 {
        for i in 0..200 {
            fill(&mut buf[..4096]);
            std::fs::write(dir.join(format!("f{i}")), &buf[..(i * 19 + 1) % 4096])?;
        }
    }
    Ok(())
}

/// Installs an init that starts the timestamp writer, then runs the image's init.
fn install_writer(root: &Path) -> Result<()> {
    let init = root.join("sbin/init");
    let orig = root.join("sbin/init.orig");
    if !orig.exists() {
        std::fs::copy(&init, &orig)?;
    }
    // A new file, not a write through the link: the image's init may be running.
    std::fs::remove_file(&init)?;
    std::fs::write(
        &init,
        "#!/bin/sh\n(while :; do read u _ < /proc/uptime; echo $u >> /ts; usleep 10000; done) &\nexec /sbin/init.orig\n",
    )?;
    std::fs::set_permissions(&init, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    Ok(())
}

/// The largest gap (ms) between consecutive timestamps in `ts` within [from, to] (cs).
fn largest_gap(ts: &str, from: u64, to: u64) -> f64 {
    let stamps: Vec<u64> = ts
        .lines()
        .filter_map(parse_uptime)
        .filter(|t| (from..=to).contains(t))
        .collect();
    stamps
        .windows(2)
        .map(|w| w[1].saturating_sub(w[0]))
        .max()
        .unwrap_or(0) as f64
        * 10.0
}

async fn wait_move(d: &Droverd, r: &Value) -> Result<Value> {
    let op = r["operation"]
        .as_str()
        .ok_or_else(|| anyhow!("the move is not an operation: {r}"))?;
    let done = d.api().get(&format!("{op}/wait?timeout=600")).await?;
    if done["status"] != "Success" {
        bail!("move failed: {}", done["err"]);
    }
    Ok(done)
}

async fn measure(
    ds: &[Droverd],
    pool: &str,
    driver: &str,
    pool_path: &Path,
    size: u64,
    runs: usize,
) -> Result<Cell> {
    let name = format!("mv-{pool}-{size}");
    let api = ds[0].api();
    let r = api
        .send_json(
            Method::POST,
            "/1.0/instances?target=m1",
            &json!({"name": name, "type": "container",
                "source": {"type": "image", "alias": "busybox"},
                "devices": {"root": {"type": "disk", "path": "/", "pool": pool}}}),
        )
        .await?;
    api.wait(&r).await?;
    api.wait(&api.change_state(&name, "start").await?).await?;
    let root = rootfs(&ds[0], pool_path, &name)?;
    write_data(&root, size)?;
    install_writer(&root)?;

    // Floor: a clean stop and a start on this member (the writer starts with it).
    let mut stop_start = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        api.wait(&api.change_state(&name, "stop").await?).await?;
        api.wait(&api.change_state(&name, "start").await?).await?;
        stop_start.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    // The copy floors run right before each move, on the member the volume is on, so a
    // move and its floor see the same load (it drifts by tens of per cent in a minute here).
    let (mut tar, mut cp) = (Vec::new(), Vec::new());

    let (mut downtime, mut total, mut server, mut bytes) = (vec![], vec![], vec![], vec![]);
    let mut steps = Vec::new();
    for run in 0..runs {
        let (from, to) = if run % 2 == 0 { (0, 1) } else { (1, 0) };
        if driver == "dir" {
            tar.push(tar_copy(&volume(&ds[from], pool_path, &name)?)?);
            cp.push(cp_a(&rootfs(&ds[from], pool_path, &name)?)?);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = uptime_cs()?;
        let moved = move_once(&ds[from], &name, to + 1).await?;
        total.push(moved.total_ms);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = uptime_cs()?;
        let ts = std::fs::read_to_string(rootfs(&ds[to], pool_path, &name)?.join("ts"))?;
        downtime.push(largest_gap(&ts, before, after));
        let report = &moved.done["metadata"];
        server.push(report["downtime_ms"].as_f64().unwrap_or(0.0));
        bytes.push(report["bytes_sent"].as_u64().unwrap_or(0));
        steps.push(moved.steps);
    }
    let owner = runs % 2;
    let r = ds[owner]
        .api()
        .send_json(
            Method::PUT,
            &format!("/1.0/instances/{name}/state"),
            &json!({"action": "stop", "force": true}),
        )
        .await?;
    ds[owner].api().wait(&r).await?;
    // The same container, stopped: no stop and no start in the move.
    let (mut stopped_total, mut stopped_steps) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let from = (owner + run) % 2;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let moved = move_once(&ds[from], &name, 2 - from).await?;
        if moved.done["metadata"]["running"] != false {
            bail!("a stopped move left {name} running");
        }
        stopped_total.push(moved.total_ms);
        stopped_steps.push(moved.steps);
    }
    bytes.sort_unstable();
    let tar_copy = (!tar.is_empty()).then(|| Summary::of(&tar));
    let cp_a = (!cp.is_empty()).then(|| Summary::of(&cp));
    let ratio = |a: f64, b: f64| ((a / b) * 1000.0).round() / 1000.0;
    let (d, t, s) = (
        Summary::of(&downtime),
        Summary::of(&total),
        Summary::of(&stop_start),
    );
    Ok(Cell {
        pool: pool.to_string(),
        driver: driver.to_string(),
        size_mib: size,
        runs,
        ratio_total_to_tar: tar_copy.as_ref().map(|c| ratio(t.median_ms, c.median_ms)),
        ratio_total_to_cp_a: cp_a.as_ref().map(|c| ratio(t.median_ms, c.median_ms)),
        ratio_downtime_to_stop_start: ratio(d.median_ms, s.median_ms),
        ratio_stopped_total_to_cp_a: cp_a
            .as_ref()
            .map(|c| ratio(report::median(&stopped_total), c.median_ms)),
        stopped_total: Summary::of(&stopped_total),
        timeline: median_steps(&steps),
        stopped_timeline: median_steps(&stopped_steps),
        downtime: d,
        total: t,
        server_downtime: Summary::of(&server),
        bytes_sent: bytes[bytes.len() / 2],
        stop_start: s,
        tar_copy,
        cp_a,
    })
}

/// One move as the client saw it.
struct Moved {
    /// The finished operation.
    done: Value,
    /// Request to answer (ms).
    total_ms: f64,
    /// The move's steps in order, ms each (see the module doc).
    steps: Vec<(String, f64)>,
}

/// Wall-clock time, microseconds since the Unix epoch (the clock of the move's `stages`).
fn now_us() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_micros() as f64)
}

/// Moves `name` from `from` to member `m{to}` and waits for the end of the move.
async fn move_once(from: &Droverd, name: &str, to: usize) -> Result<Moved> {
    let (t, asked_us) = (Instant::now(), now_us());
    let r = from
        .api()
        .send_json(
            Method::POST,
            &format!("/1.0/instances/{name}?target=m{to}"),
            &json!({"name": name, "migration": true, "live": false}),
        )
        .await?;
    let done = wait_move(from, &r).await?;
    let total_ms = t.elapsed().as_secs_f64() * 1000.0;
    let answered_us = now_us();
    let mut steps = Vec::new();
    let mut last = ("request".to_string(), asked_us);
    for st in done["metadata"]["stages"].as_array().into_iter().flatten() {
        let (Some(stage), Some(at)) = (st["stage"].as_str(), st["at_us"].as_f64()) else {
            continue;
        };
        steps.push((last.0, (at - last.1) / 1000.0));
        last = (stage.to_string(), at);
    }
    steps.push((last.0, (answered_us - last.1) / 1000.0));
    if let Some(end) = steps.last_mut() {
        end.0 = "answer".to_string();
    }
    Ok(Moved {
        done,
        total_ms,
        steps,
    })
}

/// The median of each step over moves, in the order of the first move that has it.
fn median_steps(moves: &[Vec<(String, f64)>]) -> Vec<(String, f64)> {
    let mut names: Vec<String> = Vec::new();
    for (n, _) in moves.iter().flatten() {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    names
        .into_iter()
        .map(|n| {
            let xs: Vec<f64> = moves
                .iter()
                .filter_map(|m| m.iter().find(|(s, _)| *s == n).map(|(_, ms)| *ms))
                .collect();
            let med = (report::median(&xs) * 10.0).round() / 10.0;
            (n, med)
        })
        .collect()
}

fn fmt_timeline(steps: &[(String, f64)]) -> String {
    steps
        .iter()
        .map(|(n, ms)| format!("{n} {ms}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `cp -a` of the merged rootfs `src` into a new directory on the same disk, then `sync -f`;
/// ms.
fn cp_a(src: &Path) -> Result<f64> {
    let containers = src.parent().and_then(Path::parent);
    timed_copy(containers, src, ".bench-cp", false, |dst| {
        format!("cp -a '{}' '{}'", src.display(), dst.display())
    })
}

/// `tar -C src --one-file-system -cf - . | tar -C <new dir on the same disk> -xf -`, then
/// `sync`; ms. The merged view mounted in the volume is another filesystem: only the
/// volume's own files are copied, as a move sends them.
fn tar_copy(src: &Path) -> Result<f64> {
    timed_copy(src.parent(), src, ".bench-tar", true, |dst| {
        format!(
            "tar -C '{}' --one-file-system -cf - . | tar -C '{}' -xf -",
            src.display(),
            dst.display()
        )
    })
}

/// Times the shell command `copy(dst)` followed by `sync -f` of `dst`, a new directory
/// `name` next to `beside` (the pool's `containers/`; made first when `mkdir`), removed
/// before and after; ms.
fn timed_copy(
    beside: Option<&Path>,
    src: &Path,
    name: &str,
    mkdir: bool,
    copy: impl Fn(&Path) -> String,
) -> Result<f64> {
    let dst = beside
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("no parent of {}", src.display()))?
        .join(name);
    let _ = std::fs::remove_dir_all(&dst);
    if mkdir {
        std::fs::create_dir_all(&dst)?;
    }
    let script = format!("{} && sync -f '{}'", copy(&dst), dst.display());
    let t = Instant::now();
    let ok = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .status()?
        .success();
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    std::fs::remove_dir_all(&dst)?;
    if !ok {
        bail!("{script} failed");
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_read_from_uptime_lines() {
        let ts = "100.00\n100.01\n100.02\n100.40\n100.41\n";
        assert_eq!(largest_gap(ts, 0, u64::MAX), 380.0);
        assert_eq!(largest_gap(ts, 10_000, 10_002), 10.0);
        assert_eq!(parse_uptime("12.34"), Some(1234));
    }
}
