//! `vm-migration`: live migration of an idle VM between two QEMU processes on this host (TCP
//! on loopback), through `driver-qemu` and by driving QEMU directly with raw QMP, interleaved
//! in the same run. The floor is the raw side: same machine, same command line, same
//! migration parameters, same polling interval. With `--cluster`, the same guest also moves
//! live back and forth between the two members of a real drover cluster (release
//! `droverd`, a `shared-fs` pool, `POST /1.0/instances/{name}?target=` with `live: true`,
//! the stream piped over the mTLS member link), measured as a client sees it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use driver_qemu::{
    AccelProbe, MigrationParams, QemuDriver, VmConfig, VmPaths, find_qemu, install_image,
    probe_accel, vm,
};
use drivers::{InstanceDriver, InstanceSpec};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::droverd::workspace_dir;
use crate::report::{Metadata, Ratio, Summary, fmt_summary, table, write_json};

/// Arguments of `vm-migration`.
#[derive(Debug, clap::Args)]
pub struct VmMigrationArgs {
    /// Guest memory, MiB.
    #[arg(long, default_value_t = 256)]
    memory_mib: u64,
    /// Measured runs (each migrates once through drover and once raw).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Uncounted runs first.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// `downtime-limit`, ms.
    #[arg(long, default_value_t = 50)]
    downtime_limit_ms: u64,
    /// `max-bandwidth`, MiB/s (0: uncapped, 10 GiB/s).
    #[arg(long, default_value_t = 0)]
    max_bandwidth_mib: u64,
    /// Also live-move the guest through a two-member drover cluster.
    #[arg(long)]
    cluster: bool,
    /// The two members' loopback addresses (with `--cluster`).
    #[arg(long, default_value = "127.0.3.201,127.0.3.202")]
    addresses: String,
    /// The cluster's pool for the guest's volume (with `--cluster`): `shared-fs` (only
    /// memory and device state move) or `dir` (member-local: the disk moves too).
    #[arg(long, default_value = "shared-fs", value_parser = ["shared-fs", "dir"])]
    cluster_pool: String,
    /// Where the JSON goes.
    #[arg(long, default_value = "bench/results/vm-migration.json")]
    out: PathBuf,
}

/// One migration, as measured.
#[derive(Debug, Clone, Copy, Serialize)]
struct Sample {
    /// From sending `migrate` to the target reporting `running`, ms.
    wall_ms: f64,
    /// QEMU's `total-time`, ms.
    total_ms: f64,
    /// QEMU's `downtime`, ms.
    downtime_ms: f64,
    /// RAM bytes sent.
    transferred: u64,
    /// Cluster moves: QEMU's own downtime, ms (`downtime_ms` is the guest's whole pause).
    #[serde(skip_serializing_if = "Option::is_none")]
    qemu_downtime_ms: Option<f64>,
    /// Cluster moves: from the source QEMU's completion to the target confirming the guest
    /// runs (the hand-over), ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    handover_ms: Option<f64>,
    /// Raw runs: the guest's whole pause, the source's `STOP` event to the target's
    /// `RESUME` (QEMU's own timestamps), ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pause_ms: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Side {
    wall: Summary,
    qemu_total: Summary,
    downtime: Summary,
    /// Cluster moves: the pause's two parts.
    #[serde(skip_serializing_if = "Option::is_none")]
    qemu_downtime: Option<Summary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    handover: Option<Summary>,
    /// Raw runs: the guest's whole pause (`STOP` → `RESUME`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pause: Option<Summary>,
    samples: Vec<Sample>,
}

impl Side {
    fn of(samples: Vec<Sample>) -> Side {
        let col = |f: fn(&Sample) -> f64| samples.iter().map(f).collect::<Vec<_>>();
        let part = |f: fn(&Sample) -> Option<f64>| {
            let v: Option<Vec<f64>> = samples.iter().map(f).collect();
            v.filter(|v| !v.is_empty()).map(|v| Summary::of(&v))
        };
        Side {
            wall: Summary::of(&col(|s| s.wall_ms)),
            qemu_total: Summary::of(&col(|s| s.total_ms)),
            downtime: Summary::of(&col(|s| s.downtime_ms)),
            qemu_downtime: part(|s| s.qemu_downtime_ms),
            handover: part(|s| s.handover_ms),
            pause: part(|s| s.pause_ms),
            samples,
        }
    }
}

