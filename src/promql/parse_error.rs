//! promql-parser's parse errors in Prometheus 2.42's words and at its positions.
//!
//! promql-parser words some errors differently from Prometheus (`'rate'` for
//! `"rate"`, `vector`/`matrix` for `instant vector`/`range vector`) and gives a
//! position for few of them. [`prometheus_parse_error`] maps one message at a
//! time: each rule below names the message it maps and finds, from the query
//! text, the byte offset Prometheus reports (`ParseErr` in
//! promql/parser/parse.go: the node or token its parser or lexer stopped at).
//! A message no rule knows keeps its words and gets no position from here.
//! `tests/external/promql_errors.rs` measures the result against Prometheus.

use promql_parser::parser::value::ValueType;

/// A parse error as Prometheus words it, and the byte offset in the query it
/// is reported at, when found.
#[derive(Debug, PartialEq)]
pub struct PrometheusParseError {
    pub message: String,
    pub offset: Option<usize>,
}

/// Prometheus's `line:column` of a byte offset: lines from 1, the column the
/// offset's distance in bytes from the last newline before it (so 1 at a line's start).
pub fn line_column(query: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(query.len());
    let before = &query.as_bytes()[..offset];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let column = match before.iter().rposition(|&b| b == b'\n') {
        Some(newline) => offset - newline,
        None => offset + 1,
    };
    (line, column)
}

