//! Rule files checked by the real `promtool check rules` (Debian's 2.42) and by
//! `gpx_arrowmon check-rules` on the same good and bad files: both must accept
//! and refuse the same files, and report the same problems: the same rule
//! (group, number, name) with the same reason at the same line and column.
//! arrowmon runs with `--validation-scheme legacy`, the name checks of
//! Prometheus 2; its UTF-8 default, and the other places where it differs from
//! 2.42 on purpose, are checked as differences below.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::support::binary;

/// A file both must accept (`true`) or refuse, and its text.
const CASES: &[(&str, bool, &str)] = &[
    (
        "good",
        true,
        r#"groups:
  - name: node
    interval: 30s
    limit: 10
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
          summary: "{{ $labels.instance }} is down ({{ $value | humanize }})"
  - name: mysql
    rules:
      - record: mysql:up
        expr: mysql_up
"#,
    ),
    ("empty", true, ""),
    ("no_groups", true, "groups: []\n"),
    (
        "duplicate_rules_are_a_lint_warning",
        true,
        "groups:\n  - name: g\n    rules:\n      - record: x\n        expr: up\n  - name: h\n    rules:\n      - record: x\n        expr: up\n",
    ),
    (
        "group_names",
        false,
        "groups:\n  - name: a\n  - name: a\n  - name: \"\"\n  - rules: []\n",
    ),
    (
        "record_and_alert",
        false,
        "groups:\n  - name: g\n    rules:\n      - record: a\n        alert: b\n        expr: up\n",
    ),
    (
        "neither_record_nor_alert",
        false,
        "groups:\n  - name: g\n    rules:\n      - expr: up\n",
    ),
    (
        "expr_missing_or_empty",
        false,
        "groups:\n  - name: g\n    rules:\n      - record: a\n      - alert: B\n        expr: \"\"\n",
    ),
    (
        "expr_does_not_parse",
        false,
        "groups:\n  - name: g\n    rules:\n      - record: a\n        expr: sum(rate(x[5m])\n      - alert: B\n        expr: up ==\n",
    ),
    (
        "alert_fields_on_a_recording_rule",
        false,
        "groups:\n  - name: g\n    rules:\n      - record: a\n        expr: up\n        for: 1m\n        keep_firing_for: 1m\n        annotations: {x: y}\n",
    ),
    (
        "recording_rule_name",
        false,
        "groups:\n  - name: g\n    rules:\n      - record: bad name\n        expr: up\n",
    ),
    (
        "label_and_annotation_names",
        false,
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        labels: {__name__: x}\n      - alert: B\n        expr: up\n        labels: {bad-label: x}\n        annotations: {bad-annotation: y}\n",
    ),
    (
        "unknown_fields",
        false,
        "groups:\n  - name: g\n    rules:\n      - record: x\n        expr: up\n        foo: bar\n    bar: 1\nbaz: 2\n",
    ),
    (
        "bad_duration",
        false,
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        for: 5x\n",
    ),
    (
        "limit_not_an_int",
        false,
        "groups:\n  - name: g\n    limit: abc\n    rules: []\n",
    ),
    (
        "repeated_key",
        false,
        "groups:\n  - name: g\n    rules:\n      - record: x\n        expr: up\n        expr: down\n",
    ),
    (
        "yaml_syntax",
        false,
        "groups:\n  - name: g\n    rules:\n      - record: x\n        expr: up\n      expr: y\n",
    ),
    (
        "alert_templates",
        false,
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        labels: {s: \"{{ if 1 }}\"}\n        annotations:\n          a: \"{{ $labels.x \"\n          b: \"{{ foo $value }}\"\n          c: \"{{ $y }}\"\n          d: \"{{/* x \"\n          e: \"{{ end }}\"\n          g: \"{{ if }}{{ end }}\"\n          f: \"{{ with $labels }}{{ .x }}{{ else }}{{ $value | humanize }}{{ end }}\"\n",
    ),
    (
        "alert_templates_parsed_as_go_parses_them",
        false,
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        annotations:\n          a2: \"{{ 1) }}\"\n          a3: \"{{ | humanize }}\"\n          a7: \"{{ \\\"a\\\".b }}\"\n          a8: \"{{ define \\\"x\\\" }}{{ $labels }}{{ end }}\"\n          a9: \"{{ if 1 }}{{ else }}{{ else }}{{ end }}\"\n          b1: \"{{ range $i, $j, $k := . }}{{ end }}\"\n          b2: \"{{ $a, $b := 1 }}\"\n          b3: \"{{ 1 | 2 }}\"\n          b5: \"{{ x\\ny }}\"\n          b6: \"{{ 1x }}\"\n          b7: \"{{ 'ab' }}\"\n          b8: \"{{ \\\"\\\\q\\\" }}\"\n          b9: \"{{ end x }}\"\n          c1: \"{{ define \\\"a\\\" }}x{{ end }}{{ define \\\"a\\\" }}y{{ end }}\"\n          c2: \"{{ template x }}\"\n          c3: \"{{ if 1 }}\\n\\n{{ foo }}\"\n          c5: \"{{ $labels.x$y }}\"\n          c6: \"{{ 0x1G }}\"\n          c7: \"{{ 1e }}\"\n          c8: \"{{ break 1 }}\"\n          ok1: \"{{ 1 2 }}{{ $x = 1 }}{{ nil }}{{ range $i, $e := . }}{{ continue }}{{ end }}\"\n          ok2: \"{{- /* c */ -}}{{ block \\\"b\\\" . }}{{ .x }}{{ end }}{{ template \\\"b\\\" $labels }}\"\n",
    ),
    (
        "many_problems_in_one_file",
        false,
        "groups:\n  - name: g\n    rules:\n      - record: ok\n        expr: up\n      - record: a\n        expr: (\n      - alert: b\n  - name: g\n    rules:\n      - record: c\n        alert: d\n        expr: up\n",
    ),
];

/// Problems arrowmon reports that promtool 2.42 does not (Prometheus 3 added them).
const ARROWMON_ONLY: &[&str] = &["braces present in the recording rule name"];

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} (scripts/install-deps.sh installs promtool): {e}"))
}

