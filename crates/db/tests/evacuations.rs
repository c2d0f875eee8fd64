//! What does this test do?
//! - begins an evacuation of m1: the member becomes evacuating, the plan is journaled, each
//!   instance records its last power state and (moving ones only) its origin
//! - refuses, changing nothing, a second evacuation elsewhere, a restore during it, and
//!   keeps an existing origin
//! - records steps, finishes (evacuated), refuses evacuating again, then restores
//! - an instance that a second evacuation moves on from where the first one put it: the
//!   first journal follows it (its target becomes the new member)
#![allow(clippy::unwrap_used)]

use api::MemberState;
use api::evacuation::{PlanAction, PlanEntry, PlanStep};
use db::evacuations::EvacuationKind;
use db::instances::InstanceRecord;
use db::{Command, Error, Store};

mod common;

use common::create_member as member;

fn instance(store: &Store, name: &str, origin: Option<&str>) {
    let mut config = api::ConfigMap::new();
    if let Some(o) = origin {
        config.insert("volatile.evacuate.origin".into(), o.into());
    }
    store
        .execute(&Command::CreateInstance(InstanceRecord {
            config,
            profiles: vec![],
            ..common::instance(name, "m1")
        }))
        .unwrap();
}

fn entry(name: &str, action: PlanAction, target: &str, running: bool) -> PlanEntry {
    PlanEntry {
        project: "default".into(),
        instance: name.into(),
        action: Some(action),
        source: "m1".into(),
        target: target.into(),
        reason: "because".into(),
        was_running: running,
        ..PlanEntry::default()
    }
}

fn state(store: &Store, name: &str) -> MemberState {
    let name = name.to_string();
    store
        .read(move |c| db::members::get(c, &name))
        .unwrap()
        .unwrap()
        .state
}

fn config(store: &Store, name: &str, key: &str) -> Option<String> {
    let name = name.to_string();
    store
        .read(move |c| db::instances::get(c, "default", &name))
        .unwrap()
        .unwrap()
        .config
        .get(key)
        .cloned()
}

fn begin(member: &str, kind: EvacuationKind, entries: Vec<PlanEntry>) -> Command {
    Command::BeginEvacuation {
        member: member.into(),
        kind,
        operation: "op1".into(),
        entries,
    }
}

/// A store with members m1–m3 and instances `a` and `b` on m1.
fn three_members_with_a_and_b() -> Store {
    let store = Store::in_memory().unwrap();
    for m in ["m1", "m2", "m3"] {
        member(&store, m);
    }
    instance(&store, "a", None);
    instance(&store, "b", None);
    store
}

/// Begins evacuating m1 with `a` and `b` (running) planned onto m2.
fn begin_a_and_b_to_m2(store: &Store) {
    store
        .execute(&begin(
            "m1",
            EvacuationKind::Evacuate,
            vec![
                entry("a", PlanAction::Migrate, "m2", true),
                entry("b", PlanAction::Migrate, "m2", true),
            ],
        ))
        .unwrap();
}

