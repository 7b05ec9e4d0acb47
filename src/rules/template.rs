//! The parse check Prometheus runs on alert label and annotation templates (Go
//! `text/template` with Prometheus's functions), as far as a small lexer can
//! tell without executing anything: unclosed actions, comments and quotes,
//! unbalanced blocks and parentheses, functions that do not exist, variables
//! used before they are declared, control words without a value. Errors have Go's wording,
//! `template: __alert_NAME:LINE: unclosed action`. What it cannot tell it lets
//! pass, so a template it refuses Prometheus refuses too.

/// Prometheus 3's template functions (template/template.go) and Go's built-ins.
const FUNCTIONS: &[&str] = &[
    "query",
    "first",
    "label",
    "value",
    "strvalue",
    "args",
    "reReplaceAll",
    "safeHtml",
    "match",
    "title",
    "toUpper",
    "toLower",
    "graphLink",
    "tableLink",
    "sortByLabel",
    "stripPort",
    "stripDomain",
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "toTime",
    "toDuration",
    "now",
    "pathPrefix",
    "externalURL",
    "parseDuration",
    "urlQueryEscape",
    // Go's text/template built-ins.
    "and",
    "call",
    "html",
    "index",
    "slice",
    "js",
    "len",
    "not",
    "or",
    "print",
    "printf",
    "println",
    "urlquery",
    "eq",
    "ge",
    "gt",
    "le",
    "lt",
    "ne",
];

/// Words that are not function names inside an action.
const KEYWORDS: &[&str] = &[
    "if", "else", "end", "range", "with", "define", "block", "template", "break", "continue",
    "nil", "true", "false",
];

/// The variables Prometheus declares in front of every alert template.
const PREDECLARED: &[&str] = &["$", "$labels", "$externalLabels", "$externalURL", "$value"];

#[derive(Debug, PartialEq)]
enum Tok {
    Var(String),
    Ident(String),
    Declare,
    Assign,
    Comma,
    Other,
}

#[derive(PartialEq)]
enum Block {
    Range,
    Other,
}

