//! Helpers shared by the db integration tests: a plain instance record, a created member
//! and a started move, so each test file states only what it is about.
// Each test binary uses a subset of these helpers.
#![allow(dead_code, clippy::unwrap_used)]

use api::MemberState;
use db::instances::InstanceRecord;
use db::moves::{MoveRecord, MoveStep};
use db::{Command, Store};

/// A stopped container `name` of project `default` on `member`, with the `default`
/// profile and no config or devices.
pub fn instance(name: &str, member: &str) -> InstanceRecord {
    InstanceRecord {
        project: "default".into(),
        name: name.into(),
        kind: "container".into(),
        member: member.into(),
        architecture: "x86_64".into(),
        config: Default::default(),
        devices: Default::default(),
        profiles: vec!["default".into()],
        ephemeral: false,
        description: String::new(),
        created_at: "2026-01-01T00:00:00Z".into(),
        last_used_at: "1970-01-01T00:00:00Z".into(),
    }
}

/// Records member `name` (no address, state Created, x86_64) in `store`.
pub fn create_member(store: &Store, name: &str) {
    store
        .execute(&Command::CreateMember {
            name: name.into(),
            address: String::new(),
            state: MemberState::Created,
            architecture: "x86_64".into(),
        })
        .unwrap();
}

/// A started move `id` of running `name` (project `default`, pool `default`, data copied)
/// from `source` to `target`.
pub fn move_of(id: &str, name: &str, source: &str, target: &str) -> MoveRecord {
    MoveRecord {
        id: id.into(),
        project: "default".into(),
        instance: name.into(),
        source: source.into(),
        target: target.into(),
        pool: "default".into(),
        copy_data: true,
        was_running: true,
        step: MoveStep::Started,
        error: String::new(),
        created_at: "2026-01-01T00:00:00Z".into(),
        updated_at: "2026-01-01T00:00:00Z".into(),
    }
}
