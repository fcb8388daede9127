//! Checks of the deployment files under `deploy/` and the repository's `.yamllint`: lint, schema
//! validation against Kubernetes, the Prometheus Operator and OpenShift, rendering, generated-file
//! drift, the Prometheus, systemd and AppArmor tools' own checks, and that what managed clusters
//! need (the priority-class quota, the OpenShift SCC, runbook links) agrees with the DaemonSet.
//!
//! Every tool comes from `scripts/install-test-deps`. A missing tool fails the test with a
//! message naming that script: a check that quietly skips is a check that does not exist.
//! Tools are looked for in `$NSEXPORTER_TEST_DEPS/venv/bin` (default
//! `/opt/nsexporter-test-deps`, where the script puts its pinned ones) before `PATH`.

use std::collections::BTreeSet;
use std::env;
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

const INSTALL_HINT: &str = "run `bash scripts/install-test-deps` (as root) to install it";

/// Kubernetes versions the core objects are validated against: the oldest the DaemonSet
/// supports (`securityContext.appArmorProfile` is GA in 1.30) and the newest that
/// kubernetes-validate ships schemas for.
const KUBERNETES_VERSIONS: &[&str] = &["1.30.0", "1.37.0"];

/// The objects `deploy/kubernetes` renders to, as `kind/name` in kubernetes-validate's spelling.
const CORE_OBJECTS: &[&str] = &[
    "namespace/nsexporter",
    "resourcequota/nsexporter-critical-pods",
    "serviceaccount/nsexporter",
    "configmap/nsexporter-config",
    "service/nsexporter",
    "daemonset/nsexporter",
    "networkpolicy/nsexporter",
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

/// The base, and the base with each opt-in component, each rendered to a file in `tmp`.
fn rendered_variants(tmp: &Path) -> Vec<(&'static str, PathBuf)> {
    let runbook_base = [("runbook-base.yaml", TEAM_RUNBOOK_BASE)];
    [
        ("base", repo().join("deploy/kubernetes")),
        (
            "apparmor component",
            overlay(tmp, "apparmor-overlay", &["apparmor"], &[]),
        ),
        (
            "openshift component",
            overlay(tmp, "openshift-overlay", &["openshift"], &[]),
        ),
        (
            "runbooks component",
            overlay(tmp, "runbooks-overlay", &["runbooks"], &runbook_base),
        ),
        (
            "proc-events component",
            overlay(tmp, "proc-events-overlay", &["proc-events"], &[]),
        ),
        ("tls component", overlay(tmp, "tls-overlay", &["tls"], &[])),
        (
            "ebpf component",
            overlay(tmp, "ebpf-overlay", &["ebpf"], &[]),
        ),
        (
            "docker-podman-names component",
            overlay(tmp, "names-overlay", &["docker-podman-names"], &[]),
        ),
        (
            "runtime-specs component",
            overlay(tmp, "specs-overlay", &["runtime-specs"], &[]),
        ),
    ]
    .into_iter()
    .map(|(name, dir)| {
        let file = tmp.join(format!("{}.yaml", name.replace(' ', "-")));
        fs::write(&file, kustomize(&dir)).expect("write rendered");
        (name, file)
    })
    .collect()
}

/// A team's overlay in `tmp/name`: the base and `files` (written beside its kustomization.yaml)
/// as resources, and the `components` (folders of deploy/kubernetes).
fn overlay(tmp: &Path, name: &str, components: &[&str], files: &[(&str, &str)]) -> PathBuf {
    let dir = tmp.join(name);
    fs::create_dir(&dir).expect("overlay dir");
    // kustomize takes only relative paths to other kustomizations.
    let to_base = relative_to_root(&dir).join(
        repo()
            .join("deploy/kubernetes")
            .canonicalize()
            .expect("canonical base")
            .strip_prefix("/")
            .unwrap(),
    );
    let mut resources = vec![to_base.display().to_string()];
    for (file, text) in files {
        fs::write(dir.join(file), text).expect("write overlay file");
        resources.push(file.to_string());
    }
    let components: Vec<String> = components
        .iter()
        .map(|c| to_base.join(c).display().to_string())
        .collect();
    fs::write(
        dir.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
             resources: [{}]\ncomponents: [{}]\n",
            resources.join(", "),
            components.join(", ")
        ),
    )
    .expect("write overlay");
    dir
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
#[ignore = "needs yamllint (scripts/install-test-deps)"]
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
#[ignore = "needs kubectl (scripts/install-test-deps)"]
fn kustomize_renders_the_daemonset() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (variant, file) in rendered_variants(tmp.path()) {
        let yaml = fs::read_to_string(&file).expect("read rendered");
        for needle in [
            "kind: DaemonSet",
            "kind: Service\n",
            "kind: NetworkPolicy",
            "kind: ServiceMonitor",
            "kind: PrometheusRule",
            "--path.procfs=/host/proc",
            "image: ghcr.io/nsexporter/nsexporter:",
        ] {
            assert!(yaml.contains(needle), "{variant}: no `{needle}` in\n{yaml}");
        }
        // The namespace set by the kustomization reaches every namespaced object (the
        // openshift component adds a RoleBinding, whose subject names the namespace too).
        let namespaced = yaml.matches("\n  namespace: nsexporter\n").count();
        assert_eq!(
            namespaced,
            8 + 2 * usize::from(variant == "openshift component"),
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
#[ignore = "needs kubectl and kubernetes-validate (scripts/install-test-deps)"]
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
            // The openshift component's SCC is checked against OpenShift's own schema below.
            for line in text.lines().filter(|l| l.contains("Couldn't find schema")) {
                assert!(
                    line.contains("monitoring.coreos.com/v1")
                        || line.contains("api version security.openshift.io/v1"),
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
#[ignore = "needs kubectl, the venv's python and node with @kubernetes-models/prometheus-operator (scripts/install-test-deps)"]
fn operator_objects_validate_against_prometheus_operator_types() {
    let schemas =
        deps_dir().join("node/node_modules/@kubernetes-models/prometheus-operator/_schemas");
    assert!(
        schemas.is_dir(),
        "{} is missing; {INSTALL_HINT}",
        schemas.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let tls = overlay(tmp.path(), "tls-overlay", &["tls"], &[]);
    for dir in [repo().join("deploy/kubernetes"), tls] {
        let yaml = kustomize(&dir);
        let out = validate_operator_objects(&schemas, &yaml);
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
}

/// Runs the Prometheus Operator's validators (generated from its Go API types) on the objects
/// of `yaml`: one `VALID Kind/name` line per valid object.
fn validate_operator_objects(schemas: &Path, yaml: &str) -> Output {
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
    run(
        Command::new(tool("node")).args([
            OsStr::new("-e"),
            OsStr::new(OPERATOR_VALIDATOR),
            schemas.as_os_str(),
        ]),
        Some(&json.stdout),
    )
}

#[test]
fn prometheusrule_is_generated_from_alerts_yaml() {
    let root = repo();
    let out = run_ok(
        "deploy/kubernetes/generate-prometheusrule --stdout",
        Command::new("sh")
            .current_dir(&root)
            .env_remove("NSEXPORTER_RUNBOOK_BASE")
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
#[ignore = "needs promtool (scripts/install-test-deps)"]
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

/// The example Alertmanager config passes Alertmanager's own check, and every alert it names
/// is one that `alerts.yaml` defines (tests/it/alerting.rs runs it in a real Alertmanager).
#[test]
#[ignore = "needs amtool (prometheus-alertmanager; scripts/install-test-deps)"]
fn alertmanager_example_passes_amtool_and_names_shipped_alerts() {
    let root = repo();
    run_ok(
        "amtool check-config deploy/prometheus/alertmanager.yml",
        Command::new(tool("amtool"))
            .current_dir(&root)
            .args(["check-config", "deploy/prometheus/alertmanager.yml"]),
    );
    let config = fs::read_to_string(root.join("deploy/prometheus/alertmanager.yml"))
        .expect("read alertmanager.yml");
    let alerts =
        fs::read_to_string(root.join("deploy/prometheus/alerts.yaml")).expect("read alerts.yaml");
    let defined: BTreeSet<&str> = alerts
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(str::trim)
        .collect();
    let named: Vec<&str> = config
        .split("alertname=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert!(!named.is_empty(), "alertmanager.yml names no alert");
    for name in named {
        assert!(
            defined.contains(name),
            "alertmanager.yml names {name}, which alerts.yaml does not define"
        );
    }
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
#[ignore = "needs systemd-analyze (scripts/install-test-deps)"]
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
#[ignore = "needs apparmor_parser (scripts/install-test-deps)"]
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

// --- Managed clusters: the priority-class quota, runbook links, OpenShift ---------------------

/// Where a team keeps its own runbooks, in the runbook-base tests.
const TEAM_WIKI: &str = "https://wiki.example.com/nsexporter";

/// The one file a team writes to point the runbooks component at its wiki (as its
/// kustomization.yaml documents it).
const TEAM_RUNBOOK_BASE: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  \
    name: nsexporter-runbook-base\n  annotations:\n    \
    config.kubernetes.io/local-config: \"true\"\ndata:\n  \
    base: https://wiki.example.com/nsexporter\n";

/// Nodes in the largest clusters the DaemonSet may span: GKE's limit (upstream Kubernetes is
/// tested to 5,000). One pod per node, so the quota must admit at least this many.
const LARGEST_CLUSTER_NODES: u64 = 65_000;

/// The documents of `yaml` as JSON values, read by the venv's PyYAML (serde_yaml is not a
/// dependency; kubernetes-validate brings PyYAML).
fn yaml_documents(yaml: &str) -> Vec<Value> {
    let out = run(
        Command::new(tool("python")).args([
            "-c",
            "import json, sys, yaml\n\
             json.dump([d for d in yaml.safe_load_all(sys.stdin) if d], sys.stdout)",
        ]),
        Some(yaml.as_bytes()),
    );
    assert!(out.status.success(), "YAML to JSON failed\n{}", show(&out));
    serde_json::from_slice(&out.stdout).expect("PyYAML's JSON")
}

fn object<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

/// `objects` with the value at JSON `pointer` of object `kind/name` replaced: one drift, to
/// show that a check notices it.
fn drifted(objects: &[Value], kind: &str, name: &str, pointer: &str, value: Value) -> Vec<Value> {
    let mut copy = objects.to_vec();
    let target = copy
        .iter_mut()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name}"));
    *target
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("no {pointer} in {kind}/{name}")) = value;
    copy
}

/// What lets the DaemonSet's pods in on clusters that limit priority classes (GKE): exactly one
/// ResourceQuota in its namespace whose only scope is `PriorityClass In [its class]`, room for
/// a pod per node of the largest clusters, and no other hard limit (a quota on cpu or memory
/// would refuse every pod in scope that does not declare that limit). Any other quota scoped
/// by priority class is a leftover of a class the DaemonSet no longer uses.
fn priority_quota_problems(objects: &[Value]) -> Vec<String> {
    let Some(ds) = object(objects, "DaemonSet", "nsexporter") else {
        return vec!["no DaemonSet nsexporter".into()];
    };
    let namespace = &ds["metadata"]["namespace"];
    let class = &ds["spec"]["template"]["spec"]["priorityClassName"];
    let scope = json!([{"scopeName": "PriorityClass", "operator": "In", "values": [class]}]);
    let mut problems = Vec::new();
    let mut admitting = 0;
    for quota in objects.iter().filter(|o| o["kind"] == "ResourceQuota") {
        let name = &quota["metadata"]["name"];
        let expressions = &quota["spec"]["scopeSelector"]["matchExpressions"];
        let by_class = expressions
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["scopeName"] == "PriorityClass"));
        if !by_class {
            continue;
        }
        if quota["metadata"]["namespace"] != *namespace
            || *expressions != scope
            || !quota["spec"]["scopes"].is_null()
        {
            problems.push(format!(
                "ResourceQuota {name} in namespace {} selects {expressions} (scopes {}), but the \
                 DaemonSet in namespace {namespace} has priorityClassName {class}: want exactly \
                 {scope} in its namespace",
                quota["metadata"]["namespace"], quota["spec"]["scopes"]
            ));
            continue;
        }
        admitting += 1;
        let hard = quota["spec"]["hard"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        for key in hard.keys().filter(|k| *k != "pods") {
            problems.push(format!(
                "ResourceQuota {name} limits {key}: pods that do not declare it are refused"
            ));
        }
        let pods = hard.get("pods").and_then(|p| {
            p.as_str()
                .and_then(|p| p.parse::<u64>().ok())
                .or(p.as_u64())
        });
        if pods.is_none_or(|p| p < LARGEST_CLUSTER_NODES) {
            problems.push(format!(
                "ResourceQuota {name}: hard pods {:?} must be a plain number of at least \
                 {LARGEST_CLUSTER_NODES}, a pod per node of the largest clusters",
                hard.get("pods")
            ));
        }
    }
    if class.is_string() && admitting != 1 {
        problems.push(format!(
            "{admitting} ResourceQuotas admit priority class {class} in namespace {namespace}; \
             want one"
        ));
    }
    problems
}

#[test]
#[ignore = "needs kubectl (scripts/install-test-deps)"]
fn resourcequota_admits_the_daemonsets_priority_class() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (variant, file) in rendered_variants(tmp.path()) {
        let objects = yaml_documents(&fs::read_to_string(&file).expect("read rendered"));
        let problems = priority_quota_problems(&objects);
        assert!(problems.is_empty(), "{variant}:\n{}", problems.join("\n"));
    }
    // Either side changed alone is caught.
    let objects = yaml_documents(&kustomize(&repo().join("deploy/kubernetes")));
    let ds_class = "/spec/template/spec/priorityClassName";
    let quota = ("ResourceQuota", "nsexporter-critical-pods");
    let scope = "/spec/scopeSelector/matchExpressions/0";
    for (what, objects) in [
        (
            "DaemonSet class changed",
            drifted(
                &objects,
                "DaemonSet",
                "nsexporter",
                ds_class,
                json!("system-cluster-critical"),
            ),
        ),
        (
            "quota class changed",
            drifted(
                &objects,
                quota.0,
                quota.1,
                &format!("{scope}/values"),
                json!(["other"]),
            ),
        ),
        (
            "quota operator changed",
            drifted(
                &objects,
                quota.0,
                quota.1,
                &format!("{scope}/operator"),
                json!("NotIn"),
            ),
        ),
        (
            "quota too small",
            drifted(&objects, quota.0, quota.1, "/spec/hard/pods", json!("5000")),
        ),
        (
            "quota in another namespace",
            drifted(
                &objects,
                quota.0,
                quota.1,
                "/metadata/namespace",
                json!("default"),
            ),
        ),
        (
            "quota gone",
            objects
                .iter()
                .filter(|o| o["kind"] != "ResourceQuota")
                .cloned()
                .collect(),
        ),
    ] {
        assert!(
            !priority_quota_problems(&objects).is_empty(),
            "the quota check missed: {what}"
        );
    }
}

/// Checks that `rebased` is `original` with each runbook_url's base replaced by `base` and
/// nothing else changed, anchors included.
fn assert_rebased(what: &str, original: &str, rebased: &str, base: &str) {
    let (original, rebased): (Vec<&str>, Vec<&str>) =
        (original.lines().collect(), rebased.lines().collect());
    assert_eq!(original.len(), rebased.len(), "{what}: line count changed");
    let mut links = 0;
    for (n, (before, after)) in original.iter().zip(&rebased).enumerate() {
        let expected = match before.split_once("runbook_url: ") {
            Some((indent, url)) if indent.trim().is_empty() => {
                links += 1;
                let anchor = url.split_once('#').expect("runbook_url with an anchor").1;
                format!("{indent}runbook_url: {base}#{anchor}")
            }
            _ => before.to_string(),
        };
        assert_eq!(*after, expected, "{what}: line {}", n + 1);
    }
    assert!(links > 0, "{what}: no runbook_url lines");
}

fn generate_prometheusrule(args: &[&str], env: Option<&str>) -> Output {
    let mut cmd = Command::new("sh");
    cmd.current_dir(repo())
        .env_remove("NSEXPORTER_RUNBOOK_BASE")
        .arg("deploy/kubernetes/generate-prometheusrule")
        .args(args);
    if let Some(base) = env {
        cmd.env("NSEXPORTER_RUNBOOK_BASE", base);
    }
    run(&mut cmd, None)
}

#[test]
fn generate_prometheusrule_takes_one_runbook_base() {
    let root = repo();
    let rule = fs::read_to_string(root.join("deploy/kubernetes/prometheusrule.yaml")).unwrap();
    let alerts = fs::read_to_string(root.join("deploy/prometheus/alerts.yaml")).unwrap();
    let stdout = |out: Output, what: &str| {
        assert!(out.status.success(), "{what}\n{}", show(&out));
        String::from_utf8(out.stdout).expect("UTF-8")
    };
    let by_flag = stdout(
        generate_prometheusrule(&["--stdout", "--runbook-base", TEAM_WIKI], None),
        "--runbook-base",
    );
    assert_rebased("--stdout --runbook-base", &rule, &by_flag, TEAM_WIKI);
    let by_env = stdout(
        generate_prometheusrule(&["--stdout"], Some(TEAM_WIKI)),
        "env",
    );
    assert_eq!(
        by_env, by_flag,
        "NSEXPORTER_RUNBOOK_BASE and --runbook-base differ"
    );
    let rules = stdout(
        generate_prometheusrule(&["--alerts", &format!("--runbook-base={TEAM_WIKI}")], None),
        "--alerts",
    );
    assert_rebased("--alerts --runbook-base", &alerts, &rules, TEAM_WIKI);
    let unchanged = stdout(generate_prometheusrule(&["--alerts"], None), "--alerts");
    assert_eq!(
        unchanged, alerts,
        "--alerts without a base must print alerts.yaml as it is"
    );
    // A base that would break the links is refused, not written.
    for bad in [
        "https://wiki.example.com/a#b",
        "wiki.example.com/nsexporter",
        "https://a b/",
    ] {
        let out = generate_prometheusrule(&["--stdout", "--runbook-base", bad], None);
        assert!(
            !out.status.success() && out.stdout.is_empty(),
            "--runbook-base {bad} was accepted\n{}",
            show(&out)
        );
    }
}

/// (alert, runbook_url) of every rule of the PrometheusRule in `objects`.
fn prometheusrule_links(objects: &[Value]) -> Vec<(String, String)> {
    let rule = object(objects, "PrometheusRule", "nsexporter").expect("PrometheusRule");
    rule["spec"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .filter_map(|r| {
            Some((
                r["alert"].as_str()?,
                r["annotations"]["runbook_url"].as_str()?,
            ))
        })
        .map(|(a, u)| (a.to_owned(), u.to_owned()))
        .collect()
}

#[test]
#[ignore = "needs kubectl (scripts/install-test-deps)"]
fn runbooks_component_sets_the_base_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let default = prometheusrule_links(&yaml_documents(&kustomize(
        &repo().join("deploy/kubernetes"),
    )));
    let files = [("runbook-base.yaml", TEAM_RUNBOOK_BASE)];
    let dir = overlay(tmp.path(), "team", &["runbooks"], &files);
    let objects = yaml_documents(&kustomize(&dir));
    let team = prometheusrule_links(&objects);
    assert!(!default.is_empty(), "no alerts in the PrometheusRule");
    let expected: Vec<(String, String)> = default
        .iter()
        .map(|(alert, url)| {
            let anchor = url.split_once('#').expect("runbook_url with an anchor").1;
            (alert.clone(), format!("{TEAM_WIKI}#{anchor}"))
        })
        .collect();
    assert_eq!(team, expected, "runbook links with the runbooks component");
    assert!(
        object(&objects, "ConfigMap", "nsexporter-runbook-base").is_none(),
        "the local-config ConfigMap must not reach the cluster"
    );
    // Without its ConfigMap the component fails the build rather than leave links as they were.
    let bare = overlay(tmp.path(), "no-base", &["runbooks"], &[]);
    let out = run(
        Command::new(tool("kubectl")).arg("kustomize").arg(&bare),
        None,
    );
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("nsexporter-runbook-base"),
        "the runbooks component without its ConfigMap\n{}",
        show(&out)
    );
}

/// The openshift component rendered on the base, as JSON objects.
fn openshift_objects(tmp: &Path) -> Vec<Value> {
    yaml_documents(&kustomize(&overlay(tmp, "openshift", &["openshift"], &[])))
}

/// The one value `values` agree on; a problem (and the first value) if they differ.
fn agreed(what: &str, values: Vec<Value>, problems: &mut Vec<String>) -> Value {
    let first = values.first().cloned().unwrap_or(Value::Null);
    if values.iter().any(|v| *v != first) {
        problems.push(format!("the containers differ in {what}: {values:?}"));
    }
    first
}

/// A JSON array of the distinct strings of `values`, sorted: SCC lists are sets.
fn string_set<'a>(values: impl IntoIterator<Item = &'a Value>) -> Value {
    let set: BTreeSet<&str> = values.into_iter().filter_map(Value::as_str).collect();
    json!(set)
}

/// The SCC's grants that the DaemonSet's pod template needs, field by field, each derived from
/// the template; what it does not use is refused.
fn scc_needed_by(pod: &Value, problems: &mut Vec<String>) -> Value {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .flat_map(|k| pod[*k].as_array().into_iter().flatten())
        .collect();
    // A container's securityContext field, or the pod's where the container leaves it unset.
    let effective = |key: &str| -> Vec<Value> {
        containers
            .iter()
            .map(|c| match &c["securityContext"][key] {
                Value::Null => pod["securityContext"][key].clone(),
                v => v.clone(),
            })
            .collect()
    };
    let uid = agreed("runAsUser", effective("runAsUser"), problems);
    let gid = agreed("runAsGroup", effective("runAsGroup"), problems);
    let selinux = agreed("seLinuxOptions", effective("seLinuxOptions"), problems);
    let seccomp = match agreed("seccompProfile", effective("seccompProfile"), problems) {
        p if p["type"] == "RuntimeDefault" => json!(["runtime/default"]),
        p if p["type"] == "Localhost" => {
            let profile = p["localhostProfile"].as_str().unwrap_or_default();
            json!([format!("localhost/{profile}")])
        }
        p if p["type"] == "Unconfined" => json!(["unconfined"]),
        _ => json!([]),
    };
    let context = |key: &'static str| containers.iter().map(move |c| &c["securityContext"][key]);
    let volumes = pod["volumes"].as_array().cloned().unwrap_or_default();
    let kinds: BTreeSet<String> = volumes
        .iter()
        .flat_map(|v| v.as_object().into_iter().flat_map(|o| o.keys()))
        .filter(|k| *k != "name")
        .cloned()
        .collect();
    let drops = context("capabilities")
        .map(|c| string_set(c["drop"].as_array().into_iter().flatten()))
        .collect();
    let dropped = agreed("capabilities.drop", drops, problems);
    let escalation = context("allowPrivilegeEscalation").any(|v| *v != false);
    let host = |key: &str| pod[key] == true;
    // The SCC admits the containers' group alone as fsGroup and supplemental group.
    let groups = &pod["securityContext"];
    let other_group = |g: &Value| !g.is_null() && *g != gid;
    if other_group(&groups["fsGroup"])
        || groups["supplementalGroups"]
            .as_array()
            .into_iter()
            .flatten()
            .any(other_group)
    {
        problems.push(format!(
            "the pod's fsGroup {} or supplementalGroups {} differ from runAsGroup {gid}",
            groups["fsGroup"], groups["supplementalGroups"]
        ));
    }
    let no_sysctls = pod["securityContext"]["sysctls"]
        .as_array()
        .is_none_or(Vec::is_empty);
    json!({
        // Granted by RBAC alone.
        "users": [],
        "groups": [],
        "priority": null,
        "allowHostDirVolumePlugin": kinds.contains("hostPath"),
        "volumes": kinds,
        "allowedCapabilities": string_set(
            context("capabilities").flat_map(|c| c["add"].as_array().into_iter().flatten())
        ),
        "requiredDropCapabilities": dropped,
        "defaultAddCapabilities": [],
        "allowPrivilegedContainer": context("privileged").any(|v| *v == true),
        "allowPrivilegeEscalation": escalation,
        "defaultAllowPrivilegeEscalation": escalation,
        "readOnlyRootFilesystem": context("readOnlyRootFilesystem").all(|v| *v == true),
        "allowHostPID": host("hostPID"),
        "allowHostNetwork": host("hostNetwork"),
        "allowHostIPC": host("hostIPC"),
        "allowHostPorts": containers.iter().any(|c| {
            c["ports"].as_array().into_iter().flatten().any(|p| !p["hostPort"].is_null())
        }),
        "runAsUser": {"type": "MustRunAs", "uid": uid},
        // Unset in the pod (or the same): admission fills in the group the containers run as.
        "fsGroup": {"type": "MustRunAs", "ranges": [{"min": gid, "max": gid}]},
        "supplementalGroups": {"type": "MustRunAs", "ranges": [{"min": gid, "max": gid}]},
        "seLinuxContext": {"type": "MustRunAs", "seLinuxOptions": selinux},
        "seccompProfiles": seccomp,
        "forbiddenSysctls": if no_sysctls { json!(["*"]) } else { json!([]) },
    })
}

/// Differences between the SCC the DaemonSet's pods name and what they need: every grant
/// (`scc_needed_by`), the hostPath mounts being read-only (which an SCC cannot require), and
/// the RBAC that lets exactly the DaemonSet's service account, in its namespace, use it.
fn scc_problems(objects: &[Value]) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(ds) = object(objects, "DaemonSet", "nsexporter") else {
        return vec!["no DaemonSet nsexporter".into()];
    };
    let template = &ds["spec"]["template"];
    let pod = &template["spec"];
    let Some(name) = template["metadata"]["annotations"]["openshift.io/required-scc"].as_str()
    else {
        return vec!["the pod template names no SCC (openshift.io/required-scc)".into()];
    };
    let Some(scc) = object(objects, "SecurityContextConstraints", name) else {
        return vec![format!(
            "the pod template names SCC {name}, which is not rendered"
        )];
    };
    if scc["apiVersion"] != "security.openshift.io/v1" || !scc["metadata"]["namespace"].is_null() {
        problems.push(format!(
            "SCC {name}: apiVersion {} (want security.openshift.io/v1), namespace {} (want none)",
            scc["apiVersion"], scc["metadata"]["namespace"]
        ));
    }
    let needed = scc_needed_by(pod, &mut problems);
    let mut granted = scc.as_object().cloned().unwrap_or_default();
    for key in ["apiVersion", "kind", "metadata"] {
        granted.remove(key);
    }
    // Lists that are sets, compared sorted.
    for key in ["volumes", "allowedCapabilities", "requiredDropCapabilities"] {
        if let Some(list) = granted.get(key).and_then(Value::as_array) {
            let set = string_set(list);
            granted.insert(key.into(), set);
        }
    }
    let needed = needed.as_object().expect("object");
    let keys: BTreeSet<&String> = needed.keys().chain(granted.keys()).collect();
    for key in keys {
        let (want, have) = (
            needed.get(key).unwrap_or(&Value::Null),
            granted.get(key).unwrap_or(&Value::Null),
        );
        if want != have {
            problems.push(format!(
                "SCC {name}: {key} is {have}, the DaemonSet needs {want}"
            ));
        }
    }
    // Read-only hostPath: the SCC admits any hostPath, so the DaemonSet must mount them so.
    let host_paths: BTreeSet<&str> = pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| !v["hostPath"].is_null())
        .filter_map(|v| v["name"].as_str())
        .collect();
    for container in ["initContainers", "containers"]
        .iter()
        .flat_map(|k| pod[*k].as_array().into_iter().flatten())
    {
        for mount in container["volumeMounts"].as_array().into_iter().flatten() {
            let volume = mount["name"].as_str().unwrap_or_default();
            if host_paths.contains(volume) && mount["readOnly"] != true {
                problems.push(format!(
                    "container {} mounts hostPath volume {volume} writable",
                    container["name"]
                ));
            }
        }
    }
    // Who may use it: roles that grant `use` of this SCC grant that alone, and every binding of
    // them is a RoleBinding of the DaemonSet's service account in its namespace.
    let namespace = &ds["metadata"]["namespace"];
    let account = match &pod["serviceAccountName"] {
        Value::Null => json!("default"),
        a => a.clone(),
    };
    let only_use = json!([{
        "apiGroups": ["security.openshift.io"],
        "resources": ["securitycontextconstraints"],
        "resourceNames": [name],
        "verbs": ["use"],
    }]);
    let roles: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role")
        .filter(|r| {
            r["rules"].as_array().into_iter().flatten().any(|rule| {
                rule["resources"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|r| r == "securitycontextconstraints" || r == "*")
            })
        })
        .collect();
    for role in &roles {
        if role["rules"] != only_use {
            problems.push(format!(
                "{} {} grants {}; want only {only_use}",
                role["kind"], role["metadata"]["name"], role["rules"]
            ));
        }
    }
    let subject = json!([{"kind": "ServiceAccount", "name": account, "namespace": namespace}]);
    let mut bound = 0;
    for binding in objects
        .iter()
        .filter(|o| o["kind"] == "RoleBinding" || o["kind"] == "ClusterRoleBinding")
        .filter(|b| {
            roles.iter().any(|r| {
                r["kind"] == b["roleRef"]["kind"] && r["metadata"]["name"] == b["roleRef"]["name"]
            })
        })
    {
        if binding["kind"] != "RoleBinding"
            || binding["metadata"]["namespace"] != *namespace
            || binding["subjects"] != subject
        {
            problems.push(format!(
                "{} {} (namespace {}) binds {} to {}; want a RoleBinding in {namespace} for \
                 {subject}",
                binding["kind"],
                binding["metadata"]["name"],
                binding["metadata"]["namespace"],
                binding["roleRef"]["name"],
                binding["subjects"]
            ));
        } else {
            bound += 1;
        }
    }
    if bound == 0 {
        problems.push(format!(
            "nothing lets service account {namespace}/{account} use SCC {name}"
        ));
    }
    problems
}

#[test]
#[ignore = "needs kubectl (scripts/install-test-deps)"]
fn openshift_scc_grants_exactly_what_the_daemonset_needs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let objects = openshift_objects(tmp.path());
    let problems = scc_problems(&objects);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Either side changed alone is caught.
    let ds = ("DaemonSet", "nsexporter");
    let scc = ("SecurityContextConstraints", "nsexporter");
    let container = "/spec/template/spec/containers/0";
    let drifts: Vec<(&str, (&str, &str), String, Value)> = vec![
        (
            "a capability added",
            ds,
            format!("{container}/securityContext/capabilities/add"),
            json!(["SYS_PTRACE", "NET_ADMIN"]),
        ),
        (
            "another uid",
            ds,
            format!("{container}/securityContext/runAsUser"),
            json!(1000),
        ),
        (
            "a writable root",
            ds,
            format!("{container}/securityContext/readOnlyRootFilesystem"),
            json!(false),
        ),
        (
            "SELinux type",
            ds,
            format!("{container}/securityContext/seLinuxOptions/type"),
            json!("container_t"),
        ),
        (
            "a writable hostPath mount",
            ds,
            format!("{container}/volumeMounts/0/readOnly"),
            json!(false),
        ),
        (
            "an emptyDir volume",
            ds,
            "/spec/template/spec/volumes/2".into(),
            json!({"name": "config", "emptyDir": {}}),
        ),
        (
            "host PID",
            ds,
            "/spec/template/spec/hostPID".into(),
            json!(true),
        ),
        (
            "another service account",
            ds,
            "/spec/template/spec/serviceAccountName".into(),
            json!("default"),
        ),
        (
            "another SCC named",
            ds,
            "/spec/template/metadata/annotations/openshift.io~1required-scc".into(),
            json!("restricted-v2"),
        ),
        (
            "SCC allows host PID",
            scc,
            "/allowHostPID".into(),
            json!(true),
        ),
        (
            "SCC allows all capabilities",
            scc,
            "/allowedCapabilities".into(),
            json!(["*"]),
        ),
        (
            "SCC allows all volumes",
            scc,
            "/volumes".into(),
            json!(["*"]),
        ),
        (
            "SCC runs as any uid",
            scc,
            "/runAsUser".into(),
            json!({"type": "RunAsAny"}),
        ),
        (
            "SCC names a user",
            scc,
            "/users".into(),
            json!(["system:serviceaccount:nsexporter:nsexporter"]),
        ),
        (
            "SCC allows any seccomp",
            scc,
            "/seccompProfiles".into(),
            json!(["*"]),
        ),
        (
            "role grants another SCC",
            ("ClusterRole", "nsexporter-scc"),
            "/rules/0/resourceNames".into(),
            json!(["privileged"]),
        ),
        (
            "binding to another account",
            ("RoleBinding", "nsexporter-scc"),
            "/subjects/0/name".into(),
            json!("default"),
        ),
    ];
    for (what, (kind, name), pointer, value) in drifts {
        assert!(
            !scc_problems(&drifted(&objects, kind, name, &pointer, value)).is_empty(),
            "the SCC check missed: {what}"
        );
    }
}

/// Turns a CRD's openAPIV3Schema into a strict JSON Schema and validates the JSON documents on
/// stdin against it (argv: the CRD file, its version). `nullable` admits null; an object that
/// lists its properties admits no other, where the API server would prune an unknown field
/// silently; `x-kubernetes-*` extensions are dropped. Prints `VALID i` or `INVALID i: ...`.
const CRD_VALIDATOR: &str = r#"
import json, sys, yaml, jsonschema
crd_file, version = sys.argv[1:]
with open(crd_file) as f:
    crd = yaml.safe_load(f)
[served] = [v for v in crd["spec"]["versions"] if v["name"] == version]
def strict(s):
    out = {}
    for k, v in s.items():
        if k.startswith("x-kubernetes-") or k == "nullable":
            continue
        if k == "properties":
            v = {name: strict(p) for name, p in v.items()}
        elif k == "items" or (k == "additionalProperties" and isinstance(v, dict)):
            v = strict(v)
        out[k] = v
    if s.get("nullable"):
        out["type"] = [out["type"], "null"]
    if "properties" in s and "additionalProperties" not in s:
        out["additionalProperties"] = False
    return out
validator = jsonschema.Draft7Validator(strict(served["schema"]["openAPIV3Schema"]))
for i, doc in enumerate(json.load(sys.stdin)):
    errors = list(validator.iter_errors(doc))
    for e in errors:
        print(f"INVALID {i}: /{'/'.join(map(str, e.absolute_path))}: {e.message}")
    if not errors:
        print(f"VALID {i}")
"#;

#[test]
#[ignore = "needs kubectl and the venv's python with jsonschema (scripts/install-test-deps)"]
fn openshift_scc_validates_against_the_openshift_api_schema() {
    let crd_file = repo().join("tests/fixtures/openshift/securitycontextconstraints.crd.yaml");
    let crd = &yaml_documents(&fs::read_to_string(&crd_file).expect("read vendored CRD"))[0];
    assert_eq!(crd["spec"]["group"], "security.openshift.io");
    assert_eq!(crd["spec"]["names"]["kind"], "SecurityContextConstraints");
    let tmp = tempfile::tempdir().expect("tempdir");
    let objects = openshift_objects(tmp.path());
    let sccs: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "SecurityContextConstraints")
        .collect();
    assert_eq!(sccs.len(), 1, "SCCs rendered by the openshift component");
    let scc = sccs[0].clone();
    assert_eq!(scc["apiVersion"], "security.openshift.io/v1");
    // The real SCC, then three that must fail, to show the schema is applied strictly.
    let mut typo = scc.clone();
    typo["allowHostDirVolumePlugins"] = json!(true);
    let mut wrong_type = scc.clone();
    wrong_type["runAsUser"]["uid"] = json!("65534");
    let mut missing = scc.clone();
    missing.as_object_mut().unwrap().remove("allowHostPorts");
    let input = serde_json::to_vec(&json!([scc, typo, wrong_type, missing])).unwrap();
    let out = run(
        Command::new(tool("python"))
            .args(["-c", CRD_VALIDATOR])
            .arg(&crd_file)
            .arg("v1"),
        Some(&input),
    );
    assert!(
        out.status.success(),
        "schema validation did not run\n{}",
        show(&out)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l == "VALID 0") && !text.contains("INVALID 0:"),
        "the openshift component's SCC does not validate\n{}",
        show(&out)
    );
    for (i, what) in [
        (1, "an unknown field"),
        (2, "a string uid"),
        (3, "a missing required field"),
    ] {
        assert!(
            text.contains(&format!("INVALID {i}:")),
            "the schema let {what} through\n{}",
            show(&out)
        );
    }
}

