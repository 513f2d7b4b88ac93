//! The soak generator behind `cargo xtask soak` (test_support::loadgen::soak), run small
//! against an in-process proxy with a 2-second `workers-idle-timeout`: miners keep leaving
//! and coming back under new worker names with shares and job changes; every share is
//! answered, and the proxy's worker records stay far below the names it has seen and all go
//! once the miners have left.

mod common;

use std::time::{Duration, Instant};

use proxy_core::Proxy;
use test_support::loadgen::soak::{soak_on, SoakOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churning_miners_get_every_share_answered_and_their_worker_records_expire() {
    let pool = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut config = common::local_config(&[pool.local_addr().unwrap()]);
    config.workers_idle_timeout = 2;
    let proxy = Proxy::start(config).await.unwrap();
    let secs = Duration::from_secs;
    let opts = SoakOptions {
        proxy: proxy.local_addrs()[0],
        miners: 30,
        miners_per_ip: 15,
        min_lifetime: secs(1),
        max_lifetime: secs(2),
        share_interval: Duration::from_millis(500),
        job_interval: secs(1),
        warmup: secs(3),
        soak: secs(4),
        settle: Duration::from_millis(200),
        ..SoakOptions::default()
    };
    let report = soak_on(opts, pool).await.unwrap();
    assert!(report.is_clean(), "{}", report.table());
    assert_eq!((report.warmup.miners, report.end.miners), (30, 30));
    assert!(
        report.logins > 60,
        "miners came and went: {}",
        report.table()
    );
    assert!(report.departures > 30, "{}", report.table());
    assert!(report.jobs >= 3, "{}", report.table());
    assert!(report.shares_sent > 0, "{}", report.table());
    assert_eq!(report.shares_ok, report.shares_sent, "{}", report.table());
    assert_eq!(report.shares_unanswered, 0);

    // Every login had a new worker name; most have expired already.
    let monitor = proxy.monitor();
    let records = monitor.worker_count() as u64;
    assert!(
        records < report.logins / 2,
        "{records} records after {} names",
        report.logins
    );
    // All miners have left: every record expires.
    let until = Instant::now() + secs(20);
    while monitor.worker_count() > 0 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(monitor.worker_count(), 0);
    proxy.shutdown(secs(1)).await;
}
