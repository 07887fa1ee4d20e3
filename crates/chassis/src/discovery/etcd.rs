//! etcd as the discovery and KV backend, in the registry's place.
//!
//! Where there is no Kubernetes but more than one machine, an engine built for it keeps the
//! list of instances: etcd. The registry's model maps onto it directly:
//!
//! | registry | etcd |
//! |---|---|
//! | an instance registers with a TTL | a lease of that TTL, and the key `{prefix}instances/{service}/{id}` attached to it (the instance, as JSON) |
//! | a heartbeat | a keep-alive of the lease |
//! | a missed TTL | the lease expires, and etcd deletes the key |
//! | deregistration | the lease is revoked |
//! | a KV entry (traffic policy, fault rule) | the key `{prefix}kv/{key}`; its modify index is the key's mod revision |
//! | a blocking query (`index`, `wait`) | a watch of the key range from the revision after `index`, held up to `wait` |
//!
//! The registry's index is etcd's revision, so the watches above this module
//! ([`super::watch_prefix`], the service watches of [`super::Discovery`]) work unchanged.
//! etcd checks no health URL: an instance is listed while it keeps its lease alive, which it
//! stops doing when it shuts down or dies; a listed instance that fails calls is ejected by
//! each caller's balancer, as with the registry.
//!
//! Calls go over HTTP/2 on the chassis' own connections, to the first endpoint that answers:
//! plain `http://`, or `https://` with the service's mTLS identity (etcd's certificate then
//! comes from Bazaar's CA, and etcd may ask for the client's).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use contracts::discovery::{
    HealthStatus, Instance, InstanceList, KvEntry, KvList, Registration, ServiceInstances,
    ServiceList, ServiceSummary,
};
use contracts::grpc::etcd::etcdserverpb::{
    self as pb, compare, kv_client::KvClient, lease_client::LeaseClient, request_op,
    watch_client::WatchClient, watch_request,
};
use futures_util::StreamExt;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use tonic::Status;

use super::registry_api::{Heartbeat, RegistryError};
use crate::client::grpc::h2_connect;
use crate::config::EtcdConfig;
use crate::mtls::Identity;

/// Time an ordinary etcd call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The TTL of a registration that names none, as the registry's.
const DEFAULT_TTL: Duration = Duration::from_secs(10);
/// Time to connect to one endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Client of an etcd cluster, holding Bazaar's keys under one prefix. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EtcdClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    endpoints: Vec<(Scheme, Authority)>,
    identity: Option<Identity>,
    prefix: String,
    /// The endpoints as configured, for logs.
    label: String,
    connection: tokio::sync::Mutex<Option<EtcdChannel>>,
    /// The lease of each instance this process registered.
    leases: Mutex<HashMap<String, i64>>,
}

/// Why an etcd client could not be made.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EtcdConfigError {
    /// An endpoint is not an `http://` or `https://` base URL.
    #[error("{0:?} is not an http:// or https:// base URL")]
    Endpoint(String),
    /// No endpoint was given.
    #[error("no endpoint")]
    NoEndpoint,
}