#[derive(Debug, Serialize)]
struct Output {
    benchmark: &'static str,
    metadata: Metadata,
    qemu: String,
    accel: AccelProbe,
    memory_mib: u64,
    downtime_limit_ms: u64,
    max_bandwidth: u64,
    transport: &'static str,
    runs: usize,
    drover: Side,
    raw: Side,
    ratio_wall: Ratio,
    ratio_qemu_total: Ratio,
    ratio_downtime: Ratio,
    /// Live moves through a drover cluster (`--cluster`): `wall_ms` from the `POST` to the
    /// operation's end, `total_ms` the move's own report, `downtime_ms` the guest's pause
    /// (QEMU's downtime + the hand-over: the target's resume, asked once the source QEMU
    /// completed), `transferred` bytes over the member link.
    cluster: Option<Side>,
    /// The cluster's pool driver (`shared-fs` or `dir`).
    cluster_pool: Option<String>,
    /// Cluster move, whole (client's wall) / raw QEMU wall (`migrate` → target running).
    ratio_cluster_wall: Option<Ratio>,
    /// Cluster guest pause / raw QEMU downtime.
    ratio_cluster_downtime: Option<Ratio>,
}

/// Runs the benchmark.
pub async fn run(args: VmMigrationArgs) -> Result<()> {
    let mut metadata = Metadata::collect();
    let qemu = find_qemu().context("qemu-system-x86_64 not found (scripts/install-deps.sh)")?;
    let tmp = tempfile::tempdir()?;
    let image = tmp.path().join("image");
    let st = std::process::Command::new("sh")
        .arg(workspace_dir().join("images/busybox-vm/build.sh"))
        .arg(&image)
        .status()?;
    if !st.success() {
        bail!("images/busybox-vm/build.sh failed");
    }
    let vol = tmp.path().join("volume");
    install_image(
        &image.join("metadata.tar.gz"),
        &image.join("rootfs.img"),
        &vol,
    )?;
    let accel = probe_accel(
        &qemu,
        &vol.join("boot/vmlinuz"),
        &vol.join("boot/initrd.img"),
        Duration::from_secs(6),
    )
    .await;
    eprintln!("accelerator: {}", accel.detail);
    let src = QemuDriver::new(&qemu, tmp.path().join("m1"), accel.clone()).await?;
    let dst = QemuDriver::new(&qemu, tmp.path().join("m2"), accel.clone()).await?;
    let mut config = BTreeMap::new();
    config.insert(
        "limits.memory".to_owned(),
        format!("{}MiB", args.memory_mib),
    );
    let spec = InstanceSpec {
        id: "bench".into(),
        name: "bench".into(),
        rootfs: vol.clone(),
        run_dir: tmp.path().join("run"),
        config: config.clone(),
        init: vec![],
        env: vec![],
        mounts: vec![],
    };
    let cfg = VmConfig::from_instance("bench", &vol, &config, accel.accel)?;
    let params = MigrationParams {
        max_bandwidth: if args.max_bandwidth_mib == 0 {
            MigrationParams::default().max_bandwidth
        } else {
            args.max_bandwidth_mib << 20
        },
        downtime_limit: Duration::from_millis(args.downtime_limit_ms),
        auto_converge: true,
        deadline: Duration::from_secs(120),
        block: false,
    };

    let (mut drover, mut raw) = (Vec::new(), Vec::new());
    for i in 0..args.warmup + args.runs {
        let counted = i >= args.warmup;
        let mut d = None;
        let mut r = None;
        for side in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
            if side == 0 {
                d = Some(through_driver(&src, &dst, &spec, &cfg, &params).await?);
            } else {
                r = Some(raw_qemu(&qemu, tmp.path(), &cfg, &params).await?);
            }
        }
        let (Some(d), Some(r)) = (d, r) else {
            bail!("a run measured nothing");
        };
        eprintln!(
            "run {i}{}: drover wall {:.0} ms (qemu total {:.0}, downtime {:.0}); raw wall {:.0} ms (total {:.0}, downtime {:.0})",
            if counted { "" } else { " (warm-up)" },
            d.wall_ms,
            d.total_ms,
            d.downtime_ms,
            r.wall_ms,
            r.total_ms,
            r.downtime_ms
        );
        if counted {
            drover.push(d);
            raw.push(r);
        }
    }
    let cluster = if args.cluster {
        Some(through_cluster(&args, tmp.path()).await?)
    } else {
        None
    };
    metadata.finish();
    let col = |v: &[Sample], f: fn(&Sample) -> f64| v.iter().map(f).collect::<Vec<_>>();
    let ratio_cluster_wall = cluster.as_ref().map(|c| {
        Ratio::new(
            "cluster/raw",
            &col(c, |s| s.wall_ms),
            &col(&raw, |s| s.wall_ms),
        )
    });
    let ratio_cluster_downtime = cluster.as_ref().map(|c| {
        Ratio::new(
            "cluster/raw",
            &col(c, |s| s.downtime_ms),
            &col(&raw, |s| s.downtime_ms),
        )
    });
    let out = Output {
        benchmark: "vm-migration",
        metadata,
        qemu: src.version().to_owned(),
        accel,
        memory_mib: args.memory_mib,
        downtime_limit_ms: args.downtime_limit_ms,
        max_bandwidth: params.max_bandwidth,
        transport: "tcp loopback",
        runs: args.runs,
        ratio_wall: Ratio::new(
            "drover/raw",
            &col(&drover, |s| s.wall_ms),
            &col(&raw, |s| s.wall_ms),
        ),
        ratio_qemu_total: Ratio::new(
            "drover/raw",
            &col(&drover, |s| s.total_ms),
            &col(&raw, |s| s.total_ms),
        ),
        ratio_downtime: Ratio::new(
            "drover/raw",
            &col(&drover, |s| s.downtime_ms),
            &col(&raw, |s| s.downtime_ms),
        ),
        drover: Side::of(drover),
        raw: Side::of(raw),
        cluster: cluster.map(Side::of),
        cluster_pool: args.cluster.then(|| args.cluster_pool.clone()),
        ratio_cluster_wall,
        ratio_cluster_downtime,
    };
    if let (Some(c), Some(w), Some(dt)) = (
        &out.cluster,
        &out.ratio_cluster_wall,
        &out.ratio_cluster_downtime,
    ) {
        println!(
            "{}",
            table(
                &["cell", "drover cluster ms", "raw QEMU ms", "cluster/raw"],
                vec![
                    vec![
                        "live move, whole (client) vs raw migrate → running".into(),
                        fmt_summary(&c.wall),
                        fmt_summary(&out.raw.wall),
                        format!("{:.2}", w.of_medians),
                    ],
                    vec![
                        "guest pause vs raw QEMU downtime".into(),
                        fmt_summary(&c.downtime),
                        fmt_summary(&out.raw.downtime),
                        format!("{:.2}", dt.of_medians),
                    ],
                    vec![
                        "  of which QEMU downtime".into(),
                        c.qemu_downtime
                            .as_ref()
                            .map(fmt_summary)
                            .unwrap_or_default(),
                        String::new(),
                        String::new(),
                    ],
                    vec![
                        "  of which hand-over (completed → target runs)".into(),
                        c.handover.as_ref().map(fmt_summary).unwrap_or_default(),
                        String::new(),
                        String::new(),
                    ],
                    vec![
                        "guest pause vs raw STOP → RESUME".into(),
                        fmt_summary(&c.downtime),
                        out.raw.pause.as_ref().map(fmt_summary).unwrap_or_default(),
                        out.raw
                            .pause
                            .as_ref()
                            .map(|p| format!("{:.2}", c.downtime.median_ms / p.median_ms))
                            .unwrap_or_default(),
                    ],
                ],
            )
        );
    }
    println!(
        "{}",
        table(
            &["cell", "drover ms", "raw QEMU ms", "drover/raw"],
            vec![
                vec![
                    "migrate → target running (wall)".into(),
                    fmt_summary(&out.drover.wall),
                    fmt_summary(&out.raw.wall),
                    format!("{:.2}", out.ratio_wall.of_medians),
                ],
                vec![
                    "QEMU total-time".into(),
                    fmt_summary(&out.drover.qemu_total),
                    fmt_summary(&out.raw.qemu_total),
                    format!("{:.2}", out.ratio_qemu_total.of_medians),
                ],
                vec![
                    "QEMU downtime".into(),
                    fmt_summary(&out.drover.downtime),
                    fmt_summary(&out.raw.downtime),
                    format!("{:.2}", out.ratio_downtime.of_medians),
                ],
            ],
        )
    );
    write_json(&args.out, &out)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

