//! `start-stop`: N busybox containers started and cleanly stopped through drover's API,
//! one by one and all at once, against the same work done by the runtime directly.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use driver_oci::RuntimeKind;
use futures::future::try_join_all;
use serde::Serialize;

use crate::api::Api;
use crate::droverd::{self, Droverd};
use crate::raw::RawFloor;
use crate::report::{self, Metadata, Ratio, Summary};

/// Options of `start-stop`.
#[derive(Debug, clap::Args)]
pub struct StartStopArgs {
    /// Number of containers.
    #[arg(long, default_value_t = 20)]
    pub n: usize,
    /// Measured runs (each run measures all twelve cells once: four per side).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Unmeasured runs first (page cache, runtime binary, daemon warm-up).
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Result file (default: bench/results/start-stop.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// droverd binary to use instead of building the workspace's release build.
    #[arg(long)]
    pub droverd: Option<PathBuf>,
    /// Copy droverd's log here at the end (for profiling: set `DROVER_LOG`, which droverd
    /// inherits, e.g. `DROVER_LOG=info,drover_driver_oci=debug`).
    #[arg(long)]
    pub daemon_log: Option<PathBuf>,
    /// Measure each run side after side (all four cells through the API, then all four on
    /// each raw floor), as before session 6, instead of interleaving the one-by-one cells
    /// container by container.
    #[arg(long)]
    pub phases: bool,
}

/// The four measured cells, in the order a run measures them.
const CELLS: [(&str, &str); 4] = [
    (
        "start_one_by_one",
        "N starts one after another, each awaited (API: PUT state start + operation wait; raw: run --detach)",
    ),
    (
        "stop_one_by_one",
        "N clean stops one after another (API: PUT state stop + wait; raw: kill SIGPWR, wait for exit, delete)",
    ),
    (
        "start_all_at_once",
        "N starts issued together, then all awaited",
    ),
    (
        "stop_all_at_once",
        "N clean stops issued together, then all awaited",
    ),
];

/// One cell of the result file.
#[derive(Debug, Serialize)]
struct CellResult {
    name: &'static str,
    description: &'static str,
    /// `drover`, `raw` (the runtime's binary as on disk) and `raw_sealed` (the runtime run
    /// from a sealed in-memory copy, as droverd runs it): total wall time for the N
    /// containers, per run.
    series: std::collections::BTreeMap<&'static str, Summary>,
    /// drover/raw (the name it has had since the first result file).
    ratio: Ratio,
    /// drover/raw_sealed: drover against the runtime driven the way drover drives it.
    ratio_sealed: Ratio,
    /// `start_one_by_one` of an interleaved run: the median over every measured start of
    /// drover's time over the raw start next to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    per_start_ratio_median: Option<f64>,
    /// The same against the raw_sealed start next to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    per_start_ratio_median_sealed: Option<f64>,
}

/// Extra facts of this benchmark.
#[derive(Debug, Serialize)]
struct Setup {
    n: usize,
    runs: usize,
    warmup: usize,
    runtime: String,
    runtime_version: String,
    isolation: String,
    droverd: String,
    order: &'static str,
    /// droverd's own CPU time (user + system, not its runtime children) per start or stop
    /// over the measured runs, ms (clock-tick resolution, averaged over 4·N·runs ops).
    droverd_cpu_ms_per_op: f64,
}

#[derive(Debug, Serialize)]
struct StartStopResult {
    benchmark: &'static str,
    metadata: Metadata,
    setup: Setup,
    cells: Vec<CellResult>,
}

/// Runs the benchmark, prints the table, writes the JSON.
pub async fn run(args: StartStopArgs) -> Result<()> {
    if args.n == 0 || args.runs == 0 {
        bail!("--n and --runs must be at least 1");
    }
    let mut meta = Metadata::collect();
    let bin = droverd::binary(args.droverd.clone()).await?;
    let tmp = tempfile::Builder::new()
        .prefix("drover-bench-")
        .tempdir()
        .context("temporary directory")?;
    let image = tmp.path().join("busybox.tar.gz");
    droverd::build_busybox_image(&image).await?;
    let daemon = Droverd::start(&bin, &tmp.path().join("drover")).await?;
    let tag = std::process::id();
    let names: Vec<String> = (0..args.n).map(|i| format!("b{tag}x{i}")).collect();
    let mut floors: Vec<RawFloor> = Vec::new();
    let outcome = measure(&args, &daemon, &image, &names, tag, &mut floors).await;
    // Clean up whatever happened: nothing of ours may keep running.
    if outcome.is_err() {
        for name in &names {
            if let Ok(r) = daemon
                .api()
                .send_json(
                    hyper::Method::PUT,
                    &format!("/1.0/instances/{name}/state"),
                    &serde_json::json!({"action": "stop", "force": true}),
                )
                .await
            {
                let _ = daemon.api().wait(&r).await;
            }
        }
    }
    for name in &names {
        let _ = daemon.api().delete_instance(name).await;
    }
    for floor in &floors {
        floor.cleanup().await;
    }
    let server = daemon.server.clone();
    let log = daemon.log_tail();
    if let Some(dest) = &args.daemon_log {
        std::fs::copy(daemon.dir().join("droverd.log"), dest)
            .with_context(|| format!("copy droverd's log to {}", dest.display()))?;
    }
    daemon.shutdown().await?;
    let (samples, cpu_ms) = outcome.with_context(|| format!("droverd log tail:\n{log}"))?;
    meta.finish();

    let raw = floors.first().ok_or_else(|| anyhow!("raw floor missing"))?;
    let per_start = |k: usize| -> Option<f64> {
        let all: Vec<f64> = samples
            .iter()
            .flat_map(|s| s.per_start[k].iter().copied())
            .collect();
        (!all.is_empty()).then(|| report::ratio_round(report::median(&all)))
    };
    let cells: Vec<CellResult> = CELLS
        .iter()
        .enumerate()
        .map(|(i, (name, description))| {
            let [d, r, s] = SIDES.map(|side| {
                samples
                    .iter()
                    .map(|x| x.totals[side as usize][i])
                    .collect::<Vec<f64>>()
            });
            CellResult {
                name,
                description,
                series: [
                    ("drover", Summary::of(&d)),
                    ("raw", Summary::of(&r)),
                    ("raw_sealed", Summary::of(&s)),
                ]
                .into(),
                ratio: Ratio::new("drover/raw", &d, &r),
                ratio_sealed: Ratio::new("drover/raw_sealed", &d, &s),
                per_start_ratio_median: if i == 0 { per_start(0) } else { None },
                per_start_ratio_median_sealed: if i == 0 { per_start(1) } else { None },
            }
        })
        .collect();
    let result = StartStopResult {
        benchmark: "start-stop",
        metadata: meta,
        setup: Setup {
            n: args.n,
            runs: args.runs,
            warmup: args.warmup,
            runtime: server["environment"]["container_runtime"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            runtime_version: server["environment"]["driver_version"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            isolation: format!("{:?}", raw.runtime().isolation()),
            droverd: bin.display().to_string(),
            order: if args.phases {
                "per run: the three sides one after another (all four cells each), in the \
                 order [drover, raw, raw_sealed] rotated by run % 3 (runs numbered from 0, \
                 warm-up included)"
            } else {
                "one-by-one cells interleaved container by container: container i runs its \
                 three sides back to back, in the order [drover, raw, raw_sealed] rotated by \
                 (i + run) % 3; all-at-once cells: the three sides one after another, that \
                 order rotated by run % 3 (runs numbered from 0, warm-up included)"
            },
            droverd_cpu_ms_per_op: report::round(cpu_ms / (4 * args.n * args.runs) as f64),
        },
        cells,
    };
    print_table(&result);
    let out = args
        .out
        .unwrap_or_else(|| droverd::workspace_dir().join("bench/results/start-stop.json"));
    report::write_json(&out, &result)?;
    println!("wrote {}", out.display());
    Ok(())
}

/// The three sides of a run, in the order the rotation starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// Through droverd's API.
    Drover = 0,
    /// The runtime's binary as it is on disk.
    Raw = 1,
    /// The runtime from a sealed in-memory copy, as droverd runs it.
    RawSealed = 2,
}

const SIDES: [Side; 3] = [Side::Drover, Side::Raw, Side::RawSealed];

/// [`SIDES`] rotated left by `k % 3`: the order in which the sides run.
fn rotation(k: usize) -> [Side; 3] {
    [0, 1, 2].map(|j| SIDES[(k + j) % 3])
}

/// Totals (ms) of one measured run.
#[derive(Debug)]
struct RunSamples {
    /// Per side (indexed by [`Side`]), per cell in [`CELLS`] order.
    totals: [[f64; 4]; 3],
    /// Each container's one-by-one start through drover over its start on `raw` (`[0]`)
    /// and on `raw_sealed` (`[1]`); interleaved runs only.
    per_start: [Vec<f64>; 2],
}

/// The two floors: `[raw, raw_sealed]`.
type Floors<'a> = [&'a RawFloor; 2];

/// The floor a raw side runs on (`None` for [`Side::Drover`]).
fn floor<'a>(floors: Floors<'a>, side: Side) -> Option<&'a RawFloor> {
    match side {
        Side::Drover => None,
        Side::Raw => Some(floors[0]),
        Side::RawSealed => Some(floors[1]),
    }
}