/// promql-parser's `message` for `query` mapped to Prometheus's.
pub fn prometheus_parse_error(query: &str, message: &str) -> PrometheusParseError {
    let tokens = tokens(query);
    let found = |message: String, offset: Option<usize>| PrometheusParseError { message, offset };
    let start = tokens.first().map(|t| t.start);

    // Nothing but spaces and comments: Prometheus reports it at the start.
    if message.starts_with("no expression found in input") {
        return found("no expression found in input".into(), Some(0));
    }
    // Names in calls: Prometheus quotes with `"`; the position is the name's.
    if let Some(name) = quoted_after(message, "unknown function with name ") {
        let at = tokens
            .windows(2)
            .find(|w| w[0].is(query, &name) && w[1].is(query, "("))
            .map(|w| w[0].start);
        return found(format!("unknown function with name {name:?}"), at);
    }
    // Argument counts: reported at the call.
    if let Some((before, name, after)) = quoted_within(message, " in call to ") {
        if before.starts_with("expected ") && before.contains("argument(s)") {
            let at = calls(query, &tokens, &name).first().map(|c| c.name_start);
            return found(format!("{before} in call to {name:?}{after}"), at);
        }
    }
    // An argument of the wrong type: reported at that argument.
    if let Some(rest) = message.strip_prefix("expected type ") {
        if let Some((expected, rest)) = rest.split_once(" in call to function ") {
            if let Some((name, got)) = quoted_prefix(rest) {
                let got = got.trim_start_matches(", got ");
                let (expected, got) = (type_name(expected), type_name(got));
                // The argument is the first of that type whose replacement by
                // one of the expected type takes the error away.
                let at = calls(query, &tokens, &name).iter().find_map(|c| {
                    c.args
                        .iter()
                        .find(|&&(s, e)| {
                            arg_type(query, s, e) == Some(got)
                                && replacing_fixes(query, (s, e), expected, message)
                        })
                        .map(|a| a.0)
                });
                return found(
                    format!("expected type {expected} in call to function {name:?}, got {got}"),
                    at,
                );
            }
        }
        // An aggregation's operand or parameter of the wrong type. promql-parser
        // says "aggregation expression" for both; Prometheus "aggregation
        // parameter" for the parameter (a scalar or, for count_values, a string).
        if let Some((expected, got)) = rest.split_once(" in aggregation expression, got ") {
            let (expected, got) = (type_name(expected), type_name(got));
            let is_parameter = expected != "instant vector";
            let at = AGGREGATIONS.iter().find_map(|name| {
                calls(query, &tokens, name).iter().find_map(|c| {
                    let arg = if is_parameter {
                        c.args.first()
                    } else {
                        c.args.last()
                    };
                    arg.filter(|&&(s, e)| arg_type(query, s, e) == Some(got))
                        .map(|a| a.0)
                })
            });
            let place = if is_parameter {
                "aggregation parameter"
            } else {
                "aggregation expression"
            };
            return found(
                format!("expected type {expected} in {place}, got {got}"),
                at,
            );
        }
    }
    // The aggregation with a wrong number of arguments: reported at its keyword;
    // promql-parser names the operator where Prometheus does not.
    if message.starts_with("no arguments for aggregate expression") {
        let at = tokens
            .iter()
            .find(|t| AGGREGATIONS.iter().any(|a| t.is(query, a)))
            .map(|t| t.start);
        return found("no arguments for aggregate expression provided".into(), at);
    }
    if message.starts_with("wrong number of arguments for aggregate expression") {
        let at = tokens
            .iter()
            .find(|t| AGGREGATIONS.iter().any(|a| t.is(query, a)))
            .map(|t| t.start);
        return found(message.to_string(), at);
    }
    // A syntax error: Prometheus names the token its grammar stopped at, after
    // `offset` or `@` with what it expected there.
    if message == "invalid promql query" {
        if let Some((id, token_start, token_end)) =
            promql_parser::parser::parse::syntax_error_token(query)
        {
            let at_end = token_start >= query.len();
            let desc = if at_end {
                "end of input".to_string()
            } else {
                token_description(id, &query[token_start..token_end])
            };
            let context = syntax_error_context(query, &tokens, token_start);
            let offset = if at_end { query.len() } else { token_start };
            return found(format!("unexpected {desc}{context}"), Some(offset));
        }
    }
    // Errors of binary operations: reported where Prometheus's checkAST does.
    if let Some(m) = binary_error(query, &tokens, message) {
        return m;
    }
    // A bracket mistake inside a grouping clause: Prometheus's grammar stops at
    // the token the clause cannot take before the lexer sees the brackets.
    if message == "unclosed left parenthesis" || message == "unexpected right parenthesis ')'" {
        if let Some((m, at)) = grouping_clause_error(query, &tokens) {
            return found(m, Some(at));
        }
    }
    // A missing `)`: Prometheus's lexer meets the end of input.
    if message == "unclosed left parenthesis" {
        return found(message.into(), Some(query.len()));
    }
    // A `)` too many: reported just past it, where the lexer stands.
    if message == "unexpected right parenthesis ')'" {
        let at = unmatched_close(&tokens, query).map(|t| t + 1);
        return found(message.into(), at);
    }
    // A missing `}` or `]`: the end of input.
    if message == "unexpected end of input inside braces" {
        return found(message.into(), Some(query.len()));
    }
    if message == "unexpected end of input inside brackets" {
        return found("unclosed left bracket".into(), Some(query.len()));
    }
    if message == "unexpected right brace '}'" {
        let at = unmatched_close(&tokens, query);
        return found("unexpected character: '}'".into(), at);
    }
    // A modifier at the end of input.
    if message.starts_with("unexpected end of input in offset")
        || message.starts_with("unexpected end of input in @")
    {
        return found(message.into(), Some(query.len()));
    }
    // `]` or `-` where a range or subquery wants a duration or `]`: Prometheus
    // names the token and what it expected, which depends on the colon before.
    if let Some(c) = message.strip_prefix("unexpected character inside brackets: '") {
        let c = c.trim_end_matches('\'');
        let in_brackets = |i: usize| open_bracket_at_end(query, &tokens[..i]) == Some('[');
        let found_at = (0..tokens.len()).find(|&i| tokens[i].is(query, c) && in_brackets(i));
        // Right after `[`, a letter is read as a duration and anything else
        // leaves the duration without its unit.
        if let Some(i) = found_at.filter(|&i| i > 0 && tokens[i - 1].is(query, "[")) {
            let t = &tokens[i];
            if c.chars().all(|c| c.is_ascii_alphabetic()) {
                return found(format!("not a valid duration string: {c:?}"), Some(t.start));
            }
            if c == "-" {
                return found("missing unit character in duration".into(), Some(t.start));
            }
        }
        // `[5 m]`: the number before the space lacks its unit.
        if let Some(i) = found_at.filter(|&i| {
            i > 1 && tokens[i - 2].is(query, "[") && c.chars().all(|c| c.is_ascii_alphabetic())
        }) {
            return found(
                "missing unit character in duration".into(),
                Some(tokens[i - 1].start),
            );
        }
        if let Some(t) = found_at.map(|i| &tokens[i]) {
            let after_colon = tokens
                .iter()
                .rev()
                .find(|u| u.start < t.start && (u.is(query, ":") || u.is(query, "[")))
                .is_some_and(|u| u.is(query, ":"));
            let word = match c {
                ")" => Some("\")\"".to_string()),
                "-" if after_colon => Some("<op:->".to_string()),
                _ => None,
            };
            if let Some(word) = word {
                let expected = match (after_colon, c) {
                    (true, "-") => "duration or \"]\"",
                    (true, _) => "\"]\"",
                    (false, _) => "\":\" or \"]\"",
                };
                let place = if after_colon {
                    "subquery selector"
                } else {
                    "subquery or range"
                };
                return found(
                    format!("unexpected {word} in {place}, expected {expected}"),
                    Some(t.start),
                );
            }
        }
    }
    // `[:5m]`: the range before the colon has no duration.
    if message == "expect duration before first colon(:) in brackets" {
        let at = tokens
            .windows(2)
            .find(|w| w[0].is(query, "[") && w[1].is(query, ":"))
            .map(|w| w[1].start);
        return found("missing unit character in duration".into(), at);
    }
    // A second colon in a subquery: reported at it.
    if message == "unexpected second colon(:) in brackets" {
        let at = tokens.iter().enumerate().find_map(|(i, t)| {
            let second = t.is(query, ":")
                && tokens[..i]
                    .iter()
                    .rev()
                    .take_while(|u| !u.is(query, "["))
                    .any(|u| u.is(query, ":"));
            second.then_some(t.start)
        });
        return found("unexpected colon ':'".into(), at);
    }
    // `[]` or `[ ]`: reported at the `]`.
    if message == "missing unit character in duration" {
        let at = tokens
            .windows(2)
            .find(|w| w[0].is(query, "[") && w[1].is(query, "]"))
            .map(|w| w[1].start);
        return found(message.into(), at);
    }
    // A duration promql-parser cannot read: Prometheus quotes it, at its start.
    if let Some(d) = message.strip_prefix("not a valid duration string: ") {
        let at = tokens.iter().find(|t| t.is(query, d)).map(|t| t.start);
        return found(format!("not a valid duration string: {d:?}"), at);
    }
    // A number or duration running into a letter: Prometheus's lexer quotes what
    // it read before the offending character (promql-parser includes it), and
    // says "duration" for a range before its colon.
    if let Some(text) = message.strip_prefix("bad number or duration syntax: ") {
        let read = text.char_indices().last().map_or("", |(i, _)| &text[..i]);
        if !read.is_empty() && !read.ends_with('.') {
            if let Some(at) = query.find(text) {
                let i = tokens.iter().position(|t| t.start >= at).unwrap_or(0);
                let range = open_bracket_at_end(query, &tokens[..i]) == Some('[')
                    && !tokens[..i]
                        .iter()
                        .rev()
                        .take_while(|t| !t.is(query, "["))
                        .any(|t| t.is(query, ":"));
                let what = if range {
                    "bad duration syntax"
                } else {
                    "bad number or duration syntax"
                };
                return found(format!("{what}: {read:?}"), Some(at));
            }
        }
    }
    // A number Rust cannot read: Go's strconv words, at the number.
    if let Some(rest) = message.strip_prefix("ParseFloatError. ") {
        if let Some((number, _)) = rest.split_once(" can't be parsed") {
            let at = query.find(number);
            return found(
                format!(
                    "error parsing number: strconv.ParseFloat: parsing {number:?}: invalid syntax"
                ),
                at,
            );
        }
    }
    // Strings: an unterminated one (promql-parser says "invalid syntax" when a
    // quoted string holds a newline) and unknown escapes, at the string's start.
    if message.starts_with("unterminated quoted string") || message == "invalid syntax" {
        if let Some((at, quote)) = unterminated_string(query) {
            let word = if quote == '`' { "raw" } else { "quoted" };
            return found(format!("unterminated {word} string"), Some(at));
        }
    }
    // A bad escape that promql-parser's unquoting calls "invalid syntax":
    // Prometheus's lexer names it, at the string's start.
    if message == "invalid syntax" {
        if let Some((at, m)) = bad_escape(query, &tokens) {
            return found(m, Some(at));
        }
    }
    // A trailing `!`: Go prints the end of input as the replacement character.
    if message == "'!' can not be at the end" {
        let at = tokens
            .iter()
            .rev()
            .find(|t| t.is(query, "!"))
            .map(|t| t.start);
        return found("unexpected character after '!': '\u{FFFD}'".into(), at);
    }
    // A regex Go's regexp refuses, at the matcher's label name.
    if let Some(regex) = message.strip_prefix("illegal regex for ") {
        if let Some(m) = go_regexp_error(regex) {
            let at = tokens.windows(3).find_map(|w| {
                let value = w[2].text(query);
                let unquoted = value.get(1..value.len().saturating_sub(1));
                (matches!(w[1].text(query), "=~" | "!~") && unquoted == Some(regex))
                    .then_some(w[0].start)
            });
            return found(format!("error parsing regexp: {m}"), at);
        }
    }
    if let Some(c) = message.strip_prefix("unknown escape sequence '") {
        if let Some(c) = c.strip_suffix('\'').and_then(|c| c.chars().next()) {
            let at = tokens
                .iter()
                .find(|t| t.kind == Kind::String && t.text(query).contains(&format!("\\{c}")))
                .map(|t| t.start);
            return found(
                format!("unknown escape sequence U+{:04X} '{c}'", c as u32),
                at,
            );
        }
    }
    // Label matchers.
    if let Some(label) = quoted_after(
        message,
        "invalid label matcher, expected label matching operator after ",
    ) {
        let at = tokens
            .windows(2)
            .find(|w| w[0].depth_kind == Some('{') && w[0].is(query, &label))
            .map(|w| &w[1]);
        if let Some(t) = at {
            return found(
                format!(
                    "unexpected {:?} in label matching, expected label matching operator",
                    t.text(query)
                ),
                Some(t.start),
            );
        }
    }
    if let Some(rest) = message.strip_prefix("unexpected identifier '") {
        if let Some((name, after)) = rest.split_once('\'') {
            return found(
                format!("unexpected identifier {name:?}{after}"),
                unexpected_offset(query, message),
            );
        }
    }
    // `a=="b"`: the lexer reads `==`; Prometheus's stops at the second `=`.
    if let Some(rest) = message.strip_prefix("unexpected '=' in label matching") {
        let at = tokens
            .iter()
            .find(|t| t.depth_kind == Some('{') && t.is(query, "=="))
            .map(|t| t.start + 1);
        return found(format!("unexpected \"=\" in label matching{rest}"), at);
    }
    if let Some((_, first, after)) = quoted_within(message, "metric name must not be set twice: ") {
        let second = after.trim_start_matches(" or ").trim_matches('\'');
        return found(
            format!("metric name must not be set twice: {first:?} or {second:?}"),
            start,
        );
    }
    // Errors of a whole selector or modified expression: Prometheus reports the
    // start of the node, which is the query's start when the node begins it.
    // A number past float64's range after `@`: Go's ParseFloat refuses it where
    // Rust reads infinity.
    if message == "timestamp out of bounds for @ modifier: inf" {
        let number = tokens.windows(2).find_map(|w| {
            let n = w[1].text(query);
            (w[0].is(query, "@") && w[1].kind == Kind::Number).then_some((n, w[1].start))
        });
        if let Some((n, at)) = number {
            return found(
                format!(
                    "error parsing number: strconv.ParseFloat: parsing {n:?}: value out of range"
                ),
                Some(at),
            );
        }
    }
    if let Some(rest) = message.strip_prefix("timestamp out of bounds for @ modifier: ") {
        let value = match rest {
            "inf" => "+Inf",
            "-inf" => "-Inf",
            v => v,
        };
        return found(
            format!("timestamp out of bounds for @ modifier: {value}"),
            start,
        );
    }
    for modifier in ["@", "offset"] {
        if message == format!("{modifier} modifier must be preceded by an vector selector or matrix selector or a subquery") {
            return found(
                format!("{modifier} modifier must be preceded by an instant vector selector or range vector selector or a subquery"),
                start,
            );
        }
    }
    if let Some(rest) = message.strip_prefix("subquery is only allowed on vector, got ") {
        let got = rest.trim_end_matches(" instead");
        return found(
            format!("subquery is only allowed on instant vector, got {got} instead"),
            start,
        );
    }
    if let Some(got) = message.strip_prefix(
        "unary expression only allowed on expressions of type scalar or vector, got: ",
    ) {
        return found(
            format!(
                "unary expression only allowed on expressions of type scalar or instant vector, got {:?}",
                type_name(got)
            ),
            start,
        );
    }
    if message == "offset may not be set multiple times"
        || message == "@ <timestamp> may not be set multiple times"
        || message == "vector selector must contain at least one non-empty matcher"
    {
        return found(message.into(), start);
    }
    // A keyword where none belongs (`x or group_left(a) y`): at the keyword.
    if let Some(word) = message
        .strip_prefix("unexpected <")
        .and_then(|w| w.strip_suffix('>'))
    {
        let at = tokens.iter().find(|t| t.is(query, word)).map(|t| t.start);
        return found(message.into(), at);
    }
    // A range on something not a selector: reported at its `[`.
    if message == "ranges only allowed for vector selectors" {
        let at = tokens
            .windows(2)
            .find(|w| w[0].is(query, "]") && w[1].is(query, "["))
            .map(|w| w[1].start);
        return found(message.into(), at);
    }
    found(message.to_string(), None)
}

