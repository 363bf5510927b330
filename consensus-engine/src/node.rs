//! `consensus node`: one node of a real cluster, in its own process, with
//! the reference key-value store behind an HTTP API.
//!
//! The node is a Raft node ([`RaftNodeBuilder`]) whose term, vote, log and
//! snapshots live in a [`DiskStorage`] under `--data-dir`, talking to its
//! peers over the authenticated [`TcpTransport`], on a normal (real-clock)
//! actix System. The HTTP API runs on actix-web workers:
//!
//! | request | answer |
//! |---|---|
//! | `PUT /kv/{key}` (body: the value) | 200 `{"term":T,"index":I}` once committed |
//! | `GET /kv/{key}` | linearizable read (ReadIndex on the leader): 200 with the value, or 404 |
//! | `DELETE /kv/{key}` | 200 `{"deleted":true\|false,...}` once committed |
//! | `POST /kv/{key}/cas` (JSON `{"expected":"old"\|null,"new":"v"}`) | 200 `{"swapped":true,...}`, or 409 `{"swapped":false,"current":...}` |
//! | `GET /status` | JSON: `id`, `role`, `term`, `leader`, `commit_index`, `last_applied`, `members`, `peers` |
//! | `POST /members` (JSON `{"id":4,"addr":"HOST:PORT","http":"HOST:PORT"}`) | adds the node (learner, catch-up, joint consensus); 200 `{"members":[...]}` |
//! | `DELETE /members/{id}` | removes the node through joint consensus |
//! | `PUT /peers/{id}` (JSON `{"addr":...,"http":...}`) | internal: records where a node listens (the leader sends it to every member before adding a node) |
//! | `GET /metrics` | Prometheus text |
//!
//! A request that needs the leader, sent to another node, answers 307
//! with `Location` on the leader's HTTP address (when the node knows the
//! leader and its HTTP address), or 503 `{"error":...,"outcome":"not_applied"}`
//! while no leader is known. Other failures carry an `outcome`:
//! `not_applied` (503: certainly not applied, retry) or `unknown` (500,
//! or 504 after `--request-timeout-ms`: it may have been applied).
//!
//! The HTTP API has no authentication: bind `--http` to an interface only
//! trusted clients reach. The peer port (`--listen`) admits only nodes
//! holding the cluster key.
//!
//! Data directory: `raft/` (the store), `peers.json` (addresses learned
//! through `PUT /peers`), `starts` (how many times the node started).
//! Every 2 s a node also asks one known node, in turn, for its `/status`
//! and learns the nodes listed there that it does not know (a node that
//! was down while a member was added catches up with the address).
//!
//! Ctrl-C or SIGTERM stops the HTTP server (in-flight requests finish),
//! then the node and the transport. A restart with the same `--data-dir`
//! recovers the term, vote, log and snapshot and rejoins.

use actix::prelude::*;
use actix_web::http::header;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use consensus_actors::kv::{KvCommand, KvOutput, KvStore};
use consensus_actors::storage::{DiskStorage, StorageError};
use consensus_actors::supervision::{SupervisionEvent, SupervisionEventKind};
use consensus_actors::transport::tcp::{KeyError, TcpConfig, TcpError, TcpTransport};
use consensus_actors::types::{ClientId, NodeId, NodeState};
use consensus_raft::error::ProposeError;
use consensus_raft::events::HardState;
use consensus_raft::membership_manager::MembershipChangeError;
use consensus_raft::messages::EntryRef;
use consensus_raft::node::{RaftNode, RaftNodeBuilder};
use consensus_raft::plugin::RaftKvMessage;
use consensus_raft::{Membership, RaftConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use consensus_actors::transport::tcp::handshake::ClusterKey;

/// The protocols `consensus node` runs.
pub const NODE_PROTOCOLS: [&str; 1] = ["raft"];

/// The key used when no `--cluster-key-file` is given: anyone can read it
/// here, so such a cluster is open to anyone who reaches its peer ports.
/// For a machine of one's own only; the node logs a warning.
const DEVELOPMENT_KEY: &str =
    "consensus-development-cluster-key (insecure: use --cluster-key-file)";

/// The flags of `consensus node`.
#[derive(clap::Args, Debug, Clone)]
pub struct NodeArgs {
    /// This node's id (1..).
    #[arg(long, value_name = "ID", value_parser = parse_id)]
    pub id: NodeId,
    /// Where peers reach this node (Raft messages over authenticated TCP).
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: SocketAddr,
    /// Where the HTTP API listens.
    #[arg(long, value_name = "HOST:PORT")]
    pub http: SocketAddr,
    /// The cluster's nodes: ID=RAFT_ADDR/HTTP_ADDR,... (e.g.
    /// 1=127.0.0.1:7001/127.0.0.1:8001,2=...). This node may be listed; its
    /// entry is ignored. The HTTP address may be left out (ID=RAFT_ADDR):
    /// requests are then not redirected to that node. Without --join, the
    /// listed nodes and this one are the initial voters.
    #[arg(long, value_name = "LIST", value_parser = parse_peers, default_value = "")]
    pub peers: PeerList,
    /// Where the node keeps its state (created when absent).
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// The protocol (only raft so far).
    #[arg(long, default_value = "raft", value_name = "NAME")]
    pub protocol: String,
    /// A file holding the cluster key (at least 16 bytes; surrounding
    /// whitespace ignored). Without it, a well-known development key is
    /// used (insecure).
    #[arg(long, value_name = "FILE")]
    pub cluster_key_file: Option<PathBuf>,
    /// The cluster's name: nodes of another cluster are refused.
    #[arg(long, default_value = "consensus", value_name = "NAME")]
    pub cluster_id: String,
    /// Start as a node that joins a running cluster: no initial
    /// configuration; it waits for the leader to add it (POST /members).
    #[arg(long)]
    pub join: bool,
    /// How long a request may wait for its commit before answering 504
    /// (outcome unknown), in milliseconds.
    #[arg(long, default_value_t = 5000, value_name = "MS",
          value_parser = |s: &str| crate::cli::count_in(s, 1, 600_000).map(|n| n as u64))]
    pub request_timeout_ms: u64,
    /// HTTP worker threads.
    #[arg(long, default_value_t = 2, value_name = "N",
          value_parser = |s: &str| crate::cli::count_in(s, 1, 64))]
    pub http_workers: usize,
}