impl EtcdClient {
    /// A client of the cluster `config` names; `https://` endpoints are reached with `identity`
    /// (without one, they are skipped, and named in the error if no endpoint answers).
    pub fn new(config: &EtcdConfig, identity: Option<Identity>) -> Result<Self, EtcdConfigError> {
        let mut endpoints = Vec::new();
        for endpoint in &config.endpoints {
            let uri: Uri = endpoint
                .parse()
                .map_err(|_| EtcdConfigError::Endpoint(endpoint.clone()))?;
            let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned())
            else {
                return Err(EtcdConfigError::Endpoint(endpoint.clone()));
            };
            if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
                return Err(EtcdConfigError::Endpoint(endpoint.clone()));
            }
            endpoints.push((scheme, authority));
        }
        if endpoints.is_empty() {
            return Err(EtcdConfigError::NoEndpoint);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                endpoints,
                identity,
                prefix: config.prefix.clone(),
                label: format!("etcd {}", config.endpoints.join(",")),
                connection: tokio::sync::Mutex::new(None),
                leases: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// What this client talks to, for logs: `etcd http://127.0.0.1:2379`.
    pub fn label(&self) -> &str {
        &self.inner.label
    }

    fn instance_key(&self, service: &str, id: &str) -> String {
        format!("{}instances/{service}/{id}", self.inner.prefix)
    }

    fn instances_prefix(&self, service: Option<&str>) -> String {
        match service {
            Some(service) => format!("{}instances/{service}/", self.inner.prefix),
            None => format!("{}instances/", self.inner.prefix),
        }
    }

    fn kv_key(&self, key: &str) -> String {
        format!("{}kv/{key}", self.inner.prefix)
    }

    /// The stored name of `key`, if the registry role's rules allow it.
    fn checked_kv_key(&self, key: &str) -> Result<String, RegistryError> {
        contracts::discovery::check_key(key)
            .map(|()| self.kv_key(key))
            .map_err(|reason| RegistryError::Rejected(format!("key {key:?} {reason}")))
    }

    /// Registers (or re-registers) instance `id` under a new lease of its TTL.
    pub async fn register(
        &self,
        id: &str,
        registration: &Registration,
    ) -> Result<(), RegistryError> {
        let problems = contracts::discovery::registration_problems(id, registration);
        if !problems.is_empty() {
            let problems: Vec<String> = problems
                .into_iter()
                .map(|(field, reason)| format!("{field} {reason}"))
                .collect();
            return Err(RegistryError::Rejected(problems.join("; ")));
        }
        let ttl = registration
            .ttl_ms
            .map_or(DEFAULT_TTL, Duration::from_millis);
        // etcd counts in whole seconds; a lease never outlives less than the TTL asked for.
        let seconds = i64::try_from(ttl.as_millis().div_ceil(1000))
            .unwrap_or(i64::MAX)
            .max(1);
        let instance = Instance {
            id: id.to_owned(),
            service: registration.service.clone(),
            address: registration.address.clone(),
            version: registration.version.clone(),
            health_url: registration.health_url.clone(),
            meta: registration.meta.clone(),
            status: HealthStatus::Passing,
            output: None,
            registered_at: chrono::Utc::now(),
        };
        let value = serde_json::to_vec(&instance)?;
        let channel = self.channel().await?;
        let grant = call(
            LeaseClient::new(channel.clone()).lease_grant(pb::LeaseGrantRequest {
                ttl: seconds,
                id: 0,
            }),
        )
        .await?;
        if !grant.error.is_empty() {
            return Err(etcd_error(Status::unavailable(grant.error)));
        }
        call(KvClient::new(channel).put(pb::PutRequest {
            key: self.instance_key(&registration.service, id).into_bytes(),
            value,
            lease: grant.id,
        }))
        .await?;
        let previous = self
            .inner
            .leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.to_owned(), grant.id);
        // A re-registration leaves the old lease nothing to hold: let it go now.
        if let Some(previous) = previous.filter(|previous| *previous != grant.id) {
            let _ = self.revoke(previous).await;
        }
        Ok(())
    }

    /// Keeps instance `id`'s lease alive.
    pub async fn heartbeat(&self, id: &str) -> Result<Heartbeat, RegistryError> {
        let Some(lease) = self.lease_of(id) else {
            return Ok(Heartbeat::Unknown);
        };
        let channel = self.channel().await?;
        let request = futures_util::stream::iter([pb::LeaseKeepAliveRequest { id: lease }]);
        let exchange = async {
            let mut answers = LeaseClient::new(channel)
                .lease_keep_alive(request)
                .await
                .map_err(etcd_error)?
                .into_inner();
            match answers.next().await {
                Some(Ok(answer)) => Ok(answer.ttl),
                Some(Err(status)) => Err(etcd_error(status)),
                None => Err(etcd_error(Status::unavailable(
                    "etcd closed the keep-alive without an answer",
                ))),
            }
        };
        let ttl = tokio::time::timeout(CALL_TIMEOUT, exchange)
            .await
            .map_err(|_| RegistryError::Timeout(CALL_TIMEOUT))??;
        if ttl <= 0 {
            // Expired: the key went with it.
            self.forget(id, lease);
            return Ok(Heartbeat::Unknown);
        }
        Ok(Heartbeat::Renewed)
    }

    /// Removes instance `id`: revokes its lease, which deletes its key.
    pub async fn deregister(&self, id: &str) -> Result<(), RegistryError> {
        if let Some(lease) = self.lease_of(id) {
            self.revoke(lease).await?;
            self.forget(id, lease);
        }
        Ok(())
    }

    async fn revoke(&self, lease: i64) -> Result<(), RegistryError> {
        let channel = self.channel().await?;
        match call(LeaseClient::new(channel).lease_revoke(pb::LeaseRevokeRequest { id: lease }))
            .await
        {
            Ok(_) => Ok(()),
            // Already gone (expired): what revoking would have done.
            Err(RegistryError::Etcd(status)) if status.code() == tonic::Code::NotFound => Ok(()),
            Err(error) => Err(error),
        }
    }

    fn lease_of(&self, id: &str) -> Option<i64> {
        self.inner
            .leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .copied()
    }

    fn forget(&self, id: &str, lease: i64) {
        let mut leases = self
            .inner
            .leases
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if leases.get(id) == Some(&lease) {
            leases.remove(id);
        }
    }

    /// The instances of `service`; with `index`, once something under it changed after that
    /// revision, or after `wait` with the same index.
    pub async fn service(
        &self,
        service: &str,
        index: Option<u64>,
        wait: Duration,
    ) -> Result<ServiceInstances, RegistryError> {
        let prefix = self.instances_prefix(Some(service));
        let index = self.wait_for_change(&prefix, index, wait).await?;
        let (revision, kvs) = self.range_prefix(&prefix).await?;
        Ok(ServiceInstances {
            service: service.to_owned(),
            index: index.unwrap_or(revision),
            instances: instances(kvs),
        })
    }

    /// Every instance of every service.
    pub async fn instances(&self) -> Result<InstanceList, RegistryError> {
        let (index, kvs) = self.range_prefix(&self.instances_prefix(None)).await?;
        Ok(InstanceList {
            index,
            instances: instances(kvs),
        })
    }

    /// Every service with its instance counts (every listed instance is passing).
    pub async fn services(&self) -> Result<ServiceList, RegistryError> {
        let list = self.instances().await?;
        let mut services: Vec<ServiceSummary> = Vec::new();
        for instance in list.instances {
            match services.iter_mut().find(|s| s.name == instance.service) {
                Some(summary) => {
                    summary.passing += 1;
                    summary.total += 1;
                    if !summary.versions.contains(&instance.version) {
                        summary.versions.push(instance.version);
                    }
                }
                None => services.push(ServiceSummary {
                    name: instance.service,
                    passing: 1,
                    total: 1,
                    versions: vec![instance.version],
                }),
            }
        }
        for summary in &mut services {
            summary.versions.sort();
        }
        services.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(ServiceList {
            index: list.index,
            services,
        })
    }

    /// A key of the KV store, or `None` if it does not exist.
    pub async fn kv_get(&self, key: &str) -> Result<Option<KvEntry>, RegistryError> {
        let key = self.checked_kv_key(key)?;
        let channel = self.channel().await?;
        let answer = call(KvClient::new(channel).range(pb::RangeRequest {
            key: key.into_bytes(),
            ..Default::default()
        }))
        .await?;
        Ok(answer.kvs.into_iter().next().and_then(|kv| self.entry(kv)))
    }

    /// Writes a key. With `cas`, only if the key's modify index is still `cas` (0: only if
    /// absent); `None` when that check failed.
    pub async fn kv_put(
        &self,
        key: &str,
        value: &str,
        cas: Option<u64>,
    ) -> Result<Option<u64>, RegistryError> {
        let key = self.checked_kv_key(key)?.into_bytes();
        if value.len() > contracts::discovery::MAX_VALUE_LEN {
            return Err(RegistryError::Rejected(format!(
                "values are at most {} bytes",
                contracts::discovery::MAX_VALUE_LEN
            )));
        }
        let put = pb::PutRequest {
            key: key.clone(),
            value: value.as_bytes().to_vec(),
            lease: 0,
        };
        let channel = self.channel().await?;
        let Some(cas) = cas else {
            let answer = call(KvClient::new(channel).put(put)).await?;
            return Ok(Some(revision(answer.header.as_ref())));
        };
        let revision_is = |target: compare::CompareTarget, union| pb::Compare {
            result: compare::CompareResult::Equal.into(),
            target: target.into(),
            key: key.clone(),
            target_union: Some(union),
        };
        // Modify index 0 is "absent": a key never created has creation revision 0.
        let guard = match i64::try_from(cas) {
            Ok(0) => revision_is(
                compare::CompareTarget::Create,
                compare::TargetUnion::CreateRevision(0),
            ),
            Ok(cas) => revision_is(
                compare::CompareTarget::Mod,
                compare::TargetUnion::ModRevision(cas),
            ),
            // No revision is that large: the check fails.
            Err(_) => return Ok(None),
        };
        let answer = call(KvClient::new(channel).txn(pb::TxnRequest {
            compare: vec![guard],
            success: vec![pb::RequestOp {
                request: Some(request_op::Request::RequestPut(put)),
            }],
            failure: Vec::new(),
        }))
        .await?;
        Ok(answer.succeeded.then(|| revision(answer.header.as_ref())))
    }

    /// Deletes a key; `false` if it did not exist.
    pub async fn kv_delete(&self, key: &str) -> Result<bool, RegistryError> {
        let key = self.checked_kv_key(key)?;
        let channel = self.channel().await?;
        let answer = call(KvClient::new(channel).delete_range(pb::DeleteRangeRequest {
            key: key.into_bytes(),
            range_end: Vec::new(),
        }))
        .await?;
        Ok(answer.deleted > 0)
    }

    /// Deletes every key under the prefix (instances and KV alike); returns how many.
    pub async fn clear(&self) -> Result<u64, RegistryError> {
        let prefix = self.inner.prefix.as_bytes();
        let channel = self.channel().await?;
        let answer = call(KvClient::new(channel).delete_range(pb::DeleteRangeRequest {
            key: prefix.to_vec(),
            range_end: prefix_end(prefix),
        }))
        .await?;
        Ok(u64::try_from(answer.deleted).unwrap_or(0))
    }

    /// The keys under `prefix`; with `index`, once something under it changed after that
    /// revision, or after `wait` with the same index.
    pub async fn kv_list(
        &self,
        prefix: &str,
        index: Option<u64>,
        wait: Duration,
    ) -> Result<KvList, RegistryError> {
        let full = self.kv_key(prefix);
        let index = self.wait_for_change(&full, index, wait).await?;
        let (revision, kvs) = self.range_prefix(&full).await?;
        let mut entries: Vec<KvEntry> = kvs.into_iter().filter_map(|kv| self.entry(kv)).collect();
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(KvList {
            index: index.unwrap_or(revision),
            entries,
        })
    }

    /// With `index`: waits until a key under `prefix` changes after revision `index`, and
    /// returns `None` (the caller reads the new revision), or for `wait`, and returns
    /// `Some(index)` (nothing changed). Without: returns `None` at once.
    async fn wait_for_change(
        &self,
        prefix: &str,
        index: Option<u64>,
        wait: Duration,
    ) -> Result<Option<u64>, RegistryError> {
        let Some(index) = index else {
            return Ok(None);
        };
        let start = i64::try_from(index).unwrap_or(i64::MAX - 1) + 1;
        let create = pb::WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                pb::WatchCreateRequest {
                    key: prefix.as_bytes().to_vec(),
                    range_end: prefix_end(prefix.as_bytes()),
                    start_revision: start,
                },
            )),
        };
        // The request stream stays open while the watch is wanted: etcd ends a watch whose
        // stream the client closed.
        let requests = futures_util::stream::iter([create]).chain(futures_util::stream::pending());
        let channel = self.channel().await?;
        let watching = async {
            let mut answers = WatchClient::new(channel)
                .watch(requests)
                .await
                .map_err(etcd_error)?
                .into_inner();
            while let Some(answer) = answers.next().await {
                let answer = answer.map_err(etcd_error)?;
                // Events, or a watch etcd cancelled (the revision was compacted away): either
                // way the caller must read again.
                if !answer.events.is_empty() || answer.canceled || answer.compact_revision > 0 {
                    return Ok(());
                }
            }
            Err(etcd_error(Status::unavailable("etcd ended the watch")))
        };
        match tokio::time::timeout(wait, watching).await {
            Ok(Ok(())) => Ok(None),
            Ok(Err(error)) => Err(error),
            Err(_) => Ok(Some(index)),
        }
    }

    /// The keys under `prefix`, with the store's revision.
    async fn range_prefix(
        &self,
        prefix: &str,
    ) -> Result<(u64, Vec<contracts::grpc::etcd::mvccpb::KeyValue>), RegistryError> {
        let channel = self.channel().await?;
        let answer = call(KvClient::new(channel).range(pb::RangeRequest {
            key: prefix.as_bytes().to_vec(),
            range_end: prefix_end(prefix.as_bytes()),
            ..Default::default()
        }))
        .await?;
        Ok((revision(answer.header.as_ref()), answer.kvs))
    }

    /// A stored KV pair as a registry entry; `None` for one not under the KV prefix or not
    /// UTF-8 (not written by Bazaar).
    fn entry(&self, kv: contracts::grpc::etcd::mvccpb::KeyValue) -> Option<KvEntry> {
        let key = String::from_utf8(kv.key).ok()?;
        let key = key.strip_prefix(&self.kv_key(""))?.to_owned();
        Some(KvEntry {
            key,
            value: String::from_utf8(kv.value).ok()?,
            create_index: u64::try_from(kv.create_revision).unwrap_or(0),
            modify_index: u64::try_from(kv.mod_revision).unwrap_or(0),
        })
    }

    /// The HTTP/2 connection to the cluster: the open one, else one to the first endpoint
    /// that answers.
    async fn channel(&self) -> Result<EtcdChannel, RegistryError> {
        let mut connection = self.inner.connection.lock().await;
        if let Some(channel) = connection
            .as_ref()
            .filter(|channel| !channel.sender.is_closed())
        {
            return Ok(channel.clone());
        }
        let mut failures = Vec::new();
        for (scheme, authority) in &self.inner.endpoints {
            let connected = h2_connect(
                scheme,
                authority,
                self.inner.identity.as_ref(),
                None,
                CONNECT_TIMEOUT,
            )
            .await;
            let sender = match connected {
                Ok(sender) => sender,
                Err(failure) => {
                    failures.push(failure);
                    continue;
                }
            };
            let channel = EtcdChannel {
                sender,
                scheme: scheme.clone(),
                authority: authority.clone(),
            };
            *connection = Some(channel.clone());
            return Ok(channel);
        }
        Err(RegistryError::Etcd(Status::unavailable(format!(
            "no etcd endpoint answers: {}",
            failures.join("; ")
        ))))
    }
}

