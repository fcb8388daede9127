//! An alert that reaches a person: the exporter on this machine's real /proc, a real
//! Prometheus evaluating `deploy/prometheus/alerts.yaml`, a real Alertmanager (Debian's
//! `prometheus-alertmanager`) routing with `deploy/prometheus/alertmanager.yml`, and a webhook
//! receiver run by the test on loopback standing for the person.
//!
//! The pod container is real processes: its own pid, net, uts, ipc, mount and cgroup
//! namespaces, in a kubepods-shaped cgroup, named by a kubelet log entry. The escape is a
//! process of that container (its cgroup, its other namespaces) in the host's mount namespace,
//! as `nsenter -t 1 -m` leaves one; it ends when the test kills it.
//!
//! Shortened for the test, and only these: scans every 500 ms, scrapes and rule evaluations
//! every second, Alertmanager's `group_wait` 5 s (shipped: 30 s; still longer than the blip a
//! sweep leaves, see alertmanager.yml) and `group_interval` 1 s (shipped: 5 m), and in the
//! inhibition test the `for: 1m` of NsexporterUnexpectedHostNamespaceSharing, cut to 0s in a
//! copy; `deploy/prometheus/alerts_test.yaml` tests the shipped `for` with promtool. The
//! critical alert has `for: 0m` and runs as shipped.
//!
//! Alertmanager listens on 127.0.0.1 only, with `--cluster.listen-address=` (no gossip), its
//! data in a tempdir; every process, cgroup and file is removed on drop, pass or fail.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::alertmanager::Alertmanager;
use crate::support::cgroup::{Cgroup, hierarchies};
use crate::support::pod::Pod;
use crate::support::prometheus::{Prometheus, encode};
use crate::support::runc::hex_id;
use crate::support::webhook::{Notification, Receiver};
use crate::support::{Exporter, Spawned, listening_addresses, manifest_dir, ns_inode, wait_for};
use serde_json::{Value, json};

const RULES: &str = "deploy/prometheus/alerts.yaml";
const ALERTMANAGER_CONFIG: &str = "deploy/prometheus/alertmanager.yml";
const CRITICAL: &str = "NsexporterHostMountNamespaceFromContainer";
const WARNING: &str = "NsexporterUnexpectedHostNamespaceSharing";
const RUNBOOKS: &str = "https://github.com/nsexporter/nsexporter/blob/main/docs/alerts.md#";

/// A container process's child that enters namespaces of the container (the first argument's
/// pid, the types in the second) and stays in the host's for the rest: setns(2) on pid applies
/// to children, so it forks; the child moves itself into the container's cgroup (the remaining
/// arguments are its `cgroup.procs` files; `0` is the writer) before it joins the container's
/// cgroup namespace, outside of which that move would be refused on cgroup v2, and then execs
/// `sleep`. Its parent waits for it in the host's namespaces and outside the cgroup, as nsenter
/// waits for the child it forks.
const ENTER: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
target, types, procs = sys.argv[1], [t for t in sys.argv[2].split(",") if t], sys.argv[3:]
fds = {t: os.open("/proc/%s/ns/%s" % (target, t), os.O_RDONLY) for t in types}
def setns(t):
    if libc.setns(fds[t], 0) != 0:
        raise OSError(ctypes.get_errno(), "setns " + t)
if "pid" in fds:
    setns("pid")
child = os.fork()
if child == 0:
    try:
        for p in procs:
            with open(p, "w") as f:
                f.write("0")
        for t in types:
            if t != "pid":
                setns(t)
        os.execv("/bin/sleep", ["sleep", "1000"])
    except BaseException as e:
        print("escape:", e, file=sys.stderr)
        os._exit(1)
os.waitpid(child, 0)
"#;

/// One test at a time: each exporter scans the whole machine, and another test's escape, seen
/// by it, would be an alert of its instance.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `cgroup.procs` files of `path` on every hierarchy [`Cgroup::create`] makes it in.
fn procs_files(path: &str) -> Vec<String> {
    hierarchies()
        .iter()
        .map(|h| {
            h.join(path.trim_start_matches('/'))
                .join("cgroup.procs")
                .display()
                .to_string()
        })
        .collect()
}

