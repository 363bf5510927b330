//! PBFT's messages (Castro and Liskov, OSDI'99 §4, TOCS 2002 §4), named
//! as in the paper, and the authentication each carries.
//!
//! | message | authentication |
//! |---|---|
//! | REQUEST | client MAC authenticator (one MAC per replica; TOCS 2002 §4.1) |
//! | PRE-PREPARE, PREPARE | replica signature (they form prepared certificates) |
//! | COMMIT, REPLY, fetch-state | MAC authenticator (one MAC per receiver) |
//! | CHECKPOINT, VIEW-CHANGE, NEW-VIEW | replica signature |
//! | state transfer | the digest certified by 2f+1 signed CHECKPOINTs |
//!
//! Operations and results are opaque bytes here, as in the paper's BFT
//! library (TOCS 2002 §6: the service's `execute` upcall gets the request's
//! bytes and fills the reply's): the replica decodes an operation into its
//! [`StateMachine`](consensus_actors::kv::StateMachine)'s command only to
//! execute it, and the client decodes the result it accepted. Messages,
//! authenticators and certificates are the same whatever the service.

use crate::authenticator::core::{client_identity, digest_of, AuthHeader, AuthKind, Keys};
use crate::types::{SeqNo, View};
use consensus_actors::types::{ClientId, NodeId};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fmt;

/// Byte strings as MessagePack `bin` (one length and the bytes), not as a
/// sequence of numbers: for operations and results, which are digested and
/// sent with every request.
mod bytes {
    use serde::de::{Deserializer, Error, SeqAccess, Visitor};
    use serde::Serializer;
    use std::fmt;

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            // Grows with what the input holds, not with its claimed length.
            let mut out = Vec::new();
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(BytesVisitor)
    }
}

/// A SHA-256 digest.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The first 8 bytes, as the `u64` digest safety events carry.
    pub fn short(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(b)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{:016x}", self.short())
    }
}

/// An HMAC-SHA256 tag.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag(pub [u8; 32]);

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tag:{:02x}{:02x}..", self.0[0], self.0[1])
    }
}

/// An ed25519 signature (64 bytes, kept as two halves for serde).
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sig {
    r: [u8; 32],
    s: [u8; 32],
}

impl Sig {
    /// From the 64 signature bytes.
    pub fn from_bytes(bytes: [u8; 64]) -> Self {
        let mut r = [0u8; 32];
        let mut s = [0u8; 32];
        r.copy_from_slice(&bytes[..32]);
        s.copy_from_slice(&bytes[32..]);
        Self { r, s }
    }

    /// The 64 signature bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(&self.r);
        out[32..].copy_from_slice(&self.s);
        out
    }
}

impl fmt::Debug for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sig:{:02x}{:02x}..", self.r[0], self.r[1])
    }
}

/// A message body with the header its authentication covers.
pub trait Authenticated: Serialize {
    /// The header (receiver left to the authenticator).
    fn header(&self) -> AuthHeader;
}

/// A body signed by its sender.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed<T> {
    /// The body.
    pub body: T,
    /// The sender's signature over the body's header.
    pub sig: Sig,
}

impl<T: Authenticated> Signed<T> {
    /// `body` signed with this replica's key.
    pub fn new(body: T, keys: &Keys) -> Self {
        let sig = keys.sign(&body.header());
        Self { body, sig }
    }

    /// Whether the signature is replica `signer`'s.
    pub fn verify(&self, keys: &Keys, signer: NodeId) -> bool {
        keys.verify_replica(signer, &self.body.header(), &self.sig)
    }
}

/// A body with a MAC authenticator (one MAC per receiver).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Maced<T> {
    /// The body.
    pub body: T,
    /// One MAC per receiver.
    pub auth: Vec<(NodeId, Tag)>,
}

impl<T: Authenticated> Maced<T> {
    /// `body` with MACs for every node of `to`.
    pub fn new(body: T, keys: &Keys, to: &[NodeId]) -> Self {
        let auth = keys.authenticator(to, &body.header());
        Self { body, auth }
    }

    /// Whether the MAC for this party is `from`'s.
    pub fn verify(&self, keys: &Keys, from: NodeId) -> bool {
        keys.check_authenticator(from, &self.body.header(), &self.auth)
    }
}

