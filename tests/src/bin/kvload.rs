//! `kvload`: one load generator for two key-value services, so that they
//! are measured the same way: `consensus node`'s HTTP API (`PUT` and `GET
//! /kv/{key}`) and etcd's v3 JSON gateway (`POST /v3/kv/put`, `POST
//! /v3/kv/range`, linearizable by default). `scripts/etcd_compare.sh` runs
//! it against both.
//!
//! ```text
//! kvload --target consensus|etcd --endpoints HOST:PORT,... --op write|read
//!        [--clients 64] [--duration-s 10] [--value-bytes 256] [--keys 10000]
//! ```
//!
//! Each client is a thread with one keep-alive HTTP/1.1 connection, one
//! request at a time (closed loop). Client `i` starts on endpoint
//! `i mod n`; a 307 (consensus) moves it to the leader. Reads go to keys
//! the run wrote before (`--op read` first writes `--keys` keys, not
//! timed). The last line of stdout is one JSON object: `target`, `op`,
//! `clients`, `value_bytes`, `ops`, `errors`, `secs`, `ops_per_sec`,
//! `latency_us` {`p50`, `p99`, `max`}.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    Consensus,
    Etcd,
}

struct Args {
    target: Target,
    endpoints: Vec<String>,
    write: bool,
    clients: usize,
    duration: Duration,
    value_bytes: usize,
    keys: u64,
}

fn usage(msg: &str) -> ! {
    eprintln!("kvload: {msg} (usage: kvload --target consensus|etcd --endpoints HOST:PORT,... --op write|read [--clients N] [--duration-s S] [--value-bytes B] [--keys K])");
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        target: Target::Consensus,
        endpoints: Vec::new(),
        write: true,
        clients: 64,
        duration: Duration::from_secs(10),
        value_bytes: 256,
        keys: 10_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        let num = |v: &str| -> u64 {
            v.parse()
                .ok()
                .filter(|n| *n > 0)
                .unwrap_or_else(|| usage(&format!("{flag} {v}: a positive whole number")))
        };
        match flag.as_str() {
            "--target" => {
                a.target = match value.as_str() {
                    "consensus" => Target::Consensus,
                    "etcd" => Target::Etcd,
                    other => usage(&format!("--target {other}: consensus or etcd")),
                }
            }
            "--endpoints" => a.endpoints = value.split(',').map(str::to_string).collect(),
            "--op" => {
                a.write = match value.as_str() {
                    "write" => true,
                    "read" => false,
                    other => usage(&format!("--op {other}: write or read")),
                }
            }
            "--clients" => a.clients = num(&value) as usize,
            "--duration-s" => a.duration = Duration::from_secs(num(&value)),
            "--value-bytes" => a.value_bytes = num(&value) as usize,
            "--keys" => a.keys = num(&value),
            other => usage(&format!("unknown flag {other}")),
        }
    }
    if a.endpoints.is_empty() || a.endpoints.iter().any(String::is_empty) {
        usage("--endpoints is required");
    }
    a
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One keep-alive connection to one endpoint.
struct Conn {
    host: String,
    reader: BufReader<TcpStream>,
}

struct Answer {
    status: u16,
    location: Option<String>,
}

impl Conn {
    fn open(host: &str) -> std::io::Result<Self> {
        let s = TcpStream::connect(host)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Self {
            host: host.to_string(),
            reader: BufReader::new(s),
        })
    }

    fn request(&mut self, method: &str, path: &str, body: &[u8]) -> std::io::Result<Answer> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nContent-Type: application/json\r\n\r\n",
            self.host,
            body.len()
        );
        let s = self.reader.get_mut();
        let mut req = head.into_bytes();
        req.extend_from_slice(body);
        s.write_all(&req)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let (mut length, mut chunked, mut location) = (0usize, false, None);
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                match k.as_str() {
                    "content-length" => length = v.parse().unwrap_or(0),
                    "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                    "location" => location = Some(v.to_string()),
                    _ => {}
                }
            }
        }
        if chunked {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim(), 16)
                    .map_err(|_| std::io::Error::other("bad chunk size"))?;
                let mut skip = vec![0; size + 2];
                self.reader.read_exact(&mut skip)?;
                if size == 0 {
                    break;
                }
            }
        } else {
            let mut skip = vec![0; length];
            self.reader.read_exact(&mut skip)?;
        }
        Ok(Answer { status, location })
    }
}

