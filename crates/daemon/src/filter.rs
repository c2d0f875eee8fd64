//! LXD's `filter=` query (api_filtering): `name eq c1 and status eq Running`.

use crate::error::{ApiError, ApiResult};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Clause {
    key: String,
    negate: bool,
    value: String,
}

/// A parsed filter: clauses joined by `and`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    clauses: Vec<Clause>,
}

impl Filter {
    /// Parses `key eq value` / `key ne value` clauses joined by `and`. Values may be quoted.
    pub fn parse(text: &str) -> ApiResult<Self> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let mut clauses = Vec::new();
        let mut i = 0;
        while i < words.len() {
            if i > 0 {
                if !words[i].eq_ignore_ascii_case("and") {
                    return Err(ApiError::bad_request(format!(
                        "Invalid filter: unsupported operator {:?}",
                        words[i]
                    )));
                }
                i += 1;
            }
            let [key, op, value] = words
                .get(i..i + 3)
                .and_then(|w| <[&str; 3]>::try_from(w).ok())
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "Invalid filter: incomplete expression in {text:?}"
                    ))
                })?;
            let negate = match op.to_ascii_lowercase().as_str() {
                "eq" => false,
                "ne" => true,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "Invalid filter: unsupported operator {other:?}"
                    )));
                }
            };
            clauses.push(Clause {
                key: key.to_string(),
                negate,
                value: value.trim_matches(|c| c == '"' || c == '\'').to_string(),
            });
            i += 3;
        }
        Ok(Self { clauses })
    }

    /// Whether there is nothing to filter on.
    pub fn is_empty(&self) -> bool {
        self.clauses.is_empty()
    }

    /// Whether `item` (a JSON object) passes every clause.
    pub fn matches(&self, item: &serde_json::Value) -> bool {
        self.clauses.iter().all(|c| {
            let found = lookup(item, &c.key).is_some_and(|v| match v {
                serde_json::Value::String(s) => s.eq_ignore_ascii_case(&c.value),
                other => format!("{other}") == c.value,
            });
            found != c.negate
        })
    }
}

/// `config.image.os` → `item["config"]["image.os"]`, else nested lookups by dots.
fn lookup<'a>(item: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    if let Some(v) = item.get(key) {
        return Some(v);
    }
    let (head, rest) = key.split_once('.')?;
    lookup(item.get(head)?, rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clauses_match_fields_and_config_keys() {
        let item = serde_json::json!({"name": "c1", "status": "Running", "config": {"image.os": "busybox"}});
        assert!(Filter::parse("").expect("empty").matches(&item));
        assert!(Filter::parse("name eq c1").expect("ok").matches(&item));
        assert!(
            Filter::parse("status eq running and config.image.os eq busybox")
                .expect("ok")
                .matches(&item)
        );
        assert!(!Filter::parse("name ne c1").expect("ok").matches(&item));
        assert!(Filter::parse("name gt c1").is_err());
        assert!(Filter::parse("name eq").is_err());
    }
}
