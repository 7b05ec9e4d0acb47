//! Go `text/template`'s lexer and parser: the template text becomes a tree of
//! nodes, or an error with Go's wording (`template: NAME:LINE: unexpected …`).

use std::collections::HashMap;

use crate::model::labels::go_quote;

/// Deepest nesting of blocks and parentheses the parser accepts. Go limits
/// parentheses only (at 10000); a bound on both keeps parsing and execution
/// off the end of the stack on hostile input.
pub(super) const MAX_NESTING: usize = 100;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum T {
    Text,
    LeftDelim,
    RightDelim,
    Space,
    Eof,
    Error,
    Bool,
    Char,
    CharConstant,
    Complex,
    Assign,
    Declare,
    Field,
    Identifier,
    LeftParen,
    RightParen,
    Number,
    Pipe,
    RawString,
    Str,
    Variable,
    // Keywords.
    Block,
    Break,
    Continue,
    Dot,
    Define,
    Else,
    End,
    If,
    Nil,
    Range,
    Template,
    With,
}

impl T {
    fn is_keyword(self) -> bool {
        matches!(
            self,
            T::Block
                | T::Break
                | T::Continue
                | T::Dot
                | T::Define
                | T::Else
                | T::End
                | T::If
                | T::Nil
                | T::Range
                | T::Template
                | T::With
        )
    }
}

fn keyword(word: &str) -> Option<T> {
    Some(match word {
        "." => T::Dot,
        "block" => T::Block,
        "break" => T::Break,
        "continue" => T::Continue,
        "define" => T::Define,
        "else" => T::Else,
        "end" => T::End,
        "if" => T::If,
        "range" => T::Range,
        "nil" => T::Nil,
        "template" => T::Template,
        "with" => T::With,
        _ => return None,
    })
}

#[derive(Clone, Debug)]
struct Item {
    typ: T,
    pos: usize,
    val: String,
    line: usize,
}

impl std::fmt::Display for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.typ {
            T::Eof => f.write_str("EOF"),
            T::Error => f.write_str(&self.val),
            t if t.is_keyword() => write!(f, "<{}>", self.val),
            _ if self.val.chars().count() > 10 => {
                let head: String = self.val.chars().take(10).collect();
                write!(f, "{}...", go_quote(&head))
            }
            _ => f.write_str(&go_quote(&self.val)),
        }
    }
}

/// Go's `%#U`: `U+00A0`, with the character after it when it is printable.
pub(super) fn sharp_u(c: char) -> String {
    if is_print(c) {
        format!("U+{:04X} '{c}'", c as u32)
    } else {
        format!("U+{:04X}", c as u32)
    }
}

/// Go's `strconv.IsPrint`, near enough: graphic characters and the ASCII space.
pub(super) fn is_print(c: char) -> bool {
    if c.is_ascii() {
        return (' '..='~').contains(&c);
    }
    !c.is_control()
        && !c.is_whitespace()
        && !matches!(c as u32, 0xAD | 0x200B..=0x200F | 0x2028..=0x202E | 0xFEFF | 0xFFF9..=0xFFFB)
        && !matches!(c as u32, 0xE000..=0xF8FF | 0xF0000..)
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphabetic() || c.is_numeric()
}

fn has_left_trim(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0] == b'-' && is_space(b[1] as char)
}

fn has_right_trim(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && is_space(b[0] as char) && b[1] == b'-'
}

struct Lexer<'a> {
    input: &'a str,
    pos: usize,
    start: usize,
    line: usize,
    start_line: usize,
    paren_depth: i64,
    items: Vec<Item>,
}

enum State {
    Text,
    LeftDelim,
    Comment,
    Inside,
    RightDelim,
    Done,
}

fn lex(input: &str) -> Vec<Item> {
    let mut l = Lexer {
        input,
        pos: 0,
        start: 0,
        line: 1,
        start_line: 1,
        paren_depth: 0,
        items: Vec::new(),
    };
    let mut state = State::Text;
    loop {
        state = match state {
            State::Text => l.text(),
            State::LeftDelim => l.left_delim(),
            State::Comment => l.comment(),
            State::Inside => l.inside(),
            State::RightDelim => l.right_delim(),
            State::Done => return l.items,
        };
    }
}

