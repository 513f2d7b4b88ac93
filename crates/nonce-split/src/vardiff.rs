//! Per-miner variable difficulty for Stratum V1, as a pure state machine (docs on
//! [`Vardiff`], where rustdoc shows them).

use std::sync::Arc;

/// Hashes per share of difficulty 1: 2^32 (Bitcoin's difficulty-1 target is
/// `0xffff · 2^208`, about 2^224, so a hash meets it once in about 2^32 tries).
pub const HASHES_PER_DIFFICULTY: f64 = 4_294_967_296.0;

/// Hashrate, in hashes per second, from difficulty-weighted shares: `2^32 ·
/// difficulty_sum / seconds`, where `difficulty_sum` is the sum of the difficulties the
/// shares found in `seconds` were checked at.
///
/// Returns 0 when `seconds` is not positive or either input is not finite or is
/// negative (no panic, no NaN or infinity out).
///
/// ```
/// // One share of difficulty 1 per second is about 4.29 GH/s.
/// assert_eq!(nonce_split::hashrate(10.0, 10.0), 4_294_967_296.0);
/// ```
pub fn hashrate(difficulty_sum: f64, seconds: f64) -> f64 {
    if seconds <= 0.0 || !difficulty_sum.is_finite() || !seconds.is_finite() {
        return 0.0;
    }
    let rate = HASHES_PER_DIFFICULTY * difficulty_sum.max(0.0) / seconds;
    if rate.is_finite() {
        rate
    } else {
        0.0
    }
}

/// Settings of [`Vardiff`]; see its docs for how they act. Times in
/// milliseconds, difficulties in difficulty-1 units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VardiffConfig {
    /// The aimed-at time between two shares of one miner, ms. Default 10,000.
    pub target_interval_ms: u64,
    /// The lowest difficulty given (unless the upstream's is lower). Default 1.
    pub floor: f64,
    /// The difficulty a new miner starts at (clamped to the bounds). Default 1.
    pub start: f64,
    /// Shares in a window that allow a retarget before `window_ms`. Default 12.
    pub retarget_shares: u32,
    /// Longest window: a retarget is considered once it lasted this long, ms.
    /// Default 60,000.
    pub window_ms: u64,
    /// Least time between two retargets, ms; at least 1. Default 2,000.
    pub min_retarget_interval_ms: u64,
    /// Most a retarget multiplies or divides the difficulty by; > 1. Default 4.
    pub max_factor: f64,
    /// Changes smaller than ×/÷ this are not made; ≥ 1 and below `max_factor`.
    /// Default 1.5.
    pub tolerance: f64,
}

impl Default for VardiffConfig {
    /// The documented defaults: a share every 10 s, floor and start 1, retarget on
    /// 12 shares or 60 s, at most every 2 s, by at most ×/÷4, ignoring less than ×/÷1.5.
    fn default() -> Self {
        VardiffConfig {
            target_interval_ms: 10_000,
            floor: 1.0,
            start: 1.0,
            retarget_shares: 12,
            window_ms: 60_000,
            min_retarget_interval_ms: 2_000,
            max_factor: 4.0,
            tolerance: 1.5,
        }
    }
}

impl VardiffConfig {
    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`VardiffError::InvalidConfig`] naming the field: a zero
    /// `target_interval_ms`, `retarget_shares`, `min_retarget_interval_ms` or
    /// `window_ms`; a `floor` or `start` not finite and positive; `max_factor` not
    /// above 1; `tolerance` below 1 or not below `max_factor`.
    pub fn validate(&self) -> Result<(), VardiffError> {
        let bad = |field: &'static str, why: &'static str| {
            Err(VardiffError::InvalidConfig { field, why })
        };
        if self.target_interval_ms == 0 {
            return bad("target_interval_ms", "must be above 0");
        }
        if self.retarget_shares == 0 {
            return bad("retarget_shares", "must be above 0");
        }
        if self.window_ms == 0 {
            return bad("window_ms", "must be above 0");
        }
        if self.min_retarget_interval_ms == 0 {
            return bad("min_retarget_interval_ms", "must be above 0");
        }
        if !is_difficulty(self.floor) {
            return bad("floor", "must be a finite number above 0");
        }
        if !is_difficulty(self.start) {
            return bad("start", "must be a finite number above 0");
        }
        if !(self.max_factor > 1.0 && self.max_factor.is_finite()) {
            return bad("max_factor", "must be a finite number above 1");
        }
        if !(self.tolerance >= 1.0 && self.tolerance < self.max_factor) {
            return bad("tolerance", "must be at least 1 and below max_factor");
        }
        Ok(())
    }
}