async fn measure(
    args: &StartStopArgs,
    daemon: &Droverd,
    image: &Path,
    names: &[String],
    tag: u32,
    floors_slot: &mut Vec<RawFloor>,
) -> Result<(Vec<RunSamples>, f64)> {
    let api = daemon.api();
    let kind: RuntimeKind = daemon
        .runtime()?
        .parse()
        .map_err(|e: String| anyhow!("{e}"))?;
    api.import_image(image, "busybox").await?;
    eprintln!("creating {} instances (not timed)", names.len());
    for name in names {
        api.create_instance(name, "busybox").await?;
    }
    let base = daemon
        .dir()
        .parent()
        .ok_or_else(|| anyhow!("no parent"))?
        .to_path_buf();
    // Separate ids (the cgroup parent is shared), runtime roots and rootfs copies.
    for (sealed, prefix, dir) in [(false, "raw", "raw"), (true, "rawsealed", "raw-sealed")] {
        let sources = names
            .iter()
            .enumerate()
            .map(|(i, name)| Ok((format!("{prefix}{tag}x{i}"), instance_rootfs(daemon, name)?)))
            .collect::<Result<Vec<_>>>()?;
        let floor = RawFloor::prepare(kind, sealed, &base.join(dir), &sources)
            .await
            .with_context(|| format!("prepare the {prefix} floor"))?;
        floors_slot.push(floor);
    }
    let [raw, sealed] = floors_slot.as_slice() else {
        bail!("expected two floors, have {}", floors_slot.len());
    };
    let floors = [raw, sealed];
    eprintln!(
        "runtime {kind}, isolation {:?}, floors: stock binary and sealed copy ({}); \
         {} warm-up + {} measured runs of N={}",
        raw.runtime().isolation(),
        sealed.runtime().program().display(),
        args.warmup,
        args.runs,
        raw.len()
    );
    let mut out = Vec::new();
    let mut cpu0 = None;
    for run in 0..args.warmup + args.runs {
        let warm = run < args.warmup;
        if run == args.warmup {
            cpu0 = daemon.cpu_ms();
        }
        let samples = if args.phases {
            phased_run(api, names, floors, warm, run).await?
        } else {
            interleaved_run(api, names, floors, warm, run).await?
        };
        eprintln!(
            "{} {run}: drover {:?} raw {:?} raw_sealed {:?} ms",
            if warm { "warm-up" } else { "run" },
            samples.totals[0].map(report::round),
            samples.totals[1].map(report::round),
            samples.totals[2].map(report::round),
        );
        if !warm {
            out.push(samples);
        }
    }
    let cpu = match (cpu0, daemon.cpu_ms()) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    Ok((out, cpu))
}