/// A pod's container: `sleep` as its pid 1 in its own pid, net, uts, ipc, mount and cgroup
/// namespaces, in the pod's cgroup, named in `logs`. Dropped in field order: the processes,
/// then the cgroup.
struct PodContainer {
    main: Spawned,
    cgroup: Cgroup,
    pod: Pod,
    name: &'static str,
    id: String,
}

impl PodContainer {
    fn start(pod: Pod, name: &'static str, logs: &Path) -> PodContainer {
        let id = hex_id();
        let cgroup = Cgroup::create(&pod.cgroup(&id));
        pod.log_entry(logs, name, &id);
        // Its namespaces first, then its cgroup, as a runtime makes them (a process that
        // joined the cgroup in the host's namespaces would be a container sharing them); the
        // cgroup namespace last, so that its root is the container's cgroup.
        let script = "for f in \"$@\"; do echo 0 > \"$f\"; done; exec unshare --cgroup sleep 1000";
        let mut args = vec![
            "--pid", "--fork", "unshare", "--net", "--uts", "--ipc", "--mount", "sh", "-c", script,
            "sh",
        ];
        let procs = procs_files(&cgroup.path);
        args.extend(procs.iter().map(String::as_str));
        let main = Spawned::new("unshare", &args);
        let pid = main.child_running("sleep");
        wait_for(
            "the container's own namespaces",
            Duration::from_secs(10),
            || (ns_inode(pid, "cgroup")? != ns_inode(2, "cgroup")?).then_some(()),
        );
        PodContainer {
            main,
            cgroup,
            pod,
            name,
            id,
        }
    }

    fn pid(&self) -> i32 {
        self.main.child_running("sleep")
    }

    /// A process of this container that joins its namespaces of `types` and stays in the
    /// host's for the others (mount always): the escape. Returns the spawned parent and the
    /// escaped process's pid, once it runs `sleep`.
    fn escape(&self, types: &[&str]) -> (Spawned, i32) {
        assert!(!types.contains(&"mnt"));
        let target = self.pid().to_string();
        let types = types.join(",");
        let procs = procs_files(&self.cgroup.path);
        let mut args = vec!["-c", ENTER, target.as_str(), types.as_str()];
        args.extend(procs.iter().map(String::as_str));
        let parent = Spawned::new("python3", &args);
        let pid = parent.child_running("sleep");
        let host_mnt = ns_inode(2, "mnt").unwrap();
        wait_for(
            "the escaped process in the container's cgroup",
            Duration::from_secs(10),
            || {
                let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
                cgroup.contains(&self.id).then_some(())
            },
        );
        assert_eq!(
            ns_inode(pid, "mnt"),
            Some(host_mnt),
            "in the host's mount ns"
        );
        (parent, pid)
    }
}

/// The shipped Alertmanager config with the test's receiver in place of the shipped one, and
/// the timers said in the module header; route and inhibit rules as shipped.
fn alertmanager_config(receiver: &Receiver) -> String {
    let mut c = crate::support::yaml::file(ALERTMANAGER_CONFIG);
    let name = c["route"]["receiver"].clone();
    for (key, value) in [
        ("group_wait", "5s"),
        ("group_interval", "1s"),
        ("repeat_interval", "1h"),
    ] {
        assert!(
            c["route"][key].is_string(),
            "{ALERTMANAGER_CONFIG}: no route.{key}"
        );
        c["route"][key] = json!(value);
    }
    c["receivers"] = json!([{
        "name": name,
        "webhook_configs": [{"url": receiver.url(), "send_resolved": true}],
    }]);
    c.to_string()
}

/// The shipped rules, with `for:` of `alert` set to `0s` when given.
fn rules(without_for: Option<&str>) -> String {
    let text = std::fs::read_to_string(manifest_dir().join(RULES)).unwrap();
    let Some(alert) = without_for else {
        return text;
    };
    crate::support::prometheus::rules_without_for(alert)
}

