//! `plan`: the evacuation planner alone, on a large synthetic cluster.
//!
//! 100 members (one being evacuated), 10,000 instances on it and 100 on each other member;
//! a third have `limits.memory`, a quarter `limits.cpu`, some a cluster group, some are
//! stopped or stop-only; members have finite memory and CPUs, so placement has to count.
//! Times `cluster::plan_evacuation` alone, in this process, several runs.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, ensure};
use api::MemberState;
use api::evacuation::{EvacuateMode, PlanAction};
use clap::Args;
use cluster::{InstanceInfo, MemberInfo, Scheduler, Snapshot};
use serde::Serialize;

use crate::report::{self, Metadata, Summary};

/// Arguments of `plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Members in the cluster.
    #[arg(long, default_value_t = 100)]
    pub members: usize,
    /// Instances on the member being evacuated.
    #[arg(long, default_value_t = 10_000)]
    pub instances: usize,
    /// Timed runs.
    #[arg(long, default_value_t = 11)]
    pub runs: usize,
    /// Result file (default: bench/results/plan-evacuation.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct PlanResult {
    metadata: Metadata,
    members: usize,
    instances_on_source: usize,
    instances_total: usize,
    plan: Summary,
    target_ms: f64,
    moved: usize,
    stopped: usize,
    unchanged: usize,
}

/// A synthetic cluster: member `m0` is the one evacuated.
fn snapshot(members: usize, instances: usize) -> Snapshot {
    let members_v: Vec<MemberInfo> = (0..members)
        .map(|i| MemberInfo {
            name: format!("m{i}"),
            state: if i % 25 == 7 {
                MemberState::Evacuated
            } else {
                MemberState::Created
            },
            online: i % 33 != 5,
            architecture: "x86_64".into(),
            groups: if i % 4 == 0 {
                vec!["default".into(), "fast".into()]
            } else {
                vec!["default".into()]
            },
            scheduler: if i % 50 == 3 {
                Scheduler::Manual
            } else {
                Scheduler::All
            },
            memory: Some(256 << 30),
            cpus: Some(64),
            pools: ["shared".to_string(), "local".to_string()].into(),
        })
        .collect();
    let mut all = Vec::new();
    let mut add = |name: String, member: String, k: usize| {
        let mut config = api::ConfigMap::new();
        if k.is_multiple_of(3) {
            config.insert("limits.memory".into(), format!("{}MiB", 256 << (k % 4)));
        }
        if k.is_multiple_of(4) {
            config.insert("limits.cpu".into(), ((k % 3) + 1).to_string());
        }
        if k.is_multiple_of(10) {
            config.insert("cluster.evacuate".into(), "stop".into());
        }
        if k.is_multiple_of(17) {
            config.insert("volatile.cluster.group".into(), "fast".into());
        }
        all.push(InstanceInfo {
            project: "default".into(),
            name,
            member,
            running: k.is_multiple_of(2),
            config,
            root_pool: Some(
                if k.is_multiple_of(5) {
                    "local"
                } else {
                    "shared"
                }
                .into(),
            ),
            root_pool_shared: !k.is_multiple_of(5),
            ..InstanceInfo::default()
        });
    };
    for k in 0..instances {
        add(format!("c{k}"), "m0".into(), k);
    }
    for m in 1..members {
        for j in 0..100 {
            add(format!("o{m}-{j}"), format!("m{m}"), j);
        }
    }
    Snapshot {
        members: members_v,
        instances: all,
    }
}

/// Runs the benchmark.
pub fn run(args: PlanArgs) -> Result<()> {
    ensure!(
        args.members >= 2 && args.runs >= 1,
        "need 2 members and 1 run"
    );
    let mut metadata = Metadata::collect();
    let snap = snapshot(args.members, args.instances);
    // One untimed run to warm caches, and to count what the plan does.
    let plan = cluster::plan_evacuation(&snap, "m0", EvacuateMode::Auto);
    ensure!(plan.len() == args.instances, "one decision per instance");
    let mut samples = Vec::new();
    for _ in 0..args.runs {
        let t = Instant::now();
        let p = cluster::plan_evacuation(&snap, "m0", EvacuateMode::Auto);
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
        ensure!(p == plan, "the plan changed between runs");
    }
    metadata.finish();
    let count = |f: fn(PlanAction) -> bool| plan.iter().filter(|d| f(d.action)).count();
    let result = PlanResult {
        metadata,
        members: args.members,
        instances_on_source: args.instances,
        instances_total: snap.instances.len(),
        plan: Summary::of(&samples),
        target_ms: 100.0,
        moved: count(PlanAction::moves),
        stopped: count(|a| matches!(a, PlanAction::Stop | PlanAction::ForceStop)),
        unchanged: count(|a| a == PlanAction::None),
    };
    println!(
        "planned {} instances over {} members: {} (target < 100 ms); moved {}, stopped {}, unchanged {}",
        args.instances,
        args.members,
        report::fmt_summary(&result.plan),
        result.moved,
        result.stopped,
        result.unchanged
    );
    let out = args.out.unwrap_or_else(|| {
        crate::droverd::workspace_dir().join("bench/results/plan-evacuation.json")
    });
    report::write_json(&out, &result)?;
    println!("wrote {}", out.display());
    Ok(())
}