/// One run measured side after side (`--phases`): all four cells through the API, then all
/// four on each floor, the order of the three sides rotated by `run`.
async fn phased_run(
    api: &Api,
    names: &[String],
    floors: Floors<'_>,
    verify: bool,
    run: usize,
) -> Result<RunSamples> {
    let mut totals = [[0.0; 4]; 3];
    for side in rotation(run) {
        totals[side as usize] = match floor(floors, side) {
            None => drover_run(api, names, verify).await?,
            Some(raw) => raw_run(raw).await?,
        };
    }
    Ok(RunSamples {
        totals,
        per_start: [Vec::new(), Vec::new()],
    })
}

/// One run with the one-by-one cells interleaved: container `i` is started (then, in the
/// stop cell, stopped) through the API and on both floors back to back, the order of the
/// three sides rotated by `i + run`. All sides then run under the same conditions at every
/// step (as many containers up, the same moment's load), so a drift of the machine during
/// the cell falls on all alike. The all-at-once cells cannot be interleaved: they run side
/// after side, the order rotated by `run`.
async fn interleaved_run(
    api: &Api,
    names: &[String],
    floors: Floors<'_>,
    verify: bool,
    run: usize,
) -> Result<RunSamples> {
    let mut totals = [[0.0; 4]; 3];
    let mut per_start = [
        Vec::with_capacity(names.len()),
        Vec::with_capacity(names.len()),
    ];
    // PID 1 of each container on each floor.
    let mut pids = [
        Vec::with_capacity(names.len()),
        Vec::with_capacity(names.len()),
    ];
    for (i, name) in names.iter().enumerate() {
        let mut t = [0.0; 3];
        let mut pid = [0; 2];
        for side in rotation(i + run) {
            let k = side as usize;
            t[k] = match floor(floors, side) {
                None => timed_api(api, name, "start").await?,
                Some(raw) => {
                    let (ms, p) = timed_raw_start(raw, i).await?;
                    pid[k - 1] = p;
                    ms
                }
            };
        }
        for k in 0..3 {
            totals[k][0] += t[k];
        }
        for k in 0..2 {
            per_start[k].push(t[0] / t[k + 1]);
            pids[k].push(pid[k]);
        }
    }
    drover_stoppable(api, names, verify).await?;
    for pid in pids.iter().flatten() {
        stoppable(*pid).await?;
    }
    for (i, name) in names.iter().enumerate() {
        for side in rotation(i + run) {
            let k = side as usize;
            totals[k][1] += match floor(floors, side) {
                None => timed_api(api, name, "stop").await?,
                Some(raw) => timed_raw_stop(raw, i, pids[k - 1][i]).await?,
            };
        }
    }
    for side in rotation(run) {
        let k = side as usize;
        [totals[k][2], totals[k][3]] = match floor(floors, side) {
            None => drover_all_at_once(api, names, verify).await?,
            Some(raw) => raw_all_at_once(raw).await?,
        };
    }
    Ok(RunSamples { totals, per_start })
}

