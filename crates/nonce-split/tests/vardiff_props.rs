//! Property tests of [`Vardiff`]: the difficulty stays within its bounds whatever the
//! events (including bad input and a clock stepping back), a retarget never changes it by
//! more than `max_factor`, and a miner of constant hashrate is brought to the target
//! share rate. The hashrate simulation is deterministic: work accrues at a fixed rate and
//! a share is found each time a difficulty's worth of it has accrued; time is simulated
//! milliseconds, never read from a clock.

use nonce_split::{Vardiff, VardiffConfig, VardiffError};
use proptest::prelude::*;

/// A difficulty spread over orders of magnitude: 10^[-4, 6].
fn difficulty() -> impl Strategy<Value = f64> {
    (-4.0f64..6.0).prop_map(|e| 10f64.powf(e))
}

/// Difficulties as a pool or miner might send them, bad ones included.
fn wire_difficulty() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => difficulty(),
        1 => prop::sample::select(vec![0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY]),
    ]
}

#[derive(Debug, Clone)]
enum Event {
    /// A share `dt` ms after the previous event, checked at the current difficulty
    /// (or a bad value).
    Share(u64, bool),
    /// A poll `dt` ms after the previous event.
    Poll(u64),
    /// The clock steps back by this much before the next event.
    StepBack(u64),
    Upstream(f64),
    Suggest(f64),
    /// A configuration reload with a new floor.
    Reload(f64),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        10 => (0u64..30_000, prop::bool::weighted(0.95)).prop_map(|(dt, good)| Event::Share(dt, good)),
        4 => (0u64..120_000).prop_map(Event::Poll),
        1 => (0u64..10_000).prop_map(Event::StepBack),
        2 => wire_difficulty().prop_map(Event::Upstream),
        2 => wire_difficulty().prop_map(Event::Suggest),
        1 => difficulty().prop_map(Event::Reload),
    ]
}

proptest! {
    #[test]
    fn difficulty_stays_within_floor_and_upstream(
        floor in difficulty(),
        start in difficulty(),
        upstream in difficulty(),
        events in proptest::collection::vec(event(), 1..300),
    ) {
        let config = VardiffConfig { floor, start, ..VardiffConfig::default() };
        let mut vardiff = Vardiff::new(config, upstream, 1_000_000).unwrap();
        let mut now: u64 = 1_000_000;
        let mut upstream = upstream;
        let mut floor = floor;
        let mut suggested: Option<f64> = None;
        for event in events {
            let before = vardiff.difficulty();
            let mut retarget = false;
            let changed = match event {
                Event::Share(dt, good) => {
                    now += dt;
                    retarget = true;
                    let at = if good { before } else { f64::NAN };
                    vardiff.handle_share(now, at)
                }
                Event::Poll(dt) => {
                    now += dt;
                    retarget = true;
                    vardiff.poll(now)
                }
                Event::StepBack(dt) => {
                    now -= dt;
                    None
                }
                Event::Upstream(d) => match vardiff.handle_upstream_difficulty(d) {
                    Ok(changed) => {
                        upstream = d;
                        changed
                    }
                    Err(err) => {
                        prop_assert_eq!(err.to_string(), VardiffError::UpstreamDifficulty(d).to_string());
                        None
                    }
                },
                Event::Reload(new_floor) => {
                    floor = new_floor;
                    vardiff.set_config(VardiffConfig { floor, ..config }).unwrap()
                }
                Event::Suggest(d) => match vardiff.handle_suggest_difficulty(d) {
                    Ok(changed) => {
                        suggested = Some(d);
                        changed
                    }
                    Err(_) => None,
                },
            };
            let now_difficulty = vardiff.difficulty();
            match changed {
                Some(d) => {
                    prop_assert_eq!(d, now_difficulty);
                    prop_assert!(d != before);
                }
                None => prop_assert_eq!(now_difficulty, before),
            }
            // Within [min(floor, upstream), upstream], the floor raised by a suggestion.
            let own_floor = suggested.map_or(floor, |s| s.max(floor));
            let low = own_floor.min(upstream);
            prop_assert!(now_difficulty.is_finite());
            prop_assert!(now_difficulty <= upstream, "{} > upstream {}", now_difficulty, upstream);
            prop_assert!(now_difficulty >= low, "{} < floor {}", now_difficulty, low);
            prop_assert!(now_difficulty >= floor.min(upstream));
            prop_assert_eq!(vardiff.bounds(), (low, upstream));
            if retarget {
                let factor = now_difficulty / before;
                prop_assert!((0.25 * (1.0 - 1e-12)..=4.0 * (1.0 + 1e-12)).contains(&factor), "factor {}", factor);
            }
        }
    }
}

/// Runs a miner of constant `rate` (difficulty units of work per second) against
/// `vardiff` from `now` for `duration_ms`, driving it as a proxy would: shares as they
/// are found, polls at `next_poll_ms`. Returns the end time and the shares found.
fn simulate(vardiff: &mut Vardiff, rate: f64, mut now: u64, duration_ms: u64) -> (u64, u64) {
    let end = now + duration_ms;
    // Work done towards the next share, difficulty units.
    let mut work = 0.0f64;
    let mut shares = 0;
    while now < end {
        let difficulty = vardiff.difficulty();
        let to_share_ms = ((difficulty - work) / rate * 1000.0).ceil().max(1.0) as u64;
        let share_at = now + to_share_ms;
        let poll_at = vardiff.next_poll_ms().max(now + 1);
        let next = share_at.min(poll_at).min(end);
        work += rate * (next - now) as f64 / 1000.0;
        now = next;
        if now == share_at && now < end {
            work = (work - difficulty).max(0.0);
            shares += 1;
            vardiff.handle_share(now, difficulty);
        } else if now == poll_at {
            vardiff.poll(now);
        }
    }
    (now, shares)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn constant_hashrate_converges_to_the_target_share_rate(
        // Work per second: the ideal difficulty is 10 × this.
        rate in (-3.0f64..3.0).prop_map(|e| 10f64.powf(e)),
        start in (-2.0f64..3.0).prop_map(|e| 10f64.powf(e)),
        upstream in (-1.0f64..5.0).prop_map(|e| 10f64.powf(e)),
    ) {
        let config = VardiffConfig { floor: 0.01, start, ..VardiffConfig::default() };
        let mut vardiff = Vardiff::new(config, upstream, 0).unwrap();
        // An hour to settle, then ten minutes measured.
        let (now, _) = simulate(&mut vardiff, rate, 0, 3_600_000);
        let settled = vardiff.difficulty();
        let (_, shares) = simulate(&mut vardiff, rate, now, 600_000);
        let ideal = rate * 10.0;
        let clamped = ideal.max(0.01).min(upstream);
        let ratio = settled / clamped;
        prop_assert!((0.5..=2.0).contains(&ratio), "difficulty {} for ideal {} (bounded: {})", settled, ideal, clamped);
        if ideal > 2.0 * clamped || ideal < 0.5 * clamped {
            // Far outside the bounds: held exactly at the bound.
            prop_assert_eq!(settled, clamped, "ideal {} outside the bounds", ideal);
        }
        if clamped == ideal {
            // One share per 10 s is 60 in ten minutes: within a factor 2.
            prop_assert!((30..=120).contains(&shares), "{} shares in 10 minutes", shares);
        }
    }
}
