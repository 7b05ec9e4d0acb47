use std::collections::BTreeMap;
use std::time::Duration;

use super::*;

fn errors_with(text: &str, opts: ParseOptions) -> Vec<String> {
    match parse_rule_file(text, &opts) {
        Ok(_) => Vec::new(),
        Err(e) => e.iter().map(|e| e.to_string()).collect(),
    }
}

fn errors(text: &str) -> Vec<String> {
    errors_with(text, ParseOptions::default())
}

/// One group `g` holding the given rule lines (already indented under `- `).
fn one_rule(rule: &str) -> String {
    format!("groups:\n  - name: g\n    rules:\n      - {rule}\n")
}

const GOOD: &str = r#"
groups:
  - name: node
    interval: 30s
    query_offset: 1m
    limit: 10
    labels:
      team: infra
    rules:
      - record: instance:node_cpu_utilisation:rate5m
        expr: 1 - avg without (cpu) (rate(node_cpu_seconds_total{mode="idle"}[5m]))
      - alert: HostDown
        expr: up{job="node"} == 0
        for: 5m
        keep_firing_for: 2m
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.instance }} is down"
  - name: mysql
    rules:
      - record: mysql:up
        expr: mysql_up
        labels: {source: rules}
"#;

#[test]
fn a_good_file_becomes_typed_groups() {
    let g = parse_rule_file(GOOD, &ParseOptions::default()).unwrap();
    assert_eq!(g.rule_count(), 3);
    let node = &g.groups[0];
    assert_eq!(node.name, "node");
    assert_eq!(node.interval, Some(Duration::from_secs(30)));
    assert_eq!(node.query_offset, Some(Duration::from_secs(60)));
    assert_eq!(node.limit, 10);
    assert_eq!(
        node.labels,
        BTreeMap::from([("team".into(), "infra".into())])
    );
    assert_eq!(node.position, Position { line: 3, column: 5 });
    let rec = &node.rules[0];
    assert_eq!(rec.name, "instance:node_cpu_utilisation:rate5m");
    assert_eq!(rec.kind, RuleKind::Recording);
    assert!(rec.expr.starts_with("1 - avg without"));
    assert_eq!(
        rec.position,
        Position {
            line: 10,
            column: 17
        }
    );
    let alert = &node.rules[1];
    assert_eq!(alert.name, "HostDown");
    assert_eq!(
        alert.kind,
        RuleKind::Alerting {
            for_duration: Duration::from_secs(300),
            keep_firing_for: Duration::from_secs(120),
            annotations: BTreeMap::from([(
                "summary".into(),
                "{{ $labels.instance }} is down".into()
            )]),
        }
    );
    assert_eq!(alert.labels["severity"], "page");
    let mysql = &g.groups[1];
    assert_eq!(
        (mysql.interval, mysql.query_offset, mysql.limit),
        (None, None, 0)
    );
    assert_eq!(mysql.rules[0].labels["source"], "rules");
}

#[test]
fn empty_files_and_empty_groups_are_valid() {
    for text in ["", "\n", "groups:\n", "groups: []\n", "# only a comment\n"] {
        let g = parse_rule_file(text, &ParseOptions::default()).unwrap();
        assert_eq!(g.rule_count(), 0, "{text:?}");
    }
    let g = parse_rule_file(
        "groups:\n  - name: a\n    interval: 0\n",
        &ParseOptions::default(),
    )
    .unwrap();
    assert_eq!(g.groups[0].interval, None, "interval 0 is the global one");
}

#[test]
fn group_names_must_be_present_and_unique() {
    assert_eq!(
        errors("groups:\n  - name: a\n  - name: a\n  - name: \"\"\n  - rules: []\n"),
        [
            "3:5: groupname: \"a\" is repeated in the same file",
            "4:5: Groupname must not be empty",
            "5:5: Groupname must not be empty",
            "5:5: groupname: \"\" is repeated in the same file",
        ]
    );
}

#[test]
fn group_labels_are_checked() {
    assert_eq!(
        errors("groups:\n  - name: a\n    labels:\n      __name__: x\n"),
        ["invalid label name: __name__"]
    );
}

