//! The Stratum V1 session and channel as plain call sequences: no sockets, time passed in,
//! shares found by grinding real nonces at tiny difficulties (deterministic: the grind
//! starts at nonce 0 and is bounded).

use std::sync::Arc;
use std::time::{Duration, Instant};

use nonce_split::{MinerId, VardiffConfig};
use proptest::prelude::*;
use stratum_proto::sv1::{
    share, Authorize, Configure, ConfigureResult, ErrorCode, Notify, PrevHash, RequestError,
    Submit, Subscribe, VersionRollingRequest, VersionRollingResult,
};
use stratum_proto::Id;

use super::*;

/// A hash meets it about once in 2^4 tries.
const MINER_DIFF: f64 = 1.0 / (1u64 << 28) as f64;
/// About once in 2^10 tries.
const UPSTREAM_DIFF: f64 = 1.0 / (1u64 << 22) as f64;
/// Mainnet's easiest target: no share found here is a block.
const HARD_NBITS: u32 = 0x1d00_ffff;
/// Regtest: about every other hash is a block.
const REGTEST_NBITS: u32 = 0x207f_ffff;
const POOL_MASK: u32 = 0x1fff_e000;
const NTIME: u32 = 0x6b0d_54b4;
const WORKER: &str = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.rig1";

/// Handles are the miner ids; the pending payload is the submit's request id.
type Ch = Channel<MinerId, Notify, u64>;

fn notify(job_id: &str, clean: bool, nbits: u32) -> Arc<Notify> {
    Arc::new(Notify {
        job_id: job_id.into(),
        prevhash: PrevHash([0x5a; 32]),
        coinb1: b"\x01\x00\x00\x00coinbase part one".to_vec(),
        coinb2: b"coinbase part two\xff\xff\xff\xff".to_vec(),
        merkle_branch: vec![[0x11; 32], [0x22; 32]],
        version: 0x2000_0000,
        nbits,
        ntime: NTIME,
        clean_jobs: clean,
    })
}

fn vardiff() -> VardiffConfig {
    VardiffConfig {
        floor: MINER_DIFF,
        start: MINER_DIFF,
        ..VardiffConfig::default()
    }
}

/// A channel on an upstream with extranonce1 `a1000001` and 8 bytes of extranonce2 (para's
/// transcript): tails of 2 bytes, 6 left to each miner.
fn channel(now: Instant) -> Ch {
    Ch::new(&[0xa1, 0, 0, 0x01], 8, 4, UPSTREAM_DIFF, POOL_MASK, now).unwrap()
}

fn id(n: u64) -> Id {
    Id::from(n)
}

fn refusal(out: &Output) -> Option<&Refusal> {
    match out {
        Output::Reply {
            reply: Reply::Error(e),
            ..
        } => Some(e),
        _ => None,
    }
}

/// `t` in the sessions' milliseconds: since a moment an hour before the first reading, so
/// that every test's `Instant::now()` (taken in any order on parallel threads) reads forward.
fn ms(t: Instant) -> u64 {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(|| {
        let now = Instant::now();
        now.checked_sub(Duration::from_secs(3_600)).unwrap_or(now)
    });
    u64::try_from(t.saturating_duration_since(base).as_millis()).unwrap()
}

/// The extranonce1 `s` hashes with: its channel's, by slot.
fn e1(ch: &Ch, s: &Session<u32>) -> Vec<u8> {
    ch.miner_extranonce1(s.slot()).unwrap()
}

/// A miner that configured version rolling (mask ffffffff, as para and bitaxe ask),
/// subscribed and authorized `WORKER` on `ch`.
fn ready_miner(ch: &mut Ch, miner: MinerId, now: Instant) -> Session<u32> {
    let mut s = Session::new(vardiff(), ms(now)).unwrap();
    let configure = Configure {
        version_rolling: Some(VersionRollingRequest {
            mask: Some(u32::MAX),
            min_bit_count: None,
        }),
        ..Configure::default()
    };
    s.configure(&id(0), &configure, ch.version_mask());
    s.subscribe(&Subscribe::default()).unwrap();
    let a = ch.add(miner, miner).unwrap();
    s.on_subscribed(&id(1), 7, miner, a);
    let out = s.authorize(
        &id(2),
        &Authorize {
            username: WORKER.into(),
            password: Some("x".into()),
        },
        &AuthorizeRules::default(),
    );
    assert_eq!(out.last(), Some(&Output::SendCurrentJob));
    s
}

fn submit(job_id: &str, extranonce2: Vec<u8>, ntime: u32, version_bits: Option<u32>) -> Submit {
    Submit {
        worker: WORKER.into(),
        job_id: job_id.into(),
        extranonce2,
        ntime,
        nonce: 0,
        version_bits,
    }
}

/// The first nonce from 0 whose share hashes to a difficulty `wanted` accepts (bounded:
/// at most 2^22 tries; at these difficulties a few thousand suffice).
fn grind_where(
    job: &Notify,
    extranonce1: &[u8],
    mut s: Submit,
    mask: u32,
    wanted: impl Fn(f64) -> bool,
) -> Submit {
    let mut header = share::build_header(job, extranonce1, &s, mask).unwrap();
    for nonce in 0..1u32 << 22 {
        header.nonce = nonce;
        if wanted(share::hash_difficulty(header.block_hash())) {
            s.nonce = nonce;
            return s;
        }
    }
    panic!("no share in 2^22 nonces");
}

fn local(c: Result<Checked<Notify>, Refusal>) -> Accepted {
    match c {
        Ok(Checked::Local(a)) => a,
        other => panic!("not local: {other:?}"),
    }
}

fn forward(c: Result<Checked<Notify>, Refusal>) -> Box<Forward<Notify>> {
    match c {
        Ok(Checked::Forward(f)) => f,
        other => panic!("not forwarded: {other:?}"),
    }
}

fn send_job(ch: &mut Ch, s: &mut Session<u32>, job: Arc<Notify>) -> JobFor {
    let seq = ch.on_notify(job);
    let up = ch.current_job().unwrap().upstream_difficulty;
    s.on_job(seq, up)
}

