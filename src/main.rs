//! The `nsexporter` binary: serve metrics, or list namespaces once.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use tokio::sync::watch;

use nsexporter::attribution::NameSources;
use nsexporter::config::{
    Cli, Command, DEFAULT_PROCFS, Flags, LogFormat, OutputFormat, RawConfig, Settings,
};
use nsexporter::declared::SpecSources;
use nsexporter::health::Health;
use nsexporter::list;
use nsexporter::metrics::Metrics;
use nsexporter::model::NsType;
use nsexporter::policy::Policy;
use nsexporter::procfs::ProcFs;
use nsexporter::scan::{ErrorReason, Scanner};
use nsexporter::scan_loop::ScanLoop;
use nsexporter::site::ExporterSite;
use nsexporter_web::http::{AppState, DRAIN, FD_RESERVE, connection_cap, listen, serve};
use nsexporter_web::web_config::{WebConfigFile, reload_on_change};

fn main() -> ExitCode {
    // Before any thread starts: one arena, which malloc_trim empties, and big blocks mapped
    // on their own.
    nsexporter::allocator::tune_malloc();
    let cli = match Cli::try_parse_with_switches(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or("bad arguments");
            eprintln!(
                "nsexporter: {} (see --help)",
                first.trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nsexporter: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let settings = Settings::try_from(RawConfig::load(&cli.flags)?)?;
    init_logging(&settings);
    raise_ptrace_capability();
    let nofile = raise_nofile_limit();
    match cli.command {
        None => serve_metrics(settings, cli.flags, nofile),
        Some(Command::List {
            ns_type,
            output,
            tree,
        }) => {
            let only = ns_type
                .map(|t| t.parse::<NsType>())
                .transpose()
                .context("--type")?;
            list_once(&settings, only, output, tree)
        }
    }
}

/// Makes CAP_SYS_PTRACE effective for good where it is permitted: reading another user's
/// `/proc/PID/ns/*` is a ptrace access check (proc_pid_ns(5), ptrace(2)
/// PTRACE_MODE_READ_FSCREDS). See [`nsexporter::capabilities`] for why it is only permitted.
fn raise_ptrace_capability() {
    use nsexporter::capabilities::{Capability, Made, make_effective};
    match make_effective(Capability::CAP_SYS_PTRACE) {
        Made::Already => {}
        Made::Raised => tracing::debug!("CAP_SYS_PTRACE raised to effective"),
        Made::Failed(e) => tracing::warn!(error = %e, "cannot raise CAP_SYS_PTRACE"),
        Made::NotPermitted if !nix::unistd::geteuid().is_root() => tracing::info!(
            "no CAP_SYS_PTRACE: other users' namespaces will count as permission_denied"
        ),
        Made::NotPermitted => {}
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit, as Go's runtime does at start: the soft
/// limit is often 1024, below `--web.max-connections` with the scan's fds beside them, and the
/// hard one is there to be used. Where it cannot be raised (a seccomp filter such as systemd's
/// `~@resources`), the limit stays, and `--web.max-connections` is lowered to fit under it
/// ([`fit_connections`]). The soft limit in force, if it could be read.
fn raise_nofile_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => {
                tracing::debug!(from = soft, to = hard, "raised RLIMIT_NOFILE");
                Some(hard)
            }
            Err(e) => {
                tracing::debug!(soft, hard, error = %e, "cannot raise RLIMIT_NOFILE");
                Some(soft)
            }
        },
        Ok((soft, _)) => {
            tracing::debug!(soft, "RLIMIT_NOFILE is at its hard limit");
            Some(soft)
        }
        Err(e) => {
            tracing::debug!(error = %e, "cannot read RLIMIT_NOFILE");
            None
        }
    }
}

/// `--web.max-connections`, lowered where it would not fit under the soft RLIMIT_NOFILE
/// (`nofile`) beside the fds open now and the scan's ([`connection_cap`]); said once if so.
/// Call it with everything but the scan's fds open: the listener, the proc connector.
fn fit_connections(configured: usize, nofile: Option<u64>) -> usize {
    let Some(nofile) = nofile else {
        return configured;
    };
    let fds = ProcFs::new(DEFAULT_PROCFS).path("self/fd");
    let open = match std::fs::read_dir(&fds) {
        Ok(dir) => dir.count() as u64,
        Err(e) => {
            tracing::debug!(error = %e, "cannot count the open fds");
            return configured;
        }
    };
    let cap = connection_cap(configured, nofile, open);
    let why = "web.max_connections lowered to fit under RLIMIT_NOFILE, with room for the scan";
    match configured {
        // No limit asked: the fd limit is the one meant.
        0 => tracing::info!(
            max_connections = cap,
            nofile,
            open,
            reserve = FD_RESERVE,
            "{why}"
        ),
        n if n != cap => tracing::warn!(
            configured = n,
            max_connections = cap,
            nofile,
            open,
            reserve = FD_RESERVE,
            "{why}"
        ),
        _ => {}
    }
    cap
}

fn init_logging(settings: &Settings) {
    let filter = tracing_subscriber::filter::LevelFilter::from_level(settings.log_level);
    use tracing_subscriber::prelude::*;
    let registry = tracing_subscriber::registry().with(filter);
    match settings.log_format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .init(),
        LogFormat::Logfmt => registry
            .with(
                tracing_logfmt::builder()
                    .layer()
                    .with_writer(std::io::stderr),
            )
            .init(),
    }
}

