//! What does this test do?
//! - journals a move, walks it through its steps, switches ownership in one command
//! - shows that the switch and the fence (abort) exclude each other, whichever comes first
//! - shows that a second unfinished move of one instance, a move from the wrong member,
//!   and backward steps are refused and change nothing
#![allow(clippy::unwrap_used)]

use db::moves::MoveStep;
use db::{Command, Error, Store};

mod common;
use common::{instance, move_of};

fn step(store: &Store, id: &str, step: MoveStep) -> db::Result<()> {
    store.execute(&Command::SetMoveStep {
        id: id.into(),
        step,
        error: String::new(),
        now: "2026-01-01T00:00:01Z".into(),
    })
}

fn member_of(store: &Store, name: &str) -> String {
    store
        .read(|c| db::instances::get(c, "default", name))
        .unwrap()
        .unwrap()
        .member
}

/// A store holding container c1 on m1 and move "a" of it to m2, just started.
fn moving_c1() -> Store {
    let store = Store::in_memory().unwrap();
    store
        .execute(&Command::CreateInstance(instance("c1", "m1")))
        .unwrap();
    store
        .execute(&Command::CreateMove(move_of("a", "c1", "m1", "m2")))
        .unwrap();
    store
}

#[test]
fn a_move_walks_its_steps_and_switches_in_one_command() {
    let store = moving_c1();

    // A second move of the same instance, or one from a member that does not hold it.
    let again = store.execute(&Command::CreateMove(move_of("b", "c1", "m1", "m3")));
    assert!(matches!(again, Err(Error::Refused(_))), "{again:?}");
    store
        .execute(&Command::CreateInstance(instance("c2", "m1")))
        .unwrap();
    let wrong = store.execute(&Command::CreateMove(move_of("c", "c2", "m3", "m2")));
    assert!(matches!(wrong, Err(Error::Refused(_))), "{wrong:?}");

    for s in [MoveStep::Precopied, MoveStep::Stopped, MoveStep::Synced] {
        step(&store, "a", s).unwrap();
    }
    assert!(
        step(&store, "a", MoveStep::Precopied).is_err(),
        "no going back"
    );
    assert!(
        step(&store, "a", MoveStep::Done).is_err(),
        "no finishing before the switch"
    );
    assert!(
        step(&store, "a", MoveStep::Switched).is_err(),
        "the switch has its own command"
    );
    assert_eq!(member_of(&store, "c1"), "m1");

    store
        .execute(&Command::SwitchMoveOwner {
            id: "a".into(),
            now: "2026-01-01T00:00:02Z".into(),
        })
        .unwrap();
    assert_eq!(member_of(&store, "c1"), "m2");
    let rec = store.read(|c| db::moves::get(c, "a")).unwrap().unwrap();
    assert_eq!(rec.step, MoveStep::Switched);
    assert!(
        step(&store, "a", MoveStep::Aborted).is_err(),
        "no abort after the switch"
    );
    step(&store, "a", MoveStep::TargetStarted).unwrap();
    step(&store, "a", MoveStep::Done).unwrap();
    assert!(store.read(db::moves::unfinished).unwrap().is_empty());

    // Done: the instance may move again.
    store
        .execute(&Command::CreateMove(move_of("d", "c1", "m2", "m3")))
        .unwrap();
}

#[test]
fn an_abort_fences_the_switch_out() {
    let store = moving_c1();
    step(&store, "a", MoveStep::Aborted).unwrap();
    let switch = store.execute(&Command::SwitchMoveOwner {
        id: "a".into(),
        now: "2026-01-01T00:00:02Z".into(),
    });
    assert!(matches!(switch, Err(Error::Refused(_))), "{switch:?}");
    assert_eq!(member_of(&store, "c1"), "m1");
    assert!(step(&store, "a", MoveStep::Synced).is_err());
    let unfinished = store.read(db::moves::unfinished).unwrap();
    assert_eq!(unfinished.len(), 1, "aborted is not finished yet");
    step(&store, "a", MoveStep::Failed).unwrap();
    assert!(store.read(db::moves::unfinished).unwrap().is_empty());
}
