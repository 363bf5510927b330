//! What PBFT's authentication costs: an authenticator (one HMAC-SHA256 per
//! receiver) created and checked, an ed25519 signature made and checked
//! (`verify_strict`), for n = 4 and n = 7.
//!
//! ```sh
//! cargo bench -p consensus-pbft --bench authenticators
//! ```
#![forbid(unsafe_code)]

use consensus_actors::types::NodeId;
use consensus_pbft::authenticator::core::{cluster_secret, sha256, AuthHeader, AuthKind, Keys};
use consensus_pbft::types::{SeqNo, View};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

fn header() -> AuthHeader {
    AuthHeader {
        kind: AuthKind::Commit,
        view: View(3),
        seq: SeqNo(1234),
        sender: 0,
        receiver: 0,
        body: sha256(b"a request batch digest"),
    }
}

fn authenticators(c: &mut Criterion) {
    for n in [4u64, 7] {
        let members: Vec<NodeId> = (0..n).map(NodeId).collect();
        let sender = Keys::new(1, cluster_secret(1, 1), NodeId(0), &members);
        let receiver = Keys::new(1, cluster_secret(1, 1), NodeId(1), &members);
        let h = header();
        c.bench_function(&format!("authenticator create n={n}"), |b| {
            b.iter(|| sender.authenticator(black_box(&members), black_box(&h)))
        });
        let auth = sender.authenticator(&members, &h);
        c.bench_function(&format!("authenticator check n={n}"), |b| {
            b.iter(|| {
                assert!(receiver.check_authenticator(NodeId(0), black_box(&h), black_box(&auth)))
            })
        });
    }
}

fn signatures(c: &mut Criterion) {
    let members: Vec<NodeId> = (0..4).map(NodeId).collect();
    let signer = Keys::new(1, cluster_secret(1, 1), NodeId(0), &members);
    let checker = Keys::new(1, cluster_secret(1, 1), NodeId(1), &members);
    let h = AuthHeader {
        kind: AuthKind::ViewChange,
        ..header()
    };
    c.bench_function("ed25519 sign", |b| b.iter(|| signer.sign(black_box(&h))));
    let sig = signer.sign(&h);
    c.bench_function("ed25519 verify_strict", |b| {
        b.iter(|| assert!(checker.verify_replica(NodeId(0), black_box(&h), black_box(&sig))))
    });
}

criterion_group!(benches, authenticators, signatures);
criterion_main!(benches);