/// What Prometheus's grammar adds after "unexpected X" for a token at `at`: the
/// construct it was in and what it expected there (its error productions in
/// generated_parser.y), judged from the tokens before.
fn syntax_error_context(query: &str, tokens: &[Token], at: usize) -> &'static str {
    let before: Vec<&str> = tokens
        .iter()
        .filter(|t| t.end <= at)
        .map(|t| t.text(query))
        .collect();
    let prefix: Vec<&Token> = tokens.iter().filter(|t| t.end <= at).collect();
    let inside = open_bracket_at_end(query, prefix.iter().copied());
    let last = before.last().copied();
    const GROUPING: &[&str] = &["by", "without", "on", "ignoring"];
    // `offset` or `@` then nothing usable (`-`, `start`, `end(` passed over).
    let modifier = before
        .iter()
        .rev()
        .find(|w| !matches!(**w, "-" | "+" | "start" | "end" | "("));
    match modifier {
        Some(&"offset") => return " in offset, expected duration",
        Some(&"@") => return " in @, expected timestamp",
        _ => {}
    }
    // (A grouping keyword that starts the query is a metric name.)
    if before.len() >= 2 && last.is_some_and(|w| GROUPING.contains(&w)) {
        return " in grouping opts, expected \"(\"";
    }
    // Inside the labels of a grouping clause.
    if inside == Some('(') {
        let open = before.iter().rposition(|w| *w == "(");
        if let Some(o) = open {
            if o > 0 && GROUPING.contains(&before[o - 1]) && !before[o..].contains(&")") {
                return if matches!(last, Some("(") | Some(",")) {
                    " in grouping opts, expected label"
                } else {
                    " in grouping opts, expected \",\" or \")\""
                };
            }
        }
    }
    // Right after an aggregation's clause, where its arguments belong.
    if last == Some(")") {
        if let Some(o) = before.iter().rposition(|w| *w == "(") {
            if o >= 2
                && matches!(before[o - 1], "by" | "without")
                && AGGREGATIONS.contains(&before[o - 2])
            {
                return " in aggregation";
            }
        }
    }
    match inside {
        Some('{') => match last {
            Some("{") | Some(",") => " in label matching, expected identifier or \"}\"",
            Some("=") | Some("!=") | Some("=~") | Some("!~") => {
                " in label matching, expected string"
            }
            Some(w) if w.starts_with(['"', '\'', '`']) => {
                " in label matching, expected \",\" or \"}\""
            }
            _ => " in label matching, expected label matching operator",
        },
        Some('[') => {
            let colon = before
                .iter()
                .rev()
                .take_while(|w| **w != "[")
                .any(|w| *w == ":");
            match (colon, last) {
                (false, _) => " in subquery or range, expected \":\" or \"]\"",
                (true, Some(":")) => " in subquery selector, expected duration or \"]\"",
                (true, _) => " in subquery selector, expected \"]\"",
            }
        }
        _ => "",
    }
}

