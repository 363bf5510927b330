//! `consensus load`: a closed-loop HTTP load generator for real clusters,
//! the same for a `consensus node` cluster and for etcd, so the two can be
//! measured side by side with the same clients, keys and value size.
//!
//! Each client sends one request at a time, for the whole duration, to its
//! own target (client `i` starts at target `i mod n`):
//!
//! | | write | linearizable read |
//! |---|---|---|
//! | [`Api::Consensus`] | `PUT /kv/{key}`, the value as body: 200 | `GET /kv/{key}`: 200 or 404 |
//! | [`Api::Etcd`] | `POST /v3/kv/put` `{"key","value"}` (base64): 200 | `POST /v3/kv/range` `{"key"}`: 200 (etcd's default range is linearizable) |
//!
//! A `consensus node` that is not the leader answers 307 with the leader's
//! address: the client moves to it and retries; a 503 (no leader known) is
//! retried after a short pause. etcd members forward writes to their leader
//! themselves. A request that fails otherwise counts as an error and the
//! client goes on. Latencies are measured from the first send of an
//! operation to its final answer, redirects and retries included.
//!
//! The keys are `k0..k{keys-1}`, drawn uniformly from a seeded generator;
//! every value is `value_size` printable bytes.

use base64::Engine as _;
use consensus_actors::metrics::LatencyHistogram;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// Which HTTP API the cluster speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Api {
    /// `consensus node`'s key-value API.
    Consensus,
    /// etcd's v3 JSON gateway.
    Etcd,
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Api::Consensus => "consensus",
            Api::Etcd => "etcd",
        })
    }
}

impl FromStr for Api {
    type Err = LoadError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "consensus" => Ok(Api::Consensus),
            "etcd" => Ok(Api::Etcd),
            other => Err(LoadError::Invalid(format!(
                "unknown API {other:?}: expected consensus or etcd"
            ))),
        }
    }
}

/// What a load run does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadOptions {
    /// Base URLs of the cluster's members, e.g. `http://127.0.0.1:8001`.
    pub targets: Vec<String>,
    /// The API they speak.
    pub api: Api,
    /// Concurrent clients (each one request at a time).
    pub clients: usize,
    /// Threads, each running its share of the clients on its own runtime.
    pub threads: usize,
    /// How long to send requests.
    pub duration: Duration,
    /// Bytes per value written.
    pub value_size: usize,
    /// Fraction of operations that are reads, 0.0..=1.0.
    pub read_fraction: f64,
    /// Distinct keys.
    pub keys: u64,
    /// Seed of the key, operation and value choices.
    pub seed: u64,
    /// How long one request may take before it counts as an error.
    pub request_timeout: Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            targets: Vec::new(),
            api: Api::Consensus,
            clients: 16,
            threads: 1,
            duration: Duration::from_secs(10),
            value_size: 256,
            read_fraction: 0.0,
            keys: 1000,
            seed: 1,
            request_timeout: Duration::from_secs(5),
        }
    }
}

impl LoadOptions {
    /// Checks the options.
    pub fn validate(&self) -> Result<(), LoadError> {
        if self.targets.is_empty() {
            return Err(LoadError::Invalid(
                "no target: give at least one URL".into(),
            ));
        }
        for t in &self.targets {
            if !(t.starts_with("http://") || t.starts_with("https://")) {
                return Err(LoadError::Invalid(format!(
                    "target {t:?} is not an http:// URL"
                )));
            }
        }
        if self.clients == 0 || self.threads == 0 || self.keys == 0 {
            return Err(LoadError::Invalid(
                "clients, threads and keys must be at least 1".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.read_fraction) {
            return Err(LoadError::Invalid(format!(
                "read fraction {} is outside 0..=1",
                self.read_fraction
            )));
        }
        Ok(())
    }
}

/// Why a load run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The options are invalid.
    #[error("{0}")]
    Invalid(String),
    /// A client thread could not run.
    #[error("load thread failed: {0}")]
    Thread(String),
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

/// The figures of one kind of operation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OpFigures {
    /// Operations answered successfully.
    pub ok: u64,
    /// Operations that failed (after redirects and retries).
    pub errors: u64,
    /// Successful operations per second of the run.
    pub per_sec: f64,
    /// Latency of the successful operations.
    pub latency_us: Percentiles,
}

/// What a load run measured (`consensus load --json` prints it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// The API driven.
    pub api: Api,
    /// The targets.
    pub targets: Vec<String>,
    /// Clients.
    pub clients: usize,
    /// Bytes per value.
    pub value_size: usize,
    /// Fraction of reads asked for.
    pub read_fraction: f64,
    /// Real seconds the clients ran.
    pub duration_secs: f64,
    /// Writes.
    pub writes: OpFigures,
    /// Linearizable reads.
    pub reads: OpFigures,
    /// Redirects followed (307 to the leader).
    pub redirects: u64,
    /// Retries after a 503 or a failed connection.
    pub retries: u64,
}

