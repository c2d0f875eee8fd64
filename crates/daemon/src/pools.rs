//! The storage pools service: pools defined cluster-wide with each member's own part.
//!
//! LXD's flow for a pool whose `source` differs per member: `POST /1.0/storage-pools?target=mX`
//! with `mX`'s `source` records that member's part and leaves the pool `Pending`; the final
//! `POST` without target (member-specific keys not allowed there) checks every member has
//! its part, creates this member's directory and makes the pool `Created` everywhere. Other
//! members create their directories on first use (`DirPool::open`). On a single member, or
//! without member-specific config, one `POST` creates the pool directly, as before.
//!
//! Drivers: `dir` (member-local directories) and `shared-fs` (`source` is the same shared
//! filesystem on every member: its volumes are reachable from all of them, a move changes
//! only their owner).

use std::path::PathBuf;

use api::storage::{StoragePool, StoragePoolsPost};
use db::pools::{PoolRecord, PoolState};

use crate::error::{ApiError, ApiResult};
use crate::state::Daemon;

/// The drivers drover has.
const DRIVERS: &[&str] = &["dir", "shared-fs"];
/// Config keys a member may have its own value of.
const MEMBER_KEYS: &[&str] = &["source"];

fn view(
    rec: PoolRecord,
    members: &[String],
    target: Option<&str>,
    used_by: Vec<String>,
) -> StoragePool {
    let mut config = rec.config.clone();
    let standalone = members.len() <= 1;
    // A member's own keys show when asked for that member (or when there is only one).
    let shown = target.or(if standalone {
        members.first().map(String::as_str)
    } else {
        None
    });
    if let Some(m) = shown
        && let Some(part) = rec.members.get(m)
    {
        config.extend(part.config.clone());
    }
    if !standalone && target.is_none() && rec.driver == "dir" {
        for k in MEMBER_KEYS {
            config.remove(*k);
        }
    }
    let locations = match rec.state {
        PoolState::Created => members.to_vec(),
        _ => rec.members.keys().cloned().collect(),
    };
    StoragePool {
        name: rec.name,
        driver: rec.driver,
        description: rec.description,
        config,
        status: rec.state.as_str().into(),
        locations,
        used_by,
    }
}

async fn member_names(d: &Daemon) -> ApiResult<Vec<String>> {
    let mut names: Vec<String> = d
        .read(db::members::list)
        .await?
        .into_iter()
        .map(|m| m.name)
        .collect();
    if names.is_empty() {
        names.push(d.member());
    }
    Ok(names)
}

async fn used_by(d: &Daemon, pool: &str) -> ApiResult<Vec<String>> {
    let pool = pool.to_string();
    d.read(move |c| {
        let mut out = Vec::new();
        for p in db::profiles::list(c, "default")? {
            if p.devices.values().any(|dv| dv.get("pool") == Some(&pool)) {
                out.push(format!("/1.0/profiles/{}", p.name));
            }
        }
        for v in db::volumes::list(c, &pool)? {
            if v.kind == db::volumes::CONTAINER {
                out.push(crate::instances::url(&v.name));
            }
        }
        for i in db::instances::list(c, "default")? {
            let url = crate::instances::url(&i.name);
            if i.devices.values().any(|dv| dv.get("pool") == Some(&pool)) && !out.contains(&url) {
                out.push(url);
            }
        }
        Ok(out)
    })
    .await
}

/// All pools (`target`: show that member's own config).
pub async fn list(d: &Daemon, target: Option<&str>) -> ApiResult<Vec<StoragePool>> {
    let recs = d.read(db::pools::list).await?;
    let members = member_names(d).await?;
    let mut out = Vec::new();
    for rec in recs {
        let used = used_by(d, &rec.name).await?;
        out.push(view(rec, &members, target, used));
    }
    Ok(out)
}

/// The pool `name` (`target`: show that member's own config).
pub async fn get(d: &Daemon, name: &str, target: Option<&str>) -> ApiResult<StoragePool> {
    let rec = record(d, name).await?;
    let members = member_names(d).await?;
    if let Some(t) = target
        && !members.iter().any(|m| m == t)
    {
        return Err(ApiError::not_found(format!(
            "Cluster member {t:?} not found"
        )));
    }
    let used = used_by(d, name).await?;
    Ok(view(rec, &members, target, used))
}

async fn record(d: &Daemon, name: &str) -> ApiResult<PoolRecord> {
    let n = name.to_string();
    d.read(move |c| db::pools::get(c, &n))
        .await?
        .ok_or_else(|| ApiError::not_found("Storage pool not found"))
}