fn free_tcp_uri() -> Result<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(format!("tcp:127.0.0.1:{}", l.local_addr()?.port()))
}

/// Boots through the driver, waits for the agent, settles, migrates through the driver.
async fn through_driver(
    src: &QemuDriver,
    dst: &QemuDriver,
    spec: &InstanceSpec,
    cfg: &VmConfig,
    params: &MigrationParams,
) -> Result<Sample> {
    src.start(spec).await?;
    drop(src.agent(&spec.id, Duration::from_secs(120)).await?);
    tokio::time::sleep(Duration::from_secs(1)).await;
    dst.prepare_incoming_config(&spec.id, cfg).await?;
    let uri = free_tcp_uri()?;
    dst.accept_migration(&spec.id, &uri).await?;
    let t = Instant::now();
    let stats = src.migrate_out(&spec.id, &uri, params, |_| {}).await?;
    dst.wait_running(&spec.id, Duration::from_secs(30)).await?;
    let wall = t.elapsed();
    src.stop(&spec.id, 0, Duration::ZERO, true).await?;
    dst.stop(&spec.id, 0, Duration::ZERO, true).await?;
    Ok(Sample {
        wall_ms: wall.as_secs_f64() * 1000.0,
        total_ms: stats.total_ms as f64,
        downtime_ms: stats.downtime_ms as f64,
        qemu_downtime_ms: None,
        handover_ms: None,
        pause_ms: None,
        transferred: stats.transferred,
    })
}