fn promtool(args: &[&str], file: &Path) -> Output {
    run(Command::new("promtool").args(args).arg(file))
}

fn arrowmon(args: &[&str], file: &Path) -> Output {
    run(Command::new(binary()).args(args).arg(file))
}

/// The problems in a check's stderr: text without the file name and positions
/// (`L:C: ` prefixes, `line N: `), mapped to the positions each came with.
/// What the two parsers word differently is cut to what they share: a PromQL
/// parse error to "could not parse expression:", a YAML syntax error to
/// libyaml's problem, yaml.v3's `rulefmt.RuleNode` (2.42) to `rulefmt.Rule` (3.x).
fn problems(stderr: &[u8], file: &Path) -> BTreeMap<String, BTreeSet<Vec<String>>> {
    let text = String::from_utf8_lossy(stderr);
    let prefix = format!("{}: ", file.display());
    let mut out: BTreeMap<String, BTreeSet<Vec<String>>> = BTreeMap::new();
    for line in text.lines() {
        let mut l = line.trim();
        l = l.strip_prefix(prefix.as_str()).unwrap_or(l);
        if l.is_empty() || l == "FAILED:" || l == "yaml: unmarshal errors:" {
            continue;
        }
        let mut positions = Vec::new();
        while let Some((head, rest)) = l.split_once(": ") {
            let is_position = head
                .split_once(':')
                .is_some_and(|(a, b)| a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok());
            let is_line = head
                .strip_prefix("line ")
                .is_some_and(|n| n.parse::<u32>().is_ok());
            if !is_position && !is_line {
                break;
            }
            positions.push(head.to_string());
            l = rest;
        }
        let mut l = l.replace("rulefmt.RuleNode", "rulefmt.Rule");
        if let Some(i) = l.find("could not parse expression:") {
            l.truncate(i + "could not parse expression:".len());
        }
        if let Some(rest) = l.strip_prefix("yaml: ") {
            // A syntax error: yaml.v3 puts "line N: " in front, libyaml's
            // positions follow in arrowmon's.
            let rest =
                rest.split_once(": ").map_or(
                    rest,
                    |(h, r)| {
                        if h.starts_with("line ") {
                            r
                        } else {
                            rest
                        }
                    },
                );
            l = format!("yaml: {}", rest.split(" at line ").next().unwrap_or(rest));
            positions.clear();
        }
        out.entry(l).or_default().insert(positions);
    }
    out
}

