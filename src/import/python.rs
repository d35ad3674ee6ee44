//! A reader for the small Python expressions OfflineIMAP configurations hold (`folderfilter`,
//! `nametrans`, `remotepasseval`, `idlefolders`, the `[mbnames]` strings): literals, names,
//! attribute access, calls, comparisons, `not`/`and`/`or`, `+` and lambdas.
//!
//! Nothing is ever evaluated. Anything outside this subset is refused with a reason, which the
//! importer turns into a TODO comment next to the original text.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Name(String),
    Str(String),
    Int(i64),
    Bool(bool),
    None,
    /// A list, tuple or set display: `[a, b]`, `(a, b)`, `{a, b}`.
    Seq(Vec<Expr>),
    Dict(Vec<(Expr, Expr)>),
    Attr(Box<Expr>, String),
    Call {
        func: Box<Expr>,
        args: Vec<Expr>,
        kwargs: Vec<(String, Expr)>,
    },
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Compare(Box<Expr>, CmpOp, Box<Expr>),
    Add(Box<Expr>, Box<Expr>),
    BitOr(Box<Expr>, Box<Expr>),
    Lambda(Vec<String>, Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    In,
    NotIn,
}

impl Expr {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Expr::Str(s) => Some(s),
            _ => None,
        }
    }

    /// `a.b.c` as the dotted name it spells, for recognizing calls like `re.search`.
    pub fn dotted(&self) -> Option<String> {
        match self {
            Expr::Name(n) => Some(n.clone()),
            Expr::Attr(base, attr) => base.dotted().map(|b| format!("{b}.{attr}")),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Str(String),
    Int(i64),
    Op(&'static str),
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Name(n) => write!(f, "{n}"),
            Tok::Str(s) => write!(f, "{}", repr(s)),
            Tok::Int(i) => write!(f, "{i}"),
            Tok::Op(o) => write!(f, "{o}"),
        }
    }
}

/// Two-character operators first, so that `==` is not read as `=` `=`.
const OPS: &[&str] = &[
    "==", "!=", "<=", ">=", "**", "//", "(", ")", "[", "]", "{", "}", ",", ":", ".", "=", "<", ">",
    "+", "-", "*", "/", "%", "|",
];

fn tokenize(src: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        // A backslash at the end of a line joins it to the next one.
        if c == '\\'
            && chars[i + 1..]
                .iter()
                .take_while(|c| **c != '\n')
                .all(|c| c.is_whitespace())
        {
            i += 1;
            continue;
        }
        if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if i < chars.len() && (chars[i] == '\'' || chars[i] == '"') {
                let prefix = word.to_ascii_lowercase();
                if matches!(prefix.as_str(), "r" | "u" | "b" | "rb" | "br") {
                    let (s, next) = string(&chars, i, prefix.contains('r'))?;
                    out.push(Tok::Str(s));
                    i = next;
                    continue;
                }
                if prefix.contains('f') {
                    return Err("f-strings are not supported".into());
                }
            }
            out.push(Tok::Name(word));
            continue;
        }
        if c == '\'' || c == '"' {
            let (s, next) = string(&chars, i, false)?;
            out.push(Tok::Str(s));
            i = next;
            continue;
        }
        if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            if i < chars.len() && chars[i] == '.' {
                return Err("floating-point numbers are not supported".into());
            }
            let digits: String = chars[start..i].iter().filter(|c| **c != '_').collect();
            let n = digits
                .parse::<i64>()
                .map_err(|_| format!("\"{digits}\" is not a number this reader understands"))?;
            out.push(Tok::Int(n));
            continue;
        }
        let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
        match OPS.iter().find(|op| rest.starts_with(**op)) {
            Some(op) => {
                out.push(Tok::Op(op));
                i += op.chars().count();
            }
            None => return Err(format!("unexpected character '{c}'")),
        }
    }
    Ok(out)
}