fn header(
    kind: AuthKind,
    view: View,
    seq: SeqNo,
    sender: u64,
    body: crate::messages::Digest,
) -> AuthHeader {
    AuthHeader {
        kind,
        view,
        seq,
        sender,
        receiver: 0,
        body,
    }
}

/// An operation's or a result's bytes (MessagePack). Encoding a command or
/// an output of a [`StateMachine`](consensus_actors::kv::StateMachine)
/// cannot fail; an empty vector stands for a value serde refused.
pub fn encode_payload<T: Serialize>(value: &T) -> Vec<u8> {
    rmp_serde::to_vec(value).unwrap_or_default()
}

/// Decodes bytes written by [`encode_payload`]; `None` when they are not a
/// `T` (bytes from a faulty client, or of another service).
pub fn decode_payload<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    rmp_serde::from_slice(bytes).ok()
}

/// A client's operation (§4.1: `<REQUEST, o, t, c>`). The client is
/// identified by the node it submits through and its id there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The node the client submits through (replies go there).
    pub node: NodeId,
    /// The client's id on that node.
    pub client: ClientId,
    /// The client's timestamp: increasing, for exactly-once execution.
    pub timestamp: u64,
    /// The operation: the service's command, encoded with
    /// [`encode_payload`].
    #[serde(with = "bytes")]
    pub op: Vec<u8>,
}

impl Request {
    /// The client's identity number.
    pub fn identity(&self) -> u64 {
        client_identity(self.node, self.client)
    }

    /// The request's digest: SHA-256 over its fields, each length-fixed
    /// or length-prefixed (no encoding step, no allocation).
    pub fn digest(&self) -> Digest {
        let mut h = Sha256::new();
        h.update(b"pbft-request");
        h.update(self.node.get().to_le_bytes());
        h.update(self.client.get().to_le_bytes());
        h.update(self.timestamp.to_le_bytes());
        h.update((self.op.len() as u64).to_le_bytes());
        h.update(&self.op);
        crate::authenticator::core::count_hashed(44 + self.op.len());
        Digest(h.finalize().into())
    }
}

impl Authenticated for Request {
    fn header(&self) -> AuthHeader {
        header(
            AuthKind::Request,
            View::ZERO,
            SeqNo(self.timestamp),
            self.identity(),
            self.digest(),
        )
    }
}

/// A request with its client's authenticator: one MAC per replica, under
/// the key the client shares with that replica (TOCS 2002 §4.1). Each
/// replica checks its own MAC; no replica can prove to another that the
/// client sent it, so a request's authenticity inside a PRE-PREPARE batch
/// rests on the backup's own MAC and, inside a prepared certificate, on the
/// 2f+1 replicas that prepared it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthenticatedRequest {
    /// The request.
    pub request: Request,
    /// One MAC per replica.
    pub auth: Vec<(NodeId, Tag)>,
}

impl AuthenticatedRequest {
    /// `request` with its client's MACs for the replicas `to` (through
    /// `keys` of the client's node).
    pub fn new(request: Request, keys: &Keys, to: &[NodeId]) -> Self {
        let auth = keys.client_authenticator(request.identity(), to, &request.header());
        Self { request, auth }
    }

    /// Whether the client's MAC for this replica holds.
    pub fn verify(&self, keys: &Keys) -> bool {
        self.verify_digest(keys, self.request.digest())
    }

    /// [`Self::verify`] with the request's digest already computed
    /// (`digest` must be [`Self::digest`]: the MAC covers it).
    pub fn verify_digest(&self, keys: &Keys, digest: Digest) -> bool {
        debug_assert_eq!(digest, self.request.digest());
        let header = header(
            AuthKind::Request,
            View::ZERO,
            SeqNo(self.request.timestamp),
            self.request.identity(),
            digest,
        );
        keys.check_client_authenticator(self.request.identity(), &header, &self.auth)
    }

    /// The request's digest.
    pub fn digest(&self) -> Digest {
        self.request.digest()
    }
}

