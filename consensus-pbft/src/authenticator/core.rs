//! The MessageAuthenticator core: keys, HMAC-SHA256 authenticators and
//! ed25519 signatures (Castro and Liskov, TOCS 2002, §3.2 and §4).
//!
//! * Every pair of parties shares a MAC key, derived deterministically from
//!   the cluster secret and the pair; an *authenticator* is one MAC per
//!   receiver.
//! * Every client shares a MAC key with every replica; a request carries
//!   the client's authenticator (TOCS 2002 §4.1).
//! * Every replica has an ed25519 key pair, derived from the cluster secret
//!   and its identity (`SigningKey::from_bytes`). Signatures go where a
//!   message must prove something to a third party: PRE-PREPARE and PREPARE
//!   (they make up the prepared certificates a VIEW-CHANGE carries; signed
//!   once per batch, so their cost is shared by its requests), CHECKPOINT,
//!   VIEW-CHANGE and NEW-VIEW.
//! * The authenticated bytes are [`AuthHeader`]: cluster id, message kind,
//!   view, sequence number, sender, receiver and the digest of the body,
//!   so a message cannot be replayed into another cluster, view, slot or
//!   kind, nor reflected to another receiver.
//! * A MAC covers the same fields as a signature, laid out for speed: one
//!   64-byte block with the cluster id, the sender and the receiver (the
//!   same for every message between one pair in one direction, so each
//!   key's HMAC state is kept with that block absorbed), then 49 bytes
//!   with the kind, view, sequence number and body digest. HMAC-SHA256
//!   then costs two compressions per message instead of three.
//! * Tags are compared in constant time (`Mac::verify_slice`); signatures
//!   are checked with `verify_strict`.

use crate::messages::{Digest, Sig, Tag};
use crate::types::{SeqNo, View};
use consensus_actors::types::{ClientId, NodeId};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

type HmacSha256 = Hmac<Sha256>;

/// The receiver of a signed message: anyone (a signature proves to all).
pub const ANY_RECEIVER: u64 = u64::MAX;

/// The kinds of authenticated messages (part of the authenticated bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum AuthKind {
    /// A client request.
    Request = 1,
    /// PRE-PREPARE.
    PrePrepare = 2,
    /// PREPARE.
    Prepare = 3,
    /// COMMIT.
    Commit = 4,
    /// REPLY.
    Reply = 5,
    /// CHECKPOINT.
    Checkpoint = 6,
    /// VIEW-CHANGE.
    ViewChange = 7,
    /// NEW-VIEW.
    NewView = 8,
    /// A state-transfer request.
    FetchState = 9,
    /// The REPLYs of one batch, authenticated together.
    ReplyBatch = 10,
}

/// What a MAC or a signature covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthHeader {
    /// The message kind.
    pub kind: AuthKind,
    /// Its view (0 where the message has none).
    pub view: View,
    /// Its sequence number (the timestamp of a request or reply).
    pub seq: SeqNo,
    /// The sender (a replica, or a client's identity number).
    pub sender: u64,
    /// The receiver ([`ANY_RECEIVER`] for signatures).
    pub receiver: u64,
    /// The digest of the message body.
    pub body: Digest,
}

/// The first block a MAC covers: who talks to whom, in which cluster.
fn route_block(cluster: u64, sender: u64, receiver: u64) -> [u8; 64] {
    let mut out = [0u8; 64];
    out[0..8].copy_from_slice(b"pbft-mac");
    out[8..16].copy_from_slice(&cluster.to_le_bytes());
    out[16..24].copy_from_slice(&sender.to_le_bytes());
    out[24..32].copy_from_slice(&receiver.to_le_bytes());
    out
}

/// `state` (a keyed HMAC) with the route block of `cluster`, `sender` and
/// `receiver` absorbed.
fn routed(state: &HmacSha256, cluster: u64, sender: u64, receiver: u64) -> HmacSha256 {
    let mut s = state.clone();
    s.update(&route_block(cluster, sender, receiver));
    s
}

impl AuthHeader {
    /// What a MAC covers after the route block.
    fn mac_bytes(&self) -> [u8; 49] {
        let mut out = [0u8; 49];
        out[0] = self.kind as u8;
        out[1..9].copy_from_slice(&self.view.get().to_le_bytes());
        out[9..17].copy_from_slice(&self.seq.get().to_le_bytes());
        out[17..49].copy_from_slice(&self.body.0);
        out
    }