/// Where a node listens: its peer port and, if known, its HTTP API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerAddr {
    /// Raft messages (the TCP transport).
    pub raft: SocketAddr,
    /// The HTTP API.
    pub http: Option<SocketAddr>,
}

/// Nodes and where they listen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerList(pub BTreeMap<NodeId, PeerAddr>);

fn parse_id(s: &str) -> Result<NodeId, String> {
    match s.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(NodeId(n)),
        _ => Err(format!("{s:?} is not a node id (a whole number from 1)")),
    }
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not an address HOST:PORT (an IP address and a port)"))
}

/// Parses `ID=RAFT_ADDR[/HTTP_ADDR],...` (empty: no peers).
pub fn parse_peers(s: &str) -> Result<PeerList, String> {
    let mut peers = BTreeMap::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (id, addrs) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} is not ID=RAFT_ADDR/HTTP_ADDR"))?;
        let id = parse_id(id.trim())?;
        let (raft, http) = match addrs.split_once('/') {
            Some((r, h)) => (parse_addr(r.trim())?, Some(parse_addr(h.trim())?)),
            None => (parse_addr(addrs.trim())?, None),
        };
        if peers.insert(id, PeerAddr { raft, http }).is_some() {
            return Err(format!("node {} is listed twice", id.get()));
        }
    }
    Ok(PeerList(peers))
}

/// Why a node could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum NodeRunError {
    /// A flag is wrong or the flags contradict each other.
    #[error("{0}")]
    Usage(String),
    /// The cluster key file cannot be read or is too short.
    #[error("cluster key file {path}: {reason}")]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The data directory cannot be created, read or opened as a store.
    #[error("data dir {path}: {reason}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A listen address cannot be bound.
    #[error("cannot listen on {addr} ({what}): {reason}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Which port: peers or HTTP.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The node failed while running.
    #[error("{0}")]
    Runtime(String),
}

impl From<KeyError> for NodeRunError {
    fn from(e: KeyError) -> Self {
        NodeRunError::Usage(e.to_string())
    }
}

type Store = DiskStorage<HardState, EntryRef<KvCommand>>;

/// Latency buckets of the HTTP histograms, in seconds.
const BUCKETS_S: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];

