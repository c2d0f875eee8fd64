//! Parsing of pongo2-style template text into a tree.

use super::error::TemplateError;
use super::value::Value;

/// A parsed piece of template.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// Literal text.
    Text(String),
    /// `{{ expr }}`.
    Output(Expr),
    /// `{% if %}…{% elif %}…{% else %}…{% endif %}`: the first true branch renders.
    If {
        branches: Vec<(Cond, Vec<Node>)>,
        otherwise: Vec<Node>,
    },
}

/// A condition of `{% if %}`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cond {
    Truthy(Expr),
    Eq(Expr, Expr),
    Ne(Expr, Expr),
    Not(Box<Cond>),
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
}

/// An operand followed by filters: `config_get("a", "") | default:"x" | lower`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Expr {
    pub(crate) operand: Operand,
    pub(crate) filters: Vec<Filter>,
}

/// The filters drover implements.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Filter {
    Default(Operand),
    DefaultIfNone(Operand),
    Lower,
    Upper,
    Capfirst,
    Trim,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Operand {
    Literal(Value),
    /// `instance.name`: segments looked up from the root.
    Path(Vec<String>),
    /// `config_get(key, default)`.
    ConfigGet(Vec<Expr>),
    /// `<path>.get(key, default)` on a map.
    MapGet(Vec<String>, Vec<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    Dot,
    Pipe,
    Colon,
    Comma,
    LParen,
    RParen,
    EqEq,
    NotEq,
}

/// Parses a whole template.
pub(crate) fn parse(src: &str) -> Result<Vec<Node>, TemplateError> {
    let pieces = split(src)?;
    let mut it = pieces.into_iter().peekable();
    let (nodes, end) = parse_block(&mut it)?;
    match end {
        None => Ok(nodes),
        Some((tag, line)) => Err(syntax(line, format!("unexpected {{% {tag} %}}"))),
    }
}

/// A lexical piece of template text.
#[derive(Debug)]
enum Piece {
    Text(String),
    Output(String, usize),
    Tag(String, usize),
}

/// Splits text into literal text, `{{ }}` and `{% %}` pieces, dropping `{# #}` comments and
/// applying `-` whitespace control.
fn split(src: &str) -> Result<Vec<Piece>, TemplateError> {
    let mut out = Vec::new();
    let mut rest = src;
    let mut trim_next = false;
    let mut line = 1;
    loop {
        let next = ["{{", "{%", "{#"]
            .iter()
            .filter_map(|open| rest.find(open).map(|i| (i, *open)))
            .min();
        let Some((at, open)) = next else {
            push_text(&mut out, rest, trim_next);
            return Ok(out);
        };
        push_text(&mut out, &rest[..at], trim_next);
        line += rest[..at].matches('\n').count();
        let close = match open {
            "{{" => "}}",
            "{%" => "%}",
            _ => "#}",
        };
        let body_start = at + 2;
        let Some(len) = rest[body_start..].find(close) else {
            return Err(syntax(line, format!("unclosed {open}")));
        };
        let mut body = &rest[body_start..body_start + len];
        if let Some(b) = body.strip_prefix('-') {
            body = b;
            if let Some(Piece::Text(t)) = out.last_mut() {
                let kept = t.trim_end().len();
                t.truncate(kept);
            }
        }
        trim_next = false;
        if let Some(b) = body.strip_suffix('-') {
            body = b;
            trim_next = true;
        }
        match open {
            "{{" => out.push(Piece::Output(body.trim().to_owned(), line)),
            "{%" => out.push(Piece::Tag(body.trim().to_owned(), line)),
            _ => {}
        }
        line += body.matches('\n').count();
        rest = &rest[body_start + len + 2..];
    }
}

fn push_text(out: &mut Vec<Piece>, text: &str, trim_start: bool) {
    let text = if trim_start { text.trim_start() } else { text };
    if !text.is_empty() {
        out.push(Piece::Text(text.to_owned()));
    }
}

type Pieces = std::iter::Peekable<std::vec::IntoIter<Piece>>;

/// The tag that ended a block (`else`, `endif`, …) and its line; `None` at end of input.
type BlockEnd = Option<(String, usize)>;

/// Parses nodes until a block-ending tag (`elif`, `else`, `endif`), returned with its line.
fn parse_block(it: &mut Pieces) -> Result<(Vec<Node>, BlockEnd), TemplateError> {
    let mut nodes = Vec::new();
    while let Some(piece) = it.next() {
        match piece {
            Piece::Text(t) => nodes.push(Node::Text(t)),
            Piece::Output(body, line) => {
                let mut p = ExprParser::new(&body, line)?;
                let expr = p.expr()?;
                p.finish()?;
                nodes.push(Node::Output(expr));
            }
            Piece::Tag(body, line) => {
                let (name, args) = body.split_once(char::is_whitespace).unwrap_or((&body, ""));
                match name {
                    "if" => nodes.push(parse_if(args, line, it)?),
                    "elif" | "else" | "endif" => return Ok((nodes, Some((body, line)))),
                    // LXD wraps every template in `{% autoescape off %}`; drover never escapes.
                    "autoescape" | "endautoescape" => {}
                    other => {
                        return Err(TemplateError::UnsupportedTag {
                            tag: other.to_owned(),
                            line,
                        });
                    }
                }
            }
        }
    }
    Ok((nodes, None))
}

fn parse_if(args: &str, line: usize, it: &mut Pieces) -> Result<Node, TemplateError> {
    let mut branches = Vec::new();
    let mut cond = parse_cond(args, line)?;
    loop {
        let (body, end) = parse_block(it)?;
        branches.push((cond, body));
        let Some((tag, tag_line)) = end else {
            return Err(syntax(line, "missing {% endif %}".to_owned()));
        };
        let (name, rest) = tag.split_once(char::is_whitespace).unwrap_or((&tag, ""));
        match name {
            "elif" => cond = parse_cond(rest, tag_line)?,
            "else" => {
                let (otherwise, end) = parse_block(it)?;
                return match end {
                    Some((t, _)) if t == "endif" => Ok(Node::If {
                        branches,
                        otherwise,
                    }),
                    Some((t, l)) => Err(syntax(l, format!("unexpected {{% {t} %}} after else"))),
                    None => Err(syntax(line, "missing {% endif %}".to_owned())),
                };
            }
            _ => {
                return Ok(Node::If {
                    branches,
                    otherwise: Vec::new(),
                });
            }
        }
    }
}

fn parse_cond(src: &str, line: usize) -> Result<Cond, TemplateError> {
    let mut p = ExprParser::new(src, line)?;
    let c = p.or()?;
    p.finish()?;
    Ok(c)
}

fn syntax(line: usize, message: String) -> TemplateError {
    TemplateError::Syntax { line, message }
}

fn lex(src: &str, line: usize) -> Result<Vec<Tok>, TemplateError> {
    let mut toks = Vec::new();
    let mut chars = src.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '.' => toks.push(Tok::Dot),
            '|' => toks.push(Tok::Pipe),
            ':' => toks.push(Tok::Colon),
            ',' => toks.push(Tok::Comma),
            '(' => toks.push(Tok::LParen),
            ')' => toks.push(Tok::RParen),
            '=' | '!' => {
                if chars.next_if(|(_, n)| *n == '=').is_none() {
                    return Err(syntax(line, format!("unexpected {c:?}")));
                }
                toks.push(if c == '=' { Tok::EqEq } else { Tok::NotEq });
            }
            '"' | '\'' => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err(syntax(line, "unterminated string".to_owned())),
                        Some((_, q)) if q == c => break,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => s.push('\n'),
                            Some((_, 't')) => s.push('\t'),
                            Some((_, e)) => s.push(e),
                            None => return Err(syntax(line, "unterminated string".to_owned())),
                        },
                        Some((_, ch)) => s.push(ch),
                    }
                }
                toks.push(Tok::Str(s));
            }
            c if c.is_ascii_digit() || c == '-' => {
                let mut end = i + c.len_utf8();
                while let Some((j, d)) = chars.next_if(|(_, d)| d.is_ascii_digit()) {
                    end = j + d.len_utf8();
                }
                toks.push(Tok::Num(src[i..end].to_owned()));
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut end = i + c.len_utf8();
                while let Some((j, d)) = chars.next_if(|(_, d)| d.is_alphanumeric() || *d == '_') {
                    end = j + d.len_utf8();
                }
                toks.push(Tok::Ident(src[i..end].to_owned()));
            }
            other => return Err(syntax(line, format!("unexpected {other:?}"))),
        }
    }
    Ok(toks)
}

