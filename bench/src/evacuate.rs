//! `evacuate`: evacuating and restoring a member of a three-member cluster, drover against
//! real LXD 5.0.2 in the same run.
//!
//! Each cycle creates N busybox containers on member m2 (every other one started), then
//! times `POST /1.0/cluster/members/m2/state {"action": "evacuate", "mode": ""}` (the
//! request `lxc cluster evacuate m2 --force` sends) from the request to the end of its
//! operation, checks where everything went, times the restore the same way, checks that
//! everything is home and running as before, and deletes the instances. Requests go to
//! member m1 on both sides (which hands them to m2).
//!
//! Per instance, when it stopped, moved and started again:
//!
//! - drover: the operation's `evacuation_timeline` (the daemon's wall clock at each stage
//!   of each instance's stop, move and start);
//! - LXD: `lxc monitor` on m1 during the job (LXD relays every member's events): the
//!   operation's `Stopping "X"` / `Migrating "X"` / `Starting "X"` lines and the lifecycle
//!   events `instance-shutdown`, `instance-renamed` (the moved copy takes its name: the
//!   transfer is over) and `instance-started`, each with LXD's own timestamp.
//!
//! Downtime of a running instance = from the start of its stop to running again.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use hyper::Method;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::api::Api;
use crate::droverd::{self, Droverd};
use crate::launch_vs_lxd::{LxdArgs, lxd_version};
use crate::report::{self, Metadata, Summary};

/// Arguments of `evacuate`.
#[derive(Debug, Args)]
pub struct EvacuateArgs {
    /// Instance counts on the evacuated member (half of them running).
    #[arg(long, default_value = "10,30")]
    pub sizes: String,
    /// Measured cycles (evacuate + restore) per side, pool and size, after one warm-up.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// drover pools to measure (`dir`, `shared-fs`).
    #[arg(long, default_value = "dir,shared-fs")]
    pub pools: String,
    /// Parallelism sweep, drover only, at the largest size: `parallel/per_target` pairs
    /// sent with the request (e.g. `1/1,2/1,4/2,8/4`); empty for none.
    #[arg(long, default_value = "")]
    pub sweep: String,
    /// Loopback addresses of the three drover members.
    #[arg(long, default_value = "127.0.5.1,127.0.5.2,127.0.5.3")]
    pub addresses: String,
    /// Leave LXD out (drover only; no ratio).
    #[arg(long)]
    pub no_lxd: bool,
    /// droverd binary to use instead of building the workspace's release build.
    #[arg(long)]
    pub droverd: Option<PathBuf>,
    /// Where LXD comes from.
    #[command(flatten)]
    pub lxd: LxdArgs,
    /// Result file (default: bench/results/evacuate.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Keep the temporary directory (the members' state and `droverd.log`s) and say where.
    #[arg(long)]
    pub keep_tmp: bool,
    /// Also run every drover cycle with this many running busybox-vm VMs on m2 besides
    /// the containers (live-migrated by the evacuation), to measure what they add.
    #[arg(long, default_value_t = 0)]
    pub vms: usize,
}

/// State directory of the LXD member the requests go to.
const LXD_M1: &str = "/var/lib/lxd-ref/m1";
/// setup.sh's image alias.
const LXD_ALIAS: &str = "lxd-ref-busybox";
/// The member evacuated.
const MEMBER: &str = "m2";
/// Memory of each VM of `--vms`.
const VM_MEMORY: &str = "256MiB";
/// How long one evacuation or restore may take.
const JOB_TIMEOUT: Duration = Duration::from_secs(900);

/// One side of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Drover,
    Lxd,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Drover => "drover",
            Side::Lxd => "lxd",
        }
    }
}

/// Evacuate or restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Evacuate,
    Restore,
}

impl Phase {
    fn action(self) -> &'static str {
        match self {
            Phase::Evacuate => "evacuate",
            Phase::Restore => "restore",
        }
    }
}

/// `[from, to]` in ms since the request was sent.
type Span = Option<[f64; 2]>;

/// What one instance went through in one job, in ms since the request.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
struct InstanceTimes {
    name: String,
    running: bool,
    /// Copying while the instance still runs (drover, dir pools).
    precopy: Span,
    stop: Span,
    transfer: Span,
    start: Span,
    /// After it runs again: the source copy goes (drover).
    cleanup: Span,
    /// First and last thing seen of this instance.
    begin_ms: Option<f64>,
    end_ms: Option<f64>,
    /// Start of its stop to running again (running instances).
    downtime_ms: Option<f64>,
}

/// One timed job.
#[derive(Debug, Clone, Serialize)]
struct Job {
    side: &'static str,
    pool: String,
    n: usize,
    phase: &'static str,
    /// Running VMs on m2 besides the N containers (`--vms`).
    vms: usize,
    /// Warm-up runs are `None`.
    run: Option<usize>,
    /// `parallel/per_target` asked in the request (`None`: the defaults).
    parallel: Option<String>,
    total_ms: f64,
    instances: Vec<InstanceTimes>,
}

/// A cell: one side, pool, size, phase and parallelism over the measured runs.
#[derive(Debug, Serialize)]
struct Cell {
    side: &'static str,
    pool: String,
    n: usize,
    phase: &'static str,
    vms: usize,
    parallel: Option<String>,
    total: Summary,
    /// Every running instance's downtime over all runs.
    downtime: Option<Summary>,
}

