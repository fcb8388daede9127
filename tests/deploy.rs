//! Checks of the deployment files under `deploy/` and the repository's `.yamllint`: lint, schema
//! validation against Kubernetes and the Prometheus Operator, rendering, generated-file drift,
//! and the Prometheus, systemd and AppArmor tools' own checks.
//!
//! Every tool comes from `scripts/install-test-deps`. A missing tool fails the test with a
//! message naming that script: a check that quietly skips is a check that does not exist.
//! Tools are looked for in `$NSEXPORTER_TEST_DEPS/venv/bin` (default
//! `/opt/nsexporter-test-deps`, where the script puts its pinned ones) before `PATH`.

use std::env;
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const INSTALL_HINT: &str = "run `bash scripts/install-test-deps` (as root) to install it";

/// Kubernetes versions the core objects are validated against: the oldest the DaemonSet
/// supports (`securityContext.appArmorProfile` is GA in 1.30) and the newest that
/// kubernetes-validate ships schemas for.
const KUBERNETES_VERSIONS: &[&str] = &["1.30.0", "1.37.0"];

/// The objects `deploy/kubernetes` renders to, as `kind/name` in kubernetes-validate's spelling.
const CORE_OBJECTS: &[&str] = &[
    "namespace/nsexporter",
    "serviceaccount/nsexporter",
    "configmap/nsexporter-config",
    "service/nsexporter",
    "daemonset/nsexporter",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deps_dir() -> PathBuf {
    env::var_os("NSEXPORTER_TEST_DEPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/nsexporter-test-deps"))
}

/// Finds `name` in the pinned venv, then on `PATH`, then in the sbin folders that a non-login
/// root shell may lack; panics with the install hint if it is nowhere.
fn tool(name: &str) -> PathBuf {
    let mut dirs = vec![deps_dir().join("venv/bin")];
    if let Some(path) = env::var_os("PATH") {
        dirs.extend(env::split_paths(&path));
    }
    dirs.extend(["/usr/sbin", "/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("`{name}` not found; {INSTALL_HINT}"))
}

fn show(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd` with `stdin` as its input and returns its output, whatever its status.
fn run(cmd: &mut Command, stdin: Option<&[u8]>) -> Output {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{program}`: {e}; {INSTALL_HINT}"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(input)
            .expect("write stdin");
    }
    child.wait_with_output().expect("wait for child")
}

/// Runs `cmd` and panics, showing its output, unless it succeeds.
fn run_ok(what: &str, cmd: &mut Command) -> Output {
    let out = run(cmd, None);
    assert!(out.status.success(), "{what} failed\n{}", show(&out));
    out
}

/// `kubectl kustomize DIR`: the objects `kubectl apply -k DIR` would send.
fn kustomize(dir: &Path) -> String {
    let out = run_ok(
        &format!("kubectl kustomize {}", dir.display()),
        Command::new(tool("kubectl")).arg("kustomize").arg(dir),
    );
    String::from_utf8(out.stdout).expect("kustomize output is UTF-8")
}

/// The base, and the base with the AppArmor component, each rendered to a file in `tmp`.
fn rendered_variants(tmp: &Path) -> Vec<(&'static str, PathBuf)> {
    let base = repo().join("deploy/kubernetes");
    let overlay = tmp.join("apparmor-overlay");
    fs::create_dir(&overlay).expect("overlay dir");
    // kustomize takes only relative paths to other kustomizations.
    let to_base = relative_to_root(&overlay).join(
        base.canonicalize()
            .expect("canonical base")
            .strip_prefix("/")
            .unwrap(),
    );
    fs::write(
        overlay.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
             resources: [{}]\ncomponents: [{}]\n",
            to_base.display(),
            to_base.join("apparmor").display()
        ),
    )
    .expect("write overlay");
    [("base", base), ("apparmor component", overlay)]
        .into_iter()
        .map(|(name, dir)| {
            let file = tmp.join(format!("{}.yaml", name.replace(' ', "-")));
            fs::write(&file, kustomize(&dir)).expect("write rendered");
            (name, file)
        })
        .collect()
}

