//! Evacuation and restore of a cluster member: `POST /1.0/cluster/members/{name}/state`
//! and the plan drover reports in the operation's metadata.
//!
//! LXD's request is `{"action": "evacuate", "mode": ""}`; `dry_run`, `parallel`,
//! `parallel_per_target` and the `evacuation_plan` metadata are drover's additions, named
//! by the API extensions `cluster_evacuation_plan` and `cluster_evacuation_parallel`.

use serde::{Deserialize, Serialize};

/// Metadata key of LXD's one-line progress (`Stopping "c1" in project "default"`).
pub const PROGRESS_KEY: &str = "evacuation_progress";
/// Metadata key of drover's structured plan (a list of [`PlanEntry`]).
pub const PLAN_KEY: &str = "evacuation_plan";
/// Metadata key of drover's per-instance timeline: a list of
/// `{"project", "instance", "stages": [{"stage", "at_us"}]}`, the wall-clock time
/// (microseconds since the Unix epoch) at which each instance's step began (`begin`),
/// reached each stage of its stop, move or start, and ended (`end`).
pub const TIMELINE_KEY: &str = "evacuation_timeline";

/// `POST /1.0/cluster/members/{name}/state`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MemberStatePost {
    /// `"evacuate"` or `"restore"` (kept a string so an unknown one gets LXD's error).
    pub action: String,
    /// Evacuate: `""`/`"auto"` (each instance's `cluster.evacuate`), `"live-migrate"`,
    /// `"migrate"`, `"stop"`, `"force-stop"`. Restore: `""` or `"skip"`.
    pub mode: String,
    /// Skip the quorum check (the `lxc` 5.0.2 CLI's `--force` only skips its prompt and
    /// does not send this).
    pub force: bool,
    /// drover (`cluster_evacuation_plan`): return the plan, change nothing.
    pub dry_run: bool,
    /// drover (`cluster_evacuation_parallel`): instances handled at once from the source
    /// (0: the cluster's `cluster.evacuate.parallel`, default 4).
    pub parallel: u32,
    /// drover (`cluster_evacuation_parallel`): instances moved at once onto one target
    /// (0: the cluster's `cluster.evacuate.parallel_per_target`, default 2).
    pub parallel_per_target: u32,
}

/// An evacuation policy: an instance's `cluster.evacuate` or a request's `mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvacuateMode {
    /// The best that is possible (`""` means the same).
    #[default]
    Auto,
    /// Move while running; a stopped instance is cold-migrated.
    LiveMigrate,
    /// Clean stop, move, start again if it was running.
    Migrate,
    /// Clean stop, stays.
    Stop,
    /// Immediate kill, stays.
    ForceStop,
}

impl EvacuateMode {
    /// The mode named `s` (`""` is `auto`), `None` for an unknown one.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "" | "auto" => Self::Auto,
            "live-migrate" => Self::LiveMigrate,
            "migrate" => Self::Migrate,
            "stop" => Self::Stop,
            "force-stop" => Self::ForceStop,
            _ => return None,
        })
    }
}

/// What an evacuation does with one instance, or a restore with one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlanAction {
    /// Move while running (VMs with `migration.stateful=true`).
    LiveMigrate,
    /// Clean stop (if running), move, start again if it was running.
    Migrate,
    /// Clean stop, stays on the member.
    Stop,
    /// Immediate kill, stays on the member.
    ForceStop,
    /// Nothing to do (already stopped, or moved by hand since).
    None,
    /// Restore: start again in place.
    Start,
    /// Restore: move back to the member it was evacuated from.
    MoveBack,
}

impl PlanAction {
    /// The kebab-case name (`"force-stop"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LiveMigrate => "live-migrate",
            Self::Migrate => "migrate",
            Self::Stop => "stop",
            Self::ForceStop => "force-stop",
            Self::None => "none",
            Self::Start => "start",
            Self::MoveBack => "move-back",
        }
    }

    /// Whether the instance changes member.
    pub fn moves(self) -> bool {
        matches!(self, Self::LiveMigrate | Self::Migrate | Self::MoveBack)
    }
}

/// How far one instance of a plan has got. Steps only move forward.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum PlanStep {
    /// Planned, nothing done yet.
    #[default]
    Planned,
    /// Stopped on its source (a move continues from here).
    Stopped,
    /// Now owned by its target (a move continues by starting it there).
    Moved,
    /// Finished.
    Done,
    /// Gave up; `error` says why.
    Failed,
}

impl PlanStep {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Planned => "planned",
            Self::Stopped => "stopped",
            Self::Moved => "moved",
            Self::Done => "done",
            Self::Failed => "failed",
        }
    }

    /// The step named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "planned" => Self::Planned,
            "stopped" => Self::Stopped,
            "moved" => Self::Moved,
            "done" => Self::Done,
            "failed" => Self::Failed,
            _ => return None,
        })
    }

    /// Whether nothing more will happen to the instance.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::Failed)
    }
}

/// One instance of a plan, as shown in the operation metadata under `evacuation_plan`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PlanEntry {
    /// `"default"`.
    pub project: String,
    /// `"c1"`.
    pub instance: String,
    /// `"migrate"`.
    pub action: Option<PlanAction>,
    /// The member it is on when planned (`"m1"`).
    pub source: String,
    /// Where it goes (`"m2"`), `""` when it stays.
    pub target: String,
    /// Why this action and target (`no member has 4.00 GiB of memory free`).
    pub reason: String,
    /// How far it has got.
    pub step: PlanStep,
    /// Whether it was running when planned (started again after a move or restore).
    pub was_running: bool,
    /// Bytes of its volume sent to the target so far.
    pub bytes: u64,
    /// Why it failed (`""` unless `step` is `failed`).
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lxc_request_parses_with_defaults() {
        let req: MemberStatePost =
            serde_json::from_str(r#"{"action": "evacuate", "mode": ""}"#).expect("parse");
        assert_eq!(req.action, "evacuate");
        assert!(!req.force && !req.dry_run);
        assert_eq!(req.parallel, 0);
    }

    #[test]
    fn plan_entry_serializes_kebab_case() {
        let e = PlanEntry {
            project: "default".into(),
            instance: "c1".into(),
            action: Some(PlanAction::ForceStop),
            step: PlanStep::Planned,
            ..PlanEntry::default()
        };
        let v = serde_json::to_value(&e).expect("json");
        assert_eq!(v["action"], "force-stop");
        assert_eq!(v["step"], "planned");
        assert_eq!(PlanStep::parse("moved"), Some(PlanStep::Moved));
    }
}