/// A minimal QMP session written here, not the driver's: the floor.
struct RawQmp {
    lines: tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    w: tokio::net::unix::OwnedWriteHalf,
    /// The events read so far (in between the answers).
    events: Vec<Value>,
}

impl RawQmp {
    /// The time QEMU stamped on the first event `name` read so far, µs since the epoch.
    fn event_us(&self, name: &str) -> Option<f64> {
        let e = self.events.iter().find(|e| e["event"] == name)?;
        let ts = &e["timestamp"];
        Some(ts["seconds"].as_f64()? * 1e6 + ts["microseconds"].as_f64()?)
    }
}

impl RawQmp {
    async fn connect(path: &Path) -> Result<RawQmp> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let s = loop {
            match tokio::net::UnixStream::connect(path).await {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => return Err(e.into()),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let (r, w) = s.into_split();
        let mut q = RawQmp {
            lines: BufReader::new(r).lines(),
            w,
            events: Vec::new(),
        };
        q.lines.next_line().await?.context("no QMP greeting")?;
        q.cmd("qmp_capabilities", Value::Null).await?;
        Ok(q)
    }

    async fn cmd(&mut self, cmd: &str, args: Value) -> Result<Value> {
        let mut m = json!({ "execute": cmd });
        if !args.is_null() {
            m["arguments"] = args;
        }
        self.w.write_all(format!("{m}\n").as_bytes()).await?;
        loop {
            let line = tokio::time::timeout(Duration::from_secs(10), self.lines.next_line())
                .await
                .context("QMP timeout")??
                .context("QMP closed")?;
            let v: Value = serde_json::from_str(&line)?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                bail!("QMP {cmd}: {e}");
            }
            if v.get("event").is_some() {
                self.events.push(v);
            }
        }
    }
}