#[test]
#[ignore = "needs kubectl and kubernetes-validate (scripts/install-test-deps)"]
fn openshift_rbac_validates_strictly_against_kubernetes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("openshift.yaml");
    fs::write(
        &file,
        kustomize(&overlay(tmp.path(), "openshift", &["openshift"], &[])),
    )
    .expect("write rendered");
    for version in KUBERNETES_VERSIONS {
        let out = run(
            Command::new(tool("kubernetes-validate"))
                .args(["--strict", "--kubernetes-version", version])
                .arg(&file),
            None,
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && !text.contains("did not validate"),
            "{}",
            show(&out)
        );
        for object in ["clusterrole/nsexporter-scc", "rolebinding/nsexporter-scc"] {
            assert!(
                text.contains(&format!("passed for resource {object} ")),
                "{object} was not validated against Kubernetes {version}\n{}",
                show(&out)
            );
        }
    }
}

/// The proc-events component gives the DaemonSet exactly what the kernel's proc connector
/// needs (the initial PID and network namespaces, NET_ADMIN) and turns the flag on; the base
/// has none of it.
#[test]
#[ignore = "needs kubectl (scripts/install-test-deps)"]
fn proc_events_component_adds_what_the_proc_connector_needs() {
    let tmp = tempfile::tempdir().unwrap();
    let base = kustomize(&repo().join("deploy/kubernetes"));
    let events = kustomize(&overlay(tmp.path(), "events", &["proc-events"], &[]));
    for (text, on) in [(&base, false), (&events, true)] {
        assert_eq!(text.contains("hostPID: true"), on);
        assert_eq!(text.contains("hostNetwork: true"), on);
        assert_eq!(text.contains("- --scan.proc-events=true"), on);
        assert_eq!(text.contains("- NET_ADMIN"), on);
        assert!(text.contains("- SYS_PTRACE"));
    }
    // The image's binary may be granted it: the Containerfile's file capability names it.
    assert!(file_capabilities().contains(&"NET_ADMIN".to_string()));
}