fn list_once(
    settings: &Settings,
    only: Option<NsType>,
    output: OutputFormat,
    tree: Option<list::Tree>,
) -> Result<()> {
    let procfs = ProcFs::new(&settings.procfs);
    let outcome =
        Scanner::new(procfs.clone(), settings.scan_threads, settings.scan_pins()).scan(None)?;
    for reason in ErrorReason::ALL {
        if let Some(first) = outcome.errors.first(reason) {
            let count = outcome.errors.count(reason);
            tracing::warn!(
                reason = reason.as_str(),
                count,
                first,
                "scan errors: the listing is incomplete"
            );
        }
    }
    let rows = list::rows(&outcome.snapshot, &procfs, only);
    let mut out = std::io::stdout().lock();
    match (output, tree) {
        (_, Some(relation)) => list::write_tree(&mut out, &rows, relation)?,
        (OutputFormat::Table, None) => list::write_table(&mut out, &rows)?,
        (OutputFormat::Json, None) => list::write_json(&mut out, &rows)?,
    }
    if only.is_none() && tree.is_none() && output == OutputFormat::Table {
        // Containers by their cgroups alone: a listing reads no name source.
        let attribution = nsexporter::attribution::attribute(
            &outcome.snapshot,
            &[],
            &Default::default(),
            &mut Default::default(),
        );
        let read = nsexporter::pipeline::privilege::read_privileges(
            &procfs,
            &outcome.snapshot,
            &attribution,
        );
        let privilege: Vec<list::PrivilegeRow> = read
            .containers
            .iter()
            .map(|c| list::PrivilegeRow {
                container_id: c.container.id.clone(),
                runtime: c.container.runtime.as_str(),
                level: c.assessment(read.node_bounding).level.as_str(),
                host_capabilities: c.host_capabilities_label(),
            })
            .collect();
        list::write_privilege(&mut out, &privilege)?;
    }
    Ok(())
}