#[test]
fn a_rule_is_either_recording_or_alerting() {
    assert_eq!(
        errors(&one_rule("record: a\n        alert: b\n        expr: up")),
        ["4:17: 5:16: group \"g\", rule 1, \"b\": only one of 'record' and 'alert' must be set"]
    );
    // Prometheus 3 names both nodes; 0:0 is a node the YAML does not have.
    assert_eq!(
        errors(&one_rule("expr: up")),
        ["0:0: 0:0: group \"g\", rule 1, \"\": one of 'record' or 'alert' must be set"]
    );
    assert_eq!(
        errors(&one_rule("record: \"\"\n        expr: up")),
        ["4:17: 0:0: group \"g\", rule 1, \"\": one of 'record' or 'alert' must be set"]
    );
}

#[test]
fn expr_is_required_and_must_parse() {
    assert_eq!(
        errors(&one_rule("record: a")),
        ["0:0: group \"g\", rule 1, \"a\": field 'expr' must be set in rule"]
    );
    assert_eq!(
        errors(&one_rule("alert: A\n        expr: \"\"")),
        ["5:15: group \"g\", rule 1, \"A\": field 'expr' must be set in rule"]
    );
    assert_eq!(
        errors(&one_rule("record: a\n        expr: sum(up")),
        ["5:15: group \"g\", rule 1, \"a\": could not parse expression: 1:7: parse error: unclosed left parenthesis"]
    );
}

#[test]
fn alert_only_fields_are_refused_on_recording_rules() {
    let text = one_rule(
        "record: a\n        expr: up\n        for: 1m\n        keep_firing_for: 1m\n        annotations: {x: y}",
    );
    assert_eq!(
        errors(&text),
        [
            "4:17: group \"g\", rule 1, \"a\": invalid field 'annotations' in recording rule",
            "4:17: group \"g\", rule 1, \"a\": invalid field 'for' in recording rule",
            "4:17: group \"g\", rule 1, \"a\": invalid field 'keep_firing_for' in recording rule",
        ]
    );
    // Zero durations are as good as none, as in Prometheus.
    assert!(errors(&one_rule("record: a\n        expr: up\n        for: 0s")).is_empty());
}

#[test]
fn recording_rule_names() {
    assert_eq!(
        errors(&one_rule("record: 'a{b=\"c\"}'\n        expr: up")),
        ["4:17: group \"g\", rule 1, \"a{b=\\\"c\\\"}\": braces present in the recording rule name; should it be in expr?: a{b=\"c\"}"]
    );
    // UTF-8 names are valid in Prometheus 3; Prometheus 2's scheme refuses them.
    let text = one_rule("record: job-up\n        expr: up");
    assert!(errors(&text).is_empty());
    let legacy = ParseOptions {
        names: NameValidation::Legacy,
        ..ParseOptions::default()
    };
    assert_eq!(
        errors_with(&text, legacy),
        ["4:17: group \"g\", rule 1, \"job-up\": invalid recording rule name: job-up"]
    );
    assert!(errors_with(&one_rule("record: a:b_c1\n        expr: up"), legacy).is_empty());
}

#[test]
fn rule_labels_and_annotation_names() {
    let text = one_rule(
        "alert: A\n        expr: up\n        labels: {__name__: x, ok: y, bad-name: z}\n        annotations: {bad-too: x}",
    );
    assert_eq!(
        errors(&text),
        ["group \"g\", rule 1, \"A\": invalid label name: __name__"]
    );
    let legacy = ParseOptions {
        names: NameValidation::Legacy,
        ..ParseOptions::default()
    };
    assert_eq!(
        errors_with(&text, legacy),
        [
            "group \"g\", rule 1, \"A\": invalid label name: __name__",
            "group \"g\", rule 1, \"A\": invalid label name: bad-name",
            "group \"g\", rule 1, \"A\": invalid annotation name: bad-too",
        ]
    );
}

#[test]
fn unknown_fields_are_refused_with_their_lines() {
    let text = "groups:\n  - name: g\n    rules:\n      - record: x\n        expr: up\n        foo: bar\n    bar: 1\nbaz: 2\n";
    assert_eq!(
        errors(text),
        ["yaml: unmarshal errors:\n  line 6: field foo not found in type rulefmt.Rule\n  line 7: field bar not found in type rulefmt.RuleGroup\n  line 8: field baz not found in type rulefmt.RuleGroups"]
    );
    let ignore = ParseOptions {
        ignore_unknown_fields: true,
        ..ParseOptions::default()
    };
    assert!(errors_with(text, ignore).is_empty());
}

