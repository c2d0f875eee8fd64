//! Properties of the planner over random clusters.
//!
//! What does this test do?
//! - builds random snapshots: members in every state, online or not, of two architectures,
//!   in groups, with and without memory/CPU capacity; instances with random policies,
//!   limits, pools, ties and power states;
//! - checks that an evacuation plan never targets the source, an unavailable member or a
//!   member over capacity (every instance it holds, running or not, plus what the same
//!   plan promised it), has exactly one
//!   decision per instance of the source, a target exactly for moves, a reason always;
//! - and that the same snapshot, in any order, gives the same plan.

use std::collections::{BTreeMap, BTreeSet};

use api::MemberState;
use api::evacuation::{EvacuateMode, PlanAction};
use cluster::{InstanceInfo, MemberInfo, Scheduler, Snapshot, plan_evacuation, plan_restore};
use proptest::prelude::*;

fn state() -> impl Strategy<Value = MemberState> {
    prop_oneof![
        4 => Just(MemberState::Created),
        1 => Just(MemberState::Evacuated),
        1 => Just(MemberState::Evacuating),
        1 => Just(MemberState::Restoring),
        1 => Just(MemberState::Pending),
    ]
}

fn member(i: usize) -> impl Strategy<Value = MemberInfo> {
    (
        state(),
        prop::bool::weighted(0.8),
        prop::bool::weighted(0.9),
        prop::sample::subsequence(vec!["default", "gpu", "web"], 0..=2),
        prop_oneof![
            Just(Scheduler::All),
            Just(Scheduler::Manual),
            Just(Scheduler::Group)
        ],
        prop::option::of(1u64..16),
        prop::option::of(1u64..8),
        prop::bool::weighted(0.7),
    )
        .prop_map(
            move |(state, online, x86, groups, scheduler, gib, cpus, fast)| {
                let mut pools = BTreeSet::from(["shared".to_string()]);
                if fast {
                    pools.insert("fast".into());
                }
                MemberInfo {
                    name: format!("m{i}"),
                    state,
                    online,
                    architecture: if x86 { "x86_64" } else { "aarch64" }.into(),
                    groups: groups.into_iter().map(String::from).collect(),
                    scheduler,
                    memory: gib.map(|g| g << 30),
                    cpus,
                    pools,
                }
            },
        )
}

fn instance(i: usize, members: usize) -> impl Strategy<Value = InstanceInfo> {
    (
        0..members,
        any::<bool>(),
        prop::sample::select(vec![
            "",
            "auto",
            "migrate",
            "live-migrate",
            "stop",
            "force-stop",
        ]),
        prop::option::of(prop::sample::select(vec!["512MiB", "1GiB", "3GiB", "25%"])),
        prop::option::of(1u64..4),
        prop::sample::select(vec!["shared", "fast"]),
        prop::bool::weighted(0.1),
        prop::option::of(prop::sample::select(vec!["gpu", "web"])),
        any::<bool>(),
    )
        .prop_map(
            move |(m, running, policy, mem, cpus, pool, tied, group, live)| {
                let mut config = BTreeMap::new();
                if !policy.is_empty() {
                    config.insert("cluster.evacuate".to_string(), policy.to_string());
                }
                if let Some(mem) = mem {
                    config.insert("limits.memory".into(), mem.into());
                }
                if let Some(c) = cpus {
                    config.insert("limits.cpu".into(), c.to_string());
                }
                if let Some(g) = group {
                    config.insert("volatile.cluster.group".into(), g.into());
                }
                config.insert("image.architecture".into(), "x86_64".into());
                InstanceInfo {
                    project: "default".into(),
                    name: format!("c{i}"),
                    member: format!("m{m}"),
                    running,
                    config,
                    root_pool: Some(pool.into()),
                    root_pool_shared: pool == "shared",
                    tied_to_member: if tied {
                        vec!["device \"d\" (unix-char)".into()]
                    } else {
                        Vec::new()
                    },
                    can_live_migrate: live,
                    ..InstanceInfo::default()
                }
            },
        )
}

fn snapshot() -> impl Strategy<Value = Snapshot> {
    (2usize..7).prop_flat_map(|n| {
        let members: Vec<_> = (0..n).map(member).collect();
        let instances =
            (0usize..40).prop_flat_map(move |k| (0..k).map(|i| instance(i, n)).collect::<Vec<_>>());
        (members, instances).prop_map(|(members, instances)| Snapshot { members, instances })
    })
}

fn mode() -> impl Strategy<Value = EvacuateMode> {
    prop_oneof![
        Just(EvacuateMode::Auto),
        Just(EvacuateMode::Migrate),
        Just(EvacuateMode::LiveMigrate),
        Just(EvacuateMode::Stop),
        Just(EvacuateMode::ForceStop),
    ]
}

