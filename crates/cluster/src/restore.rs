//! The restore planner: start what the evacuation stopped, bring home what it moved.

use std::collections::BTreeMap;

use api::evacuation::PlanAction;

use crate::plan::Decision;
use crate::snapshot::Snapshot;
use crate::{LAST_POWER_KEY, ORIGIN_KEY};

/// Plans the restore of `member`: instances on it that are stopped but were last running
/// start again; instances elsewhere whose `volatile.evacuate.origin` is `member` move back.
/// `placed` is where the evacuation put each instance (`(project, name)` → member), from
/// its journal: an instance found elsewhere was moved by hand since, stays, and is
/// reported. Ordered by project and name.
pub fn plan_restore(
    snapshot: &Snapshot,
    member: &str,
    placed: &BTreeMap<(String, String), String>,
) -> Vec<Decision> {
    let mut out = Vec::new();
    for inst in &snapshot.instances {
        let mut d = Decision::nothing_for(inst);
        let origin = inst.config_value(ORIGIN_KEY);
        if inst.member == member {
            if inst.running || inst.config_value(LAST_POWER_KEY) != "RUNNING" {
                continue;
            }
            d.action = PlanAction::Start;
            d.reason = "it was running before the evacuation".into();
        } else if origin == member {
            let key = (inst.project.clone(), inst.name.clone());
            match placed.get(&key) {
                Some(put) if *put != inst.member => {
                    d.reason = format!(
                        "moved by hand to {:?} since the evacuation put it on {put:?}: it stays",
                        inst.member
                    );
                }
                _ => {
                    d.action = PlanAction::MoveBack;
                    d.target = Some(member.to_string());
                    d.reason = format!("evacuated from {member:?}");
                }
            }
        } else {
            continue;
        }
        out.push(d);
    }
    out.sort_by(|a, b| (&a.project, &a.instance).cmp(&(&b.project, &b.instance)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::InstanceInfo;

    fn inst(name: &str, on: &str, running: bool, cfg: &[(&str, &str)]) -> InstanceInfo {
        InstanceInfo {
            project: "default".into(),
            name: name.into(),
            member: on.into(),
            running,
            config: cfg
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..InstanceInfo::default()
        }
    }

    #[test]
    fn starts_stopped_moves_back_and_leaves_hand_moved() {
        let snap = Snapshot {
            members: Vec::new(),
            instances: vec![
                inst("stopped", "m1", false, &[(LAST_POWER_KEY, "RUNNING")]),
                inst("off", "m1", false, &[(LAST_POWER_KEY, "STOPPED")]),
                inst("up", "m1", true, &[(LAST_POWER_KEY, "RUNNING")]),
                inst("moved", "m2", true, &[(ORIGIN_KEY, "m1")]),
                inst("byhand", "m3", true, &[(ORIGIN_KEY, "m1")]),
                inst("foreign", "m2", true, &[(ORIGIN_KEY, "m4")]),
            ],
        };
        let placed = BTreeMap::from([
            (("default".into(), "moved".into()), "m2".to_string()),
            (("default".into(), "byhand".into()), "m2".to_string()),
        ]);
        let plan = plan_restore(&snap, "m1", &placed);
        let got: Vec<_> = plan
            .iter()
            .map(|d| (d.instance.as_str(), d.action, d.target.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("byhand", PlanAction::None, None),
                ("moved", PlanAction::MoveBack, Some("m1")),
                ("stopped", PlanAction::Start, None),
            ]
        );
    }
}
