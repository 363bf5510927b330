//! The authenticated handshake of a TCP connection, without I/O.
//!
//! The dialer (the node that opened the connection, and the only one that
//! sends protocol messages on it) and the acceptor each prove that they
//! hold the cluster key, over nonces drawn by both sides:
//!
//! ```text
//! dialer                                          acceptor
//!   Hello { version, cluster, from: D, to: A, nonce_d } ──►
//!                                  checks: version, cluster, to = A, D a configured peer
//!   ◄── Challenge { nonce_a, proof_a = HMAC(key, "acceptor" | cluster | D | A | nonce_d | nonce_a) }
//! checks proof_a
//!   Proof { proof_d = HMAC(key, "dialer" | cluster | D | A | nonce_d | nonce_a) } ──►
//!                                  checks proof_d: D is authenticated
//! ```
//!
//! * Both node ids and the cluster id are inside both MACs, so a proof made
//!   for one pair of nodes or one cluster is worthless for another.
//! * Both nonces are inside both MACs and each side draws its own fresh one
//!   per connection, so a recorded handshake replayed on a new connection
//!   fails (the acceptor's nonce differs).
//! * The role label differs between the two proofs, so the acceptor's proof
//!   cannot be reflected back as the dialer's.
//! * Every field is length-prefixed in the MAC input, so no two transcripts
//!   collide by shifting bytes between fields.
//! * Proofs are compared with [`Mac::verify_slice`] (constant time).
//!
//! The two state machines ([`DialerHandshake`], [`AcceptorHandshake`]) take
//! frame payloads in and give frame payloads out; the transport drives them
//! over a socket, the fuzz target and the tests feed them bytes directly.

use super::RejectReason;
use crate::types::NodeId;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

/// The handshake's wire version; a peer speaking another one is refused.
pub const HANDSHAKE_VERSION: u8 = 1;

/// Bytes of each side's nonce.
pub const NONCE_BYTES: usize = 32;

/// Longest cluster id, in bytes.
pub const MAX_CLUSTER_ID_BYTES: usize = 128;

/// Largest handshake frame payload, in bytes: the codec refuses a bigger
/// frame before the handshake completes.
pub const MAX_HANDSHAKE_FRAME_BYTES: usize = 512;

/// The secret every member of a cluster holds. Its `Debug` does not print
/// it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey(Vec<u8>);

/// Why a cluster key is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Fewer bytes than [`ClusterKey::MIN_BYTES`].
    #[error("the cluster key has {0} bytes; at least {min} are needed", min = ClusterKey::MIN_BYTES)]
    TooShort(usize),
}

impl ClusterKey {
    /// The fewest bytes a key may have.
    pub const MIN_BYTES: usize = 16;

    /// A key from its bytes (at least [`MIN_BYTES`](Self::MIN_BYTES);
    /// leading and trailing ASCII whitespace, as a key file's last newline,
    /// is not part of it).
    pub fn new(bytes: impl AsRef<[u8]>) -> Result<Self, KeyError> {
        let key = bytes.as_ref().trim_ascii();
        if key.len() < Self::MIN_BYTES {
            return Err(KeyError::TooShort(key.len()));
        }
        Ok(Self(key.to_vec()))
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length: this cannot fail.
        <HmacSha256 as KeyInit>::new_from_slice(&self.0).expect("HMAC accepts any key length")
    }
}

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterKey(<{} bytes>)", self.0.len())
    }
}

/// The dialer's first frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`HANDSHAKE_VERSION`].
    pub version: u8,
    /// The cluster the dialer belongs to.
    pub cluster: String,
    /// The dialer.
    pub from: NodeId,
    /// The node the dialer means to reach.
    pub to: NodeId,
    /// The dialer's fresh nonce.
    pub nonce: Vec<u8>,
}

/// The acceptor's answer: its nonce and its proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// The acceptor's fresh nonce.
    pub nonce: Vec<u8>,
    /// HMAC over the transcript with the acceptor's role label.
    pub proof: Vec<u8>,
}

/// The dialer's proof, its last handshake frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    /// HMAC over the transcript with the dialer's role label.
    pub proof: Vec<u8>,
}