#[test]
fn subscribe_authorize_first_job_then_a_local_share_and_a_forwarded_one() {
    let t0 = Instant::now();
    let mut ch = channel(t0);
    let mut s: Session<u32> = Session::new(vardiff(), ms(t0)).unwrap();
    assert_eq!(s.phase(), Phase::Connected);
    s.subscribe(&Subscribe {
        user_agent: Some("para/0.6.0".into()),
        session_id: Some("deadbeef".into()),
    })
    .unwrap();
    let a = ch.add(42, 42).unwrap();
    assert_eq!(
        a.extranonce1,
        [0xa1, 0, 0, 0x01, 0, 0],
        "upstream's ‖ tail of slot 0"
    );
    assert_eq!(a.extranonce2_size, 6, "8 minus the 2-byte tail");
    let out = s.on_subscribed(&id(1), 7, 42, a);
    let line = String::from_utf8(out[0].encode().unwrap()).unwrap();
    assert_eq!(
        line,
        "{\"id\":1,\"result\":[[[\"mining.set_difficulty\",\"2a\"],[\"mining.notify\",\"2a\"]],\
         \"a10000010000\",6],\"error\":null}\n"
    );
    assert_eq!(out.len(), 1, "no version rolling asked: no mask sent");
    assert_eq!(
        (s.phase(), s.agent()),
        (Phase::Subscribed, Some("para/0.6.0"))
    );

    // No job before authorize.
    assert_eq!(
        send_job(&mut ch, &mut s, notify("1", true, HARD_NBITS)),
        JobFor::Skip
    );
    let out = s.authorize(
        &id(2),
        &Authorize {
            username: WORKER.into(),
            password: None,
        },
        &AuthorizeRules::default(),
    );
    assert_eq!(
        out,
        vec![
            Output::Reply {
                id: id(2),
                reply: Reply::True
            },
            Output::SendCurrentJob
        ]
    );
    let cur = ch.current_job().unwrap();
    assert_eq!(
        s.on_job(cur.seq, cur.upstream_difficulty),
        JobFor::Send {
            difficulty: Some(MINER_DIFF)
        },
        "the first job comes after its difficulty"
    );
    let job = Arc::clone(cur.job);

    // A share meeting the miner's difficulty only: answered here.
    let e1 = e1(&ch, &s);
    let low = grind_where(&job, &e1, submit("1", vec![0; 6], NTIME, None), 0, |d| {
        (MINER_DIFF..UPSTREAM_DIFF).contains(&d)
    });
    let acc = local(ch.check_share(&s.submit(42, &low).unwrap()));
    assert_eq!(acc.difficulty, MINER_DIFF);
    assert!(acc.hash_difficulty >= MINER_DIFF && acc.hash_difficulty < UPSTREAM_DIFF);

    // A share meeting the upstream's: forwarded as the upstream sees it.
    let high = grind_where(
        &job,
        &e1,
        submit("1", vec![1, 2, 3, 4, 5, 6], NTIME + 5, None),
        0,
        |d| d >= UPSTREAM_DIFF,
    );
    let f = forward(ch.check_share(&s.submit(42, &high).unwrap()));
    assert_eq!(
        f.extranonce2,
        [0, 0, 1, 2, 3, 4, 5, 6],
        "tail ‖ the miner's"
    );
    assert_eq!(f.extranonce1, [0xa1, 0, 0, 0x01]);
    assert_eq!(
        (f.ntime, f.nonce, f.version_bits),
        (NTIME + 5, high.nonce, None)
    );
    assert_eq!(f.job.job_id, "1");
    assert!(f.meets_upstream && !f.block_candidate);
    // The upstream's view hashes to the same header.
    let upstream_view = Submit {
        extranonce2: f.extranonce2.clone(),
        ..high.clone()
    };
    let check = share::check_share(&job, &f.extranonce1, &upstream_view, 0, UPSTREAM_DIFF).unwrap();
    assert!(check.meets_share);
    assert_eq!(check.header, f.header);
    // One answer, once.
    ch.add_pending(f.seq, 9, t0);
    assert_eq!(ch.pending_count(), 1);
    assert_eq!(
        ch.on_result(f.seq, t0 + Duration::from_millis(30)),
        Some((9, Duration::from_millis(30)))
    );
    assert_eq!(ch.on_result(f.seq, t0), None);
    s.on_valid_share(acc.difficulty, ms(t0));
    assert_eq!(s.count_verdict(Ok(())).valid, 1);
}

#[test]
fn every_refusal_has_its_code() {
    let t0 = Instant::now();
    let mut ch = channel(t0);
    let mut s: Session<u32> = Session::new(vardiff(), ms(t0)).unwrap();
    let auth = |name: &str, pw: Option<&str>| Authorize {
        username: name.into(),
        password: pw.map(Into::into),
    };
    let open = AuthorizeRules::default();
    let sub = submit("1", vec![0; 6], NTIME, None);

    // 25: authorize and submit before subscribe.
    let out = s.authorize(&id(1), &auth(WORKER, None), &open);
    assert_eq!(refusal(&out[0]).map(Refusal::code), Some(25));
    assert_eq!(s.submit(42, &sub).err(), Some(Refusal::NotSubscribed));
    assert_eq!(
        Refusal::NotSubscribed.error_code(),
        ErrorCode::NotSubscribed
    );

    s.subscribe(&Subscribe::default()).unwrap();
    let a = ch.add(1, 1).unwrap();
    s.on_subscribed(&id(2), 7, 1, a);
    // 20: a second subscribe.
    assert_eq!(
        s.subscribe(&Subscribe::default()),
        Err(Refusal::AlreadySubscribed)
    );
    assert_eq!(Refusal::AlreadySubscribed.code(), 20);
    // 24: submit before authorize, bad names, wrong password.
    assert_eq!(s.submit(1, &sub).err(), Some(Refusal::Unauthorized));
    for name in ["", "a b", "tab\there", &"x".repeat(MAX_WORKER_NAME_LEN + 1)] {
        let out = s.authorize(&id(3), &auth(name, None), &open);
        assert_eq!(refusal(&out[0]).map(Refusal::code), Some(24), "{name:?}");
    }
    let closed = AuthorizeRules {
        access_password: Some("secret"),
    };
    let out = s.authorize(&id(4), &auth(WORKER, Some("nope")), &closed);
    assert_eq!(refusal(&out[0]), Some(&Refusal::WrongPassword));
    assert_eq!(s.phase(), Phase::Subscribed, "refusals change nothing");
    let out = s.authorize(&id(5), &auth(WORKER, Some("secret")), &closed);
    assert_eq!(out.len(), 2);
    // 24: a worker never authorized.
    let other = Submit {
        worker: "someone.else".into(),
        ..sub.clone()
    };
    assert_eq!(s.submit(1, &other).err(), Some(Refusal::Unauthorized));
    // 20: too many workers on one connection.
    for n in 1..MAX_WORKERS_PER_CONNECTION {
        let out = s.authorize(&id(6), &auth(&format!("w.{n}"), None), &open);
        assert_eq!(
            out,
            vec![Output::Reply {
                id: id(6),
                reply: Reply::True
            }]
        );
    }
    let out = s.authorize(&id(7), &auth("w.too-many", None), &open);
    assert_eq!(refusal(&out[0]), Some(&Refusal::TooManyWorkers));
    assert_eq!(Refusal::TooManyWorkers.code(), 20);
    let again = s.authorize(&id(8), &auth(WORKER, None), &open);
    assert_eq!(refusal(&again[0]), None, "re-authorizing a worker is fine");

    // 21: no such job.
    assert_eq!(
        ch.check_share(&s.submit(1, &sub).unwrap()).err(),
        Some(Refusal::JobNotFound)
    );
    assert_eq!(Refusal::JobNotFound.code(), 21);
    send_job(&mut ch, &mut s, notify("1", true, HARD_NBITS));
    let job = Arc::clone(ch.current_job().unwrap().job);
    // 20: extranonce2 of the wrong size.
    let short = submit("1", vec![0; 5], NTIME, None);
    assert_eq!(
        ch.check_share(&s.submit(1, &short).unwrap()).err(),
        Some(Refusal::Extranonce2Size {
            expected: 6,
            got: 5
        })
    );
    // 20: ntime out of the window.
    let early = submit("1", vec![0; 6], NTIME - 1, None);
    assert_eq!(
        ch.check_share(&s.submit(1, &early).unwrap()).err(),
        Some(Refusal::NtimeOutOfRange)
    );
    // 20: version bits without negotiated rolling.
    let rolled = submit("1", vec![0; 6], NTIME, Some(0x0000_2000));
    assert_eq!(
        ch.check_share(&s.submit(1, &rolled).unwrap()).err(),
        Some(Refusal::VersionBits)
    );
    // 23: low difficulty.
    let e1 = e1(&ch, &s);
    let low = grind_where(&job, &e1, sub.clone(), 0, |d| d < MINER_DIFF);
    let r = ch.check_share(&s.submit(1, &low).unwrap()).err().unwrap();
    assert_eq!(
        (r.code(), r.to_string()),
        (23, "Low difficulty share".into())
    );
    // 22: duplicate.
    let ok = grind_where(&job, &e1, sub, 0, |d| d >= MINER_DIFF);
    ch.check_share(&s.submit(1, &ok).unwrap()).unwrap();
    let r = ch.check_share(&s.submit(1, &ok).unwrap()).err().unwrap();
    assert_eq!((r.code(), r.to_string()), (22, "Duplicate share".into()));
    // 20: a bad line, answered under its id.
    let bad = RequestError::UnknownMethod {
        id: id(9),
        method: "mining.frobnicate".into(),
    };
    let line = String::from_utf8(s.on_bad_request(&bad).encode().unwrap()).unwrap();
    assert_eq!(
        line,
        "{\"id\":9,\"result\":null,\"error\":[20,\"Unknown method\",null]}\n"
    );
    // Stale work and the upstream's failures do not count against the miner.
    assert!(!Refusal::JobNotFound.counts_as_invalid());
    assert!(!Refusal::UpstreamLost.counts_as_invalid());
    assert!(Refusal::Duplicate.counts_as_invalid());
    assert_eq!(s.count_verdict(Err(&Refusal::JobNotFound)).invalid, 0);
    assert_eq!(s.count_verdict(Err(&Refusal::LowDifficulty)).invalid, 1);
}