/// Recursive-descent parser over the tokens of one tag.
struct ExprParser {
    toks: Vec<Tok>,
    pos: usize,
    line: usize,
}

impl ExprParser {
    fn new(src: &str, line: usize) -> Result<Self, TemplateError> {
        Ok(Self {
            toks: lex(src, line)?,
            pos: 0,
            line,
        })
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        if self.peek() == Some(tok) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_keyword(&mut self, kw: &str) -> bool {
        self.eat(&Tok::Ident(kw.to_owned()))
    }

    fn err(&self, message: impl Into<String>) -> TemplateError {
        syntax(self.line, message.into())
    }

    fn finish(&self) -> Result<(), TemplateError> {
        match self.peek() {
            None => Ok(()),
            Some(t) => Err(self.err(format!("unexpected {t:?}"))),
        }
    }

    fn or(&mut self) -> Result<Cond, TemplateError> {
        let mut c = self.and()?;
        while self.eat_keyword("or") {
            c = Cond::Or(Box::new(c), Box::new(self.and()?));
        }
        Ok(c)
    }

    fn and(&mut self) -> Result<Cond, TemplateError> {
        let mut c = self.not()?;
        while self.eat_keyword("and") {
            c = Cond::And(Box::new(c), Box::new(self.not()?));
        }
        Ok(c)
    }

    fn not(&mut self) -> Result<Cond, TemplateError> {
        if self.eat_keyword("not") {
            return Ok(Cond::Not(Box::new(self.not()?)));
        }
        if self.eat(&Tok::LParen) {
            let c = self.or()?;
            if !self.eat(&Tok::RParen) {
                return Err(self.err("expected )"));
            }
            return Ok(c);
        }
        let left = self.expr()?;
        if self.eat(&Tok::EqEq) {
            Ok(Cond::Eq(left, self.expr()?))
        } else if self.eat(&Tok::NotEq) {
            Ok(Cond::Ne(left, self.expr()?))
        } else {
            Ok(Cond::Truthy(left))
        }
    }

    fn expr(&mut self) -> Result<Expr, TemplateError> {
        let operand = self.operand()?;
        let mut filters = Vec::new();
        while self.eat(&Tok::Pipe) {
            let Some(Tok::Ident(name)) = self.next() else {
                return Err(self.err("expected a filter name after |"));
            };
            let arg = if self.eat(&Tok::Colon) {
                Some(self.operand()?)
            } else {
                None
            };
            let filter = match (name.as_str(), arg) {
                ("default", Some(a)) => Filter::Default(a),
                ("default_if_none", Some(a)) => Filter::DefaultIfNone(a),
                ("lower", None) => Filter::Lower,
                ("upper", None) => Filter::Upper,
                ("capfirst", None) => Filter::Capfirst,
                ("trim", None) => Filter::Trim,
                ("default" | "default_if_none", None) => {
                    return Err(self.err(format!("filter {name} needs an argument")));
                }
                ("lower" | "upper" | "capfirst" | "trim", Some(_)) => {
                    return Err(self.err(format!("filter {name} takes no argument")));
                }
                _ => {
                    return Err(TemplateError::UnsupportedFilter {
                        filter: name,
                        line: self.line,
                    });
                }
            };
            filters.push(filter);
        }
        Ok(Expr { operand, filters })
    }

    fn operand(&mut self) -> Result<Operand, TemplateError> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Operand::Literal(Value::Str(s))),
            Some(Tok::Num(n)) => Ok(Operand::Literal(Value::Str(n))),
            Some(Tok::Ident(id)) => match id.as_str() {
                "true" | "True" => Ok(Operand::Literal(Value::Bool(true))),
                "false" | "False" => Ok(Operand::Literal(Value::Bool(false))),
                "none" | "None" | "nil" => Ok(Operand::Literal(Value::Null)),
                _ => self.path_or_call(id),
            },
            Some(t) => Err(self.err(format!("unexpected {t:?}"))),
            None => Err(self.err("expected a value")),
        }
    }

    fn path_or_call(&mut self, first: String) -> Result<Operand, TemplateError> {
        let mut path = vec![first];
        while self.eat(&Tok::Dot) {
            match self.next() {
                Some(Tok::Ident(s) | Tok::Num(s)) => path.push(s),
                _ => return Err(self.err("expected a name after .")),
            }
        }
        if !self.eat(&Tok::LParen) {
            return Ok(Operand::Path(path));
        }
        let mut args = Vec::new();
        if !self.eat(&Tok::RParen) {
            loop {
                args.push(self.expr()?);
                if self.eat(&Tok::RParen) {
                    break;
                }
                if !self.eat(&Tok::Comma) {
                    return Err(self.err("expected , or )"));
                }
            }
        }
        if args.is_empty() || args.len() > 2 {
            return Err(self.err("calls take a key and an optional default"));
        }
        if path.len() == 1 && path[0] == "config_get" {
            return Ok(Operand::ConfigGet(args));
        }
        if path.len() >= 2 && path.last().map(String::as_str) == Some("get") {
            path.pop();
            return Ok(Operand::MapGet(path, args));
        }
        Err(self.err(format!("unknown function {}", path.join("."))))
    }
}
