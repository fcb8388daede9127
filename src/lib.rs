//! nsexporter: makes Linux kernel namespaces visible to Prometheus.
#[macro_use]
mod labels;

pub mod allocator;
pub mod attribution;
pub mod capabilities;
pub mod config;
pub mod declared;
pub mod ebpf;
pub mod events;
pub mod files;
pub mod health;
pub mod http;
pub mod lifecycle;
pub mod list;
pub mod metrics;
pub mod model;
pub mod pidfd;
pub mod pipeline;
pub mod policy;
pub mod procfs;
pub mod scan;
pub mod scan_loop;
pub mod sharing;
pub mod web_config;