fn serve_metrics(mut settings: Settings, flags: Flags, nofile: Option<u64>) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Read before the listener opens: a bad file fails the start with its one line.
    let web = settings
        .web_config_file
        .as_deref()
        .map(WebConfigFile::open)
        .transpose()?
        .map(Arc::new);
    let served = runtime.block_on(async {
        let listener = bind(&settings)?;
        let procfs = ProcFs::new(&settings.procfs);
        let metrics = Metrics::new(
            ProcFs::new(DEFAULT_PROCFS),
            settings.scan_interval,
            settings.per_namespace,
            settings.namespaces_per_workload,
        );
        let mut scan_loop = ScanLoop::new(
            Scanner::new(procfs, settings.scan_threads, settings.scan_pins()),
            metrics,
            settings.policy.clone(),
            settings.orphan_age,
            NameSources::new()
                .kubelet(settings.kubelet_logs.clone())
                .docker(settings.docker.clone())
                .podman(settings.podman.clone()),
        )
        .with_specs(SpecSources::new(
            settings.run.clone(),
            settings.podman.clone(),
            settings.procfs.clone(),
        ));
        if let Some(events) = listen_for_events(&settings) {
            scan_loop = scan_loop
                .with_events(events)
                .keep_by_events(settings.scan_safety_net_interval);
        }
        let scan_mode = scan_loop.mode();
        settings.max_connections = fit_connections(settings.max_connections, nofile);
        let interval = settings.scan_interval;
        let sweep = settings.scan_sweep_interval;
        let health = Arc::new(Health::new(interval, scan_loop.progress()));
        let (publish, published) = watch::channel(None);
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (policies, policy_updates) = std::sync::mpsc::channel();
        let scanner = {
            let health = Arc::clone(&health);
            std::thread::Builder::new()
                .name("scan".into())
                .spawn(move || {
                    scan_loop.run(interval, sweep, publish, policy_updates, stopped, health)
                })?
        };
        tokio::spawn(reload_on_sighup(flags, policies));
        tokio::spawn(watch_health(Arc::clone(&health)));
        tracing::info!(
            address = %listener.local_addr()?,
            procfs = %settings.procfs.display(),
            interval = %humantime::format_duration(interval),
            version = env!("CARGO_PKG_VERSION"),
            proc_events = settings.scan_proc_events,
            bind_mounts = settings.scan_bind_mounts,
            ebpf = settings.scan_ebpf,
            scan_mode = scan_mode.as_str(),
            tls = web.as_ref().is_some_and(|w| w.current().tls.is_some()),
            basic_auth = web.as_ref().is_some_and(|w| w.current().users.is_some()),
            "listening"
        );
        let state = AppState {
            telemetry_path: Arc::from(settings.telemetry_path.as_str()),
            site: Arc::new(ExporterSite::new(
                &settings.telemetry_path,
                published,
                health,
            )),
        };
        if let Some(web) = &web {
            tokio::spawn(reload_on_change(Arc::clone(web)));
        }
        // The scan loop is told at the signal, so that it winds down while the connections do.
        let mut signalled = None;
        let shutdown = async {
            shutdown_signal().await;
            signalled = Some(std::time::Instant::now());
            drop(stop);
        };
        serve(listener, state, settings.limits(), web, shutdown).await;
        // A scan blocked in a read cannot be interrupted; exiting ends it. Shutdown waits for
        // a running scan only this long from the signal, so that SIGTERM always exits within
        // a pod's grace period.
        let deadline = signalled.unwrap_or_else(std::time::Instant::now) + SCAN_SHUTDOWN_WAIT;
        while !scanner.is_finished() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        if scanner.is_finished() {
            let _ = scanner.join();
            tracing::info!("stopped");
        } else {
            tracing::warn!(
                waited = %humantime::format_duration(SCAN_SHUTDOWN_WAIT),
                "stopped without the scan thread, which is blocked in a read"
            );
        }
        Ok(())
    });
    // Dropping a runtime waits for its blocking tasks without limit: a SIGHUP reload stuck on
    // a hung filesystem must not hold the exit. Nothing they do needs finishing.
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_WAIT);
    served
}

/// Starts the event sources asked for, each on a thread of its own, which hand what they read
/// over one bounded queue. Where none could start: `None`, and the sweeps go on.
fn listen_for_events(settings: &Settings) -> Option<nsexporter::events::EventStream> {
    let (send, events) = nsexporter::events::queue();
    // eBPF first: it drops CAP_BPF and CAP_PERFMON when attached, before any thread starts
    // that would keep them.
    let ebpf = settings
        .scan_ebpf
        .then(|| attach_ebpf(send.clone(), settings.scan_ebpf_ring_buffer))
        .flatten();
    let ebpf_tasks = ebpf.as_ref().is_some_and(|a| a.tasks.is_ok());
    let (ebpf_lost, mount_generations) = match ebpf {
        Some(a) => (Some(a.lost), a.mounts.ok()),
        None => (None, None),
    };
    let proc_drops = settings
        .scan_proc_events
        .then(|| listen_for_process_events(settings, send))
        .flatten();
    (proc_drops.is_some() || ebpf_lost.is_some()).then_some(nsexporter::events::EventStream {
        events,
        proc_drops,
        ebpf_lost,
        ebpf_tasks,
        mount_generations,
    })
}

/// Loads the eBPF source and reads its namespace changes on a thread of its own. Where it
/// cannot (no BTF, no tracefs, no CAP_BPF or CAP_PERFMON), it says which once and the sweeps
/// go on.
fn attach_ebpf(
    send: std::sync::mpsc::SyncSender<nsexporter::events::Event>,
    ring_bytes: usize,
) -> Option<nsexporter::ebpf::Attached> {
    match nsexporter::ebpf::attach(send, nsexporter::procfs::ticks_per_second(), ring_bytes) {
        Ok(attached) => {
            tracing::info!(
                "eBPF source attached: namespace changes by setns, unshare, clone and clone3"
            );
            if let Err(why) = &attached.tasks {
                tracing::warn!(
                    reason = %why,
                    "scan.ebpf: the task probes did not attach; every scan walks /proc"
                );
            } else if let Err(why) = &attached.mounts {
                tracing::warn!(
                    reason = %why,
                    "scan.ebpf: the mount-table iterator did not load; every mount namespace's mountinfo is read at every scan"
                );
            }
            Some(attached)
        }
        Err(why) => {
            tracing::warn!(
                reason = %why,
                "scan.ebpf: cannot attach the eBPF source; the sweeps go on"
            );
            None
        }
    }
}