/// The requests one PRE-PREPARE orders (empty: the null request). Shared,
/// not copied, between the messages and slots that hold it (a batch of a
/// thousand requests is sent to every backup and kept in the log and in
/// prepared certificates); serialized as the list of requests.
///
/// Its digest is computed once and shared by every copy: the requests
/// cannot change after [`Batch::new`] (the field is private), so the
/// remembered digest is always theirs.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    requests: std::sync::Arc<Vec<AuthenticatedRequest>>,
    digest: std::sync::Arc<std::sync::OnceLock<Digest>>,
}

impl PartialEq for Batch {
    fn eq(&self, other: &Self) -> bool {
        self.requests == other.requests
    }
}

impl Eq for Batch {}

impl Serialize for Batch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.requests.as_slice().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Batch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<AuthenticatedRequest>::deserialize(d).map(Batch::new)
    }
}

impl Batch {
    /// A batch of `requests`.
    pub fn new(requests: Vec<AuthenticatedRequest>) -> Self {
        Self {
            requests: std::sync::Arc::new(requests),
            digest: std::sync::Arc::default(),
        }
    }

    /// Its requests, in order.
    pub fn requests(&self) -> &[AuthenticatedRequest] {
        &self.requests
    }

    /// How many requests it holds.
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    /// Whether it is the null request.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// The digest a PRE-PREPARE carries: over the requests' digests
    /// (computed once per batch, whichever copy asks).
    pub fn digest(&self) -> Digest {
        *self.digest.get_or_init(|| {
            Self::digest_of_requests(self.requests.iter().map(AuthenticatedRequest::digest))
        })
    }

    /// Remembers `digest`, which the caller computed with
    /// [`digest_of_requests`](Self::digest_of_requests) from this batch's
    /// own requests' digests (the authenticator does, to check a
    /// PRE-PREPARE).
    pub(crate) fn remember_digest(&self, digest: Digest) {
        debug_assert_eq!(
            digest,
            Self::digest_of_requests(self.requests.iter().map(AuthenticatedRequest::digest))
        );
        let _ = self.digest.set(digest);
    }

    /// The digest of a batch whose requests have the digests `requests`
    /// (in order): for a caller that needs them anyway.
    pub fn digest_of_requests(requests: impl ExactSizeIterator<Item = Digest>) -> Digest {
        let mut h = Sha256::new();
        h.update(b"pbft-batch");
        crate::authenticator::core::count_hashed(18 + 32 * requests.len());
        h.update((requests.len() as u64).to_le_bytes());
        for d in requests {
            h.update(d.0);
        }
        Digest(h.finalize().into())
    }
}

/// PRE-PREPARE `<v, n, d>` from the primary of `v` (§4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrePrepare {
    /// The view.
    pub view: View,
    /// The sequence number assigned.
    pub seq: SeqNo,
    /// The digest of the batch.
    pub digest: Digest,
    /// The primary.
    pub primary: NodeId,
}

impl Authenticated for PrePrepare {
    fn header(&self) -> AuthHeader {
        header(
            AuthKind::PrePrepare,
            self.view,
            self.seq,
            self.primary.get(),
            digest_of(self),
        )
    }
}

/// PREPARE `<v, n, d, i>` from a backup (§4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepare {
    /// The view.
    pub view: View,
    /// The sequence number.
    pub seq: SeqNo,
    /// The digest.
    pub digest: Digest,
    /// The backup.
    pub replica: NodeId,
}

impl Authenticated for Prepare {
    fn header(&self) -> AuthHeader {
        header(
            AuthKind::Prepare,
            self.view,
            self.seq,
            self.replica.get(),
            digest_of(self),
        )
    }
}

/// COMMIT `<v, n, d, i>` (§4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// The view.
    pub view: View,
    /// The sequence number.
    pub seq: SeqNo,
    /// The digest.
    pub digest: Digest,
    /// The replica.
    pub replica: NodeId,
}

impl Authenticated for Commit {
    fn header(&self) -> AuthHeader {
        header(
            AuthKind::Commit,
            self.view,
            self.seq,
            self.replica.get(),
            digest_of(self),
        )
    }
}

