use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use super::funcs::Env;
use super::value::Value;
use super::*;

/// Prometheus's template tests run at this time, with this external URL.
const NOW_MS: i64 = 1_353_755_652_000;
const EXTERNAL_URL: &str = "http://testhost:9090/path/prefix";

fn sample(labels: &[(&str, &str)], value: f64) -> QuerySample {
    QuerySample {
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        value,
    }
}

/// Expands `text` as the template "test" with `dot` as its data, every query
/// answering `result`.
fn run_with(text: &str, dot: Value, result: Vec<QuerySample>) -> Result<String, String> {
    let query = move |_: &str| Ok(result.clone());
    let env = Env {
        query: &query,
        timestamp_ms: NOW_MS,
        external_url: EXTERNAL_URL,
        regexes: RefCell::new(HashMap::new()),
        cost: Default::default(),
    };
    expand("test", text, dot, &env)
}

fn run(text: &str) -> Result<String, String> {
    run_with(text, Value::Nil, Vec::new())
}

fn floats(v: &[f64]) -> Value {
    Value::List(
        Rc::new(v.iter().map(|f| Value::Float(*f)).collect()),
        "float64",
    )
}

fn strings(v: &[&str]) -> Value {
    Value::List(
        Rc::new(v.iter().map(|s| Value::str(*s)).collect()),
        "string",
    )
}

fn ints(v: &[i64]) -> Value {
    Value::List(Rc::new(v.iter().map(|i| Value::Int(*i)).collect()), "int64")
}

fn ok(text: &str, want: &str) {
    assert_eq!(run(text), Ok(want.to_string()), "{text:?}");
}

fn ok_with(text: &str, dot: Value, want: &str) {
    assert_eq!(
        run_with(text, dot, Vec::new()),
        Ok(want.to_string()),
        "{text:?}"
    );
}

fn fails(text: &str, dot: Value, want: &str) {
    assert_eq!(
        run_with(text, dot, Vec::new()),
        Err(want.to_string()),
        "{text:?}"
    );
}

// The cases of Prometheus's template/template_test.go (TestTemplateExpansion)
// that apply to text templates of float samples.

#[test]
fn prometheus_basic_cases() {
    ok("plain text", "plain text");
    ok("{{ 1 }}", "1");
    ok("{{ \"<b>\" }}", "<b>");
    ok(
        "{{define \"x\"}}{{.arg0}} {{.arg1}}{{end}}{{template \"x\" (args 1 \"2\")}}",
        "1 2",
    );
    ok("{{ .Foo }}", "<no value>");
    assert_eq!(
        run("{{\u{a0}}}"),
        Err("error parsing template test: template: test:1: unrecognized character in action: U+00A0".into())
    );
    assert_eq!(
        run("{{"),
        Err("error parsing template test: template: test:1: unclosed action".into())
    );
    ok("{{ reReplaceAll \"(a)b\" \"x$1\" \"ab\" }}", "xa");
    ok("{{ \"aa bb CC\" | title }}", "Aa Bb CC");
    ok("{{ \"aa bb CC\" | toUpper }}", "AA BB CC");
    ok("{{ \"aA bB CC\" | toLower }}", "aa bb cc");
    ok(
        "{{ match \"a+\" \"aa\" }} {{ match \"a+\" \"b\" }}",
        "true false",
    );
    ok("{{ graphLink \"up\" }}", "/graph?g0.expr=up&g0.tab=0");
    ok("{{ tableLink \"up\" }}", "/graph?g0.expr=up&g0.tab=1");
    ok("{{ pathPrefix }}", "/path/prefix");
    ok("{{ externalURL }}", "http://testhost:9090/path/prefix");
}

#[test]
fn prometheus_query_cases() {
    let q = |text: &str, result: Vec<QuerySample>| run_with(text, Value::Nil, result);
    let a11 = || vec![sample(&[("__name__", "metric"), ("instance", "a")], 11.0)];
    assert_eq!(
        q(
            "{{ query \"1.5\" | first | value }}",
            vec![sample(&[], 1.5)]
        ),
        Ok("1.5".into())
    );
    assert_eq!(
        q(
            "{{ query \"metric{instance='a'}\" | first | value }}",
            a11()
        ),
        Ok("11".into())
    );
    assert_eq!(
        q(
            "{{ query \"metric{instance='a'}\" | first | label \"instance\" }}",
            a11()
        ),
        Ok("a".into())
    );
    assert_eq!(
        q(
            "{{ query \"metric{__value__='a'}\" | first | strvalue }}",
            vec![sample(&[("__name__", "metric"), ("__value__", "a")], 11.0)]
        ),
        Ok("a".into())
    );
    assert_eq!(
        q(
            "{{ query \"metric{instance='a'}\" | first | label \"foo\" }}",
            a11()
        ),
        Ok("".into())
    );
    assert_eq!(
        q(
            "{{ $x := query \"metric\" | first }}{{ $x.Labels.foo }}",
            a11()
        ),
        Ok("".into())
    );
    assert_eq!(
        q(
            "{{ range query \"metric\" | sortByLabel \"instance\" }}{{.Labels.instance}}:{{.Value}}: {{end}}",
            vec![
                sample(&[("__name__", "metric"), ("instance", "b")], 21.0),
                sample(&[("__name__", "metric"), ("instance", "a")], 11.0),
            ]
        ),
        Ok("a:11: b:21: ".into())
    );
    assert_eq!(
        q("{{ query \"missing\" | first }}", vec![]),
        Err("error executing template test: template: test:1:21: executing \"test\" at <first>: error calling first: first() called on vector with no elements".into())
    );
    assert_eq!(
        q("{{ (query \"missing\").banana }}", vec![]),
        Err("error executing template test: template: test:1:10: executing \"test\" at <\"missing\">: can't evaluate field banana in type template.queryResult".into())
    );
}

#[test]
fn prometheus_host_cases() {
    for (input, port, domain) in [
        ("foo.example.com", "foo.example.com", "foo"),
        ("foo.example.com:12345", "foo.example.com", "foo:12345"),
        ("192.0.2.1", "192.0.2.1", "192.0.2.1"),
        ("192.0.2.1:12345", "192.0.2.1", "192.0.2.1:12345"),
        ("2001:0DB8::1", "2001:0DB8::1", "2001:0DB8::1"),
        (
            "[2001:0DB8::1]:12345",
            "2001:0DB8::1",
            "[2001:0DB8::1]:12345",
        ),
        (
            "[2001:0DB8::1]::12345",
            "[2001:0DB8::1]::12345",
            "[2001:0DB8::1]::12345",
        ),
    ] {
        ok(&format!("{{{{ \"{input}\" | stripPort }}}}"), port);
        ok(&format!("{{{{ \"{input}\" | stripDomain }}}}"), domain);
    }
}

#[test]
fn prometheus_humanize_cases() {
    let each = |f: &str| format!("{{{{ range . }}}}{{{{ {f} . }}}}:{{{{ end }}}}");
    ok_with(
        &each("humanize"),
        floats(&[0.0, 1.0, 1234567.0, 0.12]),
        "0:1:1.235M:120m:",
    );
    ok_with(
        &each("humanize"),
        strings(&["0.0", "1.0", "1234567.0", ".12"]),
        "0:1:1.235M:120m:",
    );
    ok_with(
        &each("humanize"),
        ints(&[0, -1, 1, 1234567, i64::MAX]),
        "0:-1:1:1.235M:9.223E:",
    );
    ok_with(
        &each("humanize1024"),
        floats(&[0.0, 1.0, 1048576.0, 0.12]),
        "0:1:1Mi:0.12:",
    );
    ok_with(
        &each("humanize1024"),
        strings(&["0.0", "1.0", "1048576.0", ".12"]),
        "0:1:1Mi:0.12:",
    );
    ok_with(
        &each("humanize1024"),
        ints(&[0, -1, 1, 1234567, i64::MAX]),
        "0:-1:1:1.177Mi:8Ei:",
    );
    ok_with(
        &each("humanizeDuration"),
        floats(&[
            0.0,
            1.0,
            60.0,
            3600.0,
            86400.0,
            86400.0 + 3600.0,
            -(86400.0 * 2.0 + 3600.0 * 3.0 + 60.0 * 4.0 + 5.0),
            899.99,
        ]),
        "0s:1s:1m 0s:1h 0m 0s:1d 0h 0m 0s:1d 1h 0m 0s:-2d 3h 4m 5s:14m 59s:",
    );
    ok_with(
        &each("humanizeDuration"),
        strings(&["0", "1", "60", "3600", "86400"]),
        "0s:1s:1m 0s:1h 0m 0s:1d 0h 0m 0s:",
    );
    ok_with(
        &each("humanizeDuration"),
        floats(&[0.1, 0.0001, 0.12345, 60.1, 60.5, 1.2345, 12.345]),
        "100ms:100us:123.5ms:1m 0s:1m 0s:1.234s:12.35s:",
    );
    ok_with(
        &each("humanizeDuration"),
        strings(&[".1", ".0001", ".12345", "60.1", "60.5", "1.2345", "12.345"]),
        "100ms:100us:123.5ms:1m 0s:1m 0s:1.234s:12.35s:",
    );
    ok_with(
        &each("humanizeDuration"),
        ints(&[0, -1, 1, 1234567]),
        "0s:-1s:1s:14d 6h 56m 7s:",
    );
    let all = "{{ range . }}{{ humanize . }}:{{ humanize1024 . }}:{{ humanizeDuration . }}:{{humanizeTimestamp .}}:{{ end }}";
    let want = "+Inf:+Inf:+Inf:+Inf:-Inf:-Inf:-Inf:-Inf:NaN:NaN:NaN:NaN:";
    ok_with(
        all,
        floats(&[f64::INFINITY, f64::NEG_INFINITY, f64::NAN]),
        want,
    );
    ok_with(all, strings(&["+Inf", "-Inf", "NaN"]), want);
    ok(
        "{{ -0.22222 | humanizePercentage }}:{{ 0.0 | humanizePercentage }}:{{ 0.1234567 | humanizePercentage }}:{{ 1.23456 | humanizePercentage }}",
        "-22.22%:0%:12.35%:123.5%",
    );
    ok_with(
        &each("humanizePercentage"),
        ints(&[0, -1, 1, 1234567, i64::MAX]),
        "0%:-100%:100%:1.235e+08%:9.223e+20%:",
    );
    ok(
        r#"{{ "-0.22222" | humanizePercentage }}:{{ "0.0" | humanizePercentage }}:{{ "0.1234567" | humanizePercentage }}:{{ "1.23456" | humanizePercentage }}"#,
        "-22.22%:0%:12.35%:123.5%",
    );
    for f in ["humanize", "humanize1024", "humanizeDuration"] {
        fails(
            &format!("{{{{ {f} \"one\" }}}}"),
            Value::Nil,
            &format!("error executing template test: template: test:1:3: executing \"test\" at <{f} \"one\">: error calling {f}: strconv.ParseFloat: parsing \"one\": invalid syntax"),
        );
    }
    fails(
        r#"{{ "one" | humanizePercentage }}"#,
        Value::Nil,
        r#"error executing template test: template: test:1:11: executing "test" at <humanizePercentage>: error calling humanizePercentage: strconv.ParseFloat: parsing "one": invalid syntax"#,
    );
}