/// drover against LXD for one pool, size and phase.
#[derive(Debug, Serialize)]
struct Speedup {
    drover_pool: String,
    lxd_pool: &'static str,
    n: usize,
    phase: &'static str,
    drover_median_ms: f64,
    lxd_median_ms: f64,
    /// median(LXD) / median(drover).
    speedup: f64,
    /// Median of per-run LXD/drover (runs of both sides are interleaved).
    paired_speedup: f64,
    /// The target for an evacuation (10× at N=10, 20× at N=30), if any.
    target: Option<f64>,
    met: Option<bool>,
}

/// What K running VMs add to the evacuation (or restore) of the same N containers, same
/// pool, measured in the same runs.
#[derive(Debug, Serialize)]
struct VmAdded {
    pool: String,
    n: usize,
    vms: usize,
    phase: &'static str,
    containers_only_median_ms: f64,
    with_vms_median_ms: f64,
    /// median(with VMs) - median(containers only).
    added_ms: f64,
    /// Median of per-run differences (the two cycles of a run run back to back).
    paired_added_ms: f64,
}

#[derive(Debug, Serialize)]
struct Setup {
    sizes: Vec<usize>,
    runs: usize,
    warmup: usize,
    pools: Vec<String>,
    vms: usize,
    vm_memory: &'static str,
    running_per_size: &'static str,
    request: &'static str,
    drover_defaults: &'static str,
    droverd: String,
    drover_runtime: String,
    lxd_server_version: Option<String>,
    lxd_pool: &'static str,
    order: &'static str,
}

#[derive(Debug, Serialize)]
struct EvacuateResult {
    benchmark: &'static str,
    metadata: Metadata,
    setup: Setup,
    cells: Vec<Cell>,
    speedups: Vec<Speedup>,
    vm_added: Vec<VmAdded>,
    jobs: Vec<Job>,
}

/// A cluster to evacuate: where requests go and how instances are made.
struct Cluster {
    side: Side,
    /// Member m1's API (every request goes there).
    api: Api,
    /// Member m2's state directory (drover: where a VM's console log is).
    m2_dir: Option<PathBuf>,
}

impl Cluster {
    fn create_body(&self, name: &str, pool: &str) -> Value {
        match self.side {
            Side::Drover => json!({"name": name, "type": "container",
                "source": {"type": "image", "alias": "busybox"},
                "devices": {"root": {"type": "disk", "path": "/", "pool": pool}}}),
            Side::Lxd => json!({"name": name, "type": "container",
                "source": {"type": "image", "alias": LXD_ALIAS}}),
        }
    }
}

/// Runs the benchmark, prints the tables, writes the JSON.
pub async fn run(args: EvacuateArgs) -> Result<()> {
    let sizes: Vec<usize> = report::parse_list(&args.sizes, "--sizes")?;
    let pools: Vec<String> = report::parse_list(&args.pools, "--pools")?;
    let sweep: Vec<(u32, u32)> = args
        .sweep
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let (a, b) = s
                .trim()
                .split_once('/')
                .context("--sweep wants p/t pairs")?;
            Ok((a.parse()?, b.parse()?))
        })
        .collect::<Result<_>>()?;
    let ips: Vec<Ipv4Addr> = report::parse_list(&args.addresses, "--addresses")?;
    if ips.len() != 3 || args.runs == 0 || sizes.is_empty() || sizes.contains(&0) {
        bail!("--addresses needs three addresses, --runs and --sizes at least 1");
    }
    if let Some(p) = pools
        .iter()
        .find(|p| !["dir", "shared-fs"].contains(&p.as_str()))
    {
        bail!("unknown pool {p:?}: dir or shared-fs");
    }
    let mut meta = Metadata::collect();
    let bin = droverd::binary(args.droverd.clone()).await?;
    let tmp = tempfile::Builder::new()
        .prefix("drover-bench-evacuate-")
        .tempdir()?;
    let with_lxd = !args.no_lxd;
    if with_lxd {
        args.lxd.up(tmp.path()).await?;
    }
    let outcome = async {
        let image = tmp.path().join("busybox.tar.gz");
        droverd::build_busybox_image(&image).await?;
        let mut daemons = Vec::new();
        for i in 1..=3 {
            daemons.push(Droverd::start(&bin, &tmp.path().join(format!("m{i}"))).await?);
        }
        let res = async {
            crate::cluster_writes::form(&daemons, &ips).await?;
            daemons[0].api().import_image(&image, "busybox").await?;
            if args.vms > 0 {
                let vm_image = tmp.path().join("busybox-vm.tar.gz");
                let st = Command::new("sh")
                    .arg(droverd::workspace_dir().join("images/busybox-vm/build.sh"))
                    .arg("--unified")
                    .arg(&vm_image)
                    .status()
                    .await?;
                if !st.success() {
                    bail!("images/busybox-vm/build.sh --unified failed");
                }
                daemons[0]
                    .api()
                    .import_image(&vm_image, "busybox-vm")
                    .await?;
            }
            make_pools(&daemons[0], tmp.path()).await?;
            let drover = Cluster {
                side: Side::Drover,
                api: daemons[0].api().clone(),
                m2_dir: Some(daemons[1].dir().to_path_buf()),
            };
            let lxd = Cluster {
                side: Side::Lxd,
                api: Api::new(Path::new(LXD_M1).join("unix.socket")),
                m2_dir: None,
            };
            let lxd_version = if with_lxd {
                let server =
                    lxd.api.get("/1.0").await.map_err(|e| {
                        anyhow!("the LXD reference at {LXD_M1} does not answer: {e:#}")
                    })?;
                let v = lxd_version(&server)?;
                Some(v)
            } else {
                None
            };
            let jobs = measure(
                &drover,
                with_lxd.then_some(&lxd),
                &pools,
                &sizes,
                &sweep,
                args.runs,
                args.vms,
            )
            .await?;
            Ok::<_, anyhow::Error>((jobs, lxd_version, daemons[0].runtime()?))
        }
        .await;
        for d in daemons {
            let _ = d.shutdown().await;
        }
        res
    }
    .await;
    if with_lxd {
        args.lxd.down().await;
    }
    if args.keep_tmp {
        eprintln!("kept {}", tmp.keep().display());
    }
    let (jobs, lxd_version, runtime) = outcome?;
    meta.finish();
    let cells = cells(&jobs);
    let speedups = speedups(&jobs, &pools, &sizes);
    let vm_added = vm_added(&jobs);
    let result = EvacuateResult {
        benchmark: "evacuate",
        metadata: meta,
        setup: Setup {
            sizes,
            runs: args.runs,
            warmup: 1,
            pools,
            vms: args.vms,
            vm_memory: VM_MEMORY,
            running_per_size: "every other instance (N/2, rounded up) runs; the rest are stopped",
            request: "POST /1.0/cluster/members/m2/state {\"action\": \"evacuate\"|\"restore\", \"mode\": \"\"} \
                      to m1 (what `lxc cluster evacuate|restore m2 --force` sends), timed to the end \
                      of the operation",
            drover_defaults: "cluster.evacuate.parallel=4, cluster.evacuate.parallel_per_target=2",
            droverd: bin.display().to_string(),
            drover_runtime: runtime,
            lxd_server_version: lxd_version,
            lxd_pool: "dir (setup.sh's `local`: each member's own directory)",
            order: "per run and size: drover's pools then LXD on even runs, LXD first on odd runs",
        },
        cells,
        speedups,
        vm_added,
        jobs,
    };
    print_tables(&result);
    let out = args
        .out
        .unwrap_or_else(|| droverd::workspace_dir().join("bench/results/evacuate.json"));
    report::write_json(&out, &result)?;
    println!("wrote {}", out.display());
    Ok(())
}

