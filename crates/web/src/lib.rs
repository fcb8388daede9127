//! nsexporter's web layer, the counterpart of Prometheus' exporter-toolkit: the listener and
//! its connection limits and deadlines ([`http`]), TLS, basic auth, response headers and the
//! rate limit of `--web.config.file` ([`web_config`]); the bounded reads and change stamps of
//! the files it and the exporter's config read ([`files`]); the one way both files read a
//! boolean or a duration ([`dialect`]).
//!
//! It knows nothing of namespaces: what it serves comes from a [`http::Site`] the binary
//! provides (the metrics, plain or gzip, the health probes' answers, the landing page).

pub mod dialect;
pub mod files;
pub mod http;
pub mod web_config;