    fn bytes(&self, cluster: u64) -> [u8; 73] {
        let mut out = [0u8; 73];
        out[0..8].copy_from_slice(&cluster.to_le_bytes());
        out[8] = self.kind as u8;
        out[9..17].copy_from_slice(&self.view.get().to_le_bytes());
        out[17..25].copy_from_slice(&self.seq.get().to_le_bytes());
        out[25..33].copy_from_slice(&self.sender.to_le_bytes());
        out[33..41].copy_from_slice(&self.receiver.to_le_bytes());
        out[41..73].copy_from_slice(&self.body.0);
        out
    }
}

thread_local! {
    static BYTES_HASHED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Bytes this thread fed to SHA-256 for message digests so far (requests,
/// batches, encoded messages): what a view change costs in hashing is
/// measured with it (`view_change_cost` in the authenticator's tests).
pub fn bytes_hashed() -> u64 {
    BYTES_HASHED.with(std::cell::Cell::get)
}

/// Counts `n` bytes hashed (see [`bytes_hashed`]).
pub(crate) fn count_hashed(n: usize) {
    BYTES_HASHED.with(|c| c.set(c.get().wrapping_add(n as u64)));
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> Digest {
    count_hashed(bytes.len());
    Digest(Sha256::digest(bytes).into())
}

/// SHA-256 of the MessagePack encoding of `value`.
pub fn digest_of<T: Serialize + ?Sized>(value: &T) -> Digest {
    // Encoding plain data (no maps with non-string keys, no I/O) cannot
    // fail; an empty encoding would still hash deterministically.
    sha256(&rmp_serde::to_vec(value).unwrap_or_default())
}

/// The identity number of a client: the node it submits through and its
/// id there, packed (nodes and client ids below 2^32).
pub fn client_identity(node: NodeId, client: ClientId) -> u64 {
    (node.get() << 32) | (client.get() & 0xffff_ffff)
}

/// How many MACs and signatures one party computed: what
/// [`Keys::counts`] reports (to measure what a protocol step costs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuthCounts {
    /// MACs computed for sending (one per receiver of an authenticator).
    pub macs_made: u64,
    /// MACs checked.
    pub macs_checked: u64,
    /// ed25519 signatures made.
    pub signed: u64,
    /// ed25519 signatures verified (cache hits excluded).
    pub verified: u64,
}

impl std::ops::Add for AuthCounts {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self {
            macs_made: self.macs_made + o.macs_made,
            macs_checked: self.macs_checked + o.macs_checked,
            signed: self.signed + o.signed,
            verified: self.verified + o.verified,
        }
    }
}

impl std::ops::Sub for AuthCounts {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        Self {
            macs_made: self.macs_made - o.macs_made,
            macs_checked: self.macs_checked - o.macs_checked,
            signed: self.signed - o.signed,
            verified: self.verified - o.verified,
        }
    }
}

/// The cluster's keys, as one party holds them (every party can derive
/// every key from the cluster secret in this framework; a correct party only
/// uses its own signing key and the MAC keys it shares).
pub struct Keys {
    cluster: u64,
    secret: [u8; 32],
    me: NodeId,
    signing: SigningKey,
    replica_keys: BTreeMap<NodeId, VerifyingKey>,
    /// Per (client identity, replica): the keyed state with the route
    /// block (client to replica) absorbed.
    client_macs: RefCell<BTreeMap<(u64, NodeId), HmacSha256>>,
    counts: Cell<AuthCounts>,
    /// Per peer: the keyed state shared with it.
    macs: BTreeMap<NodeId, HmacSha256>,
    /// Per peer: that state with the route block from this party to the
    /// peer absorbed (MACs made).
    macs_out: BTreeMap<NodeId, HmacSha256>,
    /// Per peer: the same from the peer to this party (MACs checked).
    macs_in: BTreeMap<NodeId, HmacSha256>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("cluster", &self.cluster)
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

fn derive(secret: &[u8; 32], label: &[u8], a: u64, b: u64) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(secret);
    h.update(label);
    h.update(a.to_le_bytes());
    h.update(b.to_le_bytes());
    h.finalize().into()
}

/// The cluster secret derived from a seed and a cluster id.
pub fn cluster_secret(seed: u64, cluster: u64) -> [u8; 32] {
    derive(&[0u8; 32], b"pbft-cluster-secret", seed, cluster)
}

/// The signing key of replica `node`.
pub fn replica_signing_key(secret: &[u8; 32], node: NodeId) -> SigningKey {
    SigningKey::from_bytes(&derive(secret, b"replica-sign", node.get(), 0))
}

fn client_mac_key(secret: &[u8; 32], identity: u64, replica: NodeId) -> [u8; 32] {
    derive(secret, b"client-mac", identity, replica.get())
}

