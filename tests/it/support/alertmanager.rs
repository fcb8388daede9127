//! A real Alertmanager (Debian's `prometheus-alertmanager`) on a free loopback port, with its
//! cluster (gossip) listener off and its data in a tempdir; killed and the tempdir removed on
//! drop. Set `ALERTMANAGER` to use a binary outside `PATH`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, http, wait_for};

pub struct Alertmanager {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Starts Alertmanager with `config` (YAML or JSON text) and waits until it is ready.
    /// Logs at debug level, so that a test can see each aggregation group's flushes.
    pub fn start(config: &str) -> Alertmanager {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("alertmanager.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("alertmanager.log")).unwrap();
        let program = std::env::var("ALERTMANAGER").unwrap_or_else(|_| binary().to_string());
        let child = Command::new(&program)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // Empty: no cluster listener, no gossip (TCP and UDP 9094 by default, on every
            // address).
            .arg("--cluster.listen-address=")
            .arg("--log.level=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{program}: {e} (Debian package prometheus-alertmanager; scripts/install-test-deps)")
            });
        let mut am = Alertmanager { child, port, dir };
        wait_for("Alertmanager to be ready", Duration::from_secs(30), || {
            if let Ok(Some(status)) = am.child.try_wait() {
                panic!("alertmanager exited ({status}):\n{}", am.log());
            }
            http(port, "GET", "/-/ready", &[])
                .ok()
                .filter(|r| r.status == 200)
                .map(|_| ())
        });
        am
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("alertmanager.log")).unwrap_or_default()
    }

    /// GET an API path (already URL-encoded) and parse the JSON answer.
    pub fn api(&self, path_and_query: &str) -> serde_json::Value {
        let r = http(self.port, "GET", path_and_query, &[]).expect("Alertmanager API");
        serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("{path_and_query}: {e}: {}", r.text()))
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian names the binary `prometheus-alertmanager`; upstream's is `alertmanager`.
fn binary() -> &'static str {
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| Path::new(&d).join(name).is_file()))
    };
    if on_path("prometheus-alertmanager") {
        "prometheus-alertmanager"
    } else {
        "alertmanager"
    }
}
