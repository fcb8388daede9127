//! containerd 1.6 (Debian's) with its CRI plugin, private to the test, driven over its CRI gRPC
//! socket as kubelet drives it: RunPodSandbox, CreateContainer, StartContainer, and
//! StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox on drop.
//!
//! The containerd has its own root, state, sockets and config; its state dir is
//! `<dir>/run/containerd`, so `<dir>/run` is laid out like the host's `/run` and is what the
//! exporter's `--path.run` reads (`containerd/io.containerd.runtime.v2.task/k8s.io/<id>/`).
//! The CRI plugin runs with `restrict_oom_score_adj` (root here lacks CAP_SYS_RESOURCE: runc
//! cannot write a negative `oom_score_adj`), cgroupfs (`SystemdCgroup = false`), a runc root
//! under the state dir, and CNI `bridge` + `host-local` on a bridge of its own with `ipMasq`
//! off (no iptables rule is made) and the IPAM's data in the test's dir.
//!
//! The image (sandbox and app alike) is a `docker save`-format tar of Debian's static busybox,
//! built here and loaded with `ctr -n k8s.io images import`: no registry, no dockerd.
//!
//! On drop, pass or fail: every pod is stopped and removed, containerd is stopped, and what
//! containerd leaves behind (recorded in machine-recipes.md) is removed: the pods'
//! `kubepods/…/pod<uid>` cgroups on every hierarchy (kubelet's job on a node) and the parents
//! this process made, the bridge, the CNI result cache entries of these pods under
//! `/var/lib/cni` (and `/var/lib/cni`, `/run/containerd/s` themselves where this made them and
//! they are empty); the runc root is under the dir. Drop waits for the shims to exit and for
//! the pods' network bind mounts to be gone, and fails naming what is left; mounts under the
//! dir are unmounted before it is removed.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::wait_for;

/// The CRI v1 messages and client, generated from cri-api's `api.proto` (crates/cri-client).
/// Fields kubelet does not set for these pods are left at their defaults, which proto3 does not
/// send: the bytes on the wire are those of the fields set.
pub use cri_client::v1;
use v1::NamespaceMode;
use v1::runtime_service_client::RuntimeServiceClient;

/// The image every pod here runs, as sandbox (its entrypoint sleeps) and as app.
pub const IMAGE: &str = "nsx.local/busybox:1";

/// A synchronous CRI RuntimeService client over a Unix socket.
pub struct RuntimeClient {
    rt: tokio::runtime::Runtime,
    client: RuntimeServiceClient<tonic::transport::Channel>,
}

impl RuntimeClient {
    pub fn connect(socket: &Path) -> Result<RuntimeClient, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let socket = socket.to_owned();
        let channel = rt
            .block_on(async move {
                // The URI is not dialled: the connector opens the socket.
                tonic::transport::Endpoint::from_static("http://[::1]:1")
                    .connect_with_connector(tower::service_fn(move |_| {
                        let socket = socket.clone();
                        async move {
                            let s = tokio::net::UnixStream::connect(socket).await?;
                            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
                        }
                    }))
                    .await
            })
            .map_err(|e| format!("connect: {e}"))?;
        Ok(RuntimeClient {
            rt,
            client: RuntimeServiceClient::new(channel),
        })
    }

    /// One unary call, `rpc` given a clone of the generated client, run to its end.
    pub fn call<Resp, F>(
        &self,
        rpc: impl FnOnce(RuntimeServiceClient<tonic::transport::Channel>) -> F,
    ) -> Result<Resp, tonic::Status>
    where
        F: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        self.rt
            .block_on(rpc(self.client.clone()))
            .map(tonic::Response::into_inner)
    }
}

/// What a pod shares with the node, as a PodSpec says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodKind {
    /// Its own network, ipc and uts; a pid namespace per container.
    Plain,
    /// `hostNetwork: true`.
    HostNetwork,
    /// `hostPID: true`.
    HostPid,
    /// `shareProcessNamespace: true`: one pid namespace, the sandbox's.
    SharedPid,
    /// Its own namespaces as `Plain`, and `privileged: true` on its container.
    Privileged,
}