/// What one thread's clients measured.
#[derive(Default)]
struct Tally {
    writes: LatencyHistogram,
    reads: LatencyHistogram,
    write_errors: u64,
    read_errors: u64,
    redirects: u64,
    retries: u64,
}

impl Tally {
    fn merge(&mut self, other: &Tally) {
        self.writes.merge(&other.writes);
        self.reads.merge(&other.reads);
        self.write_errors += other.write_errors;
        self.read_errors += other.read_errors;
        self.redirects += other.redirects;
        self.retries += other.retries;
    }
}

/// Runs the load and reports what it measured. Blocks the calling thread
/// for `options.duration` (plus the last requests' time).
pub fn run_load(options: &LoadOptions) -> Result<LoadReport, LoadError> {
    options.validate()?;
    let started = Instant::now();
    let deadline = started + options.duration;
    let threads: Vec<_> = (0..options.threads)
        .map(|t| {
            let options = options.clone();
            std::thread::Builder::new()
                .name(format!("load-{t}"))
                .spawn(move || {
                    let clients: Vec<usize> = (0..options.clients)
                        .filter(|c| c % options.threads == t)
                        .collect();
                    actix_rt::System::new().block_on(run_thread(options, clients, deadline))
                })
                .map_err(|e| LoadError::Thread(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let mut tally = Tally::default();
    for handle in threads {
        let part = handle
            .join()
            .map_err(|_| LoadError::Thread("a load thread panicked".into()))?;
        tally.merge(&part);
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let figures = |h: &LatencyHistogram, errors: u64| OpFigures {
        ok: h.count(),
        errors,
        per_sec: h.count() as f64 / secs,
        latency_us: Percentiles {
            p50: h.p50(),
            p99: h.p99(),
            max: h.max(),
        },
    };
    Ok(LoadReport {
        api: options.api,
        targets: options.targets.clone(),
        clients: options.clients,
        value_size: options.value_size,
        read_fraction: options.read_fraction,
        duration_secs: secs,
        writes: figures(&tally.writes, tally.write_errors),
        reads: figures(&tally.reads, tally.read_errors),
        redirects: tally.redirects,
        retries: tally.retries,
    })
}

async fn run_thread(options: LoadOptions, clients: Vec<usize>, deadline: Instant) -> Tally {
    let client = awc::Client::builder()
        .connector(awc::Connector::new().limit(clients.len().max(1)))
        .timeout(options.request_timeout)
        .disable_redirects()
        .finish();
    let tally = Rc::new(RefCell::new(Tally::default()));
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|index| {
            let c = Client {
                http: client.clone(),
                target: options.targets[index % options.targets.len()].clone(),
                rng: ChaCha8Rng::seed_from_u64(
                    options.seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                ),
                options: options.clone(),
                tally: tally.clone(),
            };
            actix_rt::spawn(c.run(deadline))
        })
        .collect();
    for task in tasks {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "a load client failed");
        }
    }
    Rc::try_unwrap(tally)
        .map(RefCell::into_inner)
        .unwrap_or_else(|rc| {
            let mut t = Tally::default();
            t.merge(&rc.borrow());
            t
        })
}

/// One closed-loop client.
struct Client {
    http: awc::Client,
    /// Where it sends next (moves to the leader on a redirect).
    target: String,
    rng: ChaCha8Rng,
    options: LoadOptions,
    tally: Rc<RefCell<Tally>>,
}

/// How one attempt ended.
enum Attempt {
    Done,
    Redirect(String),
    Retry,
    Failed(String),
}

/// Redirects and retries one operation may take before it is an error.
const MAX_ATTEMPTS: usize = 20;

impl Client {
    async fn run(mut self, deadline: Instant) {
        let value: String = (0..self.options.value_size)
            .map(|_| char::from(self.rng.random_range(b'a'..=b'z')))
            .collect();
        while Instant::now() < deadline {
            let key = format!("k{}", self.rng.random_range(0..self.options.keys));
            let read = self.rng.random_bool(self.options.read_fraction);
            let began = Instant::now();
            let mut result = Err("no attempt".to_string());
            for _ in 0..MAX_ATTEMPTS {
                match self.attempt(&key, read, &value).await {
                    Attempt::Done => {
                        result = Ok(());
                        break;
                    }
                    Attempt::Redirect(to) => {
                        self.tally.borrow_mut().redirects += 1;
                        self.target = to;
                    }
                    Attempt::Retry => {
                        self.tally.borrow_mut().retries += 1;
                        actix_rt::time::sleep(Duration::from_millis(50)).await;
                    }
                    Attempt::Failed(why) => {
                        result = Err(why);
                        break;
                    }
                }
            }
            let mut tally = self.tally.borrow_mut();
            match (result, read) {
                (Ok(()), false) => tally.writes.record_duration(began.elapsed()),
                (Ok(()), true) => tally.reads.record_duration(began.elapsed()),
                (Err(why), read) => {
                    tracing::debug!(%key, read, %why, "load: operation failed");
                    if read {
                        tally.read_errors += 1;
                    } else {
                        tally.write_errors += 1;
                    }
                }
            }
        }
    }

    async fn attempt(&self, key: &str, read: bool, value: &str) -> Attempt {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let sent = match (self.options.api, read) {
            (Api::Consensus, false) => {
                self.http
                    .put(format!("{}/kv/{key}", self.target))
                    .send_body(value.to_string())
                    .await
            }
            (Api::Consensus, true) => {
                self.http
                    .get(format!("{}/kv/{key}", self.target))
                    .send()
                    .await
            }
            (Api::Etcd, false) => {
                self.http
                    .post(format!("{}/v3/kv/put", self.target))
                    .send_json(&serde_json::json!({ "key": b64(key), "value": b64(value) }))
                    .await
            }
            (Api::Etcd, true) => {
                self.http
                    .post(format!("{}/v3/kv/range", self.target))
                    .send_json(&serde_json::json!({ "key": b64(key) }))
                    .await
            }
        };
        let mut response = match sent {
            Ok(r) => r,
            Err(awc::error::SendRequestError::Connect(e)) => {
                tracing::debug!(target = %self.target, error = %e, "load: cannot connect");
                return Attempt::Retry;
            }
            Err(e) => return Attempt::Failed(e.to_string()),
        };
        let status = response.status().as_u16();
        // Read the body so that the connection can be reused.
        let body = response.body().limit(1 << 20).await;
        match status {
            200 | 204 => match body {
                Ok(_) => Attempt::Done,
                Err(e) => Attempt::Failed(format!("reading the answer: {e}")),
            },
            404 if read && self.options.api == Api::Consensus => Attempt::Done,
            307 | 308 => match response
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .and_then(base_of)
            {
                Some(to) => Attempt::Redirect(to),
                None => Attempt::Failed("a redirect without a usable Location".into()),
            },
            503 => Attempt::Retry,
            other => Attempt::Failed(format!("HTTP {other}")),
        }
    }
}

/// `http://host:port` of a URL (`http://host:port/kv/k1` → `http://host:port`).
fn base_of(url: &str) -> Option<String> {
    let scheme_end = url.find("://")? + 3;
    let rest = &url[scheme_end..];
    let host_end = rest.find('/').unwrap_or(rest.len());
    if host_end == 0 {
        return None;
    }
    Some(url[..scheme_end + host_end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_of_keeps_scheme_host_and_port() {
        assert_eq!(
            base_of("http://127.0.0.1:8001/kv/k1").as_deref(),
            Some("http://127.0.0.1:8001")
        );
        assert_eq!(base_of("http://h:1").as_deref(), Some("http://h:1"));
        assert_eq!(base_of("/kv/k1"), None);
        assert_eq!(base_of("http:///kv"), None);
    }

    #[test]
    fn options_are_checked() {
        let ok = LoadOptions {
            targets: vec!["http://127.0.0.1:1".into()],
            ..LoadOptions::default()
        };
        assert!(ok.validate().is_ok());
        assert!(LoadOptions::default().validate().is_err());
        let bad = LoadOptions {
            read_fraction: 1.5,
            ..ok.clone()
        };
        assert!(bad.validate().is_err());
        let bad = LoadOptions {
            targets: vec!["127.0.0.1:1".into()],
            ..ok
        };
        assert!(bad.validate().is_err());
        assert_eq!("etcd".parse::<Api>().ok(), Some(Api::Etcd));
        assert!("redis".parse::<Api>().is_err());
    }
}
