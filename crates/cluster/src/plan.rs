//! The evacuation planner: per instance of the member, an action, a target and a reason.

use std::collections::HashMap;

use api::MemberState;
use api::evacuation::{EvacuateMode, PlanAction, PlanEntry, PlanStep};

use crate::snapshot::{InstanceInfo, MemberInfo, Scheduler, Snapshot};
use crate::{EVACUATE_KEY, GROUP_KEY, cpu_count, memory_bytes};

/// What the plan does with one instance, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// `"default"`.
    pub project: String,
    /// `"c1"`.
    pub instance: String,
    /// The action.
    pub action: PlanAction,
    /// The member it is on now.
    pub source: String,
    /// Where it goes (`Some` exactly when the action moves it).
    pub target: Option<String>,
    /// A sentence saying why (`no member has 4 GiB of memory free`).
    pub reason: String,
    /// Whether it runs now (a move starts it again on its target).
    pub was_running: bool,
}

impl Decision {
    /// No action yet for `inst`, from where it is, without a reason.
    pub(crate) fn nothing_for(inst: &InstanceInfo) -> Self {
        Self {
            project: inst.project.clone(),
            instance: inst.name.clone(),
            action: PlanAction::None,
            source: inst.member.clone(),
            target: None,
            reason: String::new(),
            was_running: inst.running,
        }
    }

    /// The decision as a row of the plan table, not started yet.
    pub fn entry(&self) -> PlanEntry {
        PlanEntry {
            project: self.project.clone(),
            instance: self.instance.clone(),
            action: Some(self.action),
            source: self.source.clone(),
            target: self.target.clone().unwrap_or_default(),
            reason: self.reason.clone(),
            step: PlanStep::Planned,
            was_running: self.was_running,
            bytes: 0,
            error: String::new(),
        }
    }
}

/// How much memory an instance asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Memory {
    Bytes(u64),
    Percent(f64),
}

impl Memory {
    fn of(inst: &InstanceInfo) -> Option<Self> {
        let v = inst.config.get("limits.memory")?;
        if let Some(p) = v.trim().strip_suffix('%') {
            return p.trim().parse().ok().map(Self::Percent);
        }
        memory_bytes(v, None).map(Self::Bytes)
    }

    /// Bytes on a member with `total` bytes (a percentage of an unknown total asks nothing).
    fn on(self, total: Option<u64>) -> u64 {
        match self {
            Self::Bytes(b) => b,
            Self::Percent(p) => total.map_or(0, |t| (t as f64 * p / 100.0) as u64),
        }
    }
}

/// An instance's demand on the member that holds it.
#[derive(Debug, Clone, Copy)]
struct Demand {
    memory: Option<Memory>,
    cpus: u64,
}

impl Demand {
    fn of(inst: &InstanceInfo) -> Self {
        Self {
            memory: Memory::of(inst),
            cpus: inst
                .config
                .get("limits.cpu")
                .and_then(|v| cpu_count(v))
                .unwrap_or(0),
        }
    }

    fn memory_on(&self, m: &MemberInfo) -> u64 {
        self.memory.map_or(0, |d| d.on(m.memory))
    }
}

/// What a member carries: its instances and the memory and CPUs they are promised (running
/// or not, as the scheduler counts them).
#[derive(Debug, Clone, Copy, Default)]
struct Load {
    instances: u64,
    memory: u64,
    cpus: u64,
}

/// Why a member cannot take an instance, in the order the checks run: the furthest any
/// member got names the reason when none fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Refusal {
    Unavailable,
    Architecture,
    Group,
    Scheduler,
    Pool,
    Memory,
    Cpu,
}

/// Bytes as a short human quantity (`4 GiB`, `1.5 GiB`, `512 MiB`).
fn human(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if bytes >= size {
            let v = bytes as f64 / size as f64;
            return if (v - v.round()).abs() < 0.005 {
                format!("{} {unit}", v.round() as u64)
            } else {
                format!("{v:.2} {unit}")
            };
        }
    }
    format!("{bytes} B")
}

/// The planner's working state: members and what they carry, including what this plan
/// has promised them so far.
struct Planner<'a> {
    members: &'a [MemberInfo],
    load: Vec<Load>,
    source: &'a str,
}

