//! The session and channel logic as plain call sequences, without sockets or a clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use stratum_proto::{difficulty_to_target, Job};

use crate::*;

/// A pool job at a difficulty, with an algorithm.
struct TestJob(Job, u64);

impl ChannelJob for TestJob {
    fn job(&self) -> &Job {
        &self.0
    }
    fn difficulty(&self) -> u64 {
        self.1
    }
}

fn job(id: &str, difficulty: u64) -> Arc<TestJob> {
    let j = Job {
        blob: "07".repeat(76),
        job_id: id.to_string(),
        target: difficulty_to_target(difficulty),
        algo: Some("rx/0".into()),
        height: None,
        seed_hash: None,
    };
    Arc::new(TestJob(j, difficulty))
}

/// The miner handle is its name; the pending payload the request id.
type Ch = Channel<&'static str, TestJob, u32>;

fn share(job_id: &str, fixed_byte: u8, share_diff: u64) -> ShareIn<'_> {
    ShareIn {
        job_id,
        nonce: [1, 2, 3, fixed_byte],
        share_diff,
        algo: None,
        custom_diff: 0,
    }
}

fn forward_seq(c: Result<Checked, Refusal>) -> u64 {
    match c {
        Ok(Checked::Forward { seq, .. }) => seq,
        other => panic!("not forwarded: {other:?}"),
    }
}

#[test]
fn login_then_first_job_reaches_the_miner_at_its_fixed_byte() {
    let login = check_login("WALLET+500", "x", &LoginRules::default()).unwrap();
    assert_eq!((login.user, login.custom_diff), ("WALLET", 500));
    let mut ch = Ch::new(true);
    let fixed = ch.add(7, "alice").expect("room");
    assert_eq!(fixed, Some(0), "the first slot");
    assert!(ch.job().is_none(), "no job yet: the login reply waits");
    ch.on_job(job("j1", 1000), 1);
    let miners: Vec<_> = ch.miners().collect();
    assert_eq!(miners, vec![(Some(0), &"alice")]);
    assert_eq!(ch.job().unwrap().job().job_id, "j1");
    let d = effective_difficulty(login.custom_diff, ch.job().unwrap().difficulty());
    assert_eq!(d, 500, "the reply's job is at the custom difficulty");
}

#[test]
fn every_share_refusal_of_the_channel() {
    let mut ch = Ch::new(true);
    let fb = ch.add(1, "a").unwrap().unwrap();
    assert_eq!(
        ch.check_share(Some(fb), &share("j1", fb, 5000)),
        Err(Refusal::StaleJob),
        "no job at all"
    );
    ch.on_job(job("j1", 1000), 1);
    assert_eq!(
        ch.check_share(Some(fb), &share("nope", fb, 5000)),
        Err(Refusal::StaleJob)
    );
    assert_eq!(
        ch.check_share(Some(fb), &share("j1", fb.wrapping_add(1), 5000)),
        Err(Refusal::WrongFixedByte)
    );
    let mut wrong_algo = share("j1", fb, 5000);
    wrong_algo.algo = Some("cn/r");
    assert_eq!(
        ch.check_share(Some(fb), &wrong_algo),
        Err(Refusal::WrongAlgorithm)
    );
    assert_eq!(
        ch.check_share(Some(fb), &share("j1", fb, 999)),
        Err(Refusal::LowDifficulty)
    );
    forward_seq(ch.check_share(Some(fb), &share("j1", fb, 1000)));
    assert_eq!(
        ch.check_share(Some(fb), &share("j1", fb, 1000)),
        Err(Refusal::Duplicate)
    );
    assert_eq!(ch.pending_count(), 0, "nothing kept before add_pending");
}

#[test]
fn a_custom_difficulty_below_the_pools_is_answered_locally_and_counts_for_duplicates() {
    let mut ch = Ch::new(false);
    assert_eq!(ch.add(1, "a"), Some(None), "simple mode: no fixed byte");
    ch.on_job(job("j1", 10_000), 1);
    let mut s = share("j1", 0, 600);
    s.custom_diff = 500;
    assert_eq!(
        ch.check_share(None, &s),
        Ok(Checked::Local { difficulty: 500 })
    );
    assert_eq!(ch.check_share(None, &s), Err(Refusal::Duplicate));
    s.nonce[0] = 9;
    s.share_diff = 400;
    assert_eq!(ch.check_share(None, &s), Err(Refusal::LowDifficulty));
    // A custom difficulty above the pool's is ignored (RFC §14).
    let mut high = share("j1", 0, 10_000);
    high.nonce[0] = 10;
    high.custom_diff = 50_000;
    assert!(matches!(
        ch.check_share(None, &high),
        Ok(Checked::Forward {
            difficulty: 10_000,
            pool_difficulty: 10_000,
            ..
        })
    ));
}

