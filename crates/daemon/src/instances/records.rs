//! What a start reads of the DB besides the instance itself (its member, its profiles, its
//! root disk's pool), kept from one start to the next while the store's
//! [`db::Store::config_generation`] stands.
//!
//! Those rows change rarely; the instance's own row changes on every start and stop, which
//! is why the generation leaves instance patches out. Reading them took about half of the
//! DB read of a start (seven statements and their JSON).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use db::members::MemberRecord;
use db::pools::PoolRecord;
use db::profiles::ProfileRecord;

use crate::state::lock;

/// The most entries of one kind kept; one more starts that kind over.
const MAX_ENTRIES: usize = 256;

/// Records read at one config generation.
///
/// # Correctness
///
/// Every call takes the connection `c` and the `generation` read under the same hold of
/// the store's lock ([`db::Store::read`]): a record cached is then the one `c` would read,
/// until a write moves the generation on, which empties the cache at its next use.
#[derive(Debug, Default)]
pub struct RecordCache {
    inner: Mutex<Cached>,
}

#[derive(Debug, Default)]
struct Cached {
    generation: Option<u64>,
    members: HashMap<String, Option<MemberRecord>>,
    profiles: HashMap<(String, Vec<String>), Result<Vec<ProfileRecord>, String>>,
    pools: HashMap<String, Option<PoolRecord>>,
}

/// Inserts into `map`, emptying it first when it is full.
fn keep<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>, k: K, v: V) {
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
    map.insert(k, v);
}

impl RecordCache {
    /// The entries of `generation` (none if it is not the one cached).
    fn at(&self, generation: u64) -> MutexGuard<'_, Cached> {
        let mut cached = lock(&self.inner);
        if cached.generation != Some(generation) {
            *cached = Cached {
                generation: Some(generation),
                ..Cached::default()
            };
        }
        cached
    }

    /// Member `name` ([`db::members::get`]).
    pub fn member(
        &self,
        c: &db::Connection,
        generation: u64,
        name: &str,
    ) -> db::Result<Option<MemberRecord>> {
        if let Some(found) = self.at(generation).members.get(name) {
            return Ok(found.clone());
        }
        let found = db::members::get(c, name)?;
        keep(
            &mut self.at(generation).members,
            name.to_string(),
            found.clone(),
        );
        Ok(found)
    }

    /// The profiles `names` of `project` ([`super::read_profiles`]).
    pub fn profiles(
        &self,
        c: &db::Connection,
        generation: u64,
        project: &str,
        names: &[String],
    ) -> db::Result<Result<Vec<ProfileRecord>, String>> {
        let key = (project.to_string(), names.to_vec());
        if let Some(found) = self.at(generation).profiles.get(&key) {
            return Ok(found.clone());
        }
        let found = super::read_profiles(c, project, names)?;
        keep(&mut self.at(generation).profiles, key, found.clone());
        Ok(found)
    }

    /// Pool `name` ([`db::pools::get`]).
    pub fn pool(
        &self,
        c: &db::Connection,
        generation: u64,
        name: &str,
    ) -> db::Result<Option<PoolRecord>> {
        if let Some(found) = self.at(generation).pools.get(name) {
            return Ok(found.clone());
        }
        let found = db::pools::get(c, name)?;
        keep(
            &mut self.at(generation).pools,
            name.to_string(),
            found.clone(),
        );
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Changes profile `p1` behind the cache's back (no command, no new generation).
    fn set_description(store: &db::Store, description: &str) {
        store
            .read(|c| {
                Ok(c.execute(
                    "UPDATE profiles SET description = ?1 WHERE name = 'p1'",
                    [description],
                )?)
            })
            .unwrap_or_else(|e| panic!("update: {e}"));
    }

    #[test]
    fn a_generation_serves_what_it_read_and_the_next_reads_again() {
        let store = db::Store::in_memory().unwrap_or_else(|e| panic!("store: {e}"));
        store
            .execute(&db::Command::CreateProfile {
                project: "default".into(),
                name: "p1".into(),
                description: "one".into(),
                config: Default::default(),
                devices: Default::default(),
            })
            .unwrap_or_else(|e| panic!("create: {e}"));
        let cache = RecordCache::default();
        let names = vec!["p1".to_string()];
        let read = |generation| {
            store
                .read(|c| cache.profiles(c, generation, "default", &names))
                .unwrap_or_else(|e| panic!("read: {e}"))
                .unwrap_or_else(|missing| panic!("missing {missing}"))
                .remove(0)
                .description
        };
        assert_eq!(read(1), "one");
        set_description(&store, "two");
        // The same generation answers from the cache...
        assert_eq!(read(1), "one");
        // ...the next one reads the DB.
        assert_eq!(read(2), "two");
        let missing = store
            .read(|c| cache.profiles(c, 2, "default", &["nope".to_string()]))
            .unwrap_or_else(|e| panic!("read: {e}"));
        assert_eq!(missing, Err("nope".to_string()));
        let pool = store
            .read(|c| cache.pool(c, 2, "nope"))
            .unwrap_or_else(|e| panic!("read: {e}"));
        assert!(pool.is_none());
    }
}
