//! Real clusters: `consensus node` processes on 127.0.0.1, on ports the
//! tests pick, driven through the HTTP API.
//!
//! * Three nodes; concurrent clients write 1,000 keys (and read some back
//!   while they write); the leader is killed with SIGKILL in the middle and
//!   restarted on its data dir. Every acknowledged key reads back, the
//!   restarted node catches up, and the clients' history (with the reads,
//!   and writes whose outcome is unknown recorded as such) passes the
//!   linearizability checker.
//! * A partition: the leader is stopped with SIGSTOP; the two others elect
//!   a leader and commit; the old leader, continued, steps down and
//!   catches up.
//! * Membership: a fourth node joins (POST /members, joint consensus),
//!   receives the data, then a node is removed (DELETE /members); writes
//!   and reads keep working.
//!
//! These are real processes on the real clock: every wait polls a
//! condition under a deadline; no fixed sleeps decide an outcome.
#![forbid(unsafe_code)]

use consensus_actors::history::{check_history, HistoryRecorder};
use consensus_actors::kv::{KvCommand, KvOutput};
use consensus_actors::ClientId;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(20);

/// One HTTP answer.
#[derive(Debug)]
struct Resp {
    status: u16,
    location: Option<String>,
    body: String,
}

/// Why an HTTP exchange failed: before the request left (certainly not
/// applied) or after (may have been applied).
#[derive(Debug)]
enum HttpError {
    NotSent(String),
    Lost(String),
}

/// A minimal blocking HTTP/1.1 client, one request per connection.
fn http(addr: &str, method: &str, path: &str, body: &str) -> Result<Resp, HttpError> {
    let sock: SocketAddr = addr
        .parse()
        .map_err(|e| HttpError::NotSent(format!("{addr}: {e}")))?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(1))
        .map_err(|e| HttpError::NotSent(e.to_string()))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| HttpError::NotSent(e.to_string()))?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .map_err(|e| HttpError::Lost(e.to_string()))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| HttpError::Lost(e.to_string()))?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| HttpError::Lost(format!("no HTTP answer: {text:?}")))?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| HttpError::Lost(format!("no status: {head:?}")))?;
    let location = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("location"))
        .map(|(_, v)| v.trim().to_string());
    Ok(Resp {
        status,
        location,
        body: body.to_string(),
    })
}