/// A pod spec without what a component may add to it: the container's args, mounts and added
/// capabilities, and the volumes; the rest must be the base's.
fn without_grants(spec: &Value) -> Value {
    let mut spec = spec.clone();
    let c = &mut spec["containers"][0];
    c["args"] = json!(null);
    c["volumeMounts"] = json!(null);
    c["securityContext"]["capabilities"]["add"] = json!(null);
    spec["volumes"] = json!(null);
    spec
}

/// The capabilities the Containerfile's `setcap` grants the image's binary, as Kubernetes
/// names them (`cap_net_admin` → `NET_ADMIN`).
fn file_capabilities() -> Vec<String> {
    let containerfile = fs::read_to_string(repo().join("Containerfile")).unwrap();
    let caps = containerfile
        .split_whitespace()
        .skip_while(|w| *w != "setcap")
        .nth(1)
        .expect("a setcap in the Containerfile");
    caps.trim_end_matches("+p")
        .split(',')
        .map(|c| c.trim_start_matches("cap_").to_ascii_uppercase())
        .collect()
}

/// The ebpf component gives the DaemonSet what the eBPF source's code asks for: the
/// capabilities src/ebpf/loader.rs raises (read from it), the node's tracefs read-only, and
/// the flag; nothing else, no SYS_ADMIN and no hostPID. The image's binary may be granted each.
#[test]
#[ignore = "needs kubectl and the venv's python (scripts/install-test-deps)"]
fn ebpf_component_adds_what_the_ebpf_source_needs() {
    let tmp = tempfile::tempdir().unwrap();
    let base = kustomize(&repo().join("deploy/kubernetes"));
    let ebpf = kustomize(&overlay(tmp.path(), "ebpf", &["ebpf"], &[]));
    let spec = |text: &str| -> Value {
        let objects = yaml_documents(text);
        let ds = object(&objects, "DaemonSet", "nsexporter").expect("a DaemonSet");
        ds["spec"]["template"]["spec"].clone()
    };
    let (base, ebpf) = (spec(&base), spec(&ebpf));
    let added = |spec: &Value| -> Vec<String> {
        spec["containers"][0]["securityContext"]["capabilities"]["add"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect()
    };
    // What the loader raises: every `Capability::CAP_X` it names.
    let loader = fs::read_to_string(repo().join("src/ebpf/loader.rs")).unwrap();
    let mut needed: Vec<String> = loader
        .split("Capability::CAP_")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                .collect()
        })
        .collect();
    needed.sort();
    needed.dedup();
    assert_eq!(needed, ["BPF", "DAC_READ_SEARCH", "PERFMON"]);
    let mut new: Vec<String> = added(&ebpf)
        .into_iter()
        .filter(|c| !added(&base).contains(c))
        .collect();
    new.sort();
    assert_eq!(new, needed);
    assert!(!added(&ebpf).iter().any(|c| c == "SYS_ADMIN"));
    let granted = file_capabilities();
    for cap in &needed {
        assert!(
            granted.contains(cap),
            "the image's setcap lacks {cap}: {granted:?}"
        );
    }
    let args = |spec: &Value| spec["containers"][0]["args"].as_array().unwrap().clone();
    let new_args: Vec<Value> = args(&ebpf)
        .into_iter()
        .filter(|a| !args(&base).contains(a))
        .collect();
    assert_eq!(new_args, [json!("--scan.ebpf=true")]);
    let mounts = &ebpf["containers"][0]["volumeMounts"];
    assert!(
        mounts
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == "/sys/kernel/tracing" && m["readOnly"] == true),
        "{mounts}"
    );
    assert!(
        ebpf["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["hostPath"]["path"] == "/sys/kernel/tracing"),
        "{}",
        ebpf["volumes"]
    );
    assert_eq!(ebpf["hostPID"], json!(false));
    // Nothing else of the pod changes.
    assert_eq!(without_grants(&ebpf), without_grants(&base));
}

