//! A real Prometheus (Debian's `prometheus` package) on a free loopback port, scraping given
//! targets with short intervals; killed and its data directory removed on drop.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, http, manifest_dir, wait_for};

pub struct Prometheus {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (host:port) as job `nsexporter` every
    /// `scrape_interval`, evaluating `rule_files` (copied into its directory) as often.
    pub fn start(targets: &[String], scrape_interval: &str, rule_files: &[&Path]) -> Prometheus {
        Prometheus::start_with_scrape_config(targets, scrape_interval, rule_files, "")
    }

    /// As [`Prometheus::start`], with `job_yaml` (keys of the scrape job, e.g. `scheme`,
    /// `tls_config`, `basic_auth`, each line indented by 4 spaces) added to the job.
    pub fn start_with_scrape_config(
        targets: &[String],
        scrape_interval: &str,
        rule_files: &[&Path],
        job_yaml: &str,
    ) -> Prometheus {
        let mut files = Vec::new();
        let mut rules = Vec::new();
        for (i, f) in rule_files.iter().enumerate() {
            let name = format!("rules{i}.yaml");
            let text = std::fs::read_to_string(f)
                .unwrap_or_else(|e| panic!("reading {}: {e}", f.display()));
            rules.push(format!("  - {name}\n"));
            files.push((name, text));
        }
        let config = format!(
            "global:\n  scrape_interval: {scrape_interval}\n  evaluation_interval: {scrape_interval}\n\
rule_files:\n{}\
scrape_configs:\n  - job_name: nsexporter\n{job_yaml}    static_configs:\n      - targets: [{}]\n",
            if rules.is_empty() {
                "  []\n".to_string()
            } else {
                rules.concat()
            },
            targets
                .iter()
                .map(|t| format!("'{t}'"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Prometheus::start_with_files(&config, &files, &[])
    }

    /// Starts Prometheus with `config` (YAML or JSON text) beside `files` (name, content) in
    /// its directory, where relative paths in the config (`rule_files`) are resolved, and with
    /// `args` added to its command line.
    pub fn start_with_files(config: &str, files: &[(String, String)], args: &[&str]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus (Debian package prometheus; scripts/install-test-deps)");
        let mut p = Prometheus { child, port, dir };
        wait_for("Prometheus to be ready", Duration::from_secs(30), || {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("prometheus exited ({status}):\n{}", p.log());
            }
            http(port, "GET", "/-/ready", &[])
                .ok()
                .filter(|r| r.status == 200)
                .map(|_| ())
        });
        p
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// GET an API path (already URL-encoded) and parse the JSON answer.
    pub fn api(&self, path_and_query: &str) -> serde_json::Value {
        let r = http(self.port, "GET", path_and_query, &[]).expect("Prometheus API");
        serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("{path_and_query}: {e}: {}", r.text()))
    }

    /// An instant query; returns the `data.result` array, panicking on an error answer.
    pub fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let v = self.api(&format!("/api/v1/query?query={}", encode(promql)));
        assert_eq!(v["status"], "success", "{promql}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// An instant query at Unix time `time`; the `data.result` array.
    pub fn query_at(&self, promql: &str, time: f64) -> Vec<serde_json::Value> {
        let v = self.api(&format!(
            "/api/v1/query?query={}&time={time:.3}",
            encode(promql)
        ));
        assert_eq!(v["status"], "success", "{promql}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// A range query over the last `seconds`, step `step` seconds.
    pub fn query_range(&self, promql: &str, seconds: u64, step: u64) -> serde_json::Value {
        let end = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        self.api(&format!(
            "/api/v1/query_range?query={}&start={}&end={end}&step={step}",
            encode(promql),
            end - seconds
        ))
    }

    /// The alerts Prometheus currently has, as (name, state, labels).
    pub fn alerts(&self) -> Vec<(String, String, serde_json::Value)> {
        let v = self.api("/api/v1/alerts");
        v["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|a| {
                (
                    a["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                    a["state"].as_str().unwrap_or("").to_string(),
                    a["labels"].clone(),
                )
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a query parameter.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The shipped alert rules (`deploy/prometheus/alerts.yaml`) with `alert`'s `for:` cut to
/// `0s`: a real Prometheus then checks the expression against real figures at once, and the
/// promtool tests check the `for`.
pub fn rules_without_for(alert: &str) -> String {
    let text = std::fs::read_to_string(manifest_dir().join("deploy/prometheus/alerts.yaml"))
        .expect("alerts.yaml");
    let mut out = String::new();
    let mut inside = false;
    let mut cut = 0;
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(name) = t.strip_prefix("- alert:") {
            inside = name.trim() == alert;
        }
        if inside && t.starts_with("for:") {
            out.push_str(&format!("{}for: 0s\n", &line[..line.len() - t.len()]));
            cut += 1;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert_eq!(cut, 1, "alerts.yaml: {alert} has no `for:` to cut");
    out
}