#[test]
fn a_share_for_the_previous_job_is_expired_and_older_ones_are_stale() {
    let mut ch = Ch::new(true);
    let fb = ch.add(1, "a").unwrap().unwrap();
    ch.on_job(job("j1", 1000), 1);
    ch.on_job(job("j2", 1000), 1);
    assert!(matches!(
        ch.check_share(Some(fb), &share("j1", fb, 1000)),
        Ok(Checked::Forward { expired: true, .. })
    ));
    ch.on_job(job("j3", 1000), 1);
    assert_eq!(
        ch.check_share(Some(fb), &share("j1", fb, 1000)),
        Err(Refusal::StaleJob)
    );
    // A new pool session forgets both jobs.
    ch.on_job(job("k1", 1000), 2);
    assert_eq!(
        ch.check_share(Some(fb), &share("j3", fb, 1000)),
        Err(Refusal::StaleJob)
    );
    // And so does the end of a session.
    ch.on_session_end();
    assert_eq!(
        ch.check_share(Some(fb), &share("k1", fb, 1000)),
        Err(Refusal::StaleJob)
    );
}

#[test]
fn a_job_resent_with_the_same_id_and_blob_keeps_its_duplicates() {
    let mut ch = Ch::new(true);
    let fb = ch.add(1, "a").unwrap().unwrap();
    ch.on_job(job("j1", 1000), 1);
    forward_seq(ch.check_share(Some(fb), &share("j1", fb, 1000)));
    ch.on_job(job("j1", 1000), 1);
    assert_eq!(
        ch.check_share(Some(fb), &share("j1", fb, 1000)),
        Err(Refusal::Duplicate)
    );
}

#[test]
fn the_257th_miner_does_not_fit_and_a_dead_slot_is_reused_only_after_the_next_job() {
    let mut ch = Ch::new(true);
    ch.on_job(job("j1", 1000), 1);
    for id in 1..=256u64 {
        assert!(ch.add(id, "m").is_some(), "miner {id}");
    }
    assert_eq!(ch.miner_count(), 256);
    assert_eq!(ch.add(257, "late"), None, "the 257th miner");
    let t0 = Instant::now();
    assert!(ch.remove(10, Some(9), t0), "miner 10 had slot 9");
    assert_eq!(
        ch.add(257, "late"),
        None,
        "slot 9 is dead until the next job"
    );
    ch.on_job(job("j2", 1000), 1);
    assert_eq!(
        ch.add(257, "late"),
        Some(Some(9)),
        "reused after the next job"
    );
    assert_eq!(ch.add(258, "later"), None);
}

#[test]
fn every_forwarded_share_gets_exactly_one_verdict_even_after_its_miner_left() {
    let mut ch = Ch::new(true);
    let fb = ch.add(1, "a").unwrap().unwrap();
    ch.on_job(job("j1", 1000), 1);
    let t0 = Instant::now();
    let seq = forward_seq(ch.check_share(Some(fb), &share("j1", fb, 1000)));
    ch.add_pending(seq, 42, t0);
    // The miner disconnects and the pool session ends before the answer.
    assert!(ch.remove(1, Some(fb), t0));
    ch.on_session_end();
    assert_eq!(ch.pending_count(), 1, "still owed a verdict");
    let (id, latency) = ch.on_result(seq, t0 + Duration::from_millis(3)).unwrap();
    assert_eq!((id, latency), (42, Duration::from_millis(3)));
    assert!(ch.on_result(seq, t0).is_none(), "never a second verdict");
    assert_eq!(ch.pending_count(), 0);
}

#[test]
fn a_simple_mode_channel_frees_its_table_of_shares_once_all_are_answered() {
    let mut ch = Ch::new(false);
    assert_eq!(
        ch.add(1, "solo"),
        Some(None),
        "no fixed byte in simple mode"
    );
    ch.on_job(job("j1", 1000), 1);
    let t0 = Instant::now();
    let first = forward_seq(ch.check_share(None, &share("j1", 0, 1000)));
    ch.add_pending(first, 1, t0);
    let second = forward_seq(ch.check_share(None, &share("j1", 1, 1000)));
    ch.add_pending(second, 2, t0);
    assert_eq!(ch.on_result(first, t0).map(|(p, _)| p), Some(1));
    assert!(ch.pending_capacity() > 0, "one share still in flight");
    assert_eq!(ch.on_result(second, t0).map(|(p, _)| p), Some(2));
    assert_eq!(ch.pending_capacity(), 0, "nothing in flight, nothing held");
}

