//! PBFT's vocabulary: views and sequence numbers.

consensus_actors::newtype_u64!(
    /// A PBFT view number; the primary of view `v` is replica `v mod n`.
    View,
    "v"
);
consensus_actors::newtype_u64!(
    /// A PBFT sequence number assigned by the primary.
    SeqNo,
    "s"
);