fn write_cases(dir: &Path) -> Vec<(PathBuf, bool)> {
    CASES
        .iter()
        .map(|(name, good, text)| {
            let p = dir.join(format!("{name}.yml"));
            std::fs::write(&p, text).unwrap();
            (p, *good)
        })
        .collect()
}

#[test]
fn check_rules_agrees_with_promtool_file_by_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for (file, good) in write_cases(dir.path()) {
        let p = promtool(&["check", "rules"], &file);
        let a = arrowmon(&["check-rules", "--validation-scheme", "legacy"], &file);
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let show = |o: &Output| {
            format!(
                "exit {:?}\n{}{}",
                o.status.code(),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        };
        let context = format!("--- promtool:\n{}--- arrowmon:\n{}", show(&p), show(&a));
        if p.status.success() != good || a.status.success() != good {
            failures.push(format!("{name}: expected success={good}\n{context}"));
            continue;
        }
        if good {
            let count = |o: &Output| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .find(|l| l.contains("SUCCESS:") || l.contains("rules found"))
                    .map(str::to_string)
            };
            if count(&a) != count(&p) {
                failures.push(format!("{name}: rule counts differ\n{context}"));
            }
        }
        let want = problems(&p.stderr, &file);
        let got = problems(&a.stderr, &file);
        for (text, positions) in &want {
            match got.get(text) {
                None => failures.push(format!("{name}: arrowmon misses {text:?}\n{context}")),
                Some(ours) => {
                    let comparable = positions
                        .iter()
                        .chain(ours.iter())
                        .map(Vec::len)
                        .collect::<BTreeSet<_>>()
                        .len()
                        == 1;
                    if comparable && ours != positions {
                        failures.push(format!(
                            "{name}: {text:?} at {ours:?}, promtool says {positions:?}\n{context}"
                        ));
                    }
                }
            }
        }
        for text in got.keys() {
            if !want.contains_key(text) && !ARROWMON_ONLY.iter().any(|k| text.contains(k)) {
                failures.push(format!(
                    "{name}: promtool does not report {text:?}\n{context}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// `check-config` checks the rule files the config names, as `promtool check
/// config` does: globs relative to the config's folder, a named file that is
/// missing, and the verdict on each file.
#[test]
fn check_config_checks_rule_files_as_promtool_does() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join("good.yml"), CASES[0].2).unwrap();
    let config = dir.path().join("prometheus.yml");
    let check = |yaml: &str| {
        std::fs::write(&config, yaml).unwrap();
        (
            promtool(&["check", "config"], &config),
            arrowmon(&["check-config"], &config),
        )
    };
    let text = |o: &Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    let (p, a) = check("global:\n  evaluation_interval: 15s\nrule_files:\n  - rules/*.yml\n");
    assert!(p.status.success(), "{}", text(&p));
    assert!(a.status.success(), "{}", text(&a));
    for o in [&p, &a] {
        assert!(
            text(o).contains("SUCCESS: 1 rule files found"),
            "{}",
            text(o)
        );
        assert!(text(o).contains("SUCCESS: 3 rules found"), "{}", text(o));
    }

    std::fs::write(rules.join("bad.yml"), "groups:\n  - name: \"\"\n").unwrap();
    let (p, a) = check("rule_files:\n  - rules/*.yml\n");
    assert!(
        !p.status.success() && !a.status.success(),
        "{}\n{}",
        text(&p),
        text(&a)
    );
    for o in [&p, &a] {
        assert!(
            text(o).contains("2:5: Groupname must not be empty"),
            "{}",
            text(o)
        );
        assert!(text(o).contains("SUCCESS: 3 rules found"), "{}", text(o));
    }

    let (p, a) = check("rule_files:\n  - rules/missing.yml\n");
    assert!(
        !p.status.success() && !a.status.success(),
        "{}\n{}",
        text(&p),
        text(&a)
    );
    for o in [&p, &a] {
        assert!(
            text(o).contains("does not point to an existing file"),
            "{}",
            text(o)
        );
    }

    let (p, a) = check("rule_files:\n  - 'rules/*/x.yml'\n");
    assert!(
        !p.status.success() && !a.status.success(),
        "{}\n{}",
        text(&p),
        text(&a)
    );
    for o in [&p, &a] {
        assert!(text(o).contains("invalid rule file path"), "{}", text(o));
    }
}

/// Where arrowmon follows Prometheus 3 and promtool 2.42 does not, and what
/// arrowmon does not check: each difference is pinned so that a change on
/// either side shows up here.
#[test]
fn known_differences_from_promtool_2_42() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    // Prometheus 3's group fields `query_offset` and `labels`.
    let f = write(
        "v3_group_fields.yml",
        "groups:\n  - name: g\n    query_offset: 1m\n    labels: {team: a}\n    rules:\n      - record: x\n        expr: up\n",
    );
    let p = promtool(&["check", "rules"], &f);
    assert!(!p.status.success());
    assert!(String::from_utf8_lossy(&p.stderr).contains("field query_offset not found"));
    assert!(arrowmon(&["check-rules"], &f).status.success());

    // Prometheus 3 checks names as UTF-8 by default.
    let f = write(
        "utf8_name.yml",
        "groups:\n  - name: g\n    rules:\n      - record: job-up\n        expr: up\n",
    );
    assert!(!promtool(&["check", "rules"], &f).status.success());
    assert!(arrowmon(&["check-rules"], &f).status.success());
    assert!(
        !arrowmon(&["check-rules", "--validation-scheme", "legacy"], &f)
            .status
            .success()
    );

    // Template functions Prometheus 3 added.
    let f = write(
        "v3_template_function.yml",
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        annotations:\n          a: \"{{ toDuration 1 }}\"\n",
    );
    let p = promtool(&["check", "rules"], &f);
    assert!(String::from_utf8_lossy(&p.stderr).contains("function \"toDuration\" not defined"));
    assert!(arrowmon(&["check-rules"], &f).status.success());

    // Template parse errors are those of the Go release Prometheus 3 is built
    // with: `{{else with}}` became valid after `{{with}}`, and after `{{range}}`
    // the `with` is now unexpected in the input rather than in the else.
    let f = write(
        "newer_go_template.yml",
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        annotations:\n          a: \"{{ with 1 }}{{ else with 2 }}{{ end }}\"\n          b: \"{{ range 1 }}{{ else with 2 }}{{ end }}\"\n",
    );
    let p = promtool(&["check", "rules"], &f);
    let p_err = String::from_utf8_lossy(&p.stderr).into_owned();
    assert!(p_err.contains("annotation \"a\": template: __alert_A:1: unexpected <with> in else"));
    assert!(p_err.contains("annotation \"b\": template: __alert_A:1: unexpected <with> in else"));
    let a = arrowmon(&["check-rules"], &f);
    let a_err = String::from_utf8_lossy(&a.stderr).into_owned();
    assert!(!a_err.contains("annotation \"a\""), "{a_err}");
    assert!(
        a_err.contains("annotation \"b\": template: __alert_A:1: unexpected <with> in input"),
        "{a_err}"
    );
}

/// As Prometheus, `serve` does not start with invalid rule files, and says
/// which file, where and why.
#[test]
fn a_bad_rule_file_stops_serve() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("bad.rules.yml"),
        "groups:\n  - name: g\n    rules:\n      - record: x\n",
    )
    .unwrap();
    let config = d.join("prometheus.yml");
    std::fs::write(&config, "rule_files: ['*.rules.yml']\nscrape_configs: []\n").unwrap();
    let out = crate::support::serve_command(
        &config,
        &d.join("data"),
        &format!("127.0.0.1:{}", crate::support::free_port()),
    )
    .stderr(Stdio::piped())
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: 0:0: group \"g\", rule 1, \"x\": field 'expr' must be set in rule",
            d.join("bad.rules.yml").display()
        )),
        "{stderr}"
    );
    assert!(
        !d.join("data").exists(),
        "serve opened its store before refusing"
    );
}
