//! The container image as the DaemonSet runs it, with no container engine: the static binary
//! the Containerfile builds, alone in a rootfs, run by runc(8) with the pod's securityContext
//! (deploy/kubernetes/daemonset.yaml): uid and gid 65534, `capabilities: {drop: [ALL], add:
//! [SYS_PTRACE]}` as containerd applies it (bounding, effective and permitted, no ambient),
//! the file capability the Containerfile's `setcap` sets (read from it), no_new_privs
//! (`allowPrivilegeEscalation: false`), a read-only rootfs, the host's /proc read-only at
//! /host/proc, and its own pid, mount, ipc and uts namespaces.
//!
//! Kernel interfaces under test: proc_pid_ns(5) (readlink of another user's `ns/*` is a
//! PTRACE_MODE_READ_FSCREDS check, ptrace(2)), capabilities(7) (what survives execve for a
//! non-root uid) and the pid namespace of a procfs mount (a bind mount of the host's /proc
//! shows host pids from inside a container's pid namespace).
//!
//! With deploy/kubernetes/docker-podman-names, the same pod also gets DAC_READ_SEARCH and the
//! engines' container directories (tests/it/support/engines.rs runs a real dockerd and Podman).
//! With deploy/kubernetes/runtime-specs, the pod is the rendered DaemonSet itself (`kubectl
//! kustomize`), run against containerd's CRI pods (tests/it/support/cri.rs).
//!
//! The binary under test is the image's where it is static (`scripts/test` builds it so);
//! otherwise the first run builds the release binary with `+crt-static` into
//! `<target dir>/static`, which takes a few minutes, and later runs let cargo find it fresh.

use crate::support::cri;

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use crate::support::declared::{self, HOST, Intruder};
use crate::support::engines::{Dockerd, PodmanStore, busybox_tar};
use crate::support::runc::{Bundle, Container, hex_id, unique_id};
use crate::support::{Metrics, NS_TYPES, Spawned, http, ns_inode, wait_for};

/// Where the image puts the binary (the Containerfile's ENTRYPOINT).
const IMAGE_BIN: &str = "/usr/local/bin/nsexporter";
/// `runAsUser` and `runAsGroup`: nobody.
const NOBODY: u32 = 65534;
/// The other user whose processes the exporter must see.
const OTHER_UID: u32 = 12345;
/// The DaemonSet's `resources.limits.memory`.
const MEMORY_LIMIT: u64 = 64 << 20;

/// The image's binary: the one under test where it is static (`scripts/test` builds every
/// test with `+crt-static`), or else the Containerfile's build, `RUSTFLAGS='-C
/// target-feature=+crt-static' cargo build --release --locked --features ebpf --target
/// x86_64-unknown-linux-gnu`, into `static/` beside this test's target dir, built once per
/// test process; cargo itself decides whether anything changed.
fn static_binary() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let tested = crate::support::bin();
        if !has_interpreter(&std::fs::read(&tested).expect("read the binary under test")) {
            return tested;
        }
        let target_dir = Path::new(crate::support::BIN)
            .parent()
            .and_then(Path::parent)
            .expect("target dir")
            .join("static");
        let triple = "x86_64-unknown-linux-gnu";
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args(["build", "--release", "--locked", "--features", "ebpf"])
            .args(["--bin", "nsexporter"])
            .args(["--target", triple])
            .current_dir(crate::support::manifest_dir())
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .output()
            .expect("run cargo");
        assert!(
            out.status.success(),
            "static build failed (is the {triple} target installed?): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bin = target_dir.join(triple).join("release/nsexporter");
        assert!(
            !has_interpreter(&std::fs::read(&bin).unwrap()),
            "{} has a PT_INTERP program header: it is dynamically linked",
            bin.display()
        );
        bin
    })
}

/// Whether an ELF64 file asks for a program interpreter (ld.so). A static(-pie) binary does
/// not, so the kernel runs it from a rootfs that holds nothing else.
fn has_interpreter(elf: &[u8]) -> bool {
    assert_eq!(&elf[..5], b"\x7fELF\x02", "not an ELF64 file");
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    const PT_INTERP: u32 = 3;
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) == PT_INTERP
    })
}

