//! gRPC services, generated from `proto/` at build time.

/// `bazaar.users.v1`: the account lookup (`Users/GetUser`).
#[allow(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::all,
    clippy::pedantic
)]
pub mod users {
    tonic::include_proto!("bazaar.users.v1");
}

/// etcd's v3 API, the part Bazaar calls when etcd is its discovery and KV backend
/// (`proto/etcd/`): key-value, watch and lease.
#[allow(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::all,
    clippy::pedantic
)]
pub mod etcd {
    /// The calls: `KV`, `Watch` and `Lease`.
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
    /// Stored key-value pairs and their change events.
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }
}
