//! LatencyTracker, ThroughputMeter and the per-cluster recorder (being built).