/// The path from `dir` up to `/`: one `..` per component of its canonical path.
fn relative_to_root(dir: &Path) -> PathBuf {
    let depth = dir
        .canonicalize()
        .expect("canonical dir")
        .components()
        .count()
        - 1;
    (0..depth).map(|_| "..").collect()
}

#[test]
fn yamllint_passes_on_deploy_files() {
    let root = repo();
    run_ok(
        "yamllint -s deploy/ .yamllint",
        Command::new(tool("yamllint")).current_dir(&root).args([
            "-s",
            "-c",
            ".yamllint",
            "deploy",
            ".yamllint",
        ]),
    );
}

#[test]
fn kustomize_renders_the_daemonset() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (variant, file) in rendered_variants(tmp.path()) {
        let yaml = fs::read_to_string(&file).expect("read rendered");
        for needle in [
            "kind: DaemonSet",
            "kind: Service\n",
            "kind: ServiceMonitor",
            "kind: PrometheusRule",
            "--path.procfs=/host/proc",
            "image: ghcr.io/nsexporter/nsexporter:",
        ] {
            assert!(yaml.contains(needle), "{variant}: no `{needle}` in\n{yaml}");
        }
        // The namespace set by the kustomization reaches every namespaced object.
        let namespaced = yaml.matches("\n  namespace: nsexporter\n").count();
        assert_eq!(
            namespaced, 6,
            "{variant}: objects in namespace nsexporter\n{yaml}"
        );
    }
    let with_profile = fs::read_to_string(tmp.path().join("apparmor-component.yaml")).unwrap();
    assert!(
        with_profile.contains("localhostProfile: nsexporter")
            && !with_profile.contains("Unconfined"),
        "the apparmor component did not replace the AppArmor profile\n{with_profile}"
    );
}

#[test]
fn core_objects_validate_strictly_against_kubernetes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let validate = tool("kubernetes-validate");
    for (variant, file) in rendered_variants(tmp.path()) {
        for version in KUBERNETES_VERSIONS {
            let out = run(
                Command::new(&validate)
                    .args(["--strict", "--kubernetes-version", version])
                    .arg(&file),
                None,
            );
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let ctx = format!("{variant}, Kubernetes {version}\n{}", show(&out));
            assert!(out.status.success(), "kubernetes-validate failed: {ctx}");
            assert!(!text.contains("did not validate"), "{ctx}");
            // A kind without a schema is only warned about: make sure each object was checked,
            // and that only the Operator's kinds went without (tested below instead).
            for object in CORE_OBJECTS {
                assert!(
                    text.contains(&format!("passed for resource {object} ")),
                    "{object} was not validated: {ctx}"
                );
            }
            for line in text.lines().filter(|l| l.contains("Couldn't find schema")) {
                assert!(
                    line.contains("monitoring.coreos.com/v1"),
                    "object without a schema: {line}\n{ctx}"
                );
            }
        }
    }
}

