//! The configuration's tests: every source, every form of a value, the errors' one line, the
//! flags and `--help`, and the config file's limits.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::keys::shown;
use super::*;
use crate::files::{YamlProblem, check_yaml};
use nsexporter_web::http::Limits;

fn load(flags: Flags, env: &[(&str, &str)]) -> Result<Settings, String> {
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    RawConfig::load_from(&flags, env)
        .map_err(|e| e.to_string())
        .and_then(|raw| Settings::try_from(raw).map_err(|e| e.to_string()))
}

fn fixture_procfs() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proc").to_string()
}

#[test]
fn defaults_apply() {
    let s = Settings::defaults();
    assert_eq!(s.scan_interval, Duration::from_secs(15));
    assert_eq!(s.telemetry_path, "/metrics");
    assert_eq!(s.listen_address.text, ":9917");
    assert_eq!(s.listen_address.addrs[1], "0.0.0.0:9917".parse().unwrap());
    assert_eq!(s.procfs, PathBuf::from("/proc"));
    assert_eq!(s.log_format, LogFormat::Logfmt);
    let limits = Limits {
        read_header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(120),
        max_requests: 40,
        max_connections: 256,
    };
    assert_eq!(s.limits(), limits);
    // What a library user gets from `Settings::defaults()` is what the binary scans with.
    let pins = PinScan {
        mounts: true,
        fds: Some(Duration::from_secs(60)),
    };
    assert_eq!(
        (s.scan_threads, s.scan_pins()),
        (ThreadScan::Containers, pins)
    );
    assert_eq!(s.orphan_age, Duration::from_secs(600));
    assert_eq!(s.per_namespace, PerNamespace::All);
    assert_eq!(s.namespaces_per_workload, 2000);
}

#[test]
fn flags_beat_environment_beats_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yaml");
    std::fs::write(
        &file,
        "scan:\n  interval: 1m\nlog:\n  level: debug\n  format: json\nweb:\n  telemetry_path: /m\n",
    )
    .unwrap();
    let flags = Flags {
        config_file: Some(file),
        scan_interval: Some("5s".into()),
        ..Flags::default()
    };
    let s = load(
        flags,
        &[
            ("NSEXPORTER_SCAN__INTERVAL", "7s"),
            ("NSEXPORTER_LOG__LEVEL", "warn"),
            ("NSEXPORTER_PATH__PROCFS", &fixture_procfs()),
        ],
    )
    .unwrap();
    assert_eq!(s.scan_interval, Duration::from_secs(5), "flag wins");
    assert_eq!(s.log_level, tracing::Level::WARN, "env beats file");
    assert_eq!(s.log_format, LogFormat::Json, "file beats default");
    assert_eq!(s.telemetry_path, "/m");
    assert_eq!(s.procfs, PathBuf::from(fixture_procfs()));
}

#[test]
fn bad_values_name_their_key_on_one_line() {
    type Case<'a> = (Flags, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            Flags {
                scan_interval: Some("abc".into()),
                ..Flags::default()
            },
            vec![],
            "scan.interval: \"abc\"",
        ),
        (
            Flags::default(),
            vec![("NSEXPORTER_SCAN__INTERVAL", "0s")],
            "scan.interval: \"0s\" is shorter",
        ),
        (
            Flags::default(),
            vec![("NSEXPORTER_SCAN__EBPF_RING_BUFFER", "1000000")],
            "scan.ebpf_ring_buffer: 1000000 is not a power of two and a multiple of the page size",
        ),
        (
            Flags {
                scan_ebpf_ring_buffer: Some("1MiB".into()),
                ..Flags::default()
            },
            vec![],
            "scan.ebpf_ring_buffer: \"1MiB\" is not a whole number",
        ),
        (
            Flags {
                procfs: Some("/nonexistent".into()),
                ..Flags::default()
            },
            vec![],
            "path.procfs: /nonexistent is not a procfs",
        ),
        (
            Flags {
                listen_address: Some(":99999".into()),
                ..Flags::default()
            },
            vec![],
            "web.listen_address: \":99999\"",
        ),
        (
            Flags {
                log_level: Some("loud".into()),
                ..Flags::default()
            },
            vec![],
            "log.level: \"loud\"",
        ),
        (
            Flags {
                log_format: Some("xml".into()),
                ..Flags::default()
            },
            vec![],
            "log.format: \"xml\"",
        ),
        (
            Flags {
                telemetry_path: Some("metrics".into()),
                ..Flags::default()
            },
            vec![],
            "web.telemetry_path:",
        ),
        (
            Flags::default(),
            vec![("NSEXPORTER_SCAN__INTERVALL", "5s")],
            "unknown field `intervall`",
        ),
    ];
    for (flags, env, want) in cases {
        let err = load(flags, &env).unwrap_err();
        assert!(err.contains(want), "{err:?} should contain {want:?}");
        assert!(!err.contains('\n'), "one line: {err:?}");
    }
}