/// One state change through the API, awaited: its wall time, ms.
async fn timed_api(api: &Api, name: &str, action: &str) -> Result<f64> {
    let t0 = Instant::now();
    let r = api.change_state(name, action).await?;
    api.wait(&r).await?;
    Ok(ms_since(t0))
}

/// Starts raw container `i`: the wall time (ms) and PID 1.
async fn timed_raw_start(raw: &RawFloor, i: usize) -> Result<(f64, i32)> {
    let t0 = Instant::now();
    let pid = raw.start(i).await?;
    Ok((ms_since(t0), pid))
}

/// Cleanly stops raw container `i` whose PID 1 is `pid`: the wall time, ms.
async fn timed_raw_stop(raw: &RawFloor, i: usize, pid: i32) -> Result<f64> {
    let t0 = Instant::now();
    raw.stop(i, pid).await?;
    Ok(ms_since(t0))
}

/// The all-at-once cells through the API: the [start, stop] totals, ms.
async fn drover_all_at_once(api: &Api, names: &[String], verify: bool) -> Result<[f64; 2]> {
    let mut t = [0.0; 2];
    for (cell, action) in [(0, "start"), (1, "stop")] {
        let t0 = Instant::now();
        let ops = try_join_all(names.iter().map(|n| api.change_state(n, action))).await?;
        try_join_all(ops.iter().map(|op| api.wait(op))).await?;
        t[cell] = ms_since(t0);
        if action == "start" {
            drover_stoppable(api, names, verify).await?;
        }
    }
    Ok(t)
}