/// The tls component serves the metrics port with the web config and certificate from their
/// Secrets, probes over HTTPS, and has the ServiceMonitor scrape with https, the CA and basic
/// auth.
#[test]
#[ignore = "needs kubectl (scripts/install-test-deps)"]
fn tls_component_serves_and_scrapes_over_tls_with_basic_auth() {
    let tmp = tempfile::tempdir().unwrap();
    let text = kustomize(&overlay(tmp.path(), "tls", &["tls"], &[]));
    for want in [
        "- --web.config.file=/etc/nsexporter/web/web.yml",
        "scheme: HTTPS",
        "secretName: nsexporter-tls",
        "secretName: nsexporter-web-config",
        "mountPath: /etc/nsexporter/web",
        "scheme: https",
        "name: nsexporter-scrape-auth",
        "key: ca.crt",
    ] {
        assert!(text.contains(want), "no `{want}` in\n{text}");
    }
    let base = kustomize(&repo().join("deploy/kubernetes"));
    assert!(!base.contains("web.config.file"));
}

/// The pod spec of the DaemonSet that `dir` renders to.
fn rendered_pod(dir: &Path) -> Value {
    let objects = yaml_documents(&kustomize(dir));
    let ds = object(&objects, "DaemonSet", "nsexporter").expect("a DaemonSet");
    ds["spec"]["template"]["spec"].clone()
}

