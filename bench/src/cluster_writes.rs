//! `cluster-writes`: what replication costs a write, and what listing 1,000 instances costs.
//!
//! Two setups, each with fresh daemons: one standalone member (a one-voter Raft group),
//! and three members on loopback forming a cluster with join tokens (LXD 5.0.2's preseed
//! body on each joiner's socket). On each:
//!
//! - `writes`: N small writes one after another, each `PUT /1.0/profiles/bench` with a new
//!   description (one replicated command each), over kept-alive HTTP connections; sent to
//!   the leader and, in the cluster, also to a follower (which forwards the
//!   proposal to the leader). Total wall time and per-write latency.
//! - `list`: M instances created cheaply (`source: none`, never started; in the cluster
//!   through m1 without a target, so the scheduler spreads them), then K timed
//!   `GET /1.0/instances?recursion=1` on the first member after a few unmeasured ones.
//!
//! No floor exists for these (no manager without a database); the cluster's figures are
//! read against the standalone member's, measured in the same run.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use clap::Args;
use hyper::Method;
use serde::Serialize;
use serde_json::json;

use crate::api::Api;
use crate::droverd::{self, Droverd};
use crate::report::{self, Metadata, Summary};

/// Arguments of `cluster-writes`.
#[derive(Debug, Args)]
pub struct ClusterWritesArgs {
    /// Writes per series.
    #[arg(long, default_value_t = 1000)]
    pub writes: usize,
    /// Instances to list.
    #[arg(long, default_value_t = 1000)]
    pub instances: usize,
    /// Timed `GET /1.0/instances?recursion=1`.
    #[arg(long, default_value_t = 50)]
    pub lists: usize,
    /// Loopback addresses of the three members (free ports are picked on them).
    #[arg(long, default_value = "127.0.0.67,127.0.0.68,127.0.0.69")]
    pub addresses: String,
    /// Result file (default: bench/results/cluster-writes.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// droverd binary (default: build and use target/release/droverd).
    #[arg(long)]
    pub droverd: Option<PathBuf>,
}

/// Latency percentiles of one series, ms.
#[derive(Debug, Clone, Serialize)]
struct Latency {
    count: usize,
    total_ms: f64,
    per_second: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl Latency {
    fn of(samples: &[f64], total: Duration) -> Latency {
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        let pct = |p: f64| {
            if v.is_empty() {
                return 0.0;
            }
            let i = ((p / 100.0) * v.len() as f64).ceil() as usize;
            report::round(v[i.clamp(1, v.len()) - 1])
        };
        let total_ms = total.as_secs_f64() * 1000.0;
        Latency {
            count: v.len(),
            total_ms: report::round(total_ms),
            per_second: if total_ms > 0.0 {
                (v.len() as f64 * 1000.0 / total_ms * 10.0).round() / 10.0
            } else {
                0.0
            },
            p50_ms: pct(50.0),
            p90_ms: pct(90.0),
            p99_ms: pct(99.0),
            max_ms: v.last().copied().map_or(0.0, report::round),
        }
    }
}

/// One setup's figures.
#[derive(Debug, Serialize)]
struct Setup {
    members: usize,
    /// Writes sent to the leader.
    writes_to_leader: Latency,
    /// Writes sent to a follower (cluster only).
    writes_to_follower: Option<Latency>,
    /// Creating the instances (not the point; for context).
    create_instances: Latency,
    /// Where the instances landed, member → count.
    placement: std::collections::BTreeMap<String, usize>,
    /// `GET /1.0/instances?recursion=1` with all instances.
    list_recursion1: Latency,
    list_samples: Summary,
}

#[derive(Debug, Serialize)]
struct ClusterWritesResult {
    metadata: Metadata,
    writes: usize,
    instances: usize,
    droverd: String,
    single: Setup,
    cluster: Setup,
    /// cluster / single, for the leader's write total and the list p50.
    ratio_writes_total: f64,
    ratio_list_p50: f64,
}

/// Runs the bench.
pub async fn run(args: ClusterWritesArgs) -> Result<()> {
    if args.writes == 0 || args.lists == 0 {
        bail!("--writes and --lists must be at least 1");
    }
    let ips: Vec<Ipv4Addr> = args
        .addresses
        .split(',')
        .map(|a| a.trim().parse().context("--addresses"))
        .collect::<Result<_>>()?;
    if ips.len() != 3 {
        bail!("--addresses needs three addresses");
    }
    let mut meta = Metadata::collect();
    let bin = droverd::binary(args.droverd.clone()).await?;
    let tmp = tempfile::Builder::new()
        .prefix("drover-bench-cluster-")
        .tempdir()
        .context("temporary directory")?;

    eprintln!("--- one member");
    let single = {
        let d = Droverd::start(&bin, &tmp.path().join("single")).await?;
        let out = measure(&args, &[&d], None).await;
        d.shutdown().await?;
        out?
    };

    eprintln!("--- three members");
    let mut daemons = Vec::new();
    for i in 0..3 {
        daemons.push(Droverd::start(&bin, &tmp.path().join(format!("m{}", i + 1))).await?);
    }
    let formed = form(&daemons, &ips).await;
    let cluster = match formed {
        Ok(()) => {
            let refs: Vec<&Droverd> = daemons.iter().collect();
            measure(&args, &refs, Some(&daemons[1])).await
        }
        Err(e) => Err(e),
    };
    for d in daemons {
        let _ = d.shutdown().await;
    }
    let cluster = cluster?;

    meta.finish();
    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            (a / b * 1000.0).round() / 1000.0
        } else {
            0.0
        }
    };
    let result = ClusterWritesResult {
        ratio_writes_total: ratio(
            cluster.writes_to_leader.total_ms,
            single.writes_to_leader.total_ms,
        ),
        ratio_list_p50: ratio(
            cluster.list_recursion1.p50_ms,
            single.list_recursion1.p50_ms,
        ),
        metadata: meta,
        writes: args.writes,
        instances: args.instances,
        droverd: bin.display().to_string(),
        single,
        cluster,
    };
    let rows = [("1 member", &result.single), ("3 members", &result.cluster)]
        .iter()
        .flat_map(|(name, s)| {
            let mut rows = vec![row(name, "writes via leader", &s.writes_to_leader)];
            if let Some(f) = &s.writes_to_follower {
                rows.push(row(name, "writes via follower", f));
            }
            rows.push(row(name, "create (source none)", &s.create_instances));
            rows.push(row(name, "GET instances?recursion=1", &s.list_recursion1));
            rows
        })
        .collect();
    println!(
        "{}",
        report::table(
            &[
                "setup", "series", "n", "total ms", "per s", "p50 ms", "p99 ms"
            ],
            rows
        )
    );
    let out = args
        .out
        .unwrap_or_else(|| droverd::workspace_dir().join("bench/results/cluster-writes.json"));
    report::write_json(&out, &result)?;
    println!("wrote {}", out.display());
    Ok(())
}