/// The all-at-once cells on the raw runtime: the [start, stop] totals, ms.
async fn raw_all_at_once(raw: &RawFloor) -> Result<[f64; 2]> {
    let t0 = Instant::now();
    let pids = try_join_all((0..raw.len()).map(|i| raw.start(i))).await?;
    let start = ms_since(t0);
    for pid in &pids {
        stoppable(*pid).await?;
    }
    let t0 = Instant::now();
    try_join_all(pids.iter().enumerate().map(|(i, pid)| raw.stop(i, *pid))).await?;
    Ok([start, ms_since(t0)])
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// One run through the API: the four cells. With `verify`, checks (untimed) that every
/// instance reports Running after the first start phase.
async fn drover_run(api: &Api, names: &[String], verify: bool) -> Result<[f64; 4]> {
    let mut t = [0.0; 4];
    let t0 = Instant::now();
    for name in names {
        let r = api.change_state(name, "start").await?;
        api.wait(&r).await?;
    }
    t[0] = ms_since(t0);
    drover_stoppable(api, names, verify).await?;
    let t0 = Instant::now();
    for name in names {
        let r = api.change_state(name, "stop").await?;
        api.wait(&r).await?;
    }
    t[1] = ms_since(t0);
    [t[2], t[3]] = drover_all_at_once(api, names, verify).await?;
    Ok(t)
}

/// Untimed, between a start and a stop phase: waits until every instance's PID 1 is
/// [`stoppable`]; with `verify`, also checks that each reports `Running`.
async fn drover_stoppable(api: &Api, names: &[String], verify: bool) -> Result<()> {
    for name in names {
        let st = api.get(&format!("/1.0/instances/{name}/state")).await?;
        if verify && st["status"] != "Running" {
            bail!("{name} is {} after start", st["status"]);
        }
        let pid = st["pid"]
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| anyhow!("{name} has no pid after start: {st}"))?;
        stoppable(pid).await.with_context(|| name.clone())?;
    }
    Ok(())
}