/// Client MAC states kept at most (beyond, the cache starts over).
pub const CLIENT_KEYS_MAX: usize = 1 << 16;

fn mac_key(secret: &[u8; 32], a: NodeId, b: NodeId) -> [u8; 32] {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    derive(secret, b"pairwise-mac", lo.get(), hi.get())
}

impl Keys {
    /// The keys of `me` in a cluster of `nodes` (every node that may send
    /// or receive: replicas; clients submit through nodes).
    pub fn new(cluster: u64, secret: [u8; 32], me: NodeId, nodes: &[NodeId]) -> Self {
        let replica_keys = nodes
            .iter()
            .map(|&n| (n, replica_signing_key(&secret, n).verifying_key()))
            .collect();
        let macs: BTreeMap<NodeId, HmacSha256> = nodes
            .iter()
            .filter_map(|&n| {
                HmacSha256::new_from_slice(&mac_key(&secret, me, n))
                    .ok()
                    .map(|m| (n, m))
            })
            .collect();
        let macs_out = macs
            .iter()
            .map(|(&n, m)| (n, routed(m, cluster, me.get(), n.get())))
            .collect();
        let macs_in = macs
            .iter()
            .map(|(&n, m)| (n, routed(m, cluster, n.get(), me.get())))
            .collect();
        Self {
            cluster,
            secret,
            me,
            signing: replica_signing_key(&secret, me),
            replica_keys,
            client_macs: RefCell::new(BTreeMap::new()),
            counts: Cell::new(AuthCounts::default()),
            macs,
            macs_out,
            macs_in,
        }
    }

    /// The MACs and signatures these keys computed so far.
    pub fn counts(&self) -> AuthCounts {
        self.counts.get()
    }

    fn count(&self, f: impl FnOnce(&mut AuthCounts)) {
        let mut c = self.counts.get();
        f(&mut c);
        self.counts.set(c);
    }

    /// The party these keys belong to.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// The cluster id in every authenticated message.
    pub fn cluster(&self) -> u64 {
        self.cluster
    }

    /// The MAC of `header` for `to` (sender: this party).
    pub fn mac(&self, to: NodeId, header: &AuthHeader) -> Option<Tag> {
        let mut mac = if header.sender == self.me.get() && header.receiver == to.get() {
            self.macs_out.get(&to)?.clone()
        } else {
            let base = self.macs.get(&to)?;
            routed(base, self.cluster, header.sender, header.receiver)
        };
        self.count(|c| c.macs_made += 1);
        mac.update(&header.mac_bytes());
        Some(Tag(mac.finalize().into_bytes().into()))
    }

    /// One MAC per receiver in `to` (a PBFT authenticator). Each MAC
    /// covers its own receiver.
    pub fn authenticator(&self, to: &[NodeId], header: &AuthHeader) -> Vec<(NodeId, Tag)> {
        to.iter()
            .filter(|&&n| n != self.me)
            .filter_map(|&n| {
                let h = AuthHeader {
                    receiver: n.get(),
                    ..*header
                };
                self.mac(n, &h).map(|t| (n, t))
            })
            .collect()
    }

    /// Checks the MAC `from` put for this party in `auth`, in constant
    /// time.
    pub fn check_authenticator(
        &self,
        from: NodeId,
        header: &AuthHeader,
        auth: &[(NodeId, Tag)],
    ) -> bool {
        let Some((_, tag)) = auth.iter().find(|(n, _)| *n == self.me) else {
            return false;
        };
        let h = AuthHeader {
            receiver: self.me.get(),
            ..*header
        };
        let mut mac = if h.sender == from.get() {
            let Some(mac) = self.macs_in.get(&from) else {
                return false;
            };
            mac.clone()
        } else {
            let Some(base) = self.macs.get(&from) else {
                return false;
            };
            routed(base, self.cluster, h.sender, h.receiver)
        };
        self.count(|c| c.macs_checked += 1);
        mac.update(&h.mac_bytes());
        mac.verify_slice(&tag.0).is_ok()
    }

