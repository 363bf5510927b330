//! Runnable examples of the consensus framework, one concept each; run them
//! with `cargo run --example NAME`. They arrive with the engine.
