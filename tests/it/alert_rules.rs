//! Checks the Prometheus alerting rules shipped in `deploy/prometheus/`.
//!
//! `promtool` (Debian package `prometheus`) validates `alerts.yaml` and runs
//! the unit tests in `alerts_test.yaml`. A missing `promtool` fails the test
//! rather than skipping it: a skipped check looks green in CI while the rules
//! rot. Set `PROMTOOL` to use a binary outside `PATH`. Plain `cargo test` leaves
//! the promtool tests out (ignored); `scripts/test`, and so CI, runs them with
//! `--include-ignored`.
//!
//! The rule files are read with a line scan, not a YAML parser, to keep this
//! test free of extra crates; it relies on the layout the files use
//! (`- alert: Name`, `runbook_url: ...`, `alertname: Name` followed by
//! `exp_alerts:`), and fails loudly if it finds no alerts at all.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

const RULES: &str = "deploy/prometheus/alerts.yaml";
const RULE_TESTS: &str = "deploy/prometheus/alerts_test.yaml";
const RUNBOOK: &str = "docs/alerts.md";
const RUNBOOK_URL_PREFIX: &str =
    "https://github.com/nsexporter/nsexporter/blob/main/docs/alerts.md#";

/// Alerts the project promises to ship; deleting one together with its test
/// and runbook would otherwise go unnoticed.
const REQUIRED_ALERTS: &[&str] = &[
    "NsexporterUnexpectedHostNamespaceSharing",
    "NsexporterCrossWorkloadNamespaceSharing",
    "NsexporterHostMountNamespaceFromContainer",
    "NsexporterProcessLeftContainerCgroup",
    "NsexporterPrivilegeExceedsDeclared",
    "NsexporterContainerRootWithHostSysAdmin",
    "NsexporterWorkloadNamespaceFlood",
    "NsexporterNamespacesNearLimit",
    "NsexporterConntrackNearLimit",
    "NsexporterNetworkNamespaceLeakHoldsSockets",
    "NsexporterNamespaceChurnHigh",
    "NsexporterScanErrorsRising",
    "NsexporterDown",
    "NsexporterAbsent",
    "NsexporterScansStalled",
    "NsexporterScanFailing",
    "NsexporterEbpfEventsLost",
    "NsexporterProcEventsDropped",
];

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path: PathBuf = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Runs `promtool <args>` in the repository root and panics with its output
/// unless it exits successfully.
fn run_promtool(args: &[&str]) {
    let program = std::env::var_os("PROMTOOL").unwrap_or_else(|| OsString::from("promtool"));
    let output = match Command::new(&program)
        .args(args)
        .current_dir(repo_root())
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "promtool not found (looked for {program:?}): install the Debian package `prometheus` \
             (`apt-get install prometheus`), or set PROMTOOL to the promtool binary"
        ),
        Err(e) => panic!("running {program:?}: {e}"),
    };
    assert!(
        output.status.success(),
        "`promtool {}` failed with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

/// An alerting rule as far as this test cares: its name and runbook links.
#[derive(Debug, Default)]
struct AlertRule {
    name: String,
    runbook_urls: Vec<String>,
}

/// `- alert: Name` starts a rule; `runbook_url:` lines belong to the rule
/// above them.
fn alert_rules(rules_yaml: &str) -> Vec<AlertRule> {
    let mut rules: Vec<AlertRule> = Vec::new();
    for line in rules_yaml.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("- alert:") {
            rules.push(AlertRule {
                name: unquote(name).to_owned(),
                ..AlertRule::default()
            });
        } else if let Some(url) = line.strip_prefix("runbook_url:") {
            let rule = rules
                .last_mut()
                .unwrap_or_else(|| panic!("runbook_url before any `- alert:`: {line}"));
            rule.runbook_urls.push(unquote(url).to_owned());
        }
    }
    rules
}

/// How an alert is exercised by the promtool unit tests.
#[derive(Debug, Default)]
struct Coverage {
    firing: usize,
    not_firing: usize,
}