#[test]
fn the_version_mask_is_the_miners_and_the_upstreams() {
    let t0 = Instant::now();
    let mut ch = channel(t0);
    let mut s: Session<u32> = Session::new(vardiff(), ms(t0)).unwrap();
    let ask = |mask| Configure {
        version_rolling: Some(VersionRollingRequest {
            mask: Some(mask),
            min_bit_count: Some(2),
        }),
        subscribe_extranonce: true,
        ..Configure::default()
    };
    // Before subscribe: bitaxe asks for every bit, the upstream allows BIP 320's.
    let out = s.configure(&id(0), &ask(u32::MAX), POOL_MASK);
    let line = String::from_utf8(out.encode().unwrap()).unwrap();
    assert!(
        line.contains("\"version-rolling.mask\":\"1fffe000\""),
        "{line}"
    );
    assert!(line.contains("\"subscribe-extranonce\":true"), "{line}");
    assert_eq!(s.version_mask(), POOL_MASK);
    // A miner's own narrower mask wins where it is narrower.
    let mut narrow: Session<u32> = Session::new(vardiff(), ms(t0)).unwrap();
    narrow.configure(&id(0), &ask(0x0000_ff00), POOL_MASK);
    assert_eq!(narrow.version_mask(), 0x0000_e000);
    // An upstream without rolling: refused as false.
    let mut none: Session<u32> = Session::new(vardiff(), ms(t0)).unwrap();
    match none.configure(&id(0), &ask(u32::MAX), 0) {
        Output::Reply {
            reply:
                Reply::Configured(ConfigureResult {
                    version_rolling: Some(VersionRollingResult::Disabled),
                    ..
                }),
            ..
        } => {}
        other => panic!("{other:?}"),
    }

    // The channel's upstream narrowed its mask: sent on subscribe.
    ch.on_set_version_mask(0x1fff_0000);
    s.subscribe(&Subscribe::default()).unwrap();
    let a = ch.add(1, 1).unwrap();
    let out = s.on_subscribed(&id(1), 7, 1, a);
    assert_eq!(out[1], Output::SetVersionMask(0x1fff_0000));
    s.authorize(
        &id(2),
        &Authorize {
            username: WORKER.into(),
            password: None,
        },
        &AuthorizeRules::default(),
    );
    send_job(&mut ch, &mut s, notify("1", true, HARD_NBITS));
    let job = Arc::clone(ch.current_job().unwrap().job);
    let e1 = e1(&ch, &s);
    // Bits inside the mask roll; the forwarded share carries them as sent.
    let inside = grind_where(
        &job,
        &e1,
        submit("1", vec![0; 6], NTIME, Some(0x0453_0000)),
        s.version_mask(),
        |d| d >= UPSTREAM_DIFF,
    );
    let f = forward(ch.check_share(&s.submit(1, &inside).unwrap()));
    assert_eq!(f.version_bits, Some(0x0453_0000));
    assert_eq!(f.header.version.to_consensus() as u32, 0x2453_0000);
    // Bits the upstream once allowed but no more (0x2000), or never (0x8000_0000): 20.
    for bits in [0x0000_2000, 0x8000_0000] {
        let outside = submit("1", vec![0; 6], NTIME, Some(bits));
        assert_eq!(
            ch.check_share(&s.submit(1, &outside).unwrap()).err(),
            Some(Refusal::VersionBits),
            "{bits:08x}"
        );
    }
    // The upstream changes its mask: the miner is told, once.
    ch.on_set_version_mask(POOL_MASK);
    assert_eq!(
        s.on_upstream_mask(POOL_MASK),
        Some(Output::SetVersionMask(POOL_MASK))
    );
    assert_eq!(s.on_upstream_mask(POOL_MASK), None);
    // A miner that never asked for rolling is never sent a mask.
    assert_eq!(narrow.on_upstream_mask(0), Some(Output::SetVersionMask(0)));
    let mut plain: Session<u32> = Session::new(vardiff(), ms(t0)).unwrap();
    assert_eq!(plain.on_upstream_mask(0xffff_ffff), None);
}

