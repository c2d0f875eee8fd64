//! `/1.0/instances` and `/1.0/instances/{name}[/state]`.

use api::instances::InstancePut;
use api::{Instance, InstanceState, InstanceStatePut, InstancesPost, Operation};
use hyper::Method;

use crate::urlenc::{query, segment};
use crate::{Client, Result};

fn instance_path(name: &str) -> String {
    format!("/1.0/instances/{}", segment(name))
}

impl Client {
    /// Instance names (`GET /1.0/instances`, URLs stripped to names).
    pub async fn instance_names(&self) -> Result<Vec<String>> {
        let urls: Vec<String> = self
            .sync(Method::GET, "/1.0/instances", None::<&()>)
            .await?;
        Ok(urls
            .iter()
            .map(|u| u.rsplit('/').next().unwrap_or(u).to_string())
            .collect())
    }

    /// Instance records without state (`?recursion=1`).
    pub async fn instances(&self) -> Result<Vec<Instance>> {
        self.sync(Method::GET, "/1.0/instances?recursion=1", None::<&()>)
            .await
    }

    /// Instance records with `state` and `snapshots` filled in (`?recursion=2`), as
    /// `drover list` shows them.
    pub async fn instances_full(&self) -> Result<Vec<Instance>> {
        self.sync(Method::GET, "/1.0/instances?recursion=2", None::<&()>)
            .await
    }

    /// One instance.
    pub async fn instance(&self, name: &str) -> Result<Instance> {
        self.sync(Method::GET, &instance_path(name), None::<&()>)
            .await
    }

    /// One instance and its `ETag`, for a later [`Client::replace_instance`].
    pub async fn instance_with_etag(&self, name: &str) -> Result<(Instance, Option<String>)> {
        self.get_with_etag(&instance_path(name)).await
    }

    /// The runtime state (`GET /1.0/instances/{name}/state`).
    pub async fn instance_state(&self, name: &str) -> Result<InstanceState> {
        let path = format!("{}/state", instance_path(name));
        self.sync(Method::GET, &path, None::<&()>).await
    }

    /// Create an instance (`POST /1.0/instances[?target=member]`); returns the operation.
    pub async fn create_instance(
        &self,
        req: &InstancesPost,
        target: Option<&str>,
    ) -> Result<Operation> {
        let path = match target {
            Some(t) => format!("/1.0/instances?target={}", query(t)),
            None => "/1.0/instances".to_string(),
        };
        self.op(Method::POST, &path, Some(req)).await
    }

    /// Start, stop or restart (`PUT /1.0/instances/{name}/state`); returns the operation.
    pub async fn update_instance_state(
        &self,
        name: &str,
        req: &InstanceStatePut,
    ) -> Result<Operation> {
        let path = format!("{}/state", instance_path(name));
        self.op(Method::PUT, &path, Some(req)).await
    }

    /// Replace the instance's writable fields (`PUT`, `If-Match: etag` when given).
    /// LXD answers with an operation; a `sync` answer yields `None`.
    pub async fn replace_instance(
        &self,
        name: &str,
        put: &InstancePut,
        etag: Option<&str>,
    ) -> Result<Option<Operation>> {
        self.maybe_op(Method::PUT, &instance_path(name), Some(put), etag)
            .await
    }

    /// Merge fields into the instance (`PATCH`); `None` fields are left alone.
    pub async fn patch_instance(&self, name: &str, put: &InstancePut) -> Result<Option<Operation>> {
        self.maybe_op(Method::PATCH, &instance_path(name), Some(put), None)
            .await
    }

    /// Move the instance to cluster member `target` (`POST /1.0/instances/{name}?target=`
    /// with `migration: true`, as `lxc move --target` does); returns the operation.
    /// `live: false` moves a running instance cold (stop, move, start).
    pub async fn move_instance(&self, name: &str, target: &str, live: bool) -> Result<Operation> {
        let path = format!("{}?target={}", instance_path(name), query(target));
        let req = api::instances::InstancePost {
            name: name.to_string(),
            migration: true,
            live,
            ..Default::default()
        };
        self.op(Method::POST, &path, Some(&req)).await
    }

    /// Delete a stopped instance (`DELETE`); returns the operation.
    pub async fn delete_instance(&self, name: &str) -> Result<Operation> {
        self.op(Method::DELETE, &instance_path(name), None::<&()>)
            .await
    }
}
