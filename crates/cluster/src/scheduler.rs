//! Placement of a new instance: which member takes it when the client names none (or
//! names a group with `@group`). Pure: the caller gathers the members' facts.
//!
//! Rules (LXD's, plus capacity): a member is eligible when it is in state `created`,
//! online, of the instance's architecture, allows automatic placement
//! (`scheduler.instance` `all`; `group` only when placed through one of its groups; never
//! `manual`), belongs to the requested group if any, and has room for the instance's
//! `limits.memory` and `limits.cpu` (what it has minus what its instances are promised;
//! an unknown size is no limit). Among eligible members the least loaded (fewest
//! instances) wins, ties broken by name. When none is eligible, [`NoMember`] says why each
//! member was turned down.

use api::{ConfigMap, MemberState};

use crate::snapshot::{MemberInfo, Scheduler, Snapshot};
use crate::{cpu_count, memory_bytes};

/// The instance to place.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `"x86_64"` (`""`: any).
    pub architecture: &'a str,
    /// Its expanded config (profiles applied): `limits.memory`, `limits.cpu`.
    pub config: &'a ConfigMap,
    /// The group of `--target @group`, if any.
    pub group: Option<&'a str>,
}

/// What a member already carries: its instances and what they are promised.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Load {
    instances: usize,
    memory: u64,
    cpus: u64,
}

fn limit_memory(config: &ConfigMap, total: Option<u64>) -> u64 {
    config
        .get("limits.memory")
        .and_then(|v| memory_bytes(v, total))
        .unwrap_or(0)
}

fn limit_cpus(config: &ConfigMap) -> u64 {
    config
        .get("limits.cpu")
        .and_then(|v| cpu_count(v))
        .unwrap_or(0)
}

fn load_of(snapshot: &Snapshot, m: &MemberInfo) -> Load {
    snapshot
        .instances
        .iter()
        .filter(|i| i.member == m.name)
        .fold(Load::default(), |l, i| Load {
            instances: l.instances + 1,
            memory: l.memory + limit_memory(&i.config, m.memory),
            cpus: l.cpus + limit_cpus(&i.config),
        })
}

/// Why a member cannot take the instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Not in state `created` (evacuated, joining, ...).
    State(MemberState),
    /// No heartbeat.
    Offline,
    /// Another architecture.
    Architecture(String),
    /// `scheduler.instance=manual`.
    Manual,
    /// `scheduler.instance=group` and no group was asked for.
    GroupOnly,
    /// Not in the requested group.
    NotInGroup(String),
    /// Not enough free memory (bytes free, bytes needed).
    Memory {
        /// Free.
        free: u64,
        /// Needed.
        need: u64,
    },
    /// Not enough free CPUs.
    Cpu {
        /// Free.
        free: u64,
        /// Needed.
        need: u64,
    },
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::State(s) => write!(f, "state is {s:?}, not created"),
            Self::Offline => write!(f, "offline"),
            Self::Architecture(a) => write!(f, "architecture is {a}"),
            Self::Manual => write!(f, "scheduler.instance is manual"),
            Self::GroupOnly => write!(
                f,
                "scheduler.instance is group and no cluster group was targeted"
            ),
            Self::NotInGroup(g) => write!(f, "not in cluster group {g:?}"),
            Self::Memory { free, need } => write!(
                f,
                "not enough free memory (needs {}, has {} free)",
                bytes(*need),
                bytes(*free)
            ),
            Self::Cpu { free, need } => {
                write!(f, "not enough free CPUs (needs {need}, has {free} free)")
            }
        }
    }
}

/// `1.50GiB`-style sizes for messages.
fn bytes(n: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{v:.2}{}", UNITS[unit])
    }
}

/// LXD's words when no member can take an instance; drover adds each member's reason.
pub const NO_SUITABLE: &str = "No suitable cluster member could be found";

/// No member can take the instance: each member with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoMember {
    /// Member name → why it was turned down, in the candidates' order.
    pub rejected: Vec<(String, Rejection)>,
}

impl std::fmt::Display for NoMember {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.rejected.is_empty() {
            return write!(f, "{NO_SUITABLE}");
        }
        write!(f, "{NO_SUITABLE}: ")?;
        for (i, (name, why)) in self.rejected.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{name}: {why}")?;
        }
        Ok(())
    }
}