/// A Prometheus histogram with fixed buckets.
#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS_S.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    fn record(&self, elapsed: Duration) {
        let s = elapsed.as_secs_f64();
        for (b, le) in self.buckets.iter().zip(BUCKETS_S) {
            if s <= le {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        use std::fmt::Write;
        for (b, le) in self.buckets.iter().zip(BUCKETS_S) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels},le=\"{le}\"}} {}",
                b.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {}",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// The operations the HTTP histograms and counters are kept for.
const OPS: [&str; 4] = ["put", "get", "delete", "cas"];

#[derive(Default)]
struct NodeMetrics {
    latency: [Histogram; OPS.len()],
    ok: [AtomicU64; OPS.len()],
    redirected: AtomicU64,
    unavailable: AtomicU64,
    outcome_unknown: AtomicU64,
    leader_changes: AtomicU64,
    component_restarts: Arc<AtomicU64>,
    starts: AtomicU64,
}

struct NodeShared {
    id: NodeId,
    node: RaftNode<KvStore>,
    tcp: TcpTransport<RaftKvMessage>,
    peers: Mutex<BTreeMap<NodeId, PeerAddr>>,
    http: SocketAddr,
    data_dir: PathBuf,
    request_timeout: Duration,
    metrics: NodeMetrics,
    next_client: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl NodeShared {
    fn http_of(&self, node: NodeId) -> Option<SocketAddr> {
        if node == self.id {
            return Some(self.http);
        }
        lock(&self.peers).get(&node).and_then(|p| p.http)
    }

    /// Records where `node` listens: the transport dials it there, and the
    /// address survives a restart (`peers.json`).
    fn learn_peer(&self, node: NodeId, addr: PeerAddr) -> Result<(), String> {
        if node == self.id {
            return Ok(());
        }
        self.tcp.add_peer(node, addr.raft);
        let snapshot = {
            let mut peers = lock(&self.peers);
            peers.insert(node, addr);
            peers.clone()
        };
        save_peers(&self.data_dir, &snapshot)
    }

    fn client(&self) -> ClientId {
        ClientId(self.next_client.fetch_add(1, Ordering::Relaxed))
    }
}

fn peers_file(dir: &Path) -> PathBuf {
    dir.join("peers.json")
}

fn load_peers(dir: &Path) -> Result<BTreeMap<NodeId, PeerAddr>, String> {
    let path = peers_file(dir);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let raw: BTreeMap<u64, PeerAddr> = serde_json::from_slice(&bytes)
                .map_err(|e| format!("{} is not a peer list: {e}", path.display()))?;
            Ok(raw.into_iter().map(|(k, v)| (NodeId(k), v)).collect())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn save_peers(dir: &Path, peers: &BTreeMap<NodeId, PeerAddr>) -> Result<(), String> {
    let raw: BTreeMap<u64, PeerAddr> = peers.iter().map(|(k, v)| (k.get(), *v)).collect();
    let json = serde_json::to_vec_pretty(&raw).map_err(|e| e.to_string())?;
    let tmp = dir.join("peers.json.tmp");
    std::fs::write(&tmp, json)
        .and_then(|()| std::fs::rename(&tmp, peers_file(dir)))
        .map_err(|e| format!("cannot write {}: {e}", peers_file(dir).display()))
}

/// Counts the node's start in `DIR/starts`; returns the count including
/// this start.
fn count_start(dir: &Path) -> Result<u64, String> {
    let path = dir.join("starts");
    let before = match std::fs::read_to_string(&path) {
        Ok(s) => s.trim().parse::<u64>().unwrap_or(0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let now = before.saturating_add(1);
    std::fs::write(&path, format!("{now}\n"))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(now)
}

/// Counts component restarts reported by the node's supervisor.
struct RestartCounter(Arc<AtomicU64>);

impl Actor for RestartCounter {
    type Context = Context<Self>;
}

impl Handler<SupervisionEvent> for RestartCounter {
    type Result = ();
    fn handle(&mut self, ev: SupervisionEvent, _: &mut Context<Self>) {
        if matches!(ev.kind, SupervisionEventKind::ChildRestarted { .. }) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
        tracing::info!(node = %ev.node, component = %ev.component, kind = ?ev.kind, "supervision");
    }
}

/// Runs `consensus node` until Ctrl-C or SIGTERM.
pub fn run(args: NodeArgs) -> Result<(), NodeRunError> {
    if !NODE_PROTOCOLS.contains(&args.protocol.as_str()) {
        return Err(NodeRunError::Usage(format!(
            "--protocol {}: consensus node runs {} only so far",
            args.protocol,
            NODE_PROTOCOLS.join(", ")
        )));
    }
    if args.cluster_id.is_empty()
        || args.cluster_id.len() > consensus_actors::transport::tcp::handshake::MAX_CLUSTER_ID_BYTES
    {
        return Err(NodeRunError::Usage(
            "--cluster-id must have 1 to 128 bytes".into(),
        ));
    }
    if args.listen == args.http {
        return Err(NodeRunError::Usage(
            "--listen and --http must differ".into(),
        ));
    }
    let key = match &args.cluster_key_file {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| NodeRunError::Key {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            ClusterKey::new(bytes).map_err(|e| NodeRunError::Key {
                path: path.clone(),
                reason: e.to_string(),
            })?
        }
        None => {
            tracing::warn!("no --cluster-key-file: using the well-known development key");
            ClusterKey::new(DEVELOPMENT_KEY)?
        }
    };
    let data_err = |reason: String| NodeRunError::DataDir {
        path: args.data_dir.clone(),
        reason,
    };
    std::fs::create_dir_all(&args.data_dir).map_err(|e| data_err(e.to_string()))?;
    let mut peers = load_peers(&args.data_dir).map_err(data_err)?;
    // The flags win over what the node learned before.
    peers.extend(args.peers.0.iter().map(|(k, v)| (*k, *v)));
    peers.remove(&args.id);
    let starts = count_start(&args.data_dir).map_err(data_err)?;
    let store = Store::open(args.data_dir.join("raft"))
        .map_err(|e: StorageError| data_err(format!("cannot open the store: {e}")))?;
    let http_listener = std::net::TcpListener::bind(args.http).map_err(|e| NodeRunError::Bind {
        addr: args.http,
        what: "HTTP",
        reason: e.to_string(),
    })?;

    let system = actix::System::new();
    system.block_on(serve(args, key, peers, store, http_listener, starts))
}

async fn serve(
    args: NodeArgs,
    key: ClusterKey,
    peers: BTreeMap<NodeId, PeerAddr>,
    store: Store,
    http_listener: std::net::TcpListener,
    starts: u64,
) -> Result<(), NodeRunError> {
    let id = args.id;
    let mut tcp_cfg = TcpConfig::new(id, args.listen, &args.cluster_id, key);
    tcp_cfg.peers = peers.iter().map(|(k, v)| (*k, v.raft)).collect();
    let tcp = TcpTransport::<RaftKvMessage>::start(tcp_cfg)
        .await
        .map_err(|e| match e {
            TcpError::Bind { addr, source } => NodeRunError::Bind {
                addr,
                what: "peers",
                reason: source.to_string(),
            },
            other => NodeRunError::Runtime(other.to_string()),
        })?;
    let initial = if args.join {
        Membership::empty()
    } else {
        Membership::new(peers.keys().copied().chain([id]))
    };
    let restarts = Arc::new(AtomicU64::new(0));
    let counter = RestartCounter(Arc::clone(&restarts)).start();
    // Election timeouts drawn differently by each node and each start.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ id.get().rotate_left(32);
    let node = RaftNodeBuilder::new(
        id,
        RaftConfig::default(),
        initial,
        store,
        KvStore::default,
        tcp.transport(),
    )
    .seed(seed)
    .supervision_subscriber(counter.recipient())
    .start();
    tcp.register(node.inbox());
    let shared = Arc::new(NodeShared {
        id,
        node: node.clone(),
        tcp: tcp.clone(),
        peers: Mutex::new(peers),
        http: args.http,
        data_dir: args.data_dir.clone(),
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        metrics: NodeMetrics {
            component_restarts: restarts,
            ..NodeMetrics::default()
        },
        next_client: AtomicU64::new(id.get() << 32),
    });
    shared.metrics.starts.store(starts, Ordering::Relaxed);
    let watcher = actix::spawn(watch_leader(Arc::clone(&shared)));
    let learner = actix::spawn(learn_peers(Arc::clone(&shared)));

    let data = web::Data::from(Arc::clone(&shared));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(16 << 20))
            .route("/kv/{key}", web::put().to(put_kv))
            .route("/kv/{key}", web::get().to(get_kv))
            .route("/kv/{key}", web::delete().to(delete_kv))
            .route("/kv/{key}/cas", web::post().to(cas_kv))
            .route("/status", web::get().to(status))
            .route("/members", web::post().to(add_member))
            .route("/members/{id}", web::delete().to(remove_member))
            .route("/peers/{id}", web::put().to(put_peer))
            .route("/metrics", web::get().to(metrics))
    })
    .workers(args.http_workers)
    .shutdown_timeout(2)
    .listen(http_listener)
    .map_err(|e| NodeRunError::Bind {
        addr: args.http,
        what: "HTTP",
        reason: e.to_string(),
    })?
    .run();
    tracing::info!(node = %id, peers = %args.listen, http = %args.http, "node running");
    let result = server
        .await
        .map_err(|e| NodeRunError::Runtime(format!("HTTP server: {e}")));
    tracing::info!(node = %id, "shutting down");
    watcher.abort();
    learner.abort();
    node.shutdown().await;
    tcp.shutdown().await;
    result
}

/// Follows the node's view of the leader (for the leader-change counter).
async fn watch_leader(shared: Arc<NodeShared>) {
    let mut last: Option<NodeId> = None;
    loop {
        if let Some(s) = shared.node.status().await {
            if s.leader.is_some() && s.leader != last {
                shared
                    .metrics
                    .leader_changes
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(node = %shared.id, leader = ?s.leader, term = %s.term, "leader");
            }
            if s.leader.is_some() {
                last = s.leader;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: String,
    outcome: &'a str,
    leader: Option<u64>,
}

fn json_error(
    status: actix_web::http::StatusCode,
    error: String,
    outcome: &str,
    leader: Option<NodeId>,
) -> HttpResponse {
    HttpResponse::build(status).json(ErrorBody {
        error,
        outcome,
        leader: leader.map(NodeId::get),
    })
}

/// 307 to the leader's HTTP address, or 503 while none is known.
fn not_leader(shared: &NodeShared, req: &HttpRequest, leader: Option<NodeId>) -> HttpResponse {
    let target = leader
        .filter(|l| *l != shared.id)
        .and_then(|l| shared.http_of(l));
    match target {
        Some(addr) => {
            shared.metrics.redirected.fetch_add(1, Ordering::Relaxed);
            let path = req
                .uri()
                .path_and_query()
                .map_or_else(|| req.path().to_string(), |p| p.to_string());
            HttpResponse::TemporaryRedirect()
                .insert_header((header::LOCATION, format!("http://{addr}{path}")))
                .json(ErrorBody {
                    error: "not the leader".into(),
                    outcome: "not_applied",
                    leader: leader.map(NodeId::get),
                })
        }
        None => {
            shared.metrics.unavailable.fetch_add(1, Ordering::Relaxed);
            json_error(
                actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
                match leader {
                    Some(l) => format!("the leader n{} has no known HTTP address", l.get()),
                    None => "no leader known".into(),
                },
                "not_applied",
                leader,
            )
        }
    }
}

fn propose_failure(shared: &NodeShared, req: &HttpRequest, e: ProposeError) -> HttpResponse {
    use actix_web::http::StatusCode;
    match e {
        ProposeError::NotLeader { leader } => not_leader(shared, req, leader),
        ProposeError::Busy | ProposeError::TransferInProgress | ProposeError::Dropped => {
            shared.metrics.unavailable.fetch_add(1, Ordering::Relaxed);
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                e.to_string(),
                "not_applied",
                None,
            )
        }
        ProposeError::Unknown => {
            shared
                .metrics
                .outcome_unknown
                .fetch_add(1, Ordering::Relaxed);
            json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                e.to_string(),
                "unknown",
                None,
            )
        }
    }
}

fn timed_out(shared: &NodeShared) -> HttpResponse {
    shared
        .metrics
        .outcome_unknown
        .fetch_add(1, Ordering::Relaxed);
    json_error(
        actix_web::http::StatusCode::GATEWAY_TIMEOUT,
        format!("no answer within {} ms", shared.request_timeout.as_millis()),
        "unknown",
        None,
    )
}

/// Proposes `cmd` with the request timeout; `op` indexes [`OPS`].
async fn propose(
    shared: &NodeShared,
    req: &HttpRequest,
    op: usize,
    cmd: KvCommand,
) -> Result<(KvOutput, consensus_actors::types::LogId), HttpResponse> {
    let began = Instant::now();
    let answer = tokio::time::timeout(
        shared.request_timeout,
        shared.node.propose_at(cmd, shared.client()),
    )
    .await;
    match answer {
        Err(_) => Err(timed_out(shared)),
        Ok(Err(e)) => Err(propose_failure(shared, req, e)),
        Ok(Ok(c)) => {
            shared.metrics.latency[op].record(began.elapsed());
            shared.metrics.ok[op].fetch_add(1, Ordering::Relaxed);
            Ok((c.output, c.log_id))
        }
    }
}

#[derive(Serialize)]
struct Written {
    term: u64,
    index: u64,
}

async fn put_kv(
    shared: web::Data<NodeShared>,
    req: HttpRequest,
    key: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let Ok(value) = String::from_utf8(body.to_vec()) else {
        return HttpResponse::BadRequest()
            .json(serde_json::json!({"error": "the value must be UTF-8"}));
    };
    match propose(&shared, &req, 0, KvCommand::put(key.into_inner(), value)).await {
        Ok((_, log_id)) => HttpResponse::Ok().json(Written {
            term: log_id.term.get(),
            index: log_id.index.get(),
        }),
        Err(resp) => resp,
    }
}

async fn get_kv(
    shared: web::Data<NodeShared>,
    req: HttpRequest,
    key: web::Path<String>,
) -> HttpResponse {
    let began = Instant::now();
    let answer =
        tokio::time::timeout(shared.request_timeout, shared.node.get(key.into_inner())).await;
    match answer {
        Err(_) => timed_out(&shared),
        Ok(Err(e)) => propose_failure(&shared, &req, e),
        Ok(Ok(value)) => {
            shared.metrics.latency[1].record(began.elapsed());
            shared.metrics.ok[1].fetch_add(1, Ordering::Relaxed);
            match value {
                Some(v) => HttpResponse::Ok()
                    .content_type("text/plain; charset=utf-8")
                    .body(v),
                None => HttpResponse::NotFound().json(serde_json::json!({"error": "no such key"})),
            }
        }
    }
}

async fn delete_kv(
    shared: web::Data<NodeShared>,
    req: HttpRequest,
    key: web::Path<String>,
) -> HttpResponse {
    let cmd = KvCommand::Delete {
        key: key.into_inner(),
    };
    match propose(&shared, &req, 2, cmd).await {
        Ok((out, log_id)) => HttpResponse::Ok().json(serde_json::json!({
            "deleted": matches!(out, KvOutput::Deleted(true)),
            "term": log_id.term.get(),
            "index": log_id.index.get(),
        })),
        Err(resp) => resp,
    }
}

/// The body of `POST /kv/{key}/cas`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasRequest {
    /// The value the key must hold; `null` (or absent): the key must be
    /// absent.
    #[serde(default)]
    pub expected: Option<String>,
    /// The value to set when it does.
    pub new: String,
}

async fn cas_kv(
    shared: web::Data<NodeShared>,
    req: HttpRequest,
    key: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let cas: CasRequest = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return HttpResponse::BadRequest().json(serde_json::json!({
            "error": format!("expected {{\"expected\": \"old\" | null, \"new\": \"value\"}}: {e}")
        })),
    };
    let cmd = KvCommand::Cas {
        key: key.into_inner(),
        expected: cas.expected,
        new: cas.new,
    };
    match propose(&shared, &req, 3, cmd).await {
        Ok((KvOutput::CasOk, log_id)) => HttpResponse::Ok().json(serde_json::json!({
            "swapped": true, "term": log_id.term.get(), "index": log_id.index.get(),
        })),
        Ok((KvOutput::CasFailed(current), log_id)) => HttpResponse::Conflict().json(serde_json::json!({
            "swapped": false, "current": current, "term": log_id.term.get(), "index": log_id.index.get(),
        })),
        Ok((other, _)) => HttpResponse::InternalServerError()
            .json(serde_json::json!({"error": format!("unexpected answer {other:?}")})),
        Err(resp) => resp,
    }
}

/// `GET /status`.
#[derive(Debug, Serialize, Deserialize)]
pub struct StatusBody {
    /// The node.
    pub id: u64,
    /// `leader`, `follower`, `candidate`...
    pub role: String,
    /// Its current term.
    pub term: u64,
    /// The leader it knows of.
    pub leader: Option<u64>,
    /// Its commit index.
    pub commit_index: u64,
    /// Its last applied index.
    pub last_applied: u64,
    /// The voters of its configuration (both sets while joint).
    pub members: Vec<u64>,
    /// Learners being caught up.
    pub learners: Vec<u64>,
    /// Where the nodes it knows of listen (`raft`, `http`).
    pub peers: BTreeMap<u64, PeerAddr>,
}

fn role_name(role: NodeState) -> String {
    format!("{role:?}").to_lowercase()
}

async fn status(shared: web::Data<NodeShared>) -> HttpResponse {
    let Some(s) = shared.node.status().await else {
        return json_error(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "the node is restarting a component".into(),
            "not_applied",
            None,
        );
    };
    let voters = s.membership.all_voters();
    let body = StatusBody {
        id: s.id.get(),
        role: role_name(s.role),
        term: s.term.get(),
        leader: s.leader.map(NodeId::get),
        commit_index: s.commit_index.get(),
        last_applied: s.last_applied.get(),
        members: voters.iter().map(|n| n.get()).collect(),
        learners: s
            .membership
            .all_members()
            .difference(&voters)
            .map(|n| n.get())
            .collect(),
        peers: lock(&shared.peers)
            .iter()
            .map(|(k, v)| (k.get(), *v))
            .chain([(
                shared.id.get(),
                PeerAddr {
                    raft: shared.tcp.local_addr(),
                    http: Some(shared.http),
                },
            )])
            .collect(),
    };
    HttpResponse::Ok().json(body)
}

/// The body of `POST /members`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    /// The new node's id.
    pub id: u64,
    /// Its peer address (`--listen`).
    pub addr: SocketAddr,
    /// Its HTTP address (`--http`).
    pub http: Option<SocketAddr>,
}

