//! Evacuating and restoring members through the raw API, as `lxc cluster evacuate` does:
//! `POST /1.0/cluster/members/{name}/state`, the member's status, the plan table of the
//! operation.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::Member;

/// `POST /1.0/cluster/members/{member}/state` through `m` with `body`: the operation
/// (the request must be accepted).
///
/// # Panics
///
/// When the request is not answered with 202.
pub async fn post_member_state(m: &Member, member: &str, body: &Value) -> Value {
    let r = m
        .raw(
            "POST",
            &format!("/1.0/cluster/members/{member}/state"),
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(r.status, 202, "{body}: {}", r.text);
    r.metadata().clone()
}

/// The member's `status` as `m` lists it (`""` when `m` cannot answer).
pub async fn member_status(m: &Member, member: &str) -> String {
    let r = m
        .raw("GET", &format!("/1.0/cluster/members/{member}"), None)
        .await;
    r.metadata()["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The plan table of an operation record (`metadata.evacuation_plan`): instance → entry.
pub fn plan_of(op: &Value) -> BTreeMap<String, Value> {
    op["metadata"]["evacuation_plan"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e["instance"].as_str().unwrap_or_default().to_string(), e))
        .collect()
}
