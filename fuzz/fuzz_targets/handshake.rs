//! Arbitrary frames into both sides of the TCP handshake: the acceptor's
//! Hello and Proof handlers, the dialer's Challenge handler. Nothing may
//! panic, and no arbitrary input may authenticate (the fuzzer does not
//! hold the key, so a proof that verifies would be a forgery).
#![no_main]
#![forbid(unsafe_code)]

use consensus_actors::transport::tcp::handshake::{AcceptorHandshake, ClusterKey, DialerHandshake};
use consensus_actors::NodeId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = ClusterKey::new("fuzzing-cluster-key-0123456789").expect("key");
    let cut = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let (first, second) = data.split_at(cut);
    // The acceptor: a Hello from the fuzzer, then a Proof from it.
    if let Ok((state, _challenge)) =
        AcceptorHandshake::on_hello("fuzz", NodeId(2), &key, |n| n == NodeId(1), [9; 32], first)
    {
        assert!(
            state.on_proof(&key, second).is_err(),
            "a forged proof verified"
        );
    }
    // The dialer: a Challenge from the fuzzer.
    let (dialer, _hello) = DialerHandshake::start("fuzz", NodeId(1), NodeId(2), [7; 32]);
    assert!(
        dialer.on_challenge(&key, data).is_err(),
        "a forged challenge verified"
    );
});