#[test]
fn evacuation_journal_and_refusals() {
    let store = three_members_with_a_and_b();
    instance(&store, "c", Some("m9"));

    // --- begin evacuating m1
    store
        .execute(&begin(
            "m1",
            EvacuationKind::Evacuate,
            vec![
                entry("a", PlanAction::Migrate, "m2", true),
                entry("b", PlanAction::Stop, "", true),
                entry("c", PlanAction::Migrate, "m3", false),
            ],
        ))
        .unwrap();
    assert_eq!(state(&store, "m1"), MemberState::Evacuating);
    assert_eq!(
        config(&store, "a", "volatile.evacuate.origin").as_deref(),
        Some("m1")
    );
    assert_eq!(
        config(&store, "a", "volatile.last_state.power").as_deref(),
        Some("RUNNING")
    );
    assert_eq!(config(&store, "b", "volatile.evacuate.origin"), None);
    assert_eq!(
        config(&store, "c", "volatile.evacuate.origin").as_deref(),
        Some("m9")
    );
    assert_eq!(
        config(&store, "c", "volatile.last_state.power").as_deref(),
        Some("STOPPED")
    );
    let rows = store
        .read(|c| db::evacuations::list_for_member(c, "m1"))
        .unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].entry.action, Some(PlanAction::Migrate));

    // --- refusals change nothing
    let second = store.execute(&begin("m2", EvacuationKind::Evacuate, vec![]));
    assert!(
        matches!(&second, Err(Error::Refused(m)) if m == "Cannot evacuate \"m2\" while another cluster member evacuation is in progress"),
        "{second:?}"
    );
    let restore = store.execute(&begin("m1", EvacuationKind::Restore, vec![]));
    assert!(
        matches!(&restore, Err(Error::Refused(m)) if m == "Cannot restore \"m1\" while an evacuate operation is in progress"),
        "{restore:?}"
    );
    assert_eq!(state(&store, "m2"), MemberState::Created);
    assert_eq!(
        store
            .read(|c| db::evacuations::list_for_member(c, "m1"))
            .unwrap()
            .len(),
        3
    );

    // --- a second evacuation of m1 while its first is under way is refused
    let twice = store.execute(&begin("m1", EvacuationKind::Evacuate, vec![]));
    assert!(
        matches!(&twice, Err(Error::Refused(m)) if m == "Cluster member is already evacuated"),
        "{twice:?}"
    );

    // --- evacuating again while evacuating (after a partial run) keeps the power state
    // of what the first run stopped
    store
        .execute(&Command::SetEvacuationStep {
            member: "m1".into(),
            project: "default".into(),
            instance: "b".into(),
            step: PlanStep::Failed,
            bytes: 0,
            error: "boom".into(),
        })
        .unwrap();
    for name in ["a", "c"] {
        store
            .execute(&Command::SetEvacuationStep {
                member: "m1".into(),
                project: "default".into(),
                instance: name.into(),
                step: PlanStep::Done,
                bytes: 0,
                error: String::new(),
            })
            .unwrap();
    }
    // The partial run ends: m1 stays evacuating, and may be evacuated again.
    store
        .execute(&Command::FinishEvacuation {
            member: "m1".into(),
            kind: EvacuationKind::Evacuate,
            state: MemberState::Evacuating,
        })
        .unwrap();
    store
        .execute(&begin(
            "m1",
            EvacuationKind::Evacuate,
            vec![
                entry("a", PlanAction::Migrate, "m2", true),
                entry("b", PlanAction::None, "", false),
                entry("c", PlanAction::Migrate, "m3", false),
            ],
        ))
        .unwrap();
    assert_eq!(
        config(&store, "b", "volatile.last_state.power").as_deref(),
        Some("RUNNING")
    );

    // --- steps, finish
    for name in ["a", "b", "c"] {
        store
            .execute(&Command::SetEvacuationStep {
                member: "m1".into(),
                project: "default".into(),
                instance: name.into(),
                step: PlanStep::Done,
                bytes: 10,
                error: String::new(),
            })
            .unwrap();
    }
    store
        .execute(&Command::FinishEvacuation {
            member: "m1".into(),
            kind: EvacuationKind::Evacuate,
            state: MemberState::Evacuated,
        })
        .unwrap();
    assert_eq!(state(&store, "m1"), MemberState::Evacuated);
    let again = store.execute(&begin("m1", EvacuationKind::Evacuate, vec![]));
    assert!(
        matches!(&again, Err(Error::Refused(m)) if m == "Cluster member is already evacuated"),
        "{again:?}"
    );
    // Another member may be evacuated now that nothing is in progress.
    let rows = store
        .read(|c| db::evacuations::list_for_member(c, "m1"))
        .unwrap();
    assert!(
        rows.iter()
            .all(|r| r.entry.step == PlanStep::Done && r.entry.bytes == 10)
    );

    // --- restore
    store
        .execute(&begin(
            "m1",
            EvacuationKind::Restore,
            vec![entry("a", PlanAction::MoveBack, "m1", true)],
        ))
        .unwrap();
    assert_eq!(state(&store, "m1"), MemberState::Restoring);
    let twice = store.execute(&begin("m1", EvacuationKind::Restore, vec![]));
    assert!(
        matches!(&twice, Err(Error::Refused(m)) if m == "Cannot restore \"m1\" while a restore operation is in progress"),
        "{twice:?}"
    );
    store
        .execute(&Command::FinishEvacuation {
            member: "m1".into(),
            kind: EvacuationKind::Restore,
            state: MemberState::Created,
        })
        .unwrap();
    assert_eq!(state(&store, "m1"), MemberState::Created);
    assert!(
        store
            .read(|c| db::evacuations::list_for_member(c, "m1"))
            .unwrap()
            .is_empty()
    );
    let restored = store.execute(&begin("m1", EvacuationKind::Restore, vec![]));
    assert!(
        matches!(&restored, Err(Error::Refused(m)) if m == "Cluster member is already restored"),
        "{restored:?}"
    );
}