    /// The MAC state client `identity` shares with `replica`, updated
    /// with `header` addressed to `replica`.
    fn client_mac(&self, identity: u64, replica: NodeId, header: &AuthHeader) -> HmacSha256 {
        let mut macs = self.client_macs.borrow_mut();
        if macs.len() >= CLIENT_KEYS_MAX && !macs.contains_key(&(identity, replica)) {
            macs.clear();
        }
        let cluster = self.cluster;
        let state = macs.entry((identity, replica)).or_insert_with(|| {
            // A 32-byte key is always a valid HMAC key.
            let keyed = <HmacSha256 as KeyInit>::new_from_slice(&client_mac_key(
                &self.secret,
                identity,
                replica,
            ))
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
            routed(&keyed, cluster, identity, replica.get())
        });
        let h = AuthHeader {
            receiver: replica.get(),
            ..*header
        };
        let mut mac = if h.sender == identity {
            state.clone()
        } else {
            // Not the client's own sender field: the key alone, routed as
            // the header says (a forged request fails its check).
            let keyed = <HmacSha256 as KeyInit>::new_from_slice(&client_mac_key(
                &self.secret,
                identity,
                replica,
            ))
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
            routed(&keyed, cluster, h.sender, h.receiver)
        };
        mac.update(&h.mac_bytes());
        mac
    }

    /// Client `identity`'s authenticator over `header`: one MAC per replica
    /// of `to` (a client submitting through this node).
    pub fn client_authenticator(
        &self,
        identity: u64,
        to: &[NodeId],
        header: &AuthHeader,
    ) -> Vec<(NodeId, Tag)> {
        to.iter()
            .map(|&r| {
                self.count(|c| c.macs_made += 1);
                let tag = self.client_mac(identity, r, header).finalize().into_bytes();
                (r, Tag(tag.into()))
            })
            .collect()
    }

    /// Checks client `identity`'s MAC for this replica in `auth`, in
    /// constant time.
    pub fn check_client_authenticator(
        &self,
        identity: u64,
        header: &AuthHeader,
        auth: &[(NodeId, Tag)],
    ) -> bool {
        let Some((_, tag)) = auth.iter().find(|(n, _)| *n == self.me) else {
            return false;
        };
        self.count(|c| c.macs_checked += 1);
        self.client_mac(identity, self.me, header)
            .verify_slice(&tag.0)
            .is_ok()
    }

    /// This replica's signature of `header` (receiver: anyone).
    pub fn sign(&self, header: &AuthHeader) -> Sig {
        self.count(|c| c.signed += 1);
        let h = AuthHeader {
            receiver: ANY_RECEIVER,
            ..*header
        };
        Sig::from_bytes(self.signing.sign(&h.bytes(self.cluster)).to_bytes())
    }

    /// Whether `sig` is replica `signer`'s signature of `header`.
    pub fn verify_replica(&self, signer: NodeId, header: &AuthHeader, sig: &Sig) -> bool {
        let Some(key) = self.replica_keys.get(&signer) else {
            return false;
        };
        self.count(|c| c.verified += 1);
        let h = AuthHeader {
            receiver: ANY_RECEIVER,
            ..*header
        };
        key.verify_strict(
            &h.bytes(self.cluster),
            &Signature::from_bytes(&sig.to_bytes()),
        )
        .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: AuthKind) -> AuthHeader {
        AuthHeader {
            kind,
            view: View(1),
            seq: SeqNo(7),
            sender: 0,
            receiver: 0,
            body: sha256(b"body"),
        }
    }

    fn keys(me: u64) -> Keys {
        let nodes = [NodeId(0), NodeId(1), NodeId(2), NodeId(3)];
        Keys::new(9, cluster_secret(42, 9), NodeId(me), &nodes)
    }

    #[test]
    fn an_authenticator_holds_one_mac_per_receiver_each_checked_by_its_receiver() {
        let (k0, k1, k2) = (keys(0), keys(1), keys(2));
        let h = header(AuthKind::Commit);
        let auth = k0.authenticator(&[NodeId(0), NodeId(1), NodeId(2), NodeId(3)], &h);
        assert_eq!(auth.len(), 3);
        assert!(k1.check_authenticator(NodeId(0), &h, &auth));
        assert!(k2.check_authenticator(NodeId(0), &h, &auth));
        // The MAC for n1 does not pass as n2's (no reflection).
        let only_n1: Vec<_> = auth
            .iter()
            .filter(|(n, _)| *n == NodeId(1))
            .map(|(_, t)| (NodeId(2), *t))
            .collect();
        assert!(!k2.check_authenticator(NodeId(0), &h, &only_n1));
        // Claimed from another sender: refused.
        assert!(!k1.check_authenticator(NodeId(3), &h, &auth));
    }