impl<'a> Planner<'a> {
    fn new(snapshot: &'a Snapshot, source: &'a str) -> Self {
        let index: HashMap<&str, usize> = snapshot
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| (m.name.as_str(), i))
            .collect();
        let mut load = vec![Load::default(); snapshot.members.len()];
        for inst in &snapshot.instances {
            if let Some(&i) = index.get(inst.member.as_str()) {
                let l = &mut load[i];
                l.instances += 1;
                let d = Demand::of(inst);
                l.memory += d.memory_on(&snapshot.members[i]);
                l.cpus += d.cpus;
            }
        }
        Self {
            members: &snapshot.members,
            load,
            source,
        }
    }

    /// Whether member `i` can take `inst`.
    fn check(
        &self,
        i: usize,
        inst: &InstanceInfo,
        group: &str,
        demand: &Demand,
    ) -> Result<(), Refusal> {
        let m = &self.members[i];
        if m.name == self.source || m.state != MemberState::Created || !m.online {
            return Err(Refusal::Unavailable);
        }
        if !inst_arch_ok(m, inst) {
            return Err(Refusal::Architecture);
        }
        let in_group = !group.is_empty() && m.groups.iter().any(|g| g == group);
        if !group.is_empty() && !in_group {
            return Err(Refusal::Group);
        }
        match m.scheduler {
            Scheduler::All => {}
            Scheduler::Manual => return Err(Refusal::Scheduler),
            Scheduler::Group if !in_group => return Err(Refusal::Scheduler),
            Scheduler::Group => {}
        }
        if let Some(pool) = &inst.root_pool
            && !m.pools.contains(pool)
        {
            return Err(Refusal::Pool);
        }
        let l = &self.load[i];
        if let Some(total) = m.memory
            && l.memory.saturating_add(demand.memory_on(m)) > total
        {
            return Err(Refusal::Memory);
        }
        if let Some(total) = m.cpus
            && l.cpus.saturating_add(demand.cpus) > total
        {
            return Err(Refusal::Cpu);
        }
        Ok(())
    }

    /// The least loaded member that can take `inst`, promised to it; or why none can.
    fn place(&mut self, inst: &InstanceInfo) -> Result<usize, String> {
        let group = inst.config_value(GROUP_KEY);
        let demand = Demand::of(inst);
        let mut best: Option<usize> = None;
        let mut furthest = Refusal::Unavailable;
        for i in 0..self.members.len() {
            match self.check(i, inst, group, &demand) {
                Ok(()) => {
                    let better = match best {
                        None => true,
                        Some(b) => {
                            let (lb, li) = (&self.load[b], &self.load[i]);
                            (li.instances, li.memory, &self.members[i].name)
                                < (lb.instances, lb.memory, &self.members[b].name)
                        }
                    };
                    if better {
                        best = Some(i);
                    }
                }
                Err(r) => furthest = furthest.max(r),
            }
        }
        let Some(i) = best else {
            return Err(self.why_not(inst, group, &demand, furthest));
        };
        let m = &self.members[i];
        let l = &mut self.load[i];
        l.instances += 1;
        l.memory += demand.memory_on(m);
        l.cpus += demand.cpus;
        Ok(i)
    }

    fn why_not(&self, inst: &InstanceInfo, group: &str, demand: &Demand, r: Refusal) -> String {
        match r {
            Refusal::Unavailable => "no other member is online and in created state".into(),
            Refusal::Architecture => format!(
                "no available member has the architecture {:?}",
                inst.config_value("image.architecture")
            ),
            Refusal::Group => format!("no available member is in cluster group {group:?}"),
            Refusal::Scheduler => {
                "no available member takes instances automatically (scheduler.instance)".into()
            }
            Refusal::Pool => {
                let pool = inst.root_pool.as_deref().unwrap_or_default();
                if inst.root_pool_shared {
                    format!("root volume on shared pool {pool:?} not on any target")
                } else {
                    format!("root volume on local pool {pool:?} not on any target")
                }
            }
            Refusal::Memory => match demand.memory {
                Some(Memory::Percent(p)) => format!("no member has {p}% of its memory free"),
                Some(Memory::Bytes(b)) => format!("no member has {} of memory free", human(b)),
                None => "no member has memory free".into(),
            },
            Refusal::Cpu => format!("no member has {} CPUs free", demand.cpus),
        }
    }
}