/// Why member `m`, carrying `load`, cannot take the instance `req`; `None` when it can.
fn rejection(m: &MemberInfo, load: Load, req: &Request<'_>) -> Option<Rejection> {
    if m.state != MemberState::Created {
        return Some(Rejection::State(m.state));
    }
    if !m.online {
        return Some(Rejection::Offline);
    }
    if !req.architecture.is_empty() && m.architecture != req.architecture {
        return Some(Rejection::Architecture(m.architecture.clone()));
    }
    match (req.group, m.scheduler) {
        (_, Scheduler::Manual) => return Some(Rejection::Manual),
        (None, Scheduler::Group) => return Some(Rejection::GroupOnly),
        (Some(g), _) if !m.groups.iter().any(|x| x == g) => {
            return Some(Rejection::NotInGroup(g.to_string()));
        }
        _ => {}
    }
    let need = limit_memory(req.config, m.memory);
    if let Some(total) = m.memory
        && need > 0
    {
        let free = total.saturating_sub(load.memory);
        if free < need {
            return Some(Rejection::Memory { free, need });
        }
    }
    let need = limit_cpus(req.config);
    if let Some(total) = m.cpus
        && need > 0
    {
        let free = total.saturating_sub(load.cpus);
        if free < need {
            return Some(Rejection::Cpu { free, need });
        }
    }
    None
}