/// Reads a string literal starting at the quote at `at`; returns its value and the index after it.
fn string(chars: &[char], at: usize, raw: bool) -> Result<(String, usize), String> {
    let quote = chars[at];
    let triple = chars.get(at + 1) == Some(&quote) && chars.get(at + 2) == Some(&quote);
    let mut i = if triple { at + 3 } else { at + 1 };
    let mut out = String::new();
    loop {
        let Some(&c) = chars.get(i) else {
            return Err("a string is not closed".into());
        };
        if c == quote {
            if !triple {
                return Ok((out, i + 1));
            }
            if chars.get(i + 1) == Some(&quote) && chars.get(i + 2) == Some(&quote) {
                return Ok((out, i + 3));
            }
        }
        if c == '\n' && !triple {
            return Err("a string is not closed on its line".into());
        }
        if c != '\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let Some(&e) = chars.get(i + 1) else {
            return Err("a string ends with a backslash".into());
        };
        if raw {
            // In a raw string the backslash stays, and only keeps a quote from ending it.
            out.push('\\');
            out.push(e);
            i += 2;
            continue;
        }
        i += 2;
        match e {
            '\n' => {}
            '\\' | '\'' | '"' => out.push(e),
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'v' => out.push('\u{b}'),
            'x' | 'u' | 'U' => {
                let len = match e {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let hex: String = chars.get(i..i + len).unwrap_or(&[]).iter().collect();
                let ch = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == len)
                    .and_then(char::from_u32)
                    .ok_or_else(|| format!("a bad \\{e} escape in a string"))?;
                out.push(ch);
                i += len;
            }
            '0'..='7' => {
                let mut value = e.to_digit(8).unwrap_or(0);
                let mut taken = 0;
                while taken < 2 {
                    match chars.get(i).and_then(|c| c.to_digit(8)) {
                        Some(d) => {
                            value = value * 8 + d;
                            i += 1;
                            taken += 1;
                        }
                        None => break,
                    }
                }
                out.push(char::from_u32(value).ok_or("a bad octal escape in a string")?);
            }
            'N' => return Err("\\N{...} escapes are not supported".into()),
            // Python keeps unknown escapes as they are, backslash included.
            other => {
                out.push('\\');
                out.push(other);
            }
        }
    }
}

/// A call's positional and keyword arguments.
type CallArgs = (Vec<Expr>, Vec<(String, Expr)>);

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
}

/// Deeper nesting than any configuration needs is refused rather than risk the stack.
const MAX_DEPTH: usize = 100;

