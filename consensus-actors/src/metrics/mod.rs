//! Measuring a cluster: latencies, throughput, and a metrics recorder local
//! to one cluster.
//!
//! | item | what it is |
//! |---|---|
//! | [`LatencyHistogram`] | pure log-linear histogram (< 0.8 % error, O(1) record, bounded memory) |
//! | [`LatencyTracker`] | actor: [`RecordLatency`], [`StartOp`] / [`FinishOp`] / [`CancelOp`], [`GetLatency`] → [`LatencySnapshot`] |
//! | [`ThroughputMeter`] | actor: [`RecordOps`], [`GetThroughput`] → [`ThroughputSnapshot`] (1 s, 10 s, 60 s sliding windows) |
//! | [`ClusterRecorder`] | a [`::metrics::Recorder`] per simulated cluster, with a serde [`MetricsSnapshot`] |
//!
//! Cores ([`LatencyHistogram`], [`LatencyCore`], [`ThroughputWindow`]) are
//! pure and take `now` as an argument; only the actors read the clock, and
//! only through [`tokio::time::Instant`], so under the simulation's paused
//! clock every figure is in virtual time and reproducible.
//!
//! ```
//! use consensus_actors::metrics::{
//!     ClusterRecorder, FinishOp, GetLatency, LatencyTracker, StartOp,
//! };
//! use actix::Actor;
//! use std::time::Duration;
//!
//! let rt = || {
//!     tokio::runtime::Builder::new_current_thread()
//!         .enable_all()
//!         .start_paused(true)
//!         .build()
//!         .unwrap()
//! };
//! actix::System::with_tokio_rt(rt).block_on(async {
//!     let recorder = ClusterRecorder::new();
//!     let tracker = LatencyTracker::new()
//!         .reporting_to(&recorder, "latency_us", &[("node", "1")])
//!         .start();
//!     tracker.send(StartOp { id: 7 }).await.unwrap();
//!     tokio::time::sleep(Duration::from_millis(12)).await; // virtual time
//!     assert_eq!(tracker.send(FinishOp { id: 7 }).await.unwrap(), Some(12_000));
//!     assert_eq!(tracker.send(GetLatency).await.unwrap().max_us, 12_000);
//!     assert_eq!(recorder.snapshot().histograms["latency_us{node=\"1\"}"].count, 1);
//! });
//! ```

pub mod histogram;
pub mod latency;
pub mod recorder;
pub mod throughput;

pub use histogram::{HistogramBucket, LatencyHistogram, LatencySnapshot};
pub use latency::{
    CancelOp, FinishOp, GetLatency, LatencyCore, LatencyTracker, RecordLatency, ResetLatency,
    StartOp,
};
pub use recorder::{metric_key, ClusterRecorder, HistogramSummary, MetricsSnapshot};
pub use throughput::{
    GetThroughput, RecordOps, ResetThroughput, ThroughputMeter, ThroughputSnapshot,
    ThroughputWindow,
};

#[cfg(test)]
pub(crate) mod test_support {
    use std::future::Future;

    /// Runs `fut` on a fresh actix System whose tokio clock is paused.
    pub(crate) fn run_paused<F: Future>(fut: F) -> F::Output {
        let rt = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .expect("a current-thread runtime builds")
        };
        actix::System::with_tokio_rt(rt).block_on(fut)
    }
}
