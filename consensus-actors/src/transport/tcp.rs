//! [`TcpTransport`]: the network of a real cluster, one process per node.
//!
//! * **Frames.** A frame is a 4-byte big-endian length and a payload
//!   (tokio-util's [`LengthDelimitedCodec`]); a payload is one protocol
//!   message in MessagePack (rmp-serde). A frame longer than
//!   [`TcpConfig::max_frame_bytes`] is refused by the reader before its
//!   payload is buffered, and never sent by the writer.
//! * **Connections.** Node A sends to node B on a connection A dialed
//!   (one per ordered pair); B only reads from it. The sender of every
//!   message is the peer the handshake authenticated, never a field of the
//!   frame, so a peer cannot speak for another.
//! * **Handshake.** HMAC-SHA256 challenge-response with the cluster key
//!   over nonces from both sides, binding both node ids and the cluster id
//!   ([`handshake`] explains why it resists reflection and replay).
//! * **Per peer.** A bounded queue ([`TcpConfig::queue_capacity`]); a full
//!   queue drops the message and counts it, never blocking the node
//!   (protocols retry at their own level). A writer task drains the queue,
//!   encoding up to [`TcpConfig::batch_max`] messages into one buffer per
//!   write. A lost connection is dialed again after a back-off doubling
//!   from [`TcpConfig::backoff_min`] to [`TcpConfig::backoff_max`];
//!   messages queued while no connection is up are dropped and counted
//!   (they are stale by the time one is).
//! * **Inbound.** Messages go to the registered inbox; while its mailbox
//!   is full, the connection is not read (TCP pushes back on the sender).
//! * **Refusals.** An unknown peer, a failed handshake, a malformed,
//!   truncated or oversized frame closes that connection, logs the reason
//!   (`tracing`, warn) and counts it in [`TcpStats`]; the node keeps
//!   serving its other connections.
//!
//! The transport is an [`EnvelopeSink`]: [`TcpTransport::transport`] gives
//! the [`Transport`] handle protocol components send through, and
//! [`TcpTransport::register`] says where inbound messages go. It needs a
//! tokio runtime with I/O and time enabled (an actix System has one).

pub mod handshake;

use super::{Envelope, EnvelopeSink, Transport, Wire};
use crate::types::NodeId;
use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use handshake::{AcceptorHandshake, ClusterKey, DialerHandshake, MAX_HANDSHAKE_FRAME_BYTES};
use rand::TryRngCore;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::codec::{
    Decoder, Framed, FramedWrite, LengthDelimitedCodec, LengthDelimitedCodecError,
};

pub use handshake::KeyError;

/// Why a connection was closed by this side. Each is counted in
/// [`TcpStats`] under its [`label`](Self::label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, thiserror::Error)]
pub enum RejectReason {
    /// The dialer is not a configured peer, claims to be this node, or
    /// meant another node.
    #[error("unknown peer")]
    UnknownPeer,
    /// The dialer belongs to another cluster.
    #[error("wrong cluster id")]
    WrongCluster,
    /// The other side speaks another handshake version.
    #[error("unsupported handshake version")]
    Version,
    /// A proof did not verify: a wrong key, or a replayed or reflected
    /// handshake.
    #[error("handshake proof did not verify")]
    BadProof,
    /// The handshake did not complete in time.
    #[error("handshake timed out")]
    HandshakeTimeout,
    /// A frame's payload did not decode.
    #[error("malformed frame")]
    Malformed,
    /// A frame announced more bytes than the maximum frame size.
    #[error("oversized frame")]
    Oversized,
    /// The connection ended inside a frame.
    #[error("truncated frame")]
    Truncated,
}

impl RejectReason {
    /// Every reason, in [`label`](Self::label) order of the metrics.
    pub const ALL: [RejectReason; 8] = [
        RejectReason::UnknownPeer,
        RejectReason::WrongCluster,
        RejectReason::Version,
        RejectReason::BadProof,
        RejectReason::HandshakeTimeout,
        RejectReason::Malformed,
        RejectReason::Oversized,
        RejectReason::Truncated,
    ];