/// Prometheus scraping `exporter` every second, evaluating `rules`, sending to `am`.
fn prometheus(exporter: &Exporter, rules: String, am: &Alertmanager) -> Prometheus {
    let config = json!({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["alerts.yaml"],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [format!("127.0.0.1:{}", am.port)]}]}]},
        "scrape_configs": [{
            "job_name": "nsexporter",
            "honor_labels": true,
            "static_configs": [{"targets": [format!("127.0.0.1:{}", exporter.port)]}],
        }],
    });
    Prometheus::start_with_files(
        &config.to_string(),
        &[("alerts.yaml".to_string(), rules)],
        &[],
    )
}

/// Checks that Alertmanager accepts traffic on loopback only: its API port, and no cluster
/// listener (TCP and UDP 9094 on every address by default).
fn assert_loopback_only(am: &Alertmanager) {
    let listening = listening_addresses(am.pid());
    assert_eq!(
        listening,
        [format!("tcp 127.0.0.1:{}", am.port)],
        "Alertmanager listens beyond its loopback API port"
    );
}

/// The alerts of `n` (a webhook payload) that concern container `id`, or, label-less, the
/// given alertname (the counter alerts, which carry no container).
fn concerning<'a>(n: &'a Notification, id: &str, alertname: &str) -> Vec<&'a Value> {
    n.body["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| {
            let l = &a["labels"];
            l["container_id"] == id || (l["alertname"] == alertname && l["container_id"].is_null())
        })
        .collect()
}

/// Waits for the next notification after the first `seen` that concerns `id`.
fn next_notification(
    receiver: &Receiver,
    seen: usize,
    id: &str,
    alertname: &str,
    what: &str,
) -> Notification {
    wait_for(what, Duration::from_secs(60), || {
        receiver
            .notifications()
            .into_iter()
            .filter(|n| !concerning(n, id, alertname).is_empty())
            .nth(seen)
    })
}

/// The Unix time of the rule group `group`'s last evaluation in Prometheus.
fn last_evaluation(prometheus: &Prometheus, group: &str) -> Option<String> {
    let rules = prometheus.api("/api/v1/rules");
    rules["data"]["groups"]
        .as_array()?
        .iter()
        .find(|g| g["name"] == group)
        .and_then(|g| g["lastEvaluation"].as_str())
        .map(str::to_string)
}

/// Waits until Prometheus has evaluated the alert rules `n` more times.
fn evaluations(prometheus: &Prometheus, n: usize) {
    let mut last = last_evaluation(prometheus, "nsexporter");
    let mut seen = 0;
    wait_for(
        &format!("{n} more rule evaluations"),
        Duration::from_secs(30),
        || {
            let now = last_evaluation(prometheus, "nsexporter");
            if now != last {
                seen += 1;
                last = now;
            }
            (seen >= n).then_some(())
        },
    );
}

/// Every series Prometheus recorded for `alertname` on `instance` since `seconds` ago (labels
/// without `alertstate`), with the number of evaluations it was pending or firing at: its own
/// history (`ALERTS`).
fn alert_history(
    prometheus: &Prometheus,
    alertname: &str,
    instance: &str,
    seconds: u64,
) -> Vec<(Value, usize)> {
    let query = format!(r#"ALERTS{{alertname="{alertname}", instance="{instance}"}}"#);
    let answer = prometheus.query_range(&query, seconds, 1);
    assert_eq!(answer["status"], "success", "{query}: {answer}");
    answer["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let mut labels = s["metric"].clone();
            labels.as_object_mut().map(|l| l.remove("alertstate"));
            (labels, s["values"].as_array().map_or(0, Vec::len))
        })
        .collect()
}

/// Seconds from `a` to `b`.
fn secs(a: Instant, b: Instant) -> f64 {
    b.duration_since(a).as_secs_f64()
}