/// The member that takes the instance `req`: among the snapshot's members that can, the
/// least loaded (fewest instances; ties: the first name).
///
/// # Errors
///
/// [`NoMember`], naming why each member was turned down, when none can.
pub fn place(snapshot: &Snapshot, req: &Request<'_>) -> Result<String, NoMember> {
    let mut rejected = Vec::new();
    let mut best: Option<(usize, &str)> = None;
    for m in &snapshot.members {
        let load = load_of(snapshot, m);
        match rejection(m, load, req) {
            Some(why) => rejected.push((m.name.clone(), why)),
            None => {
                let key = (load.instances, m.name.as_str());
                if best.is_none_or(|b| key < b) {
                    best = Some(key);
                }
            }
        }
    }
    best.map(|(_, name)| name.to_string())
        .ok_or(NoMember { rejected })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::InstanceInfo;

    const GIB: u64 = 1 << 30;

    fn member(name: &str) -> MemberInfo {
        MemberInfo {
            name: name.into(),
            state: MemberState::Created,
            online: true,
            architecture: "x86_64".into(),
            groups: vec!["default".into()],
            scheduler: Scheduler::All,
            memory: Some(8 * GIB),
            cpus: Some(4),
            ..MemberInfo::default()
        }
    }

    fn instance(name: &str, on: &str, config: &[(&str, &str)]) -> InstanceInfo {
        InstanceInfo {
            project: "default".into(),
            name: name.into(),
            member: on.into(),
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..InstanceInfo::default()
        }
    }

    fn snapshot(members: Vec<MemberInfo>, instances: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            members,
            instances: instances
                .iter()
                .map(|(name, on)| instance(name, on, &[]))
                .collect(),
        }
    }

    fn plain() -> ConfigMap {
        ConfigMap::new()
    }

    fn req(config: &ConfigMap) -> Request<'_> {
        Request {
            architecture: "x86_64",
            config,
            group: None,
        }
    }

    #[test]
    fn the_least_loaded_member_wins_ties_by_name() {
        let none = plain();
        let s = snapshot(
            vec![member("m1"), member("m2"), member("m3")],
            &[("a", "m1"), ("b", "m1"), ("c", "m2"), ("d", "m3")],
        );
        assert_eq!(place(&s, &req(&none)), Ok("m2".into()));
        let s = snapshot(vec![member("m3"), member("m1")], &[]);
        assert_eq!(place(&s, &req(&none)), Ok("m1".into()));
    }

    #[test]
    fn placing_one_by_one_spreads_evenly() {
        let none = plain();
        let mut s = snapshot(vec![member("m1"), member("m2"), member("m3")], &[]);
        for i in 0..6 {
            let on = place(&s, &req(&none)).expect("a member");
            s.instances.push(instance(&format!("c{i}"), &on, &[]));
        }
        for m in ["m1", "m2", "m3"] {
            assert_eq!(s.instances.iter().filter(|i| i.member == m).count(), 2);
        }
    }

    #[test]
    fn ineligible_members_are_skipped_with_their_reason() {
        let none = plain();
        let mut evacuated = member("m1");
        evacuated.state = MemberState::Evacuated;
        let mut offline = member("m2");
        offline.online = false;
        let mut arm = member("m3");
        arm.architecture = "aarch64".into();
        let mut manual = member("m4");
        manual.scheduler = Scheduler::Manual;
        let mut group_only = member("m5");
        group_only.scheduler = Scheduler::Group;
        let five = vec![evacuated, offline, arm, manual, group_only];
        let mut six = five.clone();
        six.push(member("m6"));
        let busy = snapshot(six, &[("a", "m6"), ("b", "m6")]);
        assert_eq!(place(&busy, &req(&none)), Ok("m6".into()));
        let err = place(&snapshot(five, &[]), &req(&none)).expect_err("none eligible");
        assert_eq!(
            err.to_string(),
            "No suitable cluster member could be found: m1: state is Evacuated, not created; \
             m2: offline; m3: architecture is aarch64; m4: scheduler.instance is manual; \
             m5: scheduler.instance is group and no cluster group was targeted"
        );
    }

    #[test]
    fn a_group_target_picks_among_its_members() {
        let none = plain();
        let mut fast = member("m2");
        fast.groups.push("fast".into());
        let mut fast_group_only = member("m3");
        fast_group_only.groups = vec!["fast".into()];
        fast_group_only.scheduler = Scheduler::Group;
        let mut s = snapshot(
            vec![member("m1"), fast, fast_group_only],
            &[("a", "m3"), ("b", "m3")],
        );
        let in_fast = Request {
            group: Some("fast"),
            ..req(&none)
        };
        assert_eq!(place(&s, &in_fast), Ok("m2".into()));
        // Without a group, m3 (scheduler.instance=group) is never chosen.
        s.instances.push(instance("c", "m1", &[]));
        s.instances.push(instance("d", "m2", &[]));
        assert_eq!(place(&s, &req(&none)), Ok("m1".into()));
        s.members[1].scheduler = Scheduler::Manual;
        assert_eq!(place(&s, &in_fast), Ok("m3".into()));
        let nowhere = Request {
            group: Some("slow"),
            ..req(&none)
        };
        let err = place(&s, &nowhere).expect_err("no member in slow");
        assert_eq!(err.rejected.len(), 3);
        assert_eq!(err.rejected[0].1, Rejection::NotInGroup("slow".into()));
    }

    #[test]
    fn capacity_counts_what_instances_are_promised() {
        let mut unknown = member("m3");
        unknown.memory = None;
        unknown.cpus = None;
        let mut s = snapshot(vec![member("m1"), member("m2")], &[]);
        s.instances
            .push(instance("big", "m1", &[("limits.memory", "7GiB")]));
        s.instances
            .push(instance("busy", "m2", &[("limits.cpu", "0-2")]));
        let big: ConfigMap = [
            ("limits.memory".to_string(), "2GiB".to_string()),
            ("limits.cpu".to_string(), "2".to_string()),
        ]
        .into();
        assert_eq!(
            place(&s, &req(&big)).expect_err("no room").to_string(),
            "No suitable cluster member could be found: m1: not enough free memory (needs \
             2.00GiB, has 1.00GiB free); m2: not enough free CPUs (needs 2, has 1 free)"
        );
        s.members.push(unknown);
        assert_eq!(place(&s, &req(&big)), Ok("m3".into()));
        let half: ConfigMap = [("limits.memory".to_string(), "50%".to_string())].into();
        s.members.pop();
        // 50% of m2's 8 GiB fits; m1 has only 1 GiB left.
        assert_eq!(place(&s, &req(&half)), Ok("m2".into()));
        let huge: ConfigMap = [("limits.memory".to_string(), "100GiB".to_string())].into();
        let err = place(&s, &req(&huge)).expect_err("larger than any member");
        assert!(
            err.rejected
                .iter()
                .all(|(_, why)| matches!(why, Rejection::Memory { .. })),
            "{err}"
        );
    }

    #[test]
    fn no_members_at_all() {
        let none = plain();
        assert_eq!(
            place(&Snapshot::default(), &req(&none))
                .expect_err("empty")
                .to_string(),
            "No suitable cluster member could be found"
        );
    }
}
