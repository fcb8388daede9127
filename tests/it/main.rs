//! The integration tests, one binary: each module is what was a test binary of its own, and
//! all of them share one build of `support`. `scripts/test` runs the modules in lanes that
//! do not disturb each other (see there); `cargo test --test it MODULE::` runs one module.
//! Tests that need root, or an installed tool, are `#[ignore]`d with the reason, so that a
//! plain `cargo test` passes for any user.

mod support;

mod alert_rules;
mod alerting;
mod architecture;
mod cluster;
mod connections;
mod container_image;
mod cri;
mod dashboard;
mod declared;
mod declared_engines;
mod deploy;
#[cfg(feature = "ebpf")]
mod ebpf;
mod engine_names;
mod evasion;
#[cfg(feature = "ebpf")]
mod events_mode;
mod exporter;
mod failures;
mod holds;
mod kernel;
mod kubernetes_node;
mod limits;
mod privilege;
mod soak;
mod web_config;