impl Lexer<'_> {
    fn next(&mut self) -> Option<char> {
        let c = self.input[self.pos..].chars().next()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn peek(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }

    fn backup(&mut self, c: Option<char>) {
        if let Some(c) = c {
            self.pos -= c.len_utf8();
        }
    }

    fn newlines(&self) -> usize {
        self.input.as_bytes()[self.start..self.pos]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
    }

    fn emit(&mut self, typ: T) {
        self.items.push(Item {
            typ,
            pos: self.start,
            val: self.input[self.start..self.pos].to_string(),
            line: self.start_line,
        });
        self.ignore();
    }

    fn ignore(&mut self) {
        self.line += self.newlines();
        self.start = self.pos;
        self.start_line = self.line;
    }

    fn error(&mut self, msg: String) -> State {
        self.items.push(Item {
            typ: T::Error,
            pos: self.start,
            val: msg,
            line: self.start_line,
        });
        State::Done
    }

    fn accept(&mut self, valid: &str) -> bool {
        match self.peek() {
            Some(c) if valid.contains(c) => {
                self.pos += c.len_utf8();
                true
            }
            _ => false,
        }
    }

    fn accept_run(&mut self, valid: &str) {
        while self.accept(valid) {}
    }

    fn at_right_delim(&self) -> (bool, bool) {
        let rest = &self.input[self.pos..];
        if has_right_trim(rest) && rest[2..].starts_with("}}") {
            (true, true)
        } else {
            (rest.starts_with("}}"), false)
        }
    }

    fn at_terminator(&self) -> bool {
        match self.peek() {
            None => true,
            Some(c) => is_space(c) || matches!(c, '.' | ',' | '|' | ':' | ')' | '(' | '}'),
        }
    }

    fn text(&mut self) -> State {
        let Some(x) = self.input[self.pos..].find("{{") else {
            self.pos = self.input.len();
            if self.pos > self.start {
                self.emit(T::Text);
            }
            self.emit(T::Eof);
            return State::Done;
        };
        if x > 0 {
            self.pos += x;
            let trim = if has_left_trim(&self.input[self.pos + 2..]) {
                let s = &self.input[self.start..self.pos];
                s.len() - s.trim_end_matches(is_space).len()
            } else {
                0
            };
            self.pos -= trim;
            if self.pos > self.start {
                self.emit(T::Text);
            }
            self.pos += trim;
            self.ignore();
        }
        State::LeftDelim
    }

    fn left_delim(&mut self) -> State {
        self.pos += 2;
        let after = if has_left_trim(&self.input[self.pos..]) {
            2
        } else {
            0
        };
        if self.input[self.pos + after..].starts_with("/*") {
            self.pos += after;
            self.ignore();
            return State::Comment;
        }
        self.emit(T::LeftDelim);
        self.pos += after;
        self.ignore();
        self.paren_depth = 0;
        State::Inside
    }

    fn comment(&mut self) -> State {
        self.pos += 2;
        let Some(x) = self.input[self.pos..].find("*/") else {
            return self.error("unclosed comment".into());
        };
        self.pos += x + 2;
        let (delim, trim) = self.at_right_delim();
        if !delim {
            return self.error("comment ends before closing delimiter".into());
        }
        if trim {
            self.pos += 2;
        }
        self.pos += 2;
        if trim {
            self.skip_leading_space();
        }
        self.ignore();
        State::Text
    }

    fn skip_leading_space(&mut self) {
        let rest = &self.input[self.pos..];
        self.pos += rest.len() - rest.trim_start_matches(is_space).len();
    }

    fn right_delim(&mut self) -> State {
        let (_, trim) = self.at_right_delim();
        if trim {
            self.pos += 2;
            self.ignore();
        }
        self.pos += 2;
        self.emit(T::RightDelim);
        if trim {
            self.skip_leading_space();
            self.ignore();
        }
        State::Text
    }

    fn inside(&mut self) -> State {
        let (delim, _) = self.at_right_delim();
        if delim {
            if self.paren_depth == 0 {
                return State::RightDelim;
            }
            return self.error("unclosed left paren".into());
        }
        let Some(c) = self.next() else {
            return self.error("unclosed action".into());
        };
        match c {
            _ if is_space(c) => {
                self.backup(Some(c));
                return self.space();
            }
            '=' => self.emit(T::Assign),
            ':' => {
                if self.next() != Some('=') {
                    return self.error("expected :=".into());
                }
                self.emit(T::Declare);
            }
            '|' => self.emit(T::Pipe),
            '"' => return self.quote(),
            '`' => return self.raw_quote(),
            '$' => return self.field_or_variable(T::Variable),
            '\'' => return self.char_constant(),
            '.' if !self.peek().is_some_and(|c| c.is_ascii_digit()) => {
                return self.field_or_variable(T::Field)
            }
            '.' | '+' | '-' | '0'..='9' => {
                self.backup(Some(c));
                return self.number();
            }
            _ if is_alnum(c) => {
                self.backup(Some(c));
                return self.identifier();
            }
            '(' => {
                self.emit(T::LeftParen);
                self.paren_depth += 1;
            }
            ')' => {
                self.emit(T::RightParen);
                self.paren_depth -= 1;
                if self.paren_depth < 0 {
                    return self.error(format!("unexpected right paren {}", sharp_u(c)));
                }
            }
            _ if c.is_ascii() && is_print(c) => self.emit(T::Char),
            _ => return self.error(format!("unrecognized character in action: {}", sharp_u(c))),
        }
        State::Inside
    }

    fn space(&mut self) -> State {
        let mut n = 0;
        while self.peek().is_some_and(is_space) {
            self.pos += 1;
            n += 1;
        }
        let before = &self.input[self.pos - 1..];
        if has_right_trim(before) && before[2..].starts_with("}}") {
            self.pos -= 1;
            if n == 1 {
                return State::RightDelim;
            }
        }
        self.emit(T::Space);
        State::Inside
    }

    fn identifier(&mut self) -> State {
        while self.peek().is_some_and(is_alnum) {
            self.next();
        }
        if !self.at_terminator() {
            let c = self.peek().unwrap_or('\0');
            return self.error(format!("bad character {}", sharp_u(c)));
        }
        let word = &self.input[self.start..self.pos];
        let typ = match keyword(word) {
            Some(k) => k,
            None if word == "true" || word == "false" => T::Bool,
            None => T::Identifier,
        };
        self.emit(typ);
        State::Inside
    }

    fn field_or_variable(&mut self, typ: T) -> State {
        if self.at_terminator() {
            self.emit(if typ == T::Variable {
                T::Variable
            } else {
                T::Dot
            });
            return State::Inside;
        }
        while self.peek().is_some_and(is_alnum) {
            self.next();
        }
        if !self.at_terminator() {
            let c = self.peek().unwrap_or('\0');
            return self.error(format!("bad character {}", sharp_u(c)));
        }
        self.emit(typ);
        State::Inside
    }

    fn char_constant(&mut self) -> State {
        loop {
            match self.next() {
                Some('\\') => match self.next() {
                    None | Some('\n') => {
                        return self.error("unterminated character constant".into())
                    }
                    _ => {}
                },
                None | Some('\n') => return self.error("unterminated character constant".into()),
                Some('\'') => break,
                _ => {}
            }
        }
        self.emit(T::CharConstant);
        State::Inside
    }

    fn quote(&mut self) -> State {
        loop {
            match self.next() {
                Some('\\') => match self.next() {
                    None | Some('\n') => return self.error("unterminated quoted string".into()),
                    _ => {}
                },
                None | Some('\n') => return self.error("unterminated quoted string".into()),
                Some('"') => break,
                _ => {}
            }
        }
        self.emit(T::Str);
        State::Inside
    }

    fn raw_quote(&mut self) -> State {
        loop {
            match self.next() {
                None => return self.error("unterminated raw quoted string".into()),
                Some('`') => break,
                _ => {}
            }
        }
        self.emit(T::RawString);
        State::Inside
    }

    fn number(&mut self) -> State {
        if !self.scan_number() {
            let bad = go_quote(&self.input[self.start..self.pos]);
            return self.error(format!("bad number syntax: {bad}"));
        }
        if matches!(self.peek(), Some('+' | '-')) {
            if !self.scan_number() || !self.input[..self.pos].ends_with('i') {
                let bad = go_quote(&self.input[self.start..self.pos]);
                return self.error(format!("bad number syntax: {bad}"));
            }
            self.emit(T::Complex);
        } else {
            self.emit(T::Number);
        }
        State::Inside
    }

    fn scan_number(&mut self) -> bool {
        self.accept("+-");
        let mut digits = "0123456789_";
        if self.accept("0") {
            if self.accept("xX") {
                digits = "0123456789abcdefABCDEF_";
            } else if self.accept("oO") {
                digits = "01234567_";
            } else if self.accept("bB") {
                digits = "01_";
            }
        }
        self.accept_run(digits);
        if self.accept(".") {
            self.accept_run(digits);
        }
        if digits.len() == 11 && self.accept("eE") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        if digits.len() == 23 && self.accept("pP") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        self.accept("i");
        if self.peek().is_some_and(is_alnum) {
            self.next();
            return false;
        }
        true
    }
}