#[test]
fn values_that_do_not_fit_their_fields() {
    assert_eq!(
        errors("groups:\n  - name: [g]\n    limit: abc\n    rules:\n      - record: {a: b}\n        expr: up\n        labels: [a]\n"),
        ["yaml: unmarshal errors:\n  line 2: cannot unmarshal !!seq into string\n  line 3: cannot unmarshal !!str `abc` into int\n  line 5: cannot unmarshal !!map into string\n  line 7: cannot unmarshal !!seq into map[string]string"]
    );
    assert_eq!(
        errors("groups: x\n"),
        ["yaml: unmarshal errors:\n  line 1: cannot unmarshal !!str `x` into []rulefmt.RuleGroup"]
    );
    assert_eq!(
        errors("- a\n"),
        ["yaml: unmarshal errors:\n  line 1: cannot unmarshal !!seq into rulefmt.RuleGroups"]
    );
    assert_eq!(
        errors("groups:\n  - name: g\n    rules: 3\n"),
        ["yaml: unmarshal errors:\n  line 3: cannot unmarshal !!int `3` into []rulefmt.Rule"]
    );
    assert_eq!(
        errors("groups:\n  - name: g\n    limit: 1.5\n"),
        ["yaml: unmarshal errors:\n  line 3: cannot unmarshal !!float `1.5` into int"]
    );
}

#[test]
fn scalars_of_other_types_are_read_as_text_for_strings() {
    let g = parse_rule_file(
        "groups:\n  - name: 1\n    rules:\n      - record: a\n        expr: 2\n        labels: {n: 3, b: true}\n",
        &ParseOptions::default(),
    )
    .unwrap();
    assert_eq!(g.groups[0].name, "1");
    assert_eq!(g.groups[0].rules[0].expr, "2");
    assert_eq!(g.groups[0].rules[0].labels["b"], "true");
}

#[test]
fn bad_durations_name_their_line() {
    assert_eq!(
        errors(&one_rule("alert: a\n        expr: up\n        for: 5x")),
        ["yaml: unmarshal errors:\n  line 6: not a valid duration string: \"5x\""]
    );
    assert_eq!(
        errors("groups:\n  - name: g\n    interval: 1h1h\n    query_offset: [1]\n"),
        ["yaml: unmarshal errors:\n  line 3: not a valid duration string: \"1h1h\"\n  line 4: cannot unmarshal !!seq into string"]
    );
}

#[test]
fn repeated_keys_are_refused() {
    assert_eq!(
        errors(&one_rule("record: x\n        expr: up\n        expr: down")),
        ["yaml: unmarshal errors:\n  line 6: mapping key \"expr\" already defined at line 5"]
    );
}

#[test]
fn yaml_syntax_errors_carry_libyamls_message_and_position() {
    assert_eq!(
        errors("groups:\n  - name: g\n    rules:\n      - record: x\n        expr: up\n      expr: y\n"),
        ["yaml: did not find expected '-' indicator at line 6 column 7, while parsing a block collection at line 4 column 7"]
    );
}

#[test]
fn errors_come_in_prometheus_order_across_groups() {
    let text = "groups:\n  - name: a\n    rules:\n      - record: x\n        expr: (\n      - alert: y\n  - name: a\n";
    assert_eq!(
        errors(text),
        [
            "5:15: group \"a\", rule 1, \"x\": could not parse expression: 1:2: parse error: unclosed left parenthesis",
            "0:0: group \"a\", rule 2, \"y\": field 'expr' must be set in rule",
            "7:5: groupname: \"a\" is repeated in the same file",
        ]
    );
}

#[test]
fn flow_style_documents_have_positions_too() {
    assert_eq!(
        errors("{groups: [{name: g, rules: [{record: 'a{}', expr: up}]}]}"),
        ["1:38: group \"g\", rule 1, \"a{}\": braces present in the recording rule name; should it be in expr?: a{}"]
    );
}

