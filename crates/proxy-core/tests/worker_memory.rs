//! A worker record's memory stays bounded however long the proxy runs: 48 simulated hours of
//! one share a second, with the heap measured by dhat's allocator.
//!
//! dhat counts every allocation of the process, so this test runs without libtest
//! (`harness = false` in Cargo.toml): alone, on the main thread, where no test-runner thread
//! can allocate while the heap is measured.

use std::net::IpAddr;

use proxy_core::stats::HASHRATE_WINDOWS;
use proxy_core::workers::WorkerRecord;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn main() {
    a_worker_record_stays_under_4_kib_through_48_simulated_hours();
    println!("worker_memory: 1 passed, 0 failed");
}

fn a_worker_record_stays_under_4_kib_through_48_simulated_hours() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let heap = || dhat::HeapStats::get().curr_bytes;
    let ip = IpAddr::from([10, 0, 0, 1]);

    let base = heap();
    let mut record = Box::new(WorkerRecord::new("rig-alpha-0123456789", ip));
    // The box holds the record itself; its only heap block is its name.
    let size = heap() - base;
    assert_eq!(size, record.footprint());
    assert!(size < 4096, "a fresh record takes {size} bytes");

    record.connect(ip);
    const HOURS: u64 = 48;
    for now in 0..HOURS * 3600 {
        record.on_accept(1000, now);
        if now % 7 == 0 {
            record.on_reject();
        }
        if now % 3600 == 3599 {
            assert_eq!(heap() - base, size, "grew by hour {}", now / 3600 + 1);
            // One share of 1000 a second is 1000 H/s in every full window.
            assert_eq!(record.hashrate(60, now), Some(1000.0));
            for w in HASHRATE_WINDOWS {
                let h = record.hashrate(w, now).unwrap();
                let elapsed = (now + 1).min(w) as f64;
                // The window is its last 60 buckets, the newest one partly elapsed.
                let low = 1000.0 * (elapsed - (w / 60) as f64) / w as f64;
                assert!(
                    h <= 1000.0 * elapsed / w as f64 && h >= low,
                    "window {w} s at {now} s: {h} H/s"
                );
            }
        }
    }
    assert_eq!(record.accepted(), HOURS * 3600);
    assert_eq!(record.hashes(), HOURS * 3600 * 1000);
    assert_eq!(heap() - base, size);
    assert_eq!(record.footprint(), size);
    println!("worker record: {size} bytes, after {HOURS} simulated hours");
}
