//! Deserialization helpers for what LXD's clients send.

use serde::{Deserialize, Deserializer};

/// Reads `null` as the type's default, as Go's JSON decoder leaves a field untouched on
/// `null` (pylxd sends `"user": null`, `"cwd": null`).
pub fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use crate::exec::InstanceExecPost;

    #[test]
    fn nulls_read_as_defaults() {
        let req: InstanceExecPost = serde_json::from_str(
            r#"{"command": ["ls"], "environment": null, "wait-for-websocket": true,
                "interactive": false, "user": null, "group": null, "cwd": null}"#,
        )
        .expect("pylxd's exec body parses");
        assert_eq!(req.user, 0);
        assert!(req.cwd.is_empty());
        assert!(req.environment.is_empty());
    }
}