/// The file capability the Containerfile's builder stage gives the binary: the argument of
/// its `setcap ... /out/nsexporter`, so that this test follows the image's definition.
fn containerfile_file_capability() -> String {
    let containerfile =
        std::fs::read_to_string(crate::support::manifest_dir().join("Containerfile"))
            .expect("read Containerfile");
    containerfile
        .lines()
        .find_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words
                .windows(3)
                .find(|w| w[0] == "setcap" && w[2] == "/out/nsexporter")
                .map(|w| w[1].to_string())
        })
        .expect("no `setcap CAPS /out/nsexporter` in the Containerfile")
}

/// The image's rootfs: only the binary, root-owned 0755, with the file capability `file_cap`
/// (none: an image from a builder that drops the xattr, e.g. the legacy docker builder).
fn image_bundle(file_cap: Option<&str>) -> Bundle {
    let bundle = Bundle::with_binary("nsexporter-image", static_binary(), IMAGE_BIN);
    if let Some(caps) = file_cap {
        let bin = bundle.rootfs().join(IMAGE_BIN.trim_start_matches('/'));
        let bin = bin.to_str().unwrap();
        let (ok, _, err) = crate::support::run("setcap", &[caps, bin]);
        assert!(ok, "setcap {caps} (libcap2-bin): {err}");
    }
    bundle
}

/// The pod spec around the image. The net namespace is left out (the host's, as with
/// `hostNetwork: true`) so that the test reaches the exporter on 127.0.0.1; the manifests
/// use pod networking. Which net namespace the exporter sits in changes nothing proven here:
/// it reads the host's processes through /host/proc, not through its own namespaces.
fn daemonset_pod(bundle: Bundle, port: u16) -> Bundle {
    daemonset_pod_with_args(bundle, port, &[])
}

/// [`daemonset_pod`] with `extra` arguments after the DaemonSet's, as a component adds them.
fn daemonset_pod_with_args(bundle: Bundle, port: u16, extra: &[&str]) -> Bundle {
    let listen = format!("--web.listen-address=127.0.0.1:{port}");
    let mut args = vec![
        IMAGE_BIN,
        "--path.procfs=/host/proc",
        &listen,
        "--scan.interval=200ms",
        "--log.format=logfmt",
    ];
    args.extend_from_slice(extra);
    bundle
        .args(&args)
        .user(NOBODY, NOBODY)
        .no_new_privileges(true)
        .readonly_rootfs(true)
        .bind_mount("/proc", "/host/proc", true)
        .namespaces(&[("pid", None), ("mnt", None), ("ipc", None), ("uts", None)])
        .cgroups_path(&format!(
            "/kubepods/burstable/pod{}/{}",
            unique_id("nsexporter"),
            hex_id()
        ))
        .memory_limit(MEMORY_LIMIT)
}

/// The image running as a pod, scraped over the host's loopback.
struct Pod {
    container: Container,
    port: u16,
}

impl Pod {
    fn start(bundle: Bundle, port: u16) -> Pod {
        let container = Container::run(bundle, &unique_id("nsexporter-image"));
        let pod = Pod { container, port };
        wait_for("the exporter to be ready", Duration::from_secs(20), || {
            let status = pod
                .container
                .state()
                .and_then(|s| s["status"].as_str().map(String::from));
            assert_eq!(
                status.as_deref(),
                Some("running"),
                "the container stopped: {}",
                pod.container.log()
            );
            pod.get("/readyz").filter(|r| r.status == 200).map(|_| ())
        });
        pod
    }

    fn get(&self, path: &str) -> Option<crate::support::HttpResponse> {
        http(self.port, "GET", path, &[]).ok()
    }

    fn metrics(&self) -> Metrics {
        let r = self.get("/metrics").expect("scrape /metrics");
        assert_eq!(r.status, 200, "{}", r.text());
        Metrics::parse(&r.text())
    }

    /// The exposition once at least `scans` scans are in it.
    fn metrics_after(&self, scans: f64) -> Metrics {
        wait_for(&format!("{scans} scans"), Duration::from_secs(20), || {
            let m = self.metrics();
            (m.value("nsexporter_scans_total", &[])? >= scans).then_some(m)
        })
    }
}

