//! What a template sees.

use std::collections::BTreeMap;

use api::{ConfigMap, DeviceMap};

use super::spec::TemplateTrigger;
use super::value::Value;

/// The instance a template is rendered for: the `instance` (and legacy `container`) map.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceMeta {
    /// Instance name (`"c1"`).
    pub name: String,
    /// LXD architecture name (`"x86_64"`).
    pub architecture: String,
    /// Whether it runs privileged (`security.privileged`); rendered `"true"`/`"false"`.
    pub privileged: bool,
    /// Whether it is ephemeral; rendered `"true"`/`"false"`.
    pub ephemeral: bool,
}

/// Everything about an instance that templates can use; the per-template parts (`trigger`,
/// `path`, `properties`) are added by [`TemplateContext::variables`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemplateContext {
    /// The instance.
    pub instance: InstanceMeta,
    /// The instance's expanded config (`config`, and what `config_get` reads).
    pub config: ConfigMap,
    /// The instance's expanded devices (`devices`).
    pub devices: DeviceMap,
    /// Owner (`uid`, `gid`) given to files the templates create; `None` keeps the creating
    /// process's (root). Existing files keep their owner and mode.
    pub file_owner: Option<(u32, u32)>,
}

impl TemplateContext {
    /// The root map LXD gives pongo2: `trigger`, `path`, `instance`, `container` (same as
    /// `instance`), `config`, `devices`, `properties`. Values are strings, as in LXD
    /// (`instance.privileged` is `"true"` or `"false"`).
    pub fn variables(
        &self,
        trigger: TemplateTrigger,
        path: &str,
        properties: &BTreeMap<String, String>,
    ) -> Value {
        let flag = |b: bool| Value::from(if b { "true" } else { "false" });
        let instance = Value::Map(BTreeMap::from([
            ("name".to_owned(), Value::from(self.instance.name.as_str())),
            (
                "architecture".to_owned(),
                Value::from(self.instance.architecture.as_str()),
            ),
            ("privileged".to_owned(), flag(self.instance.privileged)),
            ("ephemeral".to_owned(), flag(self.instance.ephemeral)),
        ]));
        let devices = Value::Map(
            self.devices
                .iter()
                .map(|(name, conf)| (name.clone(), Value::from_strings(conf)))
                .collect(),
        );
        Value::Map(BTreeMap::from([
            ("trigger".to_owned(), Value::from(trigger.as_str())),
            ("path".to_owned(), Value::from(path)),
            ("container".to_owned(), instance.clone()),
            ("instance".to_owned(), instance),
            ("config".to_owned(), Value::from_strings(&self.config)),
            ("devices".to_owned(), devices),
            ("properties".to_owned(), Value::from_strings(properties)),
        ]))
    }
}
