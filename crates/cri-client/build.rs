//! Compiles the vendored CRI `api.proto` into Rust with protox (no `protoc` on the machine)
//! and tonic-prost-build (the messages and a RuntimeService/ImageService client, no server).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/api.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}