/// Processes of [`OTHER_UID`] in a new net namespace: a non-dumpable perl (prctl(2)
/// PR_SET_DUMPABLE 0, as sshd and setuid programs are; the entries under its /proc/PID then
/// belong to root, the directory itself does not) and its child `sleep`. Returns them and
/// the pids (perl, sleep).
fn other_user_processes() -> (Spawned, i32, i32) {
    let uid = format!("--reuid={OTHER_UID}");
    let gid = format!("--regid={OTHER_UID}");
    // 157 is prctl on x86_64, 4 is PR_SET_DUMPABLE. The forked child's exec makes it
    // dumpable again.
    let script = r#"syscall(157, 4, 0, 0, 0, 0) == 0 or die "prctl: $!";
        if (!fork) { exec "sleep", "1000" or die "exec: $!" } sleep 1000"#;
    let spawned = Spawned::new(
        "unshare",
        &[
            "--net",
            "--",
            "setpriv",
            &uid,
            &gid,
            "--clear-groups",
            "perl",
            "-e",
            script,
        ],
    );
    // The child exists only once the prctl is done.
    let sleep = spawned.child_running("sleep");
    let perl = spawned.running("perl");
    let perl_owner = std::fs::metadata(format!("/proc/{perl}/ns")).unwrap().uid();
    assert_eq!(perl_owner, 0, "perl {perl} did not become non-dumpable");
    (spawned, perl, sleep)
}

/// Pids in /proc now, with their owners.
fn host_processes() -> Vec<(i32, u32)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse().ok()?;
            Some((pid, e.metadata().ok()?.uid()))
        })
        .collect()
}

/// Processes whose namespace links even this test, as root with every capability, cannot
/// read: a protected init here (EACCES on /proc/1/ns/*).
fn unreadable_to_root() -> Vec<i32> {
    host_processes()
        .into_iter()
        .map(|(pid, _)| pid)
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/net"))
                .is_err_and(|e| e.kind() == std::io::ErrorKind::PermissionDenied)
        })
        .collect()
}

#[test]
#[ignore = "needs root, runc and setcap (scripts/install-test-deps): the image's static binary in a runc container"]
fn image_with_sys_ptrace_sees_every_users_namespaces() {
    let (_others, perl, sleep) = other_user_processes();
    let other_net = ns_inode(perl, "net").unwrap();
    assert_eq!(ns_inode(sleep, "net"), Some(other_net));
    let port = crate::support::free_port();
    let file_cap = containerfile_file_capability();
    let bundle = daemonset_pod(image_bundle(Some(&file_cap)), port)
        .capabilities(&["SYS_PTRACE"])
        .ambient(&[]);
    let pod = Pod::start(bundle, port);

    // The capability reached the process through the file capability alone (raised to
    // effective by the exporter itself where the file grants it permitted only).
    let status = std::fs::read_to_string(format!("/proc/{}/status", pod.container.pid())).unwrap();
    let cap = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap()
            .to_string()
    };
    let sys_ptrace = format!("{:016x}", 1u64 << 19);
    assert_eq!(cap("CapEff:"), sys_ptrace, "{status}");
    assert_eq!(cap("CapAmb:"), format!("{:016x}", 0), "{status}");

    let m = pod.metrics_after(3.0);
    // The host's namespaces, as kthreadd shows them (init's links are unreadable here).
    for ns_type in NS_TYPES {
        let host = m.find(
            "nsexporter_namespace_info",
            &[("type", ns_type), ("host", "true")],
        );
        assert_eq!(host.len(), 1, "{ns_type}: {host:?}");
        assert_eq!(
            host[0].labels["inode"],
            ns_inode(2, ns_type).unwrap().to_string(),
            "host {ns_type} namespace"
        );
    }
    // The other user's net namespace, both processes, the non-dumpable one included.
    let inode = other_net.to_string();
    let other = [("type", "net"), ("inode", inode.as_str())];
    assert_eq!(
        m.value(
            "nsexporter_namespace_info",
            &[other[0], other[1], ("host", "false")]
        ),
        Some(1.0),
        "uid {OTHER_UID}'s net namespace {other_net} is missing"
    );
    assert_eq!(m.value("nsexporter_namespace_processes", &other), Some(2.0));
    // Its own pid namespace, seen from outside through the host's /proc.
    let own_pid = ns_inode(pod.container.pid(), "pid").unwrap().to_string();
    assert_eq!(
        m.value(
            "nsexporter_namespace_processes",
            &[("type", "pid"), ("inode", own_pid.as_str())]
        ),
        Some(1.0)
    );

    // Every process of the host, within what other tests start and stop meanwhile.
    wait_for(
        "a process count close to the host's",
        Duration::from_secs(20),
        || {
            let before = host_processes().len() as f64;
            let seen = pod.metrics().value("nsexporter_processes", &[])?;
            let after = host_processes().len() as f64;
            let (low, high) = (before.min(after), before.max(after));
            (seen >= low * 0.95 - 5.0 && seen <= high * 1.05 + 5.0).then_some(())
        },
    );

    // Denied exactly what root is denied (here: the protected init, pid 1): counted once
    // each, when first denied, and standing in every scan since; and said once.
    let denied = unreadable_to_root();
    let m = pod.metrics_after(5.0);
    let scans = m.value("nsexporter_scans_total", &[]).unwrap();
    let errors = |reason| {
        m.value("nsexporter_scan_errors_total", &[("reason", reason)])
            .unwrap_or(0.0)
    };
    assert_eq!(
        (
            errors("permission_denied"),
            m.value(
                "nsexporter_scan_errors_standing",
                &[("reason", "permission_denied")]
            )
        ),
        (denied.len() as f64, Some(denied.len() as f64)),
        "{scans} scans; root itself cannot read {denied:?}"
    );
    assert_eq!(errors("io_error"), 0.0);
    assert_eq!(errors("parse_error"), 0.0);
    let log = pod.container.log();
    // Other warnings (sharing findings about other tests' containers) are not about this.
    let said: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("level=warn") && l.contains("message=\"scan errors"))
        .collect();
    assert_eq!(said.len(), usize::from(!denied.is_empty()), "{log}");
    if let Some(line) = said.first() {
        assert!(line.contains("reason=permission_denied"), "{line}");
        let pid = line
            .split_once("first=\"/host/proc/")
            .and_then(|(_, rest)| rest.split('/').next()?.parse::<i32>().ok());
        assert!(pid.is_some_and(|p| denied.contains(&p)), "{line}");
    }
    eprintln!(
        "with SYS_PTRACE: {scans} scans of {} processes, permission_denied {} (root is denied \
         {denied:?})",
        m.value("nsexporter_processes", &[]).unwrap(),
        errors("permission_denied"),
    );
    pod.container.remove();
}