    /// A short name for metrics labels.
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::UnknownPeer => "unknown_peer",
            RejectReason::WrongCluster => "wrong_cluster",
            RejectReason::Version => "version",
            RejectReason::BadProof => "bad_proof",
            RejectReason::HandshakeTimeout => "handshake_timeout",
            RejectReason::Malformed => "malformed",
            RejectReason::Oversized => "oversized",
            RejectReason::Truncated => "truncated",
        }
    }

    fn index(self) -> usize {
        Self::ALL
            .iter()
            .position(|r| *r == self)
            .expect("every reason is listed")
    }
}

/// Settings of a [`TcpTransport`].
#[derive(Clone, Debug)]
pub struct TcpConfig {
    /// This node.
    pub local: NodeId,
    /// Where to listen (port 0: any free port; see
    /// [`TcpTransport::local_addr`]).
    pub listen: SocketAddr,
    /// The cluster's name; a node of another cluster is refused.
    pub cluster_id: String,
    /// The key every member holds.
    pub key: ClusterKey,
    /// The other members and where they listen. More can be added while
    /// running ([`TcpTransport::add_peer`]).
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// Largest frame payload sent or accepted, in bytes.
    pub max_frame_bytes: usize,
    /// Messages queued per peer before new ones are dropped.
    pub queue_capacity: usize,
    /// Most messages encoded into one write.
    pub batch_max: usize,
    /// First wait before dialing a peer again.
    pub backoff_min: Duration,
    /// Longest wait before dialing a peer again.
    pub backoff_max: Duration,
    /// Time a handshake may take, either side.
    pub handshake_timeout: Duration,
}

impl TcpConfig {
    /// Defaults for node `local` of `cluster_id` listening on `listen`, with
    /// no peers yet: frames up to 16 MiB, 4096 queued messages per peer,
    /// batches of up to 256, back-off 20 ms to 1 s, handshakes within 2 s.
    pub fn new(local: NodeId, listen: SocketAddr, cluster_id: &str, key: ClusterKey) -> Self {
        Self {
            local,
            listen,
            cluster_id: cluster_id.to_string(),
            key,
            peers: BTreeMap::new(),
            max_frame_bytes: 16 << 20,
            queue_capacity: 4096,
            batch_max: 256,
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(2),
        }
    }
}

/// Why a [`TcpTransport`] could not start.
#[derive(Debug, thiserror::Error)]
pub enum TcpError {
    /// The listen address could not be bound (in use, not local...).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A setting is impossible.
    #[error("invalid transport setting: {0}")]
    Config(String),
}

/// Counters of one transport, readable while it runs.
#[derive(Debug, Default)]
pub struct TcpStats {
    rejected: [AtomicU64; RejectReason::ALL.len()],
    /// Messages handed to a connection's writer.
    pub sent: AtomicU64,
    /// Messages received from authenticated peers and delivered.
    pub received: AtomicU64,
    /// Messages dropped because the peer's queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Messages dropped because their destination is not a peer.
    pub dropped_unknown_destination: AtomicU64,
    /// Messages dropped because no connection to the peer was up.
    pub dropped_disconnected: AtomicU64,
    /// Messages not sent because they encode to more than the maximum frame.
    pub dropped_too_large: AtomicU64,
    /// Inbound messages dropped because no inbox was registered yet.
    pub dropped_no_inbox: AtomicU64,
    /// Connections this node dialed that completed the handshake.
    pub connections_dialed: AtomicU64,
    /// Connections this node accepted that completed the handshake.
    pub connections_accepted: AtomicU64,
    /// Dials that failed (refused, unreachable, handshake failed).
    pub dial_failures: AtomicU64,
}