/// The innermost bracket still open after `tokens`.
fn open_bracket_at_end<'a>(
    query: &str,
    tokens: impl IntoIterator<Item = &'a Token>,
) -> Option<char> {
    let mut open = Vec::new();
    for t in tokens {
        match t.text(query) {
            "(" => open.push('('),
            "[" => open.push('['),
            "{" => open.push('{'),
            ")" | "]" | "}" => {
                open.pop();
            }
            _ => {}
        }
    }
    open.pop()
}

/// A token as Prometheus's `Item.desc` describes it: its kind and quoted text for
/// names and literals (text past 10 bytes cut, as Go does), `<op:…>`,
/// `<aggr:…>` or `<…>` for operators, aggregators and keywords, and the quoted
/// text for punctuation.
fn token_description(id: promql_parser::parser::token::TokenId, text: &str) -> String {
    use promql_parser::parser::token::{self as t, TokenType};
    let literal = |kind: &str| {
        if text.len() > 10 && text.is_char_boundary(10) {
            format!("{kind} {:?}...", &text[..10])
        } else {
            format!("{kind} {text:?}")
        }
    };
    let kind = TokenType::new(id);
    match id {
        t::T_IDENTIFIER => format!("identifier {text:?}"),
        t::T_METRIC_IDENTIFIER => format!("metric identifier {text:?}"),
        t::T_NUMBER => literal("number"),
        t::T_STRING => literal("string"),
        t::T_DURATION => literal("duration"),
        // `@` is missing from Prometheus 2.42's table of item names, so Go
        // prints its item type's number before it.
        t::T_AT => "\"<Item 57385>\" <op:@>".to_string(),
        _ if kind.is_operator() => format!("<op:{text}>"),
        _ if kind.is_aggregator() => format!("<aggr:{text}>"),
        _ if text.chars().all(|c| c.is_ascii_alphabetic() || c == '_') => format!("<{text}>"),
        _ => format!("{text:?}"),
    }
}

/// The first token a grouping clause (`by`, `without`, `on`, `ignoring`,
/// `group_left`, `group_right` after something) cannot take, in Prometheus's
/// words: `(` must follow `by`, `without`, `on` and `ignoring`; inside, labels
/// and commas alternate up to `)`.
fn grouping_clause_error(query: &str, tokens: &[Token]) -> Option<(String, usize)> {
    let describe = |t: &Token| {
        let text = t.text(query);
        match t.kind {
            Kind::Identifier => format!("identifier {text:?}"),
            Kind::Number => format!("number {text:?}"),
            Kind::String => format!("string {text:?}"),
            Kind::Operator => format!("{text:?}"),
        }
    };
    for (i, t) in tokens.iter().enumerate().skip(1) {
        let keyword = t.text(query);
        let needs_paren = matches!(keyword, "by" | "without" | "on" | "ignoring");
        if !(needs_paren || matches!(keyword, "group_left" | "group_right")) {
            continue;
        }
        let Some(next) = tokens.get(i + 1) else {
            continue;
        };
        if !next.is(query, "(") {
            if needs_paren {
                return Some((
                    format!(
                        "unexpected {} in grouping opts, expected \"(\"",
                        describe(next)
                    ),
                    next.start,
                ));
            }
            continue;
        }
        let mut expect_label = true;
        for u in &tokens[i + 2..] {
            let text = u.text(query);
            match (expect_label, u.kind, text) {
                (_, _, ")") => break,
                (true, Kind::Identifier, _) => expect_label = false,
                (false, _, ",") => expect_label = true,
                (true, _, _) => {
                    return Some((
                        format!(
                            "unexpected {} in grouping opts, expected label",
                            describe(u)
                        ),
                        u.start,
                    ))
                }
                (false, _, _) => {
                    return Some((
                        format!(
                            "unexpected {} in grouping opts, expected \",\" or \")\"",
                            describe(u)
                        ),
                        u.start,
                    ))
                }
            }
        }
    }
    None
}

