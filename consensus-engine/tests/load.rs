//! `consensus load` against small HTTP servers on loopback that speak the
//! two APIs it drives: a `consensus node`-shaped leader and a follower that
//! redirects to it (307), one that has no leader for a while (503), and an
//! etcd v3 JSON gateway. What the servers saw is checked against what the
//! load generator reports. These run on the real clock (real sockets) for
//! a fraction of a second each.
#![forbid(unsafe_code)]

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine as _;
use consensus_engine::load::{run_load, Api, LoadOptions};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// What a fake server saw.
#[derive(Default)]
struct Seen {
    kv: Mutex<BTreeMap<String, String>>,
    writes: AtomicU64,
    reads: AtomicU64,
    /// Answers 503 to this many requests first.
    unavailable: AtomicU64,
}

/// Starts `app` on 127.0.0.1 on a port of its own; returns its base URL.
fn serve<F>(app: F) -> String
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let server = HttpServer::new(move || App::new().configure(app.clone()))
                .workers(1)
                .bind(("127.0.0.1", 0))
                .expect("binds a loopback port");
            let addr = server.addrs()[0];
            tx.send(format!("http://{addr}")).expect("the test waits");
            server.run().await.expect("serves");
        });
    });
    rx.recv_timeout(Duration::from_secs(10)).expect("server up")
}

fn leader(seen: Arc<Seen>) -> String {
    serve(move |cfg| {
        let s = seen.clone();
        let g = seen.clone();
        cfg.route(
            "/kv/{key}",
            web::put().to(move |key: web::Path<String>, body: String| {
                let s = s.clone();
                async move {
                    if s.unavailable
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        return HttpResponse::ServiceUnavailable()
                            .body("{\"error\":\"no leader\"}");
                    }
                    s.writes.fetch_add(1, Ordering::SeqCst);
                    s.kv.lock().unwrap().insert(key.into_inner(), body);
                    HttpResponse::Ok().finish()
                }
            }),
        )
        .route(
            "/kv/{key}",
            web::get().to(move |key: web::Path<String>| {
                let g = g.clone();
                async move {
                    g.reads.fetch_add(1, Ordering::SeqCst);
                    match g.kv.lock().unwrap().get(key.as_str()) {
                        Some(v) => HttpResponse::Ok().body(v.clone()),
                        None => HttpResponse::NotFound().finish(),
                    }
                }
            }),
        );
    })
}

fn follower_of(leader: String) -> String {
    serve(move |cfg| {
        let leader = leader.clone();
        cfg.default_service(web::to(move |req: HttpRequest| {
            let to = format!("{leader}{}", req.path());
            async move {
                HttpResponse::TemporaryRedirect()
                    .insert_header(("Location", to))
                    .finish()
            }
        }));
    })
}

fn options(targets: Vec<String>, api: Api) -> LoadOptions {
    LoadOptions {
        targets,
        api,
        clients: 4,
        duration: Duration::from_millis(300),
        value_size: 32,
        read_fraction: 0.5,
        keys: 50,
        ..LoadOptions::default()
    }
}

#[test]
fn clients_follow_the_redirect_to_the_leader_and_count_what_it_served() {
    let seen = Arc::new(Seen::default());
    let leader_url = leader(seen.clone());
    let follower = follower_of(leader_url);
    let report = run_load(&options(vec![follower], Api::Consensus)).expect("runs");
    assert!(report.writes.ok > 0 && report.reads.ok > 0, "{report:?}");
    assert_eq!(report.writes.errors + report.reads.errors, 0, "{report:?}");
    // Each client is redirected once, then stays with the leader.
    assert_eq!(report.redirects, 4, "{report:?}");
    assert_eq!(report.writes.ok, seen.writes.load(Ordering::SeqCst));
    assert_eq!(report.reads.ok, seen.reads.load(Ordering::SeqCst));
    // 404s on keys not written yet are answers, not errors; every value
    // written has the size asked for.
    for v in seen.kv.lock().unwrap().values() {
        assert_eq!(v.len(), 32);
    }
    assert!(report.writes.latency_us.p50 > 0);
    assert!(report.writes.latency_us.p99 >= report.writes.latency_us.p50);
}

#[test]
fn a_cluster_without_a_leader_is_retried_not_counted_as_errors() {
    let seen = Arc::new(Seen::default());
    seen.unavailable.store(3, Ordering::SeqCst);
    let url = leader(seen.clone());
    let report = run_load(&LoadOptions {
        read_fraction: 0.0,
        clients: 1,
        ..options(vec![url], Api::Consensus)
    })
    .expect("runs");
    assert_eq!(report.retries, 3, "{report:?}");
    assert_eq!(report.writes.errors, 0, "{report:?}");
    assert_eq!(report.writes.ok, seen.writes.load(Ordering::SeqCst));
}

#[test]
fn an_unreachable_member_is_an_error_after_its_retries() {
    // A port nobody listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let report = run_load(&LoadOptions {
        clients: 1,
        duration: Duration::from_millis(100),
        ..options(vec![format!("http://127.0.0.1:{port}")], Api::Consensus)
    })
    .expect("runs");
    assert_eq!(report.writes.ok + report.reads.ok, 0);
    assert!(
        report.writes.errors + report.reads.errors >= 1,
        "{report:?}"
    );
}

#[test]
fn the_etcd_api_sends_base64_json_to_every_member() {
    use base64::engine::general_purpose::STANDARD as B64;
    let seen = Arc::new(Seen::default());
    let member = |seen: Arc<Seen>| {
        serve(move |cfg| {
            let s = seen.clone();
            let r = seen.clone();
            cfg.route(
                "/v3/kv/put",
                web::post().to(move |body: web::Json<serde_json::Value>| {
                    let s = s.clone();
                    async move {
                        let field = |f: &str| {
                            body[f]
                                .as_str()
                                .and_then(|x| B64.decode(x).ok())
                                .and_then(|x| String::from_utf8(x).ok())
                        };
                        match (field("key"), field("value")) {
                            (Some(k), Some(v)) => {
                                s.writes.fetch_add(1, Ordering::SeqCst);
                                s.kv.lock().unwrap().insert(k, v);
                                HttpResponse::Ok().json(serde_json::json!({"header": {}}))
                            }
                            _ => HttpResponse::BadRequest().finish(),
                        }
                    }
                }),
            )
            .route(
                "/v3/kv/range",
                web::post().to(move |body: web::Json<serde_json::Value>| {
                    let r = r.clone();
                    async move {
                        if body["key"]
                            .as_str()
                            .and_then(|k| B64.decode(k).ok())
                            .is_none()
                        {
                            return HttpResponse::BadRequest().finish();
                        }
                        r.reads.fetch_add(1, Ordering::SeqCst);
                        HttpResponse::Ok().json(serde_json::json!({"header": {}, "kvs": []}))
                    }
                }),
            );
        })
    };
    let targets = vec![member(seen.clone()), member(seen.clone())];
    let report = run_load(&options(targets, Api::Etcd)).expect("runs");
    assert!(report.writes.ok > 0 && report.reads.ok > 0, "{report:?}");
    assert_eq!(report.writes.errors + report.reads.errors, 0, "{report:?}");
    assert_eq!(report.redirects, 0);
    assert_eq!(report.writes.ok, seen.writes.load(Ordering::SeqCst));
    assert_eq!(report.reads.ok, seen.reads.load(Ordering::SeqCst));
    assert!(seen.kv.lock().unwrap().keys().all(|k| k.starts_with('k')));
}
