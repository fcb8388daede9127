//! The CRI v1 API (`runtime.v1`, cri-api's `api.proto`, vendored in `proto/`), generated at
//! build time: the messages and the RuntimeService and ImageService clients.
//!
//! Dev-only: nsexporter's tests drive containerd's CRI plugin with it as kubelet does; the
//! exporter itself never speaks CRI, so a plain build compiles none of this.

/// Package `runtime.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("runtime.v1");
}
