//! Declared against observed for Docker and Podman containers: each engine's OCI spec as the
//! exporter finds it (Docker through the shim's working directory, Podman in its store),
//! judged against what the containers' processes are in, and the privilege each spec declares
//! beside what is observed. A module of its own so that its lane can run beside the runc
//! matrix of `declared`.

use crate::declared::serial;
use std::time::Duration;

use crate::support::declared::{HOST, Intruder, Run, findings, scan_after, scans};
use crate::support::*;

/// Docker `--network host` and `--pid container:X`, and a Podman pod: declared right (no
/// undeclared finding; the host network's finding and the joined pid's are
/// `declared="true"`). Docker's spec is read through the shim's cwd (an empty `--path.run`),
/// Podman's from its store (`--path.podman`). A process moved into the host's net beside
/// each pod container then is a finding: the specs were read.
#[test]
#[ignore = "needs root, docker.io, podman, catatonit and busybox-static (scripts/install-test-deps)"]
fn docker_and_podman_declarations() {
    use crate::support::engines::with_busybox;
    let _guard = serial();
    let work = tempfile::tempdir().unwrap();
    let (docker, podman) = with_busybox(work.path());
    let run = Run::new();
    let e = Exporter::start(&[
        &format!("--path.run={}", run.path().display()),
        "--path.kubelet-logs=/nonexistent",
        &format!("--path.docker={}", docker.data_root().display()),
        &format!("--path.podman={}", podman.root().display()),
        "--scan.interval=1s",
        "--scan.sweep-interval=0s",
    ]);
    let d = |args: &[&str]| docker.docker(args);
    let web = d(&[
        "run",
        "-d",
        "--network",
        "host",
        "nsx-busybox",
        "sleep",
        "1000",
    ]);
    let x = d(&[
        "run",
        "-d",
        "--name",
        "nsx-x",
        "nsx-busybox",
        "sleep",
        "1000",
    ]);
    let joiner = d(&[
        "run",
        "-d",
        "--pid",
        "container:nsx-x",
        "nsx-busybox",
        "sleep",
        "1000",
    ]);
    let pod = podman.podman(&["pod", "create", "--name", "nsx-pod", "--network", "none"]);
    let pod_a = podman.podman(&[
        "run",
        "-d",
        "--pod",
        "nsx-pod",
        "nsx-busybox",
        "sleep",
        "1000",
    ]);
    let infra = podman.podman(&["pod", "inspect", "--format", "{{.InfraContainerID}}", &pod]);
    // Observed privilege, beside: each engine option's container, judged by the same scans.
    let sleeper = |engine: &dyn Fn(&[&str]) -> String, opts: &[&str]| {
        engine(
            &[
                &["run", "-d", "--network", "none"],
                opts,
                &["nsx-busybox", "sleep", "1000"],
            ]
            .concat(),
        )
    };
    let docker_run = |a: &[&str]| docker.docker(a);
    let podman_run = |a: &[&str]| podman.podman(a);
    use crate::privilege::{ALL, DEFAULT_CAPS};
    let privilege_rows: Vec<(&str, String, [&str; 6])> = vec![
        (
            "docker default",
            x.clone(),
            ["true", "true", "filter", "false", DEFAULT_CAPS, "baseline"],
        ),
        // No `docker --privileged`: dockerd asks runc for every capability it knows, and this
        // machine's root lacks some (SYS_RESOURCE), so runc fails to apply them.
        (
            "docker --cap-add SYS_ADMIN",
            sleeper(&docker_run, &["--cap-add", "SYS_ADMIN"]),
            [
                "true",
                "true",
                "filter",
                "false",
                "DAC_OVERRIDE,NET_RAW,SYS_ADMIN,MKNOD,SETFCAP",
                "privileged",
            ],
        ),
        (
            "docker seccomp=unconfined",
            sleeper(&docker_run, &["--security-opt", "seccomp=unconfined"]),
            [
                "true",
                "true",
                "disabled",
                "false",
                DEFAULT_CAPS,
                "baseline",
            ],
        ),
        (
            "docker no-new-privileges",
            sleeper(&docker_run, &["--security-opt", "no-new-privileges"]),
            ["true", "true", "filter", "true", DEFAULT_CAPS, "baseline"],
        ),
        (
            "docker --user 1000",
            sleeper(&docker_run, &["--user", "1000"]),
            ["true", "true", "filter", "false", "", "baseline"],
        ),
        (
            "podman --privileged",
            sleeper(&podman_run, &["--privileged"]),
            ["true", "true", "disabled", "false", ALL, "privileged"],
        ),
        (
            "podman --uidmap",
            sleeper(
                &podman_run,
                &["--uidmap", "0:200000:65536", "--gidmap", "0:200000:65536"],
            ),
            ["false", "false", "filter", "false", "", "baseline"],
        ),
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let want = (web.clone(), "net".to_string(), "true".to_string());
    let joined = (joiner.clone(), "pid".to_string(), "true".to_string());
    let joinee = (x.clone(), "pid".to_string(), "false".to_string());
    // A scan that saw all three: one that began before the last started sees fewer.
    let m = loop {
        let m = e.metrics();
        let host = findings(&m, "host_namespace");
        let cross = findings(&m, "cross_workload");
        if host.contains(&want) && cross.contains(&joined) && cross.contains(&joinee) {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{want:?} not in {host:?}, or {joined:?} and {joinee:?} not in {cross:?}\n{}",
            e.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let privilege_wrong = wait_for(
        "every engine container's privilege",
        Duration::from_secs(15),
        || {
            let w = crate::privilege::wrong_rows(&e.metrics(), &privilege_rows);
            w.iter().all(|r| !r.ends_with(": 0 series")).then_some(w)
        },
    );
    assert!(privilege_wrong.is_empty(), "{}", privilege_wrong.join("\n"));
    // Beside each observed level, the level Pod Security admission would give the spec the
    // exporter read for the container (Docker's through the shim's working directory, Podman's
    // from its store): the same in every row, as runc applied what dockerd and Podman asked.
    let admission = [
        "baseline",
        "privileged",
        "baseline",
        "baseline",
        // Root dropped, but the bounding set keeps the default capabilities and nothing
        // sets no_new_privs: baseline by the spec as observed.
        "baseline",
        "privileged",
        // Root mapped away in a user namespace; the default capabilities stay.
        "baseline",
    ];
    let mut admission_wrong = Vec::new();
    for ((name, id, want), admitted) in privilege_rows.iter().zip(admission) {
        let inspect = ["inspect", "--format", "{{.State.Pid}}", id.as_str()];
        let pid = match name.starts_with("docker") {
            true => docker.docker(&inspect),
            false => podman.podman(&inspect),
        };
        let declared = crate::privilege::admission_level(
            run.path(),
            &podman.root(),
            id,
            pid.trim().parse().unwrap(),
        );
        crate::privilege::side_by_side(name, want[5], declared, admitted, &mut admission_wrong);
    }
    assert!(admission_wrong.is_empty(), "{}", admission_wrong.join("\n"));
    // Judged on this test's containers only: others may run on the machine beside it.
    let ours = [&web, &x, &joiner, &pod_a, &infra];
    let of_ours = |rule: &str| -> Vec<(String, String, String)> {
        let mut f = findings(&m, rule);
        f.retain(|(id, _, _)| ours.contains(&id));
        f
    };
    for rule in [
        "undeclared_namespace",
        "user_namespace_not_applied",
        "privilege_exceeds_declared",
    ] {
        let found = of_ours(rule);
        assert!(
            found.is_empty(),
            "{rule}: {found:?} (web {web}, x {x}, joiner {joiner}, pod {pod_a}, infra {infra})\n{}",
            e.stderr()
        );
    }
    // Each spec was read: a process beside each moved into the host's net is undeclared.
    let pid_of = |inspect: String| inspect.trim().parse::<i32>().unwrap();
    let x_pid = pid_of(d(&["inspect", "--format", "{{.State.Pid}}", &x]));
    let a_pid = pid_of(podman.podman(&["inspect", "--format", "{{.State.Pid}}", &pod_a]));
    let _in_x = Intruder::enter_pid(x_pid, "net", HOST);
    let _in_a = Intruder::enter_pid(a_pid, "net", HOST);
    let m = scan_after(&e, scans(&e));
    let undeclared = findings(&m, "undeclared_namespace");
    for id in [&x, &pod_a] {
        assert!(
            undeclared.contains(&(id.clone(), "net".into(), "false".into())),
            "{id}: {undeclared:?}"
        );
    }
    assert!(!undeclared.iter().any(|f| f.0 == infra), "{undeclared:?}");
    drop(e);
    for c in [&web, &x, &joiner] {
        let _ = docker.try_docker(&["rm", "-f", c]);
    }
    for (name, id, _) in &privilege_rows[1..] {
        let _ = match name.starts_with("docker") {
            true => docker.try_docker(&["rm", "-f", id]),
            false => podman.try_podman(&["rm", "-f", "--time", "0", id]),
        };
    }
    podman.podman(&["pod", "rm", "-f", "nsx-pod"]);
}