/// Which side a proof speaks for.
#[derive(Clone, Copy)]
enum Role {
    Dialer,
    Acceptor,
}

/// What both proofs bind: cluster, both ids, both nonces.
struct Transcript<'a> {
    cluster: &'a str,
    dialer: NodeId,
    acceptor: NodeId,
    dialer_nonce: &'a [u8],
    acceptor_nonce: &'a [u8],
}

impl Transcript<'_> {
    fn mac(&self, key: &ClusterKey, role: Role) -> HmacSha256 {
        let mut mac = key.mac();
        let label: &[u8] = match role {
            Role::Dialer => b"consensus-tcp/v1/dialer",
            Role::Acceptor => b"consensus-tcp/v1/acceptor",
        };
        for field in [
            label,
            self.cluster.as_bytes(),
            &self.dialer.get().to_be_bytes(),
            &self.acceptor.get().to_be_bytes(),
            self.dialer_nonce,
            self.acceptor_nonce,
        ] {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field);
        }
        mac
    }

    fn prove(&self, key: &ClusterKey, role: Role) -> Vec<u8> {
        self.mac(key, role).finalize().into_bytes().to_vec()
    }

    fn verify(&self, key: &ClusterKey, role: Role, proof: &[u8]) -> bool {
        self.mac(key, role).verify_slice(proof).is_ok()
    }
}

fn encode<T: Serialize>(frame: &T) -> Vec<u8> {
    // Plain structs of strings, integers and byte vectors: encoding into a
    // vector cannot fail.
    rmp_serde::to_vec(frame).expect("handshake frames encode")
}

fn decode<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<T, RejectReason> {
    if payload.len() > MAX_HANDSHAKE_FRAME_BYTES {
        return Err(RejectReason::Oversized);
    }
    rmp_serde::from_slice(payload).map_err(|_| RejectReason::Malformed)
}

/// The dialer's side of a handshake.
#[derive(Debug)]
pub struct DialerHandshake {
    cluster: String,
    local: NodeId,
    peer: NodeId,
    nonce: Vec<u8>,
}

impl DialerHandshake {
    /// Node `local` of `cluster` reaching `peer`, with its fresh `nonce`;
    /// returns the state and the [`Hello`] frame to send.
    pub fn start(
        cluster: &str,
        local: NodeId,
        peer: NodeId,
        nonce: [u8; NONCE_BYTES],
    ) -> (Self, Vec<u8>) {
        let hello = Hello {
            version: HANDSHAKE_VERSION,
            cluster: cluster.to_string(),
            from: local,
            to: peer,
            nonce: nonce.to_vec(),
        };
        let frame = encode(&hello);
        let state = Self {
            cluster: cluster.to_string(),
            local,
            peer,
            nonce: nonce.to_vec(),
        };
        (state, frame)
    }

    /// Checks the acceptor's [`Challenge`]; on success returns the
    /// [`Proof`] frame to send, after which the connection carries messages.
    pub fn on_challenge(self, key: &ClusterKey, payload: &[u8]) -> Result<Vec<u8>, RejectReason> {
        let challenge: Challenge = decode(payload)?;
        if challenge.nonce.len() != NONCE_BYTES {
            return Err(RejectReason::Malformed);
        }
        let transcript = Transcript {
            cluster: &self.cluster,
            dialer: self.local,
            acceptor: self.peer,
            dialer_nonce: &self.nonce,
            acceptor_nonce: &challenge.nonce,
        };
        if !transcript.verify(key, Role::Acceptor, &challenge.proof) {
            return Err(RejectReason::BadProof);
        }
        Ok(encode(&Proof {
            proof: transcript.prove(key, Role::Dialer),
        }))
    }
}

/// The acceptor's side of a handshake.
#[derive(Debug)]
pub struct AcceptorHandshake {
    cluster: String,
    local: NodeId,
    peer: NodeId,
    dialer_nonce: Vec<u8>,
    nonce: Vec<u8>,
}