fn alias_in(yaml: &[u8]) -> Option<(String, usize)> {
    match check_yaml(yaml) {
        Err(YamlProblem::Alias { name, line }) => Some((name, line)),
        Ok(()) => None,
        Err(e) => panic!("{:?}: {e}", String::from_utf8_lossy(yaml)),
    }
}

#[test]
fn an_alias_anywhere_is_refused() {
    let cases: [(&[u8], &str, usize); 7] = [
        (b"a: &x 1\nb: *x\n", "x", 2),
        (b"a: &x [1]\nb:\n  - 2\n  - *x\n", "x", 4),
        (b"a: &x [1]\nb: [2, *x, 3]\n", "x", 2),
        (b"a: &x [1]\nb: {k: *x}\n", "x", 2),
        (b"base: &base {k: v}\nc:\n  <<: *base\n", "base", 3),
        (b"a: &x 1\n*x : key\n", "x", 2),
        // Columns count characters, not bytes.
        (
            "\u{e9}: &\u{e9}t\u{e9} 1\nb: [\u{e9}\u{e9}, *\u{e9}t\u{e9}]\n".as_bytes(),
            "\u{e9}t\u{e9}",
            2,
        ),
    ];
    for (yaml, name, line) in cases {
        let text = String::from_utf8_lossy(yaml);
        assert_eq!(alias_in(yaml), Some((name.to_owned(), line)), "{text:?}");
    }
    // The billion laughs: refused at the first alias, before any expansion.
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x]\n");
    for (p, c) in "abcdefgh".chars().zip("bcdefghi".chars()) {
        let aliases = vec![format!("*{p}"); 9].join(",");
        bomb.push_str(&format!("{c}: &{c} [{aliases}]\n"));
    }
    assert_eq!(alias_in(bomb.as_bytes()), Some(("a".to_owned(), 2)));
    let err = ConfigError::File {
        path: "/etc/nsexporter.yaml".into(),
        problem: check_yaml(bomb.as_bytes()).unwrap_err().into(),
    };
    assert_eq!(
        err.to_string(),
        "config.file: /etc/nsexporter.yaml: YAML aliases (*a) are not supported (line 2)"
    );
}

#[test]
fn yaml_without_aliases_passes() {
    let cases: [&[u8]; 6] = [
        b"",
        b"# only a comment\n",
        b"scan:\n  interval: 15s\npolicy:\n  allow:\n    - pod: \"kube-proxy-.*\"\n",
        // Anchors alone repeat nothing.
        b"a: &x [1, 2]\nb: &y {k: v}\nc: &z 3\n",
        // `*` and `&` inside scalars are text.
        b"a: \"*x\"\nb: 'x*y'\nc: a&b\nd: \"&x\"\n",
        b"a: |\n  *x\n  &y\n",
    ];
    for yaml in cases {
        assert_eq!(alias_in(yaml), None, "{:?}", String::from_utf8_lossy(yaml));
    }
    // The shipped configs too.
    let systemd = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/systemd/nsexporter.yaml"
    );
    assert_eq!(alias_in(&std::fs::read(systemd).unwrap()), None);
}

