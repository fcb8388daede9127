//! nsexporter: makes Linux kernel namespaces visible to Prometheus.
#[macro_use]
mod labels;

pub mod allocator;
pub mod attribution;
pub mod capabilities;
pub mod cgroup;
pub mod config;
pub mod declared;
pub mod ebpf;
pub mod events;
/// The bounded reads and change stamps of the files the exporter reads, shared with the web
/// layer, which lies below.
pub use nsexporter_web::files;
pub mod health;
pub mod lifecycle;
pub mod list;
pub mod metrics;
pub mod model;
pub mod pidfd;
pub mod pipeline;
pub mod policy;
pub mod privilege;
pub mod procfs;
pub mod scan;
pub mod scan_loop;
pub mod sharing;
pub mod site;
