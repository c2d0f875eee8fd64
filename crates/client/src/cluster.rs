//! `/1.0/cluster` and `/1.0/cluster/members`.

use api::Operation;
use api::cluster::{Cluster, ClusterMember, ClusterMembersPost, ClusterPut};
use hyper::Method;

use crate::urlenc::segment;
use crate::{Client, Result};

impl Client {
    /// Whether the server is clustered, and its member name.
    pub async fn cluster(&self) -> Result<Cluster> {
        self.sync(Method::GET, "/1.0/cluster", None::<&()>).await
    }

    /// Enables clustering or joins a cluster (`PUT /1.0/cluster`): the operation.
    pub async fn update_cluster(&self, req: &ClusterPut) -> Result<Operation> {
        self.op(Method::PUT, "/1.0/cluster", Some(req)).await
    }

    /// Every member (`?recursion=1`).
    pub async fn cluster_members(&self) -> Result<Vec<ClusterMember>> {
        self.sync(Method::GET, "/1.0/cluster/members?recursion=1", None::<&()>)
            .await
    }

    /// One member.
    pub async fn cluster_member(&self, name: &str) -> Result<ClusterMember> {
        let path = format!("/1.0/cluster/members/{}", segment(name));
        self.sync(Method::GET, &path, None::<&()>).await
    }

    /// Asks for a join token for a member to be called `name`: the `token` operation
    /// (its metadata holds `serverName`, `secret`, `fingerprint`, `addresses`,
    /// `expiresAt`).
    pub async fn create_cluster_member(&self, name: &str) -> Result<Operation> {
        let req = ClusterMembersPost {
            server_name: name.to_string(),
        };
        self.op(Method::POST, "/1.0/cluster/members", Some(&req))
            .await
    }
}