/// The first bad escape in a quoted string as Prometheus's lexer words it, and
/// the string's start: a non-hex digit in `\x`, `\u`, `\U` (the closing quote
/// included) or an octal escape above 255.
fn bad_escape(query: &str, tokens: &[Token]) -> Option<(usize, String)> {
    for t in tokens.iter().filter(|t| t.kind == Kind::String) {
        let text = t.text(query);
        if text.starts_with('`') {
            continue;
        }
        let chars: Vec<char> = text.chars().collect();
        let mut i = 1;
        while i < chars.len() {
            if chars[i] != '\\' {
                i += 1;
                continue;
            }
            let (digits, radix) = match chars.get(i + 1) {
                Some('x') => (2, 16),
                Some('u') => (4, 16),
                Some('U') => (8, 16),
                Some('0'..='7') => (3, 8),
                _ => {
                    i += 2;
                    continue;
                }
            };
            let first = if radix == 8 { i + 1 } else { i + 2 };
            let mut value: u32 = 0;
            for k in 0..digits {
                let c = *chars.get(first + k).unwrap_or(&'"');
                match c.to_digit(radix) {
                    Some(d) => value = value * radix + d,
                    None => {
                        return Some((
                            t.start,
                            format!(
                                "illegal character U+{:04X} '{c}' in escape sequence",
                                c as u32
                            ),
                        ))
                    }
                }
            }
            if (radix == 8 && value > 255) || char::from_u32(value).is_none() {
                return Some((
                    t.start,
                    "escape sequence is an invalid Unicode code point".into(),
                ));
            }
            i = first + digits;
        }
    }
    None
}

/// Go's regexp error for a matcher's regex, which Prometheus anchors as
/// `^(?:re)$` before compiling, for the kinds of mistake met in practice: an
/// unclosed group, a repetition with nothing before it, a repeat count whose
/// minimum exceeds its maximum, and a class left open (closed by the anchoring's
/// `)`).
fn go_regexp_error(regex: &str) -> Option<String> {
    let anchored = format!("^(?:{regex})$");
    let mut depth = 0i32;
    let mut escaped = false;
    for c in regex.chars() {
        match (escaped, c) {
            (true, _) => escaped = false,
            (false, '\\') => escaped = true,
            (false, '(') => depth += 1,
            (false, ')') => depth -= 1,
            _ => {}
        }
    }
    if depth > 0 {
        return Some(format!("missing closing ): `{anchored}`"));
    }
    if let Some(op) = regex
        .chars()
        .next()
        .filter(|c| matches!(c, '*' | '+' | '?'))
    {
        return Some(format!("missing argument to repetition operator: `{op}`"));
    }
    let braces = regex
        .find('{')
        .and_then(|open| regex[open..].find('}').map(|c| (open, open + c)));
    if let Some((open, close)) = braces {
        let counts = &regex[open + 1..close];
        if let Some((min, max)) = counts.split_once(',') {
            if let (Ok(min), Ok(max)) = (min.parse::<u32>(), max.parse::<u32>()) {
                if min > max {
                    return Some(format!("invalid repeat count: `{}`", &regex[open..=close]));
                }
            }
        }
    }
    if let Some(open) = regex.rfind('[') {
        let class = &regex[open + 1..];
        if !class.contains(']') {
            if let Some(low) = class.strip_suffix('-').and_then(|l| l.chars().last()) {
                if ')' < low {
                    return Some(format!("invalid character class range: `{low}-)`"));
                }
            }
        }
    }
    None
}

/// The aggregation operators, whose calls take an optional parameter first.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "avg",
    "count",
    "min",
    "max",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "count_values",
    "quantile",
];

/// Prometheus's name of a promql-parser type name.
fn type_name(t: &str) -> &str {
    match t {
        "vector" => "instant vector",
        "matrix" => "range vector",
        other => other,
    }
}

fn value_type_name(t: ValueType) -> &'static str {
    match t {
        ValueType::Vector => "instant vector",
        ValueType::Matrix => "range vector",
        ValueType::Scalar => "scalar",
        ValueType::String => "string",
    }
}

/// The type of the expression `query[start..end]`, when it parses alone.
fn arg_type(query: &str, start: usize, end: usize) -> Option<&'static str> {
    let text = query.get(start..end)?;
    std::panic::catch_unwind(|| promql_parser::parser::parse(text))
        .ok()?
        .ok()
        .map(|e| value_type_name(e.value_type()))
}

/// Whether `message` goes away, and no complaint about the stand-in comes,
/// when `query[span]` becomes an expression of type `expected`.
fn replacing_fixes(query: &str, span: (usize, usize), expected: &str, message: &str) -> bool {
    let stand_in = match expected {
        "scalar" => "0",
        "string" => "\"\"",
        "range vector" => "x[1m]",
        _ => "x",
    };
    let replaced = format!("{}{stand_in}{}", &query[..span.0], &query[span.1..]);
    match std::panic::catch_unwind(|| promql_parser::parser::parse(&replaced)) {
        Ok(Ok(_)) => true,
        // A new complaint about the stand-in means the argument wanted another type.
        Ok(Err(m)) => {
            let parser_word = match expected {
                "instant vector" => "vector",
                "range vector" => "matrix",
                other => other,
            };
            m != message && !m.ends_with(&format!("got {parser_word}"))
        }
        Err(_) => false,
    }
}

/// The name between `'…'` right after `prefix` in `message`.
fn quoted_after(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    let (name, _) = quoted_prefix(rest)?;
    Some(name)
}