/// A numeric constant as Go's parser reads it: each of the forms it fits.
#[derive(Clone, Debug)]
pub(super) struct Number {
    pub text: String,
    pub int: Option<i64>,
    pub uint: Option<u64>,
    pub float: Option<f64>,
    pub complex: bool,
}

#[derive(Clone, Debug)]
pub(super) enum Arg {
    Bool(usize, bool),
    Dot(usize),
    Nil(usize),
    Number(usize, Number),
    /// Position, the literal as written, its value.
    Str(usize, String, String),
    /// `.A.B`: the field names.
    Field(usize, Vec<String>),
    /// `$x.A.B`: the variable's name (with `$`), then field names.
    Variable(usize, Vec<String>),
    Identifier(usize, String),
    Pipe(Box<Pipe>),
    /// `(pipeline).A.B`.
    Chain(usize, Box<Arg>, Vec<String>),
}

impl Arg {
    pub fn pos(&self) -> usize {
        match self {
            Arg::Bool(p, _)
            | Arg::Dot(p)
            | Arg::Nil(p)
            | Arg::Number(p, _)
            | Arg::Str(p, _, _)
            | Arg::Field(p, _)
            | Arg::Variable(p, _)
            | Arg::Identifier(p, _)
            | Arg::Chain(p, _, _) => *p,
            Arg::Pipe(p) => p.pos,
        }
    }
}