/// Bad input to [`Vardiff`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VardiffError {
    /// A [`VardiffConfig`] field out of range (configuration error).
    #[error("vardiff {field} {why}")]
    InvalidConfig {
        /// The field's name.
        field: &'static str,
        /// What it must be.
        why: &'static str,
    },
    /// The upstream sent a difficulty that is not a finite number above 0 (pool side;
    /// the previous upstream difficulty is kept).
    #[error("upstream difficulty {0} is not a finite number above 0")]
    UpstreamDifficulty(f64),
    /// A miner suggested a difficulty that is not a finite number above 0 (miner side;
    /// the suggestion is ignored).
    #[error("suggested difficulty {0} is not a finite number above 0")]
    SuggestedDifficulty(f64),
}

fn is_difficulty(value: f64) -> bool {
    value.is_finite() && value > 0.0
}

/// One miner's variable difficulty (Stratum V1): a pure state machine fed with events,
/// time passed in.
///
/// # What it does
///
/// [`Vardiff`] picks one miner's share difficulty so that it submits about one share
/// every [`VardiffConfig::target_interval_ms`] (default 10 s), between a floor and the
/// upstream's difficulty. A miner working above the upstream difficulty would lose pay:
/// the upstream credits each forwarded share at its own, lower difficulty, and the miner
/// would send fewer of them. So the upstream bound wins: the difficulty is always in
/// `[min(floor, upstream), upstream]`, where `floor` is the configured floor raised by
/// the miner's `mining.suggest_difficulty` ([`Vardiff::handle_suggest_difficulty`]).
///
/// Time is passed in as **milliseconds** (`now_ms: u64`) of any monotonic clock the
/// caller picks (integers: deterministic, no NaN); a clock that steps back counts as no
/// time passing. Difficulties are `f64` in Bitcoin difficulty-1 units (SV1 allows
/// fractions). Nothing here reads a clock, sleeps or does I/O: the caller feeds events
/// (`handle_*`) and calls [`Vardiff::poll`] at [`Vardiff::next_poll_ms`]; each returns
/// the new difficulty to send (`mining.set_difficulty`) when it changes.
///
/// # Retarget rules
///
/// Accepted shares are summed, each weighted by the difficulty it was checked at, over a
/// *window* that starts at the last retarget. A retarget is considered when
///
/// 1. at least [`min_retarget_interval_ms`](VardiffConfig::min_retarget_interval_ms)
///    (default 2 s) passed since the last one, **and**
/// 2. the window holds [`retarget_shares`](VardiffConfig::retarget_shares) shares
///    (default 12: the miner is fast) **or** lasted
///    [`window_ms`](VardiffConfig::window_ms) (default 60 s: six target intervals).
///
/// Then the ideal difficulty is `sum of share difficulties / elapsed × target
/// interval`; the change is limited to ×[`max_factor`](VardiffConfig::max_factor) or
/// ÷`max_factor` (default 4) per retarget, then clamped to the bounds; a change of less
/// than ×/÷[`tolerance`](VardiffConfig::tolerance) (default 1.5) is not made (share
/// counts are noisy: six Poisson arrivals are ±40 %). Either way a new window starts. A
/// window without shares thus divides the difficulty by 4 every minute, and a flooding
/// miner gets ×4 every 2 s. A lower upstream difficulty takes effect at once
/// ([`Vardiff::handle_upstream_difficulty`]).
///
/// # Cost
///
/// 40 bytes on 64-bit targets: the settings are an `Arc<VardiffConfig>` that every miner
/// of a proxy shares (pass one `Arc` to [`Vardiff::new`]; a plain `VardiffConfig` gets a
/// copy of its own), and what only a miner that found a share or made a suggestion needs
/// (the window's sums, the suggestion) is a 24-byte box made then: an idle miner has none.
///
/// ```
/// use nonce_split::{Vardiff, VardiffConfig};
///
/// let config = VardiffConfig { start: 1.0, ..VardiffConfig::default() };
/// let mut vardiff = Vardiff::new(config, 1024.0, 0)?;
/// // Twelve shares in three seconds: far too fast for one per 10 s.
/// let mut changed = None;
/// for i in 1..=12 {
///     changed = changed.or(vardiff.handle_share(i * 250, 1.0));
/// }
/// assert_eq!(changed, Some(4.0)); // ×4 at most per retarget
/// # Ok::<(), nonce_split::VardiffError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Vardiff {
    /// Shared: every miner of a proxy has the same settings, so each keeps a pointer to
    /// one copy (8 bytes) instead of its own 64.
    config: Arc<VardiffConfig>,
    upstream: f64,
    difficulty: f64,
    window_start_ms: u64,
    /// Made at the first counted share or suggestion; `None` reads as all zeros.
    active: Option<Box<Active>>,
}

