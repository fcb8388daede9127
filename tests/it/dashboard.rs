//! Checks the Grafana dashboard `dashboards/nsexporter.json` three ways:
//!
//! - its structure: what Grafana needs to import it as-is (no `__inputs`, a `datasource`
//!   variable every query uses, unique panel ids, a place on the grid for every panel) and what
//!   this project asks of it (every selector filtered by `$job` and `$instance`);
//! - against Grafana's own dashboard types (`@grafana/schema` 10.4 and 11.6, with `tsc`);
//! - against real data: the exporter on this machine's kernel, scraped by a real Prometheus,
//!   while namespaces come and go and a Docker-shaped container shares the host's namespaces.
//!   Every panel query, variables substituted as Grafana would, must return at least one series
//!   with a non-zero value, and every variable query must return values. A query that can never
//!   return data is a bug in the dashboard.
//!
//! The tools come from `scripts/install-test-deps`; a missing one fails the test naming it.
//! `NSX_RENDER_DASHBOARD=1` also renders `dashboards/nsexporter.png` from the live Prometheus
//! with `dashboards/render.py` (needs Debian's `python3-matplotlib`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::cgroup::Cgroup;
use crate::support::dashboard::{DASHBOARD, dashboard, label_values, panels, queries, substitute};
use crate::support::prometheus::{Prometheus, encode};
use crate::support::{Exporter, Netns, Spawned, manifest_dir, wait_for};
use serde_json::{Value, json};

const INSTALL_HINT: &str = "run `bash scripts/install-test-deps` (as root) to install it";

/// What Grafana puts in place of each variable, for a Prometheus scraping every second as
/// job `nsexporter` (`$__rate_interval` is four scrape intervals there). Longer names first, so
/// that `$__interval` does not eat the front of a `$__interval_ms`; any other `$` left over
/// fails the test.
const VARIABLES: &[(&str, &str)] = &[
    ("__rate_interval", "4s"),
    ("__interval_ms", "1000"),
    ("__interval", "1s"),
    ("__range_s", "60"),
    ("__range", "60s"),
    ("instance", ".+"),
    ("job", "nsexporter"),
];

/// Queries that rightly read 0 throughout this test, as (panel, refId, why). Every other query
/// must read non-zero at least once: that catches `or vector(0)` hiding a misspelt metric, and a
/// `rate()` of something that never moves.
const ZERO_IS_RIGHT: &[(&str, &str, &str)] = &[
    ("Exporters up / down", "B", "no target is down in this test"),
    (
        "Scan errors",
        "A",
        "no process fails anew here: the protected PID 1 was counted once and stands",
    ),
    (
        "Scan errors by reason",
        "A",
        "as Scan errors; its query B shows the protected PID 1 standing",
    ),
    (
        "Declared against observed: undeclared namespaces, and findings by declared",
        "A",
        "this test's container has no spec, so nothing is undeclared (tests/it/declared.rs)",
    ),
    (
        "Conntrack entries against nf_conntrack_max",
        "A",
        "nothing makes conntrack entries here (no rule asks for them); tests/it/holds.rs counts \
         them where a rule does",
    ),
];

/// How long the test makes namespaces come and go, and what the range queries look back over.
const CHURN: Duration = Duration::from_secs(20);
const RANGE_SECONDS: u64 = 60;

fn datasource_ref() -> Value {
    json!({"type": "prometheus", "uid": "${datasource}"})
}