/// REPLY `<v, t, c, i, r>` (§4.1), with the sequence number the request
/// executed at (so a client learns its position in the order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The replica's view.
    pub view: View,
    /// The sequence number of the batch the request executed in (shared
    /// by the requests of one batch).
    pub seq: SeqNo,
    /// The request's timestamp.
    pub timestamp: u64,
    /// The client's node.
    pub node: NodeId,
    /// The client.
    pub client: ClientId,
    /// The replica.
    pub replica: NodeId,
    /// The result of executing the request: the service's output, encoded
    /// with [`encode_payload`] (empty when the operation could not be
    /// decoded: every correct replica refuses it alike).
    #[serde(with = "bytes")]
    pub result: Vec<u8>,
}

impl Reply {
    /// The digest its MAC covers: SHA-256 over the fields the MAC header
    /// does not hold already (the header has the kind, the view, the
    /// timestamp and the replica), each length-fixed or length-prefixed.
    /// No encoding step, no allocation, and one SHA-256 block for results
    /// up to 23 bytes: every request gets a REPLY from every replica.
    pub fn digest(&self) -> Digest {
        let mut h = Sha256::new();
        h.update(self.seq.get().to_le_bytes());
        h.update(self.node.get().to_le_bytes());
        h.update(self.client.get().to_le_bytes());
        h.update((self.result.len() as u64).to_le_bytes());
        h.update(&self.result);
        crate::authenticator::core::count_hashed(32 + self.result.len());
        Digest(h.finalize().into())
    }
}

impl Authenticated for Reply {
    fn header(&self) -> AuthHeader {
        header(
            AuthKind::Reply,
            self.view,
            SeqNo(self.timestamp),
            self.replica.get(),
            self.digest(),
        )
    }
}

/// The REPLYs of one executed batch from one replica to the clients of one
/// node, authenticated as one message: one MAC for the node over a digest
/// of every field of every REPLY, instead of a MAC per REPLY. The client
/// proxy checks it once, when one of them is still awaited.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyBatch {
    /// The replica that executed the requests (every REPLY names it).
    pub replica: NodeId,
    /// The REPLYs.
    pub replies: Vec<Reply>,
}

impl ReplyBatch {
    /// The digest its MAC covers: SHA-256 over every field of every REPLY,
    /// each length-fixed or length-prefixed.
    pub fn digest(&self) -> Digest {
        let mut h = Sha256::new();
        h.update(b"pbft-replies");
        h.update((self.replies.len() as u64).to_le_bytes());
        let mut hashed = 20;
        for r in &self.replies {
            h.update(r.view.get().to_le_bytes());
            h.update(r.seq.get().to_le_bytes());
            h.update(r.timestamp.to_le_bytes());
            h.update(r.node.get().to_le_bytes());
            h.update(r.client.get().to_le_bytes());
            h.update(r.replica.get().to_le_bytes());
            h.update((r.result.len() as u64).to_le_bytes());
            h.update(&r.result);
            hashed += 56 + r.result.len();
        }
        crate::authenticator::core::count_hashed(hashed);
        Digest(h.finalize().into())
    }
}

impl Authenticated for ReplyBatch {
    fn header(&self) -> AuthHeader {
        // The digest covers every REPLY's view, sequence number and
        // timestamp: the header needs none of them.
        header(
            AuthKind::ReplyBatch,
            View::ZERO,
            SeqNo::ZERO,
            self.replica.get(),
            self.digest(),
        )
    }
}

/// REPLYs as they reach a client proxy: one with its own MAC, or a batch
/// with one MAC for all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Replies {
    /// One REPLY.
    One(Maced<Reply>),
    /// The REPLYs of one batch.
    Batch(Maced<ReplyBatch>),
}

impl Replies {
    /// The REPLYs, their authentication left out.
    pub fn into_bodies(self) -> Vec<Reply> {
        match self {
            Replies::One(r) => vec![r.body],
            Replies::Batch(b) => b.body.replies,
        }
    }
}

/// CHECKPOINT `<n, d, i>` (§4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The sequence number of the last request the state reflects.
    pub seq: SeqNo,
    /// The digest of the state.
    pub state: Digest,
    /// The replica.
    pub replica: NodeId,
}