/// The body of `PUT /peers/{id}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerBody {
    /// The node's peer address.
    pub addr: SocketAddr,
    /// Its HTTP address.
    pub http: Option<SocketAddr>,
}

fn membership_failure(
    shared: &NodeShared,
    req: &HttpRequest,
    e: MembershipChangeError,
) -> HttpResponse {
    use actix_web::http::StatusCode;
    match e {
        MembershipChangeError::NotLeader { leader } => not_leader(shared, req, leader),
        MembershipChangeError::LeadershipLost => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string(),
            "unknown",
            None,
        ),
        MembershipChangeError::ChangeInProgress | MembershipChangeError::CatchUpTimeout(_) => {
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                e.to_string(),
                "not_applied",
                None,
            )
        }
        other => json_error(StatusCode::CONFLICT, other.to_string(), "not_applied", None),
    }
}

async fn leader_or_redirect(shared: &NodeShared, req: &HttpRequest) -> Result<(), HttpResponse> {
    match shared.node.status().await {
        Some(s) if s.role == NodeState::Leader => Ok(()),
        Some(s) => Err(not_leader(shared, req, s.leader)),
        None => Err(not_leader(shared, req, None)),
    }
}

async fn add_member(
    shared: web::Data<NodeShared>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let add: AddMember = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => {
            return HttpResponse::BadRequest().json(serde_json::json!({
                "error": format!("expected {{\"id\": N, \"addr\": \"HOST:PORT\", \"http\": \"HOST:PORT\"}}: {e}")
            }))
        }
    };
    if add.id == 0 {
        return HttpResponse::BadRequest()
            .json(serde_json::json!({"error": "node ids start at 1"}));
    }
    if let Err(resp) = leader_or_redirect(&shared, &req).await {
        return resp;
    }
    let node = NodeId(add.id);
    let addr = PeerAddr {
        raft: add.addr,
        http: add.http,
    };
    if let Err(e) = shared.learn_peer(node, addr) {
        return HttpResponse::InternalServerError().json(serde_json::json!({ "error": e }));
    }
    // Every member must know where the new node listens before it votes or
    // leads: tell them (those down now learn it when re-added or from
    // their --peers).
    let others: Vec<(NodeId, SocketAddr)> = lock(&shared.peers)
        .iter()
        .filter(|(k, _)| **k != node)
        .filter_map(|(k, v)| v.http.map(|h| (*k, h)))
        .collect();
    let body = serde_json::to_string(&PeerBody {
        addr: add.addr,
        http: add.http,
    })
    .unwrap_or_default();
    let mut unreached = Vec::new();
    for (peer, http) in others {
        let path = format!("/peers/{}", node.get());
        if let Err(e) = http_put(http, &path, &body, Duration::from_secs(2)).await {
            tracing::warn!(%peer, error = %e, "could not tell a member about the new node");
            unreached.push(peer.get());
        }
    }
    let answer = tokio::time::timeout(
        shared.request_timeout.max(Duration::from_secs(30)),
        shared.node.add_node(node),
    )
    .await;
    match answer {
        Err(_) => timed_out(&shared),
        Ok(Err(e)) => membership_failure(&shared, &req, e),
        Ok(Ok(m)) => HttpResponse::Ok().json(serde_json::json!({
            "members": m.all_voters().iter().map(|n| n.get()).collect::<Vec<_>>(),
            "unreached": unreached,
        })),
    }
}

