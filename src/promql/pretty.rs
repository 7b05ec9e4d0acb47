//! PromQL as Prometheus 2.42 prints it: [`expr_string`] is the one-line form of
//! its parser's `String()` methods, [`prettify`] the indented form its
//! `/api/v1/format_query` answers (`promql/parser/prettier.go`).
//!
//! The rules, as Prometheus has them: a node whose one-line form fits in 100
//! characters is written on one line; a longer one is split, its children one
//! level (two spaces) deeper on lines of their own. Aggregations put the
//! parameter and the expression inside `op by (…) (`…`)`, calls their arguments
//! one per line, binary operators the operator on its own line between the two
//! sides, parentheses their content; selectors and literals never split. A
//! subquery that fits is written without its indentation (as Prometheus does).
//!
//! Where the AST cannot say what Prometheus would print: a unary `+` is
//! dropped by the parser (Prometheus prints `+x` back), and comments are
//! dropped by both. Checked against Prometheus 2.42 by
//! tests/external/format_query.rs.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use promql_parser::label::{MatchOp, Matcher, Matchers};
use promql_parser::parser::{
    AtModifier, Expr, LabelModifier, Offset, VectorMatchCardinality, VectorSelector,
};

const MAX_CHARACTERS_PER_LINE: usize = 100;

/// The expression as `/api/v1/format_query` answers it.
pub fn prettify(expr: &Expr) -> String {
    pretty(expr, 0)
}

/// The expression on one line, as Prometheus's `String()` writes it.
pub fn expr_string(expr: &Expr) -> String {
    let mut out = String::new();
    write_expr(&mut out, expr);
    out
}

fn indent(level: usize) -> String {
    "  ".repeat(level)
}

fn pretty(expr: &Expr, level: usize) -> String {
    let one_line = expr_string(expr);
    let fits = one_line.len() <= MAX_CHARACTERS_PER_LINE;
    match expr {
        Expr::Aggregate(a) if !fits => {
            let mut s = indent(level);
            s.push_str(&aggregate_head(a));
            s.push_str("(\n");
            if let Some(p) = &a.param {
                s.push_str(&pretty(p, level + 1));
                s.push_str(",\n");
            }
            s.push_str(&pretty(&a.expr, level + 1));
            s.push('\n');
            s.push_str(&indent(level));
            s.push(')');
            s
        }
        Expr::Binary(b) if !fits => {
            let mut s = pretty(&b.lhs, level + 1);
            s.push('\n');
            s.push_str(&indent(level));
            s.push_str(&b.op.to_string());
            if b.modifier.as_ref().is_some_and(|m| m.return_bool) {
                s.push_str(" bool");
            }
            write_matching(&mut s, b.modifier.as_ref());
            s.push('\n');
            s.push_str(&pretty(&b.rhs, level + 1));
            s
        }
        Expr::Call(c) if !fits => {
            let args: Vec<String> = c.args.args.iter().map(|a| pretty(a, level + 1)).collect();
            format!(
                "{}{}(\n{}\n{})",
                indent(level),
                c.func.name,
                args.join(",\n"),
                indent(level)
            )
        }
        Expr::Paren(p) if !fits => format!(
            "{}(\n{}\n{})",
            indent(level),
            pretty(&p.expr, level + 1),
            indent(level)
        ),
        // Prometheus writes a subquery that fits without its indentation.
        Expr::Subquery(_) if fits => one_line,
        Expr::Subquery(sq) => {
            let mut s = pretty(&sq.expr, level);
            write_subquery_suffix(&mut s, sq);
            s
        }
        Expr::Unary(u) => {
            // The operand's own indentation goes: the operator carries it.
            format!("{}-{}", indent(level), pretty(&u.expr, level).trim())
        }
        _ => indent(level) + &one_line,
    }
}

