//! Every replicated write, as one enum. Variants are append-only.

use api::{ConfigMap, DeviceMap, MemberState};
use rusqlite::{Transaction, params};
use serde::{Deserialize, Serialize};

use crate::certificates::CertificateRecord;
use crate::cluster_tokens::ClusterTokenRecord;
use crate::images::ImageRecord;
use crate::instances::InstanceRecord;
use crate::moves::{MoveRecord, MoveStep};
use crate::{Error, Result};

/// A write to the cluster DB. The proposer fills in every time and id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Add a member.
    CreateMember {
        /// Member name (`"m1"`).
        name: String,
        /// Cluster address (`""` when not clustered).
        address: String,
        /// Initial state.
        state: MemberState,
        /// `"x86_64"`.
        architecture: String,
    },
    /// Change a member's state.
    SetMemberState {
        /// Member name.
        name: String,
        /// New state.
        state: MemberState,
    },
    /// Set (`Some`) or unset (`None`) server config keys.
    SetConfig {
        /// key → new value or removal.
        changes: std::collections::BTreeMap<String, Option<String>>,
    },
    /// Define a storage pool.
    CreatePool {
        /// Pool name.
        name: String,
        /// `"dir"`.
        driver: String,
        /// Free text.
        description: String,
        /// Pool config (`source`).
        config: ConfigMap,
    },
    /// Create a profile.
    CreateProfile {
        /// `"default"`.
        project: String,
        /// Profile name.
        name: String,
        /// Free text.
        description: String,
        /// Config.
        config: ConfigMap,
        /// Devices.
        devices: DeviceMap,
    },
    /// Replace a profile's description, config and devices.
    UpdateProfile {
        /// `"default"`.
        project: String,
        /// Profile name.
        name: String,
        /// Free text.
        description: String,
        /// Config.
        config: ConfigMap,
        /// Devices.
        devices: DeviceMap,
    },
    /// Record an imported image.
    CreateImage(ImageRecord),
    /// Forget an image (its aliases go with it).
    DeleteImage {
        /// Fingerprint.
        fingerprint: String,
    },
    /// Point an alias at an image.
    CreateImageAlias {
        /// Alias.
        name: String,
        /// Fingerprint.
        fingerprint: String,
        /// Free text.
        description: String,
    },
    /// Remove an alias.
    DeleteImageAlias {
        /// Alias.
        name: String,
    },
    /// Record a new instance.
    CreateInstance(InstanceRecord),
    /// Replace an instance's user-editable fields.
    UpdateInstance {
        /// Project.
        project: String,
        /// Name.
        name: String,
        /// Local config.
        config: ConfigMap,
        /// Local devices.
        devices: DeviceMap,
        /// Profiles.
        profiles: Vec<String>,
        /// Deleted when stopped.
        ephemeral: bool,
        /// Free text.
        description: String,
    },
    /// Set or unset some config keys of an instance (`volatile.*` bookkeeping), leaving the
    /// others alone.
    PatchInstanceConfig {
        /// Project.
        project: String,
        /// Name.
        name: String,
        /// key → new value or removal.
        changes: std::collections::BTreeMap<String, Option<String>>,
        /// New `last_used_at`, when it changes.
        last_used_at: Option<String>,
    },
    /// Rename an instance.
    RenameInstance {
        /// Project.
        project: String,
        /// Current name.
        name: String,
        /// New name.
        new_name: String,
    },
    /// Forget an instance.
    DeleteInstance {
        /// Project.
        project: String,
        /// Name.
        name: String,
    },
    /// Add a certificate to the trust store.
    CreateCertificate(CertificateRecord),
    /// Remove a certificate from the trust store.
    DeleteCertificate {
        /// Full fingerprint (64 hex characters).
        fingerprint: String,
    },
    /// Turn the standalone member into the first member of a cluster: rename it (its
    /// instances and their volumes follow) and record its cluster address and certificate
    /// fingerprint.
    EnableClustering {
        /// Its name until now (`"none"`).
        from: String,
        /// Its member name from now on (`"m1"`).
        name: String,
        /// Its cluster address (`"127.0.0.11:8443"`).
        address: String,
        /// Fingerprint of its own certificate.
        fingerprint: String,
    },
    /// Record a join token.
    CreateClusterToken(ClusterTokenRecord),
    /// Revoke a join token.
    DeleteClusterToken {
        /// Its secret.
        secret: String,
    },
    /// Use up the join token `secret` and record the new member under the next never-used
    /// member id (read it back by name). Refused, changing nothing, when the token is
    /// unknown, made for another name, or expired at `now`.
    JoinMember {
        /// The token's secret.
        secret: String,
        /// The new member's name (must be the token's).
        name: String,
        /// Its cluster address.
        address: String,
        /// Fingerprint of its own certificate.
        fingerprint: String,
        /// `"x86_64"`.
        architecture: String,
        /// The proposer's clock, RFC 3339 UTC with nanoseconds.
        now: String,
    },
    /// Record what member `id` reports of itself at start-up or join: its binary's schema
    /// version and API extension count, its memory and CPUs.
    ReportMember {
        /// Member id.
        id: i64,
        /// [`crate::SCHEMA_VERSION`] of its binary.
        schema: i64,
        /// How many API extensions its binary has.
        api_extensions: i64,
        /// Memory in bytes.
        memory: i64,
        /// CPU count.
        cpus: i64,
    },
    /// Replace a member's editable fields (LXD's `PUT /1.0/cluster/members/{name}`).
    /// Refused, changing nothing, when a group does not exist.
    UpdateMember {
        /// Member name.
        name: String,
        /// Free text.
        description: String,
        /// Failure domain (`"default"`).
        failure_domain: String,
        /// Member config.
        config: ConfigMap,
        /// Its cluster groups (all must exist).
        groups: Vec<String>,
    },
    /// Create a cluster group with these members (all must exist).
    CreateClusterGroup {
        /// Name.
        name: String,
        /// Free text.
        description: String,
        /// Member names.
        members: Vec<String>,
    },
    /// Replace a cluster group's description and members.
    UpdateClusterGroup {
        /// Name.
        name: String,
        /// Free text.
        description: String,
        /// Member names (all must exist).
        members: Vec<String>,
    },
    /// Rename a cluster group (not `default`).
    RenameClusterGroup {
        /// Current name.
        name: String,
        /// New name.
        new_name: String,
    },
    /// Delete a cluster group (not `default`; refused while it has members).
    DeleteClusterGroup {
        /// Name.
        name: String,
    },
    /// Remove a member from the cluster: its row and group memberships. Refused while
    /// instances are recorded on it, unless `force`, which forgets them too.
    RemoveMember {
        /// Member name.
        name: String,
        /// Forget its instances instead of refusing.
        force: bool,
    },
    /// Bring the DB schema to `version` (the updates it lacks), at this log index on every
    /// member. A member whose binary does not know `version` stops applying the log.
    UpdateSchema {
        /// Target schema version.
        version: i64,
    },
    /// Journal a new move of an instance to another member. Refused when the instance is
    /// not on the move's source or already has an unfinished move.
    CreateMove(MoveRecord),
    /// Record that a move reached a step (never the switch, never backwards).
    SetMoveStep {
        /// Move id.
        id: String,
        /// The step reached.
        step: MoveStep,
        /// Why it failed (`""` unless `step` is failed).
        error: String,
        /// The proposer's clock, RFC 3339.
        now: String,
    },
    /// Hand a moving instance to its target: its `member` and the move's step change
    /// together. Refused unless the instance is still on the move's source.
    SwitchMoveOwner {
        /// Move id.
        id: String,
        /// The proposer's clock, RFC 3339.
        now: String,
    },
    /// Start evacuating or restoring `member`: its plan replaces any earlier one, the member
    /// becomes evacuating or restoring, and (evacuate) each planned instance records its
    /// `volatile.last_state.power` and, when it moves and has none, its
    /// `volatile.evacuate.origin`. Refused, changing nothing, when the member is already
    /// evacuated / restored or another member's evacuation or restore is in progress
    /// (LXD's messages).
    BeginEvacuation {
        /// The member.
        member: String,
        /// Evacuate or restore.
        kind: crate::evacuations::EvacuationKind,
        /// The operation running it.
        operation: String,
        /// The plan, one entry per instance.
        entries: Vec<api::evacuation::PlanEntry>,
    },
    /// Record how far one instance of a member's plan has got.
    SetEvacuationStep {
        /// The member evacuated or restored.
        member: String,
        /// Project.
        project: String,
        /// Instance.
        instance: String,
        /// The step reached.
        step: api::evacuation::PlanStep,
        /// Bytes sent so far.
        bytes: u64,
        /// Why it failed (`""` unless `step` is failed).
        error: String,
    },
    /// End an evacuation or restore: the member's final state; the rows of a restore that
    /// finished (`created`) go.
    FinishEvacuation {
        /// The member.
        member: String,
        /// Evacuate or restore.
        kind: crate::evacuations::EvacuationKind,
        /// `evacuated` (or stays `evacuating`), `created`.
        state: MemberState,
    },
    /// Define storage pool `name` on `member` with that member's own config (LXD's
    /// `POST /1.0/storage-pools?target=`): the pool is created pending if new. Refused when
    /// the pool is created already, has another driver, or is defined on `member` already.
    DefinePoolMember {
        /// Pool name.
        name: String,
        /// `"dir"` or `"shared-fs"`.
        driver: String,
        /// Free text (used when the pool is new).
        description: String,
        /// The member.
        member: String,
        /// Its member-specific config (`source`).
        config: ConfigMap,
    },
    /// Set `member`'s own config and state of pool `name` (a member that joined after the
    /// pool was created records where its part lives).
    SetPoolMember {
        /// Pool name.
        name: String,
        /// The member.
        member: String,
        /// Its member-specific config (`source`).
        config: ConfigMap,
        /// Its state.
        state: crate::pools::PoolState,
    },
    /// Finish creating pending pool `name`: its global config and description, and its
    /// state (created, or errored when a member failed) for it and all its member rows.
    FinishPool {
        /// Pool name.
        name: String,
        /// Free text.
        description: String,
        /// Global config.
        config: ConfigMap,
        /// Created or errored.
        state: crate::pools::PoolState,
    },
    /// Record (or update) a volume: its pool, member and size.
    UpsertVolume(crate::volumes::VolumeRecord),
    /// Forget a volume.
    DeleteVolume {
        /// Pool name.
        pool: String,
        /// Project.
        project: String,
        /// Volume name.
        name: String,
        /// `"container"`.
        kind: String,
    },
    /// Delete profile `name` of `project` (refused while an instance uses it).
    DeleteProfile {
        /// Project.
        project: String,
        /// Profile name.
        name: String,
    },
    /// Rename profile `name` of `project` to `new_name`, in the instances using it too.
    RenameProfile {
        /// Project.
        project: String,
        /// Current name.
        name: String,
        /// New name.
        new_name: String,
    },
    /// Delete storage pool `name` with every member's part (refused while it has volumes).
    DeletePool {
        /// Pool name.
        name: String,
    },
    /// Replace the description and global config of created storage pool `name`.
    UpdatePool {
        /// Pool name.
        name: String,
        /// Free text.
        description: String,
        /// Global config (`user.*`; a `shared-fs` pool's `source`).
        config: ConfigMap,
    },
    /// Record a new decision for one instance of a member's evacuation, made after its move
    /// failed: where it goes now (a restore brings it back from there), or that it stays.
    ReplanEvacuationEntry {
        /// The member evacuated.
        member: String,
        /// Project.
        project: String,
        /// Instance.
        instance: String,
        /// The new action.
        action: api::evacuation::PlanAction,
        /// The new target (`""` when it stays).
        target: String,
        /// Why.
        reason: String,
    },
    /// Add to a member's evacuation plan the instances that landed on it after the plan
    /// was made (a create or move-in already under way then): their rows, and on each
    /// instance its `volatile.last_state.power` and, when it moves and has none, its
    /// `volatile.evacuate.origin`. Instances already in the plan are left as they are.
    AddEvacuationEntries {
        /// The member evacuated.
        member: String,
        /// The operation running the evacuation.
        operation: String,
        /// The new entries.
        entries: Vec<api::evacuation::PlanEntry>,
    },
}