async fn remove_member(
    shared: web::Data<NodeShared>,
    req: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    let node = match parse_id(&id) {
        Ok(n) => n,
        Err(e) => return HttpResponse::BadRequest().json(serde_json::json!({ "error": e })),
    };
    if let Err(resp) = leader_or_redirect(&shared, &req).await {
        return resp;
    }
    let answer = tokio::time::timeout(
        shared.request_timeout.max(Duration::from_secs(30)),
        shared.node.remove_node(node),
    )
    .await;
    match answer {
        Err(_) => timed_out(&shared),
        Ok(Err(e)) => membership_failure(&shared, &req, e),
        Ok(Ok(m)) => HttpResponse::Ok().json(serde_json::json!({
            "members": m.all_voters().iter().map(|n| n.get()).collect::<Vec<_>>(),
        })),
    }
}

async fn put_peer(
    shared: web::Data<NodeShared>,
    id: web::Path<String>,
    body: web::Bytes,
) -> HttpResponse {
    let node = match parse_id(&id) {
        Ok(n) => n,
        Err(e) => return HttpResponse::BadRequest().json(serde_json::json!({ "error": e })),
    };
    let peer: PeerBody = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return HttpResponse::BadRequest().json(serde_json::json!({
            "error": format!("expected {{\"addr\": \"HOST:PORT\", \"http\": \"HOST:PORT\"}}: {e}")
        })),
    };
    match shared.learn_peer(
        node,
        PeerAddr {
            raft: peer.addr,
            http: peer.http,
        },
    ) {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({"ok": true})),
        Err(e) => HttpResponse::InternalServerError().json(serde_json::json!({ "error": e })),
    }
}