#[test]
fn vardiff_retargets_and_the_new_difficulty_goes_before_the_next_job() {
    let t0 = Instant::now();
    let mut ch = channel(t0);
    let mut s = ready_miner(&mut ch, 1, t0);
    assert_eq!(
        send_job(&mut ch, &mut s, notify("1", true, HARD_NBITS)),
        JobFor::Send {
            difficulty: Some(MINER_DIFF)
        }
    );
    let job1 = Arc::clone(ch.current_job().unwrap().job);
    // Twelve shares in three seconds: far faster than one per 10 s.
    for i in 1..=12u64 {
        s.on_valid_share(MINER_DIFF, ms(t0 + Duration::from_millis(250 * i)));
    }
    assert_eq!(
        s.difficulty(),
        Some(MINER_DIFF),
        "not sent before the next job"
    );
    let next = send_job(&mut ch, &mut s, notify("2", false, HARD_NBITS));
    assert_eq!(
        next,
        JobFor::Send {
            difficulty: Some(MINER_DIFF * 4.0)
        },
        "×4 at most per retarget"
    );
    assert_eq!(
        send_job(&mut ch, &mut s, notify("3", false, HARD_NBITS)),
        JobFor::Send { difficulty: None }
    );
    // Job 1 was sent at the old difficulty: its shares are judged at it.
    let e1 = e1(&ch, &s);
    let between = grind_where(&job1, &e1, submit("1", vec![0; 6], NTIME, None), 0, |d| {
        (MINER_DIFF..MINER_DIFF * 4.0).contains(&d)
    });
    let acc = local(ch.check_share(&s.submit(1, &between).unwrap()));
    assert_eq!(acc.difficulty, MINER_DIFF);
    // The same work on job 2 is below the new difficulty.
    let job2 = notify("2", false, HARD_NBITS);
    let low2 = grind_where(&job2, &e1, submit("2", vec![0; 6], NTIME, None), 0, |d| {
        (MINER_DIFF..MINER_DIFF * 4.0).contains(&d)
    });
    assert_eq!(
        ch.check_share(&s.submit(1, &low2).unwrap()).err(),
        Some(Refusal::LowDifficulty)
    );

    // Resending the current job delivers a pending difficulty at once; that job's shares
    // are then judged at the lower of the two.
    for i in 1..=12u64 {
        s.on_valid_share(
            MINER_DIFF * 4.0,
            ms(t0 + Duration::from_millis(6_000 + 250 * i)),
        );
    }
    assert_eq!(s.pending_difficulty(), Some(MINER_DIFF * 16.0));
    let cur = ch.current_job().unwrap().seq;
    assert_eq!(
        s.on_job(cur, UPSTREAM_DIFF),
        JobFor::Send {
            difficulty: Some(MINER_DIFF * 16.0)
        }
    );
    assert_eq!(s.pending_difficulty(), None);
    assert_eq!(s.share_difficulty().for_job(cur), MINER_DIFF * 4.0);
    assert_eq!(s.share_difficulty().for_job(cur + 1), MINER_DIFF * 16.0);
    s.on_valid_share(MINER_DIFF * 16.0, ms(t0 + Duration::from_millis(10_000)));

    // A silent miner gets an easier difficulty at each window's end (÷4), never below the
    // floor.
    let at = s.next_poll();
    assert!(s.poll(at + 1_000));
    assert_eq!(
        send_job(&mut ch, &mut s, notify("4", false, HARD_NBITS)),
        JobFor::Send {
            difficulty: Some(MINER_DIFF * 4.0)
        }
    );
    let at = s.next_poll();
    assert!(s.poll(at));
    assert!(!s.poll(s.next_poll()), "at the floor");
    assert_eq!(s.pending_difficulty(), Some(MINER_DIFF));
    // Clamped at the upstream's difficulty when it falls below the miner's.
    s.suggest_difficulty(&id(5), 1.0);
    ch.on_set_difficulty(UPSTREAM_DIFF / 2.0).unwrap();
    assert_eq!(
        send_job(&mut ch, &mut s, notify("5", false, HARD_NBITS)),
        JobFor::Send {
            difficulty: Some(UPSTREAM_DIFF / 2.0)
        },
        "a suggestion is honoured up to the upstream's difficulty"
    );
    assert!(ch.on_set_difficulty(f64::NAN).is_err());
    assert_eq!(
        ch.difficulty(),
        UPSTREAM_DIFF / 2.0,
        "a bad value is not taken"
    );
}

#[test]
fn a_suggested_difficulty_before_subscribe_is_the_miners_floor() {
    let t0 = Instant::now();
    let mut ch = channel(t0);
    let mut s: Session<u32> = Session::new(vardiff(), ms(t0)).unwrap();
    let suggest = MINER_DIFF * 16.0;
    let out = s.suggest_difficulty(&id(0), suggest);
    assert_eq!(
        out,
        Output::Reply {
            id: id(0),
            reply: Reply::True
        }
    );
    s.subscribe(&Subscribe::default()).unwrap();
    let a = ch.add(1, 1).unwrap();
    s.on_subscribed(&id(1), 7, 1, a);
    s.authorize(
        &id(2),
        &Authorize {
            username: WORKER.into(),
            password: None,
        },
        &AuthorizeRules::default(),
    );
    assert_eq!(
        send_job(&mut ch, &mut s, notify("1", true, HARD_NBITS)),
        JobFor::Send {
            difficulty: Some(suggest)
        }
    );
    // A quiet minute does not take it below the suggestion.
    assert!(!s.poll(ms(t0 + Duration::from_secs(120))));
}

#[test]
fn a_clean_job_makes_the_others_stale_and_old_jobs_drop_out() {
    let t0 = Instant::now();
    let mut ch = channel(t0);
    let mut s = ready_miner(&mut ch, 1, t0);
    let e1 = e1(&ch, &s);
    let job1 = notify("1", true, HARD_NBITS);
    send_job(&mut ch, &mut s, Arc::clone(&job1));
    send_job(&mut ch, &mut s, notify("2", false, HARD_NBITS));
    // The previous job's shares are still good until a clean job.
    let old = grind_where(&job1, &e1, submit("1", vec![0; 6], NTIME, None), 0, |d| {
        d >= MINER_DIFF
    });
    assert!(ch.check_share(&s.submit(1, &old).unwrap()).is_ok());
    send_job(&mut ch, &mut s, notify("3", true, HARD_NBITS));
    let old2 = Submit {
        nonce: old.nonce + 1,
        ..old.clone()
    };
    assert_eq!(
        ch.check_share(&s.submit(1, &old2).unwrap()).err(),
        Some(Refusal::JobNotFound)
    );
    let two = submit("2", vec![0; 6], NTIME, None);
    assert_eq!(
        ch.check_share(&s.submit(1, &two).unwrap()).err(),
        Some(Refusal::JobNotFound)
    );
    // Without clean jobs, at most MAX_JOBS are kept.
    for n in 4..4 + MAX_JOBS {
        send_job(&mut ch, &mut s, notify(&n.to_string(), false, HARD_NBITS));
    }
    let three = submit("3", vec![0; 6], NTIME, None);
    assert_eq!(
        ch.check_share(&s.submit(1, &three).unwrap()).err(),
        Some(Refusal::JobNotFound)
    );
    let job4 = notify("4", false, HARD_NBITS);
    let four = grind_where(&job4, &e1, submit("4", vec![0; 6], NTIME, None), 0, |d| {
        d >= MINER_DIFF
    });
    assert!(
        ch.check_share(&s.submit(1, &four).unwrap()).is_ok(),
        "the oldest kept"
    );
}

#[test]
fn a_job_resent_alike_keeps_its_duplicate_memory_and_a_changed_one_starts_afresh() {
    let t0 = Instant::now();
    let mut ch = channel(t0);
    let mut s = ready_miner(&mut ch, 1, t0);
    let job = notify("1", true, HARD_NBITS);
    send_job(&mut ch, &mut s, Arc::clone(&job));
    let e1 = e1(&ch, &s);
    let sub = grind_where(&job, &e1, submit("1", vec![0; 6], NTIME, None), 0, |d| {
        d >= MINER_DIFF
    });
    assert!(ch.check_share(&s.submit(1, &sub).unwrap()).is_ok());
    send_job(&mut ch, &mut s, notify("1", false, HARD_NBITS));
    assert_eq!(
        ch.check_share(&s.submit(1, &sub).unwrap()).err(),
        Some(Refusal::Duplicate),
        "the same work under the same id"
    );
    let mut changed = (*notify("1", false, HARD_NBITS)).clone();
    changed.ntime += 1;
    let changed = Arc::new(changed);
    send_job(&mut ch, &mut s, Arc::clone(&changed));
    let again = grind_where(
        &changed,
        &e1,
        submit("1", vec![0; 6], NTIME + 1, None),
        0,
        |d| d >= MINER_DIFF,
    );
    assert!(ch.check_share(&s.submit(1, &again).unwrap()).is_ok());
    assert_eq!(
        ch.check_share(&s.submit(1, &again).unwrap()).err(),
        Some(Refusal::Duplicate)
    );
}

