use super::*;
use crate::model::NORMAL_NAN_BITS;

/// Renders every entry of a body on one line each, for compact assertions.
fn render(body: &str, format: Format, opts: ParserOptions) -> Result<Vec<String>, ParseError> {
    let mut p = Parser::new(body.as_bytes(), format, opts);
    let mut out = Vec::new();
    while let Some(e) = p.next()? {
        out.push(match e {
            Entry::Sample(s) => {
                let mut line = format!("{} {}", s.to_labels()?, fmt_value(s.value));
                if let Some(ts) = s.timestamp_ms {
                    line.push_str(&format!(" @{ts}"));
                }
                if let Some(ex) = &s.exemplar {
                    line.push_str(&format!(
                        " # {} {}",
                        ex.to_labels(s.line)?,
                        fmt_value(ex.value)
                    ));
                    if let Some(ts) = ex.timestamp_ms {
                        line.push_str(&format!(" @{ts}"));
                    }
                }
                line
            }
            Entry::Help { family, help } => format!("HELP {family} {help:?}"),
            Entry::Type { family, kind } => format!("TYPE {family} {kind}"),
            Entry::Unit { family, unit } => format!("UNIT {family} {unit:?}"),
        });
    }
    Ok(out)
}

fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        format!("NaN(0x{:x})", v.to_bits())
    } else {
        format!("{v}")
    }
}

fn text(body: &str) -> Vec<String> {
    render(body, Format::PrometheusText, ParserOptions::default())
        .unwrap_or_else(|e| panic!("{e}\n{body}"))
}

fn om(body: &str) -> Vec<String> {
    render(body, Format::OpenMetrics, ParserOptions::default())
        .unwrap_or_else(|e| panic!("{e}\n{body}"))
}

