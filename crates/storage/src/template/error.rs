//! Errors of template parsing and application.

use std::path::PathBuf;

/// Why a template could not be parsed or applied.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The template text is malformed.
    #[error("template syntax error at line {line}: {message}")]
    Syntax {
        /// 1-based line of the offending tag.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A tag drover does not implement (`{% for %}`, `{% include %}`, …).
    #[error("unsupported template tag {tag:?} at line {line}")]
    UnsupportedTag {
        /// The tag name.
        tag: String,
        /// 1-based line.
        line: usize,
    },
    /// A filter drover does not implement.
    #[error("unsupported template filter {filter:?} at line {line}")]
    UnsupportedFilter {
        /// The filter name.
        filter: String,
        /// 1-based line.
        line: usize,
    },
    /// A template or target path leaves its directory (`..`, a symlink escaping the rootfs).
    #[error("unsafe template path {0:?}")]
    UnsafePath(String),
    /// Rendering `template` failed.
    #[error("template {template:?}")]
    InTemplate {
        /// The template file name.
        template: String,
        /// The cause.
        #[source]
        source: Box<TemplateError>,
    },
    /// Reading a template or writing its output failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done (`"read template"`).
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}