/// What does this test do?
/// - an evacuation whose every step is recorded is still unfinished (and holds the
///   cluster-wide lock) until its operation lets go of it (the member's final state)
/// - a late instance is added to the plan with its origin and power state; one already in
///   it is left alone; adding is refused once the member is no longer evacuating
/// - a re-planned instance keeps its new target; one that now stays loses its origin
#[test]
fn late_instances_replans_and_what_counts_as_unfinished() {
    let store = three_members_with_a_and_b();
    instance(&store, "late", None);
    begin_a_and_b_to_m2(&store);
    let unfinished = |store: &Store| {
        store
            .read(|c| db::evacuations::has_unfinished(c, "m1"))
            .unwrap()
    };

    // --- a late instance joins the plan; "a" is not planned twice
    store
        .execute(&Command::AddEvacuationEntries {
            member: "m1".into(),
            operation: "op1".into(),
            entries: vec![
                entry("late", PlanAction::Migrate, "m3", true),
                entry("a", PlanAction::Stop, "", false),
            ],
        })
        .unwrap();
    let rows = store
        .read(|c| db::evacuations::list_for_member(c, "m1"))
        .unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].entry.action, Some(PlanAction::Migrate), "a kept");
    assert_eq!(
        config(&store, "late", "volatile.evacuate.origin").as_deref(),
        Some("m1")
    );
    assert_eq!(
        config(&store, "late", "volatile.last_state.power").as_deref(),
        Some("RUNNING")
    );

    // --- "b" re-planned: first to m3, then to stay
    let replan = |action, target: &str| Command::ReplanEvacuationEntry {
        member: "m1".into(),
        project: "default".into(),
        instance: "b".into(),
        action,
        target: target.into(),
        reason: "m2 died".into(),
    };
    store.execute(&replan(PlanAction::Migrate, "m3")).unwrap();
    let rows = store
        .read(|c| db::evacuations::list_for_member(c, "m1"))
        .unwrap();
    assert_eq!(
        (rows[1].entry.target.as_str(), rows[1].entry.reason.as_str()),
        ("m3", "m2 died")
    );
    assert_eq!(
        config(&store, "b", "volatile.evacuate.origin").as_deref(),
        Some("m1")
    );
    store.execute(&replan(PlanAction::Stop, "")).unwrap();
    assert_eq!(config(&store, "b", "volatile.evacuate.origin"), None);

    // --- every step recorded: unfinished until the operation lets go
    for name in ["a", "b", "late"] {
        store
            .execute(&Command::SetEvacuationStep {
                member: "m1".into(),
                project: "default".into(),
                instance: name.into(),
                step: PlanStep::Done,
                bytes: 0,
                error: String::new(),
            })
            .unwrap();
    }
    assert!(unfinished(&store), "the operation still owns the journal");
    let err = store
        .execute(&begin(
            "m2",
            EvacuationKind::Evacuate,
            vec![entry("x", PlanAction::Stop, "", false)],
        ))
        .unwrap_err();
    assert!(matches!(err, Error::Refused(_)), "{err:?}");
    store
        .execute(&Command::FinishEvacuation {
            member: "m1".into(),
            kind: EvacuationKind::Evacuate,
            state: MemberState::Evacuated,
        })
        .unwrap();
    assert!(!unfinished(&store));
    let err = store
        .execute(&Command::AddEvacuationEntries {
            member: "m1".into(),
            operation: "op1".into(),
            entries: vec![],
        })
        .unwrap_err();
    assert!(matches!(err, Error::Refused(_)), "{err:?}");
}

