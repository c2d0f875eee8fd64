//! `/1.0/cluster` and `/1.0/cluster/members`.

use api::Operation;
use api::cluster::{
    Cluster, ClusterGroup, ClusterGroupPost, ClusterGroupPut, ClusterGroupsPost, ClusterMember,
    ClusterMemberPut, ClusterMembersPost, ClusterPut,
};
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

    /// Evacuates or restores member `name` (`POST /1.0/cluster/members/{name}/state`): the
    /// operation that does it, on that member.
    pub async fn change_cluster_member_state(
        &self,
        name: &str,
        req: &api::evacuation::MemberStatePost,
    ) -> Result<Operation> {
        let path = format!("/1.0/cluster/members/{}/state", segment(name));
        self.op(Method::POST, &path, Some(req)).await
    }

    /// One member and its ETag.
    pub async fn cluster_member_etag(&self, name: &str) -> Result<(ClusterMember, Option<String>)> {
        let path = format!("/1.0/cluster/members/{}", segment(name));
        self.get_with_etag(&path).await
    }

    /// Replaces a member's config, description, failure domain and groups (`PUT`), with
    /// the ETag of what was read when given.
    pub async fn update_cluster_member(
        &self,
        name: &str,
        req: &ClusterMemberPut,
        etag: Option<&str>,
    ) -> Result<()> {
        let path = format!("/1.0/cluster/members/{}", segment(name));
        self.maybe_op(Method::PUT, &path, Some(req), etag).await?;
        Ok(())
    }

    /// Removes a member from the cluster; `force` also forgets its instances.
    pub async fn delete_cluster_member(&self, name: &str, force: bool) -> Result<()> {
        let path = format!(
            "/1.0/cluster/members/{}{}",
            segment(name),
            if force { "?force=1" } else { "" }
        );
        self.maybe_op(Method::DELETE, &path, None::<&()>, None)
            .await?;
        Ok(())
    }

    /// Every cluster group (`?recursion=1`).
    pub async fn cluster_groups(&self) -> Result<Vec<ClusterGroup>> {
        self.sync(Method::GET, "/1.0/cluster/groups?recursion=1", None::<&()>)
            .await
    }

    /// One cluster group.
    pub async fn cluster_group(&self, name: &str) -> Result<ClusterGroup> {
        let path = format!("/1.0/cluster/groups/{}", segment(name));
        self.sync(Method::GET, &path, None::<&()>).await
    }

    /// Creates a cluster group.
    pub async fn create_cluster_group(&self, req: &ClusterGroupsPost) -> Result<()> {
        self.maybe_op(Method::POST, "/1.0/cluster/groups", Some(req), None)
            .await?;
        Ok(())
    }

    /// Replaces a cluster group's description and members.
    pub async fn update_cluster_group(&self, name: &str, req: &ClusterGroupPut) -> Result<()> {
        let path = format!("/1.0/cluster/groups/{}", segment(name));
        self.maybe_op(Method::PUT, &path, Some(req), None).await?;
        Ok(())
    }

    /// Renames a cluster group.
    pub async fn rename_cluster_group(&self, name: &str, new_name: &str) -> Result<()> {
        let path = format!("/1.0/cluster/groups/{}", segment(name));
        let req = ClusterGroupPost {
            name: new_name.to_string(),
        };
        self.maybe_op(Method::POST, &path, Some(&req), None).await?;
        Ok(())
    }

    /// Deletes an empty cluster group.
    pub async fn delete_cluster_group(&self, name: &str) -> Result<()> {
        let path = format!("/1.0/cluster/groups/{}", segment(name));
        self.maybe_op(Method::DELETE, &path, None::<&()>, None)
            .await?;
        Ok(())
    }
}