/// The instances stored under an instances prefix, by id.
fn instances(kvs: Vec<contracts::grpc::etcd::mvccpb::KeyValue>) -> Vec<Instance> {
    let mut instances: Vec<Instance> = kvs
        .into_iter()
        .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
        .collect();
    instances.sort_by(|a, b| a.id.cmp(&b.id));
    instances
}

/// The end of the range of keys that start with `prefix`: the prefix with its last byte
/// below 0xff increased by one (`[0]`, every key, for a prefix of only 0xff bytes).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn revision(header: Option<&pb::ResponseHeader>) -> u64 {
    header.map_or(0, |header| u64::try_from(header.revision).unwrap_or(0))
}

fn etcd_error(status: Status) -> RegistryError {
    RegistryError::Etcd(status)
}

/// One unary call within [`CALL_TIMEOUT`].
async fn call<T>(
    call: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, RegistryError> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(etcd_error(status)),
        Err(_) => Err(RegistryError::Timeout(CALL_TIMEOUT)),
    }
}

/// The connection to etcd as generated clients take it: each request goes out with the
/// endpoint's scheme and authority.
#[derive(Debug, Clone)]
struct EtcdChannel {
    sender: SendRequest<tonic::body::Body>,
    scheme: Scheme,
    authority: Authority,
}