/// The volumes on pool `name`, each with the member holding it (`location`).
pub async fn volumes(d: &Daemon, name: &str) -> ApiResult<Vec<api::storage::StorageVolume>> {
    record(d, name).await?;
    let n = name.to_string();
    let records = d.read(move |c| db::volumes::list(c, &n)).await?;
    Ok(records.into_iter().map(volume_view).collect())
}

fn volume_view(v: db::volumes::VolumeRecord) -> api::storage::StorageVolume {
    api::storage::StorageVolume {
        used_by: if v.kind == db::volumes::CONTAINER {
            vec![crate::instances::url(&v.name)]
        } else {
            Vec::new()
        },
        name: v.name,
        kind: v.kind,
        description: String::new(),
        config: Default::default(),
        location: v.member,
        content_type: "filesystem".into(),
    }
}

async fn volume_record(
    d: &Daemon,
    pool: &str,
    kind: &str,
    name: &str,
) -> ApiResult<db::volumes::VolumeRecord> {
    record(d, pool).await?;
    let p = pool.to_string();
    let found = d.read(move |c| db::volumes::list(c, &p)).await?;
    found
        .into_iter()
        .find(|v| v.kind == kind && v.name == name)
        .ok_or_else(|| ApiError::not_found("Storage volume not found"))
}

/// Volume `name` of type `kind` on pool `pool`.
pub async fn volume(
    d: &Daemon,
    pool: &str,
    kind: &str,
    name: &str,
) -> ApiResult<api::storage::StorageVolume> {
    Ok(volume_view(volume_record(d, pool, kind, name).await?))
}

/// The space volume `name` uses, as recorded (its own changes for a layered volume).
pub async fn volume_state(
    d: &Daemon,
    pool: &str,
    kind: &str,
    name: &str,
) -> ApiResult<api::storage::StorageVolumeState> {
    let v = volume_record(d, pool, kind, name).await?;
    Ok(api::storage::StorageVolumeState {
        usage: api::storage::StorageVolumeStateUsage {
            used: v.size,
            total: -1,
        },
    })
}

/// Creates a pool, or with `target` defines that member's part of a pending one (see the
/// module doc). Validates everything before it changes anything.
pub async fn create(
    d: &Daemon,
    mut req: StoragePoolsPost,
    target: Option<String>,
) -> ApiResult<()> {
    if req.name.is_empty() || req.name.contains('/') || req.name.starts_with('.') {
        return Err(ApiError::bad_request("Invalid storage pool name"));
    }
    if !DRIVERS.contains(&req.driver.as_str()) {
        return Err(ApiError::bad_request(format!(
            "Storage driver {:?} is not supported (drover has: {})",
            req.driver,
            DRIVERS.join(", ")
        )));
    }
    for k in req.config.keys() {
        if k != "source" && !k.starts_with("user.") {
            return Err(ApiError::bad_request(format!("Invalid option {k:?}")));
        }
    }
    if let Some(s) = req.config.get("source").filter(|s| !s.is_empty())
        && !PathBuf::from(s).is_absolute()
    {
        return Err(ApiError::bad_request(
            "Storage pool source must be an absolute path",
        ));
    }
    let members = member_names(d).await?;
    let n = req.name.clone();
    let existing = d.read(move |c| db::pools::get(c, &n)).await?;

    if let Some(target) = target {
        return define_on_member(d, req, existing, &members, target).await;
    }
    match existing {
        Some(p) if p.state == PoolState::Pending => finish_pending(d, req, p, &members).await,
        Some(_) => Err(ApiError::conflict(format!(
            "Storage pool {:?} already exists",
            req.name
        ))),
        None => {
            let clustered = members.len() > 1;
            if req.driver == "shared-fs" && !req.config.contains_key("source") {
                return Err(ApiError::bad_request(
                    "A shared-fs storage pool needs a source: the shared filesystem's path, the same on every member",
                ));
            }
            if clustered && req.driver == "dir" && req.config.contains_key("source") {
                return Err(ApiError::bad_request(
                    "Config key \"source\" is cluster member specific",
                ));
            }
            let own = match req.config.get("source").filter(|s| !s.is_empty()) {
                Some(s) => PathBuf::from(s),
                None => d.paths.pools.join(&req.name),
            };
            make_dir(&req.driver, own.clone()).await?;
            if req.driver == "dir" {
                req.config.remove("source");
            }
            let name = req.name.clone();
            d.write(db::Command::CreatePool {
                name: req.name.clone(),
                driver: req.driver.clone(),
                description: req.description,
                config: req.config,
            })
            .await?;
            if req.driver == "dir" {
                d.write(db::Command::SetPoolMember {
                    name: name.clone(),
                    member: d.member(),
                    config: [("source".to_string(), own.display().to_string())].into(),
                    state: PoolState::Created,
                })
                .await?;
            }
            created_event(d, &name);
            Ok(())
        }
    }
}