/// What a [`Vardiff`] keeps once its miner found a share or made a suggestion.
#[derive(Debug, Clone, Default, PartialEq)]
struct Active {
    /// The miner's last valid suggestion (raises the configured floor); 0 for none (a
    /// suggestion is above 0).
    suggested: f64,
    window_difficulty: f64,
    window_shares: u32,
}

impl Vardiff {
    /// A miner's vardiff at `now_ms`, starting at `config.start` clamped to
    /// `[min(floor, upstream_difficulty), upstream_difficulty]`.
    ///
    /// # Errors
    ///
    /// [`VardiffError::InvalidConfig`] ([`VardiffConfig::validate`]),
    /// [`VardiffError::UpstreamDifficulty`] for an upstream difficulty that is not a
    /// finite number above 0.
    pub fn new(
        config: impl Into<Arc<VardiffConfig>>,
        upstream_difficulty: f64,
        now_ms: u64,
    ) -> Result<Self, VardiffError> {
        let config = config.into();
        config.validate()?;
        if !is_difficulty(upstream_difficulty) {
            return Err(VardiffError::UpstreamDifficulty(upstream_difficulty));
        }
        let start = config.start;
        let mut vardiff = Vardiff {
            config,
            upstream: upstream_difficulty,
            difficulty: start,
            window_start_ms: now_ms,
            active: None,
        };
        vardiff.difficulty = vardiff.clamp(start);
        Ok(vardiff)
    }

    /// Applies new settings (a configuration reload) from now on: the floor becomes
    /// `config.floor` raised by the miner's last suggestion, the difficulty is clamped to
    /// the new bounds (`config.start` is only for new miners), the window goes on.
    /// Returns the new difficulty if the clamp changed it.
    ///
    /// # Errors
    ///
    /// [`VardiffError::InvalidConfig`] ([`VardiffConfig::validate`]); nothing changes.
    pub fn set_config(
        &mut self,
        config: impl Into<Arc<VardiffConfig>>,
    ) -> Result<Option<f64>, VardiffError> {
        let config = config.into();
        config.validate()?;
        self.config = config;
        Ok(self.set(self.difficulty))
    }

    /// The settings in use.
    pub fn config(&self) -> &VardiffConfig {
        &self.config
    }

    /// The miner's current difficulty.
    pub fn difficulty(&self) -> f64 {
        self.difficulty
    }

    /// The current bounds `(low, high)`: `high` is the upstream difficulty, `low` the
    /// floor (raised by a suggestion) or `high` if that is lower.
    pub fn bounds(&self) -> (f64, f64) {
        let floor = self.config.floor.max(self.suggested());
        (floor.min(self.upstream), self.upstream)
    }

    /// The miner's last valid suggestion; 0 for none.
    fn suggested(&self) -> f64 {
        self.active.as_ref().map_or(0.0, |a| a.suggested)
    }