fn row(setup: &str, series: &str, l: &Latency) -> Vec<String> {
    vec![
        setup.into(),
        series.into(),
        l.count.to_string(),
        format!("{:.0}", l.total_ms),
        format!("{:.1}", l.per_second),
        format!("{:.2}", l.p50_ms),
        format!("{:.2}", l.p99_ms),
    ]
}

/// A free port on `ip`.
fn free_address(ip: Ipv4Addr) -> Result<SocketAddr> {
    let l = TcpListener::bind((ip, 0)).with_context(|| format!("bind {ip}:0"))?;
    Ok(l.local_addr()?)
}

/// Forms the cluster `m1`, `m2`, `m3` as LXD's tools do, and waits until all are online.
pub(crate) async fn form(daemons: &[Droverd], ips: &[Ipv4Addr]) -> Result<()> {
    let addrs: Vec<SocketAddr> = ips
        .iter()
        .map(|ip| free_address(*ip))
        .collect::<Result<_>>()?;
    let first = daemons[0].api();
    first
        .send_json(
            Method::PATCH,
            "/1.0",
            &json!({"config": {"core.https_address": addrs[0].to_string()}}),
        )
        .await?;
    let r = first
        .send_json(
            Method::PUT,
            "/1.0/cluster",
            &json!({"server_name": "m1", "enabled": true}),
        )
        .await?;
    first.wait(&r).await?;
    for (i, d) in daemons.iter().enumerate().skip(1) {
        let name = format!("m{}", i + 1);
        let r = first
            .send_json(
                Method::POST,
                "/1.0/cluster/members",
                &json!({"server_name": name}),
            )
            .await?;
        let meta = &r["metadata"]["metadata"];
        let token = json!({
            "server_name": meta["serverName"],
            "fingerprint": meta["fingerprint"],
            "addresses": meta["addresses"],
            "secret": meta["secret"],
            "expires_at": meta["expiresAt"],
        });
        let token = base64::engine::general_purpose::STANDARD.encode(token.to_string());
        let der = tls::fetch_certificate(addrs[0])
            .await
            .map_err(|e| anyhow!("fetch the cluster certificate: {e}"))?;
        if tls::fingerprint(&der) != meta["fingerprint"].as_str().unwrap_or_default() {
            bail!("the cluster certificate is not the token's");
        }
        let r = d
            .api()
            .send_json(
                Method::PUT,
                "/1.0/cluster",
                &json!({
                    "server_name": name,
                    "enabled": true,
                    "member_config": null,
                    "cluster_address": addrs[0].to_string(),
                    "cluster_certificate": tls::certificate_pem(&der),
                    "server_address": addrs[i].to_string(),
                    "cluster_password": token,
                }),
            )
            .await?;
        d.api().wait(&r).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for d in daemons {
        loop {
            let list = d.api().get("/1.0/cluster/members?recursion=1").await?;
            let all = list.as_array().cloned().unwrap_or_default();
            if all.len() == daemons.len()
                && all
                    .iter()
                    .all(|m| m["status"] == "Online" && m["database"] == true)
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("the cluster did not settle: {list}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// `n` writes to `api`, one after another.
async fn writes(api: &Api, n: usize, tag: &str) -> Result<Latency> {
    let mut samples = Vec::with_capacity(n);
    let t0 = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        api.send_json(
            Method::PUT,
            "/1.0/profiles/bench",
            &json!({"description": format!("{tag} {i}"), "config": {}, "devices": {}}),
        )
        .await?;
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(Latency::of(&samples, t0.elapsed()))
}

/// Creates `n` instances with `source: none` through `api`, four at a time.
async fn create_many(api: &Api, n: usize) -> Result<Latency> {
    let mut samples = Vec::with_capacity(n);
    let t0 = Instant::now();
    let names: Vec<String> = (0..n).map(|i| format!("l{i:04}")).collect();
    for chunk in names.chunks(4) {
        let calls = chunk.iter().map(|name| async move {
            let t = Instant::now();
            let r = api
                .send_json(
                    Method::POST,
                    "/1.0/instances",
                    &json!({"name": name, "type": "container", "source": {"type": "none"}}),
                )
                .await?;
            api.wait(&r).await?;
            Ok::<f64, anyhow::Error>(t.elapsed().as_secs_f64() * 1000.0)
        });
        for r in futures::future::join_all(calls).await {
            samples.push(r?);
        }
    }
    Ok(Latency::of(&samples, t0.elapsed()))
}

/// Writes, then instances, then the timed lists, on `members` (the first one is the
/// leader: it formed the cluster, or it is alone).
async fn measure(
    args: &ClusterWritesArgs,
    members: &[&Droverd],
    follower: Option<&Droverd>,
) -> Result<Setup> {
    let leader = members[0].api();
    leader
        .send_json(Method::POST, "/1.0/profiles", &json!({"name": "bench"}))
        .await?;
    eprintln!("    {} writes via the leader", args.writes);
    let writes_to_leader = writes(leader, args.writes, "leader").await?;
    let writes_to_follower = match follower {
        Some(f) => {
            eprintln!("    {} writes via a follower", args.writes);
            Some(writes(f.api(), args.writes, "follower").await?)
        }
        None => None,
    };
    eprintln!("    creating {} instances", args.instances);
    let create_instances = create_many(leader, args.instances).await?;
    let listed = leader.get("/1.0/instances?recursion=1").await?;
    let all = listed.as_array().cloned().unwrap_or_default();
    if all.len() != args.instances {
        bail!(
            "listed {} instances, expected {}",
            all.len(),
            args.instances
        );
    }
    let mut placement = std::collections::BTreeMap::new();
    for inst in &all {
        *placement
            .entry(inst["location"].as_str().unwrap_or("?").to_string())
            .or_insert(0) += 1;
    }
    eprintln!("    {} timed lists", args.lists);
    for _ in 0..3 {
        leader.get("/1.0/instances?recursion=1").await?;
    }
    let mut samples = Vec::with_capacity(args.lists);
    let t0 = Instant::now();
    for _ in 0..args.lists {
        let t = Instant::now();
        let v = leader.get("/1.0/instances?recursion=1").await?;
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
        if v.as_array().map(Vec::len) != Some(args.instances) {
            bail!("a list lost instances");
        }
    }
    Ok(Setup {
        members: members.len(),
        writes_to_leader,
        writes_to_follower,
        create_instances,
        placement,
        list_recursion1: Latency::of(&samples, t0.elapsed()),
        list_samples: Summary::of(&samples),
    })
}