/// Whether `m` can run `inst` (same architecture; an instance of unknown architecture
/// runs anywhere).
fn inst_arch_ok(m: &MemberInfo, inst: &InstanceInfo) -> bool {
    let arch = inst.config_value("image.architecture");
    arch.is_empty() || arch == m.architecture || m.architecture.is_empty()
}

/// The policy that applies to `inst` and where it comes from.
fn policy(inst: &InstanceInfo, mode: EvacuateMode) -> (EvacuateMode, String) {
    if mode != EvacuateMode::Auto {
        return (mode, "the request's mode".into());
    }
    let own = inst.config_value(EVACUATE_KEY);
    let parsed = EvacuateMode::parse(own).unwrap_or_default();
    let label = if own.is_empty() { "auto" } else { own };
    (parsed, format!("cluster.evacuate={label}"))
}

/// Plans the evacuation of `member` in `mode`: one decision per instance on it, ordered by
/// project and name.
///
/// Instances are placed largest first (memory, then CPUs, then name), so that what fits
/// is not crowded out by what was placed before it. Every decision has a reason; an
/// instance that should move but has no target is stopped in place (`none` if it is not
/// running) and the reason says why.
pub fn plan_evacuation(snapshot: &Snapshot, member: &str, mode: EvacuateMode) -> Vec<Decision> {
    let mut planner = Planner::new(snapshot, member);
    let mut order: Vec<(&InstanceInfo, u64, u64)> = snapshot
        .instances
        .iter()
        .filter(|i| i.member == member)
        .map(|i| {
            let d = Demand::of(i);
            let mem = d.memory.map_or(0, |m| m.on(None));
            (i, mem, d.cpus)
        })
        .collect();
    order.sort_by(|a, b| {
        (b.1, b.2)
            .cmp(&(a.1, a.2))
            .then_with(|| (&a.0.project, &a.0.name).cmp(&(&b.0.project, &b.0.name)))
    });
    let mut out: Vec<Decision> = order
        .into_iter()
        .map(|(inst, _, _)| decide(&mut planner, inst, mode))
        .collect();
    out.sort_by(|a, b| (&a.project, &a.instance).cmp(&(&b.project, &b.instance)));
    out
}