    /// The window's sums and the suggestion, boxed now if this miner had none yet.
    fn active(&mut self) -> &mut Active {
        self.active.get_or_insert_with(Box::default)
    }

    fn clamp(&self, difficulty: f64) -> f64 {
        let (low, high) = self.bounds();
        difficulty.max(low).min(high)
    }

    /// Sets the difficulty to `clamp(to)`; the new difficulty if it changed.
    fn set(&mut self, to: f64) -> Option<f64> {
        let to = self.clamp(to);
        if to == self.difficulty {
            None
        } else {
            self.difficulty = to;
            Some(to)
        }
    }

    /// The time at or after which [`poll`](Self::poll) may retarget without a new
    /// share, ms: the end of the window (or the minimum interval, if later).
    pub fn next_poll_ms(&self) -> u64 {
        // A retarget starts a new window: the last one was at `window_start_ms`.
        self.window_start_ms.saturating_add(
            self.config
                .window_ms
                .max(self.config.min_retarget_interval_ms),
        )
    }

    /// An accepted share at `now_ms`, checked at `share_difficulty` (the difficulty the
    /// miner was given for it, not the hash's own). Returns the new difficulty if this
    /// share triggers a retarget that changes it. A `share_difficulty` that is not a
    /// finite number above 0 is not counted (but may still trigger a due retarget).
    pub fn handle_share(&mut self, now_ms: u64, share_difficulty: f64) -> Option<f64> {
        if is_difficulty(share_difficulty) {
            let a = self.active();
            a.window_shares = a.window_shares.saturating_add(1);
            a.window_difficulty += share_difficulty;
        }
        self.poll(now_ms)
    }

    /// Retargets if one is due at `now_ms` (see the retarget rules on [`Vardiff`]); the new difficulty if
    /// it changed. Call it at [`next_poll_ms`](Self::next_poll_ms) so that a miner who
    /// stopped finding shares gets an easier difficulty.
    pub fn poll(&mut self, now_ms: u64) -> Option<f64> {
        // A window starts at each retarget, so its age is also the time since the last one.
        let elapsed = now_ms.saturating_sub(self.window_start_ms);
        let (shares, sum) = self
            .active
            .as_ref()
            .map_or((0, 0.0), |a| (a.window_shares, a.window_difficulty));
        if elapsed < self.config.min_retarget_interval_ms
            || (shares < self.config.retarget_shares && elapsed < self.config.window_ms)
        {
            return None;
        }
        // elapsed ≥ min_retarget_interval_ms ≥ 1: no division by 0.
        let ideal = sum * self.config.target_interval_ms as f64 / elapsed as f64;
        let max = self.config.max_factor;
        let ratio = (ideal / self.difficulty).clamp(1.0 / max, max);
        self.window_start_ms = now_ms;
        if let Some(a) = &mut self.active {
            a.window_shares = 0;
            a.window_difficulty = 0.0;
        }
        let tolerance = self.config.tolerance;
        if ratio < tolerance && ratio > 1.0 / tolerance {
            return None;
        }
        self.set(self.difficulty * ratio)
    }

    /// The upstream's difficulty changed to `difficulty` (its `mining.set_difficulty`).
    /// The miner's difficulty is clamped at once; returns it if it changed (a lower
    /// upstream). A higher upstream changes nothing now: vardiff may rise to it later.
    ///
    /// # Errors
    ///
    /// [`VardiffError::UpstreamDifficulty`] for a value that is not a finite number
    /// above 0; the previous upstream difficulty is kept.
    pub fn handle_upstream_difficulty(
        &mut self,
        difficulty: f64,
    ) -> Result<Option<f64>, VardiffError> {
        if !is_difficulty(difficulty) {
            return Err(VardiffError::UpstreamDifficulty(difficulty));
        }
        self.upstream = difficulty;
        Ok(self.set(self.difficulty))
    }