impl AcceptorHandshake {
    /// Node `local` of `cluster` received `payload` as the first frame of a
    /// connection; `is_peer` says whether a node id is a configured peer.
    /// On success returns the state and the [`Challenge`] frame to send.
    pub fn on_hello(
        cluster: &str,
        local: NodeId,
        key: &ClusterKey,
        is_peer: impl Fn(NodeId) -> bool,
        nonce: [u8; NONCE_BYTES],
        payload: &[u8],
    ) -> Result<(Self, Vec<u8>), RejectReason> {
        let hello: Hello = decode(payload)?;
        if hello.version != HANDSHAKE_VERSION {
            return Err(RejectReason::Version);
        }
        if hello.nonce.len() != NONCE_BYTES {
            return Err(RejectReason::Malformed);
        }
        if hello.cluster != cluster {
            return Err(RejectReason::WrongCluster);
        }
        if hello.to != local || hello.from == local || !is_peer(hello.from) {
            return Err(RejectReason::UnknownPeer);
        }
        let transcript = Transcript {
            cluster,
            dialer: hello.from,
            acceptor: local,
            dialer_nonce: &hello.nonce,
            acceptor_nonce: &nonce,
        };
        let frame = encode(&Challenge {
            nonce: nonce.to_vec(),
            proof: transcript.prove(key, Role::Acceptor),
        });
        let state = Self {
            cluster: cluster.to_string(),
            local,
            peer: hello.from,
            dialer_nonce: hello.nonce,
            nonce: nonce.to_vec(),
        };
        Ok((state, frame))
    }