/// The paths kubelet asks the runtime to mask and to make read-only in a container that is
/// not privileged (`procMount: Default`; k8s.io/kubernetes pkg/securitycontext's
/// `defaultMaskedPaths` and `defaultReadonlyPaths`).
const MASKED_PATHS: [&str; 10] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];
const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

impl PodKind {
    /// kubelet's `NamespaceOption` for the pod (kuberuntime `namespacesForPod`).
    fn namespaces(self) -> v1::NamespaceOption {
        let (network, pid) = match self {
            PodKind::Plain | PodKind::Privileged => (NamespaceMode::Pod, NamespaceMode::Container),
            PodKind::HostNetwork => (NamespaceMode::Node, NamespaceMode::Container),
            PodKind::HostPid => (NamespaceMode::Pod, NamespaceMode::Node),
            PodKind::SharedPid => (NamespaceMode::Pod, NamespaceMode::Pod),
        };
        v1::NamespaceOption {
            network: network.into(),
            pid: pid.into(),
            ipc: NamespaceMode::Pod.into(),
            ..Default::default()
        }
    }
}

/// A pod started over CRI: its sandbox and app containers.
#[derive(Clone, Debug)]
pub struct Pod {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub kind: PodKind,
    pub sandbox_id: String,
    /// (name, id) of each app container, in start order.
    pub containers: Vec<(String, String)>,
    /// The pod network's bind mount (`/var/run/netns/cni-…`) from the sandbox's spec; none
    /// for `hostNetwork`.
    pub netns: Option<PathBuf>,
    config: v1::PodSandboxConfig,
}

impl Pod {
    /// The id of app container `name`.
    pub fn container(&self, name: &str) -> &str {
        &self
            .containers
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{}: no container {name}", self.name))
            .1
    }
}

/// The five pods, each with an app container `app` (the shared-pid pod has `app` and `side`).
pub fn run_pods(c: &mut Containerd) -> Vec<Pod> {
    vec![
        c.run_pod("web-0", "shop", PodKind::Plain, &["app"]),
        c.run_pod("agent-0", "infra", PodKind::HostNetwork, &["app"]),
        c.run_pod("monitor-0", "infra", PodKind::HostPid, &["app"]),
        c.run_pod("debug-0", "shop", PodKind::SharedPid, &["app", "side"]),
        c.run_pod("admin-0", "infra", PodKind::Privileged, &["app"]),
    ]
}

/// Every container of `pods` as (pod, container name or `POD`, id, is the sandbox).
pub fn containers(pods: &[Pod]) -> Vec<(&Pod, &str, &str, bool)> {
    let mut out = Vec::new();
    for p in pods {
        out.push((p, "POD", p.sandbox_id.as_str(), true));
        for (name, id) in &p.containers {
            out.push((p, name.as_str(), id.as_str(), false));
        }
    }
    out
}

/// A containerd of the test's own with the CRI plugin; see the module header.
pub struct Containerd {
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    bridge: String,
    network: String,
    client: Option<RuntimeClient>,
    pods: Vec<Pod>,
    /// Each pod's cgroup (`/kubepods/besteffort/pod<uid>`): containerd leaves it on every
    /// hierarchy. Its parents are in `runc::parents_made` where this process made them.
    cgroups: Vec<String>,
    /// Directories outside the test's dir that did not exist before and that containerd, the
    /// shims and libcni make: removed if empty.
    made: Vec<PathBuf>,
}

/// Made outside the test's dir by containerd's shims (`s/`, their sockets) and by libcni
/// (its result cache), deepest first.
const OUTSIDE: [&str; 4] = [
    "/run/containerd/s",
    "/run/containerd",
    "/var/lib/cni/results",
    "/var/lib/cni",
];