impl TcpStats {
    /// Connections closed for `reason`.
    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejected[reason.index()].load(Ordering::Relaxed)
    }

    /// Connections closed for any reason of [`RejectReason`].
    pub fn rejected_total(&self) -> u64 {
        RejectReason::ALL.iter().map(|r| self.rejected(*r)).sum()
    }

    fn reject(&self, reason: RejectReason) {
        self.rejected[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// The counters in Prometheus text format, each name prefixed by
    /// `prefix`.
    pub fn prometheus(&self, prefix: &str) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP {prefix}_rejected_connections_total Connections closed by this node, by reason.\n\
             # TYPE {prefix}_rejected_connections_total counter"
        );
        for r in RejectReason::ALL {
            let _ = writeln!(
                out,
                "{prefix}_rejected_connections_total{{reason=\"{}\"}} {}",
                r.label(),
                self.rejected(r)
            );
        }
        let counters: [(&str, &str, &AtomicU64); 10] = [
            (
                "messages_sent_total",
                "Messages written to peers.",
                &self.sent,
            ),
            (
                "messages_received_total",
                "Messages received from authenticated peers.",
                &self.received,
            ),
            (
                "dropped_queue_full_total",
                "Messages dropped: the peer's queue was full.",
                &self.dropped_queue_full,
            ),
            (
                "dropped_unknown_destination_total",
                "Messages dropped: the destination is not a peer.",
                &self.dropped_unknown_destination,
            ),
            (
                "dropped_disconnected_total",
                "Messages dropped: no connection to the peer.",
                &self.dropped_disconnected,
            ),
            (
                "dropped_too_large_total",
                "Messages dropped: larger than the maximum frame.",
                &self.dropped_too_large,
            ),
            (
                "dropped_no_inbox_total",
                "Inbound messages dropped before the node registered.",
                &self.dropped_no_inbox,
            ),
            (
                "connections_dialed_total",
                "Outbound connections authenticated.",
                &self.connections_dialed,
            ),
            (
                "connections_accepted_total",
                "Inbound connections authenticated.",
                &self.connections_accepted,
            ),
            (
                "dial_failures_total",
                "Dials that failed.",
                &self.dial_failures,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {prefix}_{name} {help}\n# TYPE {prefix}_{name} counter\n{prefix}_{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        out
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// One peer: where it listens and its outbound queue.
struct Peer<M> {
    addr: watch::Sender<SocketAddr>,
    queue: mpsc::Sender<M>,
}

struct Shared<M: Wire> {
    local: NodeId,
    cluster_id: String,
    key: ClusterKey,
    max_frame_bytes: usize,
    queue_capacity: usize,
    batch_max: usize,
    backoff_min: Duration,
    backoff_max: Duration,
    handshake_timeout: Duration,
    peers: Mutex<BTreeMap<NodeId, Peer<M>>>,
    inbox: Mutex<Option<actix::Recipient<Envelope<M>>>>,
    stats: Arc<TcpStats>,
    stop: watch::Sender<bool>,
    /// The runtime the transport started on: its tasks run there whichever
    /// thread adds a peer.
    runtime: tokio::runtime::Handle,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// Locks `m`; a panic while it was held leaves plain data behind (maps and
/// options), still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The TCP network of one node. See the [module documentation](self).
/// Cloning gives another handle on the same transport.
pub struct TcpTransport<M: Wire> {
    shared: Arc<Shared<M>>,
    local_addr: SocketAddr,
}

impl<M: Wire> Clone for TcpTransport<M> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            local_addr: self.local_addr,
        }
    }
}

fn nonce() -> [u8; handshake::NONCE_BYTES] {
    let mut n = [0; handshake::NONCE_BYTES];
    // The operating system's generator: a failure here means the process
    // cannot make secrets at all.
    rand::rngs::OsRng
        .try_fill_bytes(&mut n)
        .expect("the operating system's random number generator");
    n
}

fn codec(max_frame_bytes: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(max_frame_bytes)
        .new_codec()
}

/// What a codec error on a read means.
fn read_error(e: &std::io::Error) -> Option<RejectReason> {
    if e.get_ref()
        .is_some_and(|inner| inner.is::<LengthDelimitedCodecError>())
    {
        Some(RejectReason::Oversized)
    } else if e.kind() == std::io::ErrorKind::Other && e.to_string() == "bytes remaining on stream"
    {
        Some(RejectReason::Truncated)
    } else {
        None
    }
}

/// Decodes frames from a byte stream as a connection's reader does: up to
/// `max_frame_bytes` of payload per frame, each payload one message `M`.
/// What the fuzz target and the property tests drive.
pub struct FrameDecoder {
    codec: LengthDelimitedCodec,
}

impl FrameDecoder {
    /// A decoder refusing payloads over `max_frame_bytes`.
    pub fn new(max_frame_bytes: usize) -> Self {
        Self {
            codec: codec(max_frame_bytes),
        }
    }

    /// The next complete frame's payload in `buf` (consumed), `None` when
    /// `buf` holds no complete frame yet.
    pub fn next_frame(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, RejectReason> {
        match self.codec.decode(buf) {
            Ok(frame) => Ok(frame.map(BytesMut::freeze)),
            Err(_) => Err(RejectReason::Oversized),
        }
    }

    /// Decodes one payload as a message.
    pub fn message<M: Wire>(payload: &[u8]) -> Result<M, RejectReason> {
        rmp_serde::from_slice(payload).map_err(|_| RejectReason::Malformed)
    }

    /// The frame a writer sends for `msg` (length prefix and payload).
    pub fn encode<M: Wire>(msg: &M) -> Result<Vec<u8>, rmp_serde::encode::Error> {
        let payload = rmp_serde::to_vec(msg)?;
        let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&payload);
        Ok(frame)
    }
}

impl<M: Wire> TcpTransport<M> {
    /// Binds `cfg.listen` and starts accepting peers and dialing the
    /// configured ones. Must run inside a tokio runtime.
    pub async fn start(cfg: TcpConfig) -> Result<Self, TcpError> {
        if cfg.max_frame_bytes < MAX_HANDSHAKE_FRAME_BYTES
            || cfg.max_frame_bytes > u32::MAX as usize
        {
            return Err(TcpError::Config(format!(
                "max_frame_bytes must be in {MAX_HANDSHAKE_FRAME_BYTES}..={}",
                u32::MAX
            )));
        }
        if cfg.queue_capacity == 0 || cfg.batch_max == 0 {
            return Err(TcpError::Config(
                "queue_capacity and batch_max must be at least 1".into(),
            ));
        }
        if cfg.backoff_min.is_zero() || cfg.backoff_max < cfg.backoff_min {
            return Err(TcpError::Config(
                "need 0 < backoff_min <= backoff_max".into(),
            ));
        }
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| TcpError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| TcpError::Bind {
            addr: cfg.listen,
            source,
        })?;
        let (stop, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            local: cfg.local,
            cluster_id: cfg.cluster_id,
            key: cfg.key,
            max_frame_bytes: cfg.max_frame_bytes,
            queue_capacity: cfg.queue_capacity,
            batch_max: cfg.batch_max,
            backoff_min: cfg.backoff_min,
            backoff_max: cfg.backoff_max,
            handshake_timeout: cfg.handshake_timeout,
            peers: Mutex::new(BTreeMap::new()),
            inbox: Mutex::new(None),
            stats: Arc::new(TcpStats::default()),
            stop,
            runtime: tokio::runtime::Handle::current(),
            tasks: Mutex::new(Vec::new()),
        });
        let accept = tokio::spawn(accept_loop(Arc::clone(&shared), listener));
        lock(&shared.tasks).push(accept);
        let transport = Self { shared, local_addr };
        for (id, addr) in cfg.peers {
            transport.add_peer(id, addr);
        }
        tracing::info!(node = %transport.shared.local, %local_addr, "TCP transport listening");
        Ok(transport)
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This node.
    pub fn local(&self) -> NodeId {
        self.shared.local
    }

    /// Its counters.
    pub fn stats(&self) -> Arc<TcpStats> {
        Arc::clone(&self.shared.stats)
    }

    /// Inbound messages go to `inbox` from now on (a restarted node
    /// registers again).
    pub fn register(&self, inbox: actix::Recipient<Envelope<M>>) {
        *lock(&self.shared.inbox) = Some(inbox);
    }

    /// The handle protocol components send through.
    pub fn transport(&self) -> Transport<M> {
        Transport::direct(self.shared.local, Arc::new(self.clone()))
    }

    /// Makes `peer` a member this node accepts and dials, at `addr` (a known
    /// peer moves to `addr`: the next dial goes there). Any thread may call
    /// it; the peer's writer runs on the transport's runtime.
    pub fn add_peer(&self, peer: NodeId, addr: SocketAddr) {
        if peer == self.shared.local {
            return;
        }
        let mut peers = lock(&self.shared.peers);
        if let Some(p) = peers.get(&peer) {
            p.addr.send_replace(addr);
            return;
        }
        let (queue, rx) = mpsc::channel(self.shared.queue_capacity);
        let (addr_tx, addr_rx) = watch::channel(addr);
        peers.insert(
            peer,
            Peer {
                addr: addr_tx,
                queue,
            },
        );
        drop(peers);
        let task =
            self.shared
                .runtime
                .spawn(writer_loop(Arc::clone(&self.shared), peer, addr_rx, rx));
        lock(&self.shared.tasks).push(task);
    }

    /// The peers and where they listen, by id.
    pub fn peers(&self) -> BTreeMap<NodeId, SocketAddr> {
        lock(&self.shared.peers)
            .iter()
            .map(|(id, p)| (*id, *p.addr.borrow()))
            .collect()
    }

    /// Closes every connection and the listener, and waits until they are
    /// closed (the port can be bound again).
    pub async fn shutdown(&self) {
        self.shared.stop.send_replace(true);
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *lock(&self.shared.tasks));
        for t in tasks {
            let _ = t.await;
        }
    }
}