impl Command {
    /// Whether applying this command changes instance rows and nothing else, so that it
    /// leaves [`crate::Store::config_generation`] where it is: the bookkeeping of starts
    /// and stops (`volatile.last_state.power`, `last_used_at`), written on every one.
    pub fn changes_instances_only(&self) -> bool {
        matches!(self, Command::PatchInstanceConfig { .. })
    }
}

fn json<T: Serialize>(v: &T) -> Result<String> {
    Ok(serde_json::to_string(v)?)
}

fn expect_one(n: usize, what: impl FnOnce() -> String) -> Result<()> {
    if n == 0 {
        Err(Error::NotFound(what()))
    } else {
        Ok(())
    }
}

fn map_unique(e: rusqlite::Error, what: impl FnOnce() -> String) -> Error {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Error::Exists(what())
        }
        e => Error::Sqlite(e),
    }
}

/// Applies `cmd` inside `tx`.
///
/// # Correctness
///
/// Deterministic: the same command on the same DB state gives the same result on every
/// member. Reads nothing but `tx`.
pub fn apply(tx: &Transaction<'_>, cmd: &Command) -> Result<()> {
    match cmd {
        Command::CreateMember {
            name,
            address,
            state,
            architecture,
        } => {
            tx.execute(
                "INSERT INTO members (name, address, state, architecture) VALUES (?1, ?2, ?3, ?4)",
                params![name, address, state.as_i64(), architecture],
            )
            .map_err(|e| map_unique(e, || format!("member {name:?}")))?;
            join_default_group(tx, name)?;
        }
        Command::SetMemberState { name, state } => {
            let n = tx.execute(
                "UPDATE members SET state = ?2 WHERE name = ?1",
                params![name, state.as_i64()],
            )?;
            expect_one(n, || format!("member {name:?}"))?;
        }
        Command::SetConfig { changes } => {
            for (k, v) in changes {
                match v {
                    Some(v) => tx.execute(
                        "INSERT INTO config (key, value) VALUES (?1, ?2)
                         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        params![k, v],
                    )?,
                    None => tx.execute("DELETE FROM config WHERE key = ?1", params![k])?,
                };
            }
        }
        Command::CreatePool {
            name,
            driver,
            description,
            config,
        } => {
            tx.execute(
                "INSERT INTO storage_pools (name, driver, description, config) VALUES (?1, ?2, ?3, ?4)",
                params![name, driver, description, json(config)?],
            )
            .map_err(|e| map_unique(e, || format!("storage pool {name:?}")))?;
        }
        Command::CreateProfile {
            project,
            name,
            description,
            config,
            devices,
        } => {
            tx.execute(
                "INSERT INTO profiles (project, name, description, config, devices) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![project, name, description, json(config)?, json(devices)?],
            )
            .map_err(|e| map_unique(e, || format!("profile {name:?}")))?;
        }
        Command::UpdateProfile {
            project,
            name,
            description,
            config,
            devices,
        } => {
            let n = tx.execute(
                "UPDATE profiles SET description = ?3, config = ?4, devices = ?5 WHERE project = ?1 AND name = ?2",
                params![project, name, description, json(config)?, json(devices)?],
            )?;
            expect_one(n, || format!("profile {name:?}"))?;
        }
        Command::CreateImage(img) => crate::images::insert(tx, img)?,
        Command::DeleteImage { fingerprint } => {
            let n = tx.execute(
                "DELETE FROM images WHERE fingerprint = ?1",
                params![fingerprint],
            )?;
            expect_one(n, || format!("image {fingerprint:?}"))?;
        }
        Command::CreateImageAlias {
            name,
            fingerprint,
            description,
        } => {
            tx.execute(
                "INSERT INTO image_aliases (name, fingerprint, description) VALUES (?1, ?2, ?3)",
                params![name, fingerprint, description],
            )
            .map_err(|e| map_unique(e, || format!("image alias {name:?}")))?;
        }
        Command::DeleteImageAlias { name } => {
            let n = tx.execute("DELETE FROM image_aliases WHERE name = ?1", params![name])?;
            expect_one(n, || format!("image alias {name:?}"))?;
        }
        Command::CreateInstance(rec) => crate::instances::insert(tx, rec)?,
        Command::UpdateInstance {
            project,
            name,
            config,
            devices,
            profiles,
            ephemeral,
            description,
        } => {
            let n = tx.execute(
                "UPDATE instances SET config = ?3, devices = ?4, profiles = ?5, ephemeral = ?6, description = ?7
                 WHERE project = ?1 AND name = ?2",
                params![project, name, json(config)?, json(devices)?, json(profiles)?, ephemeral, description],
            )?;
            expect_one(n, || format!("instance {name:?}"))?;
        }
        Command::PatchInstanceConfig {
            project,
            name,
            changes,
            last_used_at,
        } => {
            let mut rec = crate::instances::get(tx, project, name)?
                .ok_or_else(|| Error::NotFound(format!("instance {name:?}")))?;
            for (k, v) in changes {
                match v {
                    Some(v) => rec.config.insert(k.clone(), v.clone()),
                    None => rec.config.remove(k),
                };
            }
            let last_used = last_used_at.as_ref().unwrap_or(&rec.last_used_at);
            // Compiled once: every start and stop records the power state with it.
            tx.prepare_cached(
                "UPDATE instances SET config = ?3, last_used_at = ?4 WHERE project = ?1 AND name = ?2",
            )?
            .execute(params![project, name, json(&rec.config)?, last_used])?;
        }
        Command::RenameInstance {
            project,
            name,
            new_name,
        } => {
            let n = tx
                .execute(
                    "UPDATE instances SET name = ?3 WHERE project = ?1 AND name = ?2",
                    params![project, name, new_name],
                )
                .map_err(|e| map_unique(e, || format!("instance {new_name:?}")))?;
            expect_one(n, || format!("instance {name:?}"))?;
            crate::volumes::rename_instance(tx, project, name, new_name)?;
        }
        Command::DeleteInstance { project, name } => {
            let n = tx.execute(
                "DELETE FROM instances WHERE project = ?1 AND name = ?2",
                params![project, name],
            )?;
            expect_one(n, || format!("instance {name:?}"))?;
            crate::volumes::delete_instance(tx, project, name)?;
        }
        Command::CreateCertificate(rec) => crate::certificates::insert(tx, rec)?,
        Command::DeleteCertificate { fingerprint } => {
            let n = tx.execute(
                "DELETE FROM certificates WHERE fingerprint = ?1",
                params![fingerprint],
            )?;
            expect_one(n, || format!("certificate {fingerprint:?}"))?;
        }
        Command::EnableClustering {
            from,
            name,
            address,
            fingerprint,
        } => {
            let n = tx
                .execute(
                    "UPDATE members SET name = ?2, address = ?3, fingerprint = ?4 WHERE name = ?1",
                    params![from, name, address, fingerprint],
                )
                .map_err(|e| map_unique(e, || format!("member {name:?}")))?;
            expect_one(n, || format!("member {from:?}"))?;
            tx.execute(
                "UPDATE instances SET member = ?2 WHERE member = ?1",
                params![from, name],
            )?;
            // Their volumes follow too (`lxc storage volume list` names the member).
            tx.execute(
                "UPDATE storage_volumes SET member = ?2 WHERE member = ?1",
                params![from, name],
            )?;
        }
        Command::CreateClusterToken(rec) => {
            tx.execute(
                "INSERT INTO cluster_tokens (secret, name, operation, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![rec.secret, rec.name, rec.operation, rec.expires_at],
            )
            .map_err(|e| map_unique(e, || "cluster join token".to_string()))?;
        }
        Command::DeleteClusterToken { secret } => {
            let n = tx.execute(
                "DELETE FROM cluster_tokens WHERE secret = ?1",
                params![secret],
            )?;
            expect_one(n, || "cluster join token".to_string())?;
        }
        Command::JoinMember {
            secret,
            name,
            address,
            fingerprint,
            architecture,
            now,
        } => {
            let token = crate::cluster_tokens::get(tx, secret)?
                .ok_or_else(|| Error::NotFound("cluster join token".into()))?;
            if token.name != *name {
                return Err(Error::Refused(format!(
                    "the join token was issued for member {:?}, not {name:?}",
                    token.name
                )));
            }
            if token.expires_at.as_str() <= now.as_str() {
                return Err(Error::Refused("the join token has expired".into()));
            }
            let id = crate::members::next_id(tx)?;
            tx.execute(
                "INSERT INTO members (id, name, address, state, architecture, fingerprint)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    id,
                    name,
                    address,
                    MemberState::Created.as_i64(),
                    architecture,
                    fingerprint
                ],
            )
            .map_err(|e| map_unique(e, || format!("member {name:?}")))?;
            tx.execute(
                "INSERT INTO member_ids (key, value) VALUES ('highest', ?1)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![id],
            )?;
            tx.execute(
                "DELETE FROM cluster_tokens WHERE secret = ?1",
                params![secret],
            )?;
            join_default_group(tx, name)?;
        }
        Command::ReportMember {
            id,
            schema,
            api_extensions,
            memory,
            cpus,
        } => {
            let n = tx.execute(
                "UPDATE members SET schema = ?2, api_extensions = ?3, memory = ?4, cpus = ?5 WHERE id = ?1",
                params![id, schema, api_extensions, memory, cpus],
            )?;
            expect_one(n, || format!("member {id}"))?;
        }
        Command::UpdateMember {
            name,
            description,
            failure_domain,
            config,
            groups,
        } => {
            let id = member_id(tx, name)?;
            for g in groups {
                group_exists(tx, g)?;
            }
            tx.execute(
                "UPDATE members SET description = ?2, failure_domain = ?3, config = ?4 WHERE id = ?1",
                params![id, description, failure_domain, json(config)?],
            )?;
            tx.execute(
                "DELETE FROM cluster_group_members WHERE member_id = ?1",
                params![id],
            )?;
            for g in groups {
                tx.execute(
                    "INSERT OR IGNORE INTO cluster_group_members (group_name, member_id) VALUES (?1, ?2)",
                    params![g, id],
                )?;
            }
        }
        Command::CreateClusterGroup {
            name,
            description,
            members,
        } => {
            let ids = member_ids(tx, members)?;
            tx.execute(
                "INSERT INTO cluster_groups (name, description) VALUES (?1, ?2)",
                params![name, description],
            )
            .map_err(|e| map_unique(e, || format!("cluster group {name:?}")))?;
            set_group_members(tx, name, &ids)?;
        }
        Command::UpdateClusterGroup {
            name,
            description,
            members,
        } => {
            let ids = member_ids(tx, members)?;
            let n = tx.execute(
                "UPDATE cluster_groups SET description = ?2 WHERE name = ?1",
                params![name, description],
            )?;
            expect_one(n, || format!("cluster group {name:?}"))?;
            set_group_members(tx, name, &ids)?;
        }
        Command::RenameClusterGroup { name, new_name } => {
            if name == crate::cluster_groups::DEFAULT {
                return Err(Error::Refused(
                    "The 'default' cluster group cannot be renamed".into(),
                ));
            }
            let n = tx
                .execute(
                    "UPDATE cluster_groups SET name = ?2 WHERE name = ?1",
                    params![name, new_name],
                )
                .map_err(|e| map_unique(e, || format!("cluster group {new_name:?}")))?;
            expect_one(n, || format!("cluster group {name:?}"))?;
        }
        Command::DeleteClusterGroup { name } => {
            if name == crate::cluster_groups::DEFAULT {
                return Err(Error::Refused(
                    "The 'default' cluster group cannot be deleted".into(),
                ));
            }
            group_exists(tx, name)?;
            let used: i64 = tx.query_row(
                "SELECT COUNT(*) FROM cluster_group_members WHERE group_name = ?1",
                params![name],
                |r| r.get(0),
            )?;
            if used > 0 {
                return Err(Error::Refused(
                    "Only empty cluster groups can be removed".into(),
                ));
            }
            tx.execute("DELETE FROM cluster_groups WHERE name = ?1", params![name])?;
        }
        Command::RemoveMember { name, force } => {
            let id = member_id(tx, name)?;
            let instances: Vec<String> = {
                let mut stmt =
                    tx.prepare("SELECT name FROM instances WHERE member = ?1 ORDER BY name")?;
                let rows = stmt.query_map(params![name], |r| r.get::<_, String>(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            if !instances.is_empty() && !force {
                return Err(Error::Refused(format!(
                    "Node still has the following containers: {}",
                    instances.join(", ")
                )));
            }
            tx.execute("DELETE FROM instances WHERE member = ?1", params![name])?;
            // Their volumes and the member's own pool rows go with them, as in LXD: no
            // volume of a removed member stays listed, no pool lists it as a user.
            tx.execute(
                "DELETE FROM storage_volumes WHERE member = ?1",
                params![name],
            )?;
            tx.execute(
                "DELETE FROM storage_pool_members WHERE member = ?1",
                params![name],
            )?;
            tx.execute(
                "DELETE FROM cluster_group_members WHERE member_id = ?1",
                params![id],
            )?;
            tx.execute("DELETE FROM members WHERE id = ?1", params![id])?;
            tx.execute(
                "INSERT INTO member_ids (key, value) VALUES ('highest', ?1)
                 ON CONFLICT(key) DO UPDATE SET value = MAX(value, excluded.value)",
                params![id],
            )?;
        }
        Command::UpdateSchema { version } => crate::schema::update_to(tx, *version)?,
        Command::CreateMove(rec) => crate::moves::insert(tx, rec)?,
        Command::SetMoveStep {
            id,
            step,
            error,
            now,
        } => crate::moves::set_step(tx, id, *step, error, now)?,
        Command::SwitchMoveOwner { id, now } => crate::moves::switch_owner(tx, id, now)?,
        Command::BeginEvacuation {
            member,
            kind,
            operation,
            entries,
        } => crate::evacuations::begin(tx, member, *kind, operation, entries)?,
        Command::SetEvacuationStep {
            member,
            project,
            instance,
            step,
            bytes,
            error,
        } => crate::evacuations::set_step(tx, member, project, instance, *step, *bytes, error)?,
        Command::FinishEvacuation {
            member,
            kind,
            state,
        } => crate::evacuations::finish_job(tx, member, *kind, *state)?,
        Command::DefinePoolMember {
            name,
            driver,
            description,
            member,
            config,
        } => crate::pools::define_member(tx, name, driver, description, member, config)?,
        Command::SetPoolMember {
            name,
            member,
            config,
            state,
        } => crate::pools::set_member(tx, name, member, config, *state)?,
        Command::FinishPool {
            name,
            description,
            config,
            state,
        } => crate::pools::finish_pool(tx, name, description, config, *state)?,
        Command::UpsertVolume(v) => crate::volumes::upsert(tx, v)?,
        Command::DeleteVolume {
            pool,
            project,
            name,
            kind,
        } => crate::volumes::delete(tx, pool, project, name, kind)?,
        Command::DeleteProfile { project, name } => {
            if !crate::instances::using_profile(tx, project, name)?.is_empty() {
                return Err(Error::Refused(format!("profile {name:?} is in use")));
            }
            let n = tx.execute(
                "DELETE FROM profiles WHERE project = ?1 AND name = ?2",
                params![project, name],
            )?;
            expect_one(n, || format!("profile {name:?}"))?;
        }
        Command::RenameProfile {
            project,
            name,
            new_name,
        } => {
            let n = tx
                .execute(
                    "UPDATE profiles SET name = ?3 WHERE project = ?1 AND name = ?2",
                    params![project, name, new_name],
                )
                .map_err(|e| map_unique(e, || format!("profile {new_name:?}")))?;
            expect_one(n, || format!("profile {name:?}"))?;
            for inst in crate::instances::list(tx, project)? {
                if !inst.profiles.contains(name) {
                    continue;
                }
                let profiles: Vec<&String> = inst
                    .profiles
                    .iter()
                    .map(|p| if p == name { new_name } else { p })
                    .collect();
                tx.execute(
                    "UPDATE instances SET profiles = ?3 WHERE project = ?1 AND name = ?2",
                    params![project, inst.name, json(&profiles)?],
                )?;
            }
        }
        Command::DeletePool { name } => {
            if !crate::volumes::list(tx, name)?.is_empty() {
                return Err(Error::Refused(format!("storage pool {name:?} is in use")));
            }
            tx.execute(
                "DELETE FROM storage_pool_members WHERE pool = ?1",
                params![name],
            )?;
            let n = tx.execute("DELETE FROM storage_pools WHERE name = ?1", params![name])?;
            expect_one(n, || format!("storage pool {name:?}"))?;
        }
        Command::UpdatePool {
            name,
            description,
            config,
        } => {
            let n = tx.execute(
                "UPDATE storage_pools SET description = ?2, config = ?3 WHERE name = ?1",
                params![name, description, json(config)?],
            )?;
            expect_one(n, || format!("storage pool {name:?}"))?;
        }
        Command::ReplanEvacuationEntry {
            member,
            project,
            instance,
            action,
            target,
            reason,
        } => crate::evacuations::replan(tx, member, project, instance, *action, target, reason)?,
        Command::AddEvacuationEntries {
            member,
            operation,
            entries,
        } => crate::evacuations::add(tx, member, operation, entries)?,
    }
    Ok(())
}

/// Puts the member `name` in the `default` cluster group.
fn join_default_group(tx: &Transaction<'_>, name: &str) -> Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO cluster_group_members (group_name, member_id)
         SELECT ?1, id FROM members WHERE name = ?2",
        params![crate::cluster_groups::DEFAULT, name],
    )?;
    Ok(())
}

fn member_id(tx: &Transaction<'_>, name: &str) -> Result<i64> {
    crate::members::get(tx, name)?
        .map(|m| m.id)
        .ok_or_else(|| Error::NotFound(format!("member {name:?}")))
}

fn member_ids(tx: &Transaction<'_>, names: &[String]) -> Result<Vec<i64>> {
    names.iter().map(|n| member_id(tx, n)).collect()
}

fn group_exists(tx: &Transaction<'_>, name: &str) -> Result<()> {
    crate::cluster_groups::get(tx, name)?
        .map(|_| ())
        .ok_or_else(|| Error::NotFound(format!("cluster group {name:?}")))
}

fn set_group_members(tx: &Transaction<'_>, group: &str, ids: &[i64]) -> Result<()> {
    tx.execute(
        "DELETE FROM cluster_group_members WHERE group_name = ?1",
        params![group],
    )?;
    for id in ids {
        tx.execute(
            "INSERT OR IGNORE INTO cluster_group_members (group_name, member_id) VALUES (?1, ?2)",
            params![group, id],
        )?;
    }
    Ok(())
}
