//! Clustering: `/1.0/cluster`, `/1.0/cluster/members`, join tokens (LXD's shapes).

use serde::{Deserialize, Serialize};

use crate::ConfigMap;

/// `GET /1.0/cluster`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    /// This member's name (`"m1"`; `""` when not clustered).
    pub server_name: String,
    /// Whether this member is clustered.
    pub enabled: bool,
    /// Member-specific keys a joiner provides (the `source` of each `dir` pool).
    pub member_config: Vec<MemberConfigKey>,
}

/// A member-specific config key a joiner must provide (LXD: a pool's `source`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemberConfigKey {
    /// `"storage-pool"`.
    pub entity: String,
    /// `"local"`.
    pub name: String,
    /// `"source"`.
    pub key: String,
    /// `""`.
    #[serde(default)]
    pub value: String,
    /// `"\"source\" property for storage pool \"local\""`.
    #[serde(default)]
    pub description: String,
}

/// `PUT /1.0/cluster`: enable clustering (`server_name` + `enabled`) or join
/// (`cluster_address`, `cluster_certificate`, the token in `cluster_password` as LXD 5.0.2
/// sends it, or `cluster_token` as newer clients do).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterPut {
    /// This member's name (`"m2"`).
    pub server_name: String,
    /// `true`.
    pub enabled: bool,
    /// A member to join through (`"127.0.0.11:8443"`); empty to enable clustering.
    pub cluster_address: String,
    /// PEM of the cluster certificate the joiner fetched and checked against the token.
    pub cluster_certificate: String,
    /// This member's address (`"127.0.0.12:8443"`), its `core.https_address` from now on.
    pub server_address: String,
    /// The whole join token (LXD 5.0.2).
    pub cluster_password: String,
    /// The whole join token (newer clients).
    pub cluster_token: String,
    /// Values of the keys in [`Cluster::member_config`].
    #[serde(deserialize_with = "crate::de::null_default")]
    pub member_config: Vec<MemberConfigKey>,
}

/// `POST /1.0/cluster/members`: ask for a join token.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterMembersPost {
    /// The name the new member will have (`"m2"`).
    pub server_name: String,
}

/// A decoded join token: what `lxc cluster add` prints, base64 of this JSON. The CLI
/// builds it itself from the token operation's metadata (`serverName`, `secret`,
/// `fingerprint`, `addresses`, `expiresAt`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterJoinToken {
    /// `"m2"`.
    pub server_name: String,
    /// SHA-256 of the cluster certificate.
    pub fingerprint: String,
    /// Members to join through (`["127.0.0.11:8443"]`).
    pub addresses: Vec<String>,
    /// 64 hex characters.
    pub secret: String,
    /// RFC 3339.
    #[serde(default)]
    pub expires_at: String,
}

/// `GET /1.0/cluster/members/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterMember {
    /// `["database-leader", "database"]`.
    pub roles: Vec<String>,
    /// `"default"`.
    pub failure_domain: String,
    /// Free text.
    pub description: String,
    /// Member config.
    pub config: ConfigMap,
    /// `["default"]`.
    pub groups: Vec<String>,
    /// `"m1"`.
    pub server_name: String,
    /// `"https://127.0.0.11:8443"`.
    pub url: String,
    /// Whether it holds a copy of the DB (a Raft voter or standby).
    pub database: bool,
    /// `"Online"`, `"Offline"`, `"Evacuated"`.
    pub status: String,
    /// `"Fully operational"`, `"No heartbeat for 25.1s (2026-11-30 02:00:00.9 +0000 UTC)"`.
    pub message: String,
    /// `"x86_64"`.
    pub architecture: String,
}

/// `PUT /1.0/cluster/members/{name}`: the fields of a member a client may change (PATCH
/// takes any subset).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterMemberPut {
    /// Member config (`{"scheduler.instance": "manual"}`); `null` (what `lxc cluster edit`
    /// sends for a YAML without it) is empty.
    #[serde(deserialize_with = "crate::de::null_default")]
    pub config: ConfigMap,
    /// Free text.
    #[serde(deserialize_with = "crate::de::null_default")]
    pub description: String,
    /// `"default"`.
    #[serde(deserialize_with = "crate::de::null_default")]
    pub failure_domain: String,
    /// `["default", "gpu"]`.
    #[serde(deserialize_with = "crate::de::null_default")]
    pub groups: Vec<String>,
    /// `["database"]`: the database roles follow the Raft group and cannot be changed
    /// here; they are accepted when unchanged.
    #[serde(deserialize_with = "crate::de::null_default")]
    pub roles: Vec<String>,
}

/// `GET /1.0/cluster/groups/{name}` (API extension `clustering_groups`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterGroup {
    /// `"default"`.
    pub name: String,
    /// `"Default cluster group"`.
    pub description: String,
    /// Its members' names (`["m1", "m2"]`).
    pub members: Vec<String>,
}

/// `POST /1.0/cluster/groups`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterGroupsPost {
    /// `"gpu"`.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Members to put in it (`["m2"]`).
    #[serde(deserialize_with = "crate::de::null_default")]
    pub members: Vec<String>,
}

/// `PUT /1.0/cluster/groups/{name}` (PATCH takes any subset).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterGroupPut {
    /// Free text.
    pub description: String,
    /// Its members, replacing the current ones.
    #[serde(deserialize_with = "crate::de::null_default")]
    pub members: Vec<String>,
}

/// `POST /1.0/cluster/groups/{name}`: rename.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterGroupPost {
    /// The new name.
    pub name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_put_from_partial_yaml_has_nulls() {
        // What lxc 5.0.2's `cluster edit` sends for the YAML `description: second`.
        let body = r#"{"config":null,"description":"second","failure_domain":"","groups":null,"roles":null}"#;
        let put: ClusterMemberPut = serde_json::from_str(body).expect("parses");
        assert_eq!(put.description, "second");
        assert!(put.config.is_empty() && put.groups.is_empty() && put.roles.is_empty());
    }
}