impl std::fmt::Display for Arg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Arg::Bool(_, b) => write!(f, "{b}"),
            Arg::Dot(_) => f.write_str("."),
            Arg::Nil(_) => f.write_str("nil"),
            Arg::Number(_, n) => f.write_str(&n.text),
            Arg::Str(_, quoted, _) => f.write_str(quoted),
            Arg::Field(_, idents) => {
                for i in idents {
                    write!(f, ".{i}")?;
                }
                Ok(())
            }
            Arg::Variable(_, idents) => f.write_str(&idents.join(".")),
            Arg::Identifier(_, name) => f.write_str(name),
            Arg::Pipe(p) => write!(f, "({p})"),
            Arg::Chain(_, node, fields) => {
                match node.as_ref() {
                    Arg::Pipe(p) => write!(f, "({p})")?,
                    other => write!(f, "{other}")?,
                }
                for i in fields {
                    write!(f, ".{i}")?;
                }
                Ok(())
            }
        }
    }
}

#[derive(Clone, Debug)]
pub(super) struct Cmd {
    pub pos: usize,
    pub args: Vec<Arg>,
}

impl std::fmt::Display for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, a) in self.args.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
pub(super) struct Pipe {
    pub pos: usize,
    pub is_assign: bool,
    pub decl: Vec<String>,
    pub cmds: Vec<Cmd>,
}

impl std::fmt::Display for Pipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.decl.is_empty() {
            f.write_str(&self.decl.join(", "))?;
            f.write_str(if self.is_assign { " = " } else { " := " })?;
        }
        for (i, c) in self.cmds.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Control {
    If,
    Range,
    With,
}

#[derive(Clone, Debug)]
pub(super) enum Node {
    Text(String),
    Action(Pipe),
    Control {
        kind: Control,
        pipe: Pipe,
        list: Vec<Node>,
        else_list: Option<Vec<Node>>,
    },
    Template {
        pos: usize,
        name: String,
        pipe: Option<Pipe>,
    },
    Break,
    Continue,
}

/// A parsed template and the ones it defines.
#[derive(Debug)]
pub(super) struct Templates {
    pub name: String,
    pub text: String,
    pub root: Vec<Node>,
    pub defined: HashMap<String, Vec<Node>>,
}

impl Templates {
    /// `NAME:LINE:COL` of a byte position, as Go's `ErrorContext` gives it:
    /// the column is the byte offset in the line, counted from 0.
    pub fn location(&self, pos: usize) -> String {
        let before = &self.text.as_bytes()[..pos.min(self.text.len())];
        let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        let col = match before.iter().rposition(|&b| b == b'\n') {
            Some(nl) => pos - (nl + 1),
            None => pos,
        };
        format!("{}:{line}:{col}", self.name)
    }
}

enum Parsed {
    Node(Node),
    Else,
    End,
}

struct Parser<'a> {
    name: &'a str,
    items: Vec<Item>,
    i: usize,
    vars: Vec<String>,
    range_depth: usize,
    action_line: usize,
    depth: usize,
    is_function: &'a dyn Fn(&str) -> bool,
    defined: HashMap<String, Vec<Node>>,
}

type PResult<T> = Result<T, String>;

/// Parses `text` as the template `name`; `is_function` says which names are
/// functions.
pub(super) fn parse(
    name: &str,
    text: &str,
    is_function: &dyn Fn(&str) -> bool,
) -> Result<Templates, String> {
    let mut p = Parser {
        name,
        items: lex(text),
        i: 0,
        vars: vec!["$".to_string()],
        range_depth: 0,
        action_line: 0,
        depth: 0,
        is_function,
        defined: HashMap::new(),
    };
    let root = p.parse_top()?;
    Ok(Templates {
        name: name.to_string(),
        text: text.to_string(),
        root,
        defined: p.defined,
    })
}