    /// The miner asked for `difficulty` (`mining.suggest_difficulty`, or the
    /// `minimum-difficulty` extension of `mining.configure`). Honoured within the
    /// bounds: the difficulty becomes `clamp(difficulty, configured floor, upstream)`,
    /// and the suggestion becomes this miner's floor (vardiff goes on above it, as in
    /// ckpool). Returns the new difficulty if it changed.
    ///
    /// # Errors
    ///
    /// [`VardiffError::SuggestedDifficulty`] for a value that is not a finite number
    /// above 0; nothing changes.
    pub fn handle_suggest_difficulty(
        &mut self,
        difficulty: f64,
    ) -> Result<Option<f64>, VardiffError> {
        if !is_difficulty(difficulty) {
            return Err(VardiffError::SuggestedDifficulty(difficulty));
        }
        self.active().suggested = difficulty;
        Ok(self.set(difficulty))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> VardiffConfig {
        VardiffConfig::default()
    }

    #[test]
    fn hashrate_is_two_to_the_32_times_difficulty_per_second() {
        assert_eq!(hashrate(1.0, 1.0), 4_294_967_296.0);
        assert_eq!(hashrate(1024.0, 60.0), 4_294_967_296.0 * 1024.0 / 60.0);
        assert_eq!(hashrate(0.5, 2.0), 1_073_741_824.0);
    }

    #[test]
    fn hashrate_of_bad_input_is_zero() {
        assert_eq!(hashrate(1.0, 0.0), 0.0);
        assert_eq!(hashrate(1.0, -3.0), 0.0);
        assert_eq!(hashrate(f64::NAN, 1.0), 0.0);
        assert_eq!(hashrate(1.0, f64::NAN), 0.0);
        assert_eq!(hashrate(f64::INFINITY, 1.0), 0.0);
        assert_eq!(hashrate(-1.0, 1.0), 0.0);
        assert_eq!(hashrate(f64::MAX, f64::MIN_POSITIVE), 0.0);
    }

    #[test]
    fn default_config_is_valid_and_bad_fields_are_named() {
        assert_eq!(config().validate(), Ok(()));
        let cases: [(VardiffConfig, &str); 8] = [
            (
                VardiffConfig {
                    target_interval_ms: 0,
                    ..config()
                },
                "target_interval_ms",
            ),
            (
                VardiffConfig {
                    retarget_shares: 0,
                    ..config()
                },
                "retarget_shares",
            ),
            (
                VardiffConfig {
                    window_ms: 0,
                    ..config()
                },
                "window_ms",
            ),
            (
                VardiffConfig {
                    min_retarget_interval_ms: 0,
                    ..config()
                },
                "min_retarget_interval_ms",
            ),
            (
                VardiffConfig {
                    floor: f64::NAN,
                    ..config()
                },
                "floor",
            ),
            (
                VardiffConfig {
                    start: 0.0,
                    ..config()
                },
                "start",
            ),
            (
                VardiffConfig {
                    max_factor: 1.0,
                    ..config()
                },
                "max_factor",
            ),
            (
                VardiffConfig {
                    tolerance: 4.0,
                    ..config()
                },
                "tolerance",
            ),
        ];
        for (bad, field) in cases {
            let err = Vardiff::new(bad, 1.0, 0).unwrap_err();
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn start_is_clamped_to_the_bounds() {
        let v = Vardiff::new(
            VardiffConfig {
                start: 500.0,
                ..config()
            },
            64.0,
            0,
        )
        .unwrap();
        assert_eq!(v.difficulty(), 64.0);
        let v = Vardiff::new(
            VardiffConfig {
                start: 0.01,
                ..config()
            },
            64.0,
            0,
        )
        .unwrap();
        assert_eq!(v.difficulty(), 1.0);
        // The upstream wins over the floor.
        let v = Vardiff::new(config(), 0.25, 0).unwrap();
        assert_eq!(v.difficulty(), 0.25);
        assert_eq!(v.bounds(), (0.25, 0.25));
        assert_eq!(
            Vardiff::new(config(), f64::NAN, 0).unwrap_err().to_string(),
            "upstream difficulty NaN is not a finite number above 0"
        );
        assert!(Vardiff::new(config(), 0.0, 0).is_err());
    }

    #[test]
    fn fast_miner_rises_by_at_most_four_once_the_interval_passed() {
        let mut v = Vardiff::new(config(), 1e6, 0).unwrap();
        // 100 shares in the first second: too soon to retarget.
        for i in 0..100 {
            assert_eq!(v.handle_share(i * 10, 1.0), None);
        }
        assert_eq!(v.handle_share(2_000, 1.0), Some(4.0));
        assert_eq!(v.difficulty(), 4.0);
    }

    #[test]
    fn silent_miner_falls_by_four_per_window_down_to_the_floor() {
        let mut v = Vardiff::new(
            VardiffConfig {
                start: 64.0,
                ..config()
            },
            1e6,
            0,
        )
        .unwrap();
        assert_eq!(v.next_poll_ms(), 60_000);
        assert_eq!(v.poll(59_999), None);
        assert_eq!(v.poll(60_000), Some(16.0));
        assert_eq!(v.next_poll_ms(), 120_000);
        assert_eq!(v.poll(120_000), Some(4.0));
        assert_eq!(v.poll(180_000), Some(1.0));
        assert_eq!(v.poll(240_000), None, "at the floor");
        assert_eq!(v.difficulty(), 1.0);
    }

    #[test]
    fn miner_near_the_target_rate_is_left_alone() {
        let mut v = Vardiff::new(
            VardiffConfig {
                start: 8.0,
                ..config()
            },
            1e6,
            0,
        )
        .unwrap();
        // Seven shares in a minute (aim: six): within ×1.5.
        for i in 1..=7 {
            assert_eq!(v.handle_share(i * 8_000, 8.0), None);
        }
        assert_eq!(v.poll(60_000), None);
        assert_eq!(v.difficulty(), 8.0);
    }

    #[test]
    fn estimate_weights_each_share_by_its_difficulty() {
        let mut v = Vardiff::new(
            VardiffConfig {
                start: 2.0,
                ..config()
            },
            1e6,
            0,
        )
        .unwrap();
        // 12 shares in 60 s at difficulty 2 = 24 difficulty per minute: ideal 4.
        for i in 1..=11 {
            assert_eq!(v.handle_share(i * 5_000, 2.0), None);
        }
        assert_eq!(v.handle_share(60_000, 2.0), Some(4.0));
    }

    #[test]
    fn lower_upstream_clamps_at_once_higher_waits_for_vardiff() {
        let mut v = Vardiff::new(
            VardiffConfig {
                start: 100.0,
                ..config()
            },
            1000.0,
            0,
        )
        .unwrap();
        assert_eq!(v.handle_upstream_difficulty(50.0), Ok(Some(50.0)));
        assert_eq!(v.handle_upstream_difficulty(5000.0), Ok(None));
        assert_eq!(v.difficulty(), 50.0);
        assert_eq!(
            v.handle_upstream_difficulty(-1.0),
            Err(VardiffError::UpstreamDifficulty(-1.0))
        );
        assert_eq!(v.bounds(), (1.0, 5000.0));
    }

    #[test]
    fn suggestion_is_honoured_within_bounds_and_becomes_the_floor() {
        let mut v = Vardiff::new(
            VardiffConfig {
                start: 16.0,
                ..config()
            },
            1000.0,
            0,
        )
        .unwrap();
        assert_eq!(v.handle_suggest_difficulty(256.0), Ok(Some(256.0)));
        assert_eq!(v.bounds(), (256.0, 1000.0));
        // A silent minute does not take it below the suggestion.
        assert_eq!(v.poll(60_000), None);
        assert_eq!(v.difficulty(), 256.0);
        // Above the upstream: capped there.
        assert_eq!(v.handle_suggest_difficulty(1e9), Ok(Some(1000.0)));
        // Below the configured floor: the floor.
        assert_eq!(v.handle_suggest_difficulty(0.001), Ok(Some(1.0)));
        assert_eq!(v.bounds(), (1.0, 1000.0));
        assert_eq!(
            v.handle_suggest_difficulty(f64::INFINITY),
            Err(VardiffError::SuggestedDifficulty(f64::INFINITY))
        );
    }

    #[test]
    fn reload_clamps_to_the_new_floor_and_keeps_the_suggestion() {
        let mut v = Vardiff::new(
            VardiffConfig {
                start: 8.0,
                ..config()
            },
            1000.0,
            0,
        )
        .unwrap();
        assert_eq!(
            v.set_config(VardiffConfig {
                floor: 32.0,
                ..config()
            }),
            Ok(Some(32.0))
        );
        assert_eq!(v.bounds(), (32.0, 1000.0));
        assert_eq!(v.handle_suggest_difficulty(100.0), Ok(Some(100.0)));
        assert_eq!(v.set_config(config()), Ok(None));
        assert_eq!(v.bounds(), (100.0, 1000.0), "the suggestion still holds");
        let bad = VardiffConfig {
            max_factor: 0.5,
            ..config()
        };
        assert!(v.set_config(bad).is_err());
        assert_eq!(v.config(), &config());
        // The new target rate is used from the next retarget on: 6 shares of 100 in
        // 60 s at one per 20 s is an ideal of 200.
        v.set_config(VardiffConfig {
            target_interval_ms: 20_000,
            ..config()
        })
        .unwrap();
        for i in 1..=6 {
            assert_eq!(
                v.handle_share(i * 10_000, 100.0),
                if i == 6 { Some(200.0) } else { None }
            );
        }
    }

    #[test]
    fn clock_stepping_back_is_no_time_and_no_panic() {
        let mut v = Vardiff::new(config(), 1e6, 10_000).unwrap();
        assert_eq!(v.handle_share(5_000, 1.0), None);
        assert_eq!(v.poll(0), None);
        let mut far = Vardiff::new(config(), 1e6, u64::MAX - 5).unwrap();
        assert_eq!(far.next_poll_ms(), u64::MAX);
        assert_eq!(
            far.poll(u64::MAX),
            None,
            "less than the window and the interval"
        );
    }

    #[test]
    fn bad_share_difficulty_is_not_counted() {
        let mut v = Vardiff::new(config(), 1e6, 0).unwrap();
        for i in 0..20 {
            assert_eq!(v.handle_share(i, f64::NAN), None);
        }
        // No counted shares: the window closes at 60 s; already at the floor.
        assert_eq!(v.handle_share(2_000, -1.0), None);
        assert_eq!(v.poll(60_000), None);
        assert_eq!(v.difficulty(), 1.0);
    }

    #[test]
    fn vardiff_is_40_bytes_as_documented_and_shares_its_settings() {
        assert_eq!(std::mem::size_of::<Vardiff>(), 40);
        let config = Arc::new(VardiffConfig::default());
        let a = Vardiff::new(config.clone(), 1024.0, 0).unwrap();
        let mut b = Vardiff::new(config.clone(), 1024.0, 0).unwrap();
        assert_eq!(Arc::strong_count(&config), 3);
        assert_eq!(a.config(), &*config);
        b.set_config(VardiffConfig::default()).unwrap();
        assert_eq!(Arc::strong_count(&config), 2);
    }

    #[test]
    fn an_idle_miner_keeps_no_window_box_until_a_share_or_a_suggestion() {
        let mut v = Vardiff::new(config(), 1024.0, 0).unwrap();
        assert!(v.active.is_none());
        // A retarget with no shares (÷4 after the 60 s window) needs none either.
        assert_eq!(v.poll(60_000), None, "already at the floor");
        assert_eq!(v.handle_share(61_000, f64::NAN), None);
        assert!(v.active.is_none(), "an uncounted share makes none");
        assert_eq!(v.handle_share(62_000, 1.0), None);
        assert_eq!(
            v.active.as_deref(),
            Some(&Active {
                suggested: 0.0,
                window_difficulty: 1.0,
                window_shares: 1,
            })
        );
        let mut s = Vardiff::new(config(), 1024.0, 0).unwrap();
        assert_eq!(s.handle_suggest_difficulty(8.0), Ok(Some(8.0)));
        assert_eq!(s.active.as_ref().map(|a| a.suggested), Some(8.0));
        assert_eq!(s.bounds(), (8.0, 1024.0));
    }
}