/// A pod spec's hostPath mounts as (host path, mount path, hostPath type, read-only), sorted.
fn host_paths(spec: &Value) -> Vec<(String, String, String, bool)> {
    let container = &spec["containers"][0];
    let mut found = Vec::new();
    for volume in spec["volumes"].as_array().unwrap() {
        let Some(host) = volume["hostPath"]["path"].as_str() else {
            continue;
        };
        for mount in container["volumeMounts"].as_array().unwrap() {
            if mount["name"] == volume["name"] {
                found.push((
                    host.to_owned(),
                    mount["mountPath"].as_str().unwrap().to_owned(),
                    volume["hostPath"]["type"].as_str().unwrap_or("").to_owned(),
                    mount["readOnly"] == true,
                ));
            }
        }
    }
    found.sort();
    found
}

/// What a component's pod spec has beyond the base's: hostPath mounts, args and added
/// capabilities, each in the component's order.
type Added = (
    Vec<(String, String, String, bool)>,
    Vec<String>,
    Vec<String>,
);

fn added_to(base: &Value, with: &Value) -> Added {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    let caps =
        |spec: &Value| strings(&spec["containers"][0]["securityContext"]["capabilities"]["add"]);
    let args = |spec: &Value| strings(&spec["containers"][0]["args"]);
    let new = |of: Vec<String>, base: Vec<String>| -> Vec<String> {
        of.into_iter().filter(|a| !base.contains(a)).collect()
    };
    let mounts = host_paths(with)
        .into_iter()
        .filter(|m| !host_paths(base).contains(m))
        .collect();
    (
        mounts,
        new(args(with), args(base)),
        new(caps(with), caps(base)),
    )
}