impl Parser<'_> {
    fn next(&mut self) -> Item {
        let item = self.items.get(self.i).cloned().unwrap_or(Item {
            typ: T::Eof,
            pos: 0,
            val: String::new(),
            line: 0,
        });
        if self.i < self.items.len() {
            self.i += 1;
        }
        item
    }

    fn backup(&mut self) {
        self.i -= 1;
    }

    fn peek(&self) -> T {
        self.items.get(self.i).map_or(T::Eof, |t| t.typ)
    }

    fn peek_item(&self) -> Item {
        self.items.get(self.i).cloned().unwrap_or(Item {
            typ: T::Eof,
            pos: 0,
            val: String::new(),
            line: 0,
        })
    }

    fn next_non_space(&mut self) -> Item {
        loop {
            let t = self.next();
            if t.typ != T::Space {
                return t;
            }
        }
    }

    fn peek_non_space(&mut self) -> Item {
        let t = self.next_non_space();
        self.backup();
        t
    }

    /// The line of the token last read, for error messages.
    fn line(&self) -> usize {
        self.items
            .get(self.i.saturating_sub(1))
            .map_or(1, |t| t.line)
    }

    fn errorf(&self, msg: impl std::fmt::Display) -> String {
        format!("template: {}:{}: {msg}", self.name, self.line())
    }

    fn unexpected(&self, item: &Item, context: &str) -> String {
        if item.typ == T::Error {
            let mut extra = String::new();
            if self.action_line != 0 && self.action_line != item.line {
                extra = format!(" in action started at {}:{}", self.name, self.action_line);
                if item.val.ends_with(" action") {
                    extra = extra[" in action".len()..].to_string();
                }
            }
            return self.errorf(format!("{item}{extra}"));
        }
        self.errorf(format!("unexpected {item} in {context}"))
    }

    fn expect(&mut self, typ: T, context: &str) -> PResult<Item> {
        let t = self.next_non_space();
        if t.typ != typ {
            return Err(self.unexpected(&t, context));
        }
        Ok(t)
    }

    fn deeper(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(self.errorf("max expression depth exceeded"));
        }
        Ok(())
    }

    fn parse_top(&mut self) -> PResult<Vec<Node>> {
        let mut root = Vec::new();
        while self.peek() != T::Eof {
            if self.peek() == T::LeftDelim {
                let delim_at = self.i;
                self.next();
                if self.next_non_space().typ == T::Define {
                    self.parse_definition()?;
                    continue;
                }
                self.i = delim_at;
            }
            match self.text_or_action()? {
                Parsed::Node(n) => root.push(n),
                Parsed::End => return Err(self.errorf("unexpected {{end}}")),
                Parsed::Else => return Err(self.errorf("unexpected {{else}}")),
            }
        }
        Ok(root)
    }

    fn parse_definition(&mut self) -> PResult<()> {
        let t = self.next_non_space();
        let name = self.template_name(&t, "define clause")?;
        self.expect(T::RightDelim, "define clause")?;
        let saved = (
            std::mem::replace(&mut self.vars, vec!["$".to_string()]),
            std::mem::take(&mut self.range_depth),
        );
        let (list, end) = self.item_list()?;
        (self.vars, self.range_depth) = saved;
        if !matches!(end, Parsed::End) {
            return Err(self.errorf("unexpected {{else}} in define clause"));
        }
        self.add_definition(name, list)
    }

    fn add_definition(&mut self, name: String, list: Vec<Node>) -> PResult<()> {
        let empty = |l: &[Node]| {
            l.iter()
                .all(|n| matches!(n, Node::Text(t) if t.trim_matches(is_space).is_empty()))
        };
        match self.defined.get(&name) {
            Some(old) if !empty(old) => {
                if !empty(&list) {
                    return Err(self.errorf(format!(
                        "template: multiple definition of template {}",
                        go_quote(&name)
                    )));
                }
            }
            _ => {
                self.defined.insert(name, list);
            }
        }
        Ok(())
    }

    fn template_name(&self, t: &Item, context: &str) -> PResult<String> {
        match t.typ {
            T::Str | T::RawString => unquote(&t.val).map_err(|e| self.errorf(e)),
            _ => Err(self.unexpected(t, context)),
        }
    }

    fn item_list(&mut self) -> PResult<(Vec<Node>, Parsed)> {
        let mut list = Vec::new();
        while self.peek_non_space().typ != T::Eof {
            match self.text_or_action()? {
                Parsed::Node(n) => list.push(n),
                other => return Ok((list, other)),
            }
        }
        Err(self.errorf("unexpected EOF"))
    }

    fn text_or_action(&mut self) -> PResult<Parsed> {
        let t = self.next_non_space();
        match t.typ {
            T::Text => Ok(Parsed::Node(Node::Text(t.val))),
            T::LeftDelim => {
                self.action_line = t.line;
                let r = self.action();
                self.action_line = 0;
                r
            }
            _ => Err(self.unexpected(&t, "input")),
        }
    }

    fn action(&mut self) -> PResult<Parsed> {
        let t = self.next_non_space();
        match t.typ {
            T::Block => return self.block_control().map(Parsed::Node),
            T::Break => return self.break_control("break").map(Parsed::Node),
            T::Continue => return self.break_control("continue").map(Parsed::Node),
            T::Else => return self.else_control(),
            T::End => {
                self.expect(T::RightDelim, "end")?;
                return Ok(Parsed::End);
            }
            T::If => return self.control(Control::If).map(Parsed::Node),
            T::Range => return self.control(Control::Range).map(Parsed::Node),
            T::Template => return self.template_control().map(Parsed::Node),
            T::With => return self.control(Control::With).map(Parsed::Node),
            _ => {}
        }
        self.backup();
        Ok(Parsed::Node(Node::Action(
            self.pipeline("command", T::RightDelim)?,
        )))
    }

    fn break_control(&mut self, word: &str) -> PResult<Node> {
        let t = self.next_non_space();
        if t.typ != T::RightDelim {
            return Err(self.unexpected(&t, &format!("{{{{{word}}}}}")));
        }
        if self.range_depth == 0 {
            return Err(self.errorf(format!("{{{{{word}}}}} outside {{{{range}}}}")));
        }
        Ok(if word == "break" {
            Node::Break
        } else {
            Node::Continue
        })
    }

    fn else_control(&mut self) -> PResult<Parsed> {
        let peek = self.peek_non_space();
        if peek.typ == T::If || peek.typ == T::With {
            // "{{else if …" and "{{else with …" chain; the keyword stays for the caller.
            return Ok(Parsed::Else);
        }
        self.expect(T::RightDelim, "else")?;
        Ok(Parsed::Else)
    }

    fn control(&mut self, kind: Control) -> PResult<Node> {
        self.deeper()?;
        let vars = self.vars.len();
        let context = match kind {
            Control::If => "if",
            Control::Range => "range",
            Control::With => "with",
        };
        let pipe = self.pipeline(context, T::RightDelim)?;
        if kind == Control::Range {
            self.range_depth += 1;
        }
        let (list, next) = self.item_list()?;
        if kind == Control::Range {
            self.range_depth -= 1;
        }
        let mut else_list = None;
        if let Parsed::Else = next {
            let chained = match (kind, self.peek()) {
                (Control::If, T::If) => Some(Control::If),
                (Control::With, T::With) => Some(Control::With),
                _ => None,
            };
            if let Some(k) = chained {
                // The chained control consumes the shared {{end}}.
                self.next();
                else_list = Some(vec![self.control(k)?]);
            } else {
                let (l, next) = self.item_list()?;
                if !matches!(next, Parsed::End) {
                    return Err(self.errorf("expected end; found {{else}}"));
                }
                else_list = Some(l);
            }
        }
        self.vars.truncate(vars);
        self.depth -= 1;
        Ok(Node::Control {
            kind,
            pipe,
            list,
            else_list,
        })
    }

    fn block_control(&mut self) -> PResult<Node> {
        let t = self.next_non_space();
        let name = self.template_name(&t, "block clause")?;
        let pipe = self.pipeline("block clause", T::RightDelim)?;
        let saved = (
            std::mem::replace(&mut self.vars, vec!["$".to_string()]),
            std::mem::take(&mut self.range_depth),
        );
        self.deeper()?;
        let (list, end) = self.item_list()?;
        self.depth -= 1;
        (self.vars, self.range_depth) = saved;
        if !matches!(end, Parsed::End) {
            return Err(self.errorf("unexpected {{else}} in block clause"));
        }
        self.add_definition(name.clone(), list)?;
        Ok(Node::Template {
            pos: t.pos,
            name,
            pipe: Some(pipe),
        })
    }

    fn template_control(&mut self) -> PResult<Node> {
        let t = self.next_non_space();
        let name = self.template_name(&t, "template clause")?;
        let pipe = if self.next_non_space().typ != T::RightDelim {
            self.backup();
            Some(self.pipeline("template clause", T::RightDelim)?)
        } else {
            None
        };
        Ok(Node::Template {
            pos: t.pos,
            name,
            pipe,
        })
    }

    fn pipeline(&mut self, context: &str, end: T) -> PResult<Pipe> {
        let start = self.peek_non_space();
        let mut pipe = Pipe {
            pos: start.pos,
            is_assign: false,
            decl: Vec::new(),
            cmds: Vec::new(),
        };
        // Declarations: `$x :=`, `$x =`, and range's `$i, $e :=`.
        'decls: loop {
            let v = self.peek_non_space();
            if v.typ != T::Variable {
                break;
            }
            self.next_non_space();
            let after_var = self.peek();
            let next = self.peek_non_space();
            match next.typ {
                T::Assign | T::Declare => {
                    pipe.is_assign = next.typ == T::Assign;
                    self.next_non_space();
                    pipe.decl.push(v.val.clone());
                    self.vars.push(v.val);
                }
                T::Char if next.val == "," => {
                    self.next_non_space();
                    pipe.decl.push(v.val.clone());
                    self.vars.push(v.val);
                    if context == "range" && pipe.decl.len() < 2 {
                        match self.peek_non_space().typ {
                            T::Variable | T::RightDelim | T::RightParen => continue 'decls,
                            _ => return Err(self.errorf("range can only initialize variables")),
                        }
                    }
                    return Err(self.errorf(format!("too many declarations in {context}")));
                }
                _ if after_var == T::Space => {
                    // Back up over the space and the variable.
                    self.backup();
                    self.backup();
                }
                _ => self.backup(),
            }
            break;
        }
        loop {
            let t = self.next_non_space();
            if t.typ == end {
                self.check_pipeline(&pipe, context)?;
                return Ok(pipe);
            }
            match t.typ {
                T::Bool
                | T::CharConstant
                | T::Complex
                | T::Dot
                | T::Field
                | T::Identifier
                | T::Number
                | T::Nil
                | T::RawString
                | T::Str
                | T::Variable
                | T::LeftParen => {
                    self.backup();
                    let cmd = self.command()?;
                    pipe.cmds.push(cmd);
                }
                _ => return Err(self.unexpected(&t, context)),
            }
        }
    }

    fn check_pipeline(&self, pipe: &Pipe, context: &str) -> PResult<()> {
        if pipe.cmds.is_empty() {
            return Err(self.errorf(format!("missing value for {context}")));
        }
        for (i, c) in pipe.cmds.iter().enumerate().skip(1) {
            if matches!(
                c.args.first(),
                Some(Arg::Bool(..) | Arg::Dot(_) | Arg::Nil(_) | Arg::Number(..) | Arg::Str(..))
            ) {
                return Err(self.errorf(format!(
                    "non executable command in pipeline stage {}",
                    i + 1
                )));
            }
        }
        Ok(())
    }

    fn command(&mut self) -> PResult<Cmd> {
        let mut cmd = Cmd {
            pos: self.peek_non_space().pos,
            args: Vec::new(),
        };
        loop {
            self.peek_non_space();
            if let Some(op) = self.operand()? {
                cmd.args.push(op);
            }
            let t = self.next();
            match t.typ {
                T::Space => continue,
                T::RightDelim | T::RightParen => self.backup(),
                T::Pipe => {}
                _ => return Err(self.unexpected(&t, "operand")),
            }
            break;
        }
        if cmd.args.is_empty() {
            return Err(self.errorf("empty command"));
        }
        Ok(cmd)
    }

    fn operand(&mut self) -> PResult<Option<Arg>> {
        let Some(node) = self.term()? else {
            return Ok(None);
        };
        if self.peek() != T::Field {
            return Ok(Some(node));
        }
        let chain_pos = self.peek_item().pos;
        let mut fields = Vec::new();
        while self.peek() == T::Field {
            let f = self.next();
            fields.push(f.val[1..].to_string());
        }
        Ok(Some(match node {
            Arg::Field(_, mut idents) => {
                idents.extend(fields);
                Arg::Field(chain_pos, idents)
            }
            Arg::Variable(_, mut idents) => {
                idents.extend(fields);
                Arg::Variable(chain_pos, idents)
            }
            Arg::Bool(..) | Arg::Str(..) | Arg::Number(..) | Arg::Nil(_) | Arg::Dot(_) => {
                return Err(self.errorf(format!(
                    "unexpected . after term {}",
                    go_quote(&node.to_string())
                )));
            }
            other => Arg::Chain(chain_pos, Box::new(other), fields),
        }))
    }

    fn term(&mut self) -> PResult<Option<Arg>> {
        let t = self.next_non_space();
        Ok(Some(match t.typ {
            T::Identifier => {
                if !(self.is_function)(&t.val) {
                    return Err(self.errorf(format!("function {} not defined", go_quote(&t.val))));
                }
                Arg::Identifier(t.pos, t.val)
            }
            T::Dot => Arg::Dot(t.pos),
            T::Nil => Arg::Nil(t.pos),
            T::Variable => {
                if !self.vars.contains(&t.val) {
                    return Err(self.errorf(format!("undefined variable {}", go_quote(&t.val))));
                }
                Arg::Variable(t.pos, vec![t.val])
            }
            T::Field => Arg::Field(t.pos, vec![t.val[1..].to_string()]),
            T::Bool => Arg::Bool(t.pos, t.val == "true"),
            T::CharConstant | T::Complex | T::Number => {
                let n = number(&t).map_err(|e| self.errorf(e))?;
                Arg::Number(t.pos, n)
            }
            T::LeftParen => {
                self.deeper()?;
                let p = self.pipeline("parenthesized pipeline", T::RightParen)?;
                self.depth -= 1;
                Arg::Pipe(Box::new(p))
            }
            T::Str | T::RawString => {
                let s = unquote(&t.val).map_err(|e| self.errorf(e))?;
                Arg::Str(t.pos, t.val, s)
            }
            _ => {
                self.backup();
                return Ok(None);
            }
        }))
    }
}