#[test]
fn a_close_that_runs_before_the_login_takes_its_slot_is_undone_by_a_second_remove() {
    // The race of a login timeout on another thread: close (remove) runs first and finds
    // nothing, then the login adds the miner; the driver sees the connection closed and
    // removes again, which frees the slot.
    let mut ch = Ch::new(true);
    let t0 = Instant::now();
    assert!(!ch.remove(5, Some(0), t0), "nothing to remove yet");
    let fb = ch.add(5, "racer").unwrap();
    assert_eq!(ch.miner_count(), 1);
    assert!(ch.remove(5, fb, t0), "the second remove frees it");
    assert!(!ch.remove(5, fb, t0), "and only once");
    assert_eq!(ch.miner_count(), 0);
    assert!(ch.idle_for(Duration::ZERO, t0));
}

#[test]
fn an_empty_channel_is_idle_only_after_its_keep_time() {
    let mut ch = Ch::new(false);
    let t0 = Instant::now();
    assert!(
        !ch.idle_for(Duration::ZERO, t0),
        "never had a miner: not counted"
    );
    ch.add(1, "a").unwrap();
    ch.remove(1, None, t0);
    let keep = Duration::from_secs(60);
    assert!(!ch.idle_for(keep, t0 + Duration::from_secs(59)));
    assert!(ch.idle_for(keep, t0 + keep));
    ch.add(2, "b").unwrap();
    assert!(!ch.idle_for(keep, t0 + keep * 2), "busy again");
}

#[test]
fn sequence_numbers_are_only_spent_on_forwarded_shares() {
    let mut ch = Ch::new(true);
    let fb = ch.add(1, "a").unwrap().unwrap();
    ch.on_job(job("j1", 1000), 1);
    let a = forward_seq(ch.check_share(Some(fb), &share("j1", fb, 1000)));
    let _ = ch.check_share(Some(fb), &share("j1", fb, 10));
    let mut s = share("j1", fb, 1000);
    s.nonce[0] = 7;
    let b = forward_seq(ch.check_share(Some(fb), &s));
    assert_eq!(b, a + 1);
}

#[test]
fn in_extra_nonce_mode_miners_share_the_nonce_space_and_differ_by_slot() {
    let mut ch = Ch::new(true);
    let a = ch.add(1, "a").unwrap().unwrap();
    let b = ch.add(2, "b").unwrap().unwrap();
    assert_ne!(a, b, "each miner its own extra nonce");
    ch.on_job(job("j1", 1000), 1);
    // The same nonce bytes, any top byte: no fixed byte is checked.
    let s = share("j1", 0x55, 5000);
    assert_eq!(ch.check_share(Some(a), &s), Err(Refusal::WrongFixedByte));
    let first = forward_seq(ch.check_extra_nonce_share(a, &s));
    let second = forward_seq(ch.check_extra_nonce_share(b, &s));
    assert_ne!(
        first, second,
        "the other miner's equal nonce is another share"
    );
    assert_eq!(
        ch.check_extra_nonce_share(a, &s),
        Err(Refusal::Duplicate),
        "the same miner's repeat"
    );
    assert_eq!(
        ch.check_extra_nonce_share(a, &share("j1", 0x56, 10)),
        Err(Refusal::LowDifficulty)
    );
    assert_eq!(
        ch.check_extra_nonce_share(a, &share("nope", 0x56, 5000)),
        Err(Refusal::StaleJob)
    );
}

#[test]
fn text_is_cut_at_a_character_boundary() {
    // "é" is two bytes: a cut at 3 would split the second one, so it goes back to 2.
    assert_eq!(crate::cut_at_char_boundary("éé", 3), "é");
    assert_eq!(crate::cut_at_char_boundary("éé", 4), "éé");
    assert_eq!(crate::cut_at_char_boundary("abc", 2), "ab");
    assert_eq!(crate::cut_at_char_boundary("abc", 10), "abc");
    assert_eq!(crate::cut_at_char_boundary("é", 1), "");
}
