//! What does this test do?
//! - enables clustering on a standalone member: it and its instances are renamed
//! - a join token admits exactly one member, under a new id, and is used up
//! - expired, unknown and wrongly named tokens are refused and change nothing
//! - member ids are never reused
#![allow(clippy::unwrap_used)]

use api::MemberState;
use db::cluster_tokens::ClusterTokenRecord;
use db::{Command, Error, Store};

fn token(secret: &str, name: &str, expires_at: &str) -> Command {
    Command::CreateClusterToken(ClusterTokenRecord {
        secret: secret.into(),
        name: name.into(),
        operation: format!("op-{secret}"),
        expires_at: expires_at.into(),
    })
}

fn join(secret: &str, name: &str, now: &str) -> Command {
    Command::JoinMember {
        secret: secret.into(),
        name: name.into(),
        address: format!("{name}:8443"),
        fingerprint: format!("fp-{name}"),
        architecture: "x86_64".into(),
        now: now.into(),
    }
}

#[test]
fn tokens_admit_one_member_each_under_ids_never_reused() {
    let store = Store::in_memory().unwrap();
    store
        .execute(&Command::CreateMember {
            name: "none".into(),
            address: String::new(),
            state: MemberState::Created,
            architecture: "x86_64".into(),
        })
        .unwrap();
    store
        .execute(&Command::EnableClustering {
            from: "none".into(),
            name: "m1".into(),
            address: "127.0.0.11:8443".into(),
            fingerprint: "fp-m1".into(),
        })
        .unwrap();
    let m1 = store.read(|c| db::members::get(c, "m1")).unwrap().unwrap();
    assert_eq!((m1.id, m1.fingerprint.as_str()), (1, "fp-m1"));

    let now = "2026-01-01T00:00:00.000000000Z";
    store
        .execute(&token("s2", "m2", "2026-01-01T03:00:00.000000000Z"))
        .unwrap();
    store
        .execute(&token("old", "m3", "2025-12-31T00:00:00.000000000Z"))
        .unwrap();

    // Refusals change nothing.
    assert!(matches!(
        store.execute(&join("nope", "m2", now)),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store.execute(&join("s2", "m9", now)),
        Err(Error::Refused(_))
    ));
    assert!(matches!(
        store.execute(&join("old", "m3", now)),
        Err(Error::Refused(_))
    ));
    assert_eq!(store.read(db::members::list).unwrap().len(), 1);
    assert_eq!(store.read(db::cluster_tokens::list).unwrap().len(), 2);

    store.execute(&join("s2", "m2", now)).unwrap();
    let m2 = store.read(|c| db::members::get(c, "m2")).unwrap().unwrap();
    assert_eq!(m2.id, 2);
    assert!(
        store
            .read(|c| db::cluster_tokens::get(c, "s2"))
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        store.execute(&join("s2", "m2", now)),
        Err(Error::NotFound(_))
    ));

    // A revoked token is gone; the next member gets the next id.
    store
        .execute(&Command::DeleteClusterToken {
            secret: "old".into(),
        })
        .unwrap();
    store
        .execute(&token("s3", "m3", "2026-01-01T03:00:00.000000000Z"))
        .unwrap();
    store.execute(&join("s3", "m3", now)).unwrap();
    let m3 = store.read(|c| db::members::get(c, "m3")).unwrap().unwrap();
    assert_eq!(m3.id, 3);
}