/// A read-only hostPath mount the kubelet makes where the node lacks it.
fn read_only_mount(host: &str, at: &str) -> (String, String, String, bool) {
    (
        host.to_owned(),
        at.to_owned(),
        "DirectoryOrCreate".to_owned(),
        true,
    )
}

/// The docker-podman-names component gives the exporter the engines' container directories,
/// read-only and nothing more of their data roots, the flags that point at them, and
/// DAC_READ_SEARCH, which the image's file capability lets through; the base has none of it.
#[test]
#[ignore = "needs kubectl and the venv's python (scripts/install-test-deps)"]
fn docker_podman_names_component_mounts_only_the_engines_lists_read_only() {
    let tmp = tempfile::tempdir().unwrap();
    let base = rendered_pod(&repo().join("deploy/kubernetes"));
    let names = rendered_pod(&overlay(tmp.path(), "names", &["docker-podman-names"], &[]));
    let (new_mounts, new_args, new_caps) = added_to(&base, &names);
    let mount = read_only_mount;
    assert_eq!(
        new_mounts,
        [
            mount(
                "/var/lib/containers/storage/overlay-containers",
                "/host/var/lib/containers/storage/overlay-containers"
            ),
            mount(
                "/var/lib/docker/containers",
                "/host/var/lib/docker/containers"
            ),
        ]
    );
    // The flags name the roots whose container directories are mounted.
    assert_eq!(
        new_args,
        [
            "--path.docker=/host/var/lib/docker",
            "--path.podman=/host/var/lib/containers/storage"
        ]
    );
    assert_eq!(new_caps, ["DAC_READ_SEARCH"]);
    assert_eq!(
        base["containers"][0]["securityContext"]["capabilities"]["add"],
        json!(["SYS_PTRACE"])
    );
    assert!(file_capabilities().contains(&"DAC_READ_SEARCH".to_string()));
    // Nothing else of the pod changes.
    assert_eq!(without_grants(&names), without_grants(&base));
}

