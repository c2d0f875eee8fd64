//! The `templates` entries of an image's `metadata.yaml`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// When a template is applied, as listed in `metadata.yaml` `when:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TemplateTrigger {
    /// The instance was created from the image.
    Create,
    /// The instance was copied from another instance.
    Copy,
    /// The instance is starting (every start).
    Start,
    /// The instance was renamed.
    Rename,
    /// A trigger this version does not know; never matches.
    #[serde(other)]
    Unknown,
}

impl TemplateTrigger {
    /// The name LXD uses (`"create"`), also the `trigger` template variable.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Copy => "copy",
            Self::Start => "start",
            Self::Rename => "rename",
            Self::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for TemplateTrigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One template of an image: `metadata.yaml` `templates.<path>`.
///
/// ```yaml
/// templates:
///   /etc/hostname:
///     when: [create, copy]
///     template: hostname.tpl
///     create_only: false
///     properties: {}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateSpec {
    /// The triggers that apply it.
    #[serde(default)]
    pub when: Vec<TemplateTrigger>,
    /// File name under the image's `templates/` directory (`"hostname.tpl"`).
    pub template: String,
    /// Free-form values exposed to the template as `properties`.
    #[serde(default, deserialize_with = "crate::yaml::string_map")]
    pub properties: BTreeMap<String, String>,
    /// Only write the file when it does not exist yet.
    #[serde(default)]
    pub create_only: bool,
}

impl TemplateSpec {
    /// Whether `trigger` applies this template.
    pub fn applies_on(&self, trigger: TemplateTrigger) -> bool {
        trigger != TemplateTrigger::Unknown && self.when.contains(&trigger)
    }
}