async fn metrics(shared: web::Data<NodeShared>) -> HttpResponse {
    use std::fmt::Write;
    let m = &shared.metrics;
    let mut out = String::new();
    let status = shared.node.status().await;
    let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    };
    let counter = |out: &mut String, name: &str, help: &str, v: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
        );
    };
    if let Some(s) = &status {
        gauge(
            &mut out,
            "consensus_raft_term",
            "Current term (each election raises it).",
            s.term.get(),
        );
        gauge(
            &mut out,
            "consensus_raft_commit_index",
            "Highest index known committed.",
            s.commit_index.get(),
        );
        gauge(
            &mut out,
            "consensus_raft_last_applied",
            "Highest index applied.",
            s.last_applied.get(),
        );
        gauge(
            &mut out,
            "consensus_raft_is_leader",
            "1 while this node leads.",
            u64::from(s.role == NodeState::Leader),
        );
        gauge(
            &mut out,
            "consensus_raft_members",
            "Voters in the configuration.",
            s.membership.all_voters().len() as u64,
        );
    }
    counter(
        &mut out,
        "consensus_raft_leader_changes_total",
        "Leader changes this node observed.",
        m.leader_changes.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "consensus_node_restarts_total",
        "Times the node was started again on its data dir.",
        m.starts.load(Ordering::Relaxed).saturating_sub(1),
    );
    counter(
        &mut out,
        "consensus_component_restarts_total",
        "Components restarted by the node's supervisor.",
        m.component_restarts.load(Ordering::Relaxed),
    );
    let _ = writeln!(
        out,
        "# HELP consensus_kv_commits_total Requests answered successfully, by operation (writes: committed).\n\
         # TYPE consensus_kv_commits_total counter"
    );
    for (i, op) in OPS.iter().enumerate() {
        let _ = writeln!(
            out,
            "consensus_kv_commits_total{{op=\"{op}\"}} {}",
            m.ok[i].load(Ordering::Relaxed)
        );
    }
    counter(
        &mut out,
        "consensus_http_redirects_total",
        "Requests redirected to the leader.",
        m.redirected.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "consensus_http_unavailable_total",
        "Requests refused: no leader known, busy.",
        m.unavailable.load(Ordering::Relaxed),
    );
    counter(
        &mut out,
        "consensus_http_outcome_unknown_total",
        "Requests whose outcome is unknown.",
        m.outcome_unknown.load(Ordering::Relaxed),
    );
    let _ = writeln!(
        out,
        "# HELP consensus_kv_latency_seconds Latency of successful requests, by operation.\n\
         # TYPE consensus_kv_latency_seconds histogram"
    );
    for (i, op) in OPS.iter().enumerate() {
        m.latency[i].render(
            &mut out,
            "consensus_kv_latency_seconds",
            &format!("op=\"{op}\""),
        );
    }
    out.push_str(&shared.tcp.stats().prometheus("consensus_tcp"));
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(out)
}

