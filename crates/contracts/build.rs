//! Generates the gRPC messages and services from `proto/` with protox (a protobuf compiler in
//! Rust), so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors =
        protox::compile(["bazaar/users/v1/users.proto", "etcd/rpc.proto"], ["proto"])?;
    tonic_prost_build::configure()
        // Clients and servers run on the chassis' own connections, not tonic's transport.
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}
