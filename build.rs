//! Compiles the plugin protocol in `proto/` into Rust (server and client side: the
//! test harness plays Grafana with the same definitions), and the remote write
//! messages (no service) that `serve --enable-remote-write-receiver` decodes.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A vendored protoc keeps the build free of a system package; PROTOC still wins.
    if std::env::var_os("PROTOC").is_none() {
        std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    let files = [
        "proto/backend.proto",
        "proto/grpc_controller.proto",
        "proto/grpc_broker.proto",
        "proto/grpc_stdio.proto",
        "proto/health.proto",
        "proto/remote.proto",
    ];
    tonic_prost_build::configure().compile_protos(&files, &["proto"])?;
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    Ok(())
}
