//! drover's cluster domain logic that needs no I/O: the evacuation and restore planner.
//!
//! [`plan_evacuation`] and [`plan_restore`] are pure functions of a [`Snapshot`] of the
//! cluster DB (members with their state, liveness and capacity; instances with their
//! expanded config, power state and what ties them to their member). They decide, per
//! instance, what to do, where to and why; the daemon persists the plan as a journal and
//! executes it. Same snapshot, same plan: the order of the input does not matter.
//!
//! The rules are `EVACUATION.md`'s: a request's mode overrides each instance's
//! `cluster.evacuate`; `auto` live-migrates what can, migrates what can move and stops what
//! is tied to the member; targets are members in `created` state, online, of the same
//! architecture, in the instance's cluster group, whose `scheduler.instance` allows it,
//! with room for its `limits.memory` / `limits.cpu` (counting what its instances, running
//! or not, are promised and what this same plan already promised it), least loaded first. No target means stopped in place, with the reason.
//!
//! [`scheduler::place`] applies the same rules to one new instance without a target (or
//! with `@group`): the least loaded eligible member, or why each member was turned down.

mod limits;
mod plan;
mod restore;
pub mod scheduler;
mod snapshot;

pub use limits::{cpu_count, memory_bytes};
pub use plan::{Decision, plan_evacuation};
pub use restore::plan_restore;
pub use snapshot::{InstanceInfo, InstanceKind, MemberInfo, Scheduler, Snapshot};

/// Config key: an instance's own evacuation policy.
pub const EVACUATE_KEY: &str = "cluster.evacuate";
/// Config key: the member an instance was evacuated from.
pub const ORIGIN_KEY: &str = "volatile.evacuate.origin";
/// Config key: the power state an instance was last seen in (`RUNNING`, `STOPPED`).
pub const LAST_POWER_KEY: &str = "volatile.last_state.power";
/// Config key: the cluster group an instance was placed in (`--target @group`).
pub const GROUP_KEY: &str = "volatile.cluster.group";
