//! The proxy's submit routing and job fan-out, measured end to end in one process: a
//! [`Proxy`] on loopback in NiceHash mode, `test-support`'s mock pool behind it and scripted
//! miners in front (the splitter is private; this is the closest the public API gets).
//!
//! - `proxy/submit_round_trip`: one miner submits a valid share and waits for the answer:
//!   miner → proxy (parse, session and slot checks, pending entry) → pool → proxy (match the
//!   answer) → miner. Four loopback hops, the mock pool's own JSON handling and the scripted
//!   miner's (`serde_json::Value`) are in the figure too, so it is an upper bound on the
//!   proxy's part; compare runs with each other, not with the load generator's round trip.
//! - `proxy/job_fanout_256`: the pool pushes a job and all 256 miners of one upstream read it
//!   (the scripted miners parse every line, so again an upper bound).
//!
//! Run with `cargo bench -p proxy-core`; `cargo test --benches` runs each once as a test.

use std::time::{Duration, Instant};

use criterion::{criterion_main, Criterion, Throughput};
use futures_util::future::join_all;
use proxy_core::{Config, Proxy};
use test_support::miner::{result_for_difficulty, TestMiner, WAIT};
use test_support::mock_pool::{make_job, MockPool};

const DIFF: u64 = 1000;

fn config(pool: std::net::SocketAddr) -> Config {
    Config::from_json(&format!(
        r#"{{"mode": "nicehash", "bind": [{{"host": "127.0.0.1", "port": 0, "tls": false}}],
            "pools": [{{"url": "{pool}", "user": "PROXYWALLET", "pass": "x"}}],
            "retries": 1, "retry-pause": 1}}"#
    ))
    .expect("a valid bench config")
}

fn proxy(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let (pool, proxy, mut miners) = rt.block_on(async {
        let pool = MockPool::start(make_job(1, DIFF)).await.expect("mock pool");
        let proxy = Proxy::start(config(pool.addr())).await.expect("proxy");
        let addr = proxy.local_addrs()[0];
        let mut miners = Vec::new();
        for i in 0..256 {
            let mut m = TestMiner::connect(addr).await.expect("connect");
            m.login(&format!("wallet{i}")).await.expect("login");
            miners.push(m);
        }
        (pool, proxy, miners)
    });
    let result = result_for_difficulty(DIFF);

    let mut g = c.benchmark_group("proxy");
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("submit_round_trip", |b| {
        let m = &mut miners[0];
        let mut low = 0u64;
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    low += 1;
                    let job_id = m.job.as_ref().expect("a job").job_id.clone();
                    let reply = m
                        .submit(&job_id, &m.nonce(low as u32), &result)
                        .await
                        .expect("reply");
                    assert_eq!(reply["result"]["status"], "OK", "{reply}");
                }
                start.elapsed()
            })
        })
    });

    g.throughput(Throughput::Elements(256));
    g.sample_size(20);
    let mut n = 1;
    g.bench_function("job_fanout_256", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    n += 1;
                    let start = Instant::now();
                    pool.push_job(make_job(n, DIFF));
                    for got in join_all(miners.iter_mut().map(|m| m.next_job(WAIT))).await {
                        assert_eq!(got.expect("a job").job_id, format!("job{n:06}"));
                    }
                    total += start.elapsed();
                }
                total
            })
        })
    });
    g.finish();
    rt.block_on(proxy.shutdown(Duration::from_secs(1)));
    drop(pool);
}

/// Every benchmark of this file (what `criterion_group!` would write, documented).
fn benches() {
    let mut c = Criterion::default().configure_from_args();
    proxy(&mut c);
}

criterion_main!(benches);
