//! Client histories, JSON and Jepsen import, linearizability checking (being built).