#[test]
fn prometheus_time_cases() {
    let each = "{{ range . }}{{ humanizeTimestamp . }}:{{ end }}";
    ok_with(
        each,
        ints(&[0, -1, 1, 1234567, 9223372036]),
        "1970-01-01 00:00:00 +0000 UTC:1969-12-31 23:59:59 +0000 UTC:1970-01-01 00:00:01 +0000 UTC:1970-01-15 06:56:07 +0000 UTC:2262-04-11 23:47:16 +0000 UTC:",
    );
    fails(
        each,
        ints(&[i64::MIN, i64::MAX]),
        r#"error executing template test: template: test:1:16: executing "test" at <humanizeTimestamp .>: error calling humanizeTimestamp: -9.223372036854776e+18 cannot be represented as a nanoseconds timestamp since it overflows int64"#,
    );
    ok(
        "{{ 1435065584.128 | humanizeTimestamp }}",
        "2015-06-23 13:19:44.128 +0000 UTC",
    );
    ok(
        r#"{{ "1435065584.128" | humanizeTimestamp }}"#,
        "2015-06-23 13:19:44.128 +0000 UTC",
    );
    ok(r#"{{ (1435065584.128 | toTime).Format "2006" }}"#, "2015");
    ok(r#"{{ ("1435065584.128" | toTime).Format "2006" }}"#, "2015");
    ok("{{ (1800 | toDuration).String }}", "30m0s");
    ok(r#"{{ ("1800" | toDuration).String }}"#, "30m0s");
    ok("{{ now }}", "1.353755652e+09");
    ok(
        r#"{{ (now | toTime).Format "Mon Jan 2 15:04:05 2006" }}"#,
        "Sat Nov 24 11:14:12 2012",
    );
    ok(
        r#"{{ ("-30m" | parseDuration | toDuration | (now | toTime).Add).UnixMilli }}"#,
        "1353753852000",
    );
    ok(
        r#"{{ printf "%0.2f" (parseDuration "1h2m10ms") }}"#,
        "3720.01",
    );
    ok(
        r#"{{ printf "%0.2f" (parseDuration "-1h2m10ms") }}"#,
        "-3720.01",
    );
}

// Go's text/template semantics beyond Prometheus's tests.

#[test]
fn actions_and_control_structures() {
    ok("a {{- \" b \" -}} c", "a b c");
    ok("a  {{- /* gone */ -}}  b", "ab");
    ok("{{/* c */}}x", "x");
    ok("{{ if 0 }}a{{ else if \"\" }}b{{ else }}c{{ end }}", "c");
    ok("{{ if 1 }}a{{ else }}b{{ end }}", "a");
    ok("{{ with \"x\" }}[{{ . }}]{{ else }}none{{ end }}", "[x]");
    ok(
        "{{ with \"\" }}[{{ . }}]{{ else with 2 }}two{{ end }}",
        "two",
    );
    ok("{{ $x := 1 }}{{ $x = 2 }}{{ $x }}", "2");
    ok(
        "{{ range $i, $e := args \"a\" \"b\" }}{{ $i }}={{ $e }},{{ end }}",
        "arg0=a,arg1=b,",
    );
    ok("{{ range 3 }}{{ . }}{{ end }}", "012");
    ok(
        "{{ range $i := 3 }}{{ if eq $i 1 }}{{ continue }}{{ end }}{{ $i }}{{ end }}",
        "02",
    );
    ok(
        "{{ range $i := 5 }}{{ if eq $i 2 }}{{ break }}{{ end }}{{ $i }}{{ end }}",
        "01",
    );
    ok("{{ range 0 }}x{{ else }}empty{{ end }}", "empty");
    ok("{{ $ }}", "<no value>");
    ok("{{ block \"b\" 5 }}[{{ . }}]{{ end }}", "[5]");
    ok("{{ (1) }} {{ \"s\" | printf \"%s!\" }}", "1 s!");
    ok(
        "{{ `raw\\n` }} {{ 'a' }} {{ 0x10 }} {{ 1e3 }} {{ 1_000 }} {{ -2.5 }}",
        "raw\\n 97 16 1000 1000 -2.5",
    );
    ok(
        "{{ true }} {{ false | not }} {{ and 1 0 }} {{ or 0 \"\" 3 }}",
        "true true 0 3",
    );
}

#[test]
fn builtins() {
    ok("{{ eq 1 2 3 1 }} {{ ne \"a\" \"b\" }} {{ lt 1 2 }} {{ le 2 2 }} {{ gt 1.5 2.5 }} {{ ge \"b\" \"a\" }}", "true true true true false true");
    ok("{{ len \"abc\" }} {{ len (args 1 2) }}", "3 2");
    ok(
        "{{ index \"abc\" 1 }} {{ index (args 1 2) \"arg1\" }} {{ index (args 1) \"x\" }}",
        "98 2 <no value>",
    );
    ok("{{ slice \"abcdef\" 1 3 }} {{ slice \"abc\" 1 }}", "bc bc");
    ok(
        "{{ print 1 2 \"a\" \"b\" 3 }}|{{ println 1 \"a\" }}|",
        "1 2ab3|1 a\n|",
    );
    ok(
        "{{ html \"<a href='x'>&\\\"\" }}",
        "&lt;a href=&#39;x&#39;&gt;&amp;&#34;",
    );
    ok("{{ js \"it's <b>=\" }}", "it\\'s \\u003Cb\\u003E\\u003D");
    ok(
        "{{ urlquery \"a b&c/d\" }} {{ urlQueryEscape \"x=1 2\" }}",
        "a+b%26c%2Fd x%3D1+2",
    );
    ok("{{ \"<b>\" | safeHtml }}", "<b>");
}

#[test]
fn printf_follows_go_fmt() {
    ok(
        r#"{{ printf "%.2f" 1.005 }}|{{ printf "%d" 5 }}|{{ printf "%5.1f|%-5d|%05d" 3.14159 42 -42 }}"#,
        "1.00|5|  3.1|42   |-0042",
    );
    ok(
        r#"{{ printf "%v %v %v %v" 1e6 0.1 123456.0 1e21 }}"#,
        "1e+06 0.1 123456 1e+21",
    );
    ok(
        r#"{{ printf "%e %E %g %.3g %G" 1234.5678 0.000012 100000.0 1234.5678 1e-7 }}"#,
        "1.234568e+03 1.200000E-05 100000 1.23e+03 1E-07",
    );
    ok(
        r#"{{ printf "%s %q %x %X %10s|%-4s|" "hi" "a\"b" "hi" 255 "r" "l" }}"#,
        "hi \"a\\\"b\" 6869 FF          r|l   |",
    );
    ok(
        r#"{{ printf "%t %v %c %U %o %b %x %%" true nil 65 65 8 5 255 }}"#,
        "true <nil> A U+0041 10 101 ff %",
    );
    ok(
        r#"{{ printf "%d" 1.5 }}|{{ printf "%s" 1 }}|{{ printf "%d" }}|{{ printf "x" 1 }}"#,
        "%!d(float64=1.5)|%!s(int=1)|%!d(MISSING)|x%!(EXTRA int=1)",
    );
    ok(
        r#"{{ printf "%f %v %.1f" (query "x" | len) -0.0 -0.05 }}"#,
        "%!f(int=0) -0 -0.1",
    );
    ok(
        r#"{{ printf "%+d %+.1f % d %x" 3 2.0 4 "é" }}"#,
        "+3 +2.0  4 c3a9",
    );
    ok(
        r#"{{ printf "%v|%6.2f|%+v" (1 | toDuration) 3.14159 "s" }}"#,
        "1s|  3.14|s",
    );
}

#[test]
fn alert_templates() {
    let labels: BTreeMap<String, String> = [("instance", "host:9100"), ("job", "node")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let external: BTreeMap<String, String> = [("env".to_string(), "prod".to_string())].into();
    let query = |q: &str| {
        if q == "bad(" {
            Err("parse error".to_string())
        } else {
            Ok(vec![sample(&[("instance", "x")], 0.25)])
        }
    };
    let data = AlertTemplateData {
        labels: &labels,
        external_labels: &external,
        external_url: "http://prom.example:9090/p",
        value: 1234.5,
        timestamp_ms: NOW_MS,
        query: &query,
    };
    let x = |t: &str| expand_alert_template("HighLoad", t, &data);
    assert_eq!(
        x("{{ $labels.instance }} of {{ .Labels.job }} is at {{ $value | humanize }} ({{ printf \"%.1f\" $value }}, {{ $value }})"),
        Ok("host:9100 of node is at 1.234k (1234.5, 1234.5)".into())
    );
    assert_eq!(x("[{{ $labels.missing }}]"), Ok("[]".into()));
    assert_eq!(
        x("{{ $externalLabels.env }} {{ $externalURL }} {{ .ExternalURL }} {{ pathPrefix }}"),
        Ok("prod http://prom.example:9090/p http://prom.example:9090/p /p".into())
    );
    assert_eq!(
        x("{{ with query \"up\" }}{{ . | first | value | humanizePercentage }}{{ end }}"),
        Ok("25%".into())
    );
    assert_eq!(
        x("{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}"),
        Ok("instance=host:9100;job=node;".into())
    );
    assert_eq!(
        x("{{ if gt $value 1000.0 }}high{{ end }}"),
        Ok("high".into())
    );
    assert_eq!(
        x("{{ if gt $value 1000 }}high{{ end }}"),
        Err("error executing template __alert_HighLoad: template: __alert_HighLoad:1:118: executing \"__alert_HighLoad\" at <gt $value 1000>: error calling gt: incompatible types for comparison".into())
    );
    assert_eq!(
        x("{{ query \"bad(\" }}"),
        Err("error executing template __alert_HighLoad: template: __alert_HighLoad:1:115: executing \"__alert_HighLoad\" at <query \"bad(\">: error calling query: parse error".into())
    );
    assert_eq!(
        x("{{ .Nope }}"),
        Err(format!("error executing template __alert_HighLoad: template: __alert_HighLoad:1:115: executing \"__alert_HighLoad\" at <.Nope>: can't evaluate field Nope in type {}", value::ALERT_TYPE))
    );
    let parsed = AlertTemplate::new("HighLoad", "{{ $labels.job }}={{ $value }}").unwrap();
    assert_eq!(parsed.expand(&data), Ok("node=1234.5".into()));
    assert_eq!(parsed.expand(&data), Ok("node=1234.5".into()));
    assert_eq!(
        x("{{ if }}"),
        Err("error parsing template __alert_HighLoad: template: __alert_HighLoad:1: missing value for if".into())
    );
}

#[test]
fn execution_errors() {
    fails(
        "{{ $x := 1 }}{{ $x.y }}",
        Value::Nil,
        "error executing template test: template: test:1:18: executing \"test\" at <$x.y>: can't evaluate field y in type int",
    );
    fails(
        "{{ 1 2 }}",
        Value::Nil,
        "error executing template test: template: test:1:3: executing \"test\" at <1>: can't give argument to non-function 1",
    );
    fails(
        "{{ toUpper 1 }}",
        Value::Nil,
        "error executing template test: template: test:1:11: executing \"test\" at <1>: expected string; found 1",
    );
    fails(
        "{{ humanize }}",
        Value::Nil,
        "error executing template test: template: test:1:3: executing \"test\" at <humanize>: wrong number of args for humanize: want 1 got 0",
    );
    fails(
        "{{ template \"nope\" }}",
        Value::Nil,
        "error executing template test: template: test:1:12: executing \"test\" at <{{template \"nope\"}}>: template \"nope\" not defined",
    );
    fails(
        "{{ index \"ab\" 5 }}",
        Value::Nil,
        "error executing template test: template: test:1:3: executing \"test\" at <index \"ab\" 5>: error calling index: index out of range: 5",
    );
    fails(
        "{{ reReplaceAll \"(\" \"\" \"x\" }}",
        Value::Nil,
        "error executing template test: template: test:1:3: executing \"test\" at <reReplaceAll \"(\" \"\" \"x\">: error calling reReplaceAll: regexp: Compile(`(`): error parsing regexp: missing closing ): `(`",
    );
    fails(
        "{{ range . }}{{ end }}",
        Value::Float(1.5),
        "error executing template test: template: test:1:9: executing \"test\" at <.>: range can't iterate over 1.5",
    );
}

#[test]
fn hostile_templates_end_in_errors() {
    let recursive = "{{ define \"r\" }}{{ template \"r\" . }}{{ end }}{{ template \"r\" 1 }}";
    let err = run(recursive).unwrap_err();
    assert!(
        err.contains("exceeded maximum template depth (200)"),
        "{err}"
    );
    let err = run("{{ range 100000000 }}x{{ end }}").unwrap_err();
    assert!(
        err.ends_with("template ran more than 1000000 steps"),
        "{err}"
    );
    let err = run(
        "{{ $x := \"xxxxxxxxxxxxxxxx\" }}{{ range 40 }}{{ $x = printf \"%s%s\" $x $x }}{{ end }}",
    )
    .unwrap_err();
    assert!(err.contains("result is over 1048576 bytes"), "{err}");
    let err = run("{{ range 2000 }}{{ printf \"%1000s\" \"\" }}{{ end }}").unwrap_err();
    assert!(
        err.ends_with("template output is over 1048576 bytes"),
        "{err}"
    );
    ok("{{ (1) }}", "1");
    let deep = format!("{{{{ {}1{} }}}}", "(".repeat(150), ")".repeat(150));
    assert_eq!(
        run(&deep),
        Err("error parsing template test: template: test:1: max expression depth exceeded".into())
    );
    let nested = format!("{}x{}", "{{ if 1 }}".repeat(150), "{{ end }}".repeat(150));
    assert!(run(&nested)
        .unwrap_err()
        .ends_with("max expression depth exceeded"));
    let fine = format!("{}x{}", "{{ if 1 }}".repeat(90), "{{ end }}".repeat(90));
    ok(&fine, "x");
}

/// Parse errors as promtool 2.42 reports them (`annotation "a": template: …`).
#[test]
fn parse_errors_as_go_reports_them() {
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
        ("{{ $x := }}", "1: missing value for command"),
        ("{{ | humanize }}", "1: unexpected \"|\" in command"),
        ("{{ 'ab' }}", "1: malformed character constant: 'ab'"),
        ("{{ \"\\q\" }}", "1: invalid syntax"),
        ("{{ template x }}", "1: unexpected \"x\" in template clause"),
        (
            "{{ range $i, $j, $k := . }}{{ end }}",
            "1: too many declarations in range",
        ),
        (
            "{{ define \"a\" }}x{{ end }}{{ define \"a\" }}y{{ end }}",
            "1: template: multiple definition of template \"a\"",
        ),
        ("{{ 0x1G }}", "1: bad number syntax: \"0x1G\""),
        ("{{ break 1 }}", "1: unexpected \"1\" in {{break}}"),
        (
            "{{ define \"x\" }}{{ $labels }}{{ end }}",
            "1: undefined variable \"$labels\"",
        ),
        (
            "{{ range 1 }}{{ else with }}{{ end }}",
            "1: unexpected <with> in input",
        ),
        (
            "{{ if 1 }}{{ else }}{{ else }}{{ end }}",
            "1: expected end; found {{else}}",
        ),
        ("{{ $a, $b := 1 }}", "1: too many declarations in command"),
        ("{{ 1x }}", "1: bad number syntax: \"1x\""),
        ("{{ end x }}", "1: unexpected \"x\" in end"),
        (
            "{{ 1 | 2 }}",
            "1: non executable command in pipeline stage 2",
        ),
        ("{{ if 1 }}\n\n{{ foo }}", "3: function \"foo\" not defined"),
        ("{{ \"a\".b }}", "1: unexpected . after term \"\\\"a\\\"\""),
        ("{{ $labels.x$y }}", "1: bad character U+0024 '$'"),
        ("{{ 1e }}", "1: illegal number syntax: \"1e\""),
        ("{{ x\ny }}", "1: function \"x\" not defined"),
        (
            "{{ with 1 }}{{ else if 2 }}{{ end }}",
            "1: unexpected <if> in input",
        ),
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
fn valid_templates_parse() {
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
        "{{ 1 2 }}",
        "{{ range $i, $v := . }}{{ $i }}{{ $v }}{{ break }}{{ end }}",
        "{{ if eq 1 1 }}a{{ else if gt 2 1 }}b{{ else }}c{{ end }}",
        "{{ with query \"up\" }}{{ . | first | value | humanizePercentage }}{{ end }}",
        "{{/* a comment */}}{{- /* trimmed */ -}}",
        "{{ \"}}\" }} {{ `multi\nline` }}",
        "{{ $externalLabels.env }} {{ $externalURL }} {{ $ }}",
        "{{ $x := 1 }}{{ $x = 2 }}",
        "é {{ \"ü\" }} ✓",
        "{{ toDuration 1 }} {{ now }} {{ parseDuration \"1m\" }}",
    ] {
        assert_eq!(check("__alert_A", text), Ok(()), "{text:?}");
    }
}

#[test]
fn go_number_formats() {
    use super::gofmt::{duration_string, format_float, format_time};
    assert_eq!(format_float(1234567.0, 'g', Some(4)), "1.235e+06");
    assert_eq!(format_float(0.000012345, 'g', Some(3)), "1.23e-05");
    assert_eq!(format_float(100.0, 'g', Some(4)), "100");
    assert_eq!(format_float(0.0, 'g', Some(4)), "0");
    assert_eq!(format_float(f64::NAN, 'g', Some(4)), "NaN");
    assert_eq!(duration_string(1_500_000_000), "1.5s");
    assert_eq!(duration_string(1_000_000), "1ms");
    assert_eq!(duration_string(3_723_000_000_000), "1h2m3s");
    assert_eq!(duration_string(-1_500), "-1.5µs");
    assert_eq!(duration_string(0), "0s");
    let t = 1_435_065_584_128_000_000i128;
    assert_eq!(
        format_time(
            t,
            "2006-01-02T15:04:05.000Z07:00 Monday January _2 3:04PM .999 002"
        ),
        "2015-06-23T13:19:44.128Z Tuesday June 23 1:19PM .128 174"
    );
}

/// The deepest templates the bounds allow run on a 2 MiB stack (a tokio
/// worker's) in an unoptimised build.
#[test]
fn deepest_templates_fit_a_small_stack() {
    let parens = format!(
        "{{{{ define \"r\" }}}}{{{{ template \"r\" {}.{} }}}}{{{{ end }}}}{{{{ template \"r\" 1 }}}}",
        "(print ".repeat(98),
        ")".repeat(98)
    );
    let ifs = format!(
        "{{{{ define \"r\" }}}}{}{{{{ template \"r\" . }}}}{}{{{{ end }}}}{{{{ template \"r\" 1 }}}}",
        "{{ if 1 }}{{ range 1 }}".repeat(49),
        "{{ end }}{{ end }}".repeat(49)
    );
    let range_parens = format!(
        "{}{{{{ {}1{} }}}}{}",
        "{{ with 1 }}".repeat(60),
        "(print ".repeat(39),
        ")".repeat(39),
        "{{ end }}".repeat(60)
    );
    for text in [parens, ifs, range_parens] {
        let r = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || run(&text))
            .unwrap()
            .join()
            .unwrap();
        match r {
            Ok(s) => assert_eq!(s, "1"),
            Err(e) => assert!(e.contains("depth"), "{e}"),
        }
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Pieces of templates, put together at random.
    const SOUP: &[&str] = &[
        "{{",
        "}}",
        "{{- ",
        " -}}",
        " ",
        "\n",
        "(",
        ")",
        "|",
        "$x",
        "$",
        ":=",
        "=",
        ",",
        ".",
        ".Labels",
        ".a",
        "$labels",
        "$value",
        "if ",
        "else ",
        "end",
        "range ",
        "with ",
        "break",
        "continue",
        "define \"t\"",
        "template \"t\" ",
        "block \"t\" .",
        "\"s\"",
        "`r`",
        "'c'",
        "1",
        "-2.5e3",
        "0x1F",
        "1i",
        "nil",
        "true",
        "query \"q\"",
        "first",
        "value",
        "label \"x\"",
        "args 1 2",
        "printf \"%*.*[2]v%-08.3f%#x%q%!\" ",
        "print",
        "println",
        "humanize",
        "humanizeDuration",
        "humanizeTimestamp",
        "humanize1024",
        "humanizePercentage",
        "toTime",
        "toDuration",
        ".Format \"Jan _2 .000 Z07:00\"",
        ".Add",
        ".String",
        "index",
        "slice",
        "len",
        "eq",
        "lt",
        "and",
        "or",
        "not",
        "html",
        "js",
        "urlquery",
        "reReplaceAll \"(a\" \"$1\"",
        "match \"[\"",
        "title",
        "toUpper",
        "stripPort",
        "stripDomain",
        "sortByLabel \"x\"",
        "parseDuration \"-1m\"",
        "now",
        "9223372036854775808",
        "1e308",
        "/*",
        "*/",
        "\u{a0}",
        "é",
    ];

    proptest! {
        #[test]
        fn any_template_expands_or_fails_without_panicking(
            s in any::<String>(),
            near in "([a-z ]{0,3}\\{\\{-? ?(\\$[a-z]{0,2} :?= )?((if|range|with|else|end|template \"t\"|define \"t\"|block \"t\" \\.|break|continue) )?([a-zA-Z$.\"'`()|0-9 ,:=%_-]{0,12}|query \"x\" \\| first|humanize \\$value|printf \"%[-+ #0-9.]{0,3}[a-z]\" [.$a-z0-9]{0,4}|\\.Labels\\.[a-z]|range \\$k, \\$v := \\$labels|len [.$a-z\"]{0,4}|index \\$labels \"[a-z]\"|[a-z]{1,10} [.$a-z0-9\"]{0,4}) ?-?\\}\\}){0,6}",
            soup in proptest::collection::vec(proptest::sample::select(SOUP), 0..40),
        ) {
            let soup: String = soup.concat();
            let labels: BTreeMap<String, String> = [("a".to_string(), "b".to_string())].into();
            let query = |_: &str| Ok(vec![sample(&[("x", "y")], 1.0)]);
            let data = AlertTemplateData {
                labels: &labels,
                external_labels: &labels,
                external_url: "http://x/",
                value: 0.5,
                timestamp_ms: NOW_MS,
                query: &query,
            };
            for text in [&s, &near, &soup] {
                let _ = check("__alert_A", text);
                let _ = expand_alert_template("A", text, &data);
            }
        }
    }
}

/// Alert templates and what promtool 2.42's `test rules` made of them for an
/// alert on `up{job="node", instance="host:9100"}` with value 1234.5 at 1m,
/// `vector(N)` queries answering N (other queries, 0). Types print as Prometheus 3 has them
/// (`.Value` is `interface {}` there, `float64` in 2.42).
const PROMTOOL_2_42: &[(&str, &str)] = &[
    (r#"{{ $value }}"#, r#"1234.5"#),
    (r#"{{ printf "%.2f" $value }}"#, r#"1234.50"#),
    (
        r#"{{ $value | humanize }}|{{ $value | humanize1024 }}|{{ $value | humanizePercentage }}|{{ $value | humanizeDuration }}"#,
        r#"1.234k|1.206ki|1.234e+05%|20m 34s"#,
    ),
    (r#"{{ printf "%d" $value }}"#, r#"%!d(float64=1234.5)"#),
    (
        r#"{{ printf "%v %s %q %x" $labels.instance $labels.job 5 "ab" }}"#,
        r#"host:9100 node '\x05' 6162"#,
    ),
    (
        r#"{{ range $k, $v := $labels }}{{$k}}={{$v}} {{ end }}"#,
        r#"__name__=up instance=host:9100 job=node "#,
    ),
    (
        r#"{{ if gt $value 1000 }}x{{ end }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:118: executing "__alert_A" at <gt $value 1000>: error calling gt: incompatible types for comparison>"#,
    ),
    (
        r#"{{ .Foo }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <.Foo>: can't evaluate field Foo in type struct { Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; Value interface {} }>"#,
    ),
    (
        r#"{{ $labels }}"#,
        r#"map[__name__:up instance:host:9100 job:node]"#,
    ),
    (
        r#"{{ . }}"#,
        r#"{map[__name__:up instance:host:9100 job:node] map[]  1234.5}"#,
    ),
    (
        r#"{{ with query "vector(1)" }}{{ . | first | value }}{{ end }}"#,
        r#"1"#,
    ),
    (
        r#"{{ humanizeTimestamp 1435065584.128 }}"#,
        r#"2015-06-23 13:19:44.128 +0000 UTC"#,
    ),
    (
        r#"{{ title "hello-world foo_bar 1st o'neil ÉCOLE straße" }}"#,
        r#"Hello-World Foo_bar 1st O'Neil ÉCOLE Straße"#,
    ),
    (
        r#"{{ html "<a>" }} {{ js "'a'" }} {{ urlquery "a b" }}"#,
        r#"&lt;a&gt; \'a\' a+b"#,
    ),
    (
        r#"{{ print 1 2 "a" }} {{ println 3 }}"#,
        r#"1 2a 3
"#,
    ),
    (
        r#"{{ len $labels }} {{ index $labels "job" }} {{ slice "abc" 1 2 }}"#,
        r#"3 node b"#,
    ),
    (
        r#"{{ eq $labels.job "node" }} {{ eq 1 1.0 }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:143: executing "__alert_A" at <eq 1 1.0>: error calling eq: incompatible types for comparison>"#,
    ),
    (
        r#"{{ printf "%5.1f|%-5d|%05d|%+d|%x|%X|%o|%b|%c|%q|%U|%e|%g|%G|%8.3e" 3.14159 42 -42 3 255 255 8 5 65 65 65 1234.5678 1e-7 1e21 123456.0 }}"#,
        r#"  3.1|42   |-0042|+3|ff|FF|10|101|A|'A'|U+0041|1.234568e+03|1e-07|1E+21|1.235e+05"#,
    ),
    (
        r#"{{ printf "%s" 1.5 }} {{ printf "%d" }} {{ printf "x" 1 "s" }}"#,
        r#"%!s(float64=1.5) %!d(MISSING) x%!(EXTRA int=1, string=s)"#,
    ),
    (
        r#"{{ reReplaceAll "(\\w+)-(\\d+)" "$2_$1" "abc-123" }}"#,
        r#"abc"#,
    ),
    (r#"{{ match "^a" "abc" }}"#, r#"true"#),
    (
        r#"{{ 1e6 }} {{ 0.000001 }} {{ 1e21 }} {{ 100000000.0 }} {{ -0.0 }} {{ 0x1F }} {{ 1_000 }}"#,
        r#"1e+06 1e-06 1e+21 1e+08 -0 31 1000"#,
    ),
    (
        r#"{{ printf "%T %T %T %T %T" 1 1.5 "s" $labels . }}"#,
        r#"int float64 string map[string]string struct { Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; Value interface {} }"#,
    ),
    (r#"[{{ index $labels "missing" }}]"#, r#"[]"#),
    (r#"{{ $labels.instance | stripPort }}"#, r#"host"#),
    (
        r#"{{ humanize "x" }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <humanize "x">: error calling humanize: strconv.ParseFloat: parsing "x": invalid syntax>"#,
    ),
    (
        r#"{{ template "nope" }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:124: executing "__alert_A" at <{{template "nope"}}>: template "nope" not defined>"#,
    ),
    (
        r#"{{ nil }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <nil>: nil is not a command>"#,
    ),
    (
        r#"{{ 1 2 }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <1>: can't give argument to non-function 1>"#,
    ),
    (r#"{{ and 1 0 }} {{ or 0 "" }} {{ not 0 }}"#, r#"0  true"#),
    (
        r#"{{ len 3 }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <len 3>: error calling len: len of type int>"#,
    ),
    (
        r#"{{ index 1 2 }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <index 1 2>: error calling index: can't index item of type int>"#,
    ),
    (
        r#"{{ printf "%.3s|%5s|%-5s|%05s" "abcdef" "ab" "ab" "ab" }}"#,
        r#"abc|   ab|ab   |000ab"#,
    ),
    (
        r#"{{ printf "%v" (query "vector(1)" | first) }}"#,
        r#"&{map[] 1}"#,
    ),
    (
        r#"{{ printf "%6.2v|%.3v|%10.4g" 3.14159 1234.5678 0.000123456 }}"#,
        r#"   3.1|1.23e+03| 0.0001235"#,
    ),
    (
        r#"{{ $labels.instance.foo }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:122: executing "__alert_A" at <$labels.instance.foo>: can't evaluate field foo in type string>"#,
    ),
    (r#"{{ .Labels.job | toUpper | printf "%s!" }}"#, r#"NODE!"#),
    (
        r#"{{ humanize 0.000001234 }} {{ humanize -1234567 }} {{ humanize1024 1e30 }} {{ humanizeDuration 0.5 }} {{ humanizeDuration 59.99 }}"#,
        r#"1.234u -1.235M 8.272e+05Yi 500ms 59.99s"#,
    ),
    (
        r#"{{ index "abc" 1 }} {{ slice $labels.job 1 }}"#,
        r#"98 ode"#,
    ),
    (r#"{{ printf "%q %v" 'a' '\n' }}"#, r#"'a' 10"#),
    (
        r#"{{ lt "a" "b" }} {{ le 2 2 }} {{ gt 1.5 2.5 }} {{ ge 2 1 }} {{ ne 1 2 }} {{ eq 1 2 3 1 }}"#,
        r#"true true false true true true"#,
    ),
    (
        r#"{{ lt 1 true }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <lt 1 true>: error calling lt: incompatible types for comparison>"#,
    ),
    (
        r#"{{ eq $labels 1 }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <eq $labels 1>: error calling eq: incompatible types for comparison>"#,
    ),
    (
        r#"{{ $x := query "vector(2)" }}{{ len $x }} {{ ($x | first).Value }} {{ (index $x 0).Labels }}"#,
        r#"1 2 map[]"#,
    ),
    (
        r#"{{ define "t" }}[{{ . }}]{{ end }}{{ template "t" $value }}{{ template "t" }}"#,
        r#"[1234.5][<no value>]"#,
    ),
    (r#"{{ with $labels.missing }}y{{ else }}n{{ end }}"#, r#"n"#),
    (
        r#"{{ range query "vector(3)" }}{{ .Value }}{{ else }}none{{ end }}"#,
        r#"3"#,
    ),
    (r#"{{ "a" | printf "%s-%s" "b" }}"#, r#"b-a"#),
    (
        r#"{{ (query "vector(1)").banana }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:122: executing "__alert_A" at <"vector(1)">: can't evaluate field banana in type template.queryResult>"#,
    ),
    (
        r#"{{ printf "%08.3f|%-8.2f|% d|%+.2e" -3.14159 2.5 5 12345.678 }}"#,
        r#"-003.142|2.50    | 5|+1.23e+04"#,
    ),
    (
        r#"{{ printf "%x %X % x %#x" "hello" "hi" "hi" "hi" }}"#,
        r#"68656c6c6f 6869 68 69 0x6869"#,
    ),
    (
        r#"{{ printf "%10.3v|%-10v|" "abcdef" 1.5 }}"#,
        r#"       abc|1.5       |"#,
    ),
    (
        r#"{{ $value | printf "%.0f" }} {{ printf "%.0f %.0f %.0f" 0.5 1.5 2.5 }}"#,
        r#"1234 0 2 2"#,
    ),
    (
        r#"{{ printf "%g %g %g %g" 100000.0 1000000.0 0.0001 0.00001 }}"#,
        r#"100000 1e+06 0.0001 1e-05"#,
    ),
    (
        r#"{{ printf "%.2g %.10g %.1e" 123456.0 1.0 0.05 }}"#,
        r#"1.2e+05 1 5.0e-02"#,
    ),
    (
        r#"{{ graphLink "rate(x[5m]) > 1" }}"#,
        r#"/graph?g0.expr=rate%28x%5B5m%5D%29+%3E+1&g0.tab=0"#,
    ),
    (
        r#"{{ urlquery "a/b?c=d&e" }} {{ js "<script>\u0001é" }}"#,
        r#"a%2Fb%3Fc%3Dd%26e \u003Cscript\u003E\u0001é"#,
    ),
    (r#"{{ html 1 "<" }}"#, r#"1&lt;"#),
    (
        r#"{{ print nil }} {{ printf "%v|%s|%d" nil nil nil }}"#,
        r#"<nil> <nil>|%!s(<nil>)|%!d(<nil>)"#,
    ),
    (
        r#"{{ index $labels 1 }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <index $labels 1>: error calling index: value has type int; should be string>"#,
    ),
    (
        r#"{{ call 1 }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <call 1>: error calling call: non-function of type int>"#,
    ),
    (
        r#"{{ slice "abc" 2 1 }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <slice "abc" 2 1>: error calling slice: invalid slice index: 2 > 1>"#,
    ),
    (
        r#"{{ humanizeTimestamp -1.5 }} {{ humanizeTimestamp 1e10 }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:144: executing "__alert_A" at <humanizeTimestamp 1e10>: error calling humanizeTimestamp: 1e+10 cannot be represented as a nanoseconds timestamp since it overflows int64>"#,
    ),
    (
        r#"{{ toUpper 1 }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:123: executing "__alert_A" at <1>: expected string; found 1>"#,
    ),
    (
        r#"{{ $value.Foo }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:121: executing "__alert_A" at <$value.Foo>: can't evaluate field Foo in type float64>"#,
    ),
    (
        r#"{{ first 1 }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:121: executing "__alert_A" at <1>: can't handle 1 for arg of type template.queryResult>"#,
    ),
    (
        r#"{{ label "x" 1 }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:125: executing "__alert_A" at <1>: can't handle 1 for arg of type *template.sample>"#,
    ),
    (
        r#"{{ if 1 }}{{ $x := 1 }}{{ else }}{{ $x }}{{ end }}"#,
        r#""#,
    ),
    (
        r#"{{ $x := 1 }}{{ if 1 }}{{ $x = 2 }}{{ end }}{{ $x }}"#,
        r#"2"#,
    ),
    (
        r#"{{ $x := 1 }}{{ with 5 }}{{ $x := 3 }}{{ $x }}{{ end }}{{ $x }}"#,
        r#"31"#,
    ),
    (
        r#"{{ range $i, $v := query "vector(1)" }}{{ $i }}:{{ $v.Value }}{{ end }}"#,
        r#"0:1"#,
    ),
    (
        r#"{{ range $v := $labels }}{{ $v }},{{ end }}"#,
        r#"up,host:9100,node,"#,
    ),
    (
        r#"{{ range $labels }}{{ . }},{{ end }}"#,
        r#"up,host:9100,node,"#,
    ),
    (
        r#"{{ range $i, $e := "abc" }}{{ end }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:131: executing "__alert_A" at <"abc">: range can't iterate over abc>"#,
    ),
    (
        r#"{{ range 1.5 }}{{ end }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:121: executing "__alert_A" at <1.5>: range can't iterate over 1.5>"#,
    ),
    (r#"{{ with $ }}{{ .Value }}{{ end }}"#, r#"1234.5"#),
    (r#"{{ $.Labels.job }}"#, r#"node"#),
    (
        r#"{{ .Labels.job.x }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:122: executing "__alert_A" at <.Labels.job.x>: can't evaluate field x in type string>"#,
    ),
    (
        r#"{{ .Value.x }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:121: executing "__alert_A" at <.Value.x>: can't evaluate field x in type float64>"#,
    ),
    (
        r#"{{ $labels.job 1 }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:122: executing "__alert_A" at <$labels.job>: job is not a method but has arguments>"#,
    ),
    (
        r#"{{ .Labels 1 }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <.Labels>: Labels has arguments but cannot be invoked as function>"#,
    ),
    (
        r#"{{ humanize }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <humanize>: wrong number of args for humanize: want 1 got 0>"#,
    ),
    (
        r#"{{ humanize 1 2 }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <humanize>: wrong number of args for humanize: want 1 got 2>"#,
    ),
    (
        r#"{{ printf }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <printf>: wrong number of args for printf: want at least 1 got 0>"#,
    ),
    (
        r#"{{ printf 1 }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:122: executing "__alert_A" at <1>: expected string; found 1>"#,
    ),
    (
        r#"{{ "x" | printf 1 }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:128: executing "__alert_A" at <1>: expected string; found 1>"#,
    ),
    (
        r#"{{ stripPort nil }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:125: executing "__alert_A" at <nil>: cannot assign nil to string>"#,
    ),
    (
        r#"{{ toUpper (query "vector(1)") }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:130: executing "__alert_A" at <"vector(1)">: wrong type for value; expected string; got template.queryResult>"#,
    ),
    (
        r#"{{ label "x" nil }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <label "x" nil>: error calling label: runtime error: invalid memory address or nil pointer dereference>"#,
    ),
    (
        r#"{{ first nil }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <first nil>: error calling first: first() called on vector with no elements>"#,
    ),
    (
        r#"{{ value nil }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <value nil>: error calling value: runtime error: invalid memory address or nil pointer dereference>"#,
    ),
    (
        r#"{{ and }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <and>: wrong number of args for and: want at least 1 got 0>"#,
    ),
    (
        r#"{{ eq 1 }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <eq 1>: error calling eq: missing argument for comparison>"#,
    ),
    (
        r#"{{ eq }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <eq>: wrong number of args for eq: want at least 1 got 0>"#,
    ),
    (
        r#"{{ lt 1 1.5 }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <lt 1 1.5>: error calling lt: incompatible types for comparison>"#,
    ),
    (
        r#"{{ lt $labels $labels }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <lt $labels $labels>: error calling lt: invalid type for comparison>"#,
    ),
    (
        r#"{{ eq . . }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <eq . .>: error calling eq: non-comparable type {map[__name__:up instance:host:9100 job:node] map[]  %!s(float64=1234.5)}: struct { Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; Value interface {} }>"#,
    ),
    (r#"{{ eq "a" "b" "a" }}"#, r#"true"#),
    (
        r#"{{ eq (query "vector(1)" | first) (query "vector(1)" | first) }}"#,
        r#"false"#,
    ),
    (
        r#"{{ index $labels }}"#,
        r#"map[__name__:up instance:host:9100 job:node]"#,
    ),
    (
        r#"{{ index "abc" -1 }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <index "abc" -1>: error calling index: index out of range: -1>"#,
    ),
    (
        r#"{{ index "abc" "x" }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <index "abc" "x">: error calling index: cannot index slice/array with type string>"#,
    ),
    (
        r#"{{ index $labels 1 }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <index $labels 1>: error calling index: value has type int; should be string>"#,
    ),
    (
        r#"{{ slice "abc" 1 2 3 }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <slice "abc" 1 2 3>: error calling slice: cannot 3-index slice a string>"#,
    ),
    (
        r#"{{ slice "abc" 4 }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <slice "abc" 4>: error calling slice: index out of range: 4>"#,
    ),
    (
        r#"{{ slice $labels 1 }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <slice $labels 1>: error calling slice: can't slice item of type map[string]string>"#,
    ),
    (
        r#"{{ len nil }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <len nil>: error calling len: reflect: call of reflect.Value.Type on zero Value>"#,
    ),
    (r#"{{ len (query "vector(1)") }}"#, r#"1"#),
    (
        r#"{{ not }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <not>: wrong number of args for not: want 1 got 0>"#,
    ),
    (
        r#"{{ html }}|{{ html nil }}|{{ html .Nope.x }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:151: executing "__alert_A" at <.Nope.x>: can't evaluate field Nope in type struct { Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; Value interface {} }>"#,
    ),
    (
        r#"{{ print }}|{{ print "a" 1 2 "b" }}|{{ print 1.5 true }}"#,
        r#"|a1 2b|1.5 true"#,
    ),
    (
        r#"{{ printf "%*d|%-*d|%.*f" 5 1 4 2 2 3.14159 }}"#,
        r#"    1|2   |3.14"#,
    ),
    (r#"{{ printf "%[1]d" 1 }}"#, r#"1"#),
    (r#"{{ printf "%!" 1 }}"#, r#"%!!(int=1)"#),
    (r#"{{ printf "%" }}"#, r#"%!(NOVERB)"#),
    (r#"{{ printf "%z" 1 }}"#, r#"%!z(int=1)"#),
    (r#"{{ printf "%#v %#x %#o" "s" 255 8 }}"#, r#""s" 0xff 010"#),
    (
        r#"{{ printf "%v" $labels }} {{ printf "%s" $labels }} {{ printf "%d" $labels }}"#,
        r#"map[__name__:up instance:host:9100 job:node] map[__name__:up instance:host:9100 job:node] map[%!d(string=__name__):%!d(string=up) %!d(string=instance):%!d(string=host:9100) %!d(string=job):%!d(string=node)]"#,
    ),
    (
        r#"{{ printf "%t" 1 }} {{ printf "%v %d" true true }}"#,
        r#"%!t(int=1) true %!d(bool=true)"#,
    ),
    (r#"{{ printf "%c %c" 0x1F600 -1 }}"#, r#"😀 �"#),
    (r#"{{ printf "%5t|%-6v|" true nil }}"#, r#" true|<nil> |"#),
    (
        r#"{{ printf "%010.3f|%+010d|%-010d|" -3.5 7 7 }}"#,
        r#"-00003.500|+000000007|7         |"#,
    ),
    (
        r#"{{ printf "%e %.0e %#.0e %g" 0.0 5.5 5.5 -0.0 }}"#,
        r#"0.000000e+00 6e+00 6.e+00 -0"#,
    ),
    (r#"{{ printf "%.3q" "abcdef" }}"#, r#""abc""#),
    (r#"{{ printf "%6.1f%%" 99.5 }}"#, r#"  99.5%"#),
    (
        r#"{{ humanizeDuration 1e-10 }} {{ humanizeDuration -0.5 }} {{ humanizeDuration 1e20 }} {{ humanize 1e30 }} {{ humanize -0.001 }}"#,
        r#"100ps -500ms -106751991167300d -15h -30m -8s 1e+06Y -1m"#,
    ),
    (
        r#"{{ humanizePercentage 0.00001 }} {{ humanize1024 -2048 }} {{ humanize1024 0.5 }}"#,
        r#"0.001% -2ki 0.5"#,
    ),
    (
        r#"{{ humanize "1e3" }} {{ humanize " 1" }} {{ humanize "0x10" }} {{ humanize "1_000" }} {{ humanize "inf" }} {{ humanize "1e400" }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:136: executing "__alert_A" at <humanize " 1">: error calling humanize: strconv.ParseFloat: parsing " 1": invalid syntax>"#,
    ),
    (
        r#"{{ humanize true }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <humanize true>: error calling humanize: can't convert bool to float>"#,
    ),
    (
        r#"{{ humanizeTimestamp "x" }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <humanizeTimestamp "x">: error calling humanizeTimestamp: strconv.ParseFloat: parsing "x": invalid syntax>"#,
    ),
    (
        r#"{{ (toTime 0).Format "Mon Monday Jan January 01 1 02 2 _2 15 03 3 04 4 05 5 2006 06 PM pm MST -0700 -07:00 Z07:00 .000 .999 ,000 002 __2" }}"#,
        r#"Thu Thursday Jan January 01 1 01 1  1 00 12 12 00 0 00 0 1970 70 AM am UTC +0000 +00:00 Z .000  ,000 001   1"#,
    ),
    (
        r#"{{ (toTime 1.5).Format "15:04:05.000000 .9 .99999 05.0 Jan_2 2006-01-02T15:04:05Z07:00" }}"#,
        r#"00:00:01.500000 .5 .5 01.5 Jan 1 1970-01-01T00:00:01Z"#,
    ),
    (
        r#"{{ (toTime -86401).Format "2006-01-02 15:04:05 Mon" }} {{ (toTime 951782400).Format "2006-01-02 002" }}"#,
        r#"1969-12-30 23:59:59 Tue 2000-02-29 060"#,
    ),
    (
        r#"{{ (toTime 1e9).Year }} {{ (toTime 1e9).Month }} {{ (toTime 1e9).Weekday }} {{ (toTime 1e9).YearDay }} {{ (toTime 1e9).Unix }} {{ (toTime 1e9).UnixNano }}"#,
        r#"2001 September Sunday 252 1000000000 1000000000000000000"#,
    ),
    (r#"{{ toTime 1e9 }}"#, r#"2001-09-09 01:46:40 +0000 UTC"#),
    (
        r#"{{ toTime "x" }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <toTime "x">: error calling toTime: strconv.ParseFloat: parsing "x": invalid syntax>"#,
    ),
    (
        r#"{{ (toTime 0).Nope }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:123: executing "__alert_A" at <0>: can't evaluate field Nope in type *time.Time>"#,
    ),
    (
        r#"{{ (toTime 0).Format }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:123: executing "__alert_A" at <0>: wrong number of args for Format: want 1 got 0>"#,
    ),
    (
        r#"{{ (toTime 0).Format 1 }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:133: executing "__alert_A" at <1>: expected string; found 1>"#,
    ),
    (
        r#"{{ (toTime 0).Add 1 }}"#,
        r#"1970-01-01 00:00:00.000000001 +0000 UTC"#,
    ),
    (r#"{{ ((toTime 0).Add 1000000000).Unix }}"#, r#"1"#),
    (
        r#"{{ reReplaceAll "a" "${1}x$$" "banana" }} {{ reReplaceAll "(?P<n>a)" "[$n]" "ba" }} {{ reReplaceAll "\\s+" " " "a  \t b" }}"#,
        r#"bx$nx$nx$ b[a] a b"#,
    ),
    (
        r#"{{ match "(" "x" }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <match "(" "x">: error calling match: error parsing regexp: missing closing ): `(`>"#,
    ),
    (
        r#"{{ match "\\d" "٣" }} {{ match "(?i)A" "a" }}"#,
        r#"false true"#,
    ),
    (r#"{{ sortByLabel "x" (query "vector(1)") | len }}"#, r#"1"#),
    (
        r#"{{ args }} {{ args 1 "a" nil }} {{ (args 1).arg0 }} {{ (args 1).arg9 }}"#,
        r#"map[] map[arg0:1 arg1:a arg2:<nil>] 1 <no value>"#,
    ),
    (
        r#"{{ strvalue (query "vector(1)" | first) }}|{{ label "__name__" (query "vector(1)" | first) }}"#,
        r#"|"#,
    ),
    (r#"{{ safeHtml "<b>" | len }}"#, r#"3"#),
    (
        r#"{{ safeHtml "x" | toUpper }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:130: executing "__alert_A" at <toUpper>: wrong type for value; expected string; got template.HTML>"#,
    ),
    (r#"{{ eq (safeHtml "x") "x" }}"#, r#"true"#),
    (
        r#"{{ stripDomain "a.b.c:80" }} {{ stripDomain "[::1]:80" }} {{ stripDomain "::1" }} {{ stripDomain "a.b" }} {{ stripPort ":80" }} {{ stripDomain ":80" }} {{ stripDomain "host." }}"#,
        r#"a:80 [::1]:80 ::1 a  :80 host"#,
    ),
    (r#"{{ urlquery "é" 1 }} {{ js 1 2 }}"#, r#"%C3%A91 1 2"#),
    (
        r#"{{- "a" }}  {{ "b" -}}  c {{- /* x */ -}} d"#,
        r#"a  bcd"#,
    ),
    (r#"{{/* a */}}b{{- /* x */}}"#, r#"b"#),
    (
        r#"{{ -1 }} {{ +1 }} {{ .5 }} {{ 1. }} {{ 0b101 }} {{ 0o17 }} {{ 017 }} {{ 1e2 }} {{ 0x1p4 }} {{ 9223372036854775807 }}"#,
        r#"-1 1 0.5 1 5 15 15 100 16 9223372036854775807"#,
    ),
    (
        r#"{{ 9223372036854775808 }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <9223372036854775808>: 9223372036854775808 overflows int>"#,
    ),
    (
        r#"{{ "\u00e9\x41\101\t" }}|{{ `a\nb` }}|{{ '\'' }}"#,
        r#"éAA	|a\nb|39"#,
    ),
    (
        r#"{{ true | not }} {{ 1 | eq 1 }} {{ "a" | eq "b" }}"#,
        r#"false true false"#,
    ),
    (
        r#"{{ (1) }} {{ ("x") }} {{ (query "vector(4)" | first).Value }}"#,
        r#"1 x 4"#,
    ),
    (
        r#"{{ with query "vector(1)" }}{{ range . }}{{ .Value }}{{ end }}{{ end }}"#,
        r#"1"#,
    ),
    (r#"{{ block "b" . }}{{ .Value }}{{ end }}"#, r#"1234.5"#),
    (
        r#"{{ define "a" }}{{ template "b" . }}{{ end }}{{ define "b" }}{{ .Labels.job }}{{ end }}{{ template "a" . }}"#,
        r#"node"#,
    ),
    (r#"{{ template "a" }}{{ define "a" }}A{{ end }}"#, r#"A"#),
    (
        r#"{{ define "x" }}{{ . }}{{ end }}{{ template "x" "s" | printf "%s" }}"#,
        r#"s"#,
    ),
    (
        r#"a
  {{- "b" -}}
  c"#,
        r#"abc"#,
    ),
    (
        r#"{{ if 0 }}a{{ else if 0 }}b{{ else if 1 }}c{{ else }}d{{ end }}"#,
        r#"c"#,
    ),
    (
        r#"line1
line2 {{ .Nope }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:2:9: executing "__alert_A" at <.Nope>: can't evaluate field Nope in type struct { Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; Value interface {} }>"#,
    ),
    (
        r#"x
{{ humanize "q" }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:2:3: executing "__alert_A" at <humanize "q">: error calling humanize: strconv.ParseFloat: parsing "q": invalid syntax>"#,
    ),
    (
        r#"{{ if 1 }}{{ $x := 1 }}{{ else }}{{ end }}{{ with 2 }}{{ $y := . }}{{ $y }}{{ end }}"#,
        r#"2"#,
    ),
    (
        r#"{{ define "d" }}{{ $ }}|{{ . }}{{ end }}{{ template "d" $labels.job }}"#,
        r#"node|node"#,
    ),
    (
        r#"{{ define "d" }}{{ .Nope }}{{ end }}{{ template "d" . }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:131: executing "d" at <.Nope>: can't evaluate field Nope in type struct { Labels map[string]string; ExternalLabels map[string]string; ExternalURL string; Value interface {} }>"#,
    ),
    (r#"{{ $v := $value }}{{ printf "%.1f" $v }}"#, r#"1234.5"#),
    (
        r#"{{ range $i, $s := query "vector(7)" }}{{ $i }}{{ $s.Value }}{{ $s.Labels }}{{ end }}"#,
        r#"07map[]"#,
    ),
    (
        r#"{{ $labels.instance | reReplaceAll ":.*" "" }}"#,
        r#"host"#,
    ),
    (r#"{{ "a" | reReplaceAll "a" "b" }}"#, r#"b"#),
    (
        r#"{{ if and (gt $value 1.0) (lt $value 2000.0) }}in{{ end }}"#,
        r#"in"#,
    ),
    (
        r#"{{ if or (eq $labels.job "x") (eq $labels.job "node") }}yes{{ end }}"#,
        r#"yes"#,
    ),
    (r#"{{ with $x := 1 }}{{ $x }}{{ end }}"#, r#"1"#),
    (
        r#"{{ range $k, $v := args 1 2 3 }}{{ $k }}{{ end }}"#,
        r#"arg0arg1arg2"#,
    ),
    (
        r#"{{ $a := 1 }}{{ range $a2 := args 5 }}{{ $a = 2 }}{{ end }}{{ $a }}"#,
        r#"2"#,
    ),
    (
        r#"{{/* multi
line */}}z"#,
        r#"z"#,
    ),
    (r#"{{ "a" }}{{/* c */}}{{ "b" }}"#, r#"ab"#),
    (
        r#"{{ printf "%s" (printf "%d" 3) | printf "[%s]" }}"#,
        r#"[3]"#,
    ),
    (r#"{{ .Labels.job | printf "%s %s" "x" }}"#, r#"x node"#),
    (
        r#"{{ humanize $value | printf "%s" | toUpper }}"#,
        r#"1.234K"#,
    ),
    (
        r#"{{ $x := "a" }}{{ $x = printf "%s%s" $x $x }}{{ $x }}"#,
        r#"aa"#,
    ),
    (
        r#"{{ .ExternalLabels.x }}|{{ $externalLabels.y }}|{{ .ExternalURL }}"#,
        r#"||"#,
    ),
    (r#"{{ len .Labels }}"#, r#"3"#),
    (r#"{{ (index (query "vector(9)") 0).Value }}"#, r#"9"#),
    (
        r#"{{ index (query "vector(9)") 1 }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:115: executing "__alert_A" at <index (query "vector(9)") 1>: error calling index: reflect: slice index out of range>"#,
    ),
    (r#"{{ value (index (query "vector(9)") 0) }}"#, r#"9"#),
    (
        r#"{{ $q := query "vector(3)" }}{{ range $q }}{{ .Value }}{{ end }}{{ len $q }}"#,
        r#"31"#,
    ),
    (r#"{{ with $labels }}{{ .job }}{{ end }}"#, r#"node"#),
    (r#"{{ $labels.job | len }}"#, r#"4"#),
    (
        r#"{{ printf "%v" 12345678.0 }} {{ 12345678.0 }} {{ 123456789012.0 }} {{ 0.00012 }} {{ 1e-5 }}"#,
        r#"1.2345678e+07 1.2345678e+07 1.23456789012e+11 0.00012 1e-05"#,
    ),
    (
        r#"{{ 100000000000000000000.0 }} {{ 1e20 }} {{ 123456789 }}"#,
        r#"1e+20 1e+20 123456789"#,
    ),
    (
        r#"{{ printf "%.2f" 2.675 }} {{ printf "%.1f" 0.25 }} {{ printf "%.0f" -0.4 }}"#,
        r#"2.67 0.2 -0"#,
    ),
    (
        r#"{{ humanize 999.99999 }} {{ humanize 1000 }} {{ humanize 0.9999999 }} {{ humanize1024 1023.99 }}"#,
        r#"1000 1k 1000m 1024"#,
    ),
    (
        r#"{{ humanizeDuration 86399.9 }} {{ humanizeDuration 3599.5 }} {{ humanizeDuration 0.001 }} {{ humanizeDuration 0.0009999 }}"#,
        r#"23h 59m 59s 59m 59s 1ms 999.9us"#,
    ),
    (
        r#"{{ humanizePercentage 1 }} {{ humanizePercentage 0.123456 }}"#,
        r#"100% 12.35%"#,
    ),
    (
        r#"{{ humanizeTimestamp 0.0015 }} {{ humanizeTimestamp 1.1 }} {{ humanizeTimestamp -0.5 }}"#,
        r#"1970-01-01 00:00:00.001 +0000 UTC 1970-01-01 00:00:01.1 +0000 UTC 1969-12-31 23:59:59.5 +0000 UTC"#,
    ),
    (
        r#"{{ title "" }}|{{ title "a.b c-d e_f g1h 9z" }}|{{ toUpper "ß" }}|{{ toLower "İ" }}"#,
        r#"|A.B C-D E_f G1h 9z|ß|i"#,
    ),
    (r#"{{ js "\t\n\u2028" }}"#, r#"\u0009\u000A\u2028"#),
    (r#"{{ html "\u0000x" }}"#, r#"�x"#),
    (r#"{{ urlquery "\u00e9 ~-_." }}"#, r#"%C3%A9+~-_."#),
    (
        r#"{{ print "a" nil "b" }} {{ print 1 nil 2 }} {{ println }}|"#,
        r#"a<nil>b 1 <nil> 2 
|"#,
    ),
    (
        r#"{{ printf "%v %v" (args 1).arg0 (args).x }}"#,
        r#"1 <nil>"#,
    ),
    (
        r#"{{ template "x" }}{{ define "x" }}{{ $ }}{{ end }}"#,
        r#"<no value>"#,
    ),
    (r#"{{ 1 | printf "%d %d" 2 }}"#, r#"2 1"#),
    (r#"{{ $ := 1 }}"#, r#""#),
    (
        r#"{{ .Labels.job.x.y }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:122: executing "__alert_A" at <.Labels.job.x.y>: can't evaluate field x in type string>"#,
    ),
    (
        r#"{{ $labels.nope.x }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:122: executing "__alert_A" at <$labels.nope.x>: can't evaluate field x in type string>"#,
    ),
    (
        r#"{{ (query "vector(1)" | first).Nope }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:136: executing "__alert_A" at <first>: can't evaluate field Nope in type *template.sample>"#,
    ),
    (r#"{{ (query "vector(1)" | first).Labels.x }}"#, r#""#),
    (
        r#"{{ if query "vector(1)" }}t{{ end }}{{ if (query "vector(1)" | first) }}u{{ end }}"#,
        r#"tu"#,
    ),
    (
        r#"{{ with query "vector(1)" | first }}{{ .Value }}{{ end }}"#,
        r#"1"#,
    ),
    (
        r#"{{ (toTime 1435065584.128).Format "Monday, 02-Jan-06 15:04:05 MST" }}"#,
        r#"Tuesday, 23-Jun-15 13:19:44 UTC"#,
    ),
    (
        r#"{{ (toTime 1435065584.128).Format "2006-01-02T15:04:05.999999999Z07:00" }}"#,
        r#"2015-06-23T13:19:44.128Z"#,
    ),
    (
        r#"{{ (toTime 1435065584.128).Format "3:04:05 pm .00 ,999 Jan 2nd" }}"#,
        r#"1:19:44 pm .12 ,128 Jun 23nd"#,
    ),
    (
        r#"{{ (toTime 1435065584).Format "Mon Jan _2 15:04:05 2006" }} {{ (toTime 1435065584).Format "06 1 2 3 4 5" }}"#,
        r#"Tue Jun 23 13:19:44 2015 15 6 23 1 19 44"#,
    ),
    (
        r#"{{ (toTime -62135596800).Format "2006-01-02" }} {{ (toTime -62135596801).Format "2006-01-02 15:04:05" }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:116: executing "__alert_A" at <toTime -62135596800>: error calling toTime: -6.21355968e+10 cannot be represented as a nanoseconds timestamp since it overflows int64>"#,
    ),
    (
        r#"{{ (toTime 253402300800).Format "2006-01-02" }} {{ (toTime 4102444800).YearDay }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:116: executing "__alert_A" at <toTime 253402300800>: error calling toTime: 2.534023008e+11 cannot be represented as a nanoseconds timestamp since it overflows int64>"#,
    ),
    (
        r#"{{ (toTime 1e9).Format "_2006 __2 002 Z0700 -07 Z07:00:00 -070000" }}"#,
        r#"_2001 252 252 Z +00 Z +000000"#,
    ),
    (
        r#"{{ (toTime 1e9).Format "January Janu Monday Mond MST MS" }}"#,
        r#"September Janu Sunday Mond UTC MS"#,
    ),
    (
        r#"{{ (toTime 1e9).Format ".0 .00x .9 ,9 05.999 5.000" }}"#,
        r#".0 .00x   40 40.000"#,
    ),
    (
        r#"{{ (toTime 0.999999).Format ".000000000" }}"#,
        r#".999000000"#,
    ),
    (
        r#"{{ toTime 1e9 }} {{ (toTime 1e9).UTC }} {{ (toTime 1e9).Unix }} {{ (toTime 1.5).UnixMilli }}"#,
        r#"2001-09-09 01:46:40 +0000 UTC 2001-09-09 01:46:40 +0000 UTC 1000000000 1500"#,
    ),
    (
        r#"{{ (toTime 1e9).Hour }}:{{ (toTime 1e9).Minute }}:{{ (toTime 1e9).Second }} {{ (toTime 1e9).Nanosecond }}"#,
        r#"1:46:40 0"#,
    ),
    (
        r#"{{ ((toTime 10).Sub (toTime 4)) }} {{ ((toTime 10).Sub (toTime 4)).Seconds }}"#,
        r#"6s 6"#,
    ),
    (
        r#"{{ (toTime 10).Before (toTime 4) }} {{ (toTime 10).After (toTime 4) }} {{ (toTime 10).Equal (toTime 10) }}"#,
        r#"false true true"#,
    ),
    (
        r#"{{ (toTime 0).IsZero }} {{ (toTime -62135596800).IsZero }}"#,
        r#"<error expanding template: error executing template __alert_A: template: __alert_A:1:140: executing "__alert_A" at <toTime -62135596800>: error calling toTime: -6.21355968e+10 cannot be represented as a nanoseconds timestamp since it overflows int64>"#,
    ),
    (
        r#"{{ humanizeTimestamp 1e-3 }} {{ humanizeTimestamp 1234.0005 }}"#,
        r#"1970-01-01 00:00:00.001 +0000 UTC 1970-01-01 00:20:34 +0000 UTC"#,
    ),
    (
        r#"{{ printf "%.3g|%.3g|%.3g|%.3g|%.0g|%.1g" 0.0001234 123456.0 999.9 0.99999 5.5 0.05 }}"#,
        r#"0.000123|1.23e+05|1e+03|1|6|0.05"#,
    ),
    (
        r#"{{ printf "%g|%g|%g|%G" 1e-5 123456789.0 0.000123 1e100 }}"#,
        r#"1e-05|1.23456789e+08|0.000123|1E+100"#,
    ),
    (
        r#"{{ printf "%.2e|%.0f|%.0f|%f|%F" 9.995 0.5 -1.5 1e20 1.5 }}"#,
        r#"9.99e+00|0|-2|100000000000000000000.000000|1.500000"#,
    ),
    (
        r#"{{ printf "%5.2f%%|%-8.3e|%+g|% g" 12.345 1234.5 1.0 2.0 }}"#,
        r#"12.35%|1.234e+03|+1| 2"#,
    ),
    (
        r#"{{ printf "%v|%v|%v|%v|%v" 1e-4 1e-5 99999.0 999999.0 1e6 }}"#,
        r#"0.0001|1e-05|99999|999999|1e+06"#,
    ),
    (
        r#"{{ printf "%d|%5d|%-5d|%05d|%x|%X|%#o|%b" -7 -7 -7 -7 -255 -255 8 -5 }}"#,
        r#"-7|   -7|-7   |-0007|-ff|-FF|010|-101"#,
    ),
    (
        r#"{{ printf "%q|%q|%+q|%#q" "é\n" 233 "é" "a`b" }}"#,
        r#""é\n"|'é'|"\u00e9"|"a`b""#,
    ),
    (
        r#"{{ printf "%s|%10.2s|%-10s|" "héllo" "héllo" "é" }}"#,
        r#"héllo|        hé|é         |"#,
    ),
    (
        r#"{{ humanize 1e-30 }} {{ humanize 1e27 }} {{ humanize -1e-3 }} {{ humanize 123.456 }} {{ humanize 0.5 }}"#,
        r#"1e-06y 1000Y -1m 123.5 500m"#,
    ),
    (
        r#"{{ humanize1024 1e30 }} {{ humanize1024 -1e6 }} {{ humanize1024 1024 }} {{ humanize1024 1 }} {{ humanize1024 -1 }}"#,
        r#"8.272e+05Yi -976.6ki 1ki 1 -1"#,
    ),
    (
        r#"{{ humanizeDuration 1e-30 }} {{ humanizeDuration 59.9999 }} {{ humanizeDuration 1e15 }}"#,
        r#"1e-06ys 60s 11574074074d 1h 46m 40s"#,
    ),
    (
        r#"{{ humanizePercentage 1e-10 }} {{ humanizePercentage -0.5 }}"#,
        r#"1e-08% -50%"#,
    ),
];

#[test]
fn alert_templates_expand_as_promtool_expands_them() {
    let labels: BTreeMap<String, String> = [
        ("__name__", "up"),
        ("instance", "host:9100"),
        ("job", "node"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let external = BTreeMap::new();
    let query = |q: &str| {
        let n = q.trim_start_matches("vector(").trim_end_matches(')');
        Ok(vec![sample(&[], n.parse().unwrap_or(0.0))])
    };
    let data = AlertTemplateData {
        labels: &labels,
        external_labels: &external,
        external_url: "",
        value: 1234.5,
        timestamp_ms: 60_000,
        query: &query,
    };
    for (text, want) in PROMTOOL_2_42 {
        let got = match expand_alert_template("A", text, &data) {
            Ok(s) => s,
            Err(e) => format!("<error expanding template: {e}>"),
        };
        assert_eq!(&got, want, "{text}");
    }
}

#[test]
fn costly_calls_are_bounded() {
    let started = std::time::Instant::now();
    let err = run("{{ range 1000000 }}{{ $x := query \"up\" }}{{ end }}").unwrap_err();
    assert!(
        err.ends_with("template ran more than 1000000 steps"),
        "{err}"
    );
    let err = run("{{ range $i := 1000000 }}{{ $x := match (printf \"a%d\" $i) \"a\" }}{{ end }}")
        .unwrap_err();
    assert!(
        err.ends_with("template ran more than 1000000 steps"),
        "{err}"
    );
    let err = run("{{ range 1000000 }}{{ $x := printf \"%.999999f\" 1.0 }}{{ end }}").unwrap_err();
    assert!(
        err.ends_with("template ran more than 1000000 steps"),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

#[test]
fn huge_precisions_are_formatted() {
    let s = run("{{ printf \"%.70000f|%.70000e|%.70000g\" 0.1 0.1 0.1 }}").unwrap();
    let parts: Vec<&str> = s.split('|').collect();
    assert_eq!(parts[0].len(), 70002);
    assert!(parts[0].starts_with("0.1000000000000000055511151231257827"));
    assert!(parts[1].ends_with("0e-01") && parts[1].len() == 70006);
    assert_eq!(
        parts[2],
        "0.1000000000000000055511151231257827021181583404541015625"
    );
}

/// Templates and what promtool 2.42's `check rules` said of them (`None`: it
/// accepted the template).
const PROMTOOL_2_42_CHECKS: &[(&str, Option<&str>)] = &[
    (r#"{{-3}}"#, None),
    (
        r#"{{- -}}"#,
        Some(r#"template: __alert_A:1: illegal number syntax: "-""#),
    ),
    (
        r#"{{-}}"#,
        Some(r#"template: __alert_A:1: illegal number syntax: "-""#),
    ),
    (r#"{{ 1 -}}x"#, None),
    (
        r#"a
{{ if 1 }}
b
{{ foo"#,
        Some(r#"template: __alert_A:4: function "foo" not defined"#),
    ),
    (
        r#"{{ 1
2 }}"#,
        None,
    ),
    (
        r#"{{ (1
 }}"#,
        Some(r#"template: __alert_A:2: unclosed left paren in action started at __alert_A:1"#),
    ),
    (
        r#"{{ "a
b" }}"#,
        Some(r#"template: __alert_A:1: unterminated quoted string"#),
    ),
    (
        r#"x
{{ 1 }}
{{ end }}"#,
        Some(r#"template: __alert_A:3: unexpected {{end}}"#),
    ),
    (
        r#"{{ range . }}{{ else if 1 }}{{ end }}"#,
        Some(r#"template: __alert_A:1: unexpected <if> in input"#),
    ),
    (r#"{{ $x := 1 }}{{ $x.y.z }}"#, None),
    (r#"{{ .a.b | .c }}"#, None),
    (r#"{{ 1 | .c }}"#, None),
    (r#"{{ .a 1 }}"#, None),
    (r#"{{ $ 1 }}"#, None),
    (r#"{{ template "a" 1 2 }}"#, None),
    (
        r#"{{ template }}"#,
        Some(r#"template: __alert_A:1: unexpected "}}" in template clause"#),
    ),
    (
        r#"{{ define }}"#,
        Some(r#"template: __alert_A:1: unexpected "}}" in define clause"#),
    ),
    (
        r#"{{ if 1 }}{{ define "a" }}{{ end }}{{ end }}"#,
        Some(r#"template: __alert_A:1: unexpected <define> in command"#),
    ),
    (
        r#"{{ block }}"#,
        Some(r#"template: __alert_A:1: unexpected "}}" in block clause"#),
    ),
    (
        r#"{{ block "a" }}{{ end }}"#,
        Some(r#"template: __alert_A:1: missing value for block clause"#),
    ),
    (
        r#"{{ define "a" }}{{ else }}{{ end }}"#,
        Some(r#"template: __alert_A:1: unexpected {{else}} in define clause"#),
    ),
    (
        r#"{{ else if }}"#,
        Some(r#"template: __alert_A:1: unexpected {{else}}"#),
    ),
    (
        r#"{{ if 1 }}{{ else if }}{{ end }}"#,
        Some(r#"template: __alert_A:1: missing value for if"#),
    ),
    (
        r#"{{ range $i, $j := . }}{{ end }}{{ $i }}"#,
        Some(r#"template: __alert_A:1: undefined variable "$i""#),
    ),
    (
        r#"{{ range $i, 1 }}{{ end }}"#,
        Some(r#"template: __alert_A:1: range can only initialize variables"#),
    ),
    (
        r#"{{ $x, $y = 1 }}"#,
        Some(r#"template: __alert_A:1: too many declarations in command"#),
    ),
    (
        r#"{{ with $x := . }}{{ end }}{{ $x }}"#,
        Some(r#"template: __alert_A:1: undefined variable "$x""#),
    ),
    (
        r#"{{ 1.2.3 }}"#,
        Some(r#"template: __alert_A:1: unexpected ".3" in operand"#),
    ),
    (
        r#"{{ 0x }}"#,
        Some(r#"template: __alert_A:1: illegal number syntax: "0x""#),
    ),
    (
        r#"{{ 1e+ }}"#,
        Some(r#"template: __alert_A:1: illegal number syntax: "1e+""#),
    ),
    (
        r#"{{ 08 }}"#,
        Some(r#"template: __alert_A:1: integer overflow: "08""#),
    ),
    (
        r#"{{ 0b102 }}"#,
        Some(r#"template: __alert_A:1: bad number syntax: "0b102""#),
    ),
    (
        r#"{{ 1__0 }}"#,
        Some(r#"template: __alert_A:1: illegal number syntax: "1__0""#),
    ),
    (
        r#"{{ _1 }}"#,
        Some(r#"template: __alert_A:1: function "_1" not defined"#),
    ),
    (
        r#"{{ .1.2 }}"#,
        Some(r#"template: __alert_A:1: unexpected ".2" in operand"#),
    ),
    (
        r#"{{ $x.1 }}"#,
        Some(r#"template: __alert_A:1: undefined variable "$x""#),
    ),
    (
        r#"{{ 'abc }}"#,
        Some(r#"template: __alert_A:1: unterminated character constant"#),
    ),
    (
        r#"{{ '' }}"#,
        Some(r#"template: __alert_A:1: invalid syntax"#),
    ),
    (r#"{{ '\n' }}"#, None),
    (
        r#"{{ "\x4" }}"#,
        Some(r#"template: __alert_A:1: invalid syntax"#),
    ),
    (r#"{{ `a` `b` }}"#, None),
    (r#"{{ "a" "b" }}"#, None),
    (
        r#"{{ nil.x }}"#,
        Some(r#"template: __alert_A:1: unexpected . after term "nil""#),
    ),
    (
        r#"{{ true.x }}"#,
        Some(r#"template: __alert_A:1: unexpected . after term "true""#),
    ),
    (r#"{{ (1).x }}"#, None),
    (r#"{{ (.).x }}"#, None),
    (r#"{{ . .x }}"#, None),
    (
        r#"{{ .x. }}"#,
        Some(r#"template: __alert_A:1: unexpected <.> in operand"#),
    ),
    (
        r#"{{ $x. }}"#,
        Some(r#"template: __alert_A:1: undefined variable "$x""#),
    ),
    (r#"{{ . . }}"#, None),
    (
        r#"{{ @ }}"#,
        Some(r#"template: __alert_A:1: unexpected "@" in command"#),
    ),
    (
        r#"{{ # }}"#,
        Some(r##"template: __alert_A:1: unexpected "#" in command"##),
    ),
    (
        r#"{{ ; }}"#,
        Some(r#"template: __alert_A:1: unexpected ";" in command"#),
    ),
    (
        r#"{{ x:y }}"#,
        Some(r#"template: __alert_A:1: function "x" not defined"#),
    ),
    (r#"{{ $x:=1 }}{{ $x }}"#, None),
    (
        r#"{{ $x= 1 }}"#,
        Some(r#"template: __alert_A:1: bad character U+003D '='"#),
    ),
    (
        r#"{{ 1 }"#,
        Some(r#"template: __alert_A:1: unexpected "}" in operand"#),
    ),
    (
        r#"{{ 1 } }}"#,
        Some(r#"template: __alert_A:1: unexpected "}" in operand"#),
    ),
    (
        r#"}} {{"#,
        Some(r#"template: __alert_A:1: unclosed action"#),
    ),
    (r#"{{/**/}}"#, None),
    (r#"{{/* */ -}}"#, None),
    (r#"{{- /* */}}"#, None),
    (
        r#"{{ /* */ }}"#,
        Some(r#"template: __alert_A:1: unexpected "/" in command"#),
    ),
    (r#"{{- /**/ -}}"#, None),
    (
        r#"{{ break }}{{ range . }}{{ end }}"#,
        Some(r#"template: __alert_A:1: {{break}} outside {{range}}"#),
    ),
    (
        r#"{{ range . }}{{ define "x" }}{{ end }}{{ end }}"#,
        Some(r#"template: __alert_A:1: unexpected <define> in command"#),
    ),
    (
        r#"{{ continue }}"#,
        Some(r#"template: __alert_A:1: {{continue}} outside {{range}}"#),
    ),
    (
        r#"{{ range . }}{{ break 1 }}{{ end }}"#,
        Some(r#"template: __alert_A:1: unexpected "1" in {{break}}"#),
    ),
    (
        r#"{{ range . }}{{ with 1 }}{{ break }}{{ end }}{{ end }}"#,
        None,
    ),
    (
        r#"{{ define "x" }}{{ break }}{{ end }}"#,
        Some(r#"template: __alert_A:1: {{break}} outside {{range}}"#),
    ),
    (
        r#"{{ range . }}{{ template "x" }}{{ end }}{{ define "x" }}{{ continue }}{{ end }}"#,
        Some(r#"template: __alert_A:1: {{continue}} outside {{range}}"#),
    ),
    (r#"{{ ((((1)))) }}"#, None),
    (r#"{{ (1 | humanize) | title }}"#, None),
    (r#"{{ humanize (1) (2) }}"#, None),
    (
        r#"{{ ( }}"#,
        Some(r#"template: __alert_A:1: unclosed left paren"#),
    ),
    (
        r#"{{ ) }}"#,
        Some(r#"template: __alert_A:1: unexpected ")" in command"#),
    ),
    (
        r#"{{ ()) }}"#,
        Some(r#"template: __alert_A:1: missing value for parenthesized pipeline"#),
    ),
    (
        r#"{{ () }}"#,
        Some(r#"template: __alert_A:1: missing value for parenthesized pipeline"#),
    ),
    (
        r#"{{ | }}"#,
        Some(r#"template: __alert_A:1: unexpected "|" in command"#),
    ),
    (
        r#"{{ 1 || 2 }}"#,
        Some(r#"template: __alert_A:1: unexpected "|" in command"#),
    ),
    (r#"{{ 1 | }}"#, None),
    (r#"{{ humanize | }}"#, None),
    (r#"{{ $x := 1 | humanize }}"#, None),
    (r#"{{ $x := $x }}"#, None),
    (
        r#"{{ if $x := 1 }}{{ $x }}{{ else }}{{ $x }}{{ end }}"#,
        None,
    ),
    (
        r#"{{ else }}"#,
        Some(r#"template: __alert_A:1: unexpected {{else}}"#),
    ),
    (
        r#"{{ end }}{{ if"#,
        Some(r#"template: __alert_A:1: unexpected {{end}}"#),
    ),
    (
        r#"{{ if }}"#,
        Some(r#"template: __alert_A:1: missing value for if"#),
    ),
    (
        r#"{{ range }}"#,
        Some(r#"template: __alert_A:1: missing value for range"#),
    ),
    (
        r#"{{ with }}"#,
        Some(r#"template: __alert_A:1: missing value for with"#),
    ),
    (
        r#"{{ template "x" | humanize }}"#,
        Some(r#"template: __alert_A:1: unexpected "|" in template clause"#),
    ),
    (
        r#"{{ templatex }}"#,
        Some(r#"template: __alert_A:1: function "templatex" not defined"#),
    ),
    (
        r#"{{ iff 1 }}"#,
        Some(r#"template: __alert_A:1: function "iff" not defined"#),
    ),
    (
        r#"{{ True }}"#,
        Some(r#"template: __alert_A:1: function "True" not defined"#),
    ),
    (
        r#"{{ NIL }}"#,
        Some(r#"template: __alert_A:1: function "NIL" not defined"#),
    ),
    (r#"{{ nil }}x{{ nil 1 }}"#, None),
];

#[test]
fn templates_are_checked_as_promtool_checks_them() {
    for (text, want) in PROMTOOL_2_42_CHECKS {
        assert_eq!(check("__alert_A", text).err().as_deref(), *want, "{text:?}");
    }
}

#[test]
fn many_variables_cost_steps() {
    let text = format!(
        "{}{}",
        "{{ $a := 1 }}".repeat(20_000),
        "{{ $labels }}".repeat(20_000)
    );
    let err = expand_alert_template(
        "A",
        &text,
        &AlertTemplateData {
            labels: &BTreeMap::new(),
            external_labels: &BTreeMap::new(),
            external_url: "",
            value: 0.0,
            timestamp_ms: 0,
            query: &|_| Ok(Vec::new()),
        },
    )
    .unwrap_err();
    assert!(
        err.ends_with("template ran more than 1000000 steps"),
        "{err}"
    );
}