/// The `HOST:PORT` of a `Location: http://HOST:PORT/...`.
fn host_of(location: &str) -> String {
    location
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

struct NodeProc {
    raft: String,
    http: String,
    dir: PathBuf,
    child: Option<Child>,
}

/// The processes of one cluster; killed when dropped. A failing test
/// prints the tail of every node's log.
struct Cluster {
    tmp: tempfile::TempDir,
    nodes: BTreeMap<u64, NodeProc>,
}

impl Cluster {
    /// `n` nodes, not started.
    fn new(n: u64) -> Self {
        let tmp = tempfile::TempDir::new().expect("temporary directory");
        let mut c = Self {
            tmp,
            nodes: BTreeMap::new(),
        };
        for id in 1..=n {
            c.define(id);
        }
        c
    }

    fn define(&mut self, id: u64) {
        let ports = free_ports(2);
        let dir = self.tmp.path().join(format!("n{id}"));
        self.nodes.insert(
            id,
            NodeProc {
                raft: format!("127.0.0.1:{}", ports[0]),
                http: format!("127.0.0.1:{}", ports[1]),
                dir,
                child: None,
            },
        );
    }

    fn peers(&self) -> String {
        self.nodes
            .iter()
            .map(|(id, n)| format!("{id}={}/{}", n.raft, n.http))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn start(&mut self, id: u64, join: bool) {
        let peers = self.peers();
        self.start_with_peers(id, join, &peers);
    }

    /// Starts `id` with `peers` as its `--peers` (nodes it does not list it
    /// must learn from the others).
    fn start_with_peers(&mut self, id: u64, join: bool, peers: &str) {
        let log = self.tmp.path().join(format!("n{id}.log"));
        let node = self.nodes.get_mut(&id).expect("defined");
        assert!(node.child.is_none(), "n{id} runs already");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_consensus_node"));
        cmd.args(["--id", &id.to_string()])
            .args(["--listen", &node.raft])
            .args(["--http", &node.http])
            .args(["--peers", peers])
            .arg("--data-dir")
            .arg(&node.dir)
            .args(["--request-timeout-ms", "3000"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log);
        if join {
            cmd.arg("--join");
        }
        node.child = Some(cmd.spawn().expect("spawn consensus_node"));
    }

    fn start_all(&mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.start(id, false);
        }
    }

    fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.nodes.get_mut(&id).and_then(|n| n.child.take()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn signal(&self, id: u64, sig: &str) {
        let pid = self.nodes[&id].child.as_ref().expect("running").id();
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("kill(1)")
            .success();
        assert!(ok, "kill {sig} {pid}");
    }

    fn http(&self, id: u64) -> String {
        self.nodes[&id].http.clone()
    }

    fn all_http(&self) -> Vec<String> {
        self.nodes.values().map(|n| n.http.clone()).collect()
    }

    fn status(&self, id: u64) -> Option<serde_json::Value> {
        let r = http(&self.nodes[&id].http, "GET", "/status", "").ok()?;
        (r.status == 200).then(|| serde_json::from_str(&r.body).ok())?
    }

    /// Polls until one of `among` leads and every other of them knows it.
    fn leader_among(&self, among: &[u64]) -> u64 {
        let began = Instant::now();
        loop {
            let st: Vec<Option<serde_json::Value>> =
                among.iter().map(|id| self.status(*id)).collect();
            let leaders: Vec<u64> = st
                .iter()
                .flatten()
                .filter(|s| s["role"] == "leader")
                .filter_map(|s| s["id"].as_u64())
                .collect();
            if let [l] = leaders[..] {
                if st
                    .iter()
                    .all(|s| s.as_ref().is_some_and(|s| s["leader"].as_u64() == Some(l)))
                {
                    return l;
                }
            }
            assert!(
                began.elapsed() < DEADLINE,
                "no agreed leader among {among:?}: {st:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_until(&self, what: &str, cond: impl Fn() -> bool) {
        let began = Instant::now();
        while !cond() {
            assert!(began.elapsed() < DEADLINE, "timed out: {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            // A stopped process must be continued to die of SIGKILL... it
            // need not: SIGKILL ends a stopped process too.
            self.kill(id);
        }
        if std::thread::panicking() {
            for id in self.nodes.keys() {
                let log = self.tmp.path().join(format!("n{id}.log"));
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                eprintln!("--- n{id} log (last lines) ---");
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

/// What one request ended as, for the history.
enum Ended {
    Ok(Resp),
    /// Certainly not applied (the last error).
    Fail(String),
    /// May have been applied (the last error).
    Unknown(String),
}

/// Sends a request to the cluster as a client does: follows redirects,
/// moves to another node on 503 or a refused connection, gives up after
/// the deadline. `maybe_applied` tracks whether an attempt may have taken
/// effect (then giving up is an unknown outcome, not a failure).
fn request(nodes: &[String], start: usize, method: &str, path: &str, body: &str) -> Ended {
    let began = Instant::now();
    let mut i = start;
    let mut target = nodes[i % nodes.len()].clone();
    let mut maybe_applied = false;
    let mut last = String::new();
    while began.elapsed() < DEADLINE {
        match http(&target, method, path, body) {
            Ok(r) if r.status == 307 => {
                target = host_of(r.location.as_deref().expect("307 has a Location"));
                continue;
            }
            Ok(r) if matches!(r.status, 200 | 404 | 409) => return Ended::Ok(r),
            Ok(r) if r.status == 503 => last = r.body,
            Ok(r) if matches!(r.status, 500 | 504) => {
                maybe_applied = true;
                last = r.body;
            }
            Ok(r) => panic!(
                "unexpected answer {} {:?} to {method} {path}",
                r.status, r.body
            ),
            Err(HttpError::NotSent(e)) => last = e,
            Err(HttpError::Lost(e)) => {
                maybe_applied = true;
                last = e;
            }
        }
        // Shown when the test fails.
        eprintln!("{method} {path} at {target}: {last}");
        i += 1;
        target = nodes[i % nodes.len()].clone();
        std::thread::sleep(Duration::from_millis(20));
    }
    if maybe_applied {
        Ended::Unknown(last)
    } else {
        Ended::Fail(last)
    }
}

struct Clients {
    rec: Mutex<HistoryRecorder>,
    origin: Instant,
    acked: Mutex<BTreeMap<String, String>>,
    acked_count: AtomicUsize,
    unknown: AtomicUsize,
}

impl Clients {
    fn now(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }

    fn put(&self, nodes: &[String], client: u64, key: &str, value: &str) {
        let op = {
            let mut rec = self.rec.lock().expect("recorder");
            rec.invoke(ClientId(client), KvCommand::put(key, value), self.now())
        };
        let ended = request(nodes, client as usize, "PUT", &format!("/kv/{key}"), value);
        let mut rec = self.rec.lock().expect("recorder");
        match ended {
            Ended::Ok(r) => {
                assert_eq!(r.status, 200, "{r:?}");
                rec.ok(op, KvOutput::Ok, self.now()).expect("record");
                self.acked
                    .lock()
                    .expect("acked")
                    .insert(key.to_string(), value.to_string());
                self.acked_count.fetch_add(1, Ordering::SeqCst);
            }
            Ended::Fail(_) => rec.fail(op, self.now()).expect("record"),
            Ended::Unknown(_) => {
                self.unknown.fetch_add(1, Ordering::SeqCst);
                rec.unknown(op, self.now()).expect("record");
            }
        }
    }

    fn get(&self, nodes: &[String], client: u64, key: &str) -> Option<Option<String>> {
        let op = {
            let mut rec = self.rec.lock().expect("recorder");
            rec.invoke(ClientId(client), KvCommand::get(key), self.now())
        };
        let ended = request(nodes, client as usize, "GET", &format!("/kv/{key}"), "");
        let mut rec = self.rec.lock().expect("recorder");
        match ended {
            Ended::Ok(r) => {
                let value = (r.status == 200).then_some(r.body);
                rec.ok(op, KvOutput::Value(value.clone()), self.now())
                    .expect("record");
                Some(value)
            }
            // A read changes nothing: a read that gave up is a failure.
            Ended::Fail(_) | Ended::Unknown(_) => {
                rec.fail(op, self.now()).expect("record");
                None
            }
        }
    }
}

#[test]
fn a_leader_killed_mid_way_loses_no_acknowledged_write_and_the_history_is_linearizable() {
    const KEYS: usize = 1000;
    const CLIENTS: u64 = 8;
    let mut cluster = Cluster::new(3);
    cluster.start_all();
    cluster.leader_among(&[1, 2, 3]);
    let nodes = cluster.all_http();
    let clients = Arc::new(Clients {
        rec: Mutex::new(HistoryRecorder::new()),
        origin: Instant::now(),
        acked: Mutex::new(BTreeMap::new()),
        acked_count: AtomicUsize::new(0),
        unknown: AtomicUsize::new(0),
    });
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (1..=CLIENTS)
        .map(|client| {
            let (clients, next, nodes) = (Arc::clone(&clients), Arc::clone(&next), nodes.clone());
            std::thread::spawn(move || loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                if k >= KEYS {
                    break;
                }
                clients.put(&nodes, client, &format!("k{k}"), &format!("v{k}-c{client}"));
                // Now and then, read a key written earlier (by anyone).
                if k % 10 == 0 && k > 0 {
                    clients.get(&nodes, client, &format!("k{}", k / 2));
                }
            })
        })
        .collect();

    // Kill the leader when about a third of the keys are acknowledged.
    cluster.wait_until("a third of the writes acknowledged", || {
        clients.acked_count.load(Ordering::SeqCst) >= KEYS / 3
    });
    let old = cluster.leader_among(&[1, 2, 3]);
    cluster.kill(old);
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|n| *n != old).collect();
    let new = cluster.leader_among(&rest);
    assert_ne!(new, old);
    let acked_at_kill = clients.acked_count.load(Ordering::SeqCst);
    cluster.wait_until("writes acknowledged by the new leader", || {
        clients.acked_count.load(Ordering::SeqCst) >= acked_at_kill + 50
    });
    cluster.start(old, false);
    for w in workers {
        w.join().expect("a client panicked");
    }

    // Every acknowledged key reads back (these reads join the history).
    let acked = clients.acked.lock().expect("acked").clone();
    assert!(
        acked.len() >= KEYS * 9 / 10,
        "only {} of {KEYS} acknowledged",
        acked.len()
    );
    for (key, value) in &acked {
        let got = clients.get(&nodes, 99, key);
        assert_eq!(got, Some(Some(value.clone())), "{key}");
    }
    // The restarted node rejoined with its state and caught up.
    let leader = cluster.leader_among(&[1, 2, 3]);
    let commit = cluster.status(leader).expect("leader status")["commit_index"]
        .as_u64()
        .expect("commit index");
    cluster.wait_until("the restarted node catches up", || {
        cluster.status(old).is_some_and(|s| {
            s["last_applied"].as_u64().is_some_and(|a| a >= commit) && s["role"] == "follower"
        })
    });
    let metrics = http(&cluster.http(old), "GET", "/metrics", "").expect("metrics");
    assert!(
        metrics.body.contains("consensus_node_restarts_total 1"),
        "{}",
        metrics.body
    );

    let history = clients.rec.lock().expect("recorder").history();
    let report = check_history(&history);
    eprintln!(
        "{} operations, {} writes acknowledged, {} unknown; leader n{old} killed after {acked_at_kill} acks, n{new} took over",
        history.len(),
        acked.len(),
        clients.unknown.load(Ordering::SeqCst),
    );
    assert!(
        report.linearizable,
        "not linearizable: {:?}",
        report.verdict
    );
}

#[test]
fn a_stopped_leader_is_replaced_and_catches_up_when_continued() {
    let mut cluster = Cluster::new(3);
    cluster.start_all();
    let old = cluster.leader_among(&[1, 2, 3]);
    let nodes = cluster.all_http();
    let before = http(&cluster.http(old), "PUT", "/kv/before", "1").expect("put");
    assert_eq!(before.status, 200, "{before:?}");

    // The leader is cut off (SIGSTOP: it neither sends nor answers).
    cluster.signal(old, "-STOP");
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|n| *n != old).collect();
    let new = cluster.leader_among(&rest);
    let old_term = cluster.status(new).expect("status")["term"].as_u64();
    let during = http(&cluster.http(new), "PUT", "/kv/during", "2").expect("put");
    assert_eq!(during.status, 200, "the majority side commits: {during:?}");
    // A follower of the majority redirects to the new leader.
    let follower = rest
        .iter()
        .copied()
        .find(|n| *n != new)
        .expect("a follower");
    let r = http(&cluster.http(follower), "GET", "/kv/during", "").expect("get");
    assert_eq!(r.status, 307, "{r:?}");
    assert_eq!(
        host_of(r.location.as_deref().unwrap_or("")),
        cluster.http(new)
    );

    // Healed: the old leader steps down, learns the new term and the entry.
    cluster.signal(old, "-CONT");
    cluster.wait_until("the old leader follows the new one", || {
        cluster.status(old).is_some_and(|s| {
            s["role"] == "follower"
                && s["leader"].as_u64() == Some(new)
                && s["term"].as_u64() >= old_term
        })
    });
    for key in ["before", "during"] {
        match request(&nodes, old as usize, "GET", &format!("/kv/{key}"), "") {
            Ended::Ok(r) => assert_eq!(r.status, 200, "{key}: {r:?}"),
            Ended::Fail(e) | Ended::Unknown(e) => panic!("{key} did not read back: {e}"),
        }
    }
    let commit = cluster.status(new).expect("status")["commit_index"].as_u64();
    cluster.wait_until("the old leader applies everything", || {
        cluster
            .status(old)
            .is_some_and(|s| s["last_applied"].as_u64() >= commit)
    });
}

#[test]
fn a_fourth_node_joins_and_a_node_is_removed() {
    let mut cluster = Cluster::new(3);
    cluster.start_all();
    let leader = cluster.leader_among(&[1, 2, 3]);
    let nodes = cluster.all_http();
    for k in 0..20 {
        let r = http(&cluster.http(leader), "PUT", &format!("/kv/m{k}"), "x").expect("put");
        assert_eq!(r.status, 200, "{r:?}");
    }

    // One follower is down while node 4 is added: it misses being told
    // where node 4 listens.
    let away = [1, 2, 3]
        .into_iter()
        .find(|n| *n != leader)
        .expect("follower");
    let peers_without_4 = cluster.peers();
    cluster.kill(away);

    // Node 4 starts empty and joins through the leader (asked on any node:
    // a follower redirects).
    cluster.define(4);
    cluster.start(4, true);
    let body = format!(
        r#"{{"id":4,"addr":"{}","http":"{}"}}"#,
        cluster.nodes[&4].raft, cluster.nodes[&4].http
    );
    let follower = [1, 2, 3]
        .into_iter()
        .find(|n| *n != leader && *n != away)
        .expect("follower");
    match request(&[cluster.http(follower)], 0, "POST", "/members", &body) {
        Ended::Ok(r) => assert_eq!(r.status, 200, "{r:?}"),
        Ended::Fail(e) | Ended::Unknown(e) => panic!("adding node 4 failed: {e}"),
    }
    // The follower comes back knowing only 1..3 (its flags and its data
    // dir): it learns node 4's address from the others and catches up.
    cluster.start_with_peers(away, false, &peers_without_4);
    cluster.wait_until("the returning follower learns node 4's address", || {
        cluster
            .status(away)
            .is_some_and(|s| s["peers"]["4"]["raft"] == cluster.nodes[&4].raft.as_str())
    });
    cluster.wait_until("every node sees four voters", || {
        [1, 2, 3, 4].iter().all(|id| {
            cluster
                .status(*id)
                .is_some_and(|s| s["members"] == serde_json::json!([1, 2, 3, 4]))
        })
    });
    // Node 4 has the data written before it joined.
    let leader = cluster.leader_among(&[1, 2, 3, 4]);
    let commit = cluster.status(leader).expect("status")["commit_index"].as_u64();
    cluster.wait_until("node 4 catches up", || {
        cluster
            .status(4)
            .is_some_and(|s| s["last_applied"].as_u64() >= commit)
    });

    // Remove a node other than the leader; the other three go on.
    let gone = [1, 2, 3, 4]
        .into_iter()
        .find(|n| *n != leader)
        .expect("a non-leader");
    let r = match request(&nodes, 0, "DELETE", &format!("/members/{gone}"), "") {
        Ended::Ok(r) => r,
        Ended::Fail(e) | Ended::Unknown(e) => panic!("removing {gone} failed: {e}"),
    };
    assert_eq!(r.status, 200, "{r:?}");
    let remaining: Vec<u64> = [1, 2, 3, 4].into_iter().filter(|n| *n != gone).collect();
    let want = serde_json::json!(remaining);
    cluster.wait_until("the remaining nodes see three voters", || {
        remaining
            .iter()
            .all(|id| cluster.status(*id).is_some_and(|s| s["members"] == want))
    });
    cluster.kill(gone);
    let alive: Vec<String> = remaining.iter().map(|id| cluster.http(*id)).collect();
    match request(&alive, 0, "PUT", "/kv/after", "y") {
        Ended::Ok(r) => assert_eq!(r.status, 200, "{r:?}"),
        Ended::Fail(e) | Ended::Unknown(e) => panic!("no write after the removal: {e}"),
    }
    match request(&alive, 1, "GET", "/kv/m7", "") {
        Ended::Ok(r) => assert_eq!((r.status, r.body.as_str()), (200, "x")),
        Ended::Fail(e) | Ended::Unknown(e) => panic!("no read after the removal: {e}"),
    }
}

#[test]
fn sigterm_stops_a_node_cleanly_and_a_restart_keeps_its_state() {
    let mut cluster = Cluster::new(1);
    cluster.start(1, false);
    cluster.leader_among(&[1]);
    let r = http(&cluster.http(1), "PUT", "/kv/kept", "yes").expect("put");
    assert_eq!(r.status, 200, "{r:?}");
    cluster.signal(1, "-TERM");
    let mut child = cluster
        .nodes
        .get_mut(&1)
        .and_then(|n| n.child.take())
        .expect("running");
    let began = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(began.elapsed() < DEADLINE, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "a clean exit");
    cluster.start(1, false);
    cluster.leader_among(&[1]);
    let r = http(&cluster.http(1), "GET", "/kv/kept", "").expect("get");
    assert_eq!((r.status, r.body.as_str()), (200, "yes"));
}
