//! A parsed template and its evaluation.

use super::error::TemplateError;
use super::parse::{self, Cond, Expr, Filter, Node, Operand};
use super::value::Value;

/// A parsed template, ready to render any number of times.
///
/// The language is the subset of pongo2 (Django-like) that LXD images use:
///
/// - `{{ expr }}` where `expr` is a string/number literal, `true`/`false`/`none`, a dotted
///   path (`instance.name`), `config_get("key", "default")` or `<map>.get("key", "default")`,
///   followed by filters: `default:"x"`, `default_if_none:"x"`, `lower`, `upper`, `capfirst`,
///   `trim`.
/// - `{% if cond %}…{% elif cond %}…{% else %}…{% endif %}` where `cond` combines
///   expressions, `==`, `!=`, `not`, `and`, `or` and parentheses. Comparisons compare the
///   rendered text.
/// - `{# comments #}`, `{{-`/`-}}` whitespace control, and `{% autoescape %}` (ignored: like
///   LXD, nothing is ever HTML-escaped).
///
/// Not supported (a parse error names the tag): `{% for %}`, `{% set %}`, `{% include %}`,
/// `{% macro %}` and the other pongo2 tags; other filters.
///
/// Unknown variables render as `""`. A dotted path also matches a map key that itself
/// contains dots (`config.user.foo` finds the key `user.foo`), which pongo2 does not.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

impl Template {
    /// Parses template text.
    pub fn parse(src: &str) -> Result<Self, TemplateError> {
        Ok(Self {
            nodes: parse::parse(src)?,
        })
    }

    /// Renders with `vars` as the root map (see
    /// [`TemplateContext::variables`](super::TemplateContext::variables)). Never fails: what
    /// cannot be resolved renders as `""`.
    pub fn render(&self, vars: &Value) -> String {
        let mut out = String::new();
        render_nodes(&self.nodes, vars, &mut out);
        out
    }
}

fn render_nodes(nodes: &[Node], vars: &Value, out: &mut String) {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Output(e) => out.push_str(&eval(e, vars).render()),
            Node::If {
                branches,
                otherwise,
            } => {
                let body = branches
                    .iter()
                    .find(|(c, _)| test(c, vars))
                    .map_or(otherwise, |(_, b)| b);
                render_nodes(body, vars, out);
            }
        }
    }
}

fn test(c: &Cond, vars: &Value) -> bool {
    match c {
        Cond::Truthy(e) => eval(e, vars).is_truthy(),
        Cond::Eq(a, b) => eval(a, vars).render() == eval(b, vars).render(),
        Cond::Ne(a, b) => eval(a, vars).render() != eval(b, vars).render(),
        Cond::Not(c) => !test(c, vars),
        Cond::And(a, b) => test(a, vars) && test(b, vars),
        Cond::Or(a, b) => test(a, vars) || test(b, vars),
    }
}

fn eval(e: &Expr, vars: &Value) -> Value {
    let mut v = operand(&e.operand, vars);
    for f in &e.filters {
        v = match f {
            Filter::Default(d) if !v.is_truthy() => operand(d, vars),
            Filter::DefaultIfNone(d) if v == Value::Null => operand(d, vars),
            Filter::Default(_) | Filter::DefaultIfNone(_) => v,
            Filter::Lower => Value::Str(v.render().to_lowercase()),
            Filter::Upper => Value::Str(v.render().to_uppercase()),
            Filter::Trim => Value::Str(v.render().trim().to_owned()),
            Filter::Capfirst => {
                let s = v.render();
                let mut chars = s.chars();
                Value::Str(match chars.next() {
                    Some(c) => c.to_uppercase().chain(chars).collect(),
                    None => s,
                })
            }
        };
    }
    v
}

fn operand(o: &Operand, vars: &Value) -> Value {
    match o {
        Operand::Literal(v) => v.clone(),
        Operand::Path(p) => lookup(vars, p).cloned().unwrap_or_default(),
        Operand::ConfigGet(args) => get_key(vars.get("config"), args, vars, true),
        Operand::MapGet(p, args) => get_key(lookup(vars, p), args, vars, false),
    }
}

/// `config_get(key, default)` / `map.get(key, default)`: the value at `key`, else the
/// default (`none` when absent). Like LXD, `config_get` strips trailing newlines.
fn get_key(map: Option<&Value>, args: &[Expr], vars: &Value, trim: bool) -> Value {
    let key = args
        .first()
        .map(|a| eval(a, vars).render())
        .unwrap_or_default();
    match map.and_then(|m| m.get(&key)) {
        Some(Value::Str(s)) if trim => Value::Str(s.trim_end_matches(['\r', '\n']).to_owned()),
        Some(v) => v.clone(),
        None => args.get(1).map(|d| eval(d, vars)).unwrap_or_default(),
    }
}

/// Walks `path` from `root`; a segment missing from a map is retried joined with the
/// following segments by dots (longest first), so dotted config keys resolve.
fn lookup<'a>(root: &'a Value, path: &[String]) -> Option<&'a Value> {
    let Some((first, rest)) = path.split_first() else {
        return Some(root);
    };
    if let Some(v) = root.get(first)
        && let Some(found) = lookup(v, rest)
    {
        return Some(found);
    }
    for n in (2..=path.len()).rev() {
        if let Some(v) = root.get(&path[..n].join("."))
            && let Some(found) = lookup(v, &path[n..])
        {
            return Some(found);
        }
    }
    None
}