#[test]
#[ignore = "needs root (unshare, setns, cgroups), prometheus and prometheus-alertmanager (scripts/install-test-deps)"]
fn a_host_mount_escape_reaches_the_receiver_once_and_resolves() {
    let _serial = serial();
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("containers");
    std::fs::create_dir(&logs).unwrap();
    let receiver = Receiver::start();
    let am = Alertmanager::start(&alertmanager_config(&receiver));
    assert_loopback_only(&am);

    let pod = Pod::new(format!("debug-{}", &hex_id()[..5]), "ops");
    let container = PodContainer::start(pod, "shell", &logs);
    let exporter = Exporter::start(&[
        "--scan.interval=500ms",
        &format!("--path.kubelet-logs={}", logs.display()),
    ]);
    let instance = format!("127.0.0.1:{}", exporter.port);
    let prometheus = prometheus(&exporter, rules(None), &am);
    // The pod is attributed, and is no finding, before anything happens.
    wait_for(
        "the pod's namespaces attributed",
        Duration::from_secs(20),
        || {
            let m = exporter.metrics();
            let named = !m
                .find(
                    "nsexporter_namespace_info",
                    &[("pod", &container.pod.name), ("type", "net")],
                )
                .is_empty();
            named.then_some(())
        },
    );
    wait_for(
        "Prometheus to scrape the exporter",
        Duration::from_secs(30),
        || {
            (!prometheus
                .query(&format!(r#"up{{instance="{instance}"}} == 1"#))
                .is_empty())
            .then_some(())
        },
    );
    assert!(
        exporter
            .metrics()
            .find(
                "nsexporter_sharing_findings_active",
                &[("container_id", &container.id)]
            )
            .is_empty(),
        "the container alone shares nothing"
    );

    // The escape: in the container's pid, net, uts, ipc and cgroup namespaces, the host's
    // mount namespace.
    let (escape, pid) = container.escape(&["pid", "net", "uts", "ipc", "cgroup"]);
    let escaped_at = Instant::now();
    let fired = next_notification(
        &receiver,
        0,
        &container.id,
        CRITICAL,
        "the firing notification",
    );
    let to_notify = secs(escaped_at, fired.at);
    let alerts = concerning(&fired, &container.id, CRITICAL);
    assert_eq!(fired.body["status"], "firing", "{}", fired.body);
    assert_eq!(alerts.len(), 1, "one alert in it: {}", fired.body);
    let alert = alerts[0];
    let l = &alert["labels"];
    for (key, want) in [
        ("alertname", CRITICAL),
        ("severity", "critical"),
        ("rule", "host_mount_from_container"),
        ("type", "mnt"),
        ("container", container.name),
        ("container_id", container.id.as_str()),
        ("pod", container.pod.name.as_str()),
        ("k8s_namespace", "ops"),
        ("instance", instance.as_str()),
    ] {
        assert_eq!(l[key], want, "label {key}: {}", fired.body);
    }
    let runbook = format!("{RUNBOOKS}{}", CRITICAL.to_lowercase());
    assert_eq!(alert["annotations"]["runbook_url"], runbook.as_str());
    let description = alert["annotations"]["description"].as_str().unwrap_or("");
    assert!(
        description.contains(&format!("in pod ops/{}", container.pod.name))
            && description.contains("container shell"),
        "{description}"
    );

    // The process exits: resolved.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for(
        "the escaped process to exit",
        Duration::from_secs(10),
        || (!Path::new(&format!("/proc/{pid}")).exists()).then_some(()),
    );
    let exited_at = Instant::now();
    let resolved = next_notification(
        &receiver,
        1,
        &container.id,
        CRITICAL,
        "the resolved notification",
    );
    let to_resolve = secs(exited_at, resolved.at);
    assert_eq!(resolved.body["status"], "resolved", "{}", resolved.body);
    let gone = concerning(&resolved, &container.id, CRITICAL);
    assert_eq!(gone.len(), 1, "{}", resolved.body);
    assert_eq!(gone[0]["labels"], alert["labels"], "the same alert");
    assert_eq!(gone[0]["status"], "resolved");

    // Nothing follows: its step in the findings counter stays in the rule's 5-minute window,
    // and must not page again without labels. Prometheus's own record of the alert after it
    // first fired holds only the labelled one; a label-less one before it (the blip between
    // the sweep's count and the scan's labels) must not have reached the receiver.
    evaluations(&prometheus, 3);
    let window = started.elapsed().as_secs() + 2;
    let history = alert_history(&prometheus, CRITICAL, &instance, window);
    let ours: std::collections::BTreeSet<String> = history
        .iter()
        .filter(|(l, _)| l["container_id"] == container.id.as_str())
        .map(|(l, _)| l.to_string())
        .collect();
    assert_eq!(ours.len(), 1, "one alert of the container: {history:?}");
    let labelless: Vec<&(Value, usize)> = history
        .iter()
        .filter(|(l, _)| l["container_id"].is_null())
        .collect();
    let labelless_after = prometheus.query(&format!(
        r#"count_over_time(ALERTS{{alertname="{CRITICAL}", instance="{instance}", container_id=""}}[{}s])"#,
        secs(fired.at, Instant::now()).ceil() as u64
    ));
    assert!(
        labelless_after.is_empty(),
        "a label-less alert after the labelled one: {labelless_after:?}"
    );
    let notifications: Vec<Notification> = receiver
        .notifications()
        .into_iter()
        .filter(|n| !concerning(n, &container.id, CRITICAL).is_empty())
        .collect();
    assert_eq!(
        notifications.len(),
        2,
        "firing, then resolved: {:?}",
        notifications.iter().map(|n| &n.body).collect::<Vec<_>>()
    );

    eprintln!(
        "escape to notification {to_notify:.2} s, exit to resolved {to_resolve:.2} s; \
         label-less blips before the labelled alert (not sent): {} evaluations; {:.1} s in all",
        labelless.iter().map(|(_, n)| n).sum::<usize>(),
        started.elapsed().as_secs_f64()
    );
    drop(escape);
    drop(prometheus);
    drop(exporter);
    drop(container);
}

#[test]
#[ignore = "needs root (unshare, setns, cgroups), prometheus and prometheus-alertmanager (scripts/install-test-deps)"]
fn a_node_shell_escape_pages_once_the_warnings_inhibited() {
    let _serial = serial();
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("containers");
    std::fs::create_dir(&logs).unwrap();
    let receiver = Receiver::start();
    let am = Alertmanager::start(&alertmanager_config(&receiver));
    assert_loopback_only(&am);

    let pod = Pod::new(format!("node-shell-{}", &hex_id()[..5]), "ops");
    let container = PodContainer::start(pod, "shell", &logs);
    let exporter = Exporter::start(&[
        "--scan.interval=500ms",
        &format!("--path.kubelet-logs={}", logs.display()),
    ]);
    let instance = format!("127.0.0.1:{}", exporter.port);
    let prometheus = prometheus(&exporter, rules(Some(WARNING)), &am);
    wait_for(
        "Prometheus to scrape the exporter",
        Duration::from_secs(30),
        || {
            (!prometheus
                .query(&format!(r#"up{{instance="{instance}"}} == 1"#))
                .is_empty())
            .then_some(())
        },
    );

    // `nsenter -t 1 -m -u -i -n -p` from the container: of its own namespaces only the
    // cgroup namespace is left.
    let (escape, pid) = container.escape(&["cgroup"]);
    let escaped_at = Instant::now();
    // Prometheus fires both: the critical one, and the warnings for net, uts, ipc and pid.
    let warned: Vec<String> = wait_for(
        "the critical alert and the warnings firing",
        Duration::from_secs(60),
        || {
            let alerts = prometheus.alerts();
            let mine = |name: &str| {
                alerts
                    .iter()
                    .filter(|(n, s, l)| {
                        n == name && s == "firing" && l["container_id"] == container.id.as_str()
                    })
                    .map(|(_, _, l)| l["type"].as_str().unwrap_or("").to_string())
                    .collect::<Vec<_>>()
            };
            let mut warned = mine(WARNING);
            warned.sort();
            let all = ["ipc", "net", "pid", "uts"]
                .iter()
                .all(|t| warned.iter().any(|w| w == t));
            (mine(CRITICAL) == ["mnt"] && all).then_some(warned)
        },
    );
    let fired = next_notification(
        &receiver,
        0,
        &container.id,
        CRITICAL,
        "the critical notification",
    );
    let to_notify = secs(escaped_at, fired.at);
    let alerts = concerning(&fired, &container.id, CRITICAL);
    assert_eq!(alerts.len(), 1, "{}", fired.body);
    assert_eq!(alerts[0]["labels"]["alertname"], CRITICAL);
    assert_eq!(alerts[0]["labels"]["severity"], "critical");
    assert_eq!(
        alerts[0]["annotations"]["runbook_url"],
        format!("{RUNBOOKS}{}", CRITICAL.to_lowercase()).as_str()
    );
    let critical_fingerprint = alerts[0]["fingerprint"].as_str().unwrap().to_string();

    // Alertmanager holds every warning, inhibited by the critical alert.
    let filter = encode(&format!(r#"container_id="{}""#, container.id));
    let inhibited = wait_for(
        "Alertmanager to hold the warnings as inhibited",
        Duration::from_secs(30),
        || {
            let held = am.api(&format!("/api/v2/alerts?filter={filter}"));
            let warnings: Vec<&Value> = held
                .as_array()?
                .iter()
                .filter(|a| a["labels"]["alertname"] == WARNING)
                .collect();
            let all = warnings.len() == warned.len()
                && warnings.iter().all(|a| {
                    a["status"]["state"] == "suppressed"
                        && a["status"]["inhibitedBy"] == json!([critical_fingerprint])
                });
            all.then_some(warnings.len())
        },
    );
    // The warnings' group has been flushed twice since: the first flush's pipeline (where a
    // notification would be sent) has finished, and sent nothing.
    let group = format!(r#"alertname=\"{WARNING}\""#);
    let flushes = |log: &str| {
        log.lines()
            .filter(|l| {
                l.contains("msg=flushing") && l.contains(&group) && l.contains(&container.id)
            })
            .count()
    };
    wait_for(
        "two flushes of the warnings' group",
        Duration::from_secs(30),
        || (flushes(&am.log()) >= 2).then_some(()),
    );
    let warnings_sent = |receiver: &Receiver| -> Vec<Value> {
        receiver
            .notifications()
            .iter()
            .flat_map(|n| concerning(n, &container.id, CRITICAL))
            .filter(|a| a["labels"]["alertname"] == WARNING)
            .cloned()
            .collect()
    };
    assert_eq!(warnings_sent(&receiver), Vec::<Value>::new());

    // The process exits: the critical alert resolves, and the warnings with it, unsent.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let exited_at = Instant::now();
    let resolved = next_notification(
        &receiver,
        1,
        &container.id,
        CRITICAL,
        "the resolved notification",
    );
    let to_resolve = secs(exited_at, resolved.at);
    assert_eq!(resolved.body["status"], "resolved", "{}", resolved.body);
    // The warnings resolved in the same evaluation: their group's next flush lists them all
    // resolved, and never sent, they are dropped. What that flush would send, it sends within
    // milliseconds of its log line; two seconds is ample.
    let resolved_flush = |log: &str| {
        log.lines().any(|l| {
            l.contains("msg=flushing")
                && l.contains(&group)
                && l.contains(&container.id)
                && l.contains("[resolved]")
                && !l.contains("[active]")
        })
    };
    wait_for(
        "a flush of the warnings' group with all of them resolved",
        Duration::from_secs(30),
        || resolved_flush(&am.log()).then_some(()),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(warnings_sent(&receiver), Vec::<Value>::new());
    let sent: Vec<String> = receiver
        .notifications()
        .iter()
        .filter(|n| !concerning(n, &container.id, CRITICAL).is_empty())
        .map(|n| n.body["status"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(sent, ["firing", "resolved"]);
    eprintln!(
        "node-shell escape: {inhibited} warnings ({}) inhibited; escape to notification \
         {to_notify:.2} s, exit to resolved {to_resolve:.2} s; {:.1} s in all",
        warned.join(", "),
        started.elapsed().as_secs_f64()
    );
    drop(escape);
    drop(prometheus);
    drop(exporter);
    drop(container);
}