async fn define_on_member(
    d: &Daemon,
    req: StoragePoolsPost,
    existing: Option<PoolRecord>,
    members: &[String],
    target: String,
) -> ApiResult<()> {
    if !members.contains(&target) {
        return Err(ApiError::not_found(format!(
            "Cluster member {target:?} not found"
        )));
    }
    for k in req.config.keys() {
        if !MEMBER_KEYS.contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!(
                "Config key {k:?} may not be used as member-specific key"
            )));
        }
    }
    if let Some(p) = &existing {
        if p.state != PoolState::Pending {
            return Err(ApiError::bad_request(format!(
                "Storage pool {:?} is already created",
                req.name
            )));
        }
        if p.driver != req.driver {
            return Err(ApiError::bad_request(format!(
                "Storage pool {:?} is defined with driver {:?}",
                req.name, p.driver
            )));
        }
        if p.members.contains_key(&target) {
            return Err(ApiError::bad_request(format!(
                "The storage pool already defined on member {target:?}"
            )));
        }
    }
    d.write(db::Command::DefinePoolMember {
        name: req.name,
        driver: req.driver,
        description: req.description,
        member: target,
        config: req.config,
    })
    .await
}

async fn finish_pending(
    d: &Daemon,
    req: StoragePoolsPost,
    p: PoolRecord,
    members: &[String],
) -> ApiResult<()> {
    if p.driver != req.driver {
        return Err(ApiError::bad_request(format!(
            "Storage pool {:?} is defined with driver {:?}",
            req.name, p.driver
        )));
    }
    for k in req.config.keys() {
        if MEMBER_KEYS.contains(&k.as_str()) && p.driver == "dir" {
            return Err(ApiError::bad_request(format!(
                "Config key {k:?} is cluster member specific"
            )));
        }
    }
    let missing: Vec<&str> = members
        .iter()
        .filter(|m| !p.members.contains_key(*m))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::bad_request(format!(
            "Pool not defined on nodes: {}",
            missing.join(", ")
        )));
    }
    let me = d.member();
    let own = p
        .members
        .get(&me)
        .and_then(|m| m.config.get("source"))
        .or(req.config.get("source"))
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| d.paths.pools.join(&p.name));
    let made = make_dir(&p.driver, own).await;
    let state = if made.is_ok() {
        PoolState::Created
    } else {
        PoolState::Errored
    };
    d.write(db::Command::FinishPool {
        name: p.name.clone(),
        description: req.description,
        config: req.config,
        state,
    })
    .await?;
    made?;
    created_event(d, &p.name);
    Ok(())
}

/// Makes (or checks) this member's directory of a pool.
async fn make_dir(driver: &str, source: PathBuf) -> ApiResult<()> {
    let shared = driver == "shared-fs";
    tokio::task::spawn_blocking(move || {
        if shared {
            // Other members may be working in it: open, never clean up.
            storage::DirPool::open(source).map(drop)
        } else {
            storage::DirPool::new(source).map(drop)
        }
    })
    .await?
    .map_err(|e| ApiError::bad_request(format!("Failed to create storage pool: {e}")))
}

fn created_event(d: &Daemon, name: &str) {
    d.bus.lifecycle(
        "storage-pool-created",
        format!("/1.0/storage-pools/{name}"),
        "default",
        None,
    );
}

/// Deletes pool `name` (`lxc storage delete`), as LXD 5.0.2 does: refused while anything
/// uses it; then this member's directory goes when drover made it (under its state dir).
/// A `source` the operator gave is left in place, and so are other members' directories.
///
/// # Errors
///
/// 404 for an unknown pool, 400 while it is in use.
pub async fn delete(d: &Daemon, name: &str) -> ApiResult<()> {
    let n = name.to_string();
    let rec = d
        .read(move |c| db::pools::get(c, &n))
        .await?
        .ok_or_else(|| ApiError::not_found("Storage pool not found"))?;
    if !used_by(d, name).await?.is_empty() {
        return Err(ApiError::bad_request(
            "The storage pool is currently in use",
        ));
    }
    d.write(db::Command::DeletePool {
        name: name.to_string(),
    })
    .await?;
    let own = d.paths.pools.join(name);
    let made_here = rec.driver == "dir"
        && rec
            .source_on(&d.member())
            .is_none_or(|s| std::path::Path::new(s) == own);
    if made_here
        && let Err(e) = tokio::fs::remove_dir_all(&own).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(pool = %name, error = %e, "pool directory not removed");
    }
    d.bus.lifecycle(
        "storage-pool-deleted",
        format!("/1.0/storage-pools/{name}"),
        "default",
        None,
    );
    Ok(())
}