/// `'name'rest` as the name and the rest.
fn quoted_prefix(s: &str) -> Option<(String, &str)> {
    let rest = s.strip_prefix('\'')?;
    let end = rest.find('\'')?;
    Some((rest[..end].to_string(), &rest[end + 1..]))
}

/// `before<sep>'name'after` as its three parts.
fn quoted_within<'a>(message: &'a str, sep: &str) -> Option<(&'a str, String, &'a str)> {
    let (before, rest) = message.split_once(sep)?;
    let (name, after) = quoted_prefix(rest)?;
    Some((before, name, after))
}

/// Where `unexpected identifier 'x' …` points: the identifier inside braces.
fn unexpected_offset(query: &str, message: &str) -> Option<usize> {
    let name = quoted_after(message, "unexpected identifier ")?;
    tokens(query)
        .into_iter()
        .find(|t| {
            t.depth_kind == Some('{') && t.kind == Kind::Identifier && t.is(query, &name) && {
                // the value place: right after a matching operator
                query[..t.start].trim_end().ends_with(['=', '~'])
            }
        })
        .map(|t| t.start)
}

/// The first closing bracket without an opening one.
fn unmatched_close(tokens: &[Token], query: &str) -> Option<usize> {
    let mut depth = 0usize;
    for t in tokens {
        match t.text(query) {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" => {
                if depth == 0 {
                    return Some(t.start);
                }
                depth -= 1;
            }
            _ => {}
        }
    }
    None
}

/// The start and quote of a string literal not closed (a `"` or `'` one ends at
/// a newline, as Prometheus's lexer has it).
fn unterminated_string(query: &str) -> Option<(usize, char)> {
    let mut chars = query.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '#' => {
                for (_, c) in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '"' | '\'' | '`' => {
                let mut closed = false;
                while let Some((_, d)) = chars.next() {
                    if d == '\\' && c != '`' {
                        chars.next();
                    } else if d == c {
                        closed = true;
                        break;
                    } else if d == '\n' && c != '`' {
                        break;
                    }
                }
                if !closed {
                    return Some((i, c));
                }
            }
            _ => {}
        }
    }
    None
}

/// A call of `name`: where its name starts and its arguments' spans. For an
/// aggregation, a `by`/`without` clause before the arguments is passed over.
struct Call {
    name_start: usize,
    args: Vec<(usize, usize)>,
}

fn calls(query: &str, tokens: &[Token], name: &str) -> Vec<Call> {
    let mut out = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        if !(t.kind == Kind::Identifier && t.is(query, name)) {
            continue;
        }
        let mut j = i + 1;
        if tokens
            .get(j)
            .is_some_and(|u| u.is(query, "by") || u.is(query, "without"))
        {
            j = match skip_group(query, tokens, j + 1) {
                Some(k) => k,
                None => continue,
            };
        }
        if !tokens.get(j).is_some_and(|u| u.is(query, "(")) {
            continue;
        }
        let mut args = Vec::new();
        let mut depth = 0usize;
        let mut arg_start: Option<usize> = None;
        let mut arg_end = 0;
        for u in &tokens[j + 1..] {
            let text = u.text(query);
            if depth == 0 && (text == "," || text == ")") {
                if let Some(s) = arg_start.take() {
                    args.push((s, arg_end));
                }
                if text == ")" {
                    break;
                }
                continue;
            }
            match text {
                "(" | "[" | "{" => depth += 1,
                ")" | "]" | "}" => depth = depth.saturating_sub(1),
                _ => {}
            }
            arg_start.get_or_insert(u.start);
            arg_end = u.end;
        }
        out.push(Call {
            name_start: t.start,
            args,
        });
    }
    out
}

