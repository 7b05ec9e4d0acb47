//! A YAML document as a tree of nodes that know their line and column, which
//! rule-file errors must name as Prometheus's do (yaml.v3 nodes carry them).
//!
//! serde_norway reports a position only with an error: a visitor's error gets
//! the mark of the node it was visiting. So each scalar is read by a visitor
//! that keeps the value and then fails on purpose; the seed takes the position
//! from that error and carries on with the value. The event for the scalar has
//! been consumed by then, so the deserializer's state stays consistent. A mapping
//! or sequence takes the position of its first child: for a block mapping this
//! is where yaml.v3 puts the mapping too (its first key). The position is read
//! from the error's text ("… at line L column C"), since the seed sees the
//! error only as its deserializer's generic error type; the tests below pin
//! that text.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// 1-based line and column, as Prometheus prints them; `0:0` is a node the YAML
/// does not have (yaml.v3's zero node).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Int(String),
    Float(String),
    Str(String),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub kind: Kind,
    pub pos: Position,
}

impl Node {
    /// yaml.v3's short tag of the node, as its type errors name it (`!!str`).
    pub fn tag(&self) -> &'static str {
        match &self.kind {
            Kind::Scalar(Scalar::Null) => "!!null",
            Kind::Scalar(Scalar::Bool(_)) => "!!bool",
            Kind::Scalar(Scalar::Int(_)) => "!!int",
            Kind::Scalar(Scalar::Float(_)) => "!!float",
            Kind::Scalar(Scalar::Str(_)) => "!!str",
            Kind::Seq(_) => "!!seq",
            Kind::Map(_) => "!!map",
        }
    }

    /// The scalar's text as a Go string field receives it (null is "").
    pub fn scalar_text(&self) -> Option<String> {
        match &self.kind {
            Kind::Scalar(Scalar::Null) => Some(String::new()),
            Kind::Scalar(Scalar::Bool(b)) => Some(b.to_string()),
            Kind::Scalar(Scalar::Int(s) | Scalar::Float(s) | Scalar::Str(s)) => Some(s.clone()),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.kind, Kind::Scalar(Scalar::Null))
    }

    /// yaml.v3's wording of a value that does not fit: "cannot unmarshal !!str
    /// `abc` into int", "cannot unmarshal !!seq into string".
    pub fn cannot_unmarshal(&self, into: &str) -> String {
        match &self.kind {
            Kind::Scalar(s) if !matches!(s, Scalar::Null) => format!(
                "cannot unmarshal {} `{}` into {into}",
                self.tag(),
                self.scalar_text().unwrap_or_default()
            ),
            _ => format!("cannot unmarshal {} into {into}", self.tag()),
        }
    }
}

/// Reads the first document of `text` (Prometheus reads only the first one too).
/// An empty document is a null node.
pub fn parse(text: &str) -> Result<Node, serde_norway::Error> {
    match serde_norway::Deserializer::from_str(text).next() {
        Some(doc) => NodeSeed.deserialize(doc),
        None => Ok(Node {
            kind: Kind::Scalar(Scalar::Null),
            pos: Position { line: 1, column: 1 },
        }),
    }
}

/// The message of the error a scalar visitor raises on purpose.
const POSITION_PROBE: &str = "\u{0}position probe";

struct NodeSeed;

impl<'de> DeserializeSeed<'de> for NodeSeed {
    type Value = Node;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        let kept = RefCell::new(None);
        match d.deserialize_any(NodeVisitor { kept: &kept }) {
            Ok(node) => Ok(node),
            Err(e) => match kept.into_inner() {
                Some(scalar) => Ok(Node {
                    kind: Kind::Scalar(scalar),
                    pos: position_of(&e.to_string()),
                }),
                None => Err(e),
            },
        }
    }
}

/// The position serde_norway appends to an error's text: "… at line L column C".
/// It leaves it out for line 1 column 1.
fn position_of(message: &str) -> Position {
    let parsed = message.rsplit_once(" at line ").and_then(|(_, rest)| {
        let (line, column) = rest.split_once(" column ")?;
        Some(Position {
            line: line.trim().parse().ok()?,
            column: column.trim().parse().ok()?,
        })
    });
    parsed.unwrap_or(Position { line: 1, column: 1 })
}

struct NodeVisitor<'a> {
    kept: &'a RefCell<Option<Scalar>>,
}

impl NodeVisitor<'_> {
    fn keep<E: de::Error>(self, s: Scalar) -> Result<Node, E> {
        *self.kept.borrow_mut() = Some(s);
        Err(E::custom(POSITION_PROBE))
    }
}

impl<'de> Visitor<'de> for NodeVisitor<'_> {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML node")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        self.keep(Scalar::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        self.keep(Scalar::Int(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        self.keep(Scalar::Int(v.to_string()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        self.keep(Scalar::Int(v.to_string()))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        self.keep(Scalar::Int(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        self.keep(Scalar::Float(crate::model::number::format_go_float_g(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        self.keep(Scalar::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        self.keep(Scalar::Str(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        self.keep(Scalar::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        self.keep(Scalar::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(n) = seq.next_element_seed(NodeSeed)? {
            items.push(n);
        }
        let pos = items.first().map(|n| n.pos).unwrap_or_default();
        Ok(Node {
            kind: Kind::Seq(items),
            pos,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(k) = map.next_key_seed(NodeSeed)? {
            let v = map.next_value_seed(NodeSeed)?;
            entries.push((k, v));
        }
        let pos = entries.first().map(|(k, _)| k.pos).unwrap_or_default();
        Ok(Node {
            kind: Kind::Map(entries),
            pos,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: usize, column: usize) -> Position {
        Position { line, column }
    }

    #[test]
    fn scalars_keep_their_positions_and_values() {
        let n = parse("groups:\n  - name: g\n    limit: 3\n    x: ~\n").unwrap();
        let Kind::Map(top) = &n.kind else { panic!() };
        assert_eq!(top[0].0.pos, at(1, 1));
        let Kind::Seq(groups) = &top[0].1.kind else {
            panic!()
        };
        let Kind::Map(g) = &groups[0].kind else {
            panic!()
        };
        assert_eq!(groups[0].pos, at(2, 5));
        assert_eq!(g[0].1.kind, Kind::Scalar(Scalar::Str("g".into())));
        assert_eq!(g[0].1.pos, at(2, 11));
        assert_eq!(g[1].1.kind, Kind::Scalar(Scalar::Int("3".into())));
        assert_eq!(g[1].1.pos, at(3, 12));
        assert!(g[2].1.is_null());
    }

    #[test]
    fn empty_and_multi_document_input() {
        assert!(parse("").unwrap().is_null());
        let n = parse("a: 1\n---\nb: 2\n").unwrap();
        let Kind::Map(m) = &n.kind else { panic!() };
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn syntax_errors_and_deep_nesting_are_errors() {
        assert!(parse("a: [\n").is_err());
        assert!(parse(&"[".repeat(10_000)).is_err());
    }
}