/// Each `alertname: Name` in an `alert_rule_test` is followed by
/// `exp_alerts: []` (must not fire) or by `exp_alerts:` and a list of
/// expected alerts (must fire). An `alertname` without `exp_alerts` also
/// means "must not fire" to promtool, but this test insists on the explicit
/// form so the intent is visible.
fn unit_test_coverage(tests_yaml: &str) -> BTreeMap<String, Coverage> {
    let lines: Vec<&str> = tests_yaml
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect();
    let mut coverage: BTreeMap<String, Coverage> = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = line.strip_prefix("alertname:") else {
            continue;
        };
        let name = unquote(name);
        let exp = lines[i + 1..]
            .iter()
            .position(|l| l.starts_with("exp_alerts:"))
            .map(|offset| i + 1 + offset)
            .filter(|&j| {
                // The exp_alerts must belong to this test case, not the next.
                !lines[i + 1..j]
                    .iter()
                    .any(|l| l.starts_with("alertname:") || l.starts_with("- eval_time:"))
            })
            .unwrap_or_else(|| panic!("{RULE_TESTS}: `alertname: {name}` has no `exp_alerts:`"));
        let value = lines[exp]["exp_alerts:".len()..].trim();
        let entry = coverage.entry(name.to_owned()).or_default();
        match value {
            "[]" => entry.not_firing += 1,
            "" if lines.get(exp + 1).is_some_and(|l| l.starts_with('-')) => entry.firing += 1,
            _ => panic!("{RULE_TESTS}: unexpected `{}` for {name}", lines[exp]),
        }
    }
    coverage
}