/// Pool `dir` (each member's own directory, defined per member as LXD's clients do) and
/// pool `shared-fs` (one directory every member sees).
async fn make_pools(d: &Droverd, tmp: &Path) -> Result<()> {
    let mut requests = Vec::new();
    for i in 1..=3 {
        let source = tmp.join(format!("m{i}-dir-pool"));
        requests.push((
            format!("/1.0/storage-pools?target=m{i}"),
            json!({"name": "dir", "driver": "dir", "config": {"source": source}}),
        ));
    }
    requests.push((
        "/1.0/storage-pools".into(),
        json!({"name": "dir", "driver": "dir"}),
    ));
    let shared = tmp.join("shared-pool");
    std::fs::create_dir_all(&shared)?;
    requests.push((
        "/1.0/storage-pools".into(),
        json!({"name": "shared-fs", "driver": "shared-fs", "config": {"source": shared}}),
    ));
    for (path, body) in requests {
        d.api().send_json(Method::POST, &path, &body).await?;
    }
    Ok(())
}

/// Every cycle, interleaved; returns every job (warm-ups marked).
async fn measure(
    drover: &Cluster,
    lxd: Option<&Cluster>,
    pools: &[String],
    sizes: &[usize],
    sweep: &[(u32, u32)],
    runs: usize,
    vms: usize,
) -> Result<Vec<Job>> {
    let mut jobs = Vec::new();
    let mut sides: Vec<(&Cluster, &str)> = pools.iter().map(|p| (drover, p.as_str())).collect();
    if let Some(l) = lxd {
        sides.push((l, "dir"));
    }
    // Warm-up: the first move of an image's instance to a member brings the image there.
    for &(c, pool) in &sides {
        eprintln!("--- warm-up: {} {pool}, N={}", c.side.name(), sizes[0]);
        cycle(c, pool, sizes[0], 0, None, None).await?;
        if vms > 0 && c.side == Side::Drover {
            cycle(c, pool, sizes[0], vms, None, None).await?;
        }
    }
    for &n in sizes {
        for run in 0..runs {
            let mut order = sides.clone();
            if run % 2 == 1 {
                order.reverse();
            }
            for &(c, pool) in &order {
                let mut kinds = vec![0];
                if vms > 0 && c.side == Side::Drover {
                    // Alternate which of the pair goes first.
                    kinds.insert(run % 2, vms);
                }
                for k in kinds {
                    let [e, r] = cycle(c, pool, n, k, Some(run), None).await?;
                    eprintln!(
                        "N={n} +{k} VMs run {run}: {} {pool}: evacuate {:.0} ms, restore {:.0} ms",
                        c.side.name(),
                        e.total_ms,
                        r.total_ms
                    );
                    jobs.extend([e, r]);
                }
            }
        }
    }
    let n = sizes.iter().copied().max().unwrap_or(1);
    for pool in pools {
        for run in 0..runs {
            for &p in sweep {
                let [e, r] = cycle(drover, pool, n, 0, Some(run), Some(p)).await?;
                eprintln!(
                    "sweep N={n} {pool} parallel {}/{} run {run}: evacuate {:.0} ms, restore {:.0} ms",
                    p.0, p.1, e.total_ms, r.total_ms
                );
                jobs.extend([e, r]);
            }
        }
    }
    Ok(jobs)
}