impl tower::Service<Request<tonic::body::Body>> for EtcdChannel {
    type Response = Response<Incoming>;
    type Error = hyper::Error;
    type Future =
        Pin<Box<dyn Future<Output = Result<Response<Incoming>, hyper::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.sender.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<tonic::body::Body>) -> Self::Future {
        crate::client::grpc::address(&mut request, &self.scheme, &self.authority);
        Box::pin(self.sender.send_request(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_etcd_url_names_one_endpoint_and_the_prefix() {
        let config = EtcdConfig::from_url("etcd+http://10.0.0.5:2379/shop/").expect("an etcd URL");
        assert_eq!(config.endpoints, ["http://10.0.0.5:2379"]);
        assert_eq!(config.prefix, "/shop/");
        let config = EtcdConfig::from_url("etcd+https://etcd:2379").expect("an etcd URL");
        assert_eq!(config.endpoints, ["https://etcd:2379"]);
        assert_eq!(config.prefix, "/bazaar/");
        assert_eq!(
            EtcdConfig::from_url("etcd+http://etcd:2379/shop")
                .expect("an etcd URL")
                .prefix,
            "/shop/"
        );
        for other in [
            "http://127.0.0.1:7701",
            "etcd://x:2379",
            "etcd+http://",
            "etcd+ftp://x",
        ] {
            assert_eq!(EtcdConfig::from_url(other), None, "{other}");
        }
    }

    #[test]
    fn a_prefix_ends_where_its_last_byte_is_one_more() {
        assert_eq!(prefix_end(b"/bazaar/kv/"), b"/bazaar/kv0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn endpoints_are_http_or_https_base_urls() {
        let config = |endpoints: &[&str]| EtcdConfig {
            endpoints: endpoints.iter().map(|e| (*e).to_owned()).collect(),
            ..EtcdConfig::default()
        };
        assert!(EtcdClient::new(&config(&["http://127.0.0.1:2379"]), None).is_ok());
        assert_eq!(
            EtcdClient::new(&config(&["127.0.0.1:2379"]), None).err(),
            Some(EtcdConfigError::Endpoint("127.0.0.1:2379".into()))
        );
        assert_eq!(
            EtcdClient::new(&config(&["ftp://etcd:2379"]), None).err(),
            Some(EtcdConfigError::Endpoint("ftp://etcd:2379".into()))
        );
        assert_eq!(
            EtcdClient::new(&config(&[]), None).err(),
            Some(EtcdConfigError::NoEndpoint)
        );
    }
}
