//! The invariant language: `pool.max >= pool.min`, `timeout_ms > retry_ms * retries`,
//! `workers * cache_mb <= 8192`, `mode == "lru" or cache_mb >= 64`.
//!
//! Numbers (with an optional duration or size unit: `30s`, `64MiB`), strings in double quotes,
//! `true`/`false`, knob names (letters, digits, `_` and `.`), `+ - * /`, comparisons
//! (`< <= > >= == !=`), `and`/`or`/`not` (or `&&`/`||`/`!`) and parentheses. Durations are
//! compared in seconds and sizes in bytes. Parsing and type checking happen when the config is
//! loaded, so a typo is a config error with its column, not a runtime surprise; evaluation is
//! checked (no division by zero, no infinities).

use crate::quantity;
use std::collections::BTreeMap;
use std::fmt;

/// The type of an expression or knob value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// A number (ints, floats, durations in seconds, sizes in bytes).
    Num,
    /// `true` / `false`.
    Bool,
    /// A string (enum knobs).
    Text,
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ty::Num => "a number",
            Ty::Bool => "a boolean",
            Ty::Text => "a string",
        })
    }
}

/// A value an expression computes.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    /// A finite number.
    Num(f64),
    /// A boolean.
    Bool(bool),
    /// A string.
    Text(String),
}

impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Num(x) => write!(f, "{x}"),
            Val::Bool(b) => write!(f, "{b}"),
            Val::Text(s) => write!(f, "{s:?}"),
        }
    }
}

/// An invariant that does not parse or does not type-check, with the 1-based column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct ExprError {
    /// 1-based column (in characters) where the problem is.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
}

impl BinOp {
    fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::And => "and",
            BinOp::Or => "or",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Lit(Val),
    Knob(String, usize),
    Neg(Box<Node>, usize),
    Not(Box<Node>, usize),
    Bin(BinOp, Box<Node>, Box<Node>, usize),
}

/// A parsed, type-checked invariant.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    source: String,
    root: Node,
    knobs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Text(String),
    Ident(String),
    Op(&'static str),
    LParen,
    RParen,
}

fn describe(t: Option<&(Tok, usize)>) -> String {
    match t.map(|(t, _)| t) {
        None => "the end".into(),
        Some(Tok::Num(x)) => format!("number {x}"),
        Some(Tok::Text(s)) => format!("string {s:?}"),
        Some(Tok::Ident(s)) => format!("`{s}`"),
        Some(Tok::Op(o)) => format!("`{o}`"),
        Some(Tok::LParen) => "`(`".into(),
        Some(Tok::RParen) => "`)`".into(),
    }
}

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, ExprError> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |column: usize, message: String| ExprError { column, message };
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let value = word
                .parse::<f64>()
                .ok()
                .or_else(|| quantity::parse_duration(&word).map(|(s, _)| s))
                .or_else(|| quantity::parse_size(&word).map(|(b, _)| b))
                .filter(|v| v.is_finite())
                .ok_or_else(|| {
                    err(
                        col,
                        format!("`{word}` is not a number (write e.g. 8192, 0.5, 30s or 64MiB)"),
                    )
                })?;
            out.push((Tok::Num(value), col));
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '.')) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            out.push((
                match word.as_str() {
                    "and" => Tok::Op("and"),
                    "or" => Tok::Op("or"),
                    "not" => Tok::Op("not"),
                    _ => Tok::Ident(word),
                },
                col,
            ));
            continue;
        }
        if c == '"' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(err(col, "unterminated string (missing `\"`)".into())),
                    Some('"') => break,
                    Some(ch) => s.push(*ch),
                }
                i += 1;
            }
            i += 1;
            out.push((Tok::Text(s), col));
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let op2 = ["<=", ">=", "==", "!=", "&&", "||"]
            .into_iter()
            .find(|o| *o == two);
        if let Some(o) = op2 {
            out.push((
                Tok::Op(match o {
                    "&&" => "and",
                    "||" => "or",
                    other => other,
                }),
                col,
            ));
            i += 2;
            continue;
        }
        let tok = match c {
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '+' => Tok::Op("+"),
            '-' => Tok::Op("-"),
            '*' => Tok::Op("*"),
            '/' => Tok::Op("/"),
            '<' => Tok::Op("<"),
            '>' => Tok::Op(">"),
            '!' => Tok::Op("not"),
            '=' => {
                return Err(err(
                    col,
                    "`=` is not a comparison (write `==`, or `<=`/`>=`)".into(),
                ));
            }
            other => return Err(err(col, format!("unexpected character `{other}`"))),
        };
        out.push((tok, col));
        i += 1;
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    end_col: usize,
}

