//! Values seen by templates.

use std::collections::BTreeMap;

/// A template value. LXD passes Go strings and string maps to pongo2, so strings and maps
/// are all there is, plus `true`/`false`/`none` literals.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Value {
    /// Missing or `none`: renders as `""`, is false.
    #[default]
    Null,
    /// `true` / `false` literals: render as `True` / `False` (as pongo2 does).
    Bool(bool),
    /// A string; false when empty.
    Str(String),
    /// A map (`instance`, `config`, `devices`); renders as `""`, false when empty.
    Map(BTreeMap<String, Value>),
}

impl Value {
    /// pongo2's truthiness: `none`, `false`, `""` and empty maps are false.
    pub fn is_truthy(&self) -> bool {
        match self {
            Self::Null => false,
            Self::Bool(b) => *b,
            Self::Str(s) => !s.is_empty(),
            Self::Map(m) => !m.is_empty(),
        }
    }

    /// The text this value renders as.
    pub fn render(&self) -> String {
        match self {
            Self::Null | Self::Map(_) => String::new(),
            Self::Bool(true) => "True".to_owned(),
            Self::Bool(false) => "False".to_owned(),
            Self::Str(s) => s.clone(),
        }
    }

    /// Looks `key` up in a map; `None` for non-maps and missing keys.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Self::Map(m) => m.get(key),
            _ => None,
        }
    }

    /// A map of strings.
    pub fn from_strings<'a>(map: impl IntoIterator<Item = (&'a String, &'a String)>) -> Self {
        Self::Map(
            map.into_iter()
                .map(|(k, v)| (k.clone(), Self::Str(v.clone())))
                .collect(),
        )
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Self::Str(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Self::Str(s)
    }
}