/// Validates ServiceMonitor and PrometheusRule objects with the validators that
/// `@kubernetes-models/prometheus-operator` generates from the Operator's Go API types (types,
/// enums, required fields, patterns). Those let unknown fields through, as the API server's
/// pruning does silently, so the data goes in behind a Proxy that records every field the
/// validator reads: a field it never read is one the schema does not have, like a
/// `honorlabels` typo. Maps (labels, annotations) are iterated by the validator, so their
/// keys count as read. Input: a JSON array of objects on stdin.
const OPERATOR_VALIDATOR: &str = r#"
const [schemas] = process.argv.slice(1); // `node -e SCRIPT ARG`: ARG is argv[1]
const input = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
const prefix = "ComGithubPrometheusOperatorPrometheusOperatorPkgApisMonitoringV1";
function track(value, path, seen) {
  if (value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) return value.map((v, i) => track(v, `${path}[${i}]`, seen));
  const copy = {};
  for (const [k, v] of Object.entries(value)) {
    seen.set(`${path}.${k}`, false);
    copy[k] = track(v, `${path}.${k}`, seen);
  }
  return new Proxy(copy, {
    get(target, key, receiver) {
      if (typeof key === "string") seen.set(`${path}.${key}`, true);
      return Reflect.get(target, key, receiver);
    },
  });
}
(async () => {
  let failed = false;
  for (const obj of input) {
    if (obj.apiVersion !== "monitoring.coreos.com/v1") continue;
    const id = `${obj.kind}/${obj.metadata && obj.metadata.name}`;
    const { validate } = await import(`${schemas}/${prefix}${obj.kind}.js`);
    const seen = new Map();
    const valid = validate(track(obj, "", seen));
    const unknown = [...seen].filter(([, read]) => !read).map(([k]) => k);
    for (const e of validate.errors || []) console.log(`INVALID ${id}: ${e.instancePath} ${e.message || e.keyword} ${JSON.stringify(e.params)}`);
    for (const k of unknown) console.log(`INVALID ${id}: unknown field ${k}`);
    if (valid && unknown.length === 0) console.log(`VALID ${id}`);
    else failed = true;
  }
  process.exit(failed ? 1 : 0);
})().catch((e) => { console.error(e); process.exit(2); });
"#;

#[test]
fn operator_objects_validate_against_prometheus_operator_types() {
    let schemas =
        deps_dir().join("node/node_modules/@kubernetes-models/prometheus-operator/_schemas");
    assert!(
        schemas.is_dir(),
        "{} is missing; {INSTALL_HINT}",
        schemas.display()
    );
    let yaml = kustomize(&repo().join("deploy/kubernetes"));
    // YAML to JSON with the venv's PyYAML (a kubernetes-validate dependency), so that the
    // node side needs no YAML parser.
    let json = run(
        Command::new(tool("python")).args([
            "-c",
            "import json, sys, yaml\n\
             json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)",
        ]),
        Some(yaml.as_bytes()),
    );
    assert!(
        json.status.success(),
        "YAML to JSON failed\n{}",
        show(&json)
    );
    let out = run(
        Command::new(tool("node")).args([
            OsStr::new("-e"),
            OsStr::new(OPERATOR_VALIDATOR),
            schemas.as_os_str(),
        ]),
        Some(&json.stdout),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "Prometheus Operator validation failed\n{}",
        show(&out)
    );
    for object in [
        "VALID ServiceMonitor/nsexporter",
        "VALID PrometheusRule/nsexporter",
    ] {
        assert!(
            text.lines().any(|l| l == object),
            "no `{object}`\n{}",
            show(&out)
        );
    }
}

#[test]
fn prometheusrule_is_generated_from_alerts_yaml() {
    let root = repo();
    let out = run_ok(
        "deploy/kubernetes/generate-prometheusrule --stdout",
        Command::new("sh")
            .current_dir(&root)
            .args(["deploy/kubernetes/generate-prometheusrule", "--stdout"]),
    );
    let checked_in = fs::read_to_string(root.join("deploy/kubernetes/prometheusrule.yaml"))
        .expect("read prometheusrule.yaml");
    let generated = String::from_utf8(out.stdout).expect("UTF-8");
    if checked_in != generated {
        let line = checked_in
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| checked_in.lines().count().min(generated.lines().count()));
        panic!(
            "deploy/kubernetes/prometheusrule.yaml is out of date with deploy/prometheus/alerts.yaml \
             (first difference at line {}); run deploy/kubernetes/generate-prometheusrule",
            line + 1
        );
    }
}

