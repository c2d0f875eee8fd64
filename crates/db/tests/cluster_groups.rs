//! What does this test do?
//! - every member starts in the `default` cluster group, whether it is the first one or
//!   joins later
//! - groups are created with members, updated, renamed and deleted; `default` cannot be
//!   renamed or deleted, a group with members cannot be deleted, unknown members or groups
//!   are refused and change nothing
//! - a member's description, failure domain, config and groups are replaced together
//! - a member is removed with its group memberships; one with instances only with force,
//!   which forgets its instances; its id is never handed out again
//! - a member's report (schema, API extensions, memory, CPUs) lands in its row
//! - a schema update command up to the current version changes nothing; one beyond it
//!   fails as the environment does (the member stops rather than diverge)
#![allow(clippy::unwrap_used)]

use db::cluster_tokens::ClusterTokenRecord;
use db::{Command, Error, Store};

mod common;

fn store_with(names: &[&str]) -> Store {
    let store = Store::in_memory().unwrap();
    common::create_member(&store, names[0]);
    for name in &names[1..] {
        store
            .execute(&Command::CreateClusterToken(ClusterTokenRecord {
                secret: format!("s-{name}"),
                name: (*name).into(),
                operation: "op".into(),
                expires_at: "2099-01-01T00:00:00.000000000Z".into(),
            }))
            .unwrap();
        store
            .execute(&Command::JoinMember {
                secret: format!("s-{name}"),
                name: (*name).into(),
                address: format!("{name}:8443"),
                fingerprint: format!("fp-{name}"),
                architecture: "x86_64".into(),
                now: "2026-01-01T00:00:00.000000000Z".into(),
            })
            .unwrap();
    }
    store
}