    #[test]
    fn a_mac_covers_kind_view_seq_and_body() {
        let (k0, k1) = (keys(0), keys(1));
        let h = header(AuthKind::Commit);
        let auth = k0.authenticator(&[NodeId(1)], &h);
        for other in [
            AuthHeader {
                kind: AuthKind::Prepare,
                ..h
            },
            AuthHeader { view: View(2), ..h },
            AuthHeader { seq: SeqNo(8), ..h },
            AuthHeader {
                body: sha256(b"other"),
                ..h
            },
        ] {
            assert!(!k1.check_authenticator(NodeId(0), &other, &auth));
        }
        // Another cluster with the same secret refuses it too.
        let k1_other = Keys::new(
            10,
            cluster_secret(42, 9),
            NodeId(1),
            &[NodeId(0), NodeId(1)],
        );
        assert!(!k1_other.check_authenticator(NodeId(0), &h, &auth));
    }

    /// The kept states (route block absorbed) and the slow path (keyed
    /// state, then the route block the header names) agree: a header whose
    /// sender is not the party's own is MACed over its own route, and a
    /// sender field that differs from the real sender fails its check.
    #[test]
    fn a_mac_covers_the_route_and_the_kept_states_match_the_slow_path() {
        let (k0, k1) = (keys(0), keys(1));
        let h = header(AuthKind::Commit);
        let fast = k0.mac(NodeId(1), &AuthHeader { receiver: 1, ..h });
        let keyed = k0.macs.get(&NodeId(1)).expect("a peer");
        let mut slow = routed(keyed, 9, 0, 1);
        slow.update(&AuthHeader { receiver: 1, ..h }.mac_bytes());
        assert_eq!(fast, Some(Tag(slow.finalize().into_bytes().into())));
        // n0 MACs a header claiming sender 2: n1 refuses it from n0 and
        // from n2 (whose key it is not).
        let claimed = AuthHeader { sender: 2, ..h };
        let auth = k0.authenticator(&[NodeId(1)], &claimed);
        assert!(!k1.check_authenticator(NodeId(0), &h, &auth));
        assert!(!k1.check_authenticator(NodeId(2), &claimed, &auth));
        assert!(
            k1.check_authenticator(NodeId(0), &claimed, &auth),
            "the same bytes under the same key"
        );
        // Client MACs: the kept state and the slow path agree too.
        let req = AuthHeader {
            kind: AuthKind::Request,
            sender: 77,
            ..h
        };
        let auth = k0.client_authenticator(77, &[NodeId(1)], &req);
        assert!(k1.check_client_authenticator(77, &req, &auth));
        assert!(!k1.check_client_authenticator(77, &AuthHeader { sender: 78, ..req }, &auth));
    }

    #[test]
    fn signatures_prove_to_third_parties_and_bind_the_signer() {
        let (k0, k3) = (keys(0), keys(3));
        let h = header(AuthKind::ViewChange);
        let sig = k0.sign(&h);
        assert!(k3.verify_replica(NodeId(0), &h, &sig));
        assert!(!k3.verify_replica(NodeId(1), &h, &sig));
        assert!(!k3.verify_replica(NodeId(0), &AuthHeader { seq: SeqNo(8), ..h }, &sig));
        let mut bad = sig.to_bytes();
        bad[5] ^= 1;
        assert!(!k3.verify_replica(NodeId(0), &h, &Sig::from_bytes(bad)));
    }

    #[test]
    fn client_authenticators_bind_the_client_identity_and_the_receiver() {
        let (k0, k1, k2) = (keys(0), keys(1), keys(2));
        let id = client_identity(NodeId(0), ClientId(5));
        let h = header(AuthKind::Request);
        let auth = k0.client_authenticator(id, &[NodeId(1), NodeId(2)], &h);
        assert!(k1.check_client_authenticator(id, &h, &auth));
        assert!(k2.check_client_authenticator(id, &h, &auth));
        assert!(!k1.check_client_authenticator(client_identity(NodeId(0), ClientId(6)), &h, &auth));
        assert!(!k1.check_client_authenticator(id, &AuthHeader { seq: SeqNo(8), ..h }, &auth));
        // n1's MAC does not pass as n2's (no reflection).
        let moved: Vec<_> = auth.iter().map(|(_, t)| (NodeId(2), *t)).take(1).collect();
        assert!(!k2.check_client_authenticator(id, &h, &moved));
        let mut bad = auth.clone();
        bad[0].1 .0[3] ^= 1;
        assert!(!k1.check_client_authenticator(id, &h, &bad));
    }

    #[test]
    fn keys_are_deterministic_in_the_seed() {
        assert_eq!(cluster_secret(1, 2), cluster_secret(1, 2));
        assert_ne!(cluster_secret(1, 2), cluster_secret(2, 2));
        let a = replica_signing_key(&cluster_secret(1, 2), NodeId(0)).verifying_key();
        let b = replica_signing_key(&cluster_secret(1, 2), NodeId(0)).verifying_key();
        assert_eq!(a, b);
    }
}