/// `capabilities: {drop: [ALL]}` without the `add`: the image still starts (its file
/// capability is permitted-only, so execve does not need it in the bounding set), sees only
/// its own processes' namespaces, and says so once.
#[test]
#[ignore = "needs root, runc and setcap (scripts/install-test-deps): the image's static binary in a runc container"]
fn image_without_sys_ptrace_degrades_and_says_so_once() {
    let (_others, perl, _) = other_user_processes();
    let other_net = ns_inode(perl, "net").unwrap();
    let before: BTreeSet<(i32, u32)> = host_processes().into_iter().collect();
    let port = crate::support::free_port();
    let file_cap = containerfile_file_capability();
    let bundle = daemonset_pod(image_bundle(Some(&file_cap)), port).capabilities(&[]);
    let pod = Pod::start(bundle, port);
    let status = std::fs::read_to_string(format!("/proc/{}/status", pod.container.pid())).unwrap();
    assert!(status.contains("CapEff:\t0000000000000000"), "{status}");

    let m = pod.metrics_after(8.0);
    let after: BTreeSet<(i32, u32)> = host_processes().into_iter().collect();
    // Processes of other users that lived through every scan: each was denied, counted once,
    // and stands denied in the last scan as in the one before.
    let stayed = before
        .intersection(&after)
        .filter(|(_, uid)| *uid != NOBODY)
        .count();
    let scans = m.value("nsexporter_scans_total", &[]).unwrap();
    let denied = |name| m.value(name, &[("reason", "permission_denied")]).unwrap();
    let (counted, standing) = (
        denied("nsexporter_scan_errors_total"),
        denied("nsexporter_scan_errors_standing"),
    );
    assert!(
        counted >= stayed as f64 && standing >= stayed as f64 && counted < scans * stayed as f64,
        "{counted} denied, {standing} standing, in {scans} scans; {stayed} other users' processes throughout"
    );
    let inode = other_net.to_string();
    assert!(
        m.find("nsexporter_namespace_info", &[("inode", inode.as_str())])
            .is_empty(),
        "uid {OTHER_UID}'s namespace is visible without CAP_SYS_PTRACE"
    );
    // Root's kthreadd is another user's process too: no host namespace is known, and the
    // exporter says so rather than reporting no host sharing.
    assert_eq!(
        m.value("nsexporter_host_namespaces_source", &[("source", "none")]),
        Some(1.0)
    );
    for path in ["/healthz", "/readyz"] {
        let r = pod.get(path).expect(path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    let log = pod.container.log();
    let warned = log
        .lines()
        .filter(|l| l.contains("level=warn") && l.contains("reason=permission_denied"))
        .count();
    assert_eq!(warned, 1, "{log}");
    eprintln!(
        "without capabilities: {scans} scans of {} processes, permission_denied {counted} ({standing} standing), \
         {stayed} other users' processes throughout, host namespaces known: {}",
        m.value("nsexporter_processes", &[]).unwrap(),
        m.find("nsexporter_namespace_info", &[("host", "true")])
            .len(),
    );
    pod.container.remove();
}

/// Why the Containerfile sets the capability permitted-only: with the effective bit too, a
/// container whose bounding set lacks SYS_PTRACE cannot exec the binary at all
/// (capabilities(7): a capability-dumb binary whose file permitted set is not fully granted
/// fails execve with EPERM).
#[test]
#[ignore = "needs root, runc and setcap (scripts/install-test-deps): the image's static binary in a runc container"]
fn effective_file_capability_would_not_start_without_sys_ptrace() {
    let port = crate::support::free_port();
    let bundle = daemonset_pod(image_bundle(Some("cap_sys_ptrace+ep")), port).capabilities(&[]);
    let err = match Container::try_run(bundle, &unique_id("nsexporter-nocap")) {
        Ok(c) => panic!("started without SYS_PTRACE: {}", c.log()),
        Err(e) => e,
    };
    assert!(err.contains("operation not permitted"), "{err}");
}

/// Why the Containerfile sets a file capability at all: without it, SYS_PTRACE added the
/// way containerd adds it (no ambient) does not survive the execve of a uid 65534 process.
#[test]
#[ignore = "needs root, runc and setcap (scripts/install-test-deps): the image's static binary in a runc container"]
fn without_the_file_capability_sys_ptrace_is_lost_at_exec() {
    let (_others, perl, _) = other_user_processes();
    let inode = ns_inode(perl, "net").unwrap().to_string();
    let port = crate::support::free_port();
    let bundle = daemonset_pod(image_bundle(None), port)
        .capabilities(&["SYS_PTRACE"])
        .ambient(&[]);
    let pod = Pod::start(bundle, port);
    let status = std::fs::read_to_string(format!("/proc/{}/status", pod.container.pid())).unwrap();
    assert!(status.contains("CapPrm:\t0000000000000000"), "{status}");
    let m = pod.metrics_after(3.0);
    assert!(
        m.find("nsexporter_namespace_info", &[("inode", inode.as_str())])
            .is_empty(),
        "uid {OTHER_UID}'s namespace is visible without the file capability"
    );
    pod.container.remove();
}

/// What deploy/kubernetes/docker-podman-names adds, as (host directory, mount path) and flags;
/// checked against its kustomization.yaml.
const NAMES_MOUNTS: [(&str, &str); 2] = [
    (
        "/var/lib/docker/containers",
        "/host/var/lib/docker/containers",
    ),
    (
        "/var/lib/containers/storage/overlay-containers",
        "/host/var/lib/containers/storage/overlay-containers",
    ),
];
const NAMES_FLAGS: [&str; 2] = [
    "--path.docker=/host/var/lib/docker",
    "--path.podman=/host/var/lib/containers/storage",
];

/// The docker-podman-names component as the DaemonSet runs the image with it: the engines'
/// container directories read-only where it mounts them, its flags, and DAC_READ_SEARCH added
/// as containerd adds it (bounding, effective, permitted; no ambient). Real Docker and Podman
/// containers on the host network are named on their findings, and the capability is
/// effective only while the engines' files are read: the main thread's stays SYS_PTRACE
/// alone. Without it (the base DaemonSet's capabilities, the same mounts) the root-only files
/// are unreadable: counted as permission_denied and said once per source.
#[test]
#[ignore = "needs root, runc, setcap, docker.io, podman and catatonit (scripts/install-test-deps): the image's static binary in a runc container"]
fn image_with_the_names_component_names_docker_and_podman_containers() {
    let component = std::fs::read_to_string(
        crate::support::manifest_dir()
            .join("deploy/kubernetes/docker-podman-names/kustomization.yaml"),
    )
    .unwrap();
    for (host, at) in NAMES_MOUNTS {
        assert!(component.contains(&format!("path: {host}\n")), "{host}");
        assert!(component.contains(&format!("mountPath: {at}\n")), "{at}");
    }
    for flag in NAMES_FLAGS {
        assert!(component.contains(&format!("value: {flag}\n")), "{flag}");
    }
    assert!(component.contains("value: DAC_READ_SEARCH\n"));

    let work = tempfile::tempdir().unwrap();
    let tar = busybox_tar(work.path());
    let tar = tar.to_str().unwrap();
    let docker = Dockerd::start();
    docker.docker(&["import", tar, "nsx-busybox"]);
    let web = docker.docker(&[
        "run",
        "--detach",
        "--network",
        "host",
        "--name",
        "nsx-image-web",
        "nsx-busybox",
        "sleep",
        "1000",
    ]);
    let podman = PodmanStore::new();
    podman.podman(&["import", tar, "nsx-busybox"]);
    let pm = podman.podman(&[
        "run",
        "--detach",
        "--network",
        "host",
        "--name",
        "nsx-image-pm",
        "nsx-busybox",
        "sleep",
        "1000",
    ]);
    // The engines' directories, as the node has them.
    let sources = [
        docker.data_root().join("containers"),
        podman.root().join("overlay-containers"),
    ];
    let pod = |caps: &[&str]| {
        let port = crate::support::free_port();
        let file_cap = containerfile_file_capability();
        let mut bundle = daemonset_pod_with_args(image_bundle(Some(&file_cap)), port, &NAMES_FLAGS)
            .capabilities(caps)
            .ambient(&[]);
        for (source, (_, at)) in sources.iter().zip(NAMES_MOUNTS) {
            bundle = bundle.bind_mount(source.to_str().unwrap(), at, true);
        }
        Pod::start(bundle, port)
    };
    let named = |m: &Metrics, id: &str| {
        m.find(
            "nsexporter_sharing_findings_active",
            &[
                ("container_id", id),
                ("type", "net"),
                ("rule", "host_namespace"),
            ],
        )
        .first()
        .map(|s| s.labels["container"].clone())
    };
    let errors = |m: &Metrics, source: &str, reason: &str| {
        m.value(
            "nsexporter_name_source_errors_total",
            &[("source", source), ("reason", reason)],
        )
        .unwrap()
    };

    let with = pod(&["SYS_PTRACE", "DAC_READ_SEARCH"]);
    let m = wait_for("both containers named", Duration::from_secs(20), || {
        let m = with.metrics();
        (named(&m, &web).as_deref() == Some("nsx-image-web")
            && named(&m, &pm).as_deref() == Some("nsx-image-pm"))
        .then_some(m)
    });
    for source in ["docker", "podman"] {
        for reason in ["permission_denied", "parse_error", "too_large", "io_error"] {
            assert_eq!(
                errors(&m, source, reason),
                0.0,
                "{source} {reason}: {}",
                with.container.log()
            );
        }
    }
    permitted_ptrace_and_read_search_effective_ptrace(with.container.pid());
    // The same capability lets the fd pass list every user's /proc/PID/fd.
    let skipped = |m: &Metrics| m.value("nsexporter_fd_scan_skipped_processes", &[]);
    assert_eq!(skipped(&m), Some(0.0), "{}", with.container.log());
    with.container.remove();

    let without = pod(&["SYS_PTRACE"]);
    let m = wait_for("both sources denied", Duration::from_secs(20), || {
        let m = without.metrics();
        (errors(&m, "docker", "permission_denied") >= 1.0
            && errors(&m, "podman", "permission_denied") >= 1.0)
            .then_some(m)
    });
    assert_eq!(named(&m, &web).as_deref(), Some(""), "unnamed, by id only");
    // Without it, other users' fds are skipped and counted, not failed every pass.
    assert!(
        skipped(&m).is_some_and(|n| n > 0.0),
        "{}",
        without.container.log()
    );
    let log = without.container.log();
    let said = log
        .lines()
        .filter(|l| l.contains("level=warn") && l.contains("fds of other users"))
        .count();
    assert_eq!(said, 1, "{log}");
    for source in ["docker", "podman"] {
        let said = log
            .lines()
            .filter(|l| {
                l.contains("level=warn")
                    && l.contains("container names unread")
                    && l.contains(&format!("source={source}"))
            })
            .count();
        assert_eq!(said, 1, "{source}: {log}");
    }
    without.container.remove();
}

/// The objects `kubectl kustomize` renders for deploy/kubernetes with `components` (folders
/// of it), as JSON values: what `kubectl apply -k` of an overlay would send.
fn rendered(components: &[&str]) -> Vec<serde_json::Value> {
    let overlay = tempfile::tempdir().unwrap();
    // kustomize takes only relative paths to other kustomizations: up to / and down again.
    let up: PathBuf = overlay
        .path()
        .canonicalize()
        .unwrap()
        .components()
        .skip(1)
        .map(|_| "..")
        .collect();
    let base = crate::support::manifest_dir()
        .join("deploy/kubernetes")
        .canonicalize()
        .unwrap();
    let base = up.join(base.strip_prefix("/").unwrap());
    let components: Vec<String> = components
        .iter()
        .map(|c| base.join(c).display().to_string())
        .collect();
    std::fs::write(
        overlay.path().join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
             resources: [{}]\ncomponents: [{}]\n",
            base.display(),
            components.join(", ")
        ),
    )
    .unwrap();
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(overlay.path())
        .output()
        .expect("kubectl (scripts/install-test-deps)");
    assert!(
        out.status.success(),
        "kubectl kustomize: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split("\n---\n")
        .map(|doc| crate::support::yaml::to_json("kubectl kustomize", doc))
        .collect()
}

/// The image run as the rendered DaemonSet runs it, nothing restated: its container's args
/// (then the test's listen address and a shorter scan interval), user and group,
/// `capabilities.add` as containerd applies it (bounding, effective, permitted; no ambient),
/// no_new_privs, read-only root, and each volume mounted where it says: a hostPath as a bind
/// mount of `host(path)`, read-only as the mount says; a ConfigMap as its files. Its own pid,
/// ipc and mount namespaces (`hostPID` and `hostIPC` false); the network as in
/// [`daemonset_pod`].
fn rendered_daemonset_pod(
    objects: &[serde_json::Value],
    port: u16,
    host: impl Fn(&str) -> PathBuf,
) -> Bundle {
    use std::os::unix::fs::PermissionsExt;
    let find = |kind: &str, name: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind}/{name} rendered"))
    };
    let pod = &find("DaemonSet", "nsexporter")["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], false);
    assert_eq!(pod["hostIPC"], false);
    let c = &pod["containers"][0];
    let context = &c["securityContext"];
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    let listen = format!("--web.listen-address=127.0.0.1:{port}");
    let mut args = vec![IMAGE_BIN.to_owned()];
    args.extend(strings(&c["args"]));
    args.extend([listen, "--scan.interval=500ms".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let caps = strings(&context["capabilities"]["add"]);
    let caps: Vec<&str> = caps.iter().map(String::as_str).collect();
    let id = |key: &str| context[key].as_u64().unwrap() as u32;
    let file_cap = containerfile_file_capability();
    let mut bundle = image_bundle(Some(&file_cap))
        .args(&args)
        .user(id("runAsUser"), id("runAsGroup"))
        .capabilities(&caps)
        .ambient(&[])
        .no_new_privileges(context["allowPrivilegeEscalation"] == false)
        .readonly_rootfs(context["readOnlyRootFilesystem"] == true)
        .namespaces(&[("pid", None), ("mnt", None), ("ipc", None), ("uts", None)])
        .cgroups_path(&format!(
            "/kubepods/burstable/pod{}/{}",
            unique_id("nsexporter"),
            hex_id()
        ))
        .memory_limit(MEMORY_LIMIT);
    for mount in c["volumeMounts"].as_array().unwrap() {
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap();
        let at = mount["mountPath"].as_str().unwrap();
        let readonly = mount["readOnly"] == true;
        let source = if let Some(path) = volume["hostPath"]["path"].as_str() {
            host(path)
        } else if let Some(name) = volume["configMap"]["name"].as_str() {
            // The kubelet's projection: one world-readable file per key.
            let dir = bundle.dir().join(format!("volume-{name}"));
            std::fs::create_dir(&dir).unwrap();
            for (key, text) in find("ConfigMap", name)["data"].as_object().unwrap() {
                std::fs::write(dir.join(key), text.as_str().unwrap()).unwrap();
                std::fs::set_permissions(dir.join(key), PermissionsExt::from_mode(0o644)).unwrap();
            }
            std::fs::set_permissions(&dir, PermissionsExt::from_mode(0o755)).unwrap();
            dir
        } else {
            panic!("no stand-in for volume {volume}");
        };
        bundle = bundle.bind_mount(source.to_str().unwrap(), at, readonly);
    }
    bundle
}

/// The runtime-specs component as the DaemonSet runs the image with it, against containerd's
/// CRI pods (driven over gRPC as kubelet drives them): the rendered base plus the component,
/// each hostPath under `/run` standing in for by the private containerd's `/run`-shaped dir.
/// A `hostNetwork` pod's `host_namespace` findings are `declared="true"`, and a process in a
/// plain pod's app container (its cgroup and namespaces) that joined the host's network
/// namespace is an `undeclared_namespace` finding; the specs are read with no error, and
/// DAC_READ_SEARCH is effective only while they are read: the main thread's stays SYS_PTRACE
/// alone. With the base alone, as shipped before, the same findings are `declared="unknown"`.
#[test]
#[ignore = "needs root, runc, setcap, kubectl, containerd, containernetworking-plugins and busybox-static (scripts/install-test-deps): the image's static binary in a runc container"]
fn image_with_the_runtime_specs_component_judges_cri_pods_by_their_specs() {
    let with_specs = rendered(&["runtime-specs"]);
    let base = rendered(&[]);
    let mut c = cri::Containerd::start();
    let host_net = c.run_pod("agent-0", "infra", cri::PodKind::HostNetwork, &["app"]);
    let plain = c.run_pod("web-0", "shop", cri::PodKind::Plain, &["app"]);
    let web = plain.container("app").to_owned();
    let _intruder = Intruder::enter_pid(c.pid(&web), "net", HOST);
    // The kubelet's log directory, empty: the names come from the specs.
    let logs = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        logs.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let host = |path: &str| -> PathBuf {
        if let Some(rel) = path.strip_prefix("/run/") {
            // DirectoryOrCreate: CRI-O's directory, which this node lacks, is made empty.
            let dir = c.run_dir().join(rel);
            std::fs::create_dir_all(&dir).unwrap();
            dir
        } else if path == "/var/log/containers" {
            logs.path().to_owned()
        } else {
            assert_eq!(path, "/proc", "no stand-in for hostPath {path}");
            PathBuf::from(path)
        }
    };
    let declared_net = |m: &Metrics, id: &str| {
        declared::findings(m, "host_namespace")
            .into_iter()
            .find(|(c, t, _)| c == id && t == "net")
            .map(|f| f.2)
    };
    let host_net_ids = [host_net.sandbox_id.as_str(), host_net.container("app")];

    let port = crate::support::free_port();
    let pod = Pod::start(rendered_daemonset_pod(&with_specs, port, host), port);
    let m = wait_for("the specs judged", Duration::from_secs(20), || {
        let m = pod.metrics();
        let judged = host_net_ids
            .iter()
            .all(|id| declared_net(&m, id).as_deref() == Some("true"))
            && declared::findings(&m, "undeclared_namespace").contains(&(
                web.clone(),
                "net".into(),
                "false".into(),
            ));
        judged.then_some(m)
    });
    for reason in ["permission_denied", "parse_error", "too_large", "io_error"] {
        let errors = m.value(
            "nsexporter_name_source_errors_total",
            &[("source", "spec"), ("reason", reason)],
        );
        assert_eq!(errors, Some(0.0), "{reason}: {}", pod.container.log());
    }
    permitted_ptrace_and_read_search_effective_ptrace(pod.container.pid());
    pod.container.remove();

    let port = crate::support::free_port();
    let pod = Pod::start(rendered_daemonset_pod(&base, port, host), port);
    let m = wait_for(
        "the findings without specs",
        Duration::from_secs(20),
        || {
            let m = pod.metrics();
            host_net_ids
                .iter()
                .all(|id| declared_net(&m, id).is_some())
                .then_some(m)
        },
    );
    for id in host_net_ids {
        assert_eq!(declared_net(&m, id).as_deref(), Some("unknown"), "{id}");
    }
    assert!(
        declared::findings(&m, "undeclared_namespace").is_empty(),
        "{}",
        pod.container.log()
    );
    pod.container.remove();
}

/// The exporter's main thread as the DaemonSet grants run it: `SYS_PTRACE` and
/// `DAC_READ_SEARCH` permitted, only `SYS_PTRACE` effective (the other is raised by the
/// threads that read, while they read).
fn permitted_ptrace_and_read_search_effective_ptrace(pid: i32) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let cap = |name: &str| {
        let hex = status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap();
        u64::from_str_radix(hex, 16).unwrap()
    };
    let (sys_ptrace, dac_read_search) = (1u64 << 19, 1u64 << 2);
    assert_eq!(cap("CapPrm:"), sys_ptrace | dac_read_search, "{status}");
    assert_eq!(cap("CapEff:"), sys_ptrace, "{status}");
}
