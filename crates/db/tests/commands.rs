//! What does this test do?
//! - opens a DB file, applies the schema, reopens it (updates run once)
//! - applies each kind of command and reads it back through the typed queries
//! - shows that duplicate names and missing rows are typed errors that change nothing
#![allow(clippy::unwrap_used)]

use api::MemberState;
use db::instances::InstanceRecord;
use db::{Command, Error, Store};

mod common;

fn instance(name: &str) -> InstanceRecord {
    InstanceRecord {
        config: [("limits.memory".to_string(), "64MiB".to_string())].into(),
        ..common::instance(name, "none")
    }
}

#[test]
fn schema_updates_apply_once_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    {
        let store = Store::open(&path).unwrap();
        store
            .execute(&Command::CreateMember {
                name: "m1".into(),
                address: String::new(),
                state: MemberState::Created,
                architecture: "x86_64".into(),
            })
            .unwrap();
    }
    let store = Store::open(&path).unwrap();
    let members = store.read(db::members::list).unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].state, MemberState::Created);
}

#[test]
fn instance_commands_round_trip_and_fail_cleanly() {
    let store = Store::in_memory().unwrap();
    store
        .execute(&Command::CreateInstance(instance("c1")))
        .unwrap();

    let dup = store.execute(&Command::CreateInstance(instance("c1")));
    assert!(matches!(dup, Err(Error::Exists(_))), "{dup:?}");

    store
        .execute(&Command::PatchInstanceConfig {
            project: "default".into(),
            name: "c1".into(),
            changes: [
                (
                    "volatile.last_state.power".to_string(),
                    Some("RUNNING".to_string()),
                ),
                ("limits.memory".to_string(), None),
            ]
            .into(),
            last_used_at: Some("2026-01-02T00:00:00Z".into()),
        })
        .unwrap();
    let got = store
        .read(|c| db::instances::get(c, "default", "c1"))
        .unwrap()
        .unwrap();
    assert_eq!(
        got.config
            .get("volatile.last_state.power")
            .map(String::as_str),
        Some("RUNNING")
    );
    assert!(!got.config.contains_key("limits.memory"));
    assert_eq!(got.last_used_at, "2026-01-02T00:00:00Z");

    store
        .execute(&Command::CreateInstance(instance("c2")))
        .unwrap();
    let clash = store.execute(&Command::RenameInstance {
        project: "default".into(),
        name: "c1".into(),
        new_name: "c2".into(),
    });
    assert!(matches!(clash, Err(Error::Exists(_))), "{clash:?}");
    assert!(
        store
            .read(|c| db::instances::get(c, "default", "c1"))
            .unwrap()
            .is_some()
    );

    let missing = store.execute(&Command::DeleteInstance {
        project: "default".into(),
        name: "nope".into(),
    });
    assert!(matches!(missing, Err(Error::NotFound(_))), "{missing:?}");
    assert_eq!(
        store
            .read(|c| db::instances::list(c, "default"))
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn commands_serialize_with_a_tag() {
    let cmd = Command::SetMemberState {
        name: "m1".into(),
        state: MemberState::Evacuating,
    };
    let text = serde_json::to_string(&cmd).unwrap();
    assert_eq!(
        text,
        r#"{"command":"set_member_state","name":"m1","state":"evacuating"}"#
    );
    let back: Command = serde_json::from_str(&text).unwrap();
    assert_eq!(back, cmd);
}

fn certificate(fingerprint: &str, name: &str) -> db::certificates::CertificateRecord {
    db::certificates::CertificateRecord {
        fingerprint: fingerprint.into(),
        kind: "client".into(),
        name: name.into(),
        certificate: "-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n".into(),
        restricted: false,
        projects: vec![],
    }
}

/// The trust store: add, find by full fingerprint and by prefix, refuse duplicates and
/// ambiguous prefixes, remove.
#[test]
fn certificate_commands_round_trip_and_fail_cleanly() {
    let store = Store::in_memory().unwrap();
    store
        .execute(&Command::CreateCertificate(certificate("abcd01", "laptop")))
        .unwrap();
    store
        .execute(&Command::CreateCertificate(certificate("abce02", "ci")))
        .unwrap();

    let dup = store.execute(&Command::CreateCertificate(certificate("abcd01", "again")));
    assert!(matches!(dup, Err(Error::Exists(_))), "{dup:?}");
    assert_eq!(store.read(db::certificates::list).unwrap().len(), 2);

    let got = store
        .read(|c| db::certificates::get(c, "abcd01"))
        .unwrap()
        .unwrap();
    assert_eq!(got, certificate("abcd01", "laptop"));
    assert!(
        store
            .read(|c| db::certificates::get(c, "abcd"))
            .unwrap()
            .is_none(),
        "get wants the whole fingerprint"
    );
    let by_prefix = store
        .read(|c| db::certificates::get_by_prefix(c, "abcd"))
        .unwrap();
    assert_eq!(by_prefix.name, "laptop");
    let ambiguous = store.read(|c| db::certificates::get_by_prefix(c, "abc"));
    assert!(matches!(ambiguous, Err(Error::Exists(_))), "{ambiguous:?}");
    let wildcard = store.read(|c| db::certificates::get_by_prefix(c, "%"));
    assert!(
        matches!(wildcard, Err(Error::Exists(_)) | Err(Error::NotFound(_))),
        "{wildcard:?}"
    );

    store
        .execute(&Command::DeleteCertificate {
            fingerprint: "abcd01".into(),
        })
        .unwrap();
    let gone = store.execute(&Command::DeleteCertificate {
        fingerprint: "abcd01".into(),
    });
    assert!(matches!(gone, Err(Error::NotFound(_))), "{gone:?}");
    assert_eq!(store.read(db::certificates::list).unwrap().len(), 1);
}