#[test]
fn ntime_may_roll_forward_two_hours_and_not_back() {
    let t0 = Instant::now();
    let mut ch = channel(t0);
    let mut s = ready_miner(&mut ch, 1, t0);
    send_job(&mut ch, &mut s, notify("1", true, HARD_NBITS));
    let job = Arc::clone(ch.current_job().unwrap().job);
    let e1 = e1(&ch, &s);
    for (ntime, ok) in [
        (NTIME - 1, false),
        (NTIME, true),
        (NTIME + NTIME_MAX_AHEAD_SECS, true),
        (NTIME + NTIME_MAX_AHEAD_SECS + 1, false),
    ] {
        let share = grind_where(&job, &e1, submit("1", vec![7; 6], ntime, None), 0, |d| {
            d >= MINER_DIFF
        });
        let got = ch.check_share(&s.submit(1, &share).unwrap());
        assert_eq!(got.is_ok(), ok, "ntime {ntime}: {got:?}");
        if !ok {
            assert_eq!(got.err(), Some(Refusal::NtimeOutOfRange));
        }
    }
}

#[test]
fn two_miners_never_share_a_header_and_a_duplicate_is_per_share() {
    let t0 = Instant::now();
    let mut ch = channel(t0);
    let mut a = ready_miner(&mut ch, 1, t0);
    let mut b = ready_miner(&mut ch, 2, t0);
    assert_ne!(e1(&ch, &a), e1(&ch, &b));
    send_job(&mut ch, &mut a, notify("1", true, HARD_NBITS));
    b.on_job(ch.current_job().unwrap().seq, UPSTREAM_DIFF);
    let job = Arc::clone(ch.current_job().unwrap().job);
    // The same extranonce2, ntime and nonce from both: two different shares.
    let sub = submit("1", vec![0; 6], NTIME, None);
    let sa = grind_where(&job, &e1(&ch, &a), sub.clone(), 0, |d| d >= MINER_DIFF);
    let sb = grind_where(&job, &e1(&ch, &b), sub, 0, |d| d >= MINER_DIFF);
    assert!(ch.check_share(&a.submit(1, &sa).unwrap()).is_ok());
    assert!(ch.check_share(&b.submit(2, &sb).unwrap()).is_ok());
    assert_eq!(
        ch.check_share(&a.submit(1, &sa).unwrap()).err(),
        Some(Refusal::Duplicate)
    );
    // A miner cannot submit in another's slot.
    let mut stolen = b.submit(2, &sa).unwrap();
    stolen.slot = a.slot();
    assert_eq!(ch.check_share(&stolen).err(), Some(Refusal::NotSubscribed));
}

#[test]
fn a_block_is_forwarded_as_a_candidate_even_below_the_upstreams_difficulty() {
    let t0 = Instant::now();
    let mut ch = Ch::new(&[], 8, 4, 1e9, 0, t0).unwrap();
    let mut s = ready_miner(&mut ch, 1, t0);
    send_job(&mut ch, &mut s, notify("1", true, REGTEST_NBITS));
    let job = Arc::clone(ch.current_job().unwrap().job);
    let target = share::network_target(REGTEST_NBITS);
    // The first nonce whose hash meets regtest's target, whatever its difficulty.
    let mut found = None;
    for nonce in 0..1024 {
        let sub = Submit {
            nonce,
            ..submit("1", vec![0; 6], NTIME, None)
        };
        let c = share::check_share(&job, &e1(&ch, &s), &sub, 0, MINER_DIFF).unwrap();
        if target.is_met_by(c.hash) {
            found = Some(sub);
            break;
        }
    }
    let f = forward(ch.check_share(&s.submit(1, &found.unwrap()).unwrap()));
    assert!(f.block_candidate && !f.meets_upstream);
    assert_eq!(
        f.extranonce1,
        Vec::<u8>::new(),
        "solo: the proxy's own coinbase room"
    );
}

#[test]
fn every_forwarded_share_gets_one_verdict_including_on_session_end() {
    let t0 = Instant::now();
    let mut ch = channel(t0);
    let mut s = ready_miner(&mut ch, 1, t0);
    send_job(&mut ch, &mut s, notify("1", true, HARD_NBITS));
    let job = Arc::clone(ch.current_job().unwrap().job);
    let e1 = e1(&ch, &s);
    let mut seqs = Vec::new();
    for e2 in 0..4u8 {
        let sub = grind_where(&job, &e1, submit("1", vec![e2; 6], NTIME, None), 0, |d| {
            d >= UPSTREAM_DIFF
        });
        let f = forward(ch.check_share(&s.submit(1, &sub).unwrap()));
        ch.add_pending(f.seq, f.seq * 10, t0 + Duration::from_secs(u64::from(e2)));
        seqs.push(f.seq);
    }
    let unique: std::collections::HashSet<_> = seqs.iter().collect();
    assert_eq!(unique.len(), 4, "one sequence number each");
    // Answered by the upstream once.
    assert_eq!(
        ch.on_result(seqs[0], t0).map(|(p, _)| p),
        Some(seqs[0] * 10)
    );
    assert_eq!(ch.on_result(seqs[0], t0), None);
    // One waited too long.
    let expired = ch.expire(t0 + Duration::from_secs(31), Duration::from_secs(30));
    assert_eq!(expired, vec![seqs[1] * 10]);
    assert_eq!(
        ch.on_result(seqs[1], t0),
        None,
        "a late answer finds nothing"
    );
    // What waits is there to look at, until it is answered.
    assert_eq!(ch.pending(seqs[2]), Some(&(seqs[2] * 10)));
    assert_eq!(ch.pending(seqs[0]), None, "answered");
    let mut waiting: Vec<u64> = ch.pending_all().copied().collect();
    waiting.sort_unstable();
    assert_eq!(waiting, vec![seqs[2] * 10, seqs[3] * 10]);
    // The connection ends: the rest answered here, and nothing after.
    let mut ended = ch.on_session_end();
    ended.sort_unstable();
    assert_eq!(ended, vec![seqs[2] * 10, seqs[3] * 10]);
    assert_eq!(ch.on_result(seqs[2], t0), None);
    assert_eq!(ch.pending_count(), 0);
    // And its jobs are gone with it.
    let sub = submit("1", vec![9; 6], NTIME, None);
    assert_eq!(
        ch.check_share(&s.submit(1, &sub).unwrap()).err(),
        Some(Refusal::JobNotFound)
    );
}