async fn spawn_qemu(qemu: &Path, cfg: &VmConfig, paths: &VmPaths, incoming: bool) -> Result<()> {
    std::fs::create_dir_all(&paths.dir)?;
    paths.clean();
    let _ = std::fs::remove_file(paths.console_log());
    let out = tokio::process::Command::new(qemu)
        .args(vm::qemu_args(cfg, paths, incoming))
        .output()
        .await?;
    if !out.status.success() {
        bail!("qemu: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Boots with the same command line, waits for the guest's ready line, settles, migrates
/// with raw QMP.
async fn raw_qemu(
    qemu: &Path,
    tmp: &Path,
    cfg: &VmConfig,
    params: &MigrationParams,
) -> Result<Sample> {
    let sp = VmPaths {
        dir: tmp.join("raw-src"),
    };
    let dp = VmPaths {
        dir: tmp.join("raw-dst"),
    };
    spawn_qemu(qemu, cfg, &sp, false).await?;
    let mut s = RawQmp::connect(&sp.qmp()).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::fs::read_to_string(sp.console_log())
        .unwrap_or_default()
        .contains("DROVER-VM-READY")
    {
        if Instant::now() >= deadline {
            bail!("raw VM did not boot within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    spawn_qemu(qemu, cfg, &dp, true).await?;
    let mut d = RawQmp::connect(&dp.qmp()).await?;
    let uri = free_tcp_uri()?;
    d.cmd("migrate-incoming", json!({ "uri": uri })).await?;
    s.cmd(
        "migrate-set-capabilities",
        json!({ "capabilities": [
            { "capability": "auto-converge", "state": params.auto_converge },
            { "capability": "events", "state": true },
        ]}),
    )
    .await?;
    s.cmd(
        "migrate-set-parameters",
        json!({
            "max-bandwidth": params.max_bandwidth,
            "downtime-limit": params.downtime_limit.as_millis() as u64,
        }),
    )
    .await?;
    let t = Instant::now();
    s.cmd("migrate", json!({ "uri": uri })).await?;
    let q = loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let q = s.cmd("query-migrate", Value::Null).await?;
        match q["status"].as_str() {
            // QEMU says completed a moment before it fills in the times: ask again.
            Some("completed") if q["total-time"].as_u64().unwrap_or(0) > 0 => break q,
            Some("completed") => {}
            Some("failed") | Some("cancelled") => bail!("raw migration: {q}"),
            _ => {}
        }
    };
    loop {
        let st = d.cmd("query-status", Value::Null).await?;
        if st["status"] == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let wall = t.elapsed();
    // The guest's whole pause as QEMU stamped it: the source's STOP to the target's RESUME
    // (the same host clock), which QEMU's `downtime` (the source's side only) leaves out.
    let _ = s.cmd("query-status", Value::Null).await;
    let pause_ms = match (s.event_us("STOP"), d.event_us("RESUME")) {
        (Some(stop), Some(resume)) => Some((resume - stop) / 1000.0),
        _ => None,
    };
    for (q, p) in [(&mut s, &sp), (&mut d, &dp)] {
        let pid = vm::running_pid(p);
        let _ = q.cmd("quit", Value::Null).await;
        if let Some(pid) = pid
            && !vm::wait_exit(pid, Duration::from_secs(3)).await
        {
            vm::kill(pid);
        }
    }
    Ok(Sample {
        wall_ms: wall.as_secs_f64() * 1000.0,
        total_ms: q["total-time"].as_f64().unwrap_or(0.0),
        downtime_ms: q["downtime"].as_f64().unwrap_or(0.0),
        transferred: q["ram"]["transferred"].as_u64().unwrap_or(0),
        qemu_downtime_ms: None,
        handover_ms: None,
        pause_ms,
    })
}

/// Live-moves the guest back and forth between the two members of a drover cluster
/// (`--warmup` uncounted moves, then `--runs`), on a `shared-fs` or `dir` pool, through the API as
/// `lxc move --target` does, and reads each move's report.
async fn through_cluster(args: &VmMigrationArgs, tmp: &Path) -> Result<Vec<Sample>> {
    let ips: Vec<std::net::Ipv4Addr> = args
        .addresses
        .split(',')
        .map(|a| a.trim().parse().context("--addresses"))
        .collect::<Result<_>>()?;
    if ips.len() != 2 {
        bail!("--addresses needs two addresses");
    }
    let bin = crate::droverd::binary(None).await?;
    let image = tmp.join("busybox-vm.tar.gz");
    let st = std::process::Command::new("sh")
        .arg(workspace_dir().join("images/busybox-vm/build.sh"))
        .arg("--unified")
        .arg(&image)
        .status()?;
    if !st.success() {
        bail!("images/busybox-vm/build.sh --unified failed");
    }
    let shared = tmp.join("shared");
    std::fs::create_dir_all(&shared)?;
    let mut daemons = Vec::new();
    for i in 0..2 {
        let dir = tmp.join(format!("cluster-m{}", i + 1));
        daemons.push(crate::droverd::Droverd::start(&bin, &dir).await?);
    }
    let name = "bench-vm";
    let outcome = async {
        crate::cluster_writes::form(&daemons, &ips).await?;
        let api = daemons[0].api();
        if args.cluster_pool == "dir" {
            // A member-local pool: each member's source first, then the pool itself.
            for i in 1..=2 {
                let source = tmp.join(format!("dir-pool-m{i}"));
                let r = api
                    .send_json(
                        hyper::Method::POST,
                        &format!("/1.0/storage-pools?target=m{i}"),
                        &json!({"name": "guest", "driver": "dir",
                            "config": {"source": source.display().to_string()}}),
                    )
                    .await?;
                if r["type"] == "error" {
                    bail!("dir pool on m{i}: {}", r["error"]);
                }
            }
        }
        let r = if args.cluster_pool == "dir" {
            api.send_json(
                hyper::Method::POST,
                "/1.0/storage-pools",
                &json!({"name": "guest", "driver": "dir", "config": {}}),
            )
            .await?
        } else {
            api.send_json(
                hyper::Method::POST,
                "/1.0/storage-pools",
                &json!({"name": "guest", "driver": "shared-fs",
                    "config": {"source": shared.display().to_string()}}),
            )
            .await?
        };
        if r["type"] == "error" {
            bail!("{} pool: {}", args.cluster_pool, r["error"]);
        }
        api.import_image(&image, "busybox-vm").await?;
        let r = api
            .send_json(
                hyper::Method::POST,
                "/1.0/instances?target=m1",
                &json!({
                    "name": name,
                    "type": "virtual-machine",
                    "source": {"type": "image", "alias": "busybox-vm"},
                    "config": {"limits.memory": format!("{}MiB", args.memory_mib)},
                    "devices": {"root": {"type": "disk", "path": "/", "pool": "guest"}},
                    "start": true,
                }),
            )
            .await?;
        api.wait(&r).await?;
        let log = daemons[0]
            .dir()
            .join(format!("vms/default_{name}/console.log"));
        let deadline = Instant::now() + Duration::from_secs(120);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("DROVER-VM-READY")
        {
            if Instant::now() >= deadline {
                bail!("the cluster's VM did not boot within 120 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut samples = Vec::new();
        for i in 0..args.warmup + args.runs {
            let target = if i % 2 == 0 { "m2" } else { "m1" };
            let t = Instant::now();
            let r = api
                .send_json(
                    hyper::Method::POST,
                    &format!("/1.0/instances/{name}?target={target}"),
                    &json!({"name": name, "migration": true, "live": true}),
                )
                .await?;
            let op = r["operation"]
                .as_str()
                .ok_or_else(|| anyhow::anyhow!("the move is not an operation: {r}"))?
                .to_string();
            let done = api.get(&crate::api::wait_path(&op, 300)).await?;
            let wall = t.elapsed();
            if done["status"] != "Success" {
                bail!("live move to {target} failed: {}", done["err"]);
            }
            let report = &done["metadata"];
            let sample = Sample {
                wall_ms: wall.as_secs_f64() * 1000.0,
                total_ms: report["total_ms"].as_f64().unwrap_or(0.0),
                downtime_ms: report["downtime_ms"].as_f64().unwrap_or(0.0),
                transferred: report["bytes_sent"].as_u64().unwrap_or(0),
                qemu_downtime_ms: report["qemu_downtime_ms"].as_f64(),
                handover_ms: report["handover_ms"].as_f64(),
                pause_ms: None,
            };
            eprintln!(
                "cluster move {i} to {target}{}: wall {:.0} ms, move {:.0} ms, guest paused {:.0} ms (QEMU {:.0} + hand-over {:.0}), {} MiB",
                if i < args.warmup { " (warm-up)" } else { "" },
                sample.wall_ms,
                sample.total_ms,
                sample.downtime_ms,
                sample.qemu_downtime_ms.unwrap_or(f64::NAN),
                sample.handover_ms.unwrap_or(f64::NAN),
                sample.transferred >> 20
            );
            if i >= args.warmup {
                samples.push(sample);
            }
        }
        let r = api
            .change_state(name, "stop")
            .await
            .map(|r| r["operation"].as_str().map(str::to_owned));
        if let Ok(Some(op)) = r {
            let _ = api.get(&crate::api::wait_path(&op, 60)).await;
        }
        Ok(samples)
    }
    .await;
    for d in &daemons {
        // Whatever the outcome, no QEMU of the benchmark outlives it.
        if let Ok(dirs) = std::fs::read_dir(d.dir().join("vms")) {
            for e in dirs.flatten() {
                let paths = VmPaths { dir: e.path() };
                if let Some(pid) = vm::running_pid(&paths) {
                    vm::kill(pid);
                }
            }
        }
    }
    for d in daemons {
        let _ = d.shutdown().await;
    }
    outcome
}
