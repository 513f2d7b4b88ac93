//! The duplicate-share memory of one upstream channel stays bounded in `extra_nonce` mode as
//! in NiceHash mode, whatever its miners send: a million distinct shares, forwarded and
//! answered locally, on the current and the previous job, with the heap measured by dhat's
//! allocator.
//!
//! dhat counts every allocation of the process, so this test runs without libtest
//! (`harness = false` in Cargo.toml): alone, on the main thread.

use std::sync::Arc;

use stratum_proto::{difficulty_to_target, Job};
use stratum_session::{Channel, ChannelJob, Checked, ShareIn};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// The bound README and ARCHITECTURE give per upstream (current and previous job). Measured
/// with this test: 93 KB in NiceHash mode (4-byte nonces), 160 KB in extra_nonce mode (8-byte
/// (extra nonce, nonce) pairs).
const BOUND: usize = 200 * 1000;

struct TestJob(Job);

impl ChannelJob for TestJob {
    fn job(&self) -> &Job {
        &self.0
    }
    fn difficulty(&self) -> u64 {
        1000
    }
}

fn job(id: &str) -> Arc<TestJob> {
    Arc::new(TestJob(Job {
        blob: "07".repeat(76),
        job_id: id.into(),
        target: difficulty_to_target(1000),
        algo: None,
        height: None,
        seed_hash: None,
    }))
}

fn heap() -> usize {
    dhat::HeapStats::get().curr_bytes
}

/// The channel's heap growth after `shares` distinct shares on each of two jobs, half
/// forwarded, half local, from 200 miners.
fn grown(extra_nonce: bool, shares: u32) -> usize {
    let mut ch: Channel<u32, TestJob, ()> = Channel::new(true);
    let slots: Vec<u8> = (0..200u32)
        .map(|i| ch.add(u64::from(i), i).unwrap().unwrap())
        .collect();
    ch.on_job(job("a"), 1);
    let base = heap();
    for id in ["a", "b"] {
        if id == "b" {
            ch.on_job(job("b"), 1);
        }
        for n in 0..shares {
            let slot = slots[(n % 200) as usize];
            let mut nonce = n.to_le_bytes();
            if !extra_nonce {
                nonce[3] = slot;
            }
            let share = ShareIn {
                job_id: id,
                nonce,
                share_diff: if n % 2 == 0 { 1000 } else { 10 },
                algo: None,
                custom_diff: 10,
            };
            let checked = if extra_nonce {
                ch.check_extra_nonce_share(slot, &share)
            } else {
                ch.check_share(Some(slot), &share)
            };
            assert!(
                matches!(checked, Ok(Checked::Forward { .. } | Checked::Local { .. })),
                "{checked:?}"
            );
        }
    }
    let grown = heap().saturating_sub(base);
    drop(ch);
    grown
}

fn main() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let nicehash = grown(false, 1_000_000);
    let extra = grown(true, 1_000_000);
    println!("seen_memory: one channel after 2 × 1e6 shares: nicehash {nicehash} B, extra_nonce {extra} B");
    assert!(nicehash <= BOUND, "nicehash: {nicehash} bytes");
    assert!(extra <= BOUND, "extra_nonce: {extra} bytes");
    println!("seen_memory: 1 passed, 0 failed");
}