/// The fragment GitHub gives a Markdown heading: lower case, spaces become
/// dashes, other punctuation is dropped.
fn github_anchor(heading: &str) -> String {
    heading
        .trim()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

fn unquote(value: &str) -> &str {
    value.trim().trim_matches(|c| c == '"' || c == '\'')
}

#[test]
#[ignore = "needs promtool (scripts/install-test-deps)"]
fn promtool_check_rules_accepts_alerts() {
    run_promtool(&["check", "rules", RULES]);
}

#[test]
#[ignore = "needs promtool (scripts/install-test-deps)"]
fn promtool_unit_tests_pass() {
    run_promtool(&["test", "rules", RULE_TESTS]);
}

#[test]
fn every_alert_has_a_runbook_and_unit_tests() {
    let rules = alert_rules(&read(RULES));
    let coverage = unit_test_coverage(&read(RULE_TESTS));
    let runbook = read(RUNBOOK);
    let headings: Vec<&str> = runbook
        .lines()
        .filter_map(|line| line.strip_prefix("## "))
        .map(str::trim)
        .collect();

    let names: Vec<&str> = rules.iter().map(|rule| rule.name.as_str()).collect();
    for required in REQUIRED_ALERTS {
        assert!(
            names.contains(required),
            "{RULES} has no alert {required}; found {names:?}"
        );
    }

    let mut problems: Vec<String> = Vec::new();
    for rule in &rules {
        let name = &rule.name;
        if !headings.contains(&name.as_str()) {
            problems.push(format!("{RUNBOOK} has no `## {name}` heading"));
        }
        let expected_url = format!("{RUNBOOK_URL_PREFIX}{}", github_anchor(name));
        if rule.runbook_urls != [expected_url.clone()] {
            problems.push(format!(
                "{name}: runbook_url should be exactly one {expected_url}, found {:?}",
                rule.runbook_urls
            ));
        }
        match coverage.get(name) {
            None => problems.push(format!("{RULE_TESTS} never tests {name}")),
            Some(c) => {
                if c.firing == 0 {
                    problems.push(format!("{RULE_TESTS} never expects {name} to fire"));
                }
                if c.not_firing == 0 {
                    problems.push(format!(
                        "{RULE_TESTS} never expects {name} not to fire (`exp_alerts: []`)"
                    ));
                }
            }
        }
    }
    for tested in coverage.keys() {
        if !names.contains(&tested.as_str()) {
            problems.push(format!(
                "{RULE_TESTS} tests {tested}, which {RULES} does not define"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn line_scan_reads_the_layout_it_expects() {
    let rules = alert_rules(
        "groups:\n  - name: g\n    rules:\n      - alert: A\n        annotations:\n          \
         runbook_url: https://x/docs/alerts.md#a\n      - alert: \"B\"\n",
    );
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].name, "A");
    assert_eq!(rules[0].runbook_urls, ["https://x/docs/alerts.md#a"]);
    assert_eq!(rules[1].name, "B");
    assert!(rules[1].runbook_urls.is_empty());

    let coverage = unit_test_coverage(
        "alert_rule_test:\n  - eval_time: 1m\n    alertname: A\n    exp_alerts: []\n  \
         - eval_time: 5m\n    alertname: A\n    # fires\n    exp_alerts:\n      \
         - exp_labels:\n          severity: warning\n",
    );
    assert_eq!(coverage["A"].firing, 1);
    assert_eq!(coverage["A"].not_firing, 1);

    assert_eq!(
        github_anchor("NsexporterDown"),
        "nsexporterdown",
        "alert names are their own anchors"
    );
    assert_eq!(github_anchor("Before you start"), "before-you-start");
}

/// The recording rules for a cluster-level view parse and compute what their unit tests say.
#[test]
#[ignore = "needs promtool (scripts/install-test-deps)"]
fn recording_rules_pass_promtool() {
    run_promtool(&["check", "rules", "deploy/prometheus/recording.yaml"]);
    run_promtool(&["test", "rules", "deploy/prometheus/recording_test.yaml"]);
}

/// The fragments GitHub gives the headings of a Markdown file: `github_anchor` of each, with
/// `-1`, `-2`, ... on repeats. Lines inside fenced code blocks are not headings.
fn markdown_anchors(markdown: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    let mut repeats: BTreeMap<String, usize> = BTreeMap::new();
    let mut fence: Option<&str> = None;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        if let Some(open) = fence {
            if trimmed.starts_with(open) {
                fence = None;
            }
            continue;
        }
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fence = Some(&trimmed[..3]);
            continue;
        }
        let level = line.bytes().take_while(|&b| b == b'#').count();
        let Some(text) = line[level..]
            .strip_prefix(' ')
            .filter(|_| (1..=6).contains(&level))
        else {
            continue;
        };
        let anchor = github_anchor(text.trim_end_matches('#'));
        let n = repeats.entry(anchor.clone()).or_insert(0);
        anchors.insert(if *n == 0 {
            anchor
        } else {
            format!("{anchor}-{n}")
        });
        *n += 1;
    }
    anchors
}

/// Each rule's one runbook_url: the default base, then `#` and an anchor that exists in the
/// runbook and is the alert's own section.
fn runbook_link_problems(rules: &[AlertRule], runbook: &str) -> Vec<String> {
    let anchors = markdown_anchors(runbook);
    let base = RUNBOOK_URL_PREFIX.trim_end_matches('#');
    let mut problems = Vec::new();
    for rule in rules {
        let name = &rule.name;
        let [url] = rule.runbook_urls.as_slice() else {
            problems.push(format!(
                "{name}: {} runbook_url lines, want one",
                rule.runbook_urls.len()
            ));
            continue;
        };
        let Some((link_base, anchor)) = url.split_once('#') else {
            problems.push(format!("{name}: runbook_url {url} has no #anchor"));
            continue;
        };
        if link_base != base {
            problems.push(format!(
                "{name}: runbook_url {url} does not start with {base}#"
            ));
        }
        if !anchors.contains(anchor) {
            problems.push(format!("{name}: #{anchor} is not a heading of {RUNBOOK}"));
        } else if anchor != github_anchor(name) {
            problems.push(format!("{name}: #{anchor} is not the alert's own section"));
        }
    }
    problems
}

#[test]
fn every_runbook_url_ends_in_an_anchor_of_docs_alerts_md() {
    // Read now, not listed here: alerts added later are covered as they come.
    let rules = alert_rules(&read(RULES));
    assert!(!rules.is_empty(), "{RULES}: no alerts found");
    let runbook = read(RUNBOOK);
    let problems = runbook_link_problems(&rules, &runbook);
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // A link that drifts from the runbook is caught.
    let drifted = |url: &str| {
        let rule = AlertRule {
            name: rules[0].name.clone(),
            runbook_urls: vec![url.to_owned()],
        };
        runbook_link_problems(&[rule], &runbook)
    };
    let own = github_anchor(&rules[0].name);
    for url in [
        format!("{RUNBOOK_URL_PREFIX}{own}-renamed"),
        format!("{RUNBOOK_URL_PREFIX}before-you-start"),
        format!("https://github.com/elsewhere/nsexporter/blob/main/docs/alerts.md#{own}"),
    ] {
        assert!(
            !drifted(&url).is_empty(),
            "a runbook_url of {url} was accepted"
        );
    }
    let anchors = markdown_anchors("# T\n## A b\n```sh\n# not a heading\n```\n## A b\n## A b\n");
    let found: Vec<&str> = anchors.iter().map(String::as_str).collect();
    assert_eq!(found, ["a-b", "a-b-1", "a-b-2", "t"]);
}

#[test]
fn runbook_base_is_where_the_readme_says_the_project_lives() {
    let readme = read("README.md");
    let marker = "The project lives at ";
    let home = readme
        .split_once(marker)
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .map(|url| url.trim_end_matches([',', '.', ';', ')']))
        .unwrap_or_else(|| panic!("README.md has no `{marker}URL`"));
    assert_eq!(
        RUNBOOK_URL_PREFIX,
        format!("{home}/blob/main/docs/alerts.md#"),
        "the runbook links' default base is not the README's project home"
    );
}