#[test]
fn other_yaml_problems_are_refused() {
    // Syntax, an alias of no anchor (a syntax error to the parser), nesting past the
    // parser's limit, and bytes that are not UTF-8.
    let syntax: [&[u8]; 3] = [b"scan: [unclosed\n", b"a: *nowhere\n", &[b'['; 10_000]];
    for yaml in syntax {
        let err = check_yaml(yaml).unwrap_err();
        assert!(matches!(err, YamlProblem::Syntax(_)), "{err:?}");
        assert!(err.to_string().contains(" line "), "{err}");
    }
    assert!(matches!(
        check_yaml(b"a: \xff\n"),
        Err(YamlProblem::NotUtf8(3))
    ));
}

#[test]
fn config_file_limits_name_the_file_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.yaml");
    let comment = format!("#{}\n", "x".repeat(1022)); // 1 KiB
    std::fs::write(&big, comment.repeat(1024 + 1)).unwrap();
    let at_limit = dir.path().join("at-limit.yaml");
    std::fs::write(&at_limit, comment.repeat(1024)).unwrap();
    let two_docs = dir.path().join("two.yaml");
    std::fs::write(&two_docs, "scan: {}\n---\nlog: {}\n").unwrap();
    let with = |file: &Path| Flags {
        config_file: Some(file.to_owned()),
        ..Flags::default()
    };
    let cases = [
        (
            &big,
            format!(
                "config.file: {}: larger than the limit of 1048576 bytes",
                big.display()
            ),
        ),
        (&two_docs, format!("config.file: {}: ", two_docs.display())),
    ];
    for (file, want) in cases {
        let err = load(with(file), &[]).unwrap_err();
        assert!(err.starts_with(&want), "{err:?} should start with {want:?}");
        assert!(!err.contains('\n'), "one line: {err:?}");
    }
    let at = load(with(&at_limit), &[]);
    assert!(at.is_ok(), "exactly the limit is accepted: {at:?}");
}

/// As [`load`], with `yaml` as the config file and the fixture procfs unless a flag says.
fn load_yaml(flags: Flags, env: &[(&str, &str)], yaml: &str) -> Result<Settings, String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yaml");
    std::fs::write(&file, yaml).unwrap();
    let flags = Flags {
        config_file: Some(file),
        procfs: flags.procfs.or_else(|| Some(fixture_procfs())),
        ..flags
    };
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    RawConfig::load_from(&flags, env)
        .map_err(|e| e.to_string())
        .and_then(|raw| Settings::try_from(raw).map_err(|e| e.to_string()))
}

#[test]
fn every_key_has_a_flag_that_shows_its_default() {
    let cli = Cli::command_with_switches();
    let mut longs: Vec<&str> = cli.get_arguments().filter_map(|a| a.get_long()).collect();
    // In `--help`'s order.
    longs.sort_by_key(|long| {
        let arg = cli.get_arguments().find(|a| a.get_long() == Some(*long));
        arg.map(|a| a.get_display_order())
    });
    let wanted: Vec<String> = std::iter::once("config.file".to_owned())
        .chain(KEYS.iter().flat_map(|k| {
            let no = k.switch.then(|| format!("no-{}", k.long));
            std::iter::once(k.long.to_owned()).chain(no)
        }))
        .collect();
    assert_eq!(
        longs, wanted,
        "one flag per key, and --no- after each switch"
    );
    for key in KEYS {
        // `--section.key-name`, but for node_exporter's `--web.config.file`.
        if !std::ptr::eq(*key, &KEY.web_config_file) {
            assert_eq!(key.long, key.name.replace('_', "-"));
        }
        let flag = key.long;
        let arg = cli.get_arguments().find(|a| a.get_long() == Some(flag));
        let help = arg.and_then(|a| a.get_help()).unwrap().to_string();
        let default = format!("[default: {}]", shown(key.default));
        assert!(help.ends_with(&default), "--{flag}: {help:?}");
    }
}