#[test]
fn an_upstream_extranonce_change_moves_or_updates_the_miners() {
    let t0 = Instant::now();
    let mut ch = channel(t0);
    let mut subscribed = ready_miner(&mut ch, 1, t0);
    subscribed.extranonce_subscribe(&id(3));
    let mut plain = ready_miner(&mut ch, 2, t0);
    send_job(&mut ch, &mut plain, notify("1", true, HARD_NBITS));
    // Same values again: nothing to do.
    assert!(ch
        .on_set_extranonce(&[0xa1, 0, 0, 0x01], 8)
        .unwrap()
        .miners
        .is_empty());
    // Same size: slots kept, the subscribed miner updated in place, the other moved.
    let change = ch.on_set_extranonce(&[0xb2, 0, 0, 0x02], 8).unwrap();
    assert_eq!(change.miners.len(), 2);
    assert!(ch.current_job().is_none(), "the old coinbase is void");
    for (miner, handle, new) in change.miners {
        assert_eq!(miner, handle);
        let out = if miner == 1 {
            subscribed.on_extranonce_change(new)
        } else {
            plain.on_extranonce_change(new)
        };
        if miner == 1 {
            assert_eq!(
                out,
                Some(Output::SetExtranonce(NewExtranonce {
                    extranonce1: vec![0xb2, 0, 0, 0x02, 0, 0],
                    extranonce2_size: 6
                }))
            );
        } else {
            assert_eq!(out, Some(Output::Reconnect));
        }
    }
    assert_eq!(e1(&ch, &subscribed), [0xb2, 0, 0, 0x02, 0, 0]);
    assert_eq!(plain.phase(), Phase::Closing);
    // Told to reconnect, it waits for the answers of its shares in flight: a share it
    // sends meanwhile is stale (21), never checked nor forwarded.
    assert_eq!(
        plain.submit(2, &submit("1", vec![0; 6], NTIME, None)).err(),
        Some(Refusal::JobNotFound)
    );
    assert!(ch.remove(2, plain.slot(), t0));
    // Shares on the new job hash with the new extranonce1.
    send_job(&mut ch, &mut subscribed, notify("2", true, HARD_NBITS));
    let job = Arc::clone(ch.current_job().unwrap().job);
    let sub = grind_where(
        &job,
        &e1(&ch, &subscribed),
        submit("2", vec![0; 6], NTIME, None),
        0,
        |d| d >= UPSTREAM_DIFF,
    );
    let f = forward(ch.check_share(&subscribed.submit(1, &sub).unwrap()));
    assert_eq!(f.extranonce1, [0xb2, 0, 0, 0x02]);
    // Another size: the split is void, every miner must reconnect.
    let change = ch.on_set_extranonce(&[0xc3], 10).unwrap();
    assert_eq!(change.miners.len(), 1);
    let (_, _, new) = change.miners.into_iter().next().unwrap();
    assert_eq!(
        subscribed.on_extranonce_change(new),
        Some(Output::Reconnect)
    );
    assert_eq!(ch.miner_count(), 0);
    assert!(!ch.remove(1, subscribed.slot(), t0), "taken off already");
    assert_eq!(
        Output::Reconnect.encode().unwrap(),
        b"{\"id\":null,\"method\":\"client.reconnect\",\"params\":[]}\n"
    );
    // An upstream that cannot be split is refused and changes nothing.
    assert!(ch.on_set_extranonce(&[0xd4], 3).is_err());
    assert_eq!(ch.miner_extranonce2_size(), 8);
}

#[test]
fn a_full_channel_refuses_the_next_miner_and_a_freed_slot_waits_for_the_next_job() {
    let t0 = Instant::now();
    // 4 bytes of extranonce2 with a minimum of 4: one miner per upstream.
    let mut ch = Ch::new(&[1, 2, 3, 4], 4, 4, UPSTREAM_DIFF, 0, t0).unwrap();
    assert_eq!(ch.capacity(), 1);
    let a = ch.add(1, 1).unwrap();
    assert_eq!(
        (a.extranonce1.as_slice(), a.extranonce2_size),
        (&[1, 2, 3, 4][..], 4)
    );
    assert!(ch.add(2, 2).is_err());
    let mut s: Session<u32> = Session::new(vardiff(), ms(t0)).unwrap();
    assert_eq!(
        refusal(&s.subscribe_refused(&id(1))),
        Some(&Refusal::ProxyFull)
    );
    assert!(ch.remove(1, a.slot, t0));
    assert!(ch.add(2, 2).is_err(), "dead until the next job");
    assert!(ch.idle_for(Duration::ZERO, t0));
    ch.on_notify(notify("1", true, HARD_NBITS));
    // A miner that went while being routed stays closing, gets no job, and its slot is
    // given back once.
    let mut gone: Session<u32> = Session::new(vardiff(), ms(t0)).unwrap();
    gone.subscribe(&Subscribe::default()).unwrap();
    gone.close();
    let a = ch.add(2, 2).unwrap();
    gone.on_subscribed(&id(1), 7, 2, a);
    assert_eq!(gone.phase(), Phase::Closing);
    assert_eq!(gone.on_job(1, UPSTREAM_DIFF), JobFor::Skip);
    assert_eq!(gone.take_route(), Some(7));
    assert_eq!(gone.take_route(), None);
    assert!(ch.remove(2, gone.slot(), t0));
    assert!(!ch.remove(2, gone.slot(), t0));
    // A split that would leave a miner less than the minimum is refused.
    assert!(Ch::new(&[1], 3, 4, 1.0, 0, t0).is_err());
    assert!(Ch::new(&[1], 8, 4, 0.0, 0, t0).is_err());
}

#[test]
fn worker_names_split_at_the_first_dot() {
    assert_eq!(split_worker("addr.rig.1"), ("addr", Some("rig.1")));
    assert_eq!(split_worker("alice"), ("alice", None));
    assert!(check_worker_name(WORKER).is_ok());
}

#[derive(Debug, Clone)]
enum Op {
    Add,
    Remove(usize),
    Job,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Add),
        2 => any::<usize>().prop_map(Op::Remove),
        1 => Just(Op::Job),
    ]
}

proptest! {
    /// Whatever miners come and go, no two miners of one channel build the same coinbase:
    /// active miners' extranonce1s differ, have one length and start with the upstream's;
    /// and a newcomer never gets the extranonce1 of a miner that left since the last job.
    #[test]
    fn no_two_miners_of_a_channel_build_the_same_coinbase(
        upstream_e1 in proptest::collection::vec(any::<u8>(), 0..8),
        size in 4usize..=12,
        min in 1usize..=4,
        ops in proptest::collection::vec(op(), 1..80),
        e2 in any::<u64>(),
    ) {
        let t0 = Instant::now();
        let mut ch = Ch::new(&upstream_e1, size, min, 1.0, 0, t0).unwrap();
        let mut active: Vec<(MinerId, u16, Vec<u8>)> = Vec::new();
        let mut left_this_job: Vec<Vec<u8>> = Vec::new();
        let mut next_id = 0;
        let job = notify("1", true, HARD_NBITS);
        for op in ops {
            match op {
                Op::Add => {
                    next_id += 1;
                    if let Ok(a) = ch.add(next_id, next_id) {
                        prop_assert!(a.extranonce2_size >= min && a.extranonce2_size <= 8);
                        prop_assert!(a.extranonce1.starts_with(&upstream_e1));
                        prop_assert!(!left_this_job.contains(&a.extranonce1), "a tail reused within a job");
                        active.push((next_id, a.slot, a.extranonce1));
                    } else {
                        prop_assert_eq!(active.len() + left_this_job.len(), ch.capacity());
                    }
                }
                Op::Remove(k) if !active.is_empty() => {
                    let (m, slot, e1) = active.remove(k % active.len());
                    prop_assert!(ch.remove(m, slot, t0));
                    left_this_job.push(e1);
                }
                Op::Remove(_) => {}
                Op::Job => {
                    ch.on_notify(Arc::clone(&job));
                    left_this_job.clear();
                }
            }
            let e2 = e2.to_le_bytes()[..ch.miner_extranonce2_size()].to_vec();
            for (i, (_, _, a)) in active.iter().enumerate() {
                for (_, _, b) in &active[i + 1..] {
                    prop_assert_eq!(a.len(), b.len());
                    prop_assert_ne!(
                        share::coinbase_bytes(&job, a, &e2),
                        share::coinbase_bytes(&job, b, &e2)
                    );
                }
            }
        }
    }
}