    /// Checks the dialer's [`Proof`]; on success the dialer is
    /// authenticated as the returned node.
    pub fn on_proof(self, key: &ClusterKey, payload: &[u8]) -> Result<NodeId, RejectReason> {
        let proof: Proof = decode(payload)?;
        let transcript = Transcript {
            cluster: &self.cluster,
            dialer: self.peer,
            acceptor: self.local,
            dialer_nonce: &self.dialer_nonce,
            acceptor_nonce: &self.nonce,
        };
        if transcript.verify(key, Role::Dialer, &proof.proof) {
            Ok(self.peer)
        } else {
            Err(RejectReason::BadProof)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> ClusterKey {
        ClusterKey::new(s).expect("key")
    }

    const K: &str = "0123456789abcdef-cluster-key";

    fn accept(
        key: &ClusterKey,
        nonce: u8,
        hello: &[u8],
    ) -> Result<(AcceptorHandshake, Vec<u8>), RejectReason> {
        AcceptorHandshake::on_hello("c1", NodeId(2), key, |n| n == NodeId(1), [nonce; 32], hello)
    }

    #[test]
    fn both_sides_with_the_key_authenticate_the_dialer() {
        let k = key(K);
        let (dialer, hello) = DialerHandshake::start("c1", NodeId(1), NodeId(2), [7; 32]);
        let (acceptor, challenge) = accept(&k, 9, &hello).expect("hello accepted");
        let proof = dialer
            .on_challenge(&k, &challenge)
            .expect("acceptor proven");
        assert_eq!(acceptor.on_proof(&k, &proof), Ok(NodeId(1)));
    }

    #[test]
    fn a_wrong_key_fails_on_either_side() {
        let (good, bad) = (key(K), key("another-key-of-the-same-size"));
        // The acceptor lacks the key: the dialer refuses its challenge.
        let (dialer, hello) = DialerHandshake::start("c1", NodeId(1), NodeId(2), [7; 32]);
        let (_, challenge) = accept(&bad, 9, &hello).expect("hello carries no proof");
        assert_eq!(
            dialer.on_challenge(&good, &challenge),
            Err(RejectReason::BadProof)
        );
        // The dialer lacks the key: the acceptor refuses its proof.
        let (dialer, hello) = DialerHandshake::start("c1", NodeId(1), NodeId(2), [7; 32]);
        let (acceptor, challenge) = accept(&good, 9, &hello).expect("hello");
        // A dialer without the key cannot check the challenge either; it
        // answers with a proof made with its own key.
        let forged = Transcript {
            cluster: "c1",
            dialer: NodeId(1),
            acceptor: NodeId(2),
            dialer_nonce: &[7; 32],
            acceptor_nonce: &[9; 32],
        }
        .prove(&bad, Role::Dialer);
        drop(dialer);
        let _ = challenge;
        assert_eq!(
            acceptor.on_proof(&good, &encode(&Proof { proof: forged })),
            Err(RejectReason::BadProof)
        );
    }

    #[test]
    fn a_replayed_proof_fails_against_a_fresh_nonce() {
        let k = key(K);
        let (dialer, hello) = DialerHandshake::start("c1", NodeId(1), NodeId(2), [7; 32]);
        let (_, challenge) = accept(&k, 9, &hello).expect("hello");
        let recorded_proof = dialer.on_challenge(&k, &challenge).expect("proof");
        // The attacker replays Hello and the recorded Proof on a new
        // connection: the acceptor drew another nonce.
        let (acceptor, _) = accept(&k, 10, &hello).expect("hello replayed");
        assert_eq!(
            acceptor.on_proof(&k, &recorded_proof),
            Err(RejectReason::BadProof)
        );
    }

    #[test]
    fn the_acceptors_proof_cannot_be_reflected_as_the_dialers() {
        let k = key(K);
        let (_, hello) = DialerHandshake::start("c1", NodeId(1), NodeId(2), [7; 32]);
        let (acceptor, challenge) = accept(&k, 9, &hello).expect("hello");
        let challenge: Challenge = rmp_serde::from_slice(&challenge).expect("challenge");
        let reflected = encode(&Proof {
            proof: challenge.proof,
        });
        assert_eq!(
            acceptor.on_proof(&k, &reflected),
            Err(RejectReason::BadProof)
        );
    }

    #[test]
    fn ids_and_cluster_are_bound() {
        let k = key(K);
        // A Hello for another node, from an unknown node, from the acceptor
        // itself, or for another cluster is refused before any proof.
        for (cluster, from, to, want) in [
            ("c1", NodeId(1), NodeId(3), RejectReason::UnknownPeer),
            ("c1", NodeId(5), NodeId(2), RejectReason::UnknownPeer),
            ("c1", NodeId(2), NodeId(2), RejectReason::UnknownPeer),
            ("c2", NodeId(1), NodeId(2), RejectReason::WrongCluster),
        ] {
            let (_, hello) = DialerHandshake::start(cluster, from, to, [7; 32]);
            assert_eq!(
                accept(&k, 9, &hello).err(),
                Some(want),
                "{cluster} {from}→{to}"
            );
        }
        // A challenge answered for another dialer does not verify.
        let (dialer, hello) = DialerHandshake::start("c1", NodeId(1), NodeId(2), [7; 32]);
        let (_, challenge) = accept(&k, 9, &hello).expect("hello");
        let other = DialerHandshake {
            local: NodeId(3),
            ..dialer
        };
        assert_eq!(
            other.on_challenge(&k, &challenge),
            Err(RejectReason::BadProof)
        );
    }

    #[test]
    fn garbage_and_bad_versions_are_refused() {
        let k = key(K);
        assert_eq!(accept(&k, 9, b"").err(), Some(RejectReason::Malformed));
        assert_eq!(
            accept(&k, 9, &[0xff; 40]).err(),
            Some(RejectReason::Malformed)
        );
        assert_eq!(
            accept(&k, 9, &[0u8; MAX_HANDSHAKE_FRAME_BYTES + 1]).err(),
            Some(RejectReason::Oversized)
        );
        let mut hello = Hello {
            version: 9,
            cluster: "c1".into(),
            from: NodeId(1),
            to: NodeId(2),
            nonce: vec![1; 32],
        };
        assert_eq!(
            accept(&k, 9, &encode(&hello)).err(),
            Some(RejectReason::Version)
        );
        hello.version = HANDSHAKE_VERSION;
        hello.nonce = vec![1; 3];
        assert_eq!(
            accept(&k, 9, &encode(&hello)).err(),
            Some(RejectReason::Malformed)
        );
    }

    #[test]
    fn short_keys_are_refused_and_keys_are_not_printed() {
        assert_eq!(ClusterKey::new("short\n"), Err(KeyError::TooShort(5)));
        let k = ClusterKey::new(format!("{K}\n")).expect("key");
        assert_eq!(k, key(K));
        assert!(!format!("{k:?}").contains("0123"));
    }
}