impl Containerd {
    /// Starts containerd, waits until its CRI answers `Version`, and imports [`IMAGE`].
    pub fn start() -> Containerd {
        let dir = tempfile::Builder::new()
            .prefix("nsx-cri-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        // One bridge and network per containerd, also between the tests of one process;
        // bridge names are at most 15 bytes.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag = format!("{:x}", std::process::id() << 4 | (n & 0xf));
        let bridge = format!("nsxc{tag}");
        let network = format!("nsx-cri-{tag}");
        std::fs::create_dir_all(d.join("cni")).unwrap();
        std::fs::create_dir_all(d.join("run")).unwrap();
        let conflist = json!({
            "cniVersion": "1.0.0",
            "name": network,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": bridge,
                    "isGateway": false,
                    "ipMasq": false,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": "169.254.201.0/24"}]],
                        "dataDir": d.join("ipam"),
                    },
                },
                {"type": "loopback"},
            ],
        });
        std::fs::write(
            d.join("cni/10-nsx.conflist"),
            serde_json::to_vec_pretty(&conflist).unwrap(),
        )
        .unwrap();
        let p = |rel: &str| d.join(rel).display().to_string();
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
# Plugins that would write outside the test's dir, or that no test needs.
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = "{debug}"
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  restrict_oom_score_adj = true
  enable_selinux = false
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{runc}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
    max_conf_num = 1