/// The flags of `args` (after the program's name).
fn flags(args: &[&str]) -> Result<Flags, String> {
    let argv = std::iter::once("nsexporter").chain(args.iter().copied());
    Cli::try_parse_with_switches(argv)
        .map(|cli| cli.flags)
        .map_err(|e| e.to_string())
}

#[test]
fn every_boolean_key_is_a_switch_as_kingpin_has_it() {
    let switches: Vec<&str> = KEYS.iter().filter(|k| k.switch).map(|k| k.name).collect();
    assert_eq!(
        switches,
        ["scan.proc_events", "scan.ebpf", "scan.bind_mounts"]
    );
    let settings = |args: &[&str]| {
        let mut f = flags(args).unwrap();
        f.procfs = Some(fixture_procfs());
        let s = load(f, &[]).unwrap();
        (s.scan_proc_events, s.scan_bind_mounts)
    };
    let cases: [(&[&str], (bool, bool)); 12] = [
        (&[], (false, true)),
        (
            &["--scan.proc-events", "--no-scan.bind-mounts"],
            (true, false),
        ),
        (
            &["--scan.proc-events=true", "--scan.bind-mounts=false"],
            (true, false),
        ),
        (
            &["--no-scan.proc-events", "--scan.bind-mounts"],
            (false, true),
        ),
        (
            &["--scan.proc-events=1", "--scan.bind-mounts=F"],
            (true, false),
        ),
        // The last of a switch's two flags wins.
        (
            &["--scan.proc-events", "--no-scan.proc-events"],
            (false, true),
        ),
        (
            &["--no-scan.proc-events", "--scan.proc-events"],
            (true, true),
        ),
        (
            &["--no-scan.bind-mounts", "--scan.bind-mounts=true"],
            (false, true),
        ),
        (
            &["--scan.bind-mounts=true", "--no-scan.bind-mounts"],
            (false, false),
        ),
        // After the subcommand too.
        (
            &["list", "--scan.proc-events", "--no-scan.bind-mounts"],
            (true, false),
        ),
        (
            &["--scan.proc-events", "list", "--no-scan.bind-mounts"],
            (true, false),
        ),
        (
            &["list", "--no-scan.bind-mounts", "--output", "json"],
            (false, false),
        ),
    ];
    for (args, want) in cases {
        assert_eq!(settings(args), want, "{args:?}");
    }
    // A switch takes no separate value: the next argument is the next argument.
    let e = flags(&["--scan.proc-events", "true"]).unwrap_err();
    assert!(e.contains("unrecognized subcommand 'true'"), "{e}");
    assert!(flags(&["--no-scan.proc-events=true"]).is_err());
    // A bad value is said as from any source.
    let mut f = flags(&["--scan.proc-events=maybe"]).unwrap();
    f.procfs = Some(fixture_procfs());
    assert_eq!(
        load(f, &[]).unwrap_err(),
        "scan.proc_events: \"maybe\" is not one of true, false (or t, 1, yes, y, on; f, 0, no, n, off)"
    );
    // Other flags still take a separate value.
    assert_eq!(
        flags(&["--scan.interval", "5s"])
            .unwrap()
            .scan_interval
            .as_deref(),
        Some("5s")
    );
}

#[test]
fn help_shows_both_flags_of_a_switch_together() {
    let help = Cli::command_with_switches().render_long_help().to_string();
    for key in KEYS.iter().filter(|k| k.switch) {
        let on = help.find(&format!("--{}[=<BOOL>]", key.long));
        let off = help.find(&format!("--no-{}\n", key.long));
        let (Some(on), Some(off)) = (on, off) else {
            panic!("--{} and --no-{} in:\n{help}", key.long, key.long);
        };
        // Next to each other: nothing but the first one's help between them.
        assert!(!help[on..off].contains("\n      --"), "{}", &help[on..off]);
    }
}

#[test]
fn readme_lists_every_key() {
    let readme = include_str!("../../docs/configuration.md");
    for key in KEYS {
        let default = match key.default {
            "" => "none".to_owned(),
            d => format!("`{d}`"),
        };
        let row = format!(
            "| `--{}` | `{}` | `{}` | {default}",
            key.long,
            key.name,
            key.env(),
        );
        assert!(readme.contains(&row), "docs/configuration.md lacks {row:?}");
    }
}