impl<M: Wire> EnvelopeSink<M> for TcpTransport<M> {
    fn send(&self, env: Envelope<M>) {
        let stats = &self.shared.stats;
        if env.to == self.shared.local {
            match lock(&self.shared.inbox).as_ref() {
                Some(inbox) => inbox.do_send(env),
                None => bump(&stats.dropped_no_inbox),
            }
            return;
        }
        let peers = lock(&self.shared.peers);
        let Some(peer) = peers.get(&env.to) else {
            bump(&stats.dropped_unknown_destination);
            return;
        };
        match peer.queue.try_send(env.msg) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => bump(&stats.dropped_queue_full),
            // The writer stopped: the transport is shutting down.
            Err(mpsc::error::TrySendError::Closed(_)) => bump(&stats.dropped_disconnected),
        }
    }
}

/// Resolves once the transport is told to stop.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the transport is gone: stop as well.
    let _ = stop.wait_for(|s| *s).await;
}

/// Accepts connections until the transport stops; each is served by a task
/// of its own.
async fn accept_loop<M: Wire>(shared: Arc<Shared<M>>, listener: TcpListener) {
    let mut stop = shared.stop.subscribe();
    let mut conns: Vec<JoinHandle<()>> = Vec::new();
    loop {
        tokio::select! {
            _ = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    conns.retain(|c| !c.is_finished());
                    conns.push(tokio::spawn(serve_inbound(Arc::clone(&shared), stream, remote)));
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait a little
                    // rather than spin.
                    tracing::warn!(node = %shared.local, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    for c in conns {
        let _ = c.await;
    }
}

fn refuse<M: Wire>(shared: &Shared<M>, remote: SocketAddr, peer: Option<NodeId>, r: RejectReason) {
    shared.stats.reject(r);
    tracing::warn!(
        node = %shared.local,
        %remote,
        peer = ?peer,
        reason = r.label(),
        "closing connection: {r}"
    );
}

/// One inbound connection: the acceptor's handshake, then messages from
/// the authenticated peer to the registered inbox.
async fn serve_inbound<M: Wire>(shared: Arc<Shared<M>>, stream: TcpStream, remote: SocketAddr) {
    let mut stop = shared.stop.subscribe();
    let mut framed = Framed::new(stream, codec(MAX_HANDSHAKE_FRAME_BYTES));
    let handshake = async {
        let hello = next_payload(&mut framed).await?;
        let (state, challenge) = AcceptorHandshake::on_hello(
            &shared.cluster_id,
            shared.local,
            &shared.key,
            |id| lock(&shared.peers).contains_key(&id),
            nonce(),
            &hello,
        )?;
        framed
            .send(Bytes::from(challenge))
            .await
            .map_err(|_| None)?;
        let proof = next_payload(&mut framed).await?;
        Ok::<NodeId, Option<RejectReason>>(state.on_proof(&shared.key, &proof)?)
    };
    let peer = tokio::select! {
        _ = stopped(&mut stop) => return,
        r = tokio::time::timeout(shared.handshake_timeout, handshake) => match r {
            Err(_) => {
                refuse(&shared, remote, None, RejectReason::HandshakeTimeout);
                return;
            }
            Ok(Err(Some(reason))) => {
                refuse(&shared, remote, None, reason);
                return;
            }
            // The connection closed cleanly or failed mid-handshake.
            Ok(Err(None)) => return,
            Ok(Ok(peer)) => peer,
        },
    };
    bump(&shared.stats.connections_accepted);
    tracing::debug!(node = %shared.local, %peer, %remote, "peer authenticated");
    framed
        .codec_mut()
        .set_max_frame_length(shared.max_frame_bytes);
    loop {
        let frame = tokio::select! {
            _ = stopped(&mut stop) => return,
            frame = framed.next() => frame,
        };
        let payload = match frame {
            None => return,
            Some(Ok(payload)) => payload,
            Some(Err(e)) => {
                match read_error(&e) {
                    Some(reason) => refuse(&shared, remote, Some(peer), reason),
                    None => tracing::debug!(node = %shared.local, %peer, error = %e, "read failed"),
                }
                return;
            }
        };
        let msg: M = match FrameDecoder::message(&payload) {
            Ok(msg) => msg,
            Err(reason) => {
                refuse(&shared, remote, Some(peer), reason);
                return;
            }
        };
        bump(&shared.stats.received);
        let inbox = lock(&shared.inbox).clone();
        let Some(inbox) = inbox else {
            bump(&shared.stats.dropped_no_inbox);
            continue;
        };
        let env = Envelope {
            from: peer,
            to: shared.local,
            msg,
        };
        match inbox.try_send(env) {
            Ok(()) => {}
            // The node's mailbox is full: stop reading this connection until
            // it takes the message (TCP pushes back on the sender), rather
            // than queue without bound.
            Err(actix::prelude::SendError::Full(env)) => {
                tokio::select! {
                    _ = stopped(&mut stop) => return,
                    _ = inbox.send(env) => {}
                }
            }
            // The node stopped; a restarted one registers again.
            Err(actix::prelude::SendError::Closed(_)) => bump(&shared.stats.dropped_no_inbox),
        }
    }
}

/// The next frame of a handshake: `Err(Some(reason))` for a refusal,
/// `Err(None)` when the connection ended or failed.
async fn next_payload(
    framed: &mut Framed<TcpStream, LengthDelimitedCodec>,
) -> Result<BytesMut, Option<RejectReason>> {
    match framed.next().await {
        Some(Ok(payload)) => Ok(payload),
        Some(Err(e)) => Err(read_error(&e)),
        None => Err(None),
    }
}

/// Dials `peer` and runs the dialer's handshake.
async fn dial<M: Wire>(
    shared: &Shared<M>,
    peer: NodeId,
    addr: SocketAddr,
) -> Result<TcpStream, String> {
    let handshake = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let mut framed = Framed::new(stream, codec(MAX_HANDSHAKE_FRAME_BYTES));
        let (state, hello) =
            DialerHandshake::start(&shared.cluster_id, shared.local, peer, nonce());
        framed
            .send(Bytes::from(hello))
            .await
            .map_err(|e| format!("send hello: {e}"))?;
        let challenge = match next_payload(&mut framed).await {
            Ok(c) => c,
            Err(Some(r)) => {
                shared.stats.reject(r);
                return Err(format!("challenge refused: {r}"));
            }
            Err(None) => return Err("the peer closed the handshake (it refused us)".into()),
        };
        let proof = state.on_challenge(&shared.key, &challenge).map_err(|r| {
            shared.stats.reject(r);
            format!("the peer's proof failed: {r}")
        })?;
        framed
            .send(Bytes::from(proof))
            .await
            .map_err(|e| format!("send proof: {e}"))?;
        Ok(framed.into_inner())
    };
    match tokio::time::timeout(shared.handshake_timeout, handshake).await {
        Ok(r) => r,
        Err(_) => Err("handshake timed out".into()),
    }
}

/// Drops what is queued for a peer without a connection.
fn drain_stale<M>(shared_stats: &TcpStats, rx: &mut mpsc::Receiver<M>) {
    while rx.try_recv().is_ok() {
        bump(&shared_stats.dropped_disconnected);
    }
}

/// The writer of one peer: dial, handshake, then write batches from the
/// queue until the connection fails; dial again after a back-off.
async fn writer_loop<M: Wire>(
    shared: Arc<Shared<M>>,
    peer: NodeId,
    addr: watch::Receiver<SocketAddr>,
    mut rx: mpsc::Receiver<M>,
) {
    let mut stop = shared.stop.subscribe();
    let mut backoff = shared.backoff_min;
    loop {
        if *stop.borrow() {
            return;
        }
        // Wait for something to send before dialing: an idle peer costs no
        // connection.
        let first = tokio::select! {
            _ = stopped(&mut stop) => return,
            m = rx.recv() => match m {
                Some(m) => m,
                None => return,
            },
        };
        let target = *addr.borrow();
        let stream = tokio::select! {
            _ = stopped(&mut stop) => return,
            r = dial(&shared, peer, target) => r,
        };
        let stream = match stream {
            Ok(s) => s,
            Err(why) => {
                bump(&shared.stats.dial_failures);
                bump(&shared.stats.dropped_disconnected);
                drain_stale(&shared.stats, &mut rx);
                tracing::debug!(node = %shared.local, %peer, addr = %target, %why, ?backoff, "dial failed");
                tokio::select! {
                    _ = stopped(&mut stop) => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(shared.backoff_max);
                drain_stale(&shared.stats, &mut rx);
                continue;
            }
        };
        backoff = shared.backoff_min;
        bump(&shared.stats.connections_dialed);
        tracing::debug!(node = %shared.local, %peer, addr = %target, "connected");
        let (mut read_half, write_half) = stream.into_split();
        let mut sink = FramedWrite::new(write_half, codec(shared.max_frame_bytes));
        let mut next = Some(first);
        let mut probe = [0u8; 64];
        let closed = loop {
            let msg = match next.take() {
                Some(m) => m,
                None => tokio::select! {
                    _ = stopped(&mut stop) => return,
                    // The acceptor never writes after the handshake: a read
                    // that returns is the connection closing.
                    _ = read_half.read(&mut probe) => break "closed by the peer",
                    m = rx.recv() => match m {
                        Some(m) => m,
                        None => return,
                    },
                },
            };
            let mut failed = false;
            let mut batch = 0;
            let mut pending = Some(msg);
            while let Some(m) = pending.take() {
                match rmp_serde::to_vec(&m) {
                    Ok(payload) if payload.len() <= shared.max_frame_bytes => {
                        if sink.feed(Bytes::from(payload)).await.is_err() {
                            failed = true;
                            break;
                        }
                        bump(&shared.stats.sent);
                    }
                    Ok(_) => bump(&shared.stats.dropped_too_large),
                    Err(e) => {
                        tracing::error!(node = %shared.local, %peer, error = %e, "a message did not encode");
                        bump(&shared.stats.dropped_too_large);
                    }
                }
                batch += 1;
                if batch < shared.batch_max {
                    pending = rx.try_recv().ok();
                }
            }
            if failed || SinkExt::<Bytes>::flush(&mut sink).await.is_err() {
                break "write failed";
            }
        };
        tracing::debug!(node = %shared.local, %peer, why = closed, "connection lost");
        drain_stale(&shared.stats, &mut rx);
    }
}
