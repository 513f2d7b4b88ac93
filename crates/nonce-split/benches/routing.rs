//! Micro-benchmarks of the slot table's work per share and per miner.
//!
//! - `submit_checks/*`: what the splitter asks of the table for every share, under the
//!   mapper's lock: classify the job id ([`NonceStorage::job_match`]) and check the nonce's
//!   fixed byte of the already parsed nonce against the submitting miner's slot
//!   ([`nonce_fixed_byte`], [`NonceStorage::active_miner`]), on a full table (256 miners). This is the table's share
//!   of the proxy's submit routing; the rest (locks, the pending map, the upstream queue) is
//!   in `proxy-core`'s `submit` bench, end to end.
//! - `slots/*`: a login and a close on a nearly full table, and a new job freeing dead slots.
//! - `sv1/*`: the Stratum V1 counterparts: a share's extranonce2 mapped to the upstream's
//!   ([`ExtranonceLayout::upstream_extranonce2`]) and counted by the miner's [`Vardiff`];
//!   a subscribe and a close with 10,000 miners on one [`ExtranonceSplit`].
//!
//! Run with `cargo bench -p nonce-split`; `cargo test --benches` runs each once as a test.

use std::hint::black_box;

use criterion::{criterion_main, Criterion};
use nonce_split::{
    nonce_fixed_byte, ExtranonceLayout, ExtranonceSplit, JobMatch, NonceStorage, Vardiff,
    VardiffConfig,
};

/// A table with miners 1..=256 in slots 0..=255, current job `job-2`, previous `job-1`.
fn full() -> NonceStorage {
    let mut s = NonceStorage::new();
    s.set_job("job-1", true);
    for miner in 1..=256 {
        s.add(miner).expect("a free slot");
    }
    s.set_job("job-2", true);
    s
}

/// The checks of one share: job id, then the nonce's fixed byte belongs to `miner`.
fn route(s: &NonceStorage, job_id: &str, nonce: [u8; 4], miner: u64) -> Option<JobMatch> {
    let m = s.job_match(job_id);
    if m == JobMatch::Unknown {
        return None;
    }
    let fixed = nonce_fixed_byte(nonce);
    (s.active_miner(fixed) == Some(miner)).then_some(m)
}

fn submit_checks(c: &mut Criterion) {
    let s = full();
    let mut g = c.benchmark_group("submit_checks");
    // Miner 186 holds slot 185 = 0xb9.
    g.bench_function("current", |b| {
        b.iter(|| {
            route(
                &s,
                black_box("job-2"),
                black_box([0x3a, 0x1c, 0x00, 0xb9]),
                black_box(186),
            )
        })
    });
    g.bench_function("previous", |b| {
        b.iter(|| {
            route(
                &s,
                black_box("job-1"),
                black_box([0x3a, 0x1c, 0x00, 0xb9]),
                black_box(186),
            )
        })
    });
    g.bench_function("unknown_job", |b| {
        b.iter(|| {
            route(
                &s,
                black_box("job-0"),
                black_box([0x3a, 0x1c, 0x00, 0xb9]),
                black_box(186),
            )
        })
    });
    g.bench_function("wrong_slot", |b| {
        b.iter(|| {
            route(
                &s,
                black_box("job-2"),
                black_box([0x3a, 0x1c, 0x00, 0xba]),
                black_box(186),
            )
        })
    });
    g.finish();
}

fn slots(c: &mut Criterion) {
    let mut g = c.benchmark_group("slots");
    g.bench_function("add_remove_255_active", |b| {
        let mut s = full();
        s.remove(256, 255);
        s.set_job("job-3", true);
        let mut next = 1000u64;
        b.iter(|| {
            let slot = s.add(black_box(next)).expect("one free slot");
            s.remove(next, slot);
            s.set_job("job-3", true);
            next += 1;
        })
    });
    g.bench_function("set_job_full", |b| {
        let mut s = full();
        b.iter(|| s.set_job(black_box("job-9"), true))
    });
    g.finish();
}

fn sv1(c: &mut Criterion) {
    let mut g = c.benchmark_group("sv1");
    let layout = ExtranonceLayout::new(&[0x08, 0, 0, 0x02], 8, 4).expect("a valid layout");
    g.bench_function("share_extranonce2_and_vardiff", |b| {
        let mut vardiff = Vardiff::new(VardiffConfig::default(), 65_536.0, 0).expect("valid");
        let mut now = 0u64;
        b.iter(|| {
            now += 10_000;
            let up = layout.upstream_extranonce2(black_box(0x1234), black_box(&[1, 2, 3, 4, 5, 6]));
            (up, vardiff.handle_share(now, vardiff.difficulty()))
        })
    });
    g.bench_function("add_remove_10000_active", |b| {
        let mut split = ExtranonceSplit::with_layout(layout.clone());
        for miner in 1..=10_000 {
            split.add(miner).expect("a free slot");
        }
        let mut next = 100_000u64;
        b.iter(|| {
            let slot = split.add(black_box(next)).expect("a free slot");
            split.remove(next, slot);
            split.on_new_job();
            next += 1;
        })
    });
    g.finish();
}

/// Every benchmark of this file (what `criterion_group!` would write, documented).
fn benches() {
    let mut c = Criterion::default().configure_from_args();
    submit_checks(&mut c);
    slots(&mut c);
    sv1(&mut c);
}

criterion_main!(benches);
