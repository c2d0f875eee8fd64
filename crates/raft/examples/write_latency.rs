//! The cost of replication on one member: the latency of small writes committed through a
//! one-voter Raft group (log fsync + apply) against the same writes applied to the DB
//! directly, both on files in a temporary directory.
//!
//! Then the same writes proposed K at a time (K concurrent tasks, default 20), as N/K rounds:
//! the wall time of a round shows whether concurrent writes share log appends and fsyncs.
//!
//! `cargo run --release -p drover-raft --example write_latency [-- N [K]]` (default N = 500,
//! K = 20).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use db::instances::InstanceRecord;
use raft::{RaftNode, Role, Scheme, Transport};

fn command(i: usize) -> db::Command {
    db::Command::CreateInstance(InstanceRecord {
        project: "default".into(),
        name: format!("c{i}"),
        kind: "container".into(),
        member: "none".into(),
        architecture: "x86_64".into(),
        config: Default::default(),
        devices: Default::default(),
        profiles: vec!["default".into()],
        ephemeral: false,
        description: String::new(),
        created_at: "2026-01-01T00:00:00Z".into(),
        last_used_at: "1970-01-01T00:00:00Z".into(),
    })
}

fn report(what: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let n = samples.len();
    let total: Duration = samples.iter().sum();
    let at = |q: f64| samples[((n as f64 * q) as usize).min(n - 1)];
    println!(
        "{what:>22}: n={n} mean={:>8.3} ms  p50={:>8.3} ms  p99={:>8.3} ms  max={:>8.3} ms",
        total.as_secs_f64() * 1e3 / n as f64,
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        samples[n - 1].as_secs_f64() * 1e3,
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()
        .context("N must be a number")?
        .unwrap_or(500);
    let k: usize = std::env::args()
        .nth(2)
        .map(|a| a.parse())
        .transpose()
        .context("K must be a number")?
        .unwrap_or(20)
        .max(1);
    let tmp = tempfile::tempdir()?;

    let direct = db::Store::open(&tmp.path().join("direct.db"))?;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let cmd = command(i);
        let started = Instant::now();
        direct.execute(&cmd)?;
        samples.push(started.elapsed());
    }
    report("direct Store::execute", samples);

    let dir = tmp.path().join("member");
    std::fs::create_dir_all(&dir)?;
    let store = Arc::new(db::Store::open(&dir.join("cluster.db"))?);
    let transport = Transport::new(reqwest::Client::new(), Scheme::Http);
    let (_raft, replicator) = RaftNode::open(&dir, store, 1, "", transport).await?;
    replicator.bootstrap_single().await?;
    replicator
        .wait_for(Duration::from_secs(10), "leader", |m| {
            m.role == Role::Leader
        })
        .await?;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let cmd = command(i);
        let started = Instant::now();
        replicator.propose(cmd).await?;
        samples.push(started.elapsed());
    }
    report("one-voter raft propose", samples);

    let mut rounds = Vec::with_capacity(n / k);
    for round in 0..(n / k).max(1) {
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for j in 0..k {
            let replicator = replicator.clone();
            let cmd = command(n + round * k + j);
            tasks.spawn(async move { replicator.propose(cmd).await });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        rounds.push(started.elapsed());
    }
    report(&format!("{k} concurrent, a round"), rounds);
    replicator.shutdown().await;
    Ok(())
}