fn write_expr(out: &mut String, expr: &Expr) {
    match expr {
        Expr::Aggregate(a) => {
            out.push_str(&aggregate_head(a));
            out.push('(');
            if let Some(p) = &a.param {
                write_expr(out, p);
                out.push_str(", ");
            }
            write_expr(out, &a.expr);
            out.push(')');
        }
        Expr::Unary(u) => {
            out.push('-');
            write_expr(out, &u.expr);
        }
        Expr::Binary(b) => {
            write_expr(out, &b.lhs);
            out.push(' ');
            out.push_str(&b.op.to_string());
            if b.modifier.as_ref().is_some_and(|m| m.return_bool) {
                out.push_str(" bool");
            }
            write_matching(out, b.modifier.as_ref());
            out.push(' ');
            write_expr(out, &b.rhs);
        }
        Expr::Paren(p) => {
            out.push('(');
            write_expr(out, &p.expr);
            out.push(')');
        }
        Expr::Subquery(sq) => {
            write_expr(out, &sq.expr);
            write_subquery_suffix(out, sq);
        }
        Expr::NumberLiteral(n) => write_number(out, n.val),
        Expr::StringLiteral(s) => out.push_str(&go_quote(&s.val)),
        Expr::VectorSelector(vs) => {
            write_selector(out, vs);
            write_at_offset(out, vs.at.as_ref(), vs.offset.as_ref());
        }
        Expr::MatrixSelector(ms) => {
            write_selector(out, &ms.vs);
            let _ = write!(out, "[{}]", prom_duration(ms.range));
            write_at_offset(out, ms.vs.at.as_ref(), ms.vs.offset.as_ref());
        }
        Expr::Call(c) => {
            out.push_str(c.func.name);
            out.push('(');
            for (i, a) in c.args.args.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_expr(out, a);
            }
            out.push(')');
        }
        // Not produced by the parser.
        Expr::Extension(e) => {
            let _ = write!(out, "{e:?}");
        }
    }
}

/// `sum`, `sum by (a, b) `, `sum without () `: the aggregation up to its `(`.
fn aggregate_head(a: &promql_parser::parser::AggregateExpr) -> String {
    let mut s = a.op.to_string();
    match &a.modifier {
        Some(LabelModifier::Exclude(l)) => {
            let _ = write!(s, " without ({}) ", l.labels.join(", "));
        }
        Some(LabelModifier::Include(l)) if !l.labels.is_empty() => {
            let _ = write!(s, " by ({}) ", l.labels.join(", "));
        }
        _ => {}
    }
    s
}

/// ` on (a)`, ` ignoring (a) group_left (b)`: written only for `on` or labels.
fn write_matching(out: &mut String, m: Option<&promql_parser::parser::BinModifier>) {
    let Some(m) = m else { return };
    let (tag, labels) = match &m.matching {
        Some(LabelModifier::Include(l)) => ("on", &l.labels),
        Some(LabelModifier::Exclude(l)) if !l.labels.is_empty() => ("ignoring", &l.labels),
        _ => return,
    };
    let _ = write!(out, " {tag} ({})", labels.join(", "));
    match &m.card {
        VectorMatchCardinality::ManyToOne(l) => {
            let _ = write!(out, " group_left ({})", l.labels.join(", "));
        }
        VectorMatchCardinality::OneToMany(l) => {
            let _ = write!(out, " group_right ({})", l.labels.join(", "));
        }
        _ => {}
    }
}

fn write_subquery_suffix(out: &mut String, sq: &promql_parser::parser::SubqueryExpr) {
    let step = sq
        .step
        .filter(|s| !s.is_zero())
        .map(prom_duration)
        .unwrap_or_default();
    let _ = write!(out, "[{}:{}]", prom_duration(sq.range), step);
    write_at_offset(out, sq.at.as_ref(), sq.offset.as_ref());
}

/// The name and the matchers (sorted as text, as Prometheus sorts them), without
/// `@` and `offset`.
fn write_selector(out: &mut String, vs: &VectorSelector) {
    let name = vs.name.as_deref().unwrap_or("");
    let mut matchers: Vec<String> = vs.matchers.matchers.iter().map(matcher_string).collect();
    matchers.sort();
    out.push_str(name);
    let or_branches = or_matchers(&vs.matchers);
    if !matchers.is_empty() || !or_branches.is_empty() {
        out.push('{');
        out.push_str(&matchers.join(","));
        // `or` in selectors is newer than Prometheus 2.42; written as the parser reads it.
        for (i, b) in or_branches.iter().enumerate() {
            if i > 0 || !matchers.is_empty() {
                out.push_str(" or ");
            }
            out.push_str(b);
        }
        out.push('}');
    }
}

fn or_matchers(m: &Matchers) -> Vec<String> {
    m.or_matchers
        .iter()
        .map(|branch| {
            let mut parts: Vec<String> = branch.iter().map(matcher_string).collect();
            parts.sort();
            parts.join(",")
        })
        .collect()
}

fn matcher_string(m: &Matcher) -> String {
    let op = match m.op {
        MatchOp::Equal => "=",
        MatchOp::NotEqual => "!=",
        MatchOp::Re(_) => "=~",
        MatchOp::NotRe(_) => "!~",
    };
    format!("{}{}{}", m.name, op, go_quote(&m.value))
}