/// Waits until `pid` has a handler for SIGPWR (`SigCgt` in `/proc/<pid>/status`).
///
/// The busybox init is a shell script: a stop signal that arrives before its `trap` line
/// ran is ignored (PID 1 of a pid namespace ignores signals it does not handle), and the
/// stop then lasts its whole timeout. Any manager has this race; the benchmark waits it
/// out, untimed, on both sides, so that a stop phase measures stopping, not that race.
pub(crate) async fn stoppable(pid: i32) -> Result<()> {
    let bit = 1u64 << (libc::SIGPWR - 1);
    let t0 = Instant::now();
    loop {
        let status = tokio::fs::read_to_string(format!("/proc/{pid}/status"))
            .await
            .with_context(|| format!("pid {pid} is gone"))?;
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
            .unwrap_or(0);
        if caught & bit != 0 {
            return Ok(());
        }
        if t0.elapsed() > std::time::Duration::from_secs(10) {
            bail!("pid {pid} installed no SIGPWR handler within 10 s");
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

/// One run on the raw runtime: the four cells.
async fn raw_run(raw: &RawFloor) -> Result<[f64; 4]> {
    let mut t = [0.0; 4];
    let t0 = Instant::now();
    let mut pids = Vec::with_capacity(raw.len());
    for i in 0..raw.len() {
        pids.push(raw.start(i).await?);
    }
    t[0] = ms_since(t0);
    for pid in &pids {
        stoppable(*pid).await?;
    }
    let t0 = Instant::now();
    for (i, pid) in pids.iter().enumerate() {
        raw.stop(i, *pid).await?;
    }
    t[1] = ms_since(t0);
    [t[2], t[3]] = raw_all_at_once(raw).await?;
    Ok(t)
}

/// The rootfs droverd made for instance `name` (`<pool>/…/default_<name>/rootfs`), seen
/// through droverd's own mount namespace (`/proc/<pid>/root`): a volume on a `dir` pool is
/// an overlay mounted there, invisible from other namespaces.
fn instance_rootfs(daemon: &Droverd, name: &str) -> Result<PathBuf> {
    let volume = format!("default_{name}");
    let pid = daemon
        .pid()
        .ok_or_else(|| anyhow!("droverd is not running"))?;
    let dir = daemon.dir();
    let pools = Path::new(&format!("/proc/{pid}/root"))
        .join(dir.strip_prefix("/").unwrap_or(dir))
        .join("storage-pools");
    find_dir(&pools, &volume, 4)
        .map(|d| d.join("rootfs"))
        .filter(|r| r.join("sbin/init").exists())
        .ok_or_else(|| anyhow!("no rootfs of {name} under {}", pools.display()))
}

fn find_dir(dir: &Path, name: &str, depth: usize) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut subdirs = Vec::new();
    for e in entries.flatten() {
        if e.file_type().ok()?.is_dir() {
            if e.file_name() == name {
                return Some(e.path());
            }
            subdirs.push(e.path());
        }
    }
    if depth == 0 {
        return None;
    }
    subdirs
        .iter()
        .filter(|d| !d.ends_with("rootfs"))
        .find_map(|d| find_dir(d, name, depth - 1))
}

fn print_table(r: &StartStopResult) {
    let n = r.setup.n as f64;
    let ratio = |x: &Ratio| format!("{:.2} ({:.2})", x.of_medians, x.paired_median);
    let rows = r
        .cells
        .iter()
        .map(|c| {
            let [d, w, s] = ["drover", "raw", "raw_sealed"].map(|k| &c.series[k]);
            vec![
                c.name.to_string(),
                report::fmt_summary(d),
                report::fmt_summary(w),
                report::fmt_summary(s),
                format!(
                    "{:.1} / {:.1} / {:.1}",
                    d.median_ms / n,
                    w.median_ms / n,
                    s.median_ms / n
                ),
                ratio(&c.ratio),
                ratio(&c.ratio_sealed),
            ]
        })
        .collect();
    println!(
        "\nstart-stop: N={} {} ({}), {} runs, medians (min–max) of the total for N, ms",
        r.setup.n, r.setup.runtime_version, r.setup.isolation, r.setup.runs
    );
    println!(
        "raw: the runtime's binary as on disk; raw sealed: run from a sealed in-memory copy, \
         as droverd runs it. Ratios: of the medians (paired median)"
    );
    println!(
        "droverd's own CPU time: {:.2} ms per start or stop",
        r.setup.droverd_cpu_ms_per_op
    );
    println!(
        "{}",
        report::table(
            &[
                "cell",
                "drover",
                "raw",
                "raw sealed",
                "per container d / r / s",
                "drover/raw",
                "drover/raw sealed",
            ],
            rows
        )
    );
    if let Some(c) = r.cells.first()
        && let (Some(a), Some(b)) = (c.per_start_ratio_median, c.per_start_ratio_median_sealed)
    {
        println!(
            "start one by one, the median of each start's ratio (interleaved): \
             drover/raw {a:.2}, drover/raw sealed {b:.2}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_puts_each_side_first_in_turn() {
        use Side::{Drover, Raw, RawSealed};
        assert_eq!(rotation(0), [Drover, Raw, RawSealed]);
        assert_eq!(rotation(1), [Raw, RawSealed, Drover]);
        assert_eq!(rotation(2), [RawSealed, Drover, Raw]);
        assert_eq!(rotation(3), rotation(0));
        // Container i of run r: (i + r) % 3, so a run shifts every container's order.
        assert_eq!(rotation(4 + 1), rotation(2));
    }
}