/// Nesting deeper than this is refused (bounded recursion on hostile input).
const MAX_DEPTH: usize = 64;

impl Parser {
    fn peek_op(&self) -> Option<&'static str> {
        match self.toks.get(self.pos) {
            Some((Tok::Op(o), _)) => Some(o),
            _ => None,
        }
    }
    fn col(&self) -> usize {
        self.toks.get(self.pos).map(|t| t.1).unwrap_or(self.end_col)
    }
    fn fail<T>(&self, expected: &str) -> Result<T, ExprError> {
        Err(ExprError {
            column: self.col(),
            message: format!(
                "expected {expected}, found {}",
                describe(self.toks.get(self.pos))
            ),
        })
    }
    fn binary(
        &mut self,
        depth: usize,
        ops: &[(&str, BinOp)],
        next: fn(&mut Parser, usize) -> Result<Node, ExprError>,
        chain: bool,
    ) -> Result<Node, ExprError> {
        let mut left = next(self, depth)?;
        while let Some(op) = self.peek_op() {
            let Some((_, bin)) = ops.iter().find(|(s, _)| *s == op) else {
                break;
            };
            let col = self.col();
            self.pos += 1;
            let right = next(self, depth)?;
            left = Node::Bin(*bin, Box::new(left), Box::new(right), col);
            if !chain {
                if let Some(o) = self.peek_op()
                    && ops.iter().any(|(s, _)| *s == o)
                {
                    return Err(ExprError {
                        column: self.col(),
                        message: format!(
                            "comparisons do not chain (`a {op} b {o} c`); join them with `and`"
                        ),
                    });
                }
                break;
            }
        }
        Ok(left)
    }
    fn or(&mut self, depth: usize) -> Result<Node, ExprError> {
        if depth > MAX_DEPTH {
            return Err(ExprError {
                column: self.col(),
                message: format!("nested more than {MAX_DEPTH} levels deep"),
            });
        }
        self.binary(depth + 1, &[("or", BinOp::Or)], Parser::and, true)
    }
    fn and(&mut self, depth: usize) -> Result<Node, ExprError> {
        self.binary(depth, &[("and", BinOp::And)], Parser::not, true)
    }
    fn not(&mut self, depth: usize) -> Result<Node, ExprError> {
        if self.peek_op() == Some("not") {
            let col = self.col();
            self.pos += 1;
            if depth > MAX_DEPTH {
                return self.fail("less nesting");
            }
            return Ok(Node::Not(Box::new(self.not(depth + 1)?), col));
        }
        self.cmp(depth)
    }
    fn cmp(&mut self, depth: usize) -> Result<Node, ExprError> {
        self.binary(
            depth,
            &[
                ("<", BinOp::Lt),
                ("<=", BinOp::Le),
                (">", BinOp::Gt),
                (">=", BinOp::Ge),
                ("==", BinOp::Eq),
                ("!=", BinOp::Ne),
            ],
            Parser::sum,
            false,
        )
    }
    fn sum(&mut self, depth: usize) -> Result<Node, ExprError> {
        self.binary(
            depth,
            &[("+", BinOp::Add), ("-", BinOp::Sub)],
            Parser::product,
            true,
        )
    }
    fn product(&mut self, depth: usize) -> Result<Node, ExprError> {
        self.binary(
            depth,
            &[("*", BinOp::Mul), ("/", BinOp::Div)],
            Parser::unary,
            true,
        )
    }
    fn unary(&mut self, depth: usize) -> Result<Node, ExprError> {
        if self.peek_op() == Some("-") {
            let col = self.col();
            self.pos += 1;
            if depth > MAX_DEPTH {
                return self.fail("less nesting");
            }
            return Ok(Node::Neg(Box::new(self.unary(depth + 1)?), col));
        }
        self.atom(depth)
    }
    fn atom(&mut self, depth: usize) -> Result<Node, ExprError> {
        let Some((tok, col)) = self.toks.get(self.pos).cloned() else {
            return self.fail("a number, a knob name or `(`");
        };
        match tok {
            Tok::Num(x) => {
                self.pos += 1;
                Ok(Node::Lit(Val::Num(x)))
            }
            Tok::Text(s) => {
                self.pos += 1;
                Ok(Node::Lit(Val::Text(s)))
            }
            Tok::Ident(name) => {
                self.pos += 1;
                Ok(match name.as_str() {
                    "true" => Node::Lit(Val::Bool(true)),
                    "false" => Node::Lit(Val::Bool(false)),
                    _ => Node::Knob(name, col),
                })
            }
            Tok::LParen => {
                self.pos += 1;
                let inner = self.or(depth + 1)?;
                if !matches!(self.toks.get(self.pos), Some((Tok::RParen, _))) {
                    return self.fail("`)`");
                }
                self.pos += 1;
                Ok(inner)
            }
            _ => self.fail("a number, a knob name or `(`"),
        }
    }
}

