//! Arbitrary bytes into the TCP transport's frame decoder, as a
//! connection's reader sees them: frames up to the maximum size, each
//! payload decoded as a Raft key-value message (what `consensus node`
//! receives). Nothing may panic, and no frame may exceed the maximum.
#![no_main]
#![forbid(unsafe_code)]

use bytes::BytesMut;
use consensus_actors::transport::tcp::FrameDecoder;
use consensus_raft::plugin::RaftKvMessage;
use libfuzzer_sys::fuzz_target;

const MAX: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let mut decoder = FrameDecoder::new(MAX);
    // The first byte says how the stream is cut into reads.
    let (step, rest) = match data.split_first() {
        Some((s, rest)) => (usize::from(*s).max(1), rest),
        None => return,
    };
    let mut buf = BytesMut::new();
    for chunk in rest.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.next_frame(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= MAX);
                    let _ = FrameDecoder::message::<RaftKvMessage>(&frame);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