/// A client's request for `key`: (method, path, body).
fn request_for(
    target: Target,
    write: bool,
    key: &str,
    value: &str,
) -> (&'static str, String, Vec<u8>) {
    match (target, write) {
        (Target::Consensus, true) => ("PUT", format!("/kv/{key}"), value.as_bytes().to_vec()),
        (Target::Consensus, false) => ("GET", format!("/kv/{key}"), Vec::new()),
        (Target::Etcd, true) => (
            "POST",
            "/v3/kv/put".into(),
            format!(
                r#"{{"key":"{}","value":"{}"}}"#,
                base64(key.as_bytes()),
                base64(value.as_bytes())
            )
            .into_bytes(),
        ),
        (Target::Etcd, false) => (
            "POST",
            "/v3/kv/range".into(),
            format!(r#"{{"key":"{}"}}"#, base64(key.as_bytes())).into_bytes(),
        ),
    }
}

/// Sends one operation, following redirects and reconnecting; `Ok(true)`
/// when it succeeded.
fn one(
    conn: &mut Option<Conn>,
    endpoints: &[String],
    start: usize,
    a: &Args,
    write: bool,
    key: &str,
    value: &str,
) -> bool {
    let (method, path, body) = request_for(a.target, write, key, value);
    let mut host = conn.as_ref().map_or_else(
        || endpoints[start % endpoints.len()].clone(),
        |c| c.host.clone(),
    );
    for attempt in 0..5 {
        if conn.as_ref().is_none_or(|c| c.host != host) {
            *conn = Conn::open(&host).ok();
        }
        let Some(c) = conn.as_mut() else {
            host = endpoints[(start + attempt + 1) % endpoints.len()].clone();
            continue;
        };
        match c.request(method, &path, &body) {
            Ok(r) if r.status == 200 || (r.status == 404 && !write) => return true,
            Ok(r) if r.status == 307 => {
                if let Some(l) = r.location {
                    host = l
                        .trim_start_matches("http://")
                        .split('/')
                        .next()
                        .unwrap_or("")
                        .to_string();
                }
            }
            Ok(_) | Err(_) => {
                *conn = None;
                host = endpoints[(start + attempt + 1) % endpoints.len()].clone();
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    false
}

fn main() {
    let a = Arc::new(parse_args());
    let value: String = "v".repeat(a.value_bytes);
    if !a.write {
        // Fill the keys the reads will ask for (not timed).
        let fill: Vec<_> = (0..a.clients.min(32))
            .map(|c| {
                let (a, value) = (Arc::clone(&a), value.clone());
                std::thread::spawn(move || {
                    let mut conn = None;
                    let mut k = c as u64;
                    while k < a.keys {
                        one(
                            &mut conn,
                            &a.endpoints,
                            c,
                            &a,
                            true,
                            &format!("key{k}"),
                            &value,
                        );
                        k += a.clients.min(32) as u64;
                    }
                })
            })
            .collect();
        for f in fill {
            let _ = f.join();
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let began = Instant::now();
    let workers: Vec<_> = (0..a.clients)
        .map(|c| {
            let (a, stop, errors, value) = (
                Arc::clone(&a),
                Arc::clone(&stop),
                Arc::clone(&errors),
                value.clone(),
            );
            std::thread::spawn(move || {
                let mut lat = Vec::with_capacity(1 << 16);
                let mut conn = None;
                let mut n: u64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    let k = if a.write {
                        c as u64 * 1_000_000_000 + n
                    } else {
                        (c as u64 * 7919 + n * 104_729) % a.keys
                    };
                    n += 1;
                    let t = Instant::now();
                    if one(
                        &mut conn,
                        &a.endpoints,
                        c,
                        &a,
                        a.write,
                        &format!("key{k}"),
                        &value,
                    ) {
                        lat.push(t.elapsed().as_micros() as u64);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
                lat
            })
        })
        .collect();
    std::thread::sleep(a.duration);
    stop.store(true, Ordering::Relaxed);
    let mut lat: Vec<u64> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap_or_default())
        .collect();
    let secs = began.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| -> u64 {
        if lat.is_empty() {
            0
        } else {
            lat[((lat.len() - 1) as f64 * p).round() as usize]
        }
    };
    println!(
        "{{\"target\":\"{}\",\"op\":\"{}\",\"clients\":{},\"value_bytes\":{},\"ops\":{},\"errors\":{},\"secs\":{:.2},\"ops_per_sec\":{:.0},\"latency_us\":{{\"p50\":{},\"p99\":{},\"max\":{}}}}}",
        match a.target {
            Target::Consensus => "consensus",
            Target::Etcd => "etcd",
        },
        if a.write { "write" } else { "read" },
        a.clients,
        a.value_bytes,
        lat.len(),
        errors.load(Ordering::Relaxed),
        secs,
        lat.len() as f64 / secs,
        pct(0.5),
        pct(0.99),
        lat.last().copied().unwrap_or(0)
    );
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"key12"), "a2V5MTI=");
    }
}