"#,
            root = p("root"),
            state = p("run/containerd"),
            sock = p("containerd.sock"),
            debug = p("debug.sock"),
            runc = p("run/containerd/runc"),
            cni = p("cni"),
        );
        std::fs::write(d.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(d.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("containerd (apt-get install containerd): {e}"));
        let mut c = Containerd {
            child: Some(child),
            dir: Some(dir),
            bridge,
            network,
            client: None,
            pods: Vec::new(),
            cgroups: Vec::new(),
            made: OUTSIDE
                .iter()
                .map(PathBuf::from)
                .filter(|d| !d.exists())
                .collect(),
        };
        let socket = c.socket();
        let client = wait_for(
            "containerd's CRI to answer",
            Duration::from_secs(30),
            || {
                if let Some(Ok(Some(status))) = c.child.as_mut().map(Child::try_wait) {
                    panic!("containerd exited ({status}): {}", c.log());
                }
                let client = RuntimeClient::connect(&socket).ok()?;
                let version = v1::VersionRequest {
                    version: "v1".into(),
                };
                client
                    .call(|mut c| async move { c.version(version).await })
                    .ok()?;
                Some(client)
            },
        );
        c.client = Some(client);
        c.import_image();
        c
    }

    fn dir(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir().join("containerd.sock")
    }

    /// The directory laid out like the host's `/run`: what `--path.run` is given.
    pub fn run_dir(&self) -> PathBuf {
        self.dir().join("run")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("containerd.log")).unwrap_or_default()
    }

    pub fn client(&self) -> &RuntimeClient {
        self.client.as_ref().unwrap()
    }

    /// `ctr --address <socket> ARGS`, which must succeed.
    fn ctr(&self, args: &[&str]) -> String {
        let out = Command::new("ctr")
            .arg("--address")
            .arg(self.socket())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ctr (containerd)");
        assert!(
            out.status.success(),
            "ctr {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Builds the `docker save` tar of [`IMAGE`] and imports it into namespace `k8s.io`.
    fn import_image(&self) {
        let tar = image_tar(&self.dir().join("image"));
        self.ctr(&["-n", "k8s.io", "images", "import", tar.to_str().unwrap()]);
    }

    /// Runs a pod of `kind` with one app container per name in `apps` (each `sleep`s), as
    /// kubelet does: RunPodSandbox, then CreateContainer and StartContainer per container.
    pub fn run_pod(&mut self, name: &str, namespace: &str, kind: PodKind, apps: &[&str]) -> Pod {
        let uid = crate::support::runc::hex_id();
        let uid = format!(
            "{}-{}-{}-{}-{}",
            &uid[..8],
            &uid[8..12],
            &uid[12..16],
            &uid[16..20],
            &uid[20..32]
        );
        let cgroup_parent = format!("/kubepods/besteffort/pod{uid}");
        self.cgroups.push(cgroup_parent.clone());
        // The parents that do not exist yet are this process's to remove, shared with its
        // runc containers' and other pods': the last one out removes them. The lock is held
        // until the sandbox's cgroup is made, so that no parent goes away under it.
        let mut made = crate::support::runc::parents_made();
        for mount in crate::support::runc::cgroup_mounts() {
            let parents = crate::support::runc::with_parents(&mount, &cgroup_parent);
            made.extend(parents.into_iter().skip(1).filter(|d| !d.exists()));
        }
        let logs = self.dir().join("pods").join(&uid);
        std::fs::create_dir_all(&logs).unwrap();
        let config = v1::PodSandboxConfig {
            metadata: Some(v1::PodSandboxMetadata {
                name: name.into(),
                uid: uid.clone(),
                namespace: namespace.into(),
                attempt: 0,
            }),
            // A hostname needs a UTS namespace of the pod's own.
            hostname: if kind == PodKind::HostNetwork {
                String::new()
            } else {
                name.into()
            },
            log_directory: logs.display().to_string(),
            labels: HashMap::from([
                ("io.kubernetes.pod.name".into(), name.into()),
                ("io.kubernetes.pod.namespace".into(), namespace.into()),
                ("io.kubernetes.pod.uid".into(), uid.clone()),
            ]),
            annotations: HashMap::new(),
            linux: Some(v1::LinuxPodSandboxConfig {
                cgroup_parent,
                security_context: Some(v1::LinuxSandboxSecurityContext {
                    namespace_options: Some(kind.namespaces()),
                    // kubelet asks for a privileged sandbox where a container is privileged.
                    privileged: kind == PodKind::Privileged,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let request = v1::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        };
        let sandbox = self
            .client()
            .call(|mut c| async move { c.run_pod_sandbox(request).await })
            .unwrap_or_else(|e| panic!("RunPodSandbox {name}: {e}\n{}", self.log()));
        drop(made);
        let mut pod = Pod {
            name: name.into(),
            namespace: namespace.into(),
            uid,
            kind,
            netns: None,
            sandbox_id: sandbox.pod_sandbox_id,
            containers: Vec::new(),
            config,
        };
        let spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.spec_path(&pod.sandbox_id)).unwrap())
                .unwrap();
        pod.netns = spec["linux"]["namespaces"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["type"] == "network")
            .and_then(|n| n["path"].as_str())
            .map(PathBuf::from);
        // Recorded before the containers, so that drop removes a half-made pod too.
        self.pods.push(pod.clone());
        for app in apps {
            let id = self.run_container(&pod, app);
            pod.containers.push((app.to_string(), id));
            self.pods.last_mut().unwrap().containers = pod.containers.clone();
        }
        pod
    }

    fn run_container(&self, pod: &Pod, name: &str) -> String {
        let privileged = pod.kind == PodKind::Privileged;
        let paths = |p: &[&str]| match privileged {
            true => Vec::new(),
            false => p.iter().map(|p| p.to_string()).collect(),
        };
        let config = v1::ContainerConfig {
            metadata: Some(v1::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(v1::ImageSpec {
                image: IMAGE.into(),
                ..Default::default()
            }),
            command: vec!["/bin/sleep".into()],
            args: vec!["100000".into()],
            labels: HashMap::from([("io.kubernetes.container.name".into(), name.into())]),
            annotations: HashMap::new(),
            log_path: format!("{name}/0.log"),
            linux: Some(v1::LinuxContainerConfig {
                security_context: Some(v1::LinuxContainerSecurityContext {
                    namespace_options: Some(pod.kind.namespaces()),
                    privileged,
                    masked_paths: paths(&MASKED_PATHS),
                    readonly_paths: paths(&READONLY_PATHS),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let request = v1::CreateContainerRequest {
            pod_sandbox_id: pod.sandbox_id.clone(),
            config: Some(config),
            sandbox_config: Some(pod.config.clone()),
        };
        let created = self
            .client()
            .call(|mut c| async move { c.create_container(request).await })
            .unwrap_or_else(|e| panic!("CreateContainer {}/{name}: {e}\n{}", pod.name, self.log()));
        let id = created.container_id;
        let request = v1::StartContainerRequest {
            container_id: id.clone(),
        };
        self.client()
            .call(|mut c| async move { c.start_container(request).await })
            .unwrap_or_else(|e| panic!("StartContainer {}/{name}: {e}\n{}", pod.name, self.log()));
        id
    }

    /// The host pid of container `id`'s init (its task), from runc's state under the CRI's
    /// runc root.
    pub fn pid(&self, id: &str) -> i32 {
        let state = self
            .run_dir()
            .join(format!("containerd/runc/k8s.io/{id}/state.json"));
        let text =
            std::fs::read_to_string(&state).unwrap_or_else(|e| panic!("{}: {e}", state.display()));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["init_process_pid"].as_i64().unwrap() as i32
    }

    /// The bundle `config.json` containerd wrote for `id`.
    pub fn spec_path(&self, id: &str) -> PathBuf {
        self.run_dir().join(format!(
            "containerd/io.containerd.runtime.v2.task/k8s.io/{id}/config.json"
        ))
    }

    /// Stops and removes pod `p`'s containers and sandbox; errors are returned, not raised.
    fn remove_pod(&self, p: &Pod) -> Vec<String> {
        let mut problems = Vec::new();
        let client = self.client();
        for (name, id) in &p.containers {
            let stop = v1::StopContainerRequest {
                container_id: id.clone(),
                timeout: 0,
            };
            let stop = client
                .call(|mut c| async move { c.stop_container(stop).await })
                .map(drop);
            let remove = v1::RemoveContainerRequest {
                container_id: id.clone(),
            };
            let remove = client
                .call(|mut c| async move { c.remove_container(remove).await })
                .map(drop);
            for r in [stop, remove] {
                if let Err(e) = r {
                    problems.push(format!("{}/{name}: {e}", p.name));
                }
            }
        }
        let pod_sandbox_id = p.sandbox_id.clone();
        let stop = v1::StopPodSandboxRequest { pod_sandbox_id };
        let stop = client
            .call(|mut c| async move { c.stop_pod_sandbox(stop).await })
            .map(drop);
        let pod_sandbox_id = p.sandbox_id.clone();
        let remove = v1::RemovePodSandboxRequest { pod_sandbox_id };
        let remove = client
            .call(|mut c| async move { c.remove_pod_sandbox(remove).await })
            .map(drop);
        for (method, r) in [("StopPodSandbox", stop), ("RemovePodSandbox", remove)] {
            if let Err(e) = r {
                problems.push(format!("{method} {}: {e}", p.name));
            }
        }
        problems
    }

    /// Everything drop does; what could not be cleaned. Never panics.
    fn cleanup(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        let pods = std::mem::take(&mut self.pods);
        if self.client.is_some() {
            for p in &pods {
                problems.extend(self.remove_pod(p));
            }
        }
        self.client = None;
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            if matches!(child.try_wait(), Ok(None)) {
                problems.push("containerd did not stop in 10 s: killed".into());
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // The pods' cgroups, their containers' below them (runc removes those; one left is a
        // problem), then the parents this process made once no other cgroup is below them.
        for cgroup in std::mem::take(&mut self.cgroups) {
            for mount in crate::support::runc::cgroup_mounts() {
                let dirs = crate::support::runc::with_parents(&mount, &cgroup);
                let mut ours: Vec<PathBuf> = std::fs::read_dir(&dirs[0])
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect();
                ours.push(dirs[0].clone());
                for d in ours {
                    // EBUSY while the kernel releases the last member.
                    let deadline = Instant::now() + Duration::from_secs(5);
                    while d.exists() && std::fs::remove_dir(&d).is_err() {
                        if Instant::now() > deadline {
                            problems.push(format!("cgroup {} is left", d.display()));
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                let mut made = crate::support::runc::parents_made();
                crate::support::runc::remove_parents_made(&dirs[1..], &mut made);
            }
        }
        // The shims (`containerd-shim-runc-v2 … -address <socket>`) exit once their task is
        // deleted; as zombies, their parent (init) reaps them.
        let socket = self
            .dir
            .as_ref()
            .map(|_| self.socket().display().to_string());
        if let Some(socket) = socket {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let shims = processes_with_arg(&socket);
                if shims.is_empty() {
                    break;
                }
                if Instant::now() > deadline {
                    problems.push(format!("shims left: {shims:?}"));
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // RemovePodSandbox unmounts and removes the pod network's bind mount.
        for netns in pods.iter().filter_map(|p| p.netns.as_ref()) {
            if netns.exists() {
                problems.push(format!("{} is left", netns.display()));
                let _ = crate::support::run("umount", &[netns.to_str().unwrap()]);
                let _ = std::fs::remove_file(netns);
            }
        }
        let _ = crate::support::run("ip", &["link", "del", &self.bridge]);
        // libcni's result cache, `<network>-<sandbox id>-<ifname>`: the pod network's and
        // the CRI's own `cni-loopback`'s. RemovePodSandbox removes them; a failed one may not.
        if let Ok(entries) = std::fs::read_dir("/var/lib/cni/results") {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with(&format!("{}-", self.network))
                    || pods.iter().any(|p| name.contains(&p.sandbox_id))
                {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        // Another containerd's (or another test's) entries keep them: not ours to remove.
        for d in &self.made {
            let _ = std::fs::remove_dir(d);
        }
        if let Some(dir) = self.dir.take() {
            crate::support::engines::remove_with_mounts(dir);
        }
        problems
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let problems = self.cleanup();
        if problems.is_empty() {
            return;
        }
        let message = format!("containerd not cleaned: {}", problems.join("; "));
        if std::thread::panicking() {
            eprintln!("{message}");
        } else {
            panic!("{message}");
        }
    }
}

/// The pids of the live processes (zombies have no command line) with `arg` among their
/// arguments.
fn processes_with_arg(arg: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
        })
        .collect()
}

/// A `docker save`-format tar of [`IMAGE`] in `dir`: `manifest.json` naming it, its config
/// (an entrypoint that sleeps, for the sandbox; the layer's `diff_ids`), and one layer holding
/// the static busybox with its applets.
fn image_tar(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(crate::support::runc::BUSYBOX, bin.join("busybox")).unwrap_or_else(|e| {
        panic!(
            "copy {} (busybox-static): {e}",
            crate::support::runc::BUSYBOX
        )
    });
    for applet in ["sh", "sleep", "nsenter", "cat", "ls"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    let image = dir.join("image");
    std::fs::create_dir_all(&image).unwrap();
    let layer = image.join("layer.tar");
    let tar = |args: &[&str]| {
        let (ok, _, err) = crate::support::run("tar", args);
        assert!(ok, "tar {args:?}: {err}");
    };
    tar(&[
        "-C",
        rootfs.to_str().unwrap(),
        "-cf",
        layer.to_str().unwrap(),
        ".",
    ]);
    let diff_id = hex(&std::fs::read(&layer).unwrap());
    let config = json!({
        "architecture": match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            other => other,
        },
        "os": "linux",
        "config": {
            "Entrypoint": ["/bin/sleep", "100000"],
            "Env": ["PATH=/bin"],
        },
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
        "history": [{"created_by": "nsexporter tests"}],
    });
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_name = format!("{}.json", hex(&config_bytes));
    std::fs::write(image.join(&config_name), &config_bytes).unwrap();
    let manifest = json!([{
        "Config": config_name,
        "RepoTags": [IMAGE],
        "Layers": ["layer.tar"],
    }]);
    std::fs::write(
        image.join("manifest.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    let out = dir.join("image.tar");
    tar(&[
        "-C",
        image.to_str().unwrap(),
        "-cf",
        out.to_str().unwrap(),
        "manifest.json",
        &config_name,
        "layer.tar",
    ]);
    out
}

/// The SHA-256 of `bytes` in lower-case hex: an image's digests.
fn hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