fn decide(planner: &mut Planner<'_>, inst: &InstanceInfo, mode: EvacuateMode) -> Decision {
    let (policy, why) = policy(inst, mode);
    let mut d = Decision::nothing_for(inst);
    let stay = |d: &mut Decision, action: PlanAction, reason: String| {
        if inst.running {
            d.action = action;
            d.reason = reason;
        } else {
            d.action = PlanAction::None;
            d.reason = format!("already stopped; {reason}");
        }
    };
    match policy {
        EvacuateMode::Stop => stay(&mut d, PlanAction::Stop, format!("{why} keeps it here")),
        EvacuateMode::ForceStop => stay(
            &mut d,
            PlanAction::ForceStop,
            format!("{why} keeps it here"),
        ),
        EvacuateMode::Auto | EvacuateMode::LiveMigrate | EvacuateMode::Migrate => {
            if let Some(tie) = inst.tied_to_member.first() {
                stay(
                    &mut d,
                    PlanAction::Stop,
                    format!("it uses {tie}, which cannot move"),
                );
                return d;
            }
            let live = inst.running
                && inst.can_live_migrate
                && matches!(policy, EvacuateMode::Auto | EvacuateMode::LiveMigrate);
            match planner.place(inst) {
                Ok(i) => {
                    let name = planner.members[i].name.clone();
                    d.action = if live {
                        PlanAction::LiveMigrate
                    } else {
                        PlanAction::Migrate
                    };
                    d.reason = if policy == EvacuateMode::LiveMigrate && !live && inst.running {
                        format!(
                            "{why}, but it cannot move while running: moved stopped to the least loaded member that fits"
                        )
                    } else {
                        format!("{why}: {name:?} is the least loaded member that fits")
                    };
                    d.target = Some(name);
                }
                Err(reason) => stay(&mut d, PlanAction::Stop, reason),
            }
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::InstanceKind;

    fn member(name: &str) -> MemberInfo {
        MemberInfo {
            name: name.into(),
            online: true,
            architecture: "x86_64".into(),
            groups: vec!["default".into()],
            pools: ["default".to_string()].into(),
            ..MemberInfo::default()
        }
    }

    fn inst(name: &str, on: &str, running: bool, cfg: &[(&str, &str)]) -> InstanceInfo {
        InstanceInfo {
            project: "default".into(),
            name: name.into(),
            kind: InstanceKind::Container,
            member: on.into(),
            running,
            config: cfg
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            root_pool: Some("default".into()),
            ..InstanceInfo::default()
        }
    }

    #[test]
    fn policies_and_least_loaded_targets() {
        let snap = Snapshot {
            members: vec![member("m1"), member("m2"), member("m3")],
            instances: vec![
                inst("a", "m1", true, &[]),
                inst("b", "m1", true, &[("cluster.evacuate", "stop")]),
                inst("c", "m1", false, &[("cluster.evacuate", "stop")]),
                inst("d", "m1", false, &[("cluster.evacuate", "migrate")]),
                inst("x", "m2", true, &[]),
            ],
        };
        let plan = plan_evacuation(&snap, "m1", EvacuateMode::Auto);
        let got: Vec<_> = plan
            .iter()
            .map(|d| (d.instance.as_str(), d.action, d.target.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", PlanAction::Migrate, Some("m3")),
                ("b", PlanAction::Stop, None),
                ("c", PlanAction::None, None),
                ("d", PlanAction::Migrate, Some("m2")),
            ]
        );
        let forced = plan_evacuation(&snap, "m1", EvacuateMode::ForceStop);
        assert_eq!(forced[0].action, PlanAction::ForceStop);
        assert_eq!(forced[3].action, PlanAction::None);
    }

    #[test]
    fn capacity_promised_by_the_plan_counts() {
        let mut m2 = member("m2");
        m2.memory = Some(5 << 30);
        let snap = Snapshot {
            members: vec![member("m1"), m2],
            instances: vec![
                inst("a", "m1", true, &[("limits.memory", "4GiB")]),
                inst("b", "m1", true, &[("limits.memory", "4GiB")]),
                inst("c", "m1", false, &[("limits.memory", "4GiB")]),
            ],
        };
        let plan = plan_evacuation(&snap, "m1", EvacuateMode::Auto);
        assert_eq!(plan[0].target.as_deref(), Some("m2"));
        assert_eq!(plan[1].action, PlanAction::Stop);
        assert_eq!(plan[1].reason, "no member has 4 GiB of memory free");
        // Memory is promised to stopped instances too (as the scheduler counts it).
        assert_eq!(plan[2].action, PlanAction::None);
        assert_eq!(
            plan[2].reason,
            "already stopped; no member has 4 GiB of memory free"
        );
    }

    #[test]
    fn ties_pools_groups_and_states() {
        let mut m2 = member("m2");
        m2.groups = vec!["gpu".into()];
        let mut m3 = member("m3");
        m3.state = MemberState::Evacuated;
        let mut tied = inst("tied", "m1", true, &[]);
        tied.tied_to_member = vec!["device \"gpu0\" (unix-char)".into()];
        let mut local = inst("local", "m1", true, &[]);
        local.root_pool = Some("fast".into());
        let snap = Snapshot {
            members: vec![member("m1"), m2, m3],
            instances: vec![
                tied,
                local,
                inst("grouped", "m1", true, &[("volatile.cluster.group", "gpu")]),
                inst("other", "m1", true, &[("volatile.cluster.group", "web")]),
            ],
        };
        let plan = plan_evacuation(&snap, "m1", EvacuateMode::Migrate);
        let by: HashMap<&str, &Decision> = plan.iter().map(|d| (d.instance.as_str(), d)).collect();
        assert_eq!(by["tied"].action, PlanAction::Stop);
        assert!(by["tied"].reason.contains("gpu0"), "{}", by["tied"].reason);
        assert_eq!(
            by["local"].reason,
            "root volume on local pool \"fast\" not on any target"
        );
        assert_eq!(by["grouped"].target.as_deref(), Some("m2"));
        assert_eq!(
            by["other"].reason,
            "no available member is in cluster group \"web\""
        );
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(4 << 30), "4 GiB");
        assert_eq!(human(3 << 29), "1.50 GiB");
        assert_eq!(human(512 << 20), "512 MiB");
        assert_eq!(human(12), "12 B");
    }
}