#[test]
fn prometheus_scrape_example_passes_promtool() {
    let dir = repo().join("deploy/prometheus");
    let promtool = tool("promtool");
    let out = run(
        Command::new(&promtool)
            .current_dir(&dir)
            .args(["check", "config", "prometheus.yml"]),
        None,
    );
    if out.status.success() {
        return;
    }
    // Debian builds Prometheus without Kubernetes service discovery (its client libraries are
    // not packaged), so its promtool rejects `kubernetes_sd_configs` and nothing else can be
    // fetched here. Only then: check everything else, with each kubernetes_sd_configs block
    // replaced by a static target, the relabelling and the rule file included. The block
    // itself follows the upstream documentation's format; a full promtool checks it too.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("field kubernetes_sd_configs not found"),
        "promtool check config prometheus.yml failed\n{}",
        show(&out)
    );
    let config = fs::read_to_string(dir.join("prometheus.yml")).expect("read prometheus.yml");
    let tmp = tempfile::tempdir().expect("tempdir");
    fs::write(
        tmp.path().join("prometheus.yml"),
        without_kubernetes_sd(&config),
    )
    .unwrap();
    fs::copy(dir.join("alerts.yaml"), tmp.path().join("alerts.yaml")).expect("copy alerts.yaml");
    run_ok(
        "promtool check config (kubernetes_sd_configs replaced by static_configs)",
        Command::new(&promtool)
            .current_dir(tmp.path())
            .args(["check", "config", "prometheus.yml"]),
    );
}

/// Replaces each `kubernetes_sd_configs:` block (the key and the lines indented deeper than
/// it) with a `static_configs` block of one target at the same indent.
fn without_kubernetes_sd(config: &str) -> String {
    let indent = |l: &str| l.len() - l.trim_start().len();
    let mut out = String::new();
    let mut block: Option<usize> = None;
    let mut replaced = 0;
    for line in config.lines() {
        if let Some(i) = block {
            if line.trim().is_empty() || indent(line) > i {
                continue;
            }
            block = None;
        }
        if line.trim_start().starts_with("kubernetes_sd_configs:") {
            let i = indent(line);
            let pad = " ".repeat(i);
            out.push_str(&format!(
                "{pad}static_configs:\n{pad}  - targets: [\"nsexporter.invalid:9917\"]\n"
            ));
            block = Some(i);
            replaced += 1;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    assert!(
        replaced > 0,
        "prometheus.yml has no kubernetes_sd_configs to replace"
    );
    out
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let unit = fs::read_to_string(repo().join("deploy/systemd/nsexporter.service"))
        .expect("read nsexporter.service");
    // verify wants ExecStart to exist: point it at the binary this test run built.
    let exec = "ExecStart=/usr/local/bin/nsexporter ";
    assert!(unit.contains(exec), "unit has no `{exec}`");
    let unit = unit.replace(
        exec,
        &format!("ExecStart={} ", env!("CARGO_BIN_EXE_nsexporter")),
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("nsexporter.service");
    fs::write(&path, unit).expect("write unit");
    let out = run(
        Command::new(tool("systemd-analyze"))
            .arg("verify")
            .arg(&path),
        None,
    );
    // verify exits 0 on an unknown key or a bad value and only logs it: any message about
    // the unit is a failure.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let about_unit: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("nsexporter"))
        .collect();
    assert!(
        out.status.success() && about_unit.is_empty(),
        "systemd-analyze verify nsexporter.service\n{}",
        show(&out)
    );
}

#[test]
fn apparmor_profile_parses() {
    let profile = repo().join("deploy/kubernetes/apparmor/nsexporter");
    let out = run_ok(
        "apparmor_parser --skip-kernel-load deploy/kubernetes/apparmor/nsexporter",
        Command::new(tool("apparmor_parser"))
            .args(["--skip-kernel-load", "--skip-cache"])
            .arg(&profile),
    );
    // The name the DaemonSet's Localhost profile refers to.
    let names = run_ok(
        "apparmor_parser --names",
        Command::new(tool("apparmor_parser"))
            .arg("--names")
            .arg(&profile),
    );
    assert_eq!(
        String::from_utf8_lossy(&names.stdout).trim(),
        "nsexporter",
        "{}",
        show(&out)
    );
}