/// The narrowest directory of each spec location under the host's `/run` that
/// src/declared/source.rs's `LOCATIONS` reads: its pattern up to the first `{…}` component
/// (`containerd/io.containerd.runtime.v2.task` of `…/{ns}/{id}/config.json`).
fn spec_directories_under_run() -> Vec<String> {
    let source = fs::read_to_string(repo().join("src/declared/source.rs")).unwrap();
    let table = source
        .split("const LOCATIONS")
        .nth(1)
        .and_then(|t| t.split("];").next())
        .expect("LOCATIONS in src/declared/source.rs");
    let mut dirs = Vec::new();
    for location in table.split("Location {").skip(1) {
        if !location.contains("root: Root::Run") {
            continue;
        }
        let pattern = location
            .split("pattern: \"")
            .nth(1)
            .and_then(|p| p.split('"').next())
            .expect("a pattern");
        let fixed: Vec<&str> = pattern
            .split('/')
            .take_while(|c| !c.contains('{'))
            .collect();
        dirs.push(fixed.join("/"));
    }
    assert!(dirs.len() >= 4, "{dirs:?}");
    dirs
}

/// The runtime-specs component gives the exporter the directories the specs of containerd's
/// and CRI-O's containers are in, read-only at their places under `/host/run`, the flag
/// that points there, and DAC_READ_SEARCH, which the image's file capability lets through;
/// neither `/run` nor a directory of the runtimes' sockets, and no hostPID.
#[test]
#[ignore = "needs kubectl and the venv's python (scripts/install-test-deps)"]
fn runtime_specs_component_mounts_only_the_spec_directories_read_only() {
    let tmp = tempfile::tempdir().unwrap();
    let base = rendered_pod(&repo().join("deploy/kubernetes"));
    let specs = rendered_pod(&overlay(tmp.path(), "specs", &["runtime-specs"], &[]));
    let (new_mounts, new_args, new_caps) = added_to(&base, &specs);
    let bundles = "/run/containerd/io.containerd.runtime.v2.task";
    let crio = "/run/containers/storage/overlay-containers";
    assert_eq!(
        new_mounts,
        [
            read_only_mount(bundles, &format!("/host{bundles}")),
            read_only_mount(crio, &format!("/host{crio}")),
        ]
    );
    // Each is where the exporter looks: a spec location's own directory, at its place under
    // the directory passed as --path.run.
    let locations = spec_directories_under_run();
    for (host, _, _, _) in &new_mounts {
        let rel = host.strip_prefix("/run/").unwrap();
        assert!(locations.iter().any(|l| l == rel), "{rel}: {locations:?}");
    }
    assert_eq!(new_args, ["--path.run=/host/run"]);
    assert_eq!(new_caps, ["DAC_READ_SEARCH"]);
    assert!(file_capabilities().contains(&"DAC_READ_SEARCH".to_string()));
    assert_eq!(specs["hostPID"], json!(false));
    // Nothing else of the pod changes.
    assert_eq!(without_grants(&specs), without_grants(&base));
}