#[test]
fn a_session_is_small() {
    // Per idle miner at 10,000 miners the session is most of what the proxy keeps: 96
    // bytes on 64-bit targets with the proxy's `()` route (280 before vardiff pointed at
    // shared settings, 232 before the extranonce1 copy went and the difficulties told, the
    // suggestion, the asked mask and the agent were packed, 168 before the miner id and
    // the epoch `Instant` went, the phase and flags shared a byte, the job numbers became
    // `u32` and the workers after the first and a parked subscribe moved to the cold box,
    // 120 before vardiff boxed its window, 104 before the difficulty before a change went to
    // a box made at the first change),
    // and no heap of its own once the driver shared the worker's name and took the agent.
    let size = std::mem::size_of::<Session<u32>>();
    assert!(size <= 104, "Session<u32> is {size} bytes");
    let size = std::mem::size_of::<Session<()>>();
    assert!(size <= 96, "Session<()> is {size} bytes");
    // Vardiff's window sums and a suggestion are boxed at the first share or suggestion.
    assert!(std::mem::size_of::<nonce_split::Vardiff>() <= 40);
}

#[test]
fn notifications_encode_as_the_spec_writes_them_and_agents_are_bounded() {
    let line = |o: Output| String::from_utf8(o.encode().unwrap()).unwrap();
    assert_eq!(
        line(Output::SetDifficulty(2.0)),
        "{\"id\":null,\"method\":\"mining.set_difficulty\",\"params\":[2]}\n"
    );
    assert_eq!(
        line(Output::SetVersionMask(POOL_MASK)),
        "{\"id\":null,\"method\":\"mining.set_version_mask\",\"params\":[\"1fffe000\"]}\n"
    );
    assert_eq!(
        line(Output::SetExtranonce(NewExtranonce {
            extranonce1: vec![0xab, 1],
            extranonce2_size: 6
        })),
        "{\"id\":null,\"method\":\"mining.set_extranonce\",\"params\":[\"ab01\",6]}\n"
    );
    assert_eq!(Output::SendCurrentJob.encode(), None);

    let t0 = Instant::now();
    let mut s: Session<u32> = Session::new(vardiff(), ms(t0)).unwrap();
    s.on_version_answer(&"é".repeat(100));
    assert_eq!(s.agent().map(str::len), Some(MAX_USER_AGENT_LEN));
    let mut t: Session<u32> = Session::new(vardiff(), ms(t0)).unwrap();
    t.subscribe(&Subscribe {
        user_agent: Some("cgminer/4.10.0".into()),
        session_id: None,
    })
    .unwrap();
    t.on_version_answer("other/1.0");
    assert_eq!(t.agent(), Some("cgminer/4.10.0"), "subscribe's agent first");
    assert!(Session::<u32>::new(
        VardiffConfig {
            floor: 0.0,
            ..vardiff()
        },
        ms(t0)
    )
    .is_err());
}

#[test]
fn a_miners_assignment_is_told_again_while_it_holds_its_slot_and_never_after() {
    let now = Instant::now();
    let mut ch = channel(now);
    let a = ch.add(7, 7).unwrap();
    let b = ch.add(8, 8).unwrap();
    assert_eq!(ch.assignment(7, a.slot), Some(a.clone()));
    assert_eq!(ch.assignment(8, b.slot), Some(b.clone()));
    assert_eq!(ch.slot_of(8), Some(b.slot));
    // Another miner's slot is not its.
    assert_eq!(ch.assignment(7, b.slot), None);
    assert!(ch.remove(7, a.slot, now));
    assert_eq!(ch.assignment(7, a.slot), None);
    assert_eq!(ch.slot_of(7), None);
}

#[test]
fn ending_the_jobs_keeps_the_shares_in_flight_for_their_answers() {
    let now = Instant::now();
    let mut ch = channel(now);
    ch.on_notify(notify("1", true, HARD_NBITS));
    ch.add_pending(1, 41, now);
    ch.end_jobs();
    assert!(ch.current_job().is_none());
    assert_eq!(ch.pending_count(), 1);
    assert_eq!(ch.on_result(1, now).map(|(p, _)| p), Some(41));
    assert_eq!(ch.on_result(1, now), None);
}

#[test]
fn a_worker_authorized_while_the_subscribe_answer_waits_is_ready_with_that_answer() {
    let now = Instant::now();
    let mut ch = channel(now);
    let mut s: Session<u32> = Session::new(vardiff(), ms(now)).unwrap();
    let auth = Authorize {
        username: WORKER.into(),
        password: None,
    };
    // Before any subscribe: not subscribed.
    let out = s.authorize(&id(0), &auth, &AuthorizeRules::default());
    assert_eq!(refusal(&out[0]), Some(&Refusal::NotSubscribed));
    s.subscribe(&Subscribe::default()).unwrap();
    assert!(s.subscribing());
    assert_eq!(
        s.subscribe(&Subscribe::default()),
        Err(Refusal::AlreadySubscribed)
    );
    // Pipelined authorize: taken, no job yet.
    let out = s.authorize(&id(2), &auth, &AuthorizeRules::default());
    assert_eq!(
        out,
        vec![Output::Reply {
            id: id(2),
            reply: Reply::True
        }]
    );
    assert_eq!(s.phase(), Phase::Connected);
    let a = ch.add(5, 5).unwrap();
    let out = s.on_subscribed(&id(1), 7, 5, a);
    assert_eq!(s.phase(), Phase::Authorized);
    assert!(!s.subscribing());
    assert_eq!(out.last(), Some(&Output::SendCurrentJob));
    // A refused subscribe forgets the early worker.
    let mut t: Session<u32> = Session::new(vardiff(), ms(now)).unwrap();
    t.subscribe(&Subscribe::default()).unwrap();
    t.authorize(&id(2), &auth, &AuthorizeRules::default());
    t.subscribe_refused(&id(1));
    assert_eq!(t.workers().count(), 0);
    assert!(!t.subscribing());
}

#[test]
fn a_shared_worker_name_is_pointed_at_and_every_worker_still_authorizes_its_shares() {
    let now = Instant::now();
    let mut ch = channel(now);
    let mut s = ready_miner(&mut ch, 7, now);
    // The driver's copy of the name (its login's, with a shared account part): the
    // session keeps a pointer to it.
    let account = arcstr::ArcStr::from(WORKER.split('.').next().unwrap());
    let kept = crate::WorkerName::with_account(WORKER, |_| account.clone());
    s.share_worker_name(&kept);
    assert_eq!(arcstr::ArcStr::strong_count(&account), Some(3));
    assert!(s.workers().next().unwrap().shares_account(&kept));
    // A name this connection never authorized is not taken.
    let other = crate::WorkerName::with_account("someone.else", |_| account.clone());
    s.share_worker_name(&other);
    assert_eq!(arcstr::ArcStr::strong_count(&account), Some(4));
    // A second and third worker: all three authorize shares, in order.
    for (n, w) in ["a.two", "a.three"].into_iter().enumerate() {
        let out = s.authorize(
            &id(10 + n as u64),
            &Authorize {
                username: w.into(),
                password: None,
            },
            &AuthorizeRules::default(),
        );
        assert!(refusal(&out[0]).is_none(), "{out:?}");
    }
    assert_eq!(
        s.workers().map(ToString::to_string).collect::<Vec<_>>(),
        [WORKER, "a.two", "a.three"]
    );
    assert!(s.submit(7, &submit("1", vec![0; 6], NTIME, None)).is_ok());
    let mut by_three = submit("1", vec![0; 6], NTIME, None);
    by_three.worker = "a.three".into();
    assert!(s.submit(7, &by_three).is_ok());
    by_three.worker = "a.four".into();
    assert_eq!(s.submit(7, &by_three).err(), Some(Refusal::Unauthorized));
}