#[test]
fn dashboard_is_importable_and_filters_every_query() {
    let d = dashboard();
    let mut problems = Vec::new();

    // Importable as-is: an export "for sharing externally" carries `__inputs` that the import
    // dialog must resolve; this dashboard takes its data source from a variable instead.
    if d.get("__inputs").is_some() {
        problems.push("has `__inputs`".to_string());
    }
    for key in ["uid", "title"] {
        if d[key].as_str().is_none_or(str::is_empty) {
            problems.push(format!("`{key}` is not set"));
        }
    }
    if !d["schemaVersion"].is_u64() {
        problems.push("`schemaVersion` is not set".to_string());
    }

    let variables = d["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let variable = |name: &str| variables.iter().find(|v| v["name"] == name);
    match variable("datasource") {
        Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
        v => problems.push(format!(
            "no variable `datasource` of type datasource, query prometheus: {v:?}"
        )),
    }
    for (name, query) in [
        ("job", "label_values(nsexporter_build_info, job)"),
        (
            "instance",
            "label_values(nsexporter_build_info{job=~\"$job\"}, instance)",
        ),
    ] {
        match variable(name) {
            Some(v)
                if v["type"] == "query"
                    && v["query"] == query
                    && v["multi"] == true
                    && v["includeAll"] == true
                    && v["datasource"] == datasource_ref() => {}
            v => problems.push(format!(
                "variable `{name}` should be a multi-value query `{query}` with All, on \
                 ${{datasource}}: {v:?}"
            )),
        }
    }

    let all = panels(&d);
    let mut ids = BTreeSet::new();
    for p in &all {
        let title = p["title"].as_str().unwrap_or("(untitled)");
        match p["id"].as_u64() {
            Some(id) if !ids.insert(id) => problems.push(format!("{title:?}: id {id} is taken")),
            Some(_) => {}
            None => problems.push(format!("{title:?}: no numeric id")),
        }
        if grid_rect(p).is_none() {
            problems.push(format!(
                "{title:?}: gridPos missing or off the 24-column grid: {}",
                p["gridPos"]
            ));
        }
        if p["type"] == "row" {
            continue;
        }
        if p["datasource"] != datasource_ref() {
            problems.push(format!(
                "{title:?}: panel datasource is {}",
                p["datasource"]
            ));
        }
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            problems.push(format!("{title:?}: no queries"));
        }
        let mut ref_ids = BTreeSet::new();
        for t in &targets {
            let ref_id = t["refId"].as_str().unwrap_or("");
            if ref_id.is_empty() || !ref_ids.insert(ref_id) {
                problems.push(format!("{title:?}: refId {ref_id:?} empty or repeated"));
            }
            if t["datasource"] != datasource_ref() {
                problems.push(format!(
                    "{title:?} {ref_id}: target datasource is {}",
                    t["datasource"]
                ));
            }
            let expr = t["expr"].as_str().unwrap_or("");
            for s in unfiltered_selectors(expr) {
                problems.push(format!(
                    "{title:?} {ref_id}: selector `{s}` lacks job=~\"$job\", instance=~\"$instance\""
                ));
            }
        }
    }

    // No two panels on top of each other: the top level, then each collapsed row's own panels
    // (they are laid out when the row opens, below it).
    let top: Vec<&Value> = d["panels"].as_array().into_iter().flatten().collect();
    let mut groups = vec![top.clone()];
    groups.extend(
        top.iter()
            .filter_map(|p| p["panels"].as_array())
            .map(|inner| inner.iter().collect()),
    );
    for group in groups {
        for (i, a) in group.iter().enumerate() {
            for b in &group[i + 1..] {
                if let (Some(ra), Some(rb)) = (grid_rect(a), grid_rect(b)) {
                    let apart = ra.0 + ra.2 <= rb.0
                        || rb.0 + rb.2 <= ra.0
                        || ra.1 + ra.3 <= rb.1
                        || rb.1 + rb.3 <= ra.1;
                    if !apart {
                        problems.push(format!(
                            "{} and {} overlap on the grid",
                            a["title"], b["title"]
                        ));
                    }
                }
            }
        }
    }

    assert!(
        problems.is_empty(),
        "{DASHBOARD}:\n  {}",
        problems.join("\n  ")
    );
    assert!(
        all.len() > 10 && queries(&d).len() > 10,
        "{DASHBOARD} has hardly any panels"
    );
}