impl Authenticated for Checkpoint {
    fn header(&self) -> AuthHeader {
        header(
            AuthKind::Checkpoint,
            View::ZERO,
            self.seq,
            self.replica.get(),
            digest_of(self),
        )
    }
}

/// A prepared certificate (§4.4): a PRE-PREPARE and 2f matching PREPAREs
/// from distinct backups, with the batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedCert {
    /// The primary's PRE-PREPARE.
    pub pre_prepare: Signed<PrePrepare>,
    /// 2f PREPAREs from distinct backups.
    pub prepares: Vec<Signed<Prepare>>,
    /// The batch (its digest is the PRE-PREPARE's).
    pub batch: Batch,
}

/// VIEW-CHANGE `<v+1, n, C, P, i>` (§4.4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewChange {
    /// The view the replica moves to.
    pub new_view: View,
    /// The sequence number of its last stable checkpoint.
    pub stable_seq: SeqNo,
    /// Its state digest.
    pub stable_digest: Digest,
    /// 2f+1 signed CHECKPOINTs proving it (empty for the initial state).
    pub checkpoint_proof: Vec<Signed<Checkpoint>>,
    /// A prepared certificate per sequence number above `stable_seq`
    /// (the one of the highest view).
    pub prepared: Vec<PreparedCert>,
    /// The replica.
    pub replica: NodeId,
}

impl ViewChange {
    /// The digest its signature covers: every field, the checkpoint proof
    /// and the certificates' signed PRE-PREPAREs and PREPAREs, but not the
    /// certificates' batches. A batch is bound by its PRE-PREPARE's digest,
    /// which [`validate_view_change`](crate::view_changer::core::validate_view_change)
    /// checks; so signing, checking and recognising a VIEW-CHANGE again
    /// (the verify cache) hash a few bytes per certificate instead of
    /// encoding and hashing every request in flight.
    pub fn signed_digest(&self) -> Digest {
        let mut h = Sha256::new();
        h.update(b"pbft-view-change");
        h.update(self.new_view.get().to_le_bytes());
        h.update(self.stable_seq.get().to_le_bytes());
        h.update(self.stable_digest.0);
        h.update(self.replica.get().to_le_bytes());
        h.update((self.checkpoint_proof.len() as u64).to_le_bytes());
        for c in &self.checkpoint_proof {
            h.update(digest_of(c).0);
        }
        h.update((self.prepared.len() as u64).to_le_bytes());
        for cert in &self.prepared {
            h.update(digest_of(&cert.pre_prepare).0);
            h.update(digest_of(&cert.prepares).0);
        }
        crate::authenticator::core::count_hashed(
            64 + 32 * (self.checkpoint_proof.len() + 2 * self.prepared.len()),
        );
        Digest(h.finalize().into())
    }
}

impl Authenticated for ViewChange {
    fn header(&self) -> AuthHeader {
        header(
            AuthKind::ViewChange,
            self.new_view,
            self.stable_seq,
            self.replica.get(),
            self.signed_digest(),
        )
    }
}

/// NEW-VIEW `<v+1, V, O>` (§4.4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewView {
    /// The new view.
    pub view: View,
    /// 2f+1 VIEW-CHANGEs for it from distinct replicas.
    pub view_changes: Vec<Signed<ViewChange>>,
    /// The re-issued PRE-PREPAREs (O), in sequence order.
    pub pre_prepares: Vec<Signed<PrePrepare>>,
    /// The new primary.
    pub primary: NodeId,
}

impl NewView {
    /// The digest its signature covers: every field, each VIEW-CHANGE by
    /// its [`ViewChange::signed_digest`] and signature (the batches are
    /// bound through their PRE-PREPAREs, checked when the VIEW-CHANGEs are
    /// validated), each re-issued PRE-PREPARE whole.
    pub fn signed_digest(&self) -> Digest {
        let mut h = Sha256::new();
        h.update(b"pbft-new-view");
        h.update(self.view.get().to_le_bytes());
        h.update(self.primary.get().to_le_bytes());
        h.update((self.view_changes.len() as u64).to_le_bytes());
        for vc in &self.view_changes {
            h.update(vc.body.signed_digest().0);
            h.update(vc.sig.to_bytes());
        }
        h.update((self.pre_prepares.len() as u64).to_le_bytes());
        for pp in &self.pre_prepares {
            h.update(digest_of(pp).0);
        }
        crate::authenticator::core::count_hashed(
            37 + 96 * self.view_changes.len() + 32 * self.pre_prepares.len(),
        );
        Digest(h.finalize().into())
    }
}

