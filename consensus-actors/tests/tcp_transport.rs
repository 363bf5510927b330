//! The TCP transport on 127.0.0.1 with ports picked by the system: two
//! transports exchange messages in order; a sender reconnects to a peer
//! that restarted on the same port; garbage, truncated, oversized and
//! malformed frames, replayed handshakes, unknown peers and wrong keys are
//! refused, each counted under its reason, while a good peer keeps
//! working. Real sockets, so real time: every wait polls a condition
//! under a deadline.
#![forbid(unsafe_code)]

use actix::prelude::*;
use bytes::Bytes;
use consensus_actors::transport::tcp::handshake::{
    AcceptorHandshake, ClusterKey, DialerHandshake, Hello, Proof,
};
use consensus_actors::transport::tcp::{
    FrameDecoder, RejectReason, TcpConfig, TcpStats, TcpTransport,
};
use consensus_actors::transport::{Envelope, EnvelopeSink};
use consensus_actors::NodeId;
use futures::{SinkExt, StreamExt};
use proptest::prelude::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

type Msg = (u64, String);

const KEY: &str = "test-cluster-key-0123456789";
const DEADLINE: Duration = Duration::from_secs(10);

struct Collect(mpsc::UnboundedSender<Envelope<Msg>>);

impl Actor for Collect {
    type Context = Context<Self>;
}