/// Bytes of memory an instance asks for on `m` when it runs there.
fn memory_on(inst: &InstanceInfo, m: &MemberInfo) -> u64 {
    inst.config
        .get("limits.memory")
        .and_then(|v| cluster::memory_bytes(v, m.memory))
        .unwrap_or(0)
}

fn cpus(inst: &InstanceInfo) -> u64 {
    inst.config
        .get("limits.cpu")
        .and_then(|v| cluster::cpu_count(v))
        .unwrap_or(0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn evacuation_plans_are_sound(snap in snapshot(), source in 0usize..7, mode in mode()) {
        let source = format!("m{}", source % snap.members.len());
        let plan = plan_evacuation(&snap, &source, mode);

        // Exactly one decision per instance of the source, none for others.
        let on_source: BTreeSet<_> = snap.instances.iter()
            .filter(|i| i.member == source).map(|i| i.name.clone()).collect();
        let planned: Vec<_> = plan.iter().map(|d| d.instance.clone()).collect();
        let unique: BTreeSet<_> = planned.iter().cloned().collect();
        prop_assert_eq!(planned.len(), unique.len(), "two decisions for one instance");
        prop_assert_eq!(&unique, &on_source);

        // Memory and CPUs each member carries, plus what the plan promised.
        let mut mem: BTreeMap<&str, u64> = BTreeMap::new();
        let mut cpu: BTreeMap<&str, u64> = BTreeMap::new();
        for i in &snap.instances {
            if let Some(m) = snap.members.iter().find(|m| m.name == i.member) {
                *mem.entry(&m.name).or_default() += memory_on(i, m);
                *cpu.entry(&m.name).or_default() += cpus(i);
            }
        }
        let before_mem = mem.clone();
        let before_cpu = cpu.clone();
        for d in &plan {
            prop_assert!(!d.reason.is_empty(), "no reason for {}", d.instance);
            prop_assert_eq!(d.target.is_some(), d.action.moves(), "{:?}", d);
            let inst = snap.instances.iter().find(|i| i.name == d.instance).expect("instance");
            if !inst.running {
                prop_assert!(!matches!(d.action, PlanAction::Stop | PlanAction::ForceStop | PlanAction::LiveMigrate));
            }
            if matches!(mode, EvacuateMode::Stop | EvacuateMode::ForceStop) {
                prop_assert!(d.target.is_none());
            }
            if !inst.tied_to_member.is_empty() {
                prop_assert!(d.target.is_none(), "tied instance moved: {:?}", d);
            }
            let Some(t) = &d.target else { continue };
            prop_assert_ne!(t, &source);
            let m = snap.members.iter().find(|m| &m.name == t).expect("target is a member");
            prop_assert_eq!(m.state, MemberState::Created);
            prop_assert!(m.online);
            prop_assert!(m.scheduler != Scheduler::Manual);
            prop_assert!(m.pools.contains(inst.root_pool.as_deref().unwrap_or_default()));
            if let Some(g) = inst.config.get("volatile.cluster.group") {
                prop_assert!(m.groups.contains(g));
            }
            *mem.entry(&m.name).or_default() += memory_on(inst, m);
            *cpu.entry(&m.name).or_default() += cpus(inst);
        }
        for m in &snap.members {
            let (b, a) = (before_mem.get(m.name.as_str()).copied().unwrap_or(0), mem.get(m.name.as_str()).copied().unwrap_or(0));
            if let Some(total) = m.memory && a > b {
                prop_assert!(a <= total, "{} over memory: {} > {}", m.name, a, total);
            }
            let (b, a) = (before_cpu.get(m.name.as_str()).copied().unwrap_or(0), cpu.get(m.name.as_str()).copied().unwrap_or(0));
            if let Some(total) = m.cpus && a > b {
                prop_assert!(a <= total, "{} over CPUs: {} > {}", m.name, a, total);
            }
        }
    }

    #[test]
    fn plans_are_deterministic(snap in snapshot(), source in 0usize..7, mode in mode(), seed in any::<u64>()) {
        let source = format!("m{}", source % snap.members.len());
        let first = plan_evacuation(&snap, &source, mode);
        prop_assert_eq!(&first, &plan_evacuation(&snap, &source, mode));
        // The order instances are listed in does not matter.
        let mut shuffled = snap.clone();
        let n = shuffled.instances.len();
        if n > 1 {
            let k = (seed as usize) % n;
            shuffled.instances.rotate_left(k);
            shuffled.instances.reverse();
        }
        prop_assert_eq!(&first, &plan_evacuation(&shuffled, &source, mode));
        let restore = plan_restore(&snap, &source, &BTreeMap::new());
        prop_assert_eq!(restore, plan_restore(&shuffled, &source, &BTreeMap::new()));
    }
}
