//! The scan pipeline, put together: the stages (`scan` → `lifecycle` → `attribution` →
//! `sharing`, `policy` and `declared` → `metrics`) are modules of their own; this is where
//! they meet, in three rooms that the scheduler ([`crate::scan_loop`]) calls in turn.
//!
//! - [`sources`]: reads what the name and spec sources say, before each step (all the I/O
//!   besides the scan's own).
//! - [`privilege`]: reads the containers' privilege after attribution, for the step.
//! - [`step`]: a full scan's snapshot taken through every stage, with no I/O: the last state
//!   and a new snapshot in, the scan's result out. The golden scenario calls it as the
//!   binary does.
//! - [`between`]: between two steps, sweeps and process events judged by the host rules
//!   against the last step's result.

pub mod between;
pub mod privilege;
pub mod sources;
pub mod step;

pub use between::{Between, Context};
pub use sources::Sources;
pub use step::{Attributed, ScanResult, SpecView, State, attribute, step};
