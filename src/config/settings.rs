//! Validation into [`Settings`]: each key parsed and checked on its own (the table's `parse`),
//! then the checks that weigh one key against another, then the policy. Every error names the
//! key it is about, on one line.

use super::error::{ConfigError, invalid};
use super::keys::{Flags, KEY, RawConfig, Settings};
use super::value::parse_duration;
use crate::policy::Policy;
use crate::scan::PinScan;
use nsexporter_web::http::Limits;

impl Settings {
    /// The key table's defaults, with no file, environment or flag: what the binary runs with
    /// when given nothing, and the only defaults there are (the library's types have none of
    /// their own to disagree with).
    pub fn defaults() -> Settings {
        RawConfig::load_from(&Flags::default(), [])
            .and_then(Settings::try_from)
            .expect("the key table's defaults are valid")
    }

    /// What a client can hold open: the timeouts and caps of `web.*`.
    pub fn limits(&self) -> Limits {
        Limits {
            read_header_timeout: self.read_header_timeout,
            idle_timeout: self.idle_timeout,
            max_requests: self.max_requests,
            max_connections: self.max_connections,
        }
    }

    /// What holds a namespace without a process: `scan.bind_mounts` and `scan.fd_interval`.
    pub fn scan_pins(&self) -> PinScan {
        PinScan {
            mounts: self.scan_bind_mounts,
            fds: self.scan_fd_interval,
        }
    }

    /// The default sweep interval with a scan interval as short turns sweeps off (said once
    /// at start); a sweep interval chosen so is refused, as it would do nothing.
    fn check_sweep_interval(&self) -> Result<(), ConfigError> {
        let (sweep, scan) = (&KEY.scan_sweep_interval, &KEY.scan_interval);
        let default_sweep = parse_duration(sweep.default).ok();
        let interval = self.scan_sweep_interval;
        if !interval.is_zero() && interval >= self.scan_interval && Some(interval) != default_sweep
        {
            return Err(invalid(
                sweep.name,
                format!(
                    "\"{}\" is not shorter than {} \"{}\": sweeps run between scans (\"0s\" turns them off)",
                    humantime::format_duration(interval),
                    scan.name,
                    humantime::format_duration(self.scan_interval)
                ),
            ));
        }
        Ok(())
    }
}

impl TryFrom<RawConfig> for Settings {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Settings, ConfigError> {
        let (settings, policy) = Settings::of_keys(raw)?;
        settings.check_sweep_interval()?;
        Ok(Settings {
            policy: Policy::try_from(policy)?,
            ..settings
        })
    }
}
