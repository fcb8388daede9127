//! What keeping container names fresh costs: `NameSources::refresh` over a Docker data root
//! and a Podman store of N containers each (`NSX_BENCH_CONTAINERS`, default 100), in three
//! states:
//!
//! - unchanged: what almost every scan and sweep pays (a `stat` for Docker, a listing of the
//!   Podman root and a `stat` per list);
//! - re-read: a stamp moved or the minute passed, no file changed (Docker lists `containers/`
//!   and stats each file, reading none; Podman parses its whole list again);
//! - cold: the first read (every `config.v2.json` too).
//!
//! The stores are made in a tempdir in the engines' own shapes: a `config.v2.json` of 2.4 KB
//! and a `containers.json` entry of 540 bytes, as docker.io 20.10 and podman 4.3 wrote them
//! on this machine. `NSX_BENCH_DOCKER` and `NSX_BENCH_PODMAN` point it at real data roots
//! instead (read as they are; run as root). `cargo bench --bench names`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nsexporter::attribution::NameSources;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}={v:?}")))
        .unwrap_or(default)
}

/// The `n`th container id.
fn id(n: usize) -> String {
    format!("{n:064x}")
}

/// A Docker data root of `count` containers, each `config.v2.json` in docker.io 20.10's shape.
fn docker_root(dir: &Path, count: usize) -> PathBuf {
    let root = dir.join("docker");
    for n in 0..count {
        let id = id(n);
        let c = root.join("containers").join(&id);
        std::fs::create_dir_all(&c).unwrap();
        let config = format!(
            r#"{{"StreamConfig":{{}},"State":{{"Running":true,"Paused":false,"Restarting":false,"OOMKilled":false,"RemovalInProgress":false,"Dead":false,"Pid":2002,"ExitCode":0,"Error":"","StartedAt":"2026-11-29T09:45:34.255758724Z","FinishedAt":"0001-01-01T00:00:00Z","Health":null}},"ID":"{id}","Created":"2026-11-29T09:45:34.048306357Z","Managed":false,"Path":"sleep","Args":["1000"],"Config":{{"Hostname":"vm","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sleep","1000"],"Image":"nsx-busybox","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":{{}}}},"Image":"sha256:fbd7d71ed164363d96c14075911957ff3d9aad0108f80a9ede62a8c190dbf774","NetworkSettings":{{"Bridge":"","SandboxID":"c89d05d7a21e18de63e9183e0f1987d279aece4a92293f1a4c00266206bae342","HairpinMode":false,"LinkLocalIPv6Address":"","LinkLocalIPv6PrefixLen":0,"Networks":{{"host":{{"IPAMConfig":null,"Links":null,"Aliases":null,"NetworkID":"993bebff9bf954a0f6f528dad6738367947deffd0376aaa7a2e7715231ebeb1d","EndpointID":"204bdb50e29d19933e6ab52d360ff10a07361309c30288f4596007c75c657407","Gateway":"","IPAddress":"","IPPrefixLen":0,"IPv6Gateway":"","GlobalIPv6Address":"","GlobalIPv6PrefixLen":0,"MacAddress":"","DriverOpts":null}}}},"Service":null,"Ports":{{}},"SandboxKey":"/var/run/docker/netns/default","SecondaryIPAddresses":null,"SecondaryIPv6Addresses":null,"IsAnonymousEndpoint":false,"HasSwarmEndpoint":false}},"LogPath":"/var/lib/docker/containers/{id}/{id}-json.log","Name":"/web-{n}","Driver":"overlay2","OS":"linux","MountLabel":"","ProcessLabel":"","RestartCount":0,"HasBeenStartedBeforeRestart":false,"HasBeenManuallyStopped":false,"MountPoints":{{}},"SecretReferences":null,"ConfigReferences":null,"AppArmorProfile":"docker-default","HostnamePath":"/var/lib/docker/containers/{id}/hostname","HostsPath":"/var/lib/docker/containers/{id}/hosts","ShmPath":"","ResolvConfPath":"/var/lib/docker/containers/{id}/resolv.conf","SeccompProfile":"","NoNewPrivileges":false,"LocalLogCacheMeta":{{"HaveNotifyEnabled":false}}}}"#
        );
        std::fs::write(c.join("config.v2.json"), config).unwrap();
    }
    root
}

/// A Podman store of `count` containers, `containers.json` in podman 4.3's shape.
fn podman_root(dir: &Path, count: usize) -> PathBuf {
    let root = dir.join("storage");
    let list = root.join("overlay-containers");
    std::fs::create_dir_all(&list).unwrap();
    let entries: Vec<String> = (0..count)
        .map(|n| {
            let id = id(n + count);
            format!(
                r#"{{"id":"{id}","names":["pm-{n}"],"image":"6aba5435d1784a9396623d430893032212d396aeaffaaaddb926b535828635ac","layer":"2d6107e234bba9500577f7f42938f3d0f1715108cf47bc59444bd29057b54cee","metadata":"{{\"image-name\":\"localhost/nsx-busybox:latest\",\"image-id\":\"6aba5435d1784a9396623d430893032212d396aeaffaaaddb926b535828635ac\",\"name\":\"pm-{n}\",\"created-at\":1795945563}}","created":"2026-11-29T09:46:03.653503949Z","flags":{{"MountLabel":"","ProcessLabel":""}}}}"#
            )
        })
        .collect();
    std::fs::write(
        list.join("containers.json"),
        format!("[{}]", entries.join(",")),
    )
    .unwrap();
    root
}

/// Median and worst of `rounds` timings of `f`, after a warm-up.
fn time(rounds: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    for _ in 0..rounds / 10 + 1 {
        f();
    }
    let mut t: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    t.sort_unstable();
    (t[rounds / 2], t[rounds - 1])
}

fn main() {
    let count = env_usize("NSX_BENCH_CONTAINERS", 100);
    let rounds = env_usize("NSX_BENCH_ROUNDS", 200);
    let dir = tempfile::tempdir().unwrap();
    let docker = std::env::var_os("NSX_BENCH_DOCKER")
        .map(PathBuf::from)
        .unwrap_or_else(|| docker_root(dir.path(), count));
    let podman = std::env::var_os("NSX_BENCH_PODMAN")
        .map(PathBuf::from)
        .unwrap_or_else(|| podman_root(dir.path(), count));
    let sources = || {
        NameSources::new()
            .docker(docker.clone())
            .podman(podman.clone())
    };
    let mut check = sources();
    let r = check.refresh(Instant::now());
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    println!(
        "name sources: docker {}, podman {}",
        docker.display(),
        podman.display()
    );

    let now = Instant::now();
    let mut unchanged = sources();
    unchanged.refresh(now);
    let steady = time(rounds * 10, || {
        black_box(unchanged.refresh(now));
    });
    let mut rereading = sources().reread_every(Duration::ZERO);
    rereading.refresh(now);
    let reread = time(rounds, || {
        black_box(rereading.refresh(Instant::now()));
    });
    let cold = time(rounds, || {
        black_box(sources().refresh(Instant::now()));
    });
    for (state, (median, worst)) in [("unchanged", steady), ("re-read", reread), ("cold", cold)] {
        println!(
            "{state:>9}: median {:>9.1} us, worst {:>9.1} us",
            median.as_secs_f64() * 1e6,
            worst.as_secs_f64() * 1e6
        );
    }
}