fn check(node: &Node, types: &BTreeMap<String, Ty>) -> Result<Ty, ExprError> {
    let mismatch = |column: usize, message: String| Err(ExprError { column, message });
    match node {
        Node::Lit(Val::Num(_)) => Ok(Ty::Num),
        Node::Lit(Val::Bool(_)) => Ok(Ty::Bool),
        Node::Lit(Val::Text(_)) => Ok(Ty::Text),
        Node::Knob(name, col) => match types.get(name) {
            Some(t) => Ok(*t),
            None => {
                let known: Vec<&str> = types.keys().map(String::as_str).collect();
                mismatch(
                    *col,
                    format!(
                        "unknown knob `{name}` (declared: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                )
            }
        },
        Node::Neg(inner, col) => match check(inner, types)? {
            Ty::Num => Ok(Ty::Num),
            t => mismatch(*col, format!("`-` needs a number, not {t}")),
        },
        Node::Not(inner, col) => match check(inner, types)? {
            Ty::Bool => Ok(Ty::Bool),
            t => mismatch(*col, format!("`not` needs a boolean, not {t}")),
        },
        Node::Bin(op, l, r, col) => {
            let (a, b) = (check(l, types)?, check(r, types)?);
            let sym = op.symbol();
            match op {
                BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div => {
                    if a == Ty::Num && b == Ty::Num {
                        Ok(Ty::Num)
                    } else {
                        mismatch(*col, format!("`{sym}` needs numbers, not {a} and {b}"))
                    }
                }
                BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                    if a == Ty::Num && b == Ty::Num {
                        Ok(Ty::Bool)
                    } else {
                        mismatch(*col, format!("`{sym}` compares numbers, not {a} and {b}"))
                    }
                }
                BinOp::Eq | BinOp::Ne => {
                    if a == b {
                        Ok(Ty::Bool)
                    } else {
                        mismatch(*col, format!("`{sym}` compares {a} with {b}"))
                    }
                }
                BinOp::And | BinOp::Or => {
                    if a == Ty::Bool && b == Ty::Bool {
                        Ok(Ty::Bool)
                    } else {
                        mismatch(*col, format!("`{sym}` needs booleans, not {a} and {b}"))
                    }
                }
            }
        }
    }
}

fn collect_knobs(node: &Node, out: &mut Vec<String>) {
    match node {
        Node::Lit(_) => {}
        Node::Knob(n, _) => {
            if !out.contains(n) {
                out.push(n.clone());
            }
        }
        Node::Neg(i, _) | Node::Not(i, _) => collect_knobs(i, out),
        Node::Bin(_, l, r, _) => {
            collect_knobs(l, out);
            collect_knobs(r, out);
        }
    }
}

impl Expr {
    /// Parses `src` and checks it is a boolean over the knobs in `types`.
    pub fn parse(src: &str, types: &BTreeMap<String, Ty>) -> Result<Expr, ExprError> {
        let toks = lex(src)?;
        let end_col = src.chars().count() + 1;
        let mut p = Parser {
            toks,
            pos: 0,
            end_col,
        };
        let root = p.or(0)?;
        if p.pos < p.toks.len() {
            return p.fail("an operator or the end");
        }
        match check(&root, types)? {
            Ty::Bool => {}
            t => {
                return Err(ExprError {
                    column: 1,
                    message: format!(
                        "an invariant must be true or false (a comparison), this is {t}"
                    ),
                });
            }
        }
        let mut knobs = Vec::new();
        collect_knobs(&root, &mut knobs);
        Ok(Expr {
            source: src.trim().to_string(),
            root,
            knobs,
        })
    }

    /// The knobs it reads, in order of first mention.
    pub fn knobs(&self) -> &[String] {
        &self.knobs
    }

    /// The text as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether it holds for `values` (every knob it reads must be present).
    pub fn holds(&self, values: &BTreeMap<String, Val>) -> Result<bool, String> {
        match eval(&self.root, values)? {
            Val::Bool(b) => Ok(b),
            other => Err(format!("evaluates to {other}, not true or false")),
        }
    }
}

fn eval(node: &Node, values: &BTreeMap<String, Val>) -> Result<Val, String> {
    let num = |v: Val| match v {
        Val::Num(x) => Ok(x),
        other => Err(format!("{other} is not a number")),
    };
    let boolean = |v: Val| match v {
        Val::Bool(b) => Ok(b),
        other => Err(format!("{other} is not a boolean")),
    };
    Ok(match node {
        Node::Lit(v) => v.clone(),
        Node::Knob(n, _) => values
            .get(n)
            .cloned()
            .ok_or_else(|| format!("knob `{n}` has no value"))?,
        Node::Neg(i, _) => Val::Num(-num(eval(i, values)?)?),
        Node::Not(i, _) => Val::Bool(!boolean(eval(i, values)?)?),
        Node::Bin(op, l, r, _) => {
            // `and`/`or` short-circuit, like every reader expects.
            if matches!(op, BinOp::And | BinOp::Or) {
                let a = boolean(eval(l, values)?)?;
                if (*op == BinOp::And && !a) || (*op == BinOp::Or && a) {
                    return Ok(Val::Bool(a));
                }
                return Ok(Val::Bool(boolean(eval(r, values)?)?));
            }
            let (a, b) = (eval(l, values)?, eval(r, values)?);
            match op {
                BinOp::Eq => Val::Bool(a == b),
                BinOp::Ne => Val::Bool(a != b),
                _ => {
                    let (x, y) = (num(a)?, num(b)?);
                    let out = match op {
                        BinOp::Add => Val::Num(x + y),
                        BinOp::Sub => Val::Num(x - y),
                        BinOp::Mul => Val::Num(x * y),
                        BinOp::Div if y == 0.0 => {
                            return Err(format!("division by zero ({x} / {y})"));
                        }
                        BinOp::Div => Val::Num(x / y),
                        BinOp::Lt => Val::Bool(x < y),
                        BinOp::Le => Val::Bool(x <= y),
                        BinOp::Gt => Val::Bool(x > y),
                        BinOp::Ge => Val::Bool(x >= y),
                        _ => return Err(format!("operator `{}` misplaced", op.symbol())),
                    };
                    if let Val::Num(z) = out
                        && !z.is_finite()
                    {
                        return Err(format!("{x} {} {y} is not a finite number", op.symbol()));
                    }
                    out
                }
            }
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn types() -> BTreeMap<String, Ty> {
        [
            ("workers", Ty::Num),
            ("cache_mb", Ty::Num),
            ("pool.max", Ty::Num),
            ("pool.min", Ty::Num),
            ("timeout", Ty::Num),
            ("mode", Ty::Text),
            ("tls", Ty::Bool),
        ]
        .into_iter()
        .map(|(k, t)| (k.to_string(), t))
        .collect()
    }

    fn vals(pairs: &[(&str, Val)]) -> BTreeMap<String, Val> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn evaluates_the_issue_examples() {
        let e = Expr::parse("workers * cache_mb <= 8192", &types()).unwrap();
        assert_eq!(e.knobs(), ["workers", "cache_mb"]);
        let v = |w: f64, c: f64| vals(&[("workers", Val::Num(w)), ("cache_mb", Val::Num(c))]);
        assert!(e.holds(&v(4.0, 2048.0)).unwrap());
        assert!(!e.holds(&v(4.0, 4096.0)).unwrap());
        let e = Expr::parse("pool.max >= pool.min", &types()).unwrap();
        assert!(
            !e.holds(&vals(&[
                ("pool.max", Val::Num(2.0)),
                ("pool.min", Val::Num(4.0))
            ]))
            .unwrap()
        );
        let e = Expr::parse(
            "(mode == \"lru\" or cache_mb >= 64) and not tls && timeout < 30s",
            &types(),
        )
        .unwrap();
        assert!(
            e.holds(&vals(&[
                ("mode", Val::Text("lfu".into())),
                ("cache_mb", Val::Num(64.0)),
                ("tls", Val::Bool(false)),
                ("timeout", Val::Num(29.0)),
            ]))
            .unwrap()
        );
        let e = Expr::parse("cache_mb * 1MiB <= 2GiB - -1", &types()).unwrap();
        assert!(e.holds(&vals(&[("cache_mb", Val::Num(10.0))])).unwrap());
    }

    #[test]
    fn parse_errors_name_the_column() {
        let e = |s: &str| Expr::parse(s, &types()).unwrap_err().to_string();
        assert_eq!(
            e("workers * <= 8"),
            "column 11: expected a number, a knob name or `(`, found `<=`"
        );
        assert_eq!(
            e("workers = 4"),
            "column 9: `=` is not a comparison (write `==`, or `<=`/`>=`)"
        );
        assert!(e("wrokers > 1").starts_with("column 1: unknown knob `wrokers` (declared: "));
        assert!(e("(workers > 1").contains("expected `)`, found the end"));
        assert!(e("workers > 1 2").contains("column 13: expected an operator or the end"));
        assert!(e("1 < workers < 3").contains("do not chain"));
        assert!(e("workers + 1").contains("must be true or false"));
        assert!(e("mode > 3").contains("`>` compares numbers, not a string and a number"));
        assert!(e("mode == 3").contains("compares a string with a number"));
        assert!(e("\"lru").contains("unterminated"));
        assert!(e("workers > 3q").contains("`3q` is not a number"));
        assert!(e("workers # 1").contains("unexpected character `#`"));
        let deep = format!("{}workers > 1{}", "(".repeat(200), ")".repeat(200));
        assert!(e(&deep).contains("nested"));
    }

    #[test]
    fn evaluation_is_checked() {
        let e = Expr::parse("cache_mb / workers > 1", &types()).unwrap();
        let err = e
            .holds(&vals(&[
                ("cache_mb", Val::Num(1.0)),
                ("workers", Val::Num(0.0)),
            ]))
            .unwrap_err();
        assert!(err.contains("division by zero"), "{err}");
        let err = e.holds(&vals(&[("cache_mb", Val::Num(1.0))])).unwrap_err();
        assert!(err.contains("`workers` has no value"), "{err}");
        let e = Expr::parse("cache_mb * cache_mb > 1", &types()).unwrap();
        let err = e
            .holds(&vals(&[("cache_mb", Val::Num(1e200))]))
            .unwrap_err();
        assert!(err.contains("finite"), "{err}");
    }
}
