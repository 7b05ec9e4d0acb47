use super::*;

const RULES: &str = r#"groups:
  - name: g
    rules:
      - record: job:errors:rate1m
        expr: sum by (job) (rate(errors_total[2m]))
      - alert: Errors
        expr: job:errors:rate1m > 1
        for: 2m
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.job }} has errors: {{ $value }}"
"#;

/// Runs a test file's text with `rules` as `rules.yml` beside it.
fn run(rules: &str, test: &str) -> TestFileOutcome {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yml"), rules).unwrap();
    run_test_text(test, dir.path())
}

const SERIES: &str = r#"    input_series:
      - series: 'errors_total{job="api", instance="a"}'
        values: '0+120x10'
      - series: 'errors_total{job="db", instance="b"}'
        values: '0+30x10'
"#;

#[test]
fn recording_rules_feed_alerts_that_fire_after_their_for() {
    let test = format!(
        r#"rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
{SERIES}    alert_rule_test:
      - eval_time: 1m
        alertname: Errors
      - eval_time: 3m
        alertname: Errors
      - eval_time: 4m
        alertname: Errors
        exp_alerts:
          - exp_labels: {{job: api, severity: page}}
            exp_annotations:
              summary: "api has errors: 2"
    promql_expr_test:
      - expr: job:errors:rate1m
        eval_time: 2m
        exp_samples:
          - labels: 'job:errors:rate1m{{job="api"}}'
            value: 2
          - labels: 'job:errors:rate1m{{job="db"}}'
            value: 0.5
"#
    );
    let out = run(RULES, &test);
    assert_eq!(out, TestFileOutcome::default());
}

#[test]
fn wrong_alerts_are_listed_as_promtool_lists_them() {
    let test = format!(
        r#"rule_files: [rules.yml]
tests:
  - interval: 1m
    name: errors
{SERIES}    alert_rule_test:
      - eval_time: 2m30s
        alertname: Errors
        exp_alerts:
          - exp_labels: {{job: api, severity: page}}
      - eval_time: 4m
        alertname: Errors
"#
    );
    let out = run(RULES, &test);
    assert_eq!(
        out.failures,
        vec![
            // At 2m30s the evaluation at 2m counts: the alert still pends.
            "    name: errors,\n    alertname: Errors, time: 2m30s, \n        exp:[\n            0:\n              Labels:{alertname=\"Errors\", job=\"api\", severity=\"page\"}\n              Annotations:{}\n            ], \n        got:[]".to_string(),
            "    name: errors,\n    alertname: Errors, time: 4m, \n        exp:[], \n        got:[\n            0:\n              Labels:{alertname=\"Errors\", job=\"api\", severity=\"page\"}\n              Annotations:{summary=\"api has errors: 2\"}\n            ]".to_string(),
        ]
    );
}