#[test]
fn the_agent_can_be_taken_once_and_extranonces_of_any_length_are_told_back() {
    let now = Instant::now();
    let mut s: Session<u32> = Session::new(vardiff(), ms(now)).unwrap();
    s.subscribe(&Subscribe {
        user_agent: Some("bitaxe/BM1366".into()),
        session_id: None,
    })
    .unwrap();
    assert_eq!(s.take_agent().as_deref(), Some("bitaxe/BM1366"));
    assert_eq!(s.agent(), None);
    assert_eq!(s.take_agent(), None);

    // A pool's extranonce1 longer than most (here 30 bytes plus a 1-byte tail) is told to
    // the miner as it is (the session keeps no copy: the channel has it by slot).
    let long: Vec<u8> = (1..=30).collect();
    let mut ch = Ch::new(&long, 8, 4, UPSTREAM_DIFF, POOL_MASK, now).unwrap();
    let a = ch.add(3, 3).unwrap();
    let told = a.extranonce1.clone();
    assert!(told.len() > 22 && told.starts_with(&long));
    let out = s.on_subscribed(&id(1), 3, 3, a);
    match &out[0] {
        Output::Reply {
            reply: Reply::Subscribed(r),
            ..
        } => assert_eq!(r.extranonce1, told),
        other => panic!("{other:?}"),
    }
    assert_eq!(e1(&ch, &s), told);
    // And a short one, the same way.
    let mut s: Session<u32> = Session::new(vardiff(), ms(now)).unwrap();
    s.subscribe(&Subscribe::default()).unwrap();
    let mut ch = channel(now);
    let a = ch.add(4, 4).unwrap();
    let told = a.extranonce1.clone();
    s.on_subscribed(&id(1), 4, 4, a);
    assert_eq!(e1(&ch, &s), told);
}

/// The answer's version-rolling part, if `out` is a configure answer.
fn granted(out: &Output) -> Option<VersionRollingResult> {
    match out {
        Output::Reply {
            reply: Reply::Configured(r),
            ..
        } => r.version_rolling.clone(),
        _ => None,
    }
}

#[test]
fn a_configure_before_subscribe_waits_for_the_upstreams_mask_and_gets_the_and() {
    let now = Instant::now();
    let ask = Configure {
        version_rolling: Some(VersionRollingRequest {
            mask: Some(u32::MAX),
            min_bit_count: None,
        }),
        subscribe_extranonce: true,
        ..Configure::default()
    };
    // para's order: configure first, before any upstream is known; nothing is answered yet.
    let mut s: Session<u32> = Session::new(vardiff(), ms(now)).unwrap();
    assert_eq!(s.configure_later(&id(0), &ask), vec![]);
    assert!(s.configure_waits());
    assert!(
        s.extranonce_subscribed(),
        "the other extensions apply at once"
    );
    // The upstream grants less than the proxy's default: the answer is the AND, and no
    // `mining.set_version_mask` is needed afterwards.
    let out = s.on_upstream_mask(0x00ff_e000).expect("answered");
    assert_eq!(
        granted(&out),
        Some(VersionRollingResult::Enabled { mask: 0x00ff_e000 })
    );
    let line = String::from_utf8(out.encode().unwrap()).unwrap();
    assert!(line.starts_with("{\"id\":0,"), "{line}");
    assert!(line.contains("\"subscribe-extranonce\":true"), "{line}");
    assert!(!s.configure_waits());
    assert_eq!(s.version_mask(), 0x00ff_e000);
    let mut ch = Ch::new(&[0xa1, 0, 0, 0x01], 8, 4, UPSTREAM_DIFF, 0x00ff_e000, now).unwrap();
    s.subscribe(&Subscribe::default()).unwrap();
    let a = ch.add(1, 1).unwrap();
    let out = s.on_subscribed(&id(1), 7, 1, a);
    assert_eq!(out.len(), 1, "the subscribe answer alone: {out:?}");
    assert_eq!(s.version_mask(), 0x00ff_e000);

    // Still waiting at subscribe (pipelined): the configure is answered first, with the
    // channel's mask, then the subscribe.
    let mut p: Session<u32> = Session::new(vardiff(), ms(now)).unwrap();
    assert_eq!(p.configure_later(&id(0), &ask), vec![]);
    p.subscribe(&Subscribe::default()).unwrap();
    let a = ch.add(2, 2).unwrap();
    let out = p.on_subscribed(&id(1), 7, 2, a);
    assert_eq!(
        granted(&out[0]),
        Some(VersionRollingResult::Enabled { mask: 0x00ff_e000 })
    );
    assert!(matches!(
        &out[1],
        Output::Reply {
            reply: Reply::Subscribed(_),
            ..
        }
    ));
    assert_eq!(out.len(), 2, "{out:?}");

    // No upstream mask in time: refused as false, and never a mask afterwards.
    let mut late: Session<u32> = Session::new(vardiff(), ms(now)).unwrap();
    assert_eq!(late.configure_later(&id(0), &ask), vec![]);
    let out = late.configure_expired().expect("answered");
    assert_eq!(granted(&out), Some(VersionRollingResult::Disabled));
    assert_eq!(late.configure_expired(), None, "once");
    assert_eq!(late.on_upstream_mask(0x1fff_e000), None);
    assert_eq!(late.version_mask(), 0);

    // A second configure replaces the first, which is answered false; without
    // version-rolling a configure is answered at once.
    let mut twice: Session<u32> = Session::new(vardiff(), ms(now)).unwrap();
    twice.configure_later(&id(0), &ask);
    let out = twice.configure_later(&id(1), &ask);
    assert_eq!(out.len(), 1);
    assert_eq!(granted(&out[0]), Some(VersionRollingResult::Disabled));
    let out = twice.on_upstream_mask(0x1fff_e000).expect("the second");
    assert!(matches!(&out, Output::Reply { id: i, .. } if *i == id(1)));
    let plain = Configure {
        subscribe_extranonce: true,
        ..Configure::default()
    };
    let mut p: Session<u32> = Session::new(vardiff(), ms(now)).unwrap();
    let out = p.configure_later(&id(3), &plain);
    assert_eq!(out.len(), 1);
    assert!(!p.configure_waits());

    // On a channel by its configure, not subscribed yet: an upstream extranonce change it
    // can follow tells it nothing (its subscribe answer carries the new one); one it
    // cannot (its slot is gone) closes it.
    let new = NewExtranonce {
        extranonce1: vec![0xb2, 0, 0, 0x02, 0, 0],
        extranonce2_size: 6,
    };
    assert_eq!(late.on_extranonce_change(Some(new)), None);
    assert_eq!(late.phase(), Phase::Connected);
    assert_eq!(late.on_extranonce_change(None), Some(Output::Reconnect));
    assert_eq!(late.phase(), Phase::Closing);
}

#[test]
fn a_job_older_than_one_the_miner_had_is_skipped_and_the_same_one_sent_again() {
    let now = Instant::now();
    let mut ch = channel(now);
    let mut s = ready_miner(&mut ch, 7, now);
    let newest = ch.on_notify(notify("2", false, HARD_NBITS));
    assert!(matches!(
        s.on_job(newest, UPSTREAM_DIFF),
        JobFor::Send { .. }
    ));
    // The job the driver read before the fan-out of the newer one overtook it.
    assert_eq!(s.on_job(newest - 1, UPSTREAM_DIFF), JobFor::Skip);
    // The current job again (a difficulty told sooner) still goes.
    assert!(matches!(
        s.on_job(newest, UPSTREAM_DIFF),
        JobFor::Send { .. }
    ));
}