/// `PUT` (`patch == false`: the config given replaces the pool's) or `PATCH` (merged) of
/// pool `name`: `lxc storage set|unset|edit`. Only `user.*` keys and the description
/// change; `source` may be sent (LXD's clients send the config they read) but not changed;
/// a key set to `""` is removed.
///
/// # Errors
///
/// 404 for an unknown pool, 400 for a pool not created yet, an unknown key or a new
/// `source`.
pub async fn update(
    d: &Daemon,
    name: &str,
    body: &serde_json::Value,
    patch: bool,
) -> ApiResult<()> {
    let n = name.to_string();
    let rec = d
        .read(move |c| db::pools::get(c, &n))
        .await?
        .ok_or_else(|| ApiError::not_found("Storage pool not found"))?;
    if rec.state != PoolState::Created {
        return Err(ApiError::bad_request(format!(
            "Storage pool {name:?} is {}",
            rec.state.as_str().to_lowercase()
        )));
    }
    let field = |k: &str| body.get(k).filter(|v| !v.is_null());
    let sent: api::ConfigMap = match field("config") {
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| ApiError::bad_request(format!("Invalid request body: {e}")))?,
        None => Default::default(),
    };
    let description = match field("description") {
        Some(v) => v
            .as_str()
            .ok_or_else(|| ApiError::bad_request("Invalid request body: description"))?
            .to_string(),
        None if patch => rec.description.clone(),
        None => String::new(),
    };
    let source = rec.source_on(&d.member()).unwrap_or_default().to_string();
    let mut config = if patch {
        rec.config.clone()
    } else {
        rec.config
            .iter()
            .filter(|(k, _)| *k == "source")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    for (k, v) in sent {
        if k == "source" {
            if !v.is_empty() && v != source {
                return Err(ApiError::bad_request(
                    "The \"source\" of a storage pool cannot be changed",
                ));
            }
            continue;
        }
        if !k.starts_with("user.") {
            return Err(ApiError::bad_request(format!("Invalid option {k:?}")));
        }
        config.insert(k, v);
    }
    config.retain(|_, v| !v.is_empty());
    d.write(db::Command::UpdatePool {
        name: name.to_string(),
        description,
        config,
    })
    .await?;
    d.bus.lifecycle(
        "storage-pool-updated",
        format!("/1.0/storage-pools/{name}"),
        "default",
        None,
    );
    Ok(())
}

/// The member-specific pool keys a joining member supplies (`GET /1.0/cluster`'s
/// `member_config`): the `source` of each created `dir` pool, with an empty value. A
/// `shared-fs` pool's `source` is the same on every member, so it is not asked for.
pub fn member_config_keys(pools: &[PoolRecord]) -> Vec<api::cluster::MemberConfigKey> {
    pools
        .iter()
        .filter(|p| p.driver == "dir" && p.state == PoolState::Created)
        .flat_map(|p| {
            MEMBER_KEYS.iter().map(|k| api::cluster::MemberConfigKey {
                entity: "storage-pool".into(),
                name: p.name.clone(),
                key: (*k).into(),
                value: String::new(),
                description: format!("{k:?} property for storage pool {:?}", p.name),
            })
        })
        .collect()
}