/// Checks `text` as the template named `name` (`__alert_<alert name>`).
pub fn check(name: &str, text: &str) -> Result<(), String> {
    check_inner(text).map_err(|(line, m)| format!("template: {name}:{line}: {m}"))
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

fn check_inner(text: &str) -> Result<(), (usize, String)> {
    let b = text.as_bytes();
    let mut i = 0;
    let mut line = 1;
    let mut blocks: Vec<(Block, usize)> = Vec::new();
    let mut vars: Vec<String> = PREDECLARED.iter().map(|s| s.to_string()).collect();
    loop {
        // Text up to the next action.
        let Some(off) = text[i..].find("{{") else {
            line += b[i..].iter().filter(|&&c| c == b'\n').count();
            break;
        };
        line += b[i..i + off].iter().filter(|&&c| c == b'\n').count();
        i += off + 2;
        let action_line = line;
        // "{{- " trims the text before; the comment test comes after it.
        let after_trim = if b.get(i) == Some(&b'-') && b.get(i + 1).is_some_and(|&c| is_space(c)) {
            i + 2
        } else {
            i
        };
        if text[after_trim..].starts_with("/*") {
            let Some(end) = text[after_trim + 2..].find("*/") else {
                return Err((action_line, "unclosed comment".into()));
            };
            let close = after_trim + 2 + end + 2;
            line += b[i..close].iter().filter(|&&c| c == b'\n').count();
            let rest = &text[close..];
            let after = if rest.starts_with(" -}}") {
                4
            } else if rest.starts_with("}}") {
                2
            } else {
                return Err((line, "comment ends before closing delimiter".into()));
            };
            i = close + after;
            continue;
        }
        // Inside an action: tokens up to "}}" (or " -}}").
        let mut toks: Vec<Tok> = Vec::new();
        let mut depth: i32 = 0;
        let mut token_line = line;
        loop {
            let Some(&c) = b.get(i) else {
                return Err((token_line, "unclosed action".into()));
            };
            if c == b'}' && b.get(i + 1) == Some(&b'}') {
                i += 2;
                break;
            }
            if is_space(c) {
                if text[i..].starts_with(" -}}") {
                    i += 4;
                    break;
                }
                if c == b'\n' {
                    line += 1;
                }
                i += 1;
                continue;
            }
            token_line = line;
            match c {
                b'"' | b'\'' => {
                    let mut j = i + 1;
                    loop {
                        match b.get(j) {
                            None | Some(b'\n') => {
                                let m = if c == b'"' {
                                    "unterminated quoted string"
                                } else {
                                    "unterminated character constant"
                                };
                                return Err((line, m.into()));
                            }
                            Some(b'\\') => j += 2,
                            Some(&q) if q == c => break,
                            Some(_) => j += 1,
                        }
                    }
                    i = j + 1;
                    toks.push(Tok::Other);
                }
                b'`' => {
                    let Some(end) = text[i + 1..].find('`') else {
                        return Err((line, "unterminated raw quoted string".into()));
                    };
                    line += b[i..i + 1 + end].iter().filter(|&&c| c == b'\n').count();
                    i += end + 2;
                    toks.push(Tok::Other);
                }
                b'(' => {
                    depth += 1;
                    i += 1;
                    toks.push(Tok::Other);
                }
                b')' => {
                    depth -= 1;
                    if depth < 0 {
                        return Err((line, "unexpected \")\" in command".into()));
                    }
                    i += 1;
                    toks.push(Tok::Other);
                }
                b'$' => {
                    let mut j = i + 1;
                    while j < b.len() && is_word(b[j]) {
                        j += 1;
                    }
                    toks.push(Tok::Var(text[i..j].to_string()));
                    i = j;
                }
                b'.' => {
                    let mut j = i + 1;
                    while j < b.len() && is_word(b[j]) {
                        j += 1;
                    }
                    i = j;
                    toks.push(Tok::Other);
                }
                b':' if b.get(i + 1) == Some(&b'=') => {
                    i += 2;
                    toks.push(Tok::Declare);
                }
                b'=' => {
                    i += 1;
                    toks.push(Tok::Assign);
                }
                b',' => {
                    i += 1;
                    toks.push(Tok::Comma);
                }
                _ if c.is_ascii_digit()
                    || ((c == b'-' || c == b'+')
                        && b.get(i + 1).is_some_and(u8::is_ascii_digit)) =>
                {
                    // A number: digits, letters (hex, exponents), dots, signs after an exponent.
                    let mut j = i + 1;
                    while j < b.len()
                        && (is_word(b[j])
                            || b[j] == b'.'
                            || ((b[j] == b'+' || b[j] == b'-')
                                && matches!(b[j - 1], b'e' | b'E' | b'p' | b'P')))
                    {
                        j += 1;
                    }
                    i = j;
                    toks.push(Tok::Other);
                }
                _ if is_word(c) => {
                    let mut j = i;
                    while j < b.len() && is_word(b[j]) {
                        j += 1;
                    }
                    toks.push(Tok::Ident(text[i..j].to_string()));
                    i = j;
                }
                _ => {
                    // Pipes and anything else: Go's parser knows; this check lets it pass.
                    i += 1;
                    while i < b.len() && !text.is_char_boundary(i) {
                        i += 1;
                    }
                    toks.push(Tok::Other);
                }
            }
        }
        if depth > 0 {
            return Err((token_line, "unclosed left paren".into()));
        }
        // The action's meaning.
        let keyword = match toks.first() {
            Some(Tok::Ident(w)) if KEYWORDS.contains(&w.as_str()) => Some(w.as_str()),
            _ => None,
        };
        let pipeline = match keyword {
            Some("if" | "with" | "define" | "block" | "template") => {
                blocks_push(&mut blocks, keyword, vars.len());
                &toks[1..]
            }
            Some("range") => {
                blocks.push((Block::Range, vars.len()));
                &toks[1..]
            }
            Some("else") => {
                if blocks.is_empty() {
                    return Err((token_line, "unexpected {{else}}".into()));
                }
                &toks[1..]
            }
            Some("end") => {
                let Some((_, keep)) = blocks.pop() else {
                    return Err((token_line, "unexpected {{end}}".into()));
                };
                vars.truncate(keep);
                &[]
            }
            Some(k @ ("break" | "continue")) => {
                if !blocks.iter().any(|(b, _)| *b == Block::Range) {
                    return Err((token_line, format!("{{{{{k}}}}} outside {{{{range}}}}")));
                }
                &[]
            }
            _ => &toks[..],
        };
        // `else if`, `else with`: the keyword after else.
        let (control, pipeline) = match pipeline.first() {
            Some(Tok::Ident(w)) if keyword == Some("else") && (w == "if" || w == "with") => {
                (Some(w.as_str()), &pipeline[1..])
            }
            _ => (keyword, pipeline),
        };
        if pipeline.is_empty() {
            if let Some(k @ ("if" | "range" | "with")) = control {
                return Err((token_line, format!("missing value for {k}")));
            }
        }
        // Declarations: `$a := …`, `$i, $v := …` (range).
        let mut declared = Vec::new();
        let mut rest = pipeline;
        let decl_end = pipeline.iter().position(|t| *t == Tok::Declare);
        if let Some(end) = decl_end {
            let head = &pipeline[..end];
            if head.iter().all(|t| matches!(t, Tok::Var(_) | Tok::Comma)) {
                declared = head
                    .iter()
                    .filter_map(|t| match t {
                        Tok::Var(v) => Some(v.clone()),
                        _ => None,
                    })
                    .collect();
                rest = &pipeline[end + 1..];
                if rest.is_empty() {
                    return Err((token_line, "missing value for command".into()));
                }
            }
        }
        for t in rest {
            match t {
                Tok::Var(v) if !vars.iter().any(|d| d == v) => {
                    return Err((
                        token_line,
                        format!("undefined variable {}", crate::model::labels::go_quote(v)),
                    ));
                }
                Tok::Ident(w)
                    if !KEYWORDS.contains(&w.as_str()) && !FUNCTIONS.contains(&w.as_str()) =>
                {
                    return Err((
                        token_line,
                        format!("function {} not defined", crate::model::labels::go_quote(w)),
                    ));
                }
                _ => {}
            }
        }
        vars.extend(declared);
    }
    if !blocks.is_empty() {
        return Err((line, "unexpected EOF".into()));
    }
    Ok(())
}

fn blocks_push(blocks: &mut Vec<(Block, usize)>, keyword: Option<&str>, vars: usize) {
    // `template` names another template; it opens no block.
    if keyword != Some("template") {
        blocks.push((Block::Other, vars));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each case as promtool 2.42 reports it (`annotation "a": template: …`).
    #[test]
    fn errors_as_go_text_template_reports_them() {
        let cases: &[(&str, &str)] = &[
            ("{{ $labels.x ", "1: unclosed action"),
            ("{{/* c ", "1: unclosed comment"),
            ("{{ if 1 }}x", "1: unexpected EOF"),
            ("{{ end }}", "1: unexpected {{end}}"),
            ("{{ else }}", "1: unexpected {{else}}"),
            ("{{ (1 }}", "1: unclosed left paren"),
            ("{{ 1) }}", "1: unexpected \")\" in command"),
            ("{{ foo 1 }}", "1: function \"foo\" not defined"),
            ("a\nb {{ range . }}\n{{ end }} {{ if", "3: unclosed action"),
            ("{{ `abc }}", "1: unterminated raw quoted string"),
            ("{{ 'a }}", "1: unterminated character constant"),
            ("{{ \"a }}", "1: unterminated quoted string"),
            ("{{ $y }}", "1: undefined variable \"$y\""),
            ("{{ break }}", "1: {{break}} outside {{range}}"),
            ("{{/* a */ }}", "1: comment ends before closing delimiter"),
            (
                "{{ if 1 }}{{ $x := 1 }}{{ end }}{{ $x }}",
                "1: undefined variable \"$x\"",
            ),
            ("{{ if }}{{ end }}", "1: missing value for if"),
            (
                "{{ range 1 }}{{ else with }}{{ end }}",
                "1: missing value for with",
            ),
            ("{{ $x := }}", "1: missing value for command"),
        ];
        for (text, want) in cases {
            assert_eq!(
                check("__alert_A", text),
                Err(format!("template: __alert_A:{want}")),
                "{text:?}"
            );
        }
    }

    #[test]
    fn valid_templates_pass() {
        for text in [
            "",
            "plain text }} {",
            "{{ $labels.instance }} is down ({{ $value | humanize }})",
            "{{ humanize $value | printf \"%s\" }}",
            "{{ $x := 1 }}{{ $x }}",
            "{{ with $labels }}{{ .x }}{{ else }}y{{ end }}",
            "{{- .Labels -}}",
            "{{ template \"x\" }}",
            "{{ define \"x\" }}a{{ end }}",
            "{{ .x.y | title }}",
            "{{ 1.5e3 }} {{ -1 }} {{ 0x1F }} {{ 1e+3 }}",
            "{{ printf \"%d\" 1 }}{{ reReplaceAll \"a\" \"b\" \"c\" }}",
            "{{ nil }}",
            "{{ range $i, $v := . }}{{ $i }}{{ $v }}{{ break }}{{ end }}",
            "{{ if eq 1 1 }}a{{ else if gt 2 1 }}b{{ else }}c{{ end }}",
            "{{ with query \"up\" }}{{ . | first | value | humanizePercentage }}{{ end }}",
            "{{/* a comment */}}{{- /* trimmed */ -}}",
            "{{ \"}}\" }} {{ `multi\nline` }}",
            "{{ $externalLabels.env }} {{ $externalURL }} {{ $ }}",
            "{{ $x := 1 }}{{ $x = 2 }}",
            "é {{ \"ü\" }} ✓",
        ] {
            assert_eq!(check("__alert_A", text), Ok(()), "{text:?}");
        }
    }
}

// TEMPORARY (replaced by the template executor on merge).
#[derive(Clone, Debug, PartialEq)]
pub struct QuerySample {
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
}

#[allow(dead_code)]
pub struct AlertTemplateData<'a> {
    pub labels: &'a std::collections::BTreeMap<String, String>,
    pub external_labels: &'a std::collections::BTreeMap<String, String>,
    pub external_url: &'a str,
    pub value: f64,
    pub timestamp_ms: i64,
    pub query: &'a dyn Fn(&str) -> Result<Vec<QuerySample>, String>,
}

pub fn expand_alert_template(
    _alert_name: &str,
    text: &str,
    data: &AlertTemplateData,
) -> Result<String, String> {
    let mut out = text.to_string();
    for (k, v) in data.labels {
        out = out.replace(&format!("{{{{ $labels.{k} }}}}"), v);
    }
    out = out.replace(
        "{{ $value }}",
        &crate::model::number::format_go_float_g(data.value),
    );
    Ok(out)
}