fn groups(store: &Store) -> Vec<(String, Vec<String>)> {
    store
        .read(db::cluster_groups::list)
        .unwrap()
        .into_iter()
        .map(|g| (g.name, g.members))
        .collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn groups_hold_members_and_default_holds_everyone() {
    let store = store_with(&["m1", "m2", "m3"]);
    assert_eq!(
        groups(&store),
        vec![("default".into(), strings(&["m1", "m2", "m3"]))]
    );

    let create = |name: &str, members: &[&str]| Command::CreateClusterGroup {
        name: name.into(),
        description: format!("{name} members"),
        members: strings(members),
    };
    store.execute(&create("fast", &["m2"])).unwrap();
    assert!(matches!(
        store.execute(&create("fast", &[])),
        Err(Error::Exists(_))
    ));
    assert!(matches!(
        store.execute(&create("ghost", &["m9"])),
        Err(Error::NotFound(_))
    ));
    assert!(
        store
            .read(|c| db::cluster_groups::get(c, "ghost"))
            .unwrap()
            .is_none()
    );

    store
        .execute(&Command::UpdateClusterGroup {
            name: "fast".into(),
            description: "new".into(),
            members: strings(&["m2", "m3"]),
        })
        .unwrap();
    let fast = store
        .read(|c| db::cluster_groups::get(c, "fast"))
        .unwrap()
        .unwrap();
    assert_eq!(fast.description, "new");
    assert_eq!(fast.members, strings(&["m2", "m3"]));

    for refused in [
        Command::RenameClusterGroup {
            name: "default".into(),
            new_name: "x".into(),
        },
        Command::DeleteClusterGroup {
            name: "default".into(),
        },
        Command::DeleteClusterGroup {
            name: "fast".into(),
        },
    ] {
        assert!(
            matches!(store.execute(&refused), Err(Error::Refused(_))),
            "{refused:?}"
        );
    }
    store
        .execute(&Command::RenameClusterGroup {
            name: "fast".into(),
            new_name: "quick".into(),
        })
        .unwrap();
    let by_member = store.read(db::members::groups).unwrap();
    assert_eq!(by_member[&2], strings(&["default", "quick"]));

    member_update_replaces_fields(&store);

    store
        .execute(&Command::UpdateClusterGroup {
            name: "quick".into(),
            description: String::new(),
            members: Vec::new(),
        })
        .unwrap();
    // m2 left `default` in `member_update_replaces_fields`; it is in `quick` no more either.
    store
        .execute(&Command::DeleteClusterGroup {
            name: "quick".into(),
        })
        .unwrap();
    assert_eq!(
        groups(&store),
        vec![("default".into(), strings(&["m1", "m3"]))]
    );
}

/// A member's editable fields change together; an unknown group changes nothing.
fn member_update_replaces_fields(store: &Store) {
    let update = |groups: &[&str]| Command::UpdateMember {
        name: "m2".into(),
        description: "the fast one".into(),
        failure_domain: "rack2".into(),
        config: [("scheduler.instance".to_string(), "group".to_string())].into(),
        groups: strings(groups),
    };
    assert!(matches!(
        store.execute(&update(&["quick", "nope"])),
        Err(Error::NotFound(_))
    ));
    let m2 = store.read(|c| db::members::get(c, "m2")).unwrap().unwrap();
    assert_eq!(m2.description, "");
    store.execute(&update(&["quick"])).unwrap();
    let m2 = store.read(|c| db::members::get(c, "m2")).unwrap().unwrap();
    assert_eq!(
        (m2.description.as_str(), m2.failure_domain.as_str()),
        ("the fast one", "rack2")
    );
    assert_eq!(m2.config["scheduler.instance"], "group");
    assert_eq!(
        store.read(db::members::groups).unwrap()[&2],
        strings(&["quick"])
    );
}

fn instance(name: &str, member: &str) -> Command {
    Command::CreateInstance(common::instance(name, member))
}

#[test]
fn removing_a_member_needs_force_while_it_has_instances() {
    let store = store_with(&["m1", "m2", "m3"]);
    store.execute(&instance("c1", "m3")).unwrap();
    store.execute(&instance("c2", "m3")).unwrap();
    store.execute(&instance("c3", "m1")).unwrap();

    let err = store
        .execute(&Command::RemoveMember {
            name: "m3".into(),
            force: false,
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Node still has the following containers: c1, c2"
    );
    assert!(store.read(|c| db::members::get(c, "m3")).unwrap().is_some());

    store
        .execute(&Command::RemoveMember {
            name: "m2".into(),
            force: false,
        })
        .unwrap();
    store
        .execute(&Command::RemoveMember {
            name: "m3".into(),
            force: true,
        })
        .unwrap();
    let names: Vec<String> = store
        .read(db::members::list)
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, strings(&["m1"]));
    let left: Vec<String> = store
        .read(|c| db::instances::list(c, "default"))
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(left, strings(&["c3"]));
    assert_eq!(groups(&store), vec![("default".into(), strings(&["m1"]))]);
    assert!(matches!(
        store.execute(&Command::RemoveMember {
            name: "m3".into(),
            force: true,
        }),
        Err(Error::NotFound(_))
    ));

    // The next member gets a fresh id, not m3's.
    let again = store_with(&["m1", "m2", "m3"]);
    again
        .execute(&Command::RemoveMember {
            name: "m3".into(),
            force: false,
        })
        .unwrap();
    again
        .execute(&Command::CreateClusterToken(ClusterTokenRecord {
            secret: "s4".into(),
            name: "m4".into(),
            operation: "op".into(),
            expires_at: "2099-01-01T00:00:00.000000000Z".into(),
        }))
        .unwrap();
    again
        .execute(&Command::JoinMember {
            secret: "s4".into(),
            name: "m4".into(),
            address: "m4:8443".into(),
            fingerprint: "fp-m4".into(),
            architecture: "x86_64".into(),
            now: "2026-01-01T00:00:00.000000000Z".into(),
        })
        .unwrap();
    let m4 = again.read(|c| db::members::get(c, "m4")).unwrap().unwrap();
    assert_eq!(m4.id, 4);
}

#[test]
fn reports_and_schema_updates() {
    let store = store_with(&["m1"]);
    store
        .execute(&Command::ReportMember {
            id: 1,
            schema: db::SCHEMA_VERSION,
            api_extensions: 22,
            memory: 8 << 30,
            cpus: 4,
        })
        .unwrap();
    let m1 = store.read(|c| db::members::get(c, "m1")).unwrap().unwrap();
    assert_eq!(
        (m1.schema, m1.api_extensions, m1.memory, m1.cpus),
        (db::SCHEMA_VERSION, 22, 8 << 30, 4)
    );
    assert!(matches!(
        store.execute(&Command::ReportMember {
            id: 9,
            schema: 1,
            api_extensions: 1,
            memory: 1,
            cpus: 1,
        }),
        Err(Error::NotFound(_))
    ));

    store
        .execute(&Command::UpdateSchema {
            version: db::SCHEMA_VERSION,
        })
        .unwrap();
    assert_eq!(store.read(db::schema_version).unwrap(), db::SCHEMA_VERSION);
    let err = store
        .execute(&Command::UpdateSchema {
            version: db::SCHEMA_VERSION + 1,
        })
        .unwrap_err();
    assert!(!err.is_deterministic(), "{err}");
    assert_eq!(store.read(db::schema_version).unwrap(), db::SCHEMA_VERSION);
}