#[test]
fn typed_values_from_every_source() {
    let yaml = "scan:\n  interval: 1m30s\nlog:\n  level: DEBUG\n  format: json\n";
    let s = load_yaml(Flags::default(), &[], yaml).unwrap();
    assert_eq!(s.scan_interval, Duration::from_secs(90));
    assert_eq!(s.log_level, tracing::Level::DEBUG, "level ignores case");
    assert_eq!(s.log_format, LogFormat::Json);
    assert_eq!(s.per_namespace, PerNamespace::All, "default");
    let yaml = "web:\n  max_requests: 0\n  max_connections: \"8\"\n  idle_timeout: 5m\n";
    let s = load_yaml(Flags::default(), &[], yaml).unwrap();
    assert_eq!(s.limits().max_requests, 0, "a YAML number");
    assert_eq!(s.limits().max_connections, 8, "a YAML string");
    assert_eq!(s.limits().idle_timeout, Duration::from_secs(300));
    let env = [("NSEXPORTER_METRICS__PER_NAMESPACE", "none")];
    let s = load_yaml(
        Flags::default(),
        &env,
        "metrics:\n  per_namespace: shared\n",
    )
    .unwrap();
    assert_eq!(s.per_namespace, PerNamespace::None, "env beats file");
    let flags = Flags {
        per_namespace: Some("shared".into()),
        ..Flags::default()
    };
    let s = load_yaml(flags, &env, "").unwrap();
    assert_eq!(s.per_namespace, PerNamespace::Shared, "flag beats env");
}

#[test]
fn bad_typed_values_name_their_key_first() {
    let cases = [
        (
            "metrics:\n  per_namespace: x\n",
            "metrics.per_namespace: \"x\" is not one of all, shared, none",
        ),
        // Names other than the level's are exact.
        (
            "metrics:\n  per_namespace: All\n",
            "metrics.per_namespace: \"All\" is not one of all, shared, none",
        ),
        (
            "log:\n  format: JSON\n",
            "log.format: \"JSON\" is not one of logfmt, json",
        ),
        (
            "log:\n  level: 3\n",
            "log.level: \"3\" is not one of error, warn, info, debug, trace",
        ),
        (
            "scan:\n  interval: 15\n",
            "scan.interval: \"15\": a unit is needed (Go's syntax: 1s, 300ms)",
        ),
        (
            "scan:\n  interval: -1s\n",
            "scan.interval: \"-1s\" is negative",
        ),
        (
            "scan:\n  interval: [1]\n",
            "scan.interval: invalid type: sequence, expected a string",
        ),
        (
            "web:\n  telemetry_path: {a: b}\n",
            "web.telemetry_path: invalid type: map, expected a string",
        ),
        (
            "web:\n  max_requests: many\n",
            "web.max_requests: \"many\" is not a whole number",
        ),
        (
            "web:\n  max_connections: -1\n",
            "web.max_connections: \"-1\" is not a whole number",
        ),
        (
            "web:\n  idle_timeout: 0s\n",
            "web.idle_timeout: \"0s\" would close every connection at once",
        ),
        (
            "scan:\n  interval: 99ms\n",
            "scan.interval: \"99ms\" is shorter than the minimum of 100ms",
        ),
    ];
    for (yaml, want) in cases {
        assert_eq!(
            load_yaml(Flags::default(), &[], yaml).unwrap_err(),
            want,
            "{yaml:?}"
        );
    }
}

#[test]
fn the_ebpf_ring_buffer_is_a_megabyte_unless_set() {
    let settings = |args: &[&str]| {
        let mut f = flags(args).unwrap();
        f.procfs = Some(fixture_procfs());
        load(f, &[]).unwrap().scan_ebpf_ring_buffer
    };
    assert_eq!(settings(&[]), crate::ebpf::RING_BYTES);
    assert_eq!(settings(&["--scan.ebpf-ring-buffer=8192"]), 8192);
}