/// Go's `strconv.Unquote` for the literals the lexer finds.
pub(super) fn unquote(s: &str) -> Result<String, String> {
    let syntax = || "invalid syntax".to_string();
    if let Some(raw) = s.strip_prefix('`') {
        let raw = raw.strip_suffix('`').ok_or_else(syntax)?;
        return Ok(raw.replace('\r', ""));
    }
    let quote = s.chars().next().ok_or_else(syntax)?;
    let body = s
        .strip_prefix(quote)
        .and_then(|b| b.strip_suffix(quote))
        .filter(|_| s.len() >= 2)
        .ok_or_else(syntax)?;
    let mut out = String::new();
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c == quote && quote == '"' {
            return Err(syntax());
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let e = chars.next().ok_or_else(syntax)?;
        let hex = |chars: &mut std::iter::Peekable<std::str::Chars>, n: usize| {
            let mut v: u32 = 0;
            for _ in 0..n {
                let d = chars
                    .next()
                    .and_then(|c| c.to_digit(16))
                    .ok_or_else(syntax)?;
                v = v * 16 + d;
            }
            Ok::<u32, String>(v)
        };
        match e {
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'v' => out.push('\u{b}'),
            '\\' => out.push('\\'),
            '\'' if quote == '\'' => out.push('\''),
            '"' if quote == '"' => out.push('"'),
            'x' => {
                let v = hex(&mut chars, 2)?;
                if quote == '\'' {
                    out.push(char::from_u32(v).ok_or_else(syntax)?);
                } else {
                    // A byte escape; bytes that are not valid UTF-8 become U+FFFD here.
                    out.push(if v < 0x80 {
                        char::from(v as u8)
                    } else {
                        '\u{FFFD}'
                    });
                }
            }
            'u' => out.push(char::from_u32(hex(&mut chars, 4)?).ok_or_else(syntax)?),
            'U' => out.push(char::from_u32(hex(&mut chars, 8)?).ok_or_else(syntax)?),
            '0'..='7' => {
                let mut v = e.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    v = v * 8
                        + chars
                            .next()
                            .and_then(|c| c.to_digit(8))
                            .ok_or_else(syntax)?;
                }
                if v > 255 {
                    return Err(syntax());
                }
                out.push(if v < 0x80 {
                    char::from(v as u8)
                } else {
                    '\u{FFFD}'
                });
            }
            _ => return Err(syntax()),
        }
    }
    if quote == '\'' && out.chars().count() != 1 {
        return Err(syntax());
    }
    Ok(out)
}