/// ` @ 123.000`, ` @ start()`, then ` offset 5m` / ` offset -5m` (none for zero).
fn write_at_offset(out: &mut String, at: Option<&AtModifier>, offset: Option<&Offset>) {
    match at {
        Some(AtModifier::Start) => out.push_str(" @ start()"),
        Some(AtModifier::End) => out.push_str(" @ end()"),
        Some(AtModifier::At(t)) => {
            let ms = match t.duration_since(SystemTime::UNIX_EPOCH) {
                Ok(d) => d.as_millis() as f64,
                Err(e) => -(e.duration().as_millis() as f64),
            };
            let _ = write!(out, " @ {:.3}", ms / 1000.0);
        }
        None => {}
    }
    match offset {
        Some(Offset::Pos(d)) if !d.is_zero() => {
            let _ = write!(out, " offset {}", prom_duration(*d));
        }
        Some(Offset::Neg(d)) if !d.is_zero() => {
            let _ = write!(out, " offset -{}", prom_duration(*d));
        }
        _ => {}
    }
}

/// Go's `%v` of a float64 (`1e+06`, `+Inf`).
fn write_number(out: &mut String, v: f64) {
    let _ = crate::model::number::write_go_float_g(out, v);
}

/// Prometheus's `model.Duration` text: years and weeks only when they divide the
/// duration exactly (`90d`, not `12w6d`), then days down to milliseconds.
pub fn prom_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    const DAY: u128 = 86_400_000;
    let units: [(&str, u128, bool); 7] = [
        ("y", 365 * DAY, true),
        ("w", 7 * DAY, true),
        ("d", DAY, false),
        ("h", 3_600_000, false),
        ("m", 60_000, false),
        ("s", 1_000, false),
        ("ms", 1, false),
    ];
    let mut out = String::new();
    for (unit, size, exact) in units {
        if exact && ms % size != 0 {
            continue;
        }
        if ms >= size {
            let _ = write!(out, "{}{unit}", ms / size);
            ms %= size;
        }
    }
    out
}

/// Go's `strconv.Quote` (`%q`): printable characters as they are, the usual
/// escapes, `\x` for ASCII controls, `\u`/`\U` for other characters Go does not
/// count as printable (controls, format characters, spaces other than ` `).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if !go_printable(c) => {
                if (c as u32) < 0x10000 {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                } else {
                    let _ = write!(out, "\\U{:08x}", c as u32);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `unicode.IsPrint` for what the parser can hold: not a control, not a
/// space other than U+0020, not a format character or private use.
fn go_printable(c: char) -> bool {
    let u = c as u32;
    !(c.is_control()
        || (c.is_whitespace() && c != ' ')
        || matches!(u,
            0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E | 0x200B..=0x200F
            | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF
            | 0xFFF9..=0xFFFB | 0xE000..=0xF8FF | 0xF0000..=0x10FFFF))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(q: &str) -> String {
        prettify(&crate::promql::parse_expr(q).unwrap())
    }

    #[test]
    fn short_expressions_stay_on_one_line() {
        assert_eq!(
            fmt("sum  by(job)( rate(x[5m] ) )"),
            "sum by (job) (rate(x[5m]))"
        );
        assert_eq!(
            fmt(r#"up{b="1",a=~"x"} offset 90d"#),
            r#"up{a=~"x",b="1"} offset 90d"#
        );
        assert_eq!(fmt("x[1h:] @ start()"), "x[1h:] @ start()");
        assert_eq!(fmt("-(1e6 + Inf)"), "-(1e+06 + +Inf)");
        assert_eq!(fmt("a / ignoring() b"), "a / b");
        assert_eq!(
            fmt("a / on() group_left(c) b"),
            "a / on () group_left (c) b"
        );
        assert_eq!(fmt("x @ 100 offset -1m"), "x @ 100.000 offset -1m");
        assert_eq!(fmt("'a\\u00a0b\"'"), "\"a\\u00a0b\\\"\"");
    }

    #[test]
    fn long_expressions_split_as_prometheus_splits_them() {
        let q = "sum by (instance) (rate(node_cpu_seconds_total{mode!=\"idle\",job=\"node\"}[5m])) / on (instance) group_left count by (instance) (node_cpu_seconds_total{mode=\"idle\"})";
        assert_eq!(
            fmt(q),
            "  sum by (instance) (rate(node_cpu_seconds_total{job=\"node\",mode!=\"idle\"}[5m]))\n\
             / on (instance) group_left ()\n\
             \x20 count by (instance) (node_cpu_seconds_total{mode=\"idle\"})"
        );
        assert_eq!(prom_duration(Duration::from_millis(90 * 86_400_000)), "90d");
        assert_eq!(prom_duration(Duration::from_millis(14 * 86_400_000)), "2w");
        assert_eq!(prom_duration(Duration::from_millis(3_723_004)), "1h2m3s4ms");
    }
}