/// The index past a parenthesised group starting at `tokens[i]`.
fn skip_group(query: &str, tokens: &[Token], i: usize) -> Option<usize> {
    if !tokens.get(i)?.is(query, "(") {
        return None;
    }
    let mut depth = 0usize;
    for (k, t) in tokens.iter().enumerate().skip(i) {
        match t.text(query) {
            "(" => depth += 1,
            ")" => {
                depth -= 1;
                if depth == 0 {
                    return Some(k + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// The binary operators, by Prometheus's precedence (higher binds tighter).
fn precedence(op: &str) -> Option<u8> {
    Some(match op {
        "or" => 1,
        "and" | "unless" => 2,
        "==" | "!=" | "<=" | "<" | ">=" | ">" => 3,
        "+" | "-" => 4,
        "*" | "/" | "%" | "atan2" => 5,
        "^" => 6,
        _ => return None,
    })
}

/// One operator of a chain at the top level, with its modifiers.
struct Operator {
    text: String,
    start: usize,
    bool_modifier: bool,
    matching_labels: bool,
    grouping: bool,
}

/// A node of the top-level operator chain: an operand's span and type, or an
/// operation.
enum Node {
    Operand {
        start: usize,
        value: &'static str,
    },
    Operation {
        op: usize,
        lhs: Box<Node>,
        rhs: Box<Node>,
    },
}

impl Node {
    fn start(&self) -> usize {
        match self {
            Node::Operand { start, .. } => *start,
            Node::Operation { lhs, .. } => lhs.start(),
        }
    }
}

/// The errors Prometheus's checkAST finds in a binary operation, found in the
/// query's top-level operator chain in its order (left operand, right operand,
/// then the operation), when the chain is at the top level.
fn binary_error(query: &str, tokens: &[Token], message: &str) -> Option<PrometheusParseError> {
    const KNOWN: &[&str] = &[
        "binary expression must contain only scalar and instant vector types",
        "vector matching only allowed between vectors",
        "bool modifier can only be used on comparison operators",
        "set operator",
        "no grouping allowed for",
        "comparisons between scalars must use BOOL modifier",
    ];
    if !KNOWN.iter().any(|k| message.starts_with(k)) {
        return None;
    }
    let (operands, operators) = top_level_chain(query, tokens)?;
    let mut operands = operands.into_iter();
    let first = operands.next()?;
    let tree = build(first, &mut operands.zip(0..).peekable(), &operators, 0);
    let mut found = None;
    check(&tree, &operators, &mut found);
    let (message, offset) = found?;
    Some(PrometheusParseError {
        message,
        offset: Some(offset),
    })
}

/// Precedence climbing over the chain.
fn build(
    lhs: Node,
    rest: &mut std::iter::Peekable<impl Iterator<Item = (Node, usize)>>,
    operators: &[Operator],
    min: u8,
) -> Node {
    let mut lhs = lhs;
    while let Some((_, op)) = rest.peek() {
        let p = precedence(&operators[*op].text).unwrap_or(0);
        if p < min {
            break;
        }
        let Some((mut rhs, op)) = rest.next() else {
            break;
        };
        while let Some((_, next)) = rest.peek() {
            let q = precedence(&operators[*next].text).unwrap_or(0);
            let right_assoc = operators[*next].text == "^";
            if q > p || (right_assoc && q == p) {
                rhs = build(rhs, rest, operators, if q > p { p + 1 } else { p });
            } else {
                break;
            }
        }
        lhs = Node::Operation {
            op,
            lhs: Box::new(lhs),
            rhs: Box::new(rhs),
        };
    }
    lhs
}

/// The node's type; the first error, in checkAST's order, into `found`.
fn check(node: &Node, operators: &[Operator], found: &mut Option<(String, usize)>) -> &'static str {
    let (op, lhs, rhs) = match node {
        Node::Operand { value, .. } => return value,
        Node::Operation { op, lhs, rhs } => (&operators[*op], lhs, rhs),
    };
    let lt = check(lhs, operators, found);
    let rt = check(rhs, operators, found);
    let mut report = |m: String, at: usize| {
        found.get_or_insert((m, at));
    };
    let comparison = matches!(op.text.as_str(), "==" | "!=" | "<=" | "<" | ">=" | ">");
    let set = matches!(op.text.as_str(), "and" | "or" | "unless");
    let is_ok = |t: &str| t == "scalar" || t == "instant vector";
    if op.bool_modifier && !comparison {
        report(
            "bool modifier can only be used on comparison operators".into(),
            op.start,
        );
    }
    if comparison && !op.bool_modifier && lt == "scalar" && rt == "scalar" {
        report(
            "comparisons between scalars must use BOOL modifier".into(),
            op.start,
        );
    }
    if !is_ok(lt) {
        report(
            "binary expression must contain only scalar and instant vector types".into(),
            lhs.start(),
        );
    }
    if !is_ok(rt) {
        report(
            "binary expression must contain only scalar and instant vector types".into(),
            rhs.start(),
        );
    }
    let vectors = lt == "instant vector" && rt == "instant vector";
    if !vectors && op.matching_labels {
        report(
            "vector matching only allowed between instant vectors".into(),
            node.start(),
        );
    } else if vectors && set && op.grouping {
        report(
            format!("no grouping allowed for {:?} operation", op.text),
            node.start(),
        );
    }
    if (lt == "scalar" || rt == "scalar") && set {
        report(
            format!(
                "set operator {:?} not allowed in binary scalar expression",
                op.text
            ),
            node.start(),
        );
    }
    if lt == "scalar" && rt == "scalar" {
        "scalar"
    } else {
        "instant vector"
    }
}

/// The operands and operators of the query's top-level chain (a query without
/// a top-level operator has none).
fn top_level_chain(query: &str, tokens: &[Token]) -> Option<(Vec<Node>, Vec<Operator>)> {
    let mut operands = Vec::new();
    let mut operators: Vec<Operator> = Vec::new();
    let mut operand_start: Option<usize> = None;
    let mut operand_end = 0;
    let mut depth = 0usize;
    let mut i = 0;
    let operand = |s: usize, e: usize| -> Option<Node> {
        Some(Node::Operand {
            start: s,
            value: arg_type(query, s, e)?,
        })
    };
    while i < tokens.len() {
        let t = &tokens[i];
        let text = t.text(query);
        let binary_here = depth == 0
            && operand_start.is_some()
            && precedence(text).is_some()
            && !query[..t.start].trim_end().ends_with(['@'])
            && !query[..t.start].trim_end().ends_with("offset");
        if binary_here {
            operands.push(operand(operand_start.take()?, operand_end)?);
            let mut op = Operator {
                text: text.to_string(),
                start: t.start,
                bool_modifier: false,
                matching_labels: false,
                grouping: false,
            };
            i += 1;
            while let Some(m) = tokens.get(i) {
                match m.text(query) {
                    "bool" => {
                        op.bool_modifier = true;
                        i += 1;
                    }
                    "on" | "ignoring" | "group_left" | "group_right" => {
                        let group = matches!(m.text(query), "group_left" | "group_right");
                        op.grouping |= group;
                        i += 1;
                        if tokens.get(i).is_some_and(|u| u.is(query, "(")) {
                            let end = skip_group(query, tokens, i)?;
                            if !group && end > i + 2 {
                                op.matching_labels = true;
                            }
                            i = end;
                        }
                    }
                    _ => break,
                }
            }
            operators.push(op);
            continue;
        }
        match text {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" => depth = depth.checked_sub(1)?,
            _ => {}
        }
        operand_start.get_or_insert(t.start);
        operand_end = t.end;
        i += 1;
    }
    operands.push(operand(operand_start?, operand_end)?);
    if operators.is_empty() {
        return None;
    }
    Some((operands, operators))
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Identifier,
    Number,
    String,
    Operator,
}

/// A token of the query: enough of PromQL's lexing to find positions (strings
/// and comments skipped over, brackets tracked).
#[derive(Debug)]
struct Token {
    start: usize,
    end: usize,
    kind: Kind,
    /// The innermost bracket the token is inside (`(`, `[` or `{`), if any.
    depth_kind: Option<char>,
}

impl Token {
    fn text<'a>(&self, query: &'a str) -> &'a str {
        &query[self.start..self.end]
    }
    fn is(&self, query: &str, text: &str) -> bool {
        self.text(query) == text
    }
}

fn tokens(query: &str) -> Vec<Token> {
    let bytes = query.as_bytes();
    let mut out = Vec::new();
    let mut open: Vec<char> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let kind = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' | b'\'' | b'`' => {
                i += 1;
                while i < bytes.len() && bytes[i] != c {
                    if bytes[i] == b'\\' && c != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
                i = (i + 1).min(bytes.len());
                Kind::String
            }
            b'0'..=b'9' | b'.' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                    i += 1;
                }
                Kind::Number
            }
            // A colon belongs to names (`a:b`) but inside brackets is a subquery's.
            c if c.is_ascii_alphabetic()
                || c == b'_'
                || (c == b':' && open.last() != Some(&'[')) =>
            {
                let colon = open.last() != Some(&'[');
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric()
                        || bytes[i] == b'_'
                        || (colon && bytes[i] == b':'))
                {
                    i += 1;
                }
                Kind::Identifier
            }
            _ => {
                let two = query.get(i..i + 2).unwrap_or("");
                i += if ["==", "!=", "<=", ">=", "=~", "!~"].contains(&two) {
                    2
                } else {
                    query[i..].chars().next().map_or(1, char::len_utf8)
                };
                Kind::Operator
            }
        };
        let text = &query[start..i];
        if text == ")" || text == "]" || text == "}" {
            open.pop();
        }
        out.push(Token {
            start,
            end: i,
            kind,
            depth_kind: open.last().copied(),
        });
        match text {
            "(" => open.push('('),
            "[" => open.push('['),
            "{" => open.push('{'),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translated(query: &str) -> (String, Option<(usize, usize)>) {
        let message = promql_parser::parser::parse(query).unwrap_err();
        let e = prometheus_parse_error(query, &message);
        (e.message, e.offset.map(|o| line_column(query, o)))
    }

    #[test]
    fn line_column_counts_lines_and_bytes() {
        assert_eq!(line_column("abc", 0), (1, 1));
        assert_eq!(line_column("a\nbc", 3), (2, 2));
        assert_eq!(line_column("a\n", 2), (2, 1));
    }

    #[test]
    fn wrong_argument_type_is_at_the_argument() {
        assert_eq!(
            translated("sum(\n  rate(x)\n)"),
            (
                "expected type range vector in call to function \"rate\", got instant vector"
                    .into(),
                Some((2, 8))
            )
        );
        assert_eq!(
            translated("topk(\"a\", x)"),
            (
                "expected type scalar in aggregation parameter, got string".into(),
                Some((1, 6))
            )
        );
    }

    #[test]
    fn binary_errors_follow_prometheus_order() {
        assert_eq!(
            translated("x > bool x[5m]"),
            (
                "binary expression must contain only scalar and instant vector types".into(),
                Some((1, 10))
            )
        );
        assert_eq!(
            translated("x and 1"),
            (
                "set operator \"and\" not allowed in binary scalar expression".into(),
                Some((1, 1))
            )
        );
        assert_eq!(
            translated("x + bool y"),
            (
                "bool modifier can only be used on comparison operators".into(),
                Some((1, 3))
            )
        );
    }

    #[test]
    fn wrong_argument_is_the_one_whose_replacement_fixes_it() {
        assert_eq!(
            translated("label_replace(x, a, \"b\", \"c\", \"d\")").1,
            Some((1, 18))
        );
    }

    #[test]
    fn second_colon_in_a_subquery() {
        assert_eq!(
            translated("x[5m:1m:1m]"),
            ("unexpected colon ':'".into(), Some((1, 8)))
        );
    }

    #[test]
    fn syntax_errors_name_the_token() {
        assert_eq!(
            translated("rate (x[5m]) by (a)"),
            ("unexpected <by>".into(), Some((1, 14)))
        );
        assert_eq!(
            translated("up{job=\"a\"} \n  / \n  / up"),
            ("unexpected <op:/>".into(), Some((3, 3)))
        );
        assert_eq!(
            translated("x +"),
            ("unexpected end of input".into(), Some((1, 4)))
        );
        assert_eq!(
            translated("x y"),
            ("unexpected identifier \"y\"".into(), Some((1, 3)))
        );
    }

    #[test]
    fn syntax_errors_say_where_they_are() {
        assert_eq!(
            translated("x{a!~}").0,
            "unexpected \"}\" in label matching, expected string"
        );
        assert_eq!(
            translated("sum by (a,,b) (x)").0,
            "unexpected \",\" in grouping opts, expected label"
        );
        assert_eq!(
            translated("max_over_time(x[5m:1m)"),
            (
                "unexpected \")\" in subquery selector, expected \"]\"".into(),
                Some((1, 22))
            )
        );
        assert_eq!(translated("by (a) sum(x)").0, "unexpected \"(\"");
    }

    #[test]
    fn bracket_mistakes_in_grouping_clauses() {
        assert_eq!(
            translated("sum by (a (x)"),
            (
                "unexpected \"(\" in grouping opts, expected \",\" or \")\"".into(),
                Some((1, 11))
            )
        );
        assert_eq!(
            translated("sum by a) (x)"),
            (
                "unexpected identifier \"a\" in grouping opts, expected \"(\"".into(),
                Some((1, 8))
            )
        );
    }

    #[test]
    fn regex_errors_as_go_words_them() {
        assert_eq!(
            go_regexp_error("a{2,1}").as_deref(),
            Some("invalid repeat count: `{2,1}`")
        );
        // A `}` before the `{` is no repeat count.
        assert_eq!(
            go_regexp_error("}{("),
            Some("missing closing ): `^(?:}{()$`".into())
        );
    }

    #[test]
    fn unclosed_brackets_are_at_the_end() {
        assert_eq!(
            translated("sum(x"),
            ("unclosed left parenthesis".into(), Some((1, 6)))
        );
        assert_eq!(
            translated("x[5m"),
            ("unclosed left bracket".into(), Some((1, 5)))
        );
        assert_eq!(
            translated("sum(x))"),
            ("unexpected right parenthesis ')'".into(), Some((1, 8)))
        );
    }

    #[test]
    fn unknown_function_is_quoted_as_go_quotes() {
        assert_eq!(
            translated("\n  frate(x[5m])"),
            ("unknown function with name \"frate\"".into(), Some((2, 3)))
        );
    }
}