fn step(member: &str, instance: &str, step: PlanStep) -> Command {
    Command::SetEvacuationStep {
        member: member.into(),
        project: "default".into(),
        instance: instance.into(),
        step,
        bytes: 0,
        error: String::new(),
    }
}

/// Moves `name` from `source` to `target` the way a move does: journaled, then switched.
fn hand_over(store: &Store, id: &str, name: &str, source: &str, target: &str) {
    store
        .execute(&Command::CreateMove(common::move_of(
            id, name, source, target,
        )))
        .unwrap();
    store
        .execute(&Command::SwitchMoveOwner {
            id: id.into(),
            now: "2026-01-01T00:00:01Z".into(),
        })
        .unwrap();
    store
        .execute(&Command::SetMoveStep {
            id: id.into(),
            step: db::moves::MoveStep::Done,
            error: String::new(),
            now: "2026-01-01T00:00:02Z".into(),
        })
        .unwrap();
}

fn target_in_journal(store: &Store, member: &str, instance: &str) -> String {
    let (member, instance) = (member.to_string(), instance.to_string());
    store
        .read(move |c| db::evacuations::list_for_member(c, &member))
        .unwrap()
        .into_iter()
        .find(|r| r.entry.instance == instance)
        .unwrap()
        .entry
        .target
}

#[test]
fn a_second_evacuation_carries_the_first_journal_along() {
    let store = three_members_with_a_and_b();
    let finish = |m: &str| Command::FinishEvacuation {
        member: m.into(),
        kind: EvacuationKind::Evacuate,
        state: MemberState::Evacuated,
    };

    // m1's evacuation puts a and b on m2
    begin_a_and_b_to_m2(&store);
    for (id, name) in [("mv0", "a"), ("mv1", "b")] {
        hand_over(&store, id, name, "m1", "m2");
        store.execute(&step("m1", name, PlanStep::Done)).unwrap();
    }
    store.execute(&finish("m1")).unwrap();

    // m2's evacuation moves a on to m3 and stops b in place
    store
        .execute(&begin(
            "m2",
            EvacuationKind::Evacuate,
            vec![
                PlanEntry {
                    source: "m2".into(),
                    ..entry("a", PlanAction::Migrate, "m3", true)
                },
                PlanEntry {
                    source: "m2".into(),
                    ..entry("b", PlanAction::Stop, "", true)
                },
            ],
        ))
        .unwrap();
    store.execute(&step("m2", "a", PlanStep::Stopped)).unwrap();
    assert_eq!(target_in_journal(&store, "m1", "a"), "m2", "not moved yet");
    hand_over(&store, "mv2", "a", "m2", "m3");
    store.execute(&step("m2", "a", PlanStep::Moved)).unwrap();
    assert_eq!(target_in_journal(&store, "m1", "a"), "m3");
    store.execute(&step("m2", "a", PlanStep::Done)).unwrap();
    store.execute(&step("m2", "b", PlanStep::Done)).unwrap();
    assert_eq!(target_in_journal(&store, "m1", "a"), "m3");
    assert_eq!(target_in_journal(&store, "m1", "b"), "m2", "b stayed on m2");
    assert_eq!(
        config(&store, "a", "volatile.evacuate.origin").as_deref(),
        Some("m1"),
        "the origin stays the first member"
    );
}
