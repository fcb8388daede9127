//! `nsexporter_name_source_errors_total{source,reason}`: failed reads of the files that name
//! containers (`attribution::NameSources`). Counted where the scan loop refreshes the names,
//! through the handle [`Metrics::name_source_errors`] registers.

use prometheus::IntCounterVec;

use super::{Metrics, opts};
use crate::attribution::{NameErrorReason, NameSource};

/// Counts failed reads of the name sources, by source and reason.
#[derive(Clone)]
pub struct NameSourceErrors(IntCounterVec);

impl NameSourceErrors {
    pub fn count(&self, source: NameSource, reason: NameErrorReason) {
        self.0
            .with_label_values(&[source.as_str(), reason.as_str()])
            .inc();
    }
}

impl Metrics {
    /// Registers the family, every source and reason at 0, and returns the handle that
    /// counts. Registering twice is refused: call it once.
    pub fn name_source_errors(&self) -> NameSourceErrors {
        let errors = IntCounterVec::new(
            opts(
                "nsexporter_name_source_errors_total",
                "Failed reads of the files that name containers, by source (kubelet, docker, podman) and reason: permission_denied, parse_error, too_large, io_error. A missing source is no error.",
            ),
            &["source", "reason"],
        )
        .unwrap();
        for source in NameSource::ALL {
            for reason in NameErrorReason::ALL {
                errors.with_label_values(&[source.as_str(), reason.as_str()]);
            }
        }
        self.registry
            .register(Box::new(errors.clone()))
            .expect("nsexporter_name_source_errors_total is registered once");
        NameSourceErrors(errors)
    }
}