/// Parses one expression; the whole text must be used.
pub fn parse(src: &str) -> Result<Expr, String> {
    let toks = tokenize(src)?;
    if toks.is_empty() {
        return Err("the expression is empty".into());
    }
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
    };
    let e = p.expr()?;
    match p.peek() {
        None => Ok(e),
        Some(t) => Err(format!("unexpected \"{t}\"")),
    }
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Some(Tok::Op(o)) if *o == op)
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Tok::Name(n)) if n == word)
    }

    fn expect_op(&mut self, op: &str) -> Result<(), String> {
        match self.next() {
            Some(Tok::Op(o)) if o == op => Ok(()),
            Some(t) => Err(format!("expected \"{op}\", found \"{t}\"")),
            None => Err(format!("expected \"{op}\" at the end")),
        }
    }

    fn expr(&mut self) -> Result<Expr, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("the expression is nested too deeply".into());
        }
        let e = self.expr_inner();
        self.depth -= 1;
        e
    }

    fn expr_inner(&mut self) -> Result<Expr, String> {
        if self.is_word("lambda") {
            self.pos += 1;
            let mut params = Vec::new();
            while !self.is_op(":") {
                match self.next() {
                    Some(Tok::Name(n)) => params.push(n),
                    Some(t) => return Err(format!("unexpected \"{t}\" in lambda parameters")),
                    None => return Err("a lambda without a body".into()),
                }
                if self.is_op(",") {
                    self.pos += 1;
                } else if !self.is_op(":") {
                    return Err("lambda parameters with defaults are not supported".into());
                }
            }
            self.pos += 1;
            let body = self.expr()?;
            return Ok(Expr::Lambda(params, Box::new(body)));
        }
        let e = self.or()?;
        if self.is_word("if") {
            return Err("conditional expressions (x if c else y) are not supported".into());
        }
        if self.is_word("for") {
            return Err("comprehensions are not supported".into());
        }
        Ok(e)
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut items = vec![self.and()?];
        while self.is_word("or") {
            self.pos += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut items = vec![self.not()?];
        while self.is_word("and") {
            self.pos += 1;
            items.push(self.not()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn not(&mut self) -> Result<Expr, String> {
        let mut negations = 0;
        while self.is_word("not") {
            self.pos += 1;
            negations += 1;
        }
        let mut e = self.comparison()?;
        for _ in 0..negations {
            e = Expr::Not(Box::new(e));
        }
        Ok(e)
    }

    fn comparison(&mut self) -> Result<Expr, String> {
        let left = self.bitor()?;
        let op = match self.peek() {
            Some(Tok::Op("==")) => CmpOp::Eq,
            Some(Tok::Op("!=")) => CmpOp::Ne,
            Some(Tok::Name(n)) if n == "in" => CmpOp::In,
            Some(Tok::Name(n)) if n == "not" => {
                if matches!(self.toks.get(self.pos + 1), Some(Tok::Name(n)) if n == "in") {
                    self.pos += 1;
                    CmpOp::NotIn
                } else {
                    return Ok(left);
                }
            }
            Some(Tok::Name(n)) if n == "is" => {
                return Err("\"is\" comparisons are not supported".into());
            }
            Some(Tok::Op("<" | ">" | "<=" | ">=")) => {
                return Err("ordering comparisons are not supported".into());
            }
            _ => return Ok(left),
        };
        self.pos += 1;
        let right = self.bitor()?;
        if matches!(self.peek(), Some(Tok::Op("==" | "!=")))
            || self.is_word("in")
            || (self.is_word("not")
                && matches!(self.toks.get(self.pos + 1), Some(Tok::Name(n)) if n == "in"))
        {
            return Err("chained comparisons are not supported".into());
        }
        Ok(Expr::Compare(Box::new(left), op, Box::new(right)))
    }

    fn bitor(&mut self) -> Result<Expr, String> {
        let mut left = self.additive()?;
        while self.is_op("|") {
            self.pos += 1;
            let right = self.additive()?;
            left = Expr::BitOr(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn additive(&mut self) -> Result<Expr, String> {
        let mut left = self.postfix()?;
        loop {
            match self.peek() {
                Some(Tok::Op("+")) => {
                    self.pos += 1;
                    let right = self.postfix()?;
                    left = Expr::Add(Box::new(left), Box::new(right));
                }
                Some(Tok::Op(op @ ("-" | "*" | "/" | "%" | "//" | "**"))) => {
                    return Err(format!("the operator \"{op}\" is not supported"));
                }
                _ => return Ok(left),
            }
        }
    }

    fn postfix(&mut self) -> Result<Expr, String> {
        let mut e = self.atom()?;
        loop {
            if self.is_op(".") {
                self.pos += 1;
                match self.next() {
                    Some(Tok::Name(n)) => e = Expr::Attr(Box::new(e), n),
                    _ => return Err("a name must follow \".\"".into()),
                }
            } else if self.is_op("(") {
                self.pos += 1;
                let (args, kwargs) = self.call_args()?;
                e = Expr::Call {
                    func: Box::new(e),
                    args,
                    kwargs,
                };
            } else if self.is_op("[") {
                return Err("subscripts are not supported".into());
            } else {
                return Ok(e);
            }
        }
    }

    fn call_args(&mut self) -> Result<CallArgs, String> {
        let mut args = Vec::new();
        let mut kwargs = Vec::new();
        while !self.is_op(")") {
            if let (Some(Tok::Name(n)), Some(Tok::Op("="))) =
                (self.peek().cloned(), self.toks.get(self.pos + 1))
            {
                self.pos += 2;
                kwargs.push((n, self.expr()?));
            } else if self.is_op("*") || self.is_op("**") {
                return Err("argument unpacking is not supported".into());
            } else {
                if !kwargs.is_empty() {
                    return Err("a positional argument after a keyword argument".into());
                }
                args.push(self.expr()?);
            }
            if self.is_op(",") {
                self.pos += 1;
            } else if !self.is_op(")") {
                return Err("expected \",\" or \")\" in a call".into());
            }
        }
        self.pos += 1;
        Ok((args, kwargs))
    }

    fn atom(&mut self) -> Result<Expr, String> {
        match self.next() {
            Some(Tok::Str(mut s)) => {
                // Adjacent string literals are one string, as in Python.
                while let Some(Tok::Str(more)) = self.peek() {
                    s.push_str(more);
                    self.pos += 1;
                }
                Ok(Expr::Str(s))
            }
            Some(Tok::Int(i)) => Ok(Expr::Int(i)),
            Some(Tok::Name(n)) => Ok(match n.as_str() {
                "True" => Expr::Bool(true),
                "False" => Expr::Bool(false),
                "None" => Expr::None,
                "lambda" | "and" | "or" | "not" | "in" | "if" | "else" | "for" | "is" => {
                    return Err(format!("unexpected \"{n}\""));
                }
                _ => Expr::Name(n),
            }),
            Some(Tok::Op("-")) => match self.next() {
                Some(Tok::Int(i)) => Ok(Expr::Int(-i)),
                _ => Err("the operator \"-\" is not supported".into()),
            },
            Some(Tok::Op("(")) => {
                if self.is_op(")") {
                    self.pos += 1;
                    return Ok(Expr::Seq(Vec::new()));
                }
                let first = self.expr()?;
                if self.is_op(")") {
                    self.pos += 1;
                    return Ok(first);
                }
                let mut items = vec![first];
                self.seq_rest(&mut items, ")")?;
                Ok(Expr::Seq(items))
            }
            Some(Tok::Op("[")) => {
                let mut items = Vec::new();
                if !self.is_op("]") {
                    items.push(self.expr()?);
                }
                self.seq_rest(&mut items, "]")?;
                Ok(Expr::Seq(items))
            }
            Some(Tok::Op("{")) => {
                if self.is_op("}") {
                    self.pos += 1;
                    return Ok(Expr::Dict(Vec::new()));
                }
                let first = self.expr()?;
                if !self.is_op(":") {
                    let mut items = vec![first];
                    self.seq_rest(&mut items, "}")?;
                    return Ok(Expr::Seq(items));
                }
                let mut pairs = Vec::new();
                let mut key = first;
                loop {
                    self.expect_op(":")?;
                    let value = self.expr()?;
                    pairs.push((key, value));
                    if self.is_op(",") {
                        self.pos += 1;
                    }
                    if self.is_op("}") {
                        self.pos += 1;
                        return Ok(Expr::Dict(pairs));
                    }
                    key = self.expr()?;
                }
            }
            Some(t) => Err(format!("unexpected \"{t}\"")),
            None => Err("the expression ends too early".into()),
        }
    }

    /// The rest of a sequence display after its first item: `, item`... then `close`.
    fn seq_rest(&mut self, items: &mut Vec<Expr>, close: &str) -> Result<(), String> {
        loop {
            if self.is_op(close) {
                self.pos += 1;
                return Ok(());
            }
            self.expect_op(",")?;
            if self.is_op(close) {
                self.pos += 1;
                return Ok(());
            }
            items.push(self.expr()?);
            if self.is_word("for") {
                return Err("comprehensions are not supported".into());
            }
        }
    }
}

/// `s` as a Python string literal, for code the importer writes (a `python3 -c` program).
pub fn repr(s: &str) -> String {
    let mut out = String::from("'");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\U{:08x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Expr {
        Expr::Str(v.into())
    }
    fn n(v: &str) -> Expr {
        Expr::Name(v.into())
    }

    #[test]
    fn string_literals_decode_as_python_does() {
        assert_eq!(parse(r"'^INBOX\.'"), Ok(s(r"^INBOX\.")));
        assert_eq!(parse(r"r'^INBOX\.'"), Ok(s(r"^INBOX\.")));
        assert_eq!(parse(r#""a\"b" 'c'"#), Ok(s("a\"bc")));
        assert_eq!(parse(r"'\\.\n\x41\u00e9'"), Ok(s("\\.\nAé")));
        assert_eq!(parse(r"r'\''"), Ok(s(r"\'")));
        assert_eq!(parse("'''a'b'''"), Ok(s("a'b")));
        assert!(parse("'open").is_err());
        assert!(parse("f'{x}'").is_err());
    }

    #[test]
    fn lambdas_comparisons_and_boolean_operators() {
        let e = parse("lambda folder: folder in ['INBOX', 'Sent',] and not folder.startswith('x')")
            .unwrap();
        let Expr::Lambda(params, body) = e else {
            panic!("not a lambda")
        };
        assert_eq!(params, ["folder"]);
        assert_eq!(
            *body,
            Expr::And(vec![
                Expr::Compare(
                    Box::new(n("folder")),
                    CmpOp::In,
                    Box::new(Expr::Seq(vec![s("INBOX"), s("Sent")]))
                ),
                Expr::Not(Box::new(Expr::Call {
                    func: Box::new(Expr::Attr(Box::new(n("folder")), "startswith".into())),
                    args: vec![s("x")],
                    kwargs: vec![],
                })),
            ])
        );
        assert!(matches!(
            parse("lambda f: f not in ('a',)").unwrap(),
            Expr::Lambda(_, b) if matches!(*b, Expr::Compare(_, CmpOp::NotIn, _))
        ));
    }

    #[test]
    fn calls_dicts_and_line_continuations() {
        let e = parse("lambda f: {'[Gmail]/Sent Mail': 'sent',\n 'x': 'y'}.get(f, f)").unwrap();
        let Expr::Lambda(_, body) = e else { panic!() };
        let Expr::Call { func, args, .. } = *body else {
            panic!()
        };
        assert!(
            matches!(*func, Expr::Attr(ref d, ref m) if m == "get" && matches!(**d, Expr::Dict(ref p) if p.len() == 2))
        );
        assert_eq!(args, vec![n("f"), n("f")]);
        let e = parse("subprocess.check_output('pass x', \\\n shell=True)").unwrap();
        assert!(
            matches!(e, Expr::Call { kwargs, .. } if kwargs == vec![("shell".to_string(), Expr::Bool(true))])
        );
    }

    #[test]
    fn what_is_not_understood_is_refused_with_a_reason() {
        for (src, why) in [
            ("lambda f: f if f else 'x'", "conditional"),
            ("[x for x in y]", "comprehension"),
            ("a[1]", "subscript"),
            ("a < b", "ordering"),
            ("a - b", "operator"),
            ("1.5", "floating"),
            ("a b", "unexpected"),
            ("", "empty"),
            (
                &format!("{}1{}", "(".repeat(500), ")".repeat(500)),
                "too deeply",
            ),
        ] {
            let e = parse(src).unwrap_err();
            assert!(e.contains(why), "{src}: {e}");
        }
    }

    #[test]
    fn repr_round_trips_through_the_reader() {
        for v in ["plain", "it's", "back\\slash", "new\nline", "é"] {
            assert_eq!(parse(&repr(v)), Ok(s(v)));
        }
    }
}
