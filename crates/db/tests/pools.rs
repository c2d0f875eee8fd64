//! What does this test do?
//! - defines a pool on two members with `?target=` (pending, each with its own source),
//!   refuses a second definition on one member, then finishes it: created everywhere
//! - a pool created directly has no pending phase; a member that joins later records its
//!   own source with SetPoolMember
//! - volume rows follow their instance: renamed, moved by the move's switch, deleted
#![allow(clippy::unwrap_used)]

use db::moves::MoveRecord;
use db::pools::PoolState;
use db::volumes::VolumeRecord;
use db::{Command, Error, Store};

mod common;
use common::instance;

fn source(s: &str) -> api::ConfigMap {
    [("source".to_string(), s.to_string())].into()
}

fn define(store: &Store, member: &str, src: &str) -> db::Result<()> {
    store.execute(&Command::DefinePoolMember {
        name: "p1".into(),
        driver: "dir".into(),
        description: String::new(),
        member: member.into(),
        config: source(src),
    })
}

#[test]
fn a_pool_is_pending_per_member_then_created_everywhere() {
    let store = Store::in_memory().unwrap();
    // --- define on m1 and m2
    define(&store, "m1", "/a").unwrap();
    define(&store, "m2", "/b").unwrap();
    let e = define(&store, "m1", "/c").unwrap_err();
    assert!(
        matches!(e, Error::Refused(ref m) if m.contains("already defined on member")),
        "{e}"
    );
    let p = store.read(|c| db::pools::get(c, "p1")).unwrap().unwrap();
    assert_eq!(p.state, PoolState::Pending);
    assert_eq!(p.source_on("m1"), Some("/a"));
    assert_eq!(p.source_on("m2"), Some("/b"));
    assert_eq!(p.source_on("m3"), None);

    // --- finish
    store
        .execute(&Command::FinishPool {
            name: "p1".into(),
            description: "d".into(),
            config: [("user.x".to_string(), "1".to_string())].into(),
            state: PoolState::Created,
        })
        .unwrap();
    let p = store.read(|c| db::pools::get(c, "p1")).unwrap().unwrap();
    assert_eq!(p.state, PoolState::Created);
    assert!(p.members.values().all(|m| m.state == PoolState::Created));
    assert_eq!(
        (
            p.description.as_str(),
            p.config.get("user.x").map(String::as_str)
        ),
        ("d", Some("1"))
    );
    let e = define(&store, "m3", "/c").unwrap_err();
    assert!(
        matches!(e, Error::Refused(ref m) if m.contains("already created")),
        "{e}"
    );

    // --- a direct pool, and a member joining later
    store
        .execute(&Command::CreatePool {
            name: "default".into(),
            driver: "dir".into(),
            description: String::new(),
            config: source("/m1/default"),
        })
        .unwrap();
    store
        .execute(&Command::SetPoolMember {
            name: "default".into(),
            member: "m2".into(),
            config: source("/m2/default"),
            state: PoolState::Created,
        })
        .unwrap();
    let p = store
        .read(|c| db::pools::get(c, "default"))
        .unwrap()
        .unwrap();
    assert_eq!(p.state, PoolState::Created);
    assert_eq!(p.source_on("m1"), Some("/m1/default"));
    assert_eq!(p.source_on("m2"), Some("/m2/default"));
    let e = store
        .execute(&Command::SetPoolMember {
            name: "nope".into(),
            member: "m2".into(),
            config: source("/x"),
            state: PoolState::Created,
        })
        .unwrap_err();
    assert!(matches!(e, Error::NotFound(_)), "{e}");
}

fn volumes(store: &Store) -> Vec<(String, String, u64)> {
    store
        .read(|c| db::volumes::list(c, "default"))
        .unwrap()
        .into_iter()
        .map(|v| (v.name, v.member, v.size))
        .collect()
}

#[test]
fn volume_rows_follow_their_instance() {
    let store = Store::in_memory().unwrap();
    store
        .execute(&Command::CreateInstance(instance("c1", "m1")))
        .unwrap();
    store
        .execute(&Command::UpsertVolume(VolumeRecord {
            pool: "default".into(),
            project: "default".into(),
            name: "c1".into(),
            kind: "container".into(),
            member: "m1".into(),
            size: 4096,
        }))
        .unwrap();
    assert_eq!(volumes(&store), vec![("c1".into(), "m1".into(), 4096)]);

    // --- rename
    store
        .execute(&Command::RenameInstance {
            project: "default".into(),
            name: "c1".into(),
            new_name: "c2".into(),
        })
        .unwrap();
    assert_eq!(volumes(&store), vec![("c2".into(), "m1".into(), 4096)]);
    let v = store
        .read(|c| db::volumes::of_instance(c, "default", "c2"))
        .unwrap();
    assert_eq!(v.map(|v| v.pool), Some("default".into()));

    // --- a move's switch moves the volume too
    store
        .execute(&Command::CreateMove(MoveRecord {
            was_running: false,
            ..common::move_of("mv", "c2", "m1", "m2")
        }))
        .unwrap();
    store
        .execute(&Command::SwitchMoveOwner {
            id: "mv".into(),
            now: "2026-01-01T00:00:01Z".into(),
        })
        .unwrap();
    assert_eq!(volumes(&store), vec![("c2".into(), "m2".into(), 4096)]);

    // --- delete
    store
        .execute(&Command::DeleteInstance {
            project: "default".into(),
            name: "c2".into(),
        })
        .unwrap();
    assert!(volumes(&store).is_empty());
}