/// `(x, y, w, h)` of a panel that sits on Grafana's 24-column grid.
fn grid_rect(p: &Value) -> Option<(u64, u64, u64, u64)> {
    let g = &p["gridPos"];
    let r = (
        g["x"].as_u64()?,
        g["y"].as_u64()?,
        g["w"].as_u64()?,
        g["h"].as_u64()?,
    );
    (r.2 > 0 && r.3 > 0 && r.0 + r.2 <= 24).then_some(r)
}

/// The selectors in `expr` of the metrics nsexporter exposes (and `up`) that are not filtered
/// by both dashboard variables. A light scan rather than a PromQL parser: the dashboard's
/// metric names all start `nsexporter_` or `process_`, or are `up`.
fn unfiltered_selectors(expr: &str) -> Vec<String> {
    let metric = regex::Regex::new(r"\b((?:nsexporter|process)_[a-z_]+|up)\b(\{[^}]*\})?").unwrap();
    metric
        .captures_iter(expr)
        .filter(|c| {
            let matchers = c.get(2).map_or("", |m| m.as_str());
            !(matchers.contains(r#"job=~"$job""#) && matchers.contains(r#"instance=~"$instance""#))
        })
        .map(|c| c[0].to_string())
        .collect()
}

#[test]
#[ignore = "needs node and tests/grafana-schema/node_modules (scripts/install-test-deps)"]
fn dashboard_matches_grafana_schema_types() {
    let dir = manifest_dir().join("tests/grafana-schema");
    let tsc = dir.join("node_modules/typescript/bin/tsc");
    for installed in [
        tsc.clone(),
        dir.join("node_modules/@grafana/schema/package.json"),
        dir.join("node_modules/grafana-schema-10/package.json"),
    ] {
        assert!(
            installed.is_file(),
            "{} is missing; {INSTALL_HINT}",
            installed.display()
        );
    }
    // The dashboard goes in as a TypeScript object literal of the schema's type, not as a JSON
    // module import: see tests/grafana-schema/schema.ts for why. One file per Grafana release;
    // the literal starts on line 1 (the import is hoisted from the end), so tsc's line numbers
    // are the JSON file's.
    let json = std::fs::read_to_string(manifest_dir().join(DASHBOARD)).unwrap();
    let schema = serde_json::to_string(&dir.join("schema.ts")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let releases = [
        ("grafana11.ts", "Dashboard11"),
        ("grafana10.ts", "Dashboard10"),
    ];
    for (file, ty) in releases {
        std::fs::write(
            tmp.path().join(file),
            format!(
                "export const dashboard: {ty} = {json};\nimport type {{ {ty} }} from {schema};\n"
            ),
        )
        .unwrap();
    }
    // tests/grafana-schema/tsconfig.json checks its self-test (the types still reject a bad
    // dashboard); this one extends it with the generated files.
    let config = json!({
        "extends": dir.join("tsconfig.json"),
        "files": [dir.join("selftest.ts"), "grafana11.ts", "grafana10.ts"],
    });
    std::fs::write(tmp.path().join("tsconfig.json"), config.to_string()).unwrap();

    let out = Command::new("node")
        .arg(&tsc)
        .arg("--noEmit")
        .arg("-p")
        .arg("tsconfig.json")
        .current_dir(tmp.path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `node {}`: {e}; {INSTALL_HINT}", tsc.display()));
    let mut report = String::from_utf8_lossy(&out.stdout).into_owned();
    for (file, release) in [
        ("grafana11.ts(", "[@grafana/schema 11.6]"),
        ("grafana10.ts(", "[@grafana/schema 10.4]"),
    ] {
        report = report.replace(file, &format!("{release} {DASHBOARD}("));
    }
    assert!(
        out.status.success(),
        "tsc: {DASHBOARD} does not match Grafana's dashboard types ({})\n{report}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A container id nobody else uses, 64 hex digits like Docker's: splitmix64 from the time and
/// this process.
fn fresh_container_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut state = nanos ^ (u64::from(std::process::id()) << 32);
    (0..4)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            format!("{:016x}", z ^ (z >> 31))
        })
        .collect()
}

/// Starts a process in new namespaces of every type, and its own user namespace every other
/// time, so that each type gets created and destroyed.
fn spawn_namespaces(i: usize) -> Spawned {
    let mut args = vec![
        "--fork",
        "--pid",
        "--mount-proc",
        "--net",
        "--uts",
        "--ipc",
        "--cgroup",
        "--time",
    ];
    if i % 2 == 1 {
        args.extend(["--user", "--map-root-user"]);
    }
    args.extend(["sleep", "1000"]);
    Spawned::new("unshare", &args)
}

/// The finite sample values of a range query answer.
fn values(answer: &Value) -> Vec<f64> {
    answer["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|series| series["values"].as_array().cloned().unwrap_or_default())
        .filter_map(|point| point[1].as_str()?.parse::<f64>().ok())
        .filter(|v| v.is_finite())
        .collect()
}

#[test]
#[ignore = "needs root (unshare, cgroups) and prometheus (scripts/install-test-deps)"]
fn every_query_returns_data_from_a_live_exporter() {
    let d = dashboard();
    let started = Instant::now();
    let exporter = Exporter::start(&["--scan.interval=500ms", "--namespace.orphan-age=1s"]);
    let prometheus = Prometheus::start(&[format!("127.0.0.1:{}", exporter.port)], "1s", &[]);
    // Everything below must happen after the first scrape: a counter that rose before it shows
    // no increase in Prometheus.
    wait_for(
        "Prometheus to scrape the exporter",
        Duration::from_secs(30),
        || (!prometheus.query(r#"up{job="nsexporter"} == 1"#).is_empty()).then_some(()),
    );

    // A network namespace pinned by a bind mount with no process: the table of namespaces
    // held without a process, and, after a second, an orphan.
    let _netns = Netns::add("dashboard");

    // A Docker-shaped container whose process keeps the host's net, pid, ipc and cgroup
    // namespaces (and user and time): host-namespace series and `host_namespace` findings.
    let container_id = fresh_container_id();
    let cgroup = Cgroup::create(&format!("/docker/{container_id}"));
    let mut container = Spawned::new("unshare", &["--mount", "--uts", "sleep", "1000"]);
    cgroup.add(container.running("sleep"));

    // Namespaces that live 1.5 to 12 s, a new set every 600 ms: created and destroyed rates,
    // and lifetimes in more than one histogram bucket.
    let lifetimes = [1500, 3000, 6000, 12000].map(Duration::from_millis);
    let mut alive: Vec<(Instant, Spawned)> = Vec::new();
    let churn_end = Instant::now() + CHURN;
    let mut made = 0;
    while Instant::now() < churn_end {
        alive.push((
            Instant::now() + lifetimes[made % lifetimes.len()],
            spawn_namespaces(made),
        ));
        made += 1;
        std::thread::sleep(Duration::from_millis(600));
        let now = Instant::now();
        let (due, living) = std::mem::take(&mut alive)
            .into_iter()
            .partition(|(until, _)| *until <= now);
        alive = living;
        for (_, mut s) in due {
            s.kill();
        }
    }
    for (_, mut s) in alive.drain(..) {
        s.kill();
    }
    // The last deaths reach a scan (500 ms), then a scrape (1 s).
    std::thread::sleep(Duration::from_secs(3));

    let mut failures = Vec::new();
    let mut summary = Vec::new();
    for q in queries(&d) {
        let expr = substitute(&q.expr, VARIABLES);
        let what = format!("panel {:?} query {}: {}", q.panel, q.ref_id, q.expr);
        if expr.contains('$') {
            failures.push(format!("{what}\n    unknown variable left in `{expr}`"));
            continue;
        }
        let answer = prometheus.query_range(&expr, RANGE_SECONDS, 1);
        if answer["status"] != "success" {
            failures.push(format!("{what}\n    Prometheus: {answer}"));
            continue;
        }
        let series = answer["data"]["result"].as_array().map_or(0, Vec::len);
        let values = values(&answer);
        let max = values.iter().copied().fold(f64::NAN, f64::max);
        summary.push(format!(
            "{series:>4} series, max {max:>12.4}  {} {}",
            q.panel, q.ref_id
        ));
        if series == 0 {
            failures.push(format!("{what}\n    no series"));
        } else if !values.iter().any(|v| *v != 0.0)
            && !ZERO_IS_RIGHT
                .iter()
                .any(|(panel, ref_id, _)| q.panel == *panel && q.ref_id == *ref_id)
        {
            failures.push(format!(
                "{what}\n    {series} series, but every value is 0 or NaN"
            ));
        }
        // The sharing panels must show the container this test made, not just any.
        let sharing = expr.contains("nsexporter_sharing_findings_active{")
            || expr.contains("nsexporter_workload_host_namespace{");
        let labelled: Vec<&str> = answer["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["metric"]["container_id"].as_str())
            .collect();
        if sharing && !labelled.is_empty() && !labelled.contains(&container_id.as_str()) {
            failures.push(format!(
                "{what}\n    container {container_id} missing from {labelled:?}"
            ));
        }
    }

    for v in d["templating"]["list"].as_array().into_iter().flatten() {
        if v["type"] != "query" {
            continue;
        }
        let query = substitute(v["query"].as_str().unwrap_or(""), VARIABLES);
        let Some((selector, label)) = label_values(&query) else {
            failures.push(format!(
                "variable {}: `{query}` is not label_values(selector, label)",
                v["name"]
            ));
            continue;
        };
        let answer = prometheus.api(&format!(
            "/api/v1/label/{label}/values?match[]={}",
            encode(&selector)
        ));
        let found = answer["data"].as_array().map_or(0, Vec::len);
        if answer["status"] != "success" || found == 0 {
            failures.push(format!("variable {}: `{query}` gives {answer}", v["name"]));
        }
    }

    if std::env::var_os("NSX_RENDER_DASHBOARD").is_some_and(|v| v == "1") {
        render(&prometheus);
    }
    container.kill();
    drop(cgroup);
    eprintln!(
        "{} queries over {RANGE_SECONDS} s after {made} namespace sets made and killed \
         ({:.1} s in all):\n  {}",
        summary.len(),
        started.elapsed().as_secs_f64(),
        summary.join("\n  ")
    );
    assert!(
        failures.is_empty(),
        "{DASHBOARD}: {} of the dashboard's queries fail against a live exporter:\n  {}\n\
         exporter log (end):\n{}",
        failures.len(),
        failures.join("\n  "),
        last_lines(&exporter.stderr(), 20)
    );
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Draws every panel of the dashboard from `prometheus` into `dashboards/nsexporter.png`.
fn render(prometheus: &Prometheus) {
    let script: PathBuf = manifest_dir().join("dashboards/render.py");
    let out_png: &Path = &manifest_dir().join("dashboards/nsexporter.png");
    let out = Command::new("/usr/bin/python3")
        .arg(&script)
        .arg(format!("--prometheus=http://127.0.0.1:{}", prometheus.port))
        .arg(format!("--range={RANGE_SECONDS}"))
        .arg(format!("--out={}", out_png.display()))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The command that redraws `dashboards/nsexporter.png`, as the stale-picture test says it.
const REDRAW: &str = "sudo scripts/dashboard-scenario";
/// The PNG tEXt keyword under which `render.py` writes the SHA-256 of the JSON it drew.
const PICTURE_KEY: &str = "nsexporter-dashboard-sha256";

/// The text chunks of a PNG (tEXt, zTXt and iTXt, wherever they are in the file) as
/// (keyword, text).
fn png_text_chunks(png: &[u8]) -> Result<Vec<(String, String)>, png::DecodingError> {
    let mut reader = png::Decoder::new(std::io::Cursor::new(png)).read_info()?;
    // Chunks after the image data are in the info only once the reader has gone to IEND.
    reader.finish()?;
    let info = reader.info();
    let mut texts: Vec<(String, String)> = info
        .uncompressed_latin1_text
        .iter()
        .map(|t| (t.keyword.clone(), t.text.clone()))
        .collect();
    for t in &info.compressed_latin1_text {
        texts.push((t.keyword.clone(), t.get_text()?));
    }
    for t in &info.utf8_text {
        texts.push((t.keyword.clone(), t.get_text()?));
    }
    Ok(texts)
}

/// Fails when `dashboards/nsexporter.json` changed and the picture was not redrawn from it:
/// `render.py` writes the SHA-256 of the JSON it drew into the PNG. Needs no Prometheus.
#[test]
fn picture_is_drawn_from_this_dashboard() {
    use sha2::{Digest, Sha256};

    let json = std::fs::read(manifest_dir().join(DASHBOARD)).expect("reading the dashboard");
    let now: String = Sha256::digest(&json)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let picture = "dashboards/nsexporter.png";
    let png = std::fs::read(manifest_dir().join(picture))
        .unwrap_or_else(|e| panic!("reading {picture}: {e}; draw it with `{REDRAW}`"));
    let texts = png_text_chunks(&png).unwrap_or_else(|e| panic!("{picture}: {e}"));
    let drawn = texts
        .iter()
        .find(|(k, _)| k == PICTURE_KEY)
        .map(|(_, v)| v.as_str());
    assert_eq!(
        drawn,
        Some(now.as_str()),
        "{picture} was not drawn from this {DASHBOARD} (tEXt {PICTURE_KEY} is {drawn:?}, the \
         JSON's SHA-256 is {now}): redraw it with `{REDRAW}` and commit both"
    );
}

/// Every panel type of the dashboard is one `render.py` can draw: a new type fails here,
/// not in the scenario run that redraws the picture.
#[test]
fn render_py_draws_every_panel_type_of_the_dashboard() {
    let script = manifest_dir().join("dashboards/render.py");
    let out = Command::new("/usr/bin/python3")
        .arg(&script)
        .arg("--list-types")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(out.status.success(), "render.py --list-types: {out:?}");
    let drawable: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let d = dashboard();
    let used: BTreeSet<String> = panels(&d)
        .iter()
        .filter_map(|p| p["type"].as_str().map(str::to_string))
        .collect();
    let missing: Vec<&String> = used.difference(&drawable).collect();
    assert!(
        missing.is_empty(),
        "{DASHBOARD} uses panel types {missing:?} that dashboards/render.py cannot draw (it \
         draws {drawable:?}): add them to its DRAW table, then redraw with `{REDRAW}`"
    );
}

/// `render.py` refuses, before any query, a dashboard with a panel type it cannot draw: exit 2
/// and the type named.
#[test]
fn render_py_fails_naming_a_panel_type_it_cannot_draw() {
    let mut d = dashboard();
    d["panels"].as_array_mut().unwrap().push(json!({
        "id": 999, "type": "piechart", "title": "new",
        "gridPos": {"x": 0, "y": 200, "w": 6, "h": 6}, "targets": []
    }));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.json");
    std::fs::write(&path, d.to_string()).unwrap();
    let out = Command::new("/usr/bin/python3")
        .arg(manifest_dir().join("dashboards/render.py"))
        .arg(format!("--dashboard={}", path.display()))
        .arg(format!("--out={}", dir.path().join("d.png").display()))
        // Nothing listens here: the refusal must come before any query.
        .arg("--prometheus=http://127.0.0.1:9")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "render.py: {stderr}");
    assert!(stderr.contains("piechart"), "render.py: {stderr}");
    assert!(!dir.path().join("d.png").exists());
}