#[test]
fn only_the_first_document_is_read() {
    let g = parse_rule_file(
        "groups: []\n---\ngroups: [{name: x, rules: [{record: a, expr: up}]}]\n",
        &ParseOptions::default(),
    )
    .unwrap();
    assert_eq!(g.rule_count(), 0);
}

#[test]
fn duplicate_rules_are_found_as_promtool_lints_them() {
    let text = "groups:\n  - name: g\n    rules:\n      - record: x\n        expr: up\n      - record: x\n        expr: down\n        labels: {a: b}\n  - name: h\n    rules:\n      - record: x\n        expr: up\n      - record: x\n        expr: up\n        labels: {a: b}\n      - record: y\n        expr: up\n";
    let g = parse_rule_file(text, &ParseOptions::default()).unwrap();
    let dups = duplicate_rules(&g);
    assert_eq!(dups.len(), 2);
    assert_eq!(
        duplicate_rules_message(&dups),
        "lint error 2 duplicate rule(s) found.\nMetric: x\nLabel(s):\nMetric: x\nLabel(s):\n\ta: b\nMight cause inconsistency while recording expressions"
    );
}

#[test]
fn rule_files_are_loaded_with_their_name_and_globs_expand() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.rules.yml"), GOOD).unwrap();
    std::fs::write(dir.path().join("b.rules.yml"), "groups:\n  - name: \"\"\n").unwrap();
    std::fs::write(dir.path().join("other.txt"), "x").unwrap();
    let files = rule_files_named(&[dir.path().join("*.rules.yml")]).unwrap();
    assert_eq!(
        files,
        [
            dir.path().join("a.rules.yml"),
            dir.path().join("b.rules.yml")
        ]
    );
    let opts = ParseOptions::default();
    assert_eq!(load_rule_file(&files[0], &opts).unwrap().rule_count(), 3);
    let err = load_rule_file(&files[1], &opts).unwrap_err();
    assert_eq!(
        err,
        [format!(
            "{}: 2:5: Groupname must not be empty",
            files[1].display()
        )]
    );
    // A name without a wildcard must exist; a wildcard may match nothing.
    let missing = dir.path().join("missing.yml");
    assert_eq!(
        rule_files_named(std::slice::from_ref(&missing)).unwrap_err(),
        format!(
            "\"{}\" does not point to an existing file",
            missing.display()
        )
    );
    assert!(rule_files_named(&[dir.path().join("*.none")])
        .unwrap()
        .is_empty());
    let e = load_rule_file(&missing, &opts).unwrap_err();
    assert!(
        e[0].starts_with(&format!("{}: ", missing.display())),
        "{e:?}"
    );
    std::fs::write(dir.path().join("bin.yml"), b"groups: \xff\n").unwrap();
    let e = load_rule_file(&dir.path().join("bin.yml"), &opts).unwrap_err();
    assert!(e[0].ends_with("yaml: invalid UTF-8 at byte 8"), "{e:?}");
}

#[test]
fn deep_or_huge_input_is_an_error_not_a_crash() {
    let deep = format!("groups: {}", "[".repeat(100_000));
    assert_eq!(errors(&deep).len(), 1);
    let deep_expr = one_rule(&format!(
        "record: a\n        expr: '{}1{}'",
        "(".repeat(5000),
        ")".repeat(5000)
    ));
    let e = errors(&deep_expr);
    assert!(e[0].contains("could not parse expression"), "{e:?}");
}

#[test]
fn alert_templates_are_parsed() {
    let text = one_rule(
        "alert: A\n        expr: up\n        labels: {s: \"{{ if }}\"}\n        annotations:\n          a: \"{{ $labels.x \"\n          b: \"{{ foo }}\"\n          c: \"{{ $labels.instance }} ok\"",
    );
    assert_eq!(
        errors(&text),
        [
            "group \"g\", rule 1, \"A\": label \"s\": template: __alert_A:1: missing value for if",
            "group \"g\", rule 1, \"A\": annotation \"a\": template: __alert_A:1: unclosed action",
            "group \"g\", rule 1, \"A\": annotation \"b\": template: __alert_A:1: function \"foo\" not defined",
        ]
    );
    // Recording rules' labels are not templates.
    assert!(errors(&one_rule(
        "record: a\n        expr: up\n        labels: {s: \"{{\"}"
    ))
    .is_empty());
}