/// Creates N instances on m2 (every other one running) and `vms` running VMs, evacuates,
/// restores, deletes.
async fn cycle(
    c: &Cluster,
    pool: &str,
    n: usize,
    vms: usize,
    run: Option<usize>,
    parallel: Option<(u32, u32)>,
) -> Result<[Job; 2]> {
    let tag = match (c.side, pool) {
        (Side::Lxd, _) => "l",
        (Side::Drover, "dir") => "d",
        (Side::Drover, _) => "s",
    };
    let names: Vec<String> = (0..n).map(|i| format!("ev{tag}{n}x{i}")).collect();
    let running: Vec<bool> = (0..n).map(|i| i % 2 == 0).collect();
    let vm_names: Vec<String> = (0..vms).map(|i| format!("ev{tag}{n}v{i}")).collect();
    let res = async {
        create_all(c, pool, &names, &running).await?;
        create_vms(c, pool, &vm_names).await?;
        let timed = |phase| job(c, phase, pool, &names, &running, &vm_names, run, parallel);
        Ok([timed(Phase::Evacuate).await?, timed(Phase::Restore).await?])
    }
    .await;
    let names: Vec<String> = names.into_iter().chain(vm_names).collect();
    for name in &names {
        let _ = c
            .api
            .send_json(
                Method::PUT,
                &format!("/1.0/instances/{name}/state"),
                &json!({"action": "stop", "force": true}),
            )
            .await;
    }
    // Deleting waits for the forced stops (a running instance cannot be deleted).
    for name in &names {
        for attempt in 0..50 {
            match c.api.delete_instance(name).await {
                Ok(()) => break,
                Err(e) if e.to_string().contains("not found") => break,
                Err(e) if attempt == 49 => eprintln!("warning: {name} not deleted: {e:#}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
    res
}

/// Creates the instances on m2, four at a time, and starts the running ones.
async fn create_all(c: &Cluster, pool: &str, names: &[String], running: &[bool]) -> Result<()> {
    use futures::StreamExt;
    let results: Vec<Result<()>> = futures::stream::iter(names.iter().zip(running))
        .map(|(name, &run)| async move {
            let r = c
                .api
                .send_json(
                    Method::POST,
                    &format!("/1.0/instances?target={MEMBER}"),
                    &c.create_body(name, pool),
                )
                .await?;
            c.api.wait(&r).await?;
            if run {
                c.api
                    .wait(&c.api.change_state(name, "start").await?)
                    .await?;
            }
            Ok(())
        })
        .buffer_unordered(4)
        .collect()
        .await;
    results.into_iter().collect()
}

/// Creates and starts running busybox-vm VMs on m2 and waits until each guest is up
/// (its ready line on the console), untimed.
async fn create_vms(c: &Cluster, pool: &str, names: &[String]) -> Result<()> {
    let Some(m2) = &c.m2_dir else {
        return Ok(());
    };
    for name in names {
        let body = json!({"name": name, "type": "virtual-machine",
            "source": {"type": "image", "alias": "busybox-vm"},
            "config": {"limits.memory": VM_MEMORY},
            "devices": {"root": {"type": "disk", "path": "/", "pool": pool}},
            "start": true});
        let r = c
            .api
            .send_json(
                Method::POST,
                &format!("/1.0/instances?target={MEMBER}"),
                &body,
            )
            .await?;
        c.api.wait(&r).await?;
    }
    for name in names {
        let log = m2.join(format!("vms/default_{name}/console.log"));
        let deadline = Instant::now() + Duration::from_secs(180);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("DROVER-VM-READY")
        {
            if Instant::now() >= deadline {
                bail!("VM {name} did not boot within 180 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(())
}

/// Waits until every running instance's init handles the stop signal (untimed; see
/// `start_stop::stoppable`): a stop that lands before the init's `trap` line waits out its
/// whole timeout on either manager.
async fn stoppable(c: &Cluster, names: &[String], running: &[bool]) -> Result<()> {
    for (name, _) in names.iter().zip(running).filter(|(_, r)| **r) {
        let state = c.api.get(&format!("/1.0/instances/{name}/state")).await?;
        let pid = state["pid"].as_i64().unwrap_or(0);
        if pid <= 0 {
            bail!("{}: {name} runs without a pid: {state}", c.side.name());
        }
        let pid = i32::try_from(pid)?;
        if Path::new(&format!("/proc/{pid}")).exists() {
            crate::start_stop::stoppable(pid).await?;
        } else {
            // Not in this pid namespace: give the init the time it needs.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(())
}

/// One timed evacuation or restore of m2 (containers `names`, running VMs `vms`), checked
/// afterwards.
#[allow(clippy::too_many_arguments)]
async fn job(
    c: &Cluster,
    phase: Phase,
    pool: &str,
    containers: &[String],
    container_running: &[bool],
    vms: &[String],
    run: Option<usize>,
    parallel: Option<(u32, u32)>,
) -> Result<Job> {
    stoppable(c, containers, container_running).await?;
    let names: Vec<String> = containers.iter().chain(vms).cloned().collect();
    let running: Vec<bool> = container_running
        .iter()
        .copied()
        .chain(vms.iter().map(|_| true))
        .collect();
    let (names, running) = (&names[..], &running[..]);
    let mut body = json!({"action": phase.action(), "mode": ""});
    if let Some((p, t)) = parallel {
        body["parallel"] = json!(p);
        body["parallel_per_target"] = json!(t);
    }
    let monitor = match c.side {
        Side::Lxd => Some(Monitor::start().await?),
        Side::Drover => None,
    };
    let t0 = now_us();
    let started = Instant::now();
    let path = format!("/1.0/cluster/members/{MEMBER}/state");
    let r = c.api.send_json(Method::POST, &path, &body).await?;
    let done = wait_op(&c.api, &r).await?;
    let total_ms = started.elapsed().as_secs_f64() * 1e3;
    let times = match monitor {
        Some(m) => {
            let events = m.stop().await?;
            lxd_times(&events, t0, phase, names, running)
        }
        None => drover_times(&done, t0, names, running),
    };
    check_placement(c, phase, names, running).await?;
    Ok(Job {
        side: c.side.name(),
        pool: pool.to_string(),
        n: containers.len(),
        phase: phase.action(),
        vms: vms.len(),
        run,
        parallel: parallel.map(|(p, t)| format!("{p}/{t}")),
        total_ms: report::round(total_ms),
        instances: times,
    })
}

/// Waits for the operation of an async response and fails unless it succeeded; returns
/// the operation.
async fn wait_op(api: &Api, response: &Value) -> Result<Value> {
    let op = response["operation"]
        .as_str()
        .ok_or_else(|| anyhow!("not an operation: {response}"))?;
    let deadline = Instant::now() + JOB_TIMEOUT;
    loop {
        let done = api.get(&crate::api::wait_path(op, 60)).await?;
        match done["status"].as_str() {
            Some("Success") => return Ok(done),
            Some("Running" | "Pending") if Instant::now() < deadline => continue,
            other => bail!(
                "operation {op} ended {}: {}",
                other.unwrap_or("without a status"),
                done["err"].as_str().unwrap_or("")
            ),
        }
    }
}

/// After an evacuation nothing is on m2; after a restore everything is; the running ones
/// run, the others do not.
async fn check_placement(
    c: &Cluster,
    phase: Phase,
    names: &[String],
    running: &[bool],
) -> Result<()> {
    let list = c.api.get("/1.0/instances?recursion=1").await?;
    let by_name: BTreeMap<&str, &Value> = list
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| Some((v["name"].as_str()?, v)))
                .collect()
        })
        .unwrap_or_default();
    for (name, &run) in names.iter().zip(running) {
        let v = by_name
            .get(name.as_str())
            .ok_or_else(|| anyhow!("{}: {name} is gone", c.side.name()))?;
        let home = v["location"] == MEMBER;
        let ok_place = match phase {
            Phase::Evacuate => !home,
            Phase::Restore => home,
        };
        let ok_state = (v["status"] == "Running") == run;
        if !ok_place || !ok_state {
            bail!(
                "{} after {}: {name} is {} on {} (expected {} {})",
                c.side.name(),
                phase.action(),
                v["status"],
                v["location"],
                if run { "Running" } else { "Stopped" },
                match phase {
                    Phase::Evacuate => "off m2",
                    Phase::Restore => "on m2",
                }
            );
        }
    }
    Ok(())
}

fn now_us() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

/// drover's timeline: the stages of each instance from the operation's metadata.
fn drover_times(op: &Value, t0_us: f64, names: &[String], running: &[bool]) -> Vec<InstanceTimes> {
    let timeline = op["metadata"][api::evacuation::TIMELINE_KEY]
        .as_array()
        .cloned()
        .unwrap_or_default();
    names
        .iter()
        .zip(running)
        .map(|(name, &run)| {
            let stages: Vec<(String, f64)> = timeline
                .iter()
                .find(|t| t["instance"] == name.as_str())
                .and_then(|t| t["stages"].as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|s| {
                            Some((
                                s["stage"].as_str()?.to_string(),
                                (s["at_us"].as_f64()? - t0_us) / 1e3,
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default();
            segments_of_stages(name, run, &stages)
        })
        .collect()
}

/// Segments from drover's stages (in the order reached; ms since the request).
fn segments_of_stages(name: &str, running: bool, stages: &[(String, f64)]) -> InstanceTimes {
    let at = |s: &str| stages.iter().find(|(n, _)| n == s).map(|(_, t)| *t);
    let first = |of: &[&str]| {
        stages
            .iter()
            .find(|(n, _)| of.contains(&n.as_str()))
            .map(|(_, t)| *t)
    };
    let span = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b >= a => Some([report::round(a), report::round(b)]),
        _ => None,
    };
    let stopping = at("stopping");
    let moved = first(&["sync", "verify", "switch"]);
    let starting = at("starting");
    let run_again = at("running");
    let after_move = first(&["starting", "cleanup", "done"]);
    let stop_end = first(&["sync", "verify", "switch", "end"]);
    let times: Vec<f64> = stages.iter().map(|(_, t)| *t).collect();
    InstanceTimes {
        name: name.to_string(),
        running,
        precopy: span(at("precopy"), first(&["stopping", "sync"])),
        stop: span(stopping, stop_end),
        transfer: span(moved, after_move),
        start: span(starting, run_again),
        cleanup: span(at("cleanup"), at("done")),
        begin_ms: times.iter().copied().reduce(f64::min).map(report::round),
        end_ms: times.iter().copied().reduce(f64::max).map(report::round),
        downtime_ms: match (stopping, run_again) {
            (Some(a), Some(b)) if running => Some(report::round(b - a)),
            _ => None,
        },
    }
}

/// `lxc monitor` on LXD's m1 while a job runs.
struct Monitor {
    child: tokio::process::Child,
    reader: tokio::task::JoinHandle<Vec<u8>>,
}

impl Monitor {
    async fn start() -> Result<Monitor> {
        let mut child = Command::new("lxc")
            .args([
                "monitor",
                "--format",
                "json",
                "--all-projects",
                "--type",
                "lifecycle",
                "--type",
                "operation",
            ])
            .env("LXD_DIR", LXD_M1)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("spawn lxc monitor")?;
        let mut out = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("lxc monitor has no stdout"))?;
        let reader = tokio::spawn(async move {
            let mut buf = Vec::new();
            let _ = out.read_to_end(&mut buf).await;
            buf
        });
        // Untimed: let it connect before the request goes out.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(Monitor { child, reader })
    }

    /// Stops it (after a moment for the last events) and returns the events.
    async fn stop(mut self) -> Result<Vec<Value>> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        self.child.kill().await?;
        let buf = self.reader.await?;
        Ok(serde_json::Deserializer::from_slice(&buf)
            .into_iter::<Value>()
            .filter_map(Result::ok)
            .collect())
    }
}

/// LXD's timeline from its events (see the module docs).
fn lxd_times(
    events: &[Value],
    t0_us: f64,
    phase: Phase,
    names: &[String],
    running: &[bool],
) -> Vec<InstanceTimes> {
    let description = match phase {
        Phase::Evacuate => "Evacuating cluster member",
        Phase::Restore => "Restoring cluster member",
    };
    // (instance, what) → first time seen, in ms since the request.
    let mut seen: BTreeMap<(String, &'static str), f64> = BTreeMap::new();
    for ev in events {
        let Some(t) = ev["timestamp"]
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            .map(|d| (d.timestamp_micros() as f64 - t0_us) / 1e3)
        else {
            continue;
        };
        let m = &ev["metadata"];
        let found: Option<(String, &'static str)> = if ev["type"] == "operation" {
            if m["description"] != description {
                continue;
            }
            m["metadata"]["evacuation_progress"]
                .as_str()
                .and_then(|line| {
                    let what = ["Stopping", "Migrating", "Starting"]
                        .into_iter()
                        .find(|w| line.starts_with(w))?;
                    let name = line.split('"').nth(1)?;
                    Some((name.to_string(), what))
                })
        } else {
            let action: &'static str = match m["action"].as_str() {
                Some("instance-shutdown") => "shutdown",
                Some("instance-stopped") => "shutdown",
                Some("instance-renamed") => "renamed",
                Some("instance-started") => "started",
                _ => continue,
            };
            m["source"]
                .as_str()
                .and_then(|s| s.strip_prefix("/1.0/instances/"))
                .map(|n| (n.to_string(), action))
        };
        if let Some(key) = found {
            seen.entry(key).and_modify(|v| *v = v.min(t)).or_insert(t);
        }
    }
    names
        .iter()
        .zip(running)
        .map(|(name, &run)| {
            let get = |what| seen.get(&(name.clone(), what)).copied();
            let span = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if b >= a => Some([report::round(a), report::round(b)]),
                _ => None,
            };
            let (stopping, shutdown) = (get("Stopping"), get("shutdown"));
            let (migrating, renamed) = (get("Migrating"), get("renamed"));
            let started = get("started");
            // In a restore LXD says "Migrating" before it stops the instance.
            let transfer_from = later(migrating, shutdown);
            let all: Vec<f64> = [
                stopping,
                shutdown,
                migrating,
                renamed,
                get("Starting"),
                started,
            ]
            .into_iter()
            .flatten()
            .collect();
            InstanceTimes {
                name: name.clone(),
                running: run,
                precopy: None,
                stop: span(stopping, shutdown),
                transfer: span(transfer_from, renamed),
                start: span(later(renamed, get("Starting")), started),
                cleanup: None,
                begin_ms: all.iter().copied().reduce(f64::min).map(report::round),
                end_ms: all.iter().copied().reduce(f64::max).map(report::round),
                downtime_ms: match (stopping, started) {
                    (Some(a), Some(b)) if run => Some(report::round(b - a)),
                    _ => None,
                },
            }
        })
        .collect()
}

/// The later of two optional times (either when only one is known).
fn later(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Measured jobs grouped into cells.
fn cells(jobs: &[Job]) -> Vec<Cell> {
    /// side, pool, N, phase, VMs, parallelism.
    type Key<'a> = (
        &'static str,
        &'a str,
        usize,
        &'static str,
        usize,
        Option<&'a str>,
    );
    let mut groups: BTreeMap<Key<'_>, Vec<&Job>> = BTreeMap::new();
    for j in jobs.iter().filter(|j| j.run.is_some()) {
        groups
            .entry((j.side, &j.pool, j.n, j.phase, j.vms, j.parallel.as_deref()))
            .or_default()
            .push(j);
    }
    groups
        .into_iter()
        .map(|((side, pool, n, phase, vms, parallel), js)| {
            let totals: Vec<f64> = js.iter().map(|j| j.total_ms).collect();
            let down: Vec<f64> = js
                .iter()
                .flat_map(|j| j.instances.iter().filter_map(|i| i.downtime_ms))
                .collect();
            Cell {
                side,
                pool: pool.to_string(),
                n,
                phase,
                vms,
                parallel: parallel.map(str::to_string),
                total: Summary::of(&totals),
                downtime: (!down.is_empty()).then(|| Summary::of(&down)),
            }
        })
        .collect()
}

/// What the VMs added, per pool, size and phase: drover jobs at the default parallelism
/// with VMs against those without, over the measured runs.
fn vm_added(jobs: &[Job]) -> Vec<VmAdded> {
    let measured = |j: &&Job| j.side == "drover" && j.run.is_some() && j.parallel.is_none();
    let mut out = Vec::new();
    for with in jobs.iter().filter(measured).filter(|j| j.vms > 0) {
        if out.iter().any(|o: &VmAdded| {
            o.pool == with.pool && o.n == with.n && o.phase == with.phase && o.vms == with.vms
        }) {
            continue;
        }
        let same = |j: &&Job| j.pool == with.pool && j.n == with.n && j.phase == with.phase;
        let a: Vec<&Job> = jobs
            .iter()
            .filter(measured)
            .filter(same)
            .filter(|j| j.vms == 0)
            .collect();
        let b: Vec<&Job> = jobs
            .iter()
            .filter(measured)
            .filter(same)
            .filter(|j| j.vms == with.vms)
            .collect();
        let totals = |js: &[&Job]| js.iter().map(|j| j.total_ms).collect::<Vec<_>>();
        let paired: Vec<f64> = b
            .iter()
            .filter_map(|bj| {
                let aj = a.iter().find(|aj| aj.run == bj.run)?;
                Some(bj.total_ms - aj.total_ms)
            })
            .collect();
        if a.is_empty() || paired.is_empty() {
            continue;
        }
        let (ma, mb) = (report::median(&totals(&a)), report::median(&totals(&b)));
        out.push(VmAdded {
            pool: with.pool.clone(),
            n: with.n,
            vms: with.vms,
            phase: with.phase,
            containers_only_median_ms: ma,
            with_vms_median_ms: mb,
            added_ms: report::round(mb - ma),
            paired_added_ms: report::round(report::median(&paired)),
        });
    }
    out
}

/// drover (each pool, default parallelism) against LXD per size and phase.
fn speedups(jobs: &[Job], pools: &[String], sizes: &[usize]) -> Vec<Speedup> {
    let series = |side: &str, pool: &str, n: usize, phase: &str| -> Vec<f64> {
        jobs.iter()
            .filter(|j| {
                j.run.is_some()
                    && j.parallel.is_none()
                    && j.side == side
                    && j.pool == pool
                    && j.n == n
                    && j.phase == phase
            })
            .map(|j| j.total_ms)
            .collect()
    };
    let mut out = Vec::new();
    for &n in sizes {
        for phase in ["evacuate", "restore"] {
            let l = series("lxd", "dir", n, phase);
            if l.is_empty() {
                continue;
            }
            for pool in pools {
                let d = series("drover", pool, n, phase);
                if d.is_empty() {
                    continue;
                }
                let r = report::Ratio::new("lxd/drover", &l, &d);
                let target = match (phase, n) {
                    ("evacuate", 10) => Some(10.0),
                    ("evacuate", 30) => Some(20.0),
                    _ => None,
                };
                out.push(Speedup {
                    drover_pool: pool.clone(),
                    lxd_pool: "dir",
                    n,
                    phase,
                    drover_median_ms: report::round(report::median(&d)),
                    lxd_median_ms: report::round(report::median(&l)),
                    speedup: r.of_medians,
                    paired_speedup: r.paired_median,
                    target,
                    met: target.map(|t| r.of_medians >= t),
                });
            }
        }
    }
    out
}

fn print_tables(r: &EvacuateResult) {
    let rows = r
        .cells
        .iter()
        .map(|c| {
            vec![
                format!("{} {}", c.side, c.pool),
                if c.vms > 0 {
                    format!("{} + {} VMs", c.n, c.vms)
                } else {
                    c.n.to_string()
                },
                c.phase.to_string(),
                c.parallel.clone().unwrap_or_else(|| "default".into()),
                report::fmt_summary(&c.total),
                c.downtime
                    .as_ref()
                    .map(report::fmt_summary)
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    println!(
        "{}",
        report::table(
            &[
                "side / pool",
                "N",
                "phase",
                "parallel",
                "total ms",
                "downtime ms per running instance"
            ],
            rows
        )
    );
    let rows = r
        .speedups
        .iter()
        .map(|s| {
            vec![
                format!("drover {} vs LXD {}", s.drover_pool, s.lxd_pool),
                s.n.to_string(),
                s.phase.to_string(),
                format!("{:.1}x", s.speedup),
                format!("{:.1}x", s.paired_speedup),
                match (s.target, s.met) {
                    (Some(t), Some(m)) => format!("{t:.0}x: {}", if m { "met" } else { "NOT met" }),
                    _ => "-".into(),
                },
            ]
        })
        .collect();
    println!(
        "{}",
        report::table(
            &["pair", "N", "phase", "speed-up", "paired", "target"],
            rows
        )
    );
    if !r.vm_added.is_empty() {
        let rows = r
            .vm_added
            .iter()
            .map(|v| {
                vec![
                    v.pool.clone(),
                    format!("{} + {} VMs", v.n, v.vms),
                    v.phase.to_string(),
                    format!("{:.0}", v.containers_only_median_ms),
                    format!("{:.0}", v.with_vms_median_ms),
                    format!("{:.0}", v.added_ms),
                    format!("{:.0}", v.paired_added_ms),
                ]
            })
            .collect();
        println!(
            "{}",
            report::table(
                &[
                    "pool",
                    "N",
                    "phase",
                    "containers ms",
                    "with VMs ms",
                    "added ms",
                    "paired added ms"
                ],
                rows
            )
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drover_stages_become_segments() {
        let s = |n: &str, t: f64| (n.to_string(), t);
        let stages = [
            s("begin", 1.0),
            s("precopy", 2.0),
            s("stopping", 10.0),
            s("sync", 20.0),
            s("verify", 25.0),
            s("switch", 30.0),
            s("starting", 35.0),
            s("running", 50.0),
            s("cleanup", 50.5),
            s("done", 60.0),
            s("end", 61.0),
        ];
        let t = segments_of_stages("c1", true, &stages);
        assert_eq!(t.precopy, Some([2.0, 10.0]));
        assert_eq!(t.stop, Some([10.0, 20.0]));
        assert_eq!(t.transfer, Some([20.0, 35.0]));
        assert_eq!(t.start, Some([35.0, 50.0]));
        assert_eq!(t.cleanup, Some([50.5, 60.0]));
        assert_eq!(t.downtime_ms, Some(40.0));
        assert_eq!((t.begin_ms, t.end_ms), (Some(1.0), Some(61.0)));
        // A stopped instance on shared storage: only the switch.
        let stopped = [
            s("begin", 0.0),
            s("switch", 3.0),
            s("cleanup", 5.0),
            s("done", 6.0),
        ];
        let t = segments_of_stages("c2", false, &stopped);
        assert_eq!(t.transfer, Some([3.0, 5.0]));
        assert_eq!((t.stop, t.start, t.downtime_ms), (None, None, None));
    }

    #[test]
    fn lxd_events_become_segments() {
        let t0 = chrono::DateTime::parse_from_rfc3339("2026-11-30T06:58:00Z")
            .map(|d| d.timestamp_micros() as f64)
            .unwrap_or_default();
        let op = |ts: &str, line: &str| {
            json!({"type": "operation", "timestamp": ts, "location": "m2",
                "metadata": {"description": "Evacuating cluster member",
                    "metadata": {"evacuation_progress": line}}})
        };
        let life = |ts: &str, action: &str, name: &str| {
            json!({"type": "lifecycle", "timestamp": ts,
                "metadata": {"action": action, "source": format!("/1.0/instances/{name}")}})
        };
        let events = [
            op(
                "2026-11-30T06:58:00.100Z",
                "Stopping \"t1\" in project \"default\"",
            ),
            life("2026-11-30T06:58:00.800Z", "instance-shutdown", "t1"),
            op(
                "2026-11-30T06:58:00.810Z",
                "Migrating \"t1\" in project \"default\" to \"m1\"",
            ),
            life("2026-11-30T06:58:01.200Z", "instance-renamed", "t1"),
            op(
                "2026-11-30T06:58:01.210Z",
                "Starting \"t1\" in project \"default\"",
            ),
            life("2026-11-30T06:58:01.400Z", "instance-started", "t1"),
        ];
        let t = lxd_times(&events, t0, Phase::Evacuate, &["t1".into()], &[true]);
        assert_eq!(t[0].stop, Some([100.0, 800.0]));
        assert_eq!(t[0].transfer, Some([810.0, 1200.0]));
        assert_eq!(t[0].start, Some([1210.0, 1400.0]));
        assert_eq!(t[0].downtime_ms, Some(1300.0));
        // Events of a restore's operation are not an evacuation's.
        let t = lxd_times(&events, t0, Phase::Restore, &["t1".into()], &[true]);
        assert_eq!(t[0].stop, None);
    }

    #[test]
    fn vms_added_pair_runs_of_the_same_cell() {
        let job = |vms, run, phase, total_ms| Job {
            side: "drover",
            pool: "shared-fs".into(),
            n: 10,
            phase,
            vms,
            run,
            parallel: None,
            total_ms,
            instances: Vec::new(),
        };
        let jobs = vec![
            // Warm-ups do not count.
            job(0, None, "evacuate", 5000.0),
            job(2, None, "evacuate", 9000.0),
            job(0, Some(0), "evacuate", 400.0),
            job(2, Some(0), "evacuate", 900.0),
            job(0, Some(1), "evacuate", 500.0),
            job(2, Some(1), "evacuate", 700.0),
            job(0, Some(0), "restore", 300.0),
            job(2, Some(0), "restore", 350.0),
        ];
        let v = vm_added(&jobs);
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].phase, v[0].vms), ("evacuate", 2));
        assert_eq!(v[0].containers_only_median_ms, 450.0);
        assert_eq!(v[0].with_vms_median_ms, 800.0);
        assert_eq!(v[0].added_ms, 350.0);
        assert_eq!(v[0].paired_added_ms, 350.0);
        assert_eq!((v[1].phase, v[1].added_ms), ("restore", 50.0));
    }
}