impl Authenticated for NewView {
    fn header(&self) -> AuthHeader {
        header(
            AuthKind::NewView,
            self.view,
            SeqNo::ZERO,
            self.primary.get(),
            self.signed_digest(),
        )
    }
}

/// A lagging replica asks for the state of a stable checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchState {
    /// The checkpoint wanted.
    pub seq: SeqNo,
    /// The replica asking.
    pub replica: NodeId,
}

impl Authenticated for FetchState {
    fn header(&self) -> AuthHeader {
        header(
            AuthKind::FetchState,
            View::ZERO,
            self.seq,
            self.replica.get(),
            digest_of(self),
        )
    }
}

/// The state of a checkpoint (checked against the certified digest).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateTransfer {
    /// The checkpoint.
    pub seq: SeqNo,
    /// The encoded state (store and client table).
    pub state: Vec<u8>,
    /// 2f+1 signed CHECKPOINTs for it.
    pub proof: Vec<Signed<Checkpoint>>,
}

/// What PBFT replicas and clients send each other.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PbftMessage {
    /// A client request (from its node, or forwarded by a backup).
    Request(AuthenticatedRequest),
    /// PRE-PREPARE with its batch.
    PrePrepare {
        /// The signed PRE-PREPARE.
        pre_prepare: Signed<PrePrepare>,
        /// The requests.
        batch: Batch,
    },
    /// PREPARE, with the primary's PRE-PREPARE it answers (so that two
    /// backups given different PRE-PREPAREs by an equivocating primary
    /// hold the proof: two signed PRE-PREPAREs for one slot).
    Prepare {
        /// The signed PREPARE.
        prepare: Signed<Prepare>,
        /// The primary's signed PRE-PREPARE it answers.
        pre_prepare: Signed<PrePrepare>,
    },
    /// COMMIT.
    Commit(Maced<Commit>),
    /// REPLY.
    Reply(Maced<Reply>),
    /// CHECKPOINT.
    Checkpoint(Signed<Checkpoint>),
    /// VIEW-CHANGE.
    ViewChange(Signed<ViewChange>),
    /// NEW-VIEW (the batches of its re-issued PRE-PREPAREs are in the
    /// prepared certificates of its VIEW-CHANGEs).
    NewView(Signed<NewView>),
    /// A state-transfer request.
    FetchState(Maced<FetchState>),
    /// A state-transfer answer.
    StateTransfer(StateTransfer),
    /// The REPLYs of one executed batch for the clients of one node, with
    /// one MAC for all: one message per batch and client node instead of
    /// one per request. (Last, so the other variants keep their encoding.)
    Replies(Maced<ReplyBatch>),
}

impl PbftMessage {
    /// The REPLYs this message carries, if it is a REPLY or a batch of them.
    pub fn into_replies(self) -> Option<Replies> {
        match self {
            PbftMessage::Reply(r) => Some(Replies::One(r)),
            PbftMessage::Replies(b) => Some(Replies::Batch(b)),
            _ => None,
        }
    }

    /// The message's name, as the paper writes it.
    pub fn name(&self) -> &'static str {
        match self {
            PbftMessage::Request(_) => "REQUEST",
            PbftMessage::PrePrepare { .. } => "PRE-PREPARE",
            PbftMessage::Prepare { .. } => "PREPARE",
            PbftMessage::Commit(_) => "COMMIT",
            PbftMessage::Reply(_) => "REPLY",
            PbftMessage::Checkpoint(_) => "CHECKPOINT",
            PbftMessage::ViewChange(_) => "VIEW-CHANGE",
            PbftMessage::NewView(_) => "NEW-VIEW",
            PbftMessage::FetchState(_) => "FETCH-STATE",
            PbftMessage::StateTransfer(_) => "STATE-TRANSFER",
            PbftMessage::Replies(_) => "REPLY*",
        }
    }
}