/// Subscribes to the kernel's process events on a thread of their own, which hands pids over
/// a bounded channel (a fork bomb drops events, which the sweeps still see). Where the exporter
/// cannot listen, it says why once and the sweeps go on.
fn listen_for_process_events(
    settings: &Settings,
    send: std::sync::mpsc::SyncSender<nsexporter::events::Event>,
) -> Option<Arc<nsexporter::events::Drops>> {
    // CAP_NET_ADMIN, to join the connector's group: permitted by the image's file capability
    // where the pod adds it (deploy/kubernetes/proc-events), made effective only here.
    use nsexporter::capabilities::{Capability, Made, make_effective};
    if let Made::Failed(e) = make_effective(Capability::CAP_NET_ADMIN) {
        tracing::debug!(error = %e, "cannot raise CAP_NET_ADMIN");
    }
    match nsexporter::events::listen(std::path::Path::new(DEFAULT_PROCFS), &settings.procfs, send) {
        Ok(drops) => {
            tracing::info!("listening for process events (proc connector)");
            Some(drops)
        }
        Err(why) => {
            tracing::warn!(
                reason = %why,
                "scan.proc-events: cannot listen for process events; the sweeps go on"
            );
            None
        }
    }
}

/// How long shutdown waits for a running scan, from the signal. Meanwhile the connections
/// close: those without a whole request at once, those being answered within [`DRAIN`]. With
/// [`RUNTIME_SHUTDOWN_WAIT`] after both, SIGTERM exits within 2.25 s (docs/configuration.md).
const SCAN_SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
const _: () = assert!(DRAIN.as_millis() <= SCAN_SHUTDOWN_WAIT.as_millis());

/// How long shutdown waits for the runtime's blocking tasks (a reload, a password check).
const RUNTIME_SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

/// Checks the scan loop's health every second and logs each change once: a stalled or failing
/// loop is said at warn when it starts, and again when it is over, never every second.
async fn watch_health(health: Arc<Health>) {
    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut unhealthy = false;
    loop {
        ticker.tick().await;
        match health.check() {
            Err(e) if !unhealthy => {
                unhealthy = true;
                tracing::warn!(problem = %e, "unhealthy: /healthz answers 503");
            }
            Ok(()) if unhealthy => {
                unhealthy = false;
                tracing::info!("healthy again");
            }
            _ => {}
        }
    }
}

fn bind(settings: &Settings) -> Result<tokio::net::TcpListener> {
    let mut last = None;
    for addr in &settings.listen_address {
        match listen(*addr) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => bail!(
            "web.listen_address: cannot listen on {}: {e}",
            settings.listen_address
        ),
        None => bail!("web.listen_address: no address"),
    }
}

/// Re-reads the configuration on each SIGHUP and hands a valid policy to the scan loop. An
/// invalid one is logged and the running policy kept. Only the policy is reloaded: the other
/// settings (address, interval, paths) need a restart.
///
/// The runtime has one thread, which also serves HTTP: reading and parsing the file (and
/// `Settings::try_from`, which stats the procfs) run on tokio's blocking pool, so a slow
/// parse or a hung filesystem never stalls a scrape. SIGHUPs that arrive meanwhile are merged
/// into one by the signal stream, and reloads never overlap.
async fn reload_on_sighup(flags: Flags, policies: std::sync::mpsc::Sender<Policy>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot install a SIGHUP handler: no policy reload");
        return;
    };
    while hup.recv().await.is_some() {
        let flags = flags.clone();
        let loaded = tokio::task::spawn_blocking(move || -> Result<Settings> {
            Ok(Settings::try_from(RawConfig::load(&flags)?)?)
        })
        .await
        .map_err(|e| anyhow::anyhow!("the reload task failed: {e}"))
        .and_then(|loaded| loaded);
        match loaded {
            Ok(settings) => {
                if policies.send(settings.policy).is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "reload failed; keeping the running policy")
            }
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
        _ = int.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
    }
}