/// Checks a joiner's `member_config` against the cluster's pools, before anything changes.
///
/// An empty answer takes the defaults (each `dir` pool under the joiner's state
/// directory, as `lxd init --preseed` without `member_config` does). Otherwise every key
/// of [`member_config_keys`] must be answered once (an empty value still means the
/// default); an unknown entity, pool or key, or a relative `source`, is refused.
///
/// # Errors
///
/// The first problem found, as an LXD-style message.
pub fn check_member_config(
    pools: &[PoolRecord],
    given: &[api::cluster::MemberConfigKey],
) -> Result<(), String> {
    let wanted = member_config_keys(pools);
    let mut seen = std::collections::BTreeSet::new();
    for c in given {
        if c.entity != "storage-pool" {
            return Err(format!("Unknown member config entity {:?}", c.entity));
        }
        if !wanted.iter().any(|w| w.name == c.name && w.key == c.key) {
            return Err(match pools.iter().find(|p| p.name == c.name) {
                None => format!("Storage pool {:?} not found in the cluster", c.name),
                Some(_) => format!(
                    "Config key {:?} of storage pool {:?} is not member specific",
                    c.key, c.name
                ),
            });
        }
        if !seen.insert((c.name.as_str(), c.key.as_str())) {
            return Err(format!(
                "Member config {:?} of storage pool {:?} given twice",
                c.key, c.name
            ));
        }
        if c.key == "source" && !c.value.is_empty() && !PathBuf::from(&c.value).is_absolute() {
            return Err(format!(
                "Storage pool {:?}: source {:?} must be an absolute path",
                c.name, c.value
            ));
        }
    }
    if given.is_empty() {
        return Ok(());
    }
    if let Some(w) = wanted
        .iter()
        .find(|w| !seen.contains(&(w.name.as_str(), w.key.as_str())))
    {
        return Err(format!(
            "Missing member config: {:?} for storage pool {:?}",
            w.key, w.name
        ));
    }
    Ok(())
}

/// On a member that just joined: records its part of each created `dir` pool, with the
/// `source` it was given (or its default directory), and makes the directories.
///
/// # Errors
///
/// A directory that cannot be made (the member stays joined; the pool's part is recorded
/// `Errored`), or a failed write.
pub async fn apply_member_config(
    d: &Daemon,
    given: &[api::cluster::MemberConfigKey],
) -> ApiResult<()> {
    let pools = d.read(db::pools::list).await?;
    let me = d.member();
    let mut failed = Vec::new();
    for p in pools
        .iter()
        .filter(|p| p.driver == "dir" && p.state == PoolState::Created)
    {
        let source = given
            .iter()
            .find(|c| c.name == p.name && c.key == "source")
            .map(|c| c.value.clone())
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| d.paths.pools.join(&p.name));
        let made = make_dir(&p.driver, source.clone()).await;
        let state = if made.is_ok() {
            PoolState::Created
        } else {
            PoolState::Errored
        };
        d.write(db::Command::SetPoolMember {
            name: p.name.clone(),
            member: me.clone(),
            config: [("source".to_string(), source.display().to_string())].into(),
            state,
        })
        .await?;
        if let Err(e) = made {
            failed.push(format!("{}: {}", p.name, e.message));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(ApiError::internal(format!(
            "Joined, but storage pools could not be set up: {}",
            failed.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use api::cluster::MemberConfigKey;

    use super::*;

    fn pool(name: &str, driver: &str, state: PoolState) -> PoolRecord {
        PoolRecord {
            name: name.into(),
            driver: driver.into(),
            description: String::new(),
            config: Default::default(),
            state,
            members: Default::default(),
        }
    }

    fn answer(name: &str, value: &str) -> MemberConfigKey {
        MemberConfigKey {
            entity: "storage-pool".into(),
            name: name.into(),
            key: "source".into(),
            value: value.into(),
            description: String::new(),
        }
    }

    #[test]
    fn only_created_dir_pools_ask_for_a_source() {
        let pools = [
            pool("local", "dir", PoolState::Created),
            pool("shared", "shared-fs", PoolState::Created),
            pool("later", "dir", PoolState::Pending),
        ];
        let keys = member_config_keys(&pools);
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].name, "local");
        assert_eq!(
            keys[0].description,
            "\"source\" property for storage pool \"local\""
        );
    }

    #[test]
    fn answers_are_checked_before_anything_changes() {
        let pools = [
            pool("a", "dir", PoolState::Created),
            pool("b", "dir", PoolState::Created),
            pool("s", "shared-fs", PoolState::Created),
        ];
        assert_eq!(check_member_config(&pools, &[]), Ok(()));
        assert_eq!(
            check_member_config(&pools, &[answer("a", ""), answer("b", "/srv/b")]),
            Ok(())
        );
        for (given, why) in [
            (vec![answer("a", "")], "Missing member config"),
            (vec![answer("a", ""), answer("b", "rel")], "absolute"),
            (vec![answer("a", ""), answer("a", "")], "twice"),
            (vec![answer("zz", "")], "not found"),
            (vec![answer("s", "/x")], "not member specific"),
        ] {
            let e = check_member_config(&pools, &given).expect_err(why);
            assert!(e.contains(why), "{e}");
        }
    }
}
