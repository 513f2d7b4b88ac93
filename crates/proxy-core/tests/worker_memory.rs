//! A worker record's memory stays bounded however long the proxy runs: at most 88 bytes plus
//! its name's heap blocks (one, or two for `account.worker`), and its hashrate windows' block
//! from the first share on, through 48 simulated hours of one share a second, with the heap
//! measured by dhat's allocator.
//!
//! dhat counts every allocation of the process, so this test runs without libtest
//! (`harness = false` in Cargo.toml): alone, on the main thread, where no test-runner thread
//! can allocate while the heap is measured.

use std::net::IpAddr;

use proxy_core::{WorkerRecord, WorkerWindows, HASHRATE_WINDOWS};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Bound on a record itself, without its name and windows.
const RECORD_MAX: usize = 88;

/// Heap block of a name part of `len` bytes (an `arcstr::ArcStr`): its length and count,
/// one word each, and the bytes.
fn name_block(len: usize) -> usize {
    2 * std::mem::size_of::<usize>() + len
}

fn main() {
    let _profiler = dhat::Profiler::builder().testing().build();
    a_worker_record_stays_within_its_bound_through_48_simulated_hours();
    ten_thousand_records_take_their_bound_each();
    println!("worker_memory: 2 passed, 0 failed");
}

fn heap() -> usize {
    dhat::HeapStats::get().curr_bytes
}

fn a_worker_record_stays_within_its_bound_through_48_simulated_hours() {
    let record_size = std::mem::size_of::<WorkerRecord>();
    assert!(record_size <= RECORD_MAX, "a record is {record_size} bytes");
    let ip = IpAddr::from([10, 0, 0, 1]);

    let base = heap();
    let name = "rig-alpha-0123456789";
    let mut record = Box::new(WorkerRecord::new(name, ip));
    // The box holds the record itself; its only heap block is its name.
    let idle = heap() - base;
    assert_eq!(idle, record_size + name_block(name.len()));
    assert_eq!(idle, record.footprint());
    // `account.worker`: a block for each part (a record made from a login shares the
    // account's with the other records of that account: see the workers' unit tests).
    let dotted = Box::new(WorkerRecord::new("farm.rig-alpha", ip));
    assert_eq!(
        heap() - base - idle,
        record_size + name_block(4) + name_block(9)
    );
    assert_eq!(
        dotted.footprint(),
        record_size + name_block(4) + name_block(9)
    );
    assert_eq!(dotted.name().to_string(), "farm.rig-alpha");
    drop(dotted);

    record.connect(ip);
    // The first share brings the hashrate windows, and nothing else ever comes.
    record.on_accept(1000, 0);
    let size = heap() - base;
    assert_eq!(size, idle + std::mem::size_of::<WorkerWindows>());
    assert_eq!(size, record.footprint());
    const HOURS: u64 = 48;
    for now in 1..HOURS * 3600 {
        record.on_accept(1000, now);
        if now % 7 == 0 {
            record.on_reject();
        }
        if now % 3600 == 3599 {
            assert_eq!(heap() - base, size, "grew by hour {}", now / 3600 + 1);
            // One share of 1000 a second is 1000 H/s in every full window, and as much of it
            // as the run has lasted in the others: a steady rate reads exactly.
            for w in HASHRATE_WINDOWS {
                let h = record.hashrate(w, now).unwrap();
                let want = 1000.0 * (now + 1).min(w) as f64 / w as f64;
                assert!(
                    (h - want).abs() < 1e-9 * want,
                    "window {w} s at {now} s: {h} H/s"
                );
            }
        }
    }
    assert_eq!(record.accepted(), HOURS * 3600);
    assert_eq!(record.hashes(), HOURS * 3600 * 1000);
    assert_eq!(record.last_hash(), Some(HOURS * 3600 - 1));
    assert_eq!(heap() - base, size);
    assert_eq!(record.footprint(), size);
    println!(
        "worker record: {size} bytes ({record_size} + name {}; windows {}), after {HOURS} \
         simulated hours",
        name_block(name.len()),
        std::mem::size_of::<WorkerWindows>()
    );
}

fn ten_thousand_records_take_their_bound_each() {
    const N: usize = 10_000;
    let ip = IpAddr::from([10, 0, 0, 2]);
    let base = heap();
    let mut records = Vec::with_capacity(N);
    for i in 0..N {
        records.push(WorkerRecord::new(&format!("rig-{i:05}"), ip));
    }
    for (i, r) in records.iter_mut().enumerate() {
        r.connect(ip);
        for s in 0..20 {
            r.on_accept(1000, (i as u64 * 13 + s * 3600) % 100_000);
        }
    }
    let per_record = (heap() - base) / N;
    let windows = std::mem::size_of::<WorkerWindows>();
    assert_eq!(
        per_record,
        std::mem::size_of::<WorkerRecord>() + name_block("rig-00000".len()) + windows
    );
    assert!(
        per_record <= RECORD_MAX + name_block(9) + windows,
        "{per_record}"
    );
    println!("10,000 worker records: {per_record} bytes each");
}