/// Go's `strconv.ParseInt(s, 0, 64)` grammar: sign, base prefix, underscores
/// only after a prefix or between digits.
fn parse_go_int(s: &str) -> Option<(bool, u64)> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.to_string(), true)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.to_string(), true)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.to_string(), true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_string(), true)
    } else {
        (10, lower.clone(), false)
    };
    if digits.contains('_') {
        // Underscores must separate digits (or follow the prefix).
        let b = digits.as_bytes();
        let ok = !digits.ends_with('_')
            && !digits.contains("__")
            && (prefixed || !digits.starts_with('_'))
            && !b.is_empty();
        if !ok {
            return None;
        }
    }
    let clean: String = digits.chars().filter(|&c| c != '_').collect();
    if clean.is_empty() {
        return None;
    }
    u64::from_str_radix(&clean, radix).ok().map(|v| (neg, v))
}

fn number(t: &Item) -> Result<Number, String> {
    let text = t.val.clone();
    let mut n = Number {
        text: text.clone(),
        int: None,
        uint: None,
        float: None,
        complex: false,
    };
    if t.typ == T::CharConstant {
        let s = unquote(&text).map_err(|e| {
            // One character, then more before the closing quote.
            let one = text.chars().nth(1).is_some_and(|c| c != '\\') && text.chars().count() > 3;
            if one {
                format!("malformed character constant: {text}")
            } else {
                e
            }
        })?;
        let c = s.chars().next().ok_or("invalid syntax")? as u32;
        n.int = Some(c as i64);
        n.uint = Some(c as u64);
        n.float = Some(c as f64);
        return Ok(n);
    }
    if t.typ == T::Complex || text.ends_with('i') {
        // Complex constants parse in Go but nothing here can use them.
        n.complex = true;
        return Ok(n);
    }
    if let Some((neg, v)) = parse_go_int(&text) {
        if !neg {
            n.uint = Some(v);
        }
        if neg {
            if v <= 1u64 << 63 {
                n.int = Some((v as i128).wrapping_neg() as i64);
            }
        } else if v <= i64::MAX as u64 {
            n.int = Some(v as i64);
        }
        n.float = Some(if neg { -(v as f64) } else { v as f64 });
        return Ok(n);
    }
    // Go rejects a hex float without its 'p' exponent; parse_go_float does too.
    let unsigned = text.trim_start_matches(['+', '-']);
    let f = if unsigned.to_ascii_lowercase().starts_with("0x") {
        crate::model::number::parse_go_float(text.as_bytes())
    } else if text.contains('_') {
        None
    } else {
        crate::model::number::parse_go_float(text.as_bytes())
            .filter(|f| f.is_finite() && !unsigned.starts_with(|c: char| c.is_alphabetic()))
    };
    let Some(f) = f else {
        return Err(format!("illegal number syntax: {}", go_quote(&text)));
    };
    if !text.contains(['.', 'e', 'E', 'p', 'P']) {
        // Integer digits that fit no integer type.
        return Err(format!("integer overflow: {}", go_quote(&text)));
    }
    n.float = Some(f);
    if f == f.trunc() && f.abs() < 9.2e18 {
        n.int = Some(f as i64);
        if f >= 0.0 {
            n.uint = Some(f as u64);
        }
    }
    Ok(n)
}