fn text_err(body: &str) -> String {
    match render(body, Format::PrometheusText, ParserOptions::default()) {
        Ok(v) => panic!("expected an error for {body:?}, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

fn om_err(body: &str) -> String {
    match render(body, Format::OpenMetrics, ParserOptions::default()) {
        Ok(v) => panic!("expected an error for {body:?}, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

// ---------------- content negotiation ----------------

#[test]
fn accept_header_is_prometheus_3_default() {
    assert_eq!(
        ACCEPT_HEADER,
        "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,\
         application/openmetrics-text;version=0.0.1;q=0.5,\
         text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,\
         text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
    );
}

#[test]
fn content_type_picks_parser() {
    let f = |ct: &str| Format::from_content_type(Some(ct), None).map(|n| n.format);
    assert_eq!(
        f("text/plain; version=0.0.4; charset=utf-8"),
        Ok(Format::PrometheusText)
    );
    assert_eq!(f("text/plain"), Ok(Format::PrometheusText));
    assert_eq!(
        f("text/plain;version=1.0.0;escaping=allow-utf-8"),
        Ok(Format::PrometheusText)
    );
    assert_eq!(f("TEXT/Plain"), Ok(Format::PrometheusText));
    assert_eq!(
        f("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        Ok(Format::OpenMetrics)
    );
    assert_eq!(
        f("application/openmetrics-text;version=0.0.1"),
        Ok(Format::OpenMetrics)
    );
    assert_eq!(
        f("text/plain; charset=\"utf-8\";"),
        Ok(Format::PrometheusText)
    );
}

#[test]
fn content_type_without_fallback_fails_like_prometheus_3() {
    for ct in [
        None,
        Some(""),
        Some("text/html"),
        Some("text/plain; version"),
        Some("/"),
    ] {
        let err = Format::from_content_type(ct, None).unwrap_err();
        assert!(
            err.0.contains("no fallback_scrape_protocol"),
            "{ct:?}: {err}"
        );
    }
    let err = Format::from_content_type(Some("application/vnd.google.protobuf"), None).unwrap_err();
    assert!(err.0.contains("protobuf"), "{err}");
}

#[test]
fn content_type_fallback_is_used_and_reported() {
    let fallback = Format::from_scrape_protocol("PrometheusText0.0.4");
    assert_eq!(fallback, Some(Format::PrometheusText));
    for ct in [
        None,
        Some("text/html; charset=utf-8"),
        Some("text/plain;;x"),
    ] {
        let n = Format::from_content_type(ct, fallback).unwrap();
        assert_eq!(n.format, Format::PrometheusText);
        assert!(n.fallback_reason.unwrap().contains("PrometheusText0.0.4"));
    }
    let n = Format::from_content_type(Some("text/plain"), Some(Format::OpenMetrics)).unwrap();
    assert_eq!(
        (n.format, n.fallback_reason),
        (Format::PrometheusText, None)
    );
    assert_eq!(
        Format::from_scrape_protocol("OpenMetricsText0.0.1"),
        Some(Format::OpenMetrics)
    );
    assert_eq!(Format::from_scrape_protocol("PrometheusProto"), None);
}

// ---------------- text format ----------------

#[test]
fn text_basic_body_with_comments_blank_lines_and_whitespace() {
    let body = "# A comment\n\
                #no space is a comment too\n\
                \n\
                # HELP http_requests_total The total number of HTTP requests.\n\
                # TYPE http_requests_total counter\n\
                http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
                \t  http_requests_total{method=\"post\",code=\"400\"}    3   1395066363000  \n\
                \n\
                metric_without_timestamp_and_labels 12.47\n";
    assert_eq!(
        text(body),
        vec![
            "HELP http_requests_total \"The total number of HTTP requests.\"",
            "TYPE http_requests_total counter",
            "http_requests_total{code=\"200\", method=\"post\"} 1027 @1395066363000",
            "http_requests_total{code=\"400\", method=\"post\"} 3 @1395066363000",
            "metric_without_timestamp_and_labels 12.47",
        ]
    );
}

#[test]
fn text_special_values() {
    let body = "a NaN\nb +Inf\nc -Inf\nd Inf\ne nan\nf inf\ng -infinity\nh 1e3\ni -0.5\nj .5\n";
    let got = text(body);
    let nan = format!("NaN(0x{:x})", NORMAL_NAN_BITS);
    assert_eq!(
        got,
        vec![
            format!("a {nan}"),
            "b inf".into(),
            "c -inf".into(),
            "d inf".into(),
            format!("e {nan}"),
            "f inf".into(),
            "g -inf".into(),
            "h 1000".into(),
            "i -0.5".into(),
            "j 0.5".into(),
        ]
    );
}

#[test]
fn text_label_value_escapes_are_unescaped_on_demand() {
    let body = r#"m{a="x\\y",b="say \"hi\"",c="l1\nl2",d="tab\tkept",e="plain"} 1
"#;
    let mut p = Parser::new(
        body.as_bytes(),
        Format::PrometheusText,
        ParserOptions::default(),
    );
    let Some(Entry::Sample(s)) = p.next().unwrap() else {
        panic!()
    };
    let labels: Vec<(String, String, bool)> = s
        .labels()
        .map(|(n, v)| {
            let borrowed = matches!(v, std::borrow::Cow::Borrowed(_));
            (n.into_owned(), v.into_owned(), borrowed)
        })
        .collect();
    assert_eq!(
        labels,
        vec![
            ("a".into(), "x\\y".into(), false),
            ("b".into(), "say \"hi\"".into(), false),
            ("c".into(), "l1\nl2".into(), false),
            ("d".into(), "tab\\tkept".into(), false),
            ("e".into(), "plain".into(), true),
        ]
    );
}

#[test]
fn text_help_escaping_follows_help_rules() {
    // Text format HELP unescapes only \\ and \n; \" stays as written.
    assert_eq!(
        text("# HELP m a\\\\b\\nc \\\"q\\\"\n"),
        vec!["HELP m \"a\\\\b\\nc \\\\\\\"q\\\\\\\"\""]
    );
    // The blank after the name is dropped, further blanks are kept; blank-only is empty.
    assert_eq!(text("# HELP m   two\n"), vec!["HELP m \"  two\""]);
    assert_eq!(text("# HELP m  \t \n"), vec!["HELP m \"\""]);
    assert_eq!(text("#\tHELP\tm\ttabbed\n"), vec!["HELP m \"tabbed\""]);
}

#[test]
fn text_label_set_forms() {
    assert_eq!(
        text("a{} 1\nb{x=\"1\",} 2\nc { x = \"1\" , y=\"2\" } 3\nd{x=\"1\" y=\"2\"} 4\ne{x=\"\"} 5\n"),
        vec![
            "a 1",
            "b{x=\"1\"} 2",
            "c{x=\"1\", y=\"2\"} 3",
            "d{x=\"1\", y=\"2\"} 4",
            "e 5",
        ]
    );
    // Value directly after the brace, and no trailing newline at the end of the body.
    assert_eq!(text("a{x=\"1\"}7"), vec!["a{x=\"1\"} 7"]);
}

#[test]
fn text_quoted_utf8_names() {
    let body = "# HELP \"my.metric\" dotted\n# TYPE \"my.metric\" gauge\n\
                {\"my.metric\", \"host.name\"=\"a\"} 1\n{\"my.metric\"} 2\n{a=\"b\", \"my.metric\",} 3\n";
    assert_eq!(
        text(body),
        vec![
            "HELP my.metric \"dotted\"",
            "TYPE my.metric gauge",
            "my.metric{host.name=\"a\"} 1",
            "my.metric 2",
            "my.metric{a=\"b\"} 3",
        ]
    );
}

#[test]
fn text_histogram_and_summary_label_normalisation() {
    let body = "# TYPE h histogram\n\
                h_bucket{le=\"0.005\"} 1\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"10\"} 3\n\
                h_bucket{le=\"1e6\"} 4\nh_bucket{le=\"+Inf\"} 5\nh_bucket{le=\"inf\"} 5\n\
                h_bucket{le=\"x\"} 5\nh_sum 1.5\nh_count 5\n\
                # TYPE s summary\n\
                s{quantile=\"0\"} 1\ns{quantile=\"0.5\"} 2\ns{quantile=\"1\"} 3\ns{quantile=\"0.99\",le=\"1\"} 4\n\
                # TYPE g gauge\n\
                g{le=\"1\",quantile=\"1\"} 1\n";
    assert_eq!(
        text(body),
        vec![
            "TYPE h histogram",
            "h_bucket{le=\"0.005\"} 1",
            "h_bucket{le=\"1.0\"} 2",
            "h_bucket{le=\"10.0\"} 3",
            "h_bucket{le=\"1e+06\"} 4",
            "h_bucket{le=\"+Inf\"} 5",
            "h_bucket{le=\"+Inf\"} 5",
            "h_bucket{le=\"x\"} 5",
            "h_sum 1.5",
            "h_count 5",
            "TYPE s summary",
            "s{quantile=\"0.0\"} 1",
            "s{quantile=\"0.5\"} 2",
            "s{quantile=\"1.0\"} 3",
            "s{le=\"1\", quantile=\"0.99\"} 4",
            "TYPE g gauge",
            "g{le=\"1\", quantile=\"1\"} 1",
        ]
    );
}

#[test]
fn text_type_stays_in_effect_until_the_next_type_line() {
    // Upstream keeps the last TYPE for following untyped samples.
    assert_eq!(
        text("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nother{le=\"1\"} 1\n"),
        vec![
            "TYPE h histogram",
            "h_bucket{le=\"1.0\"} 1",
            "other{le=\"1.0\"} 1"
        ]
    );
    assert_eq!(text("other{le=\"1\"} 1\n"), vec!["other{le=\"1\"} 1"]);
}

#[test]
fn text_untyped_and_nul_at_line_start_ends_body() {
    assert_eq!(
        text("# TYPE u untyped\nu 1\n\0garbage that is never read\n"),
        vec!["TYPE u unknown", "u 1"]
    );
}

#[test]
fn text_multiline_label_value_keeps_line_numbers() {
    let body = "a{x=\"line1\nline2\"} 1\nb{y=\"2\"} oops\n";
    assert_eq!(
        text_err(body),
        "line 3, column 10: invalid value \"oops\": expected a float such as 1, -2.5e3, NaN or +Inf"
    );
}

#[test]
fn text_duplicate_label_names_fail() {
    let mut p = Parser::new(
        b"\n\nm{a=\"1\",a=\"2\"} 1\n",
        Format::PrometheusText,
        ParserOptions::default(),
    );
    let Some(Entry::Sample(s)) = p.next().unwrap() else {
        panic!()
    };
    assert_eq!(
        s.to_labels().unwrap_err().to_string(),
        "line 3, column 1: label name \"a\" is not unique"
    );
    let mut p = Parser::new(
        b"m{__name__=\"x\"} 1\n",
        Format::PrometheusText,
        ParserOptions::default(),
    );
    let Some(Entry::Sample(s)) = p.next().unwrap() else {
        panic!()
    };
    assert!(s.to_labels().is_err());
}

#[test]
fn text_errors_name_line_column_and_expectation() {
    let cases: &[(&str, &str)] = &[
        ("a{b\"c\"} 1\n", "line 1, column 4: expected '=' after label name, found '\"'"),
        ("ok 1\na{b=c} 1\n", "line 2, column 5: expected '\"' to start the label value, found 'c'"),
        ("a{b=\"c} 1\n", "line 1, column 5: unterminated label value: no closing '\"'"),
        ("a{1=\"c\"} 1\n", "line 1, column 3: expected a label name or '}', found '1'"),
        ("a{,} 1\n", "line 1, column 3: expected a label name or '}', found ','"),
        ("a\n", "line 1, column 2: expected a value after the metric name and labels, found end of line"),
        ("a{} \n", "line 1, column 5: expected a value after the metric name and labels, found end of line"),
        ("a 1 2 3\n", "line 1, column 7: expected end of line after timestamp, found '3'"),
        ("a 1 -2\n", "line 1, column 5: expected a timestamp (integer milliseconds) or end of line after value, found '-'"),
        ("a 1 1.5\n", "line 1, column 6: expected end of line after timestamp, found '.'"),
        ("a 1 99999999999999999999\n", "line 1, column 5: timestamp out of range for int64 milliseconds"),
        ("a 0x10\n", "line 1, column 3: invalid value \"0x10\": expected a float such as 1, -2.5e3, NaN or +Inf"),
        ("a 1_000\n", "line 1, column 3: invalid value \"1_000\": expected a float such as 1, -2.5e3, NaN or +Inf"),
        ("a 1e999\n", "line 1, column 3: invalid value \"1e999\": expected a float such as 1, -2.5e3, NaN or +Inf"),
        ("a 1\r\n", "line 1, column 3: invalid value \"1\\r\": expected a float such as 1, -2.5e3, NaN or +Inf"),
        ("-a 1\n", "line 1, column 1: expected a metric name, '{' or '#' at start of line, found '-'"),
        ("{a=\"b\"} 1\n", "line 1, column 1: metric name not set: expected a quoted name inside the braces"),
        ("{\"x\",\"y\"} 1\n", "line 1, column 6: metric name already set"),
        ("{\"\"} 1\n", "line 1, column 2: empty name"),
        ("# TYPE m counter \n", "line 1, column 10: invalid metric type \"counter \": expected counter, gauge, histogram, summary or untyped"),
        ("# TYPE m unknown\n", "line 1, column 10: invalid metric type \"unknown\": expected counter, gauge, histogram, summary or untyped"),
        ("# HELP 1m x\n", "line 1, column 8: expected a metric name after HELP, found '1'"),
        ("a{b=\"\\\n\"} 1\n", "line 1, column 6: invalid escape in label value: '\\' before end of line"),
        ("a{b=\"é\"}} 1\n", "line 1, column 9: invalid value \"}\": expected a float such as 1, -2.5e3, NaN or +Inf"),
    ];
    for (body, want) in cases {
        assert_eq!(&text_err(body), want, "body {body:?}");
    }
    // Invalid UTF-8 in HELP text and label values.
    let err = render_bytes(b"# HELP m \xff\n", Format::PrometheusText).unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 1, column 10: help text is not valid UTF-8"
    );
    let err = render_bytes(b"m{a=\"\xff\"} 1\n", Format::PrometheusText).unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 1, column 6: invalid UTF-8 in label value"
    );
    // Non-UTF-8 in a plain comment is fine.
    assert!(render_bytes(b"# \xff\xfe\nm 1\n", Format::PrometheusText).is_ok());
}

fn render_bytes(body: &[u8], format: Format) -> Result<usize, ParseError> {
    let mut p = Parser::new(body, format, ParserOptions::default());
    let mut n = 0;
    while let Some(e) = p.next()? {
        if let Entry::Sample(s) = e {
            s.to_labels()?;
        }
        n += 1;
    }
    Ok(n)
}

#[test]
fn empty_bodies_are_empty_scrapes() {
    assert_eq!(text(""), Vec::<String>::new());
    assert_eq!(om(""), Vec::<String>::new());
    assert_eq!(text("\n\n  \n# only a comment\n"), Vec::<String>::new());
}

// ---------------- OpenMetrics ----------------

#[test]
fn om_basic_body_with_metadata_units_and_eof() {
    let body = "# TYPE acme_http_router_request_seconds summary\n\
                # UNIT acme_http_router_request_seconds seconds\n\
                # HELP acme_http_router_request_seconds Latency though all of ACME's HTTP request \\\"router\\\".\n\
                acme_http_router_request_seconds_sum{path=\"/api/v1\",method=\"GET\"} 9036.32\n\
                acme_http_router_request_seconds_count{path=\"/api/v1\",method=\"GET\"} 807283.0\n\
                acme_http_router_request_seconds_created{path=\"/api/v1\",method=\"GET\"} 1605281325.0\n\
                # TYPE go_goroutines gauge\n\
                go_goroutines 69 1520879607.789\n\
                # EOF\n";
    assert_eq!(
        om(body),
        vec![
            "TYPE acme_http_router_request_seconds summary",
            "UNIT acme_http_router_request_seconds \"seconds\"",
            "HELP acme_http_router_request_seconds \"Latency though all of ACME's HTTP request \\\"router\\\".\"",
            "acme_http_router_request_seconds_sum{method=\"GET\", path=\"/api/v1\"} 9036.32",
            "acme_http_router_request_seconds_count{method=\"GET\", path=\"/api/v1\"} 807283",
            "acme_http_router_request_seconds_created{method=\"GET\", path=\"/api/v1\"} 1605281325",
            "TYPE go_goroutines gauge",
            "go_goroutines 69 @1520879607789",
        ]
    );
    // "# EOF" without a final line break is accepted.
    assert_eq!(om("a 1\n# EOF"), vec!["a 1"]);
}

#[test]
fn om_timestamps_are_seconds_converted_to_ms() {
    assert_eq!(
        om("a 1 1\nb 1 1.5\nc 1 -1.25\nd 1 1520879607.7891\ne 1 0\n# EOF\n"),
        vec![
            "a 1 @1000",
            "b 1 @1500",
            "c 1 @-1250",
            "d 1 @1520879607789",
            "e 1 @0"
        ]
    );
}

#[test]
fn om_exemplars_are_kept_on_the_sample() {
    let body = "# TYPE foo histogram\n\
                foo_bucket{le=\"0.01\"} 0\n\
                foo_bucket{le=\"0.1\"} 8 # {} 0.054\n\
                foo_bucket{le=\"1\"} 11 # {trace_id=\"KOO5S4vxi0o\"} 0.67\n\
                foo_bucket{le=\"10\"} 17 # {trace_id=\"oHg5SJYRHA0\",span=\"a\\\"b\"} 9.8 1520879607.789\n\
                foo_bucket{le=\"+Inf\"} 17 1520879607 # {trace_id=\"x\"} 11 1520879608\n\
                foo_count 17\nfoo_sum 324789.3\n# EOF\n";
    assert_eq!(
        om(body),
        vec![
            "TYPE foo histogram",
            "foo_bucket{le=\"0.01\"} 0",
            "foo_bucket{le=\"0.1\"} 8 # {} 0.054",
            "foo_bucket{le=\"1.0\"} 11 # {trace_id=\"KOO5S4vxi0o\"} 0.67",
            "foo_bucket{le=\"10.0\"} 17 # {span=\"a\\\"b\", trace_id=\"oHg5SJYRHA0\"} 9.8 @1520879607789",
            "foo_bucket{le=\"+Inf\"} 17 @1520879607000 # {trace_id=\"x\"} 11 @1520879608000",
            "foo_count 17",
            "foo_sum 324789.3",
        ]
    );
}

#[test]
fn om_created_series_are_samples_by_default_and_skippable() {
    let body = "# TYPE c counter\nc_total 1\nc_created 1600000000.5\n\
                # TYPE g gauge\ng_created 5\n\
                # TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\nh_sum 1\nh_created 1600000000\n\
                # EOF\n";
    let all = om(body);
    assert!(all.contains(&"c_created 1600000000.5".to_string()));
    assert!(all.contains(&"h_created 1600000000".to_string()));
    let skipped = render(
        body,
        Format::OpenMetrics,
        ParserOptions {
            skip_created_series: true,
        },
    )
    .unwrap();
    assert!(!skipped
        .iter()
        .any(|s| s.starts_with("c_created") || s.starts_with("h_created")));
    // Only counter, summary and histogram families have created series.
    assert!(skipped.contains(&"g_created 5".to_string()));
    assert_eq!(all.len(), skipped.len() + 2);
}

#[test]
fn om_all_types_and_gaugehistogram_keeps_le() {
    let body = "# TYPE a info\na_info{v=\"1\"} 1\n# TYPE b stateset\nb{b=\"x\"} 1\n\
                # TYPE c gaugehistogram\nc_bucket{le=\"1\"} 1\nc_gcount 1\nc_gsum 1\n\
                # TYPE d unknown\nd 1\n# EOF\n";
    assert_eq!(
        om(body),
        vec![
            "TYPE a info",
            "a_info{v=\"1\"} 1",
            "TYPE b stateset",
            "b{b=\"x\"} 1",
            "TYPE c gaugehistogram",
            "c_bucket{le=\"1\"} 1",
            "c_gcount 1",
            "c_gsum 1",
            "TYPE d unknown",
            "d 1",
        ]
    );
}

#[test]
fn om_quoted_names_and_empty_help() {
    assert_eq!(
        om("# HELP \"a.b\" \n{\"a.b\",\"c.d\"=\"e\",} 1\n# EOF\n"),
        vec!["HELP a.b \"\"", "a.b{c.d=\"e\"} 1"]
    );
}

#[test]
fn om_errors_name_line_column_and_expectation() {
    let cases: &[(&str, &str)] = &[
        ("a 1\n", "line 2, column 1: expected \"# EOF\" at the end of OpenMetrics data, found end of input"),
        ("a 1", "line 1, column 4: expected a line break after the sample, found end of input (OpenMetrics data must end with \"# EOF\")"),
        ("a 1\n# EOF\n\n", "line 3, column 1: unexpected data after \"# EOF\""),
        ("a 1\n# EOF\nb 1\n", "line 3, column 1: unexpected data after \"# EOF\""),
        ("\na 1\n# EOF\n", "line 1, column 1: expected a metric name, '{' or '#' at start of line, found end of line"),
        ("# comment\n# EOF\n", "line 1, column 3: expected HELP, TYPE, UNIT or EOF after '# ' (OpenMetrics allows no other comments), found 'c'"),
        ("#EOF\n", "line 1, column 2: expected ' ' after '#', found 'E'"),
        ("a  1\n# EOF\n", "line 1, column 3: expected a value, found ' '"),
        ("a 1 \n# EOF\n", "line 1, column 5: expected a timestamp or \"# {\" (exemplar) after ' ', found end of line"),
        ("a{b=\"c\", d=\"e\"} 1\n# EOF\n", "line 1, column 9: expected a label name or '}', found ' '"),
        ("a {b=\"c\"} 1\n# EOF\n", "line 1, column 3: invalid value \"{b=\\\"c\\\"}\": expected a float such as 1, -2.5e3, NaN or +Inf"),
        ("a{b=\"c\"d=\"e\"} 1\n# EOF\n", "line 1, column 8: expected ',' or '}' after label value, found 'd'"),
        ("a{b=\"c\nd\"} 1\n# EOF\n", "line 1, column 7: line break in label value"),
        ("a\t1\n# EOF\n", "line 1, column 2: expected ' ' before the value, found tab"),
        ("a 1 NaN\n# EOF\n", "line 1, column 5: invalid timestamp \"NaN\": expected seconds since the epoch as a finite float"),
        ("a 1 +Inf\n# EOF\n", "line 1, column 5: invalid timestamp \"+Inf\": expected seconds since the epoch as a finite float"),
        ("a 1 2 3\n# EOF\n", "line 1, column 7: expected \"# {\" (exemplar) or a line break after the timestamp, found '3'"),
        ("a 1 # {x=\"y\"}\n# EOF\n", "line 1, column 14: expected ' ' before the exemplar value, found end of line"),
        ("a 1 # {\"x\"} 1\n# EOF\n", "line 1, column 11: expected '=' after label name, found '}'"),
        ("a 1 # {x=\"y\"} 1 NaN\n# EOF\n", "line 1, column 17: invalid exemplar timestamp \"NaN\": expected seconds since the epoch as a finite float"),
        ("a 1 # {x=\"y\"} 1 2 3\n# EOF\n", "line 1, column 18: expected a line break after the sample, found ' '"),
        ("# TYPE a untyped\n# EOF\n", "line 1, column 10: invalid metric type \"untyped\": expected counter, gauge, histogram, gaugehistogram, summary, info, stateset or unknown"),
        ("# UNIT a_bytes seconds\n# EOF\n", "line 1, column 16: unit \"seconds\" is not a suffix of metric \"a_bytes\" (expected \"<name>_seconds\")"),
        ("# UNIT seconds seconds\n# EOF\n", "line 1, column 16: unit \"seconds\" is not a suffix of metric \"seconds\" (expected \"<name>_seconds\")"),
        ("# HELP a\n# EOF\n", "line 1, column 9: expected ' ' and text after the metric name in HELP, found end of line"),
        ("# HELP  a x\n# EOF\n", "line 1, column 8: expected a metric name after HELP, found ' '"),
        ("# HELP a x", "line 1, column 11: expected a line break after the HELP text, found end of input"),
    ];
    for (body, want) in cases {
        assert_eq!(&om_err(body), want, "body {body:?}");
    }
    // An empty UNIT is valid.
    assert_eq!(om("# UNIT a \n# EOF\n"), vec!["UNIT a \"\""]);
}

#[test]
fn parser_is_finished_after_an_error() {
    let mut p = Parser::new(
        b"a{ 1\nb 2\n",
        Format::PrometheusText,
        ParserOptions::default(),
    );
    assert!(p.next().is_err());
    assert_eq!(p.next(), Ok(None));
}

// ---------------- metadata ----------------

#[test]
fn metadata_is_collected_per_family() {
    let body = "# HELP a_total Requests.\n# TYPE a_total counter\n# UNIT a_total \n\
                a_total 1\n# TYPE b gauge\n# HELP b Temperature.\n# HELP a_total Requests, again.\n# EOF\n";
    let mut p = Parser::new(
        body.as_bytes(),
        Format::OpenMetrics,
        ParserOptions::default(),
    );
    let mut md = MetadataCollector::new();
    while let Some(e) = p.next().unwrap() {
        md.observe(&e);
    }
    assert_eq!(md.get("b").map(|m| m.kind), Some(MetricType::Gauge));
    assert_eq!(
        md.finish(),
        vec![
            MetricMetadata {
                family: "a_total".into(),
                kind: MetricType::Counter,
                help: "Requests, again.".into(),
                unit: "".into(),
            },
            MetricMetadata {
                family: "b".into(),
                kind: MetricType::Gauge,
                help: "Temperature.".into(),
                unit: "".into(),
            },
        ]
    );
}

// ---------------- golden bodies ----------------

/// A node_exporter-like body (text 0.0.4) generated by code.
pub(super) fn node_exporter_body(cpus: usize) -> String {
    let mut b = String::new();
    b.push_str("# HELP go_gc_duration_seconds A summary of the pause duration of garbage collection cycles.\n");
    b.push_str("# TYPE go_gc_duration_seconds summary\n");
    for (q, v) in [
        ("0", "2.5e-05"),
        ("0.25", "3.1e-05"),
        ("0.5", "4.2e-05"),
        ("0.75", "6.6e-05"),
        ("1", "0.000732"),
    ] {
        b.push_str(&format!("go_gc_duration_seconds{{quantile=\"{q}\"}} {v}\n"));
    }
    b.push_str("go_gc_duration_seconds_sum 0.087344\ngo_gc_duration_seconds_count 1372\n");
    b.push_str("# HELP go_goroutines Number of goroutines that currently exist.\n# TYPE go_goroutines gauge\ngo_goroutines 8\n");
    b.push_str("# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.\n# TYPE node_cpu_seconds_total counter\n");
    for cpu in 0..cpus {
        for (i, mode) in [
            "idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user",
        ]
        .iter()
        .enumerate()
        {
            b.push_str(&format!(
                "node_cpu_seconds_total{{cpu=\"{cpu}\",mode=\"{mode}\"}} {}.{:02}\n",
                1000 * (cpu + 1) + i * 37,
                (cpu * 7 + i) % 100
            ));
        }
    }
    b.push_str("# HELP node_disk_io_time_weighted_seconds_total The weighted # of seconds spent doing I/Os.\n");
    b.push_str("# TYPE node_disk_io_time_weighted_seconds_total counter\n");
    b.push_str("node_disk_io_time_weighted_seconds_total{device=\"nvme0n1\"} 1234.567\n");
    b.push_str("node_disk_io_time_weighted_seconds_total{device=\"sda\"} 0\n");
    b.push_str("# HELP node_filesystem_avail_bytes Filesystem space available to non-root users in bytes.\n");
    b.push_str("# TYPE node_filesystem_avail_bytes gauge\n");
    b.push_str("node_filesystem_avail_bytes{device=\"/dev/nvme0n1p2\",fstype=\"ext4\",mountpoint=\"/\"} 1.84834842624e+11\n");
    b.push_str("node_filesystem_avail_bytes{device=\"tmpfs\",fstype=\"tmpfs\",mountpoint=\"/run\"} 3.3349632e+09\n");
    b.push_str("# HELP node_load1 1m load average.\n# TYPE node_load1 gauge\nnode_load1 0.52\n");
    b.push_str("# HELP node_network_receive_bytes_total Network device statistic receive_bytes.\n");
    b.push_str("# TYPE node_network_receive_bytes_total counter\n");
    b.push_str("node_network_receive_bytes_total{device=\"eth0\"} 9.87654321e+08\n");
    b.push_str("node_network_receive_bytes_total{device=\"lo\"} 123456\n");
    b.push_str("# HELP node_scrape_collector_duration_seconds node_exporter: Duration of a collector scrape.\n");
    b.push_str("# TYPE node_scrape_collector_duration_seconds gauge\n");
    b.push_str("node_scrape_collector_duration_seconds{collector=\"cpu\"} 0.000412\n");
    b.push_str(
        "# HELP node_uname_info Labeled system information as provided by the uname system call.\n",
    );
    b.push_str("# TYPE node_uname_info gauge\n");
    b.push_str("node_uname_info{domainname=\"(none)\",machine=\"x86_64\",nodename=\"db-1\",release=\"6.1.0-18-amd64\",sysname=\"Linux\",version=\"#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)\"} 1\n");
    b.push_str("# HELP node_textfile_scrape_error 1 if there was an error opening or reading a file, 0 otherwise\n");
    b.push_str("# TYPE node_textfile_scrape_error gauge\nnode_textfile_scrape_error 0\n");
    b.push_str("# HELP prometheus_http_request_duration_seconds Histogram of latencies for HTTP requests.\n");
    b.push_str("# TYPE prometheus_http_request_duration_seconds histogram\n");
    for (le, n) in [
        ("0.1", 5),
        ("0.2", 6),
        ("0.4", 6),
        ("1", 7),
        ("3", 7),
        ("8", 7),
        ("20", 7),
        ("60", 7),
        ("120", 7),
        ("+Inf", 7),
    ] {
        b.push_str(&format!(
            "prometheus_http_request_duration_seconds_bucket{{handler=\"/metrics\",le=\"{le}\"}} {n}\n"
        ));
    }
    b.push_str("prometheus_http_request_duration_seconds_sum{handler=\"/metrics\"} 0.0451\n");
    b.push_str("prometheus_http_request_duration_seconds_count{handler=\"/metrics\"} 7\n");
    b.push_str("# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n");
    b.push_str(
        "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds 1.70684001142e+09\n",
    );
    b
}

#[test]
fn golden_node_exporter_text() {
    let got = text(&node_exporter_body(2));
    let samples: Vec<&String> = got
        .iter()
        .filter(|s| !s.starts_with("HELP ") && !s.starts_with("TYPE "))
        .collect();
    assert_eq!(
        samples.len(),
        7 + 1 + 16 + 2 + 2 + 1 + 2 + 1 + 1 + 1 + 12 + 1
    );
    for want in [
        "go_gc_duration_seconds{quantile=\"0.0\"} 0.000025",
        "go_gc_duration_seconds{quantile=\"0.25\"} 0.000031",
        "go_gc_duration_seconds{quantile=\"1.0\"} 0.000732",
        "go_gc_duration_seconds_count 1372",
        "node_cpu_seconds_total{cpu=\"1\", mode=\"user\"} 2259.14",
        "node_filesystem_avail_bytes{device=\"/dev/nvme0n1p2\", fstype=\"ext4\", mountpoint=\"/\"} 184834842624",
        "node_uname_info{domainname=\"(none)\", machine=\"x86_64\", nodename=\"db-1\", release=\"6.1.0-18-amd64\", sysname=\"Linux\", version=\"#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1 (2024-02-01)\"} 1",
        "prometheus_http_request_duration_seconds_bucket{handler=\"/metrics\", le=\"1.0\"} 7",
        "prometheus_http_request_duration_seconds_bucket{handler=\"/metrics\", le=\"120.0\"} 7",
        "prometheus_http_request_duration_seconds_bucket{handler=\"/metrics\", le=\"0.1\"} 5",
        "prometheus_http_request_duration_seconds_bucket{handler=\"/metrics\", le=\"+Inf\"} 7",
        "process_start_time_seconds 1706840011.42",
    ] {
        assert!(got.iter().any(|g| g == want), "missing {want}\n{got:#?}");
    }
    assert!(got.contains(&"HELP node_disk_io_time_weighted_seconds_total \"The weighted # of seconds spent doing I/Os.\"".to_string()));

    let mut md = MetadataCollector::new();
    let body = node_exporter_body(2);
    let mut p = Parser::new(
        body.as_bytes(),
        Format::PrometheusText,
        ParserOptions::default(),
    );
    while let Some(e) = p.next().unwrap() {
        md.observe(&e);
    }
    let md = md.finish();
    assert_eq!(md.len(), 12);
    assert!(md.iter().all(|m| !m.help.is_empty()));
}

/// A mysqld_exporter-like body (text 0.0.4).
pub(super) fn mysqld_exporter_body() -> String {
    let mut b = String::new();
    b.push_str(
        "# HELP mysql_up Whether the MySQL server is up.\n# TYPE mysql_up gauge\nmysql_up 1\n",
    );
    b.push_str(
        "# HELP mysql_global_status_commands_total Total number of executed MySQL commands.\n",
    );
    b.push_str("# TYPE mysql_global_status_commands_total counter\n");
    for (c, n) in [
        ("admin_commands", 12),
        ("begin", 0),
        ("commit", 40211),
        ("delete", 77),
        ("insert", 90412),
        ("select", 1234567),
        ("update", 5021),
    ] {
        b.push_str(&format!(
            "mysql_global_status_commands_total{{command=\"{c}\"}} {n}\n"
        ));
    }
    b.push_str(
        "# HELP mysql_global_status_innodb_buffer_pool_pages Innodb buffer pool pages by state.\n",
    );
    b.push_str("# TYPE mysql_global_status_innodb_buffer_pool_pages gauge\n");
    for (s, n) in [("data", 7431), ("dirty", 12), ("free", 756), ("misc", 0)] {
        b.push_str(&format!(
            "mysql_global_status_innodb_buffer_pool_pages{{state=\"{s}\"}} {n}\n"
        ));
    }
    b.push_str("# HELP mysql_global_variables_innodb_buffer_pool_size Generic gauge metric from SHOW GLOBAL VARIABLES.\n");
    b.push_str("# TYPE mysql_global_variables_innodb_buffer_pool_size gauge\n");
    b.push_str("mysql_global_variables_innodb_buffer_pool_size 1.34217728e+08\n");
    b.push_str("# HELP mysql_info_schema_table_size The size of the table components.\n# TYPE mysql_info_schema_table_size gauge\n");
    b.push_str("mysql_info_schema_table_size{component=\"data_length\",schema=\"shop\",table=\"orders\"} 1.6384e+04\n");
    b.push_str("mysql_info_schema_table_size{component=\"index_length\",schema=\"shop\",table=\"orders\"} 0\n");
    b.push_str("# HELP mysql_version_info MySQL version and distribution.\n# TYPE mysql_version_info gauge\n");
    b.push_str("mysql_version_info{innodb_version=\"10.11.6\",version=\"10.11.6-MariaDB-0+deb12u1\",version_comment=\"Debian 12\"} 1\n");
    b.push_str("# HELP mysql_exporter_collector_duration_seconds Collector time duration.\n");
    b.push_str("# TYPE mysql_exporter_collector_duration_seconds gauge\n");
    b.push_str("mysql_exporter_collector_duration_seconds{collector=\"collect.global_status\"} 0.003012421\n");
    b.push_str(
        "# HELP mysql_slave_status_seconds_behind_master Generic metric from SHOW SLAVE STATUS.\n",
    );
    b.push_str("# TYPE mysql_slave_status_seconds_behind_master untyped\n");
    b.push_str("mysql_slave_status_seconds_behind_master{channel_name=\"\",connection_name=\"\",master_host=\"10.0.0.5\",master_uuid=\"\"} NaN\n");
    b.push_str(
        "# HELP mysql_perf_schema_events_statements_latency A histogram of statement latency.\n",
    );
    b.push_str("# TYPE mysql_perf_schema_events_statements_latency histogram\n");
    for (le, n) in [
        ("1e-06", 0),
        ("1e-05", 3),
        ("0.0001", 40),
        ("0.001", 800),
        ("0.01", 900),
        ("0.1", 950),
        ("1", 990),
        ("10", 999),
        ("+Inf", 1000),
    ] {
        b.push_str(&format!("mysql_perf_schema_events_statements_latency_bucket{{schema=\"shop\",le=\"{le}\"}} {n}\n"));
    }
    b.push_str("mysql_perf_schema_events_statements_latency_sum{schema=\"shop\"} 12.5\n");
    b.push_str("mysql_perf_schema_events_statements_latency_count{schema=\"shop\"} 1000\n");
    b
}

#[test]
fn golden_mysqld_exporter_text() {
    let got = text(&mysqld_exporter_body());
    for want in [
        "mysql_up 1",
        "mysql_global_status_commands_total{command=\"select\"} 1234567",
        "mysql_global_variables_innodb_buffer_pool_size 134217728",
        "mysql_info_schema_table_size{component=\"data_length\", schema=\"shop\", table=\"orders\"} 16384",
        // Empty label values are dropped, as Prometheus drops them.
        &format!("mysql_slave_status_seconds_behind_master{{master_host=\"10.0.0.5\"}} NaN(0x{:x})", NORMAL_NAN_BITS),
        "TYPE mysql_slave_status_seconds_behind_master unknown",
        "mysql_perf_schema_events_statements_latency_bucket{le=\"1e-06\", schema=\"shop\"} 0",
        "mysql_perf_schema_events_statements_latency_bucket{le=\"0.0001\", schema=\"shop\"} 40",
        "mysql_perf_schema_events_statements_latency_bucket{le=\"1.0\", schema=\"shop\"} 990",
        "mysql_perf_schema_events_statements_latency_bucket{le=\"10.0\", schema=\"shop\"} 999",
        "mysql_perf_schema_events_statements_latency_bucket{le=\"+Inf\", schema=\"shop\"} 1000",
    ] {
        assert!(got.iter().any(|g| g == want), "missing {want}\n{got:#?}");
    }
    assert_eq!(
        got.iter()
            .filter(|s| !s.starts_with("HELP ") && !s.starts_with("TYPE "))
            .count(),
        1 + 7 + 4 + 1 + 2 + 1 + 1 + 1 + 11
    );
}

/// The same families as client_golang writes them in OpenMetrics.
fn node_exporter_openmetrics_body() -> String {
    "# HELP go_gc_duration_seconds A summary of the pause duration of garbage collection cycles.\n\
     # TYPE go_gc_duration_seconds summary\n\
     go_gc_duration_seconds{quantile=\"0.0\"} 2.5e-05\n\
     go_gc_duration_seconds{quantile=\"1.0\"} 0.000732\n\
     go_gc_duration_seconds_sum 0.087344\n\
     go_gc_duration_seconds_count 1372\n\
     go_gc_duration_seconds_created 1.706840011e+09\n\
     # HELP node_cpu_seconds Seconds the CPUs spent in each mode.\n\
     # TYPE node_cpu_seconds counter\n\
     # UNIT node_cpu_seconds seconds\n\
     node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 1000.0\n\
     node_cpu_seconds_total{cpu=\"0\",mode=\"user\"} 259.14\n\
     # HELP http_request_duration_seconds Latency.\n\
     # TYPE http_request_duration_seconds histogram\n\
     http_request_duration_seconds_bucket{le=\"0.1\"} 5\n\
     http_request_duration_seconds_bucket{le=\"1.0\"} 7 # {trace_id=\"abc\"} 0.5 1.706840011e+09\n\
     http_request_duration_seconds_bucket{le=\"+Inf\"} 7\n\
     http_request_duration_seconds_sum 0.0451\n\
     http_request_duration_seconds_count 7\n\
     http_request_duration_seconds_created 1.706840011e+09\n\
     # HELP node_uname Labeled system information.\n\
     # TYPE node_uname info\n\
     node_uname_info{nodename=\"db-1\",sysname=\"Linux\"} 1\n\
     # EOF\n"
        .to_string()
}

#[test]
fn golden_node_exporter_openmetrics() {
    let got = om(&node_exporter_openmetrics_body());
    for want in [
        "UNIT node_cpu_seconds \"seconds\"",
        "go_gc_duration_seconds{quantile=\"0.0\"} 0.000025",
        "go_gc_duration_seconds_created 1706840011",
        "node_cpu_seconds_total{cpu=\"0\", mode=\"user\"} 259.14",
        "http_request_duration_seconds_bucket{le=\"1.0\"} 7 # {trace_id=\"abc\"} 0.5 @1706840011000",
        "node_uname_info{nodename=\"db-1\", sysname=\"Linux\"} 1",
    ] {
        assert!(got.iter().any(|g| g == want), "missing {want}\n{got:#?}");
    }
    assert_eq!(
        got.iter()
            .filter(|s| !s.contains(' ')
                || !s
                    .split(' ')
                    .next()
                    .unwrap()
                    .chars()
                    .all(|c| c.is_ascii_uppercase()))
            .count(),
        14
    );
}

// ---------------- robustness ----------------

/// Small deterministic PRNG (xorshift64*) so the test needs no extra crate.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn drain(body: &[u8], format: Format, opts: ParserOptions) {
    let mut p = Parser::new(body, format, opts);
    let mut guard = 0;
    loop {
        match p.next() {
            Ok(Some(Entry::Sample(s))) => {
                let _ = s.to_labels();
                for (n, v) in s.labels() {
                    assert!(n.len() + v.len() <= body.len() * 2 + 8);
                }
                if let Some(ex) = &s.exemplar {
                    let _ = ex.to_labels(s.line);
                }
                assert!(s.line >= 1);
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => {
                assert!(e.line >= 1 && e.column >= 1);
                break;
            }
        }
        guard += 1;
        assert!(guard <= body.len() + 2, "parser did not advance");
    }
}

#[test]
fn mutated_bodies_never_panic() {
    let seeds = [
        node_exporter_body(1),
        mysqld_exporter_body(),
        node_exporter_openmetrics_body(),
        "{\"a.b\",\"c\"=\"d\"} 1 2\n# HELP \"x\" y\\n\n".to_string(),
        "a{b=\"c\\\\\\\"\"} 1 # {t=\"1\"} 2 3\n# EOF\n".to_string(),
    ];
    let specials: &[u8] = b"{}\",=#\\ \t\n\0.e+-_:HELPTYPEUNITEOF0123456789\xff\xc3\xa9";
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..6000 {
        let seed = seeds[round % seeds.len()].as_bytes();
        let mut body = seed.to_vec();
        for _ in 0..1 + rng.below(6) {
            if body.is_empty() {
                break;
            }
            let at = rng.below(body.len());
            match rng.below(5) {
                0 => body[at] = specials[rng.below(specials.len())],
                1 => body.insert(at, specials[rng.below(specials.len())]),
                2 => {
                    body.remove(at);
                }
                3 => body.truncate(at),
                _ => {
                    let len = rng.below(16).min(body.len() - at);
                    let chunk = body[at..at + len].to_vec();
                    let to = rng.below(body.len());
                    body.splice(to..to, chunk);
                }
            }
        }
        for format in [Format::PrometheusText, Format::OpenMetrics] {
            drain(&body, format, ParserOptions::default());
            drain(
                &body,
                format,
                ParserOptions {
                    skip_created_series: true,
                },
            );
        }
    }
    // Pure noise too.
    for _ in 0..2000 {
        let len = rng.below(64);
        let body: Vec<u8> = (0..len)
            .map(|_| specials[rng.below(specials.len())])
            .collect();
        drain(&body, Format::PrometheusText, ParserOptions::default());
        drain(&body, Format::OpenMetrics, ParserOptions::default());
    }
}

#[test]
fn samples_borrow_from_the_body() {
    let body = b"node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 1\n".to_vec();
    let mut p = Parser::new(&body, Format::PrometheusText, ParserOptions::default());
    let Some(Entry::Sample(s)) = p.next().unwrap() else {
        panic!()
    };
    let range = body.as_ptr_range();
    assert!(range.contains(&s.name().as_ptr()));
    for (n, v) in s.labels() {
        assert!(matches!(
            (&n, &v),
            (std::borrow::Cow::Borrowed(_), std::borrow::Cow::Borrowed(_))
        ));
        assert!(range.contains(&v.as_ptr()));
    }
}
