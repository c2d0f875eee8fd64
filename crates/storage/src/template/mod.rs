//! LXD image templates: the `templates` of `metadata.yaml`, a small pongo2-compatible
//! renderer and [`apply_templates`], which writes them into an instance's rootfs on the
//! `create`, `copy`, `start` and `rename` triggers.
//!
//! The renderer covers what LXD images use (see [`Template`]); `{% for %}` loops and the
//! rarer pongo2 tags are deliberately omitted and fail to parse with a clear error.

mod apply;
mod context;
mod error;
mod parse;
mod spec;
#[allow(clippy::module_inception)]
mod template;
mod value;

#[cfg(test)]
mod tests;

pub use apply::apply_templates;
pub use context::{InstanceMeta, TemplateContext};
pub use error::TemplateError;
pub use spec::{TemplateSpec, TemplateTrigger};
pub use template::Template;
pub use value::Value;