#[test]
fn wrong_samples_are_listed_as_promtool_lists_them() {
    let test = format!(
        r#"rule_files: [rules.yml]
tests:
  - interval: 1m
{SERIES}    promql_expr_test:
      - expr: sum(errors_total) by (job)
        eval_time: 1m
        exp_samples:
          - labels: '{{job="api"}}'
            value: 120
      - expr: vector(1.5)
        eval_time: 0s
        exp_samples:
          - labels: '{{}}'
            value: 1.5
      - expr: nope(
        eval_time: 0s
"#
    );
    let out = run(RULES, &test);
    assert_eq!(out.failures.len(), 2, "{out:?}");
    assert_eq!(
        out.failures[0],
        "    expr: \"sum(errors_total) by (job)\", time: 1m,\n        exp: {job=\"api\"} 1.2E+02\n        got: {job=\"api\"} 1.2E+02, {job=\"db\"} 3E+01"
    );
    assert!(
        out.failures[1].starts_with("    expr: \"nope(\", time: 0s, err: "),
        "{}",
        out.failures[1]
    );
}

#[test]
fn values_must_be_equal_unless_fuzzy_compare_allows_one_ulp() {
    let test = |fuzzy: bool| {
        format!(
            "rule_files: []\nfuzzy_compare: {fuzzy}\ntests:\n  - promql_expr_test:\n      - expr: vector(0.1 + 0.2)\n        exp_samples:\n          - labels: '{{}}'\n            value: 0.3\n"
        )
    };
    assert_eq!(run("", &test(false)).failures.len(), 1);
    assert!(run("", &test(true)).passed());
}

#[test]
fn an_evaluation_error_ends_the_test_with_the_rule_and_time() {
    let rules = "groups:\n  - name: g\n    limit: 1\n    rules:\n      - record: r\n        expr: errors_total\n";
    let test = format!(
        "rule_files: [rules.yml]\ntests:\n  - interval: 1m\n{SERIES}    promql_expr_test:\n      - expr: r\n        eval_time: 2m\n"
    );
    let out = run(rules, &test);
    assert_eq!(
        out.failures,
        vec!["    rule: r, time: 0s, err: exceeded limit of 1 with 2 series".to_string()]
    );
}

#[test]
fn series_are_loaded_up_to_the_last_evaluation_only() {
    // Evaluations at 0 and 1m; the sample at 1m30s is never loaded, as in promtool.
    let test = "rule_files: []\ntests:\n  - interval: 30s\n    input_series:\n      - series: x\n        values: 1 2 3 4\n    promql_expr_test:\n      - expr: x\n        eval_time: 90s\n        exp_samples:\n          - labels: x\n            value: 3\n";
    assert!(run("", test).passed());
}

#[test]
fn groups_run_in_the_order_given() {
    let rules = "groups:\n  - name: second\n    rules:\n      - record: b\n        expr: a + 1\n  - name: first\n    rules:\n      - record: a\n        expr: vector(1)\n";
    let test = |order: &str| {
        format!("rule_files: [rules.yml]\ngroup_eval_order: [{order}]\ntests:\n  - promql_expr_test:\n      - expr: b\n        exp_samples:\n          - labels: b\n            value: 2\n")
    };
    assert!(run(rules, &test("first, second")).passed());
    // In file order `b` runs before `a` exists at time 0.
    assert_eq!(run(rules, &test("second, first")).failures.len(), 1);
    assert_eq!(
        run(rules, &test("first, first")).failures,
        vec!["group name repeated in evaluation order: first".to_string()]
    );
}

#[test]
fn malformed_files_are_refused_with_lines() {
    let out = run(
        "",
        "rule_files: [rules.yml]\nevaluation_interval: soon\ntests:\n  - interval: 1m\n    inputs: []\n    promql_expr_test:\n      - expr: x\n        exp_samples:\n          - value: lots\n",
    );
    assert_eq!(
        out.failures,
        vec!["yaml: unmarshal errors:\n  line 2: not a valid duration string: \"soon\"\n  line 5: field inputs not found in type main.testGroup\n  line 9: cannot unmarshal !!str `lots` into float64".to_string()]
    );
    let out = run(
        "",
        "tests:\n  - input_series:\n      - series: 'x{a=\"b\"'\n        values: 1\n",
    );
    assert!(
        out.failures[0].starts_with("line 3: input series"),
        "{out:?}"
    );
    let out = run(
        "",
        "tests:\n  - alert_rule_test:\n      - eval_time: 5m\n    name: t\n",
    );
    assert_eq!(
        out.failures,
        vec!["an item under alert_rule_test misses required attribute alertname at eval_time 5m (in TestGroup t)".to_string()]
    );
}

#[test]
fn rule_file_problems_and_missing_files() {
    let out = run(
        "groups:\n  - name: g\n    rules:\n      - record: a\n",
        "rule_files: [rules.yml, missing.yml]\ntests:\n  - {}\n",
    );
    assert_eq!(out.warnings.len(), 1);
    assert!(out.warnings[0].starts_with("  WARNING: no file match pattern "));
    assert!(out.warnings[0].ends_with("missing.yml"));
    assert_eq!(out.failures.len(), 1);
    assert!(
        out.failures[0].ends_with(
            "rules.yml: 0:0: group \"g\", rule 1, \"a\": field 'expr' must be set in rule"
        ),
        "{out:?}"
    );
}

#[test]
fn a_missing_file_is_named_in_go_s_words() {
    let out = run_test_file(Path::new("/nonexistent/t.yml"));
    assert_eq!(
        out.failures,
        vec!["open /nonexistent/t.yml: no such file or directory".to_string()]
    );
}

#[test]
fn go_formats() {
    assert_eq!(model_duration(90_000), "1m30s");
    assert_eq!(samples_string(&[]), "nil");
    assert_eq!(next_toward(1.0, f64::INFINITY), 1.0 + f64::EPSILON);
    assert_eq!(next_toward(-1.0, f64::INFINITY), -1.0 + f64::EPSILON / 2.0);
    assert_eq!(next_toward(0.0, f64::NEG_INFINITY), -f64::from_bits(1));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_test_file_is_read_or_refused_without_panicking(
            s in any::<String>(),
            // Times, intervals and repetitions stay small: promtool too runs
            // whatever number of steps and values a file asks for.
            near in "(rule_files: \\[\\]\n)?(evaluation_interval: [1-9][smh]\n)?tests:\n(  - (interval: [1-9][sm]|name: [a-z]{0,4}|external_url: [ -~]{0,6})\n    input_series:\n      - series: [ -~]{0,10}\n        values: [-0-9 _+.a-wyz]{0,10}(x[0-9])?\n    (promql_expr_test|alert_rule_test):\n      - (expr|alertname|exp_samples|exp_alerts): [ -~]{0,10}\n        (eval_time: [0-9]{1,2}[sm]|value: [ -~]{0,8}|labels: [ -~]{0,8}|exp_labels: [ -~]{0,8})\n){0,2}",
        ) {
            let dir = Path::new("/nonexistent-rule-tests");
            let _ = run_test_text(&s, dir);
            let _ = run_test_text(&near, dir);
        }
    }
}

/// An eval_time centuries away (a typo for minutes) is refused, not evaluated
/// step by step for hours.
#[test]
fn an_eval_time_too_far_away_is_an_error() {
    let test = format!(
        "rule_files: [rules.yml]\nevaluation_interval: 1s\ntests:\n  - interval: 1m\n{SERIES}    promql_expr_test:\n      - expr: errors_total\n        eval_time: 100y\n"
    );
    let started = std::time::Instant::now();
    let out = run(RULES, &test);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(out.failures.len(), 1, "{out:?}");
    assert!(
        out.failures[0].contains("evaluations of 1s away: more than the 604800 a test may run"),
        "{}",
        out.failures[0]
    );
}