/// A minimal HTTP/1.1 exchange (one request per connection, answers up to
/// 1 MiB) for the node's internal calls: the status and the body, an error
/// for anything but 2xx.
async fn http_call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    limit: Duration,
) -> Result<Vec<u8>, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut answer = Vec::new();
        (&mut s)
            .take(1 << 20)
            .read_to_end(&mut answer)
            .await
            .map_err(|e| format!("read: {e}"))?;
        let split = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| "no HTTP answer".to_string())?;
        let head = String::from_utf8_lossy(&answer[..split]);
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| "no HTTP status in the answer".to_string())?;
        if (200..300).contains(&code) {
            Ok(answer[split + 4..].to_vec())
        } else {
            Err(format!("HTTP {code}"))
        }
    };
    tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| "timed out".to_string())?
}

/// `PUT` through [`http_call`].
async fn http_put(addr: SocketAddr, path: &str, body: &str, limit: Duration) -> Result<(), String> {
    http_call(addr, "PUT", path, body, limit).await.map(|_| ())
}

/// Every few seconds, asks one known node (in turn) for its `/status` and
/// learns the nodes it lists that this one does not know: a node that was
/// down while a member was added (`PUT /peers` missed it) learns where the
/// new member listens before it must accept its connections.
async fn learn_peers(shared: Arc<NodeShared>) {
    let mut turn = 0usize;
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let known: Vec<SocketAddr> = lock(&shared.peers)
            .values()
            .filter_map(|p| p.http)
            .collect();
        if known.is_empty() {
            continue;
        }
        turn = turn.wrapping_add(1);
        let target = known[turn % known.len()];
        let Ok(body) = http_call(target, "GET", "/status", "", Duration::from_secs(1)).await else {
            continue;
        };
        let Ok(status) = serde_json::from_slice::<StatusBody>(&body) else {
            continue;
        };
        for (id, addr) in status.peers {
            let id = NodeId(id);
            let unknown = id != shared.id && !lock(&shared.peers).contains_key(&id);
            if unknown {
                tracing::info!(node = %shared.id, peer = %id, via = %target, "learned a peer");
                if let Err(e) = shared.learn_peer(id, addr) {
                    tracing::warn!(node = %shared.id, error = %e, "could not record a peer");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_with_and_without_http_addresses() {
        let p = parse_peers("1=127.0.0.1:7001/127.0.0.1:8001, 2=127.0.0.1:7002").expect("parses");
        assert_eq!(p.0.len(), 2);
        assert_eq!(
            p.0[&NodeId(1)].http,
            Some("127.0.0.1:8001".parse().expect("addr"))
        );
        assert_eq!(p.0[&NodeId(2)].http, None);
        assert_eq!(parse_peers("").expect("empty"), PeerList::default());
        for bad in [
            "1",
            "0=127.0.0.1:1",
            "x=127.0.0.1:1",
            "1=localhost",
            "1=127.0.0.1:1/nope",
            "1=127.0.0.1:1,1=127.0.0.1:2",
        ] {
            assert!(parse_peers(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_histogram_counts_cumulative_buckets() {
        let h = Histogram::default();
        h.record(Duration::from_micros(700));
        h.record(Duration::from_millis(30));
        let mut out = String::new();
        h.render(&mut out, "x", "op=\"put\"");
        assert!(
            out.contains("x_bucket{op=\"put\",le=\"0.001\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{op=\"put\",le=\"0.05\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{op=\"put\",le=\"+Inf\"} 2\n"),
            "{out}"
        );
        assert!(out.contains("x_count{op=\"put\"} 2\n"), "{out}");
    }

    #[test]
    fn peers_and_starts_persist_in_the_data_dir() {
        let dir = tempfile::TempDir::new().expect("dir");
        assert_eq!(load_peers(dir.path()).expect("none yet"), BTreeMap::new());
        let mut peers = BTreeMap::new();
        peers.insert(
            NodeId(4),
            PeerAddr {
                raft: "127.0.0.1:7004".parse().expect("addr"),
                http: None,
            },
        );
        save_peers(dir.path(), &peers).expect("saved");
        assert_eq!(load_peers(dir.path()).expect("loaded"), peers);
        assert_eq!(count_start(dir.path()), Ok(1));
        assert_eq!(count_start(dir.path()), Ok(2));
    }
}