impl Handler<Envelope<Msg>> for Collect {
    type Result = ();
    fn handle(&mut self, env: Envelope<Msg>, _: &mut Context<Self>) {
        let _ = self.0.send(env);
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("address")
}

fn config(id: u64, listen: SocketAddr, key: &str) -> TcpConfig {
    let mut cfg = TcpConfig::new(
        NodeId(id),
        listen,
        "test",
        ClusterKey::new(key).expect("key"),
    );
    cfg.backoff_min = Duration::from_millis(5);
    cfg.backoff_max = Duration::from_millis(50);
    cfg.max_frame_bytes = 64 << 10;
    cfg
}

/// A started transport and what reaches its inbox.
async fn node(cfg: TcpConfig) -> (TcpTransport<Msg>, mpsc::UnboundedReceiver<Envelope<Msg>>) {
    let t = TcpTransport::<Msg>::start(cfg)
        .await
        .expect("transport starts");
    let (tx, rx) = mpsc::unbounded_channel();
    t.register(Collect(tx).start().recipient());
    (t, rx)
}

async fn recv(rx: &mut mpsc::UnboundedReceiver<Envelope<Msg>>) -> Envelope<Msg> {
    tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("a message within the deadline")
        .expect("the inbox is open")
}

fn send(t: &TcpTransport<Msg>, to: u64, n: u64) {
    t.send(Envelope {
        from: t.local(),
        to: NodeId(to),
        msg: (n, format!("m{n}")),
    });
}

async fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let began = tokio::time::Instant::now();
    while !cond() {
        assert!(began.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Two nodes, each knowing the other.
async fn pair() -> (
    (TcpTransport<Msg>, mpsc::UnboundedReceiver<Envelope<Msg>>),
    (TcpTransport<Msg>, mpsc::UnboundedReceiver<Envelope<Msg>>),
) {
    let a = node(config(1, loopback(), KEY)).await;
    let mut cfg = config(2, loopback(), KEY);
    cfg.peers.insert(NodeId(1), a.0.local_addr());
    let b = node(cfg).await;
    a.0.add_peer(NodeId(2), b.0.local_addr());
    (a, b)
}

#[actix_rt::test]
async fn two_transports_exchange_messages_in_order() {
    let ((a, mut a_rx), (b, mut b_rx)) = pair().await;
    for n in 0..500 {
        send(&a, 2, n);
        send(&b, 1, 1000 + n);
    }
    for n in 0..500 {
        let at_b = recv(&mut b_rx).await;
        assert_eq!((at_b.from, at_b.to, at_b.msg.0), (NodeId(1), NodeId(2), n));
        let at_a = recv(&mut a_rx).await;
        assert_eq!((at_a.from, at_a.msg.0), (NodeId(2), 1000 + n));
    }
    assert_eq!(a.stats().connections_dialed.load(Ordering::Relaxed), 1);
    assert_eq!(b.stats().rejected_total(), 0);
    // To itself: straight to its inbox; to a stranger: dropped and counted.
    send(&a, 1, 7);
    assert_eq!(recv(&mut a_rx).await.msg.0, 7);
    send(&a, 9, 8);
    assert_eq!(
        a.stats()
            .dropped_unknown_destination
            .load(Ordering::Relaxed),
        1
    );
    a.shutdown().await;
    b.shutdown().await;
}

use std::sync::atomic::Ordering;

#[actix_rt::test]
async fn a_sender_reconnects_after_the_peer_restarts() {
    let ((a, _a_rx), (b, mut b_rx)) = pair().await;
    send(&a, 2, 1);
    assert_eq!(recv(&mut b_rx).await.msg.0, 1);
    let addr = b.local_addr();
    b.shutdown().await;
    drop(b_rx);
    // The peer restarts on the same port.
    let mut cfg = config(2, addr, KEY);
    cfg.peers.insert(NodeId(1), a.local_addr());
    let (b2, mut b2_rx) = node(cfg).await;
    // Keep sending until one gets through (the first may be lost with the
    // old connection): the writer notices the close and dials again.
    let mut n = 2;
    let got = loop {
        send(&a, 2, n);
        n += 1;
        match tokio::time::timeout(Duration::from_millis(50), b2_rx.recv()).await {
            Ok(Some(env)) => break env,
            Ok(None) => panic!("inbox closed"),
            Err(_) => assert!(n < 200, "no message reached the restarted peer"),
        }
    };
    assert_eq!(got.from, NodeId(1));
    assert!(a.stats().connections_dialed.load(Ordering::Relaxed) >= 2);
    a.shutdown().await;
    b2.shutdown().await;
}

/// A raw connection that completed the handshake as node `from`.
async fn authenticated(
    to: &TcpTransport<Msg>,
    from: u64,
    key: &str,
) -> Framed<TcpStream, LengthDelimitedCodec> {
    let stream = TcpStream::connect(to.local_addr()).await.expect("connect");
    let mut framed = Framed::new(stream, LengthDelimitedCodec::new());
    let (state, hello) = DialerHandshake::start("test", NodeId(from), to.local(), [3; 32]);
    framed.send(Bytes::from(hello)).await.expect("hello");
    let challenge = framed.next().await.expect("challenge").expect("read");
    let proof = state
        .on_challenge(&ClusterKey::new(key).expect("key"), &challenge)
        .expect("the acceptor proves the key");
    framed.send(Bytes::from(proof)).await.expect("proof");
    framed
}

async fn raw(to: &TcpTransport<Msg>, bytes: &[u8], close: bool) -> TcpStream {
    let mut s = TcpStream::connect(to.local_addr()).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    if close {
        s.shutdown().await.expect("shutdown");
    }
    s
}

async fn expect_rejected(stats: &Arc<TcpStats>, reason: RejectReason, count: u64) {
    wait_for(&format!("{} x{count}", reason.label()), || {
        stats.rejected(reason) >= count
    })
    .await;
    assert_eq!(stats.rejected(reason), count, "{}", reason.label());
}

#[actix_rt::test]
async fn bad_frames_and_bad_handshakes_are_refused_and_counted_while_a_good_peer_works() {
    let ((a, _a_rx), (b, mut b_rx)) = pair().await;
    let stats = b.stats();

    // Garbage before any handshake: a frame that is not a Hello.
    let _g = raw(&b, b"\x00\x00\x00\x05hello", false).await;
    expect_rejected(&stats, RejectReason::Malformed, 1).await;
    // A frame announcing 4 GiB before the handshake.
    let _o = raw(&b, &[0xff, 0xff, 0xff, 0xff, 1, 2, 3], false).await;
    expect_rejected(&stats, RejectReason::Oversized, 1).await;
    // The connection ends inside a frame.
    let _t = raw(&b, &[0, 0, 0, 100, 1, 2, 3], true).await;
    expect_rejected(&stats, RejectReason::Truncated, 1).await;
    // A node that is not a peer.
    let (_, hello) = DialerHandshake::start("test", NodeId(9), NodeId(2), [1; 32]);
    let mut frame = (hello.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&hello);
    let _u = raw(&b, &frame, false).await;
    expect_rejected(&stats, RejectReason::UnknownPeer, 1).await;
    // A peer of another cluster.
    let (_, hello) = DialerHandshake::start("other", NodeId(1), NodeId(2), [1; 32]);
    let mut frame = (hello.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&hello);
    let _w = raw(&b, &frame, false).await;
    expect_rejected(&stats, RejectReason::WrongCluster, 1).await;

    // A dialer with a wrong key: its proof fails at the acceptor.
    let stream = TcpStream::connect(b.local_addr()).await.expect("connect");
    let mut framed = Framed::new(stream, LengthDelimitedCodec::new());
    let (_, hello) = DialerHandshake::start("test", NodeId(1), NodeId(2), [5; 32]);
    framed
        .send(Bytes::from(hello.clone()))
        .await
        .expect("hello");
    let _challenge = framed.next().await.expect("challenge").expect("read");
    let wrong = Proof { proof: vec![0; 32] };
    framed
        .send(Bytes::from(rmp_serde::to_vec(&wrong).expect("encode")))
        .await
        .expect("proof");
    expect_rejected(&stats, RejectReason::BadProof, 1).await;

    // A whole transport with a wrong key: it refuses the acceptor's proof
    // (counted on its side) and never gets a message through.
    let mut cfg = config(1, loopback(), "a-wrong-key-of-some-length");
    cfg.peers.insert(NodeId(2), b.local_addr());
    let (c, _c_rx) = node(cfg).await;
    send(&c, 2, 99);
    wait_for("the wrong-keyed dial to fail", || {
        c.stats().rejected(RejectReason::BadProof) >= 1
    })
    .await;

    // A recorded good handshake, replayed on a new connection: the
    // acceptor's nonce differs, so the recorded proof fails.
    let stream = TcpStream::connect(b.local_addr()).await.expect("connect");
    let mut framed = Framed::new(stream, LengthDelimitedCodec::new());
    let (state, hello) = DialerHandshake::start("test", NodeId(1), NodeId(2), [6; 32]);
    framed
        .send(Bytes::from(hello.clone()))
        .await
        .expect("hello");
    let challenge = framed.next().await.expect("challenge").expect("read");
    let proof = state
        .on_challenge(&ClusterKey::new(KEY).expect("key"), &challenge)
        .expect("proof");
    framed
        .send(Bytes::from(proof.clone()))
        .await
        .expect("proof");
    let stream = TcpStream::connect(b.local_addr()).await.expect("connect");
    let mut replay = Framed::new(stream, LengthDelimitedCodec::new());
    replay.send(Bytes::from(hello)).await.expect("hello");
    let _ = replay.next().await;
    replay.send(Bytes::from(proof)).await.expect("proof");
    expect_rejected(&stats, RejectReason::BadProof, 2).await;

    // After the handshake: an oversized frame, then a malformed payload,
    // then a payload cut short, each on its own authenticated connection.
    let mut big = authenticated(&b, 1, KEY).await;
    let header = ((64u32 << 10) + 1).to_be_bytes();
    big.get_mut().write_all(&header).await.expect("header");
    expect_rejected(&stats, RejectReason::Oversized, 2).await;
    let mut bad = authenticated(&b, 1, KEY).await;
    bad.send(Bytes::from_static(b"\xc1\xc1\xc1"))
        .await
        .expect("frame");
    expect_rejected(&stats, RejectReason::Malformed, 2).await;
    let mut cut = authenticated(&b, 1, KEY).await;
    let frame = FrameDecoder::encode(&(5u64, "x".to_string())).expect("encode");
    cut.get_mut()
        .write_all(&frame[..frame.len() - 1])
        .await
        .expect("partial");
    cut.get_mut().shutdown().await.expect("shutdown");
    expect_rejected(&stats, RejectReason::Truncated, 2).await;
    // A well-formed message on an authenticated raw connection arrives,
    // from the authenticated node.
    let mut good = authenticated(&b, 1, KEY).await;
    good.send(Bytes::from(
        rmp_serde::to_vec(&(77u64, "raw".to_string())).expect("encode"),
    ))
    .await
    .expect("frame");
    let got = recv(&mut b_rx).await;
    assert_eq!((got.from, got.msg.0), (NodeId(1), 77));

    // Through all of it, the good peer's messages flow.
    for n in 0..50 {
        send(&a, 2, n);
    }
    for n in 0..50 {
        assert_eq!(recv(&mut b_rx).await.msg.0, n);
    }
    assert_eq!(stats.rejected(RejectReason::HandshakeTimeout), 0);
    a.shutdown().await;
    b.shutdown().await;
    c.shutdown().await;
}

#[actix_rt::test]
async fn a_silent_connection_times_out_in_the_handshake() {
    let mut cfg = config(2, loopback(), KEY);
    cfg.handshake_timeout = Duration::from_millis(100);
    let (b, _rx) = node(cfg).await;
    let _silent = TcpStream::connect(b.local_addr()).await.expect("connect");
    expect_rejected(&b.stats(), RejectReason::HandshakeTimeout, 1).await;
    b.shutdown().await;
}

#[actix_rt::test]
async fn a_full_queue_drops_and_counts_without_blocking() {
    // A peer that does not listen: nothing drains the queue for long.
    let silent = std::net::TcpListener::bind(loopback()).expect("bind");
    let mut cfg = config(1, loopback(), KEY);
    cfg.queue_capacity = 8;
    cfg.peers
        .insert(NodeId(2), silent.local_addr().expect("addr"));
    let (a, _rx) = node(cfg).await;
    for n in 0..1000 {
        send(&a, 2, n);
    }
    let s = a.stats();
    assert!(s.dropped_queue_full.load(Ordering::Relaxed) >= 1000 - 8 - 1);
    a.shutdown().await;
}

#[test]
fn the_port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind(loopback()).expect("bind");
    let addr = taken.local_addr().expect("addr");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let err = rt
        .block_on(TcpTransport::<Msg>::start(config(1, addr, KEY)))
        .err()
        .expect("bind fails");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot listen on {addr}")),
        "{err}"
    );
}

#[test]
fn the_acceptor_state_machine_survives_a_hello_of_the_wrong_shape() {
    let hello = Hello {
        version: 1,
        cluster: "test".into(),
        from: NodeId(1),
        to: NodeId(2),
        nonce: vec![0; 31],
    };
    let r = AcceptorHandshake::on_hello(
        "test",
        NodeId(2),
        &ClusterKey::new(KEY).expect("key"),
        |_| true,
        [0; 32],
        &rmp_serde::to_vec(&hello).expect("encode"),
    );
    assert_eq!(r.err(), Some(RejectReason::Malformed));
}

proptest! {
    /// Arbitrary bytes, cut into arbitrary reads, never panic the decoder:
    /// each complete frame is at most the maximum size, and its payload
    /// decodes as a message or is refused as malformed.
    #[test]
    fn the_frame_decoder_takes_any_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..4096),
        cuts in proptest::collection::vec(1usize..64, 1..16),
    ) {
        let mut decoder = FrameDecoder::new(1024);
        let mut buf = bytes::BytesMut::new();
        let mut rest: &[u8] = &bytes;
        let mut i = 0;
        'outer: while !rest.is_empty() {
            let n = cuts[i % cuts.len()].min(rest.len());
            i += 1;
            buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            loop {
                match decoder.next_frame(&mut buf) {
                    Ok(Some(frame)) => {
                        prop_assert!(frame.len() <= 1024);
                        let _ = FrameDecoder::message::<Msg>(&frame);
                    }
                    Ok(None) => break,
                    Err(r) => {
                        prop_assert_eq!(r, RejectReason::Oversized);
                        break 'outer;
                    }
                }
            }
        }
    }

    /// Every message a writer encodes comes back whole from the decoder.
    #[test]
    fn encoded_frames_decode_back(msgs in proptest::collection::vec((any::<u64>(), ".{0,40}"), 0..20)) {
        let mut decoder = FrameDecoder::new(1024);
        let mut buf = bytes::BytesMut::new();
        for m in &msgs {
            buf.extend_from_slice(&FrameDecoder::encode(m).expect("encode"));
        }
        let mut back = Vec::new();
        while let Some(frame) = decoder.next_frame(&mut buf).expect("within the size") {
            back.push(FrameDecoder::message::<Msg>(&frame).expect("decodes"));
        }
        prop_assert_eq!(back, msgs);
    }
}
