//! A miner's session (go-proxy RFC §6.1–6.3, §14): its [`Phase`], advanced only here by
//! [`Session`]; the login rules, the submit checks of RFC §6.2 steps 1–3, the
//! custom-difficulty suffix and the share tally of the invalid-share rule.
//!
//! ```text
//! WaitLogin --login--> WaitReady --first job--> Ready --close--> Closing
//!     ^                    |
//!     +--- login_refused --+   (no upstream could take the miner)
//! ```
//!
//! The checks of a share against the upstream's jobs (steps 4 on) are the [`Channel`]'s
//! (`crate::Channel`); together they are every refusal of RFC §6.2, each in one place.
//!
//! [`Channel`]: crate::Channel

use stratum_proto::{parse_nonce, result_difficulty, Id};
use uuid::Uuid;

use crate::Refusal;

/// Lifecycle phase of a miner session (RFC §6); the numbers are the API's `state` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Connected, no login yet (10 s limit).
    WaitLogin = 0,
    /// Logged in, waiting for the first job from the upstream.
    WaitReady = 1,
    /// Receiving jobs and submitting shares.
    Ready = 2,
    /// Being closed.
    Closing = 3,
}

/// What a job from the miner's upstream means for its session ([`Session::on_job`]).
#[derive(Debug, Clone, PartialEq)]
pub enum JobFor {
    /// The first job: answer the login request `request_id` with the session id and the job
    /// at `difficulty` (the login reply waited for it).
    LoginReply {
        /// The login request's JSON-RPC id.
        request_id: Id,
        /// The session id to give the miner.
        session: Uuid,
        /// The difficulty the miner works at.
        difficulty: u64,
    },
    /// A `job` notification at `difficulty`.
    Job {
        /// The difficulty the miner works at.
        difficulty: u64,
    },
    /// Nothing to send (not logged in, or closing).
    Nothing,
}

/// One miner's session state; `R` is the driver's route to the miner's upstream.
#[derive(Debug)]
pub struct Session<R> {
    phase: Phase,
    id: Option<Uuid>,
    route: Option<R>,
    /// The login request's id while its reply waits for the first job.
    login_id: Option<Box<Id>>,
    /// Difficulty of the last job sent (the custom one when it applies).
    diff: u64,
    /// Custom difficulty from the login suffix or `custom-diff`; 0 = the pool's (RFC §14).
    custom_diff: u64,
    tally: ShareTally,
}

impl<R> Default for Session<R> {
    fn default() -> Self {
        Self {
            phase: Phase::WaitLogin,
            id: None,
            route: None,
            login_id: None,
            diff: 0,
            custom_diff: 0,
            tally: ShareTally::default(),
        }
    }
}

impl<R> Session<R> {
    /// A session waiting for its login.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The session id, from login on.
    pub fn id(&self) -> Option<Uuid> {
        self.id
    }

    /// Difficulty of the last job sent; 0 before the first.
    pub fn diff(&self) -> u64 {
        self.diff
    }

    /// The miner's custom difficulty; 0 = the pool's.
    pub fn custom_diff(&self) -> u64 {
        self.custom_diff
    }

    /// The route to the miner's upstream, once routed.
    pub fn route(&self) -> Option<&R> {
        self.route.as_ref()
    }

    /// Routes the miner (its upstream took it).
    pub fn set_route(&mut self, route: R) {
        self.route = Some(route);
    }

    /// Takes the route away (the miner leaves its upstream); `None` the second time, so
    /// that a slot is given back once.
    pub fn take_route(&mut self) -> Option<R> {
        self.route.take()
    }

    /// A `login` request `request_id` (RFC §6.1): checks the phase and the rules, and on
    /// success waits for the first job under session id `session`.
    ///
    /// # Errors
    /// [`Refusal::AlreadyLoggedIn`] after a login, else those of [`check_login`].
    pub fn login<'a>(
        &mut self,
        session: Uuid,
        request_id: Id,
        login: &'a str,
        pass: &str,
        rules: &LoginRules<'_>,
    ) -> Result<LoginOk<'a>, Refusal> {
        if self.phase != Phase::WaitLogin {
            return Err(Refusal::AlreadyLoggedIn);
        }
        let ok = check_login(login, pass, rules)?;
        self.id = Some(session);
        self.custom_diff = ok.custom_diff;
        self.login_id = Some(Box::new(request_id));
        self.phase = Phase::WaitReady;
        Ok(ok)
    }

    /// No upstream could take the miner: back to waiting for a login.
    pub fn login_refused(&mut self) {
        self.phase = Phase::WaitLogin;
        self.id = None;
        self.login_id = None;
    }

    /// A job at the pool's difficulty `pool_difficulty` for this miner: the login reply when
    /// it is the first (the session becomes [`Phase::Ready`]), else a notification.
    pub fn on_job(&mut self, pool_difficulty: u64) -> JobFor {
        let difficulty = crate::effective_difficulty(self.custom_diff, pool_difficulty);
        match self.phase {
            Phase::WaitReady => {
                let (Some(request_id), Some(session)) = (self.login_id.take(), self.id) else {
                    return JobFor::Nothing;
                };
                self.phase = Phase::Ready;
                self.diff = difficulty;
                JobFor::LoginReply {
                    request_id: *request_id,
                    session,
                    difficulty,
                }
            }
            Phase::Ready => {
                self.diff = difficulty;
                JobFor::Job { difficulty }
            }
            Phase::WaitLogin | Phase::Closing => JobFor::Nothing,
        }
    }

    /// The route, when `given` (a request's `params.id`) is this session's id (`keepalived`,
    /// `getjob`).
    pub fn route_for(&self, given: &str) -> Option<&R> {
        self.matches(given).then_some(self.route.as_ref()).flatten()
    }

    /// A `submit`'s session check (RFC §6.2 step 1): the route and the custom difficulty.
    ///
    /// # Errors
    /// [`Refusal::Unauthenticated`] before the first job, with another session's id, or
    /// without a route.
    pub fn submit_route(&self, given: &str) -> Result<(&R, u64), Refusal> {
        if self.phase != Phase::Ready || !self.matches(given) {
            return Err(Refusal::Unauthenticated);
        }
        let route = self.route.as_ref().ok_or(Refusal::Unauthenticated)?;
        Ok((route, self.custom_diff))
    }

    /// The connection is closing.
    pub fn close(&mut self) {
        self.phase = Phase::Closing;
    }

    /// Counts one answered share for the invalid-share rule; the tally after it.
    pub fn count_share(&mut self, valid: bool) -> ShareTally {
        self.tally.count(valid);
        self.tally
    }

    fn matches(&self, given: &str) -> bool {
        self.id
            .is_some_and(|s| Uuid::parse_str(given).is_ok_and(|g| g == s))
    }
}

/// The login rules of the running config (RFC §6.1, §14).
#[derive(Debug, Clone, Copy, Default)]
pub struct LoginRules<'a> {
    /// `access-password` when set and non-empty: a login must give it as `pass`.
    pub access_password: Option<&'a str>,
    /// `custom-diff`: the difficulty of a miner whose login has no `+DIFF` suffix; 0 = the
    /// pool's.
    pub custom_diff: u64,
    /// `custom-diff-min`: the floor of any custom difficulty (issue 10 item 4).
    pub custom_diff_min: u64,
}

/// A login that passed the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginOk<'a> {
    /// `params.login` without its `+DIFF` suffix.
    pub user: &'a str,
    /// The miner's custom difficulty, at or above the floor; 0 = the pool's.
    pub custom_diff: u64,
}

/// Checks a `login`'s `params.login` and `params.pass` (RFC §6.1) and works out the miner's
/// custom difficulty: the login's `+DIFF` suffix, else `custom-diff`, raised to
/// `custom-diff-min` (RFC §14).
///
/// # Errors
/// [`Refusal::InvalidAddress`] for an empty login, [`Refusal::InvalidPassword`] for a wrong
/// password.
pub fn check_login<'a>(
    login: &'a str,
    pass: &str,
    rules: &LoginRules<'_>,
) -> Result<LoginOk<'a>, Refusal> {
    if login.is_empty() {
        return Err(Refusal::InvalidAddress);
    }
    if rules.access_password.is_some_and(|pw| pw != pass) {
        return Err(Refusal::InvalidPassword);
    }
    let (user, suffix) = split_custom_diff(login);
    let requested = if suffix > 0 {
        suffix
    } else {
        rules.custom_diff
    };
    let custom_diff = floor_custom_diff(requested, rules.custom_diff_min);
    Ok(LoginOk { user, custom_diff })
}

/// A requested custom difficulty raised to the floor `min` (`custom-diff-min`, issue 10
/// item 4); 0 (none: the pool's) stays 0.
pub fn floor_custom_diff(requested: u64, min: u64) -> u64 {
    if requested == 0 {
        0
    } else {
        requested.max(min)
    }
}

/// A submit whose own fields are well formed (RFC §6.2 steps 2–3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubmitFields {
    /// The 4 nonce bytes, blob order (little-endian).
    pub nonce: [u8; 4],
    /// The difficulty the share's `result` hash meets.
    pub share_diff: u64,
}

/// Checks a submit's `job_id`, `nonce` and `result` (RFC §6.2 steps 2–3).
///
/// # Errors
/// [`Refusal::MissingJobId`], [`Refusal::InvalidNonce`] or [`Refusal::InvalidResult`], in
/// that order.
pub fn check_submit(job_id: &str, nonce: &str, result: &str) -> Result<SubmitFields, Refusal> {
    if job_id.is_empty() {
        return Err(Refusal::MissingJobId);
    }
    let nonce = parse_nonce(nonce).ok_or(Refusal::InvalidNonce)?;
    let share_diff = result_difficulty(result).ok_or(Refusal::InvalidResult)?;
    Ok(SubmitFields { nonce, share_diff })
}

/// Splits a `WALLET+DIFF` login into the wallet and the custom difficulty (RFC §14):
/// `"W+50000"` → `("W", 50000)`; anything else → the login unchanged and 0.
pub fn split_custom_diff(login: &str) -> (&str, u64) {
    match login.rsplit_once('+') {
        Some((user, diff))
            if !user.is_empty() && !diff.is_empty() && diff.bytes().all(|b| b.is_ascii_digit()) =>
        {
            (user, diff.parse().unwrap_or(0))
        }
        _ => (login, 0),
    }
}

/// A connection's answered shares: accepted (by the pool or locally) and invalid (refused
/// by the proxy or the pool), for the invalid-share rule. When a count reaches `u16::MAX`
/// both are halved, which keeps their ratio (and 4 bytes per miner).
#[derive(Debug, Clone, Copy, Default)]
pub struct ShareTally {
    /// Shares accepted.
    pub valid: u16,
    /// Shares refused (stale jobs excepted).
    pub invalid: u16,
}

impl ShareTally {
    /// Counts one share.
    pub fn count(&mut self, valid: bool) {
        if self.valid == u16::MAX || self.invalid == u16::MAX {
            self.valid /= 2;
            self.invalid /= 2;
        }
        if valid {
            self.valid += 1;
        } else {
            self.invalid += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH_DIFF_1K: &str = "0000000000000000000000000000000000000000000000000000000000410000";

    #[test]
    fn the_share_tally_halves_at_its_limit_and_keeps_the_ratio() {
        let mut t = ShareTally::default();
        for i in 0..200_000u32 {
            t.count(i % 4 != 0);
        }
        assert!(t.valid >= u16::MAX / 2, "{t:?}");
        let ratio = f64::from(t.invalid) / (f64::from(t.valid) + f64::from(t.invalid));
        assert!((ratio - 0.25).abs() < 0.01, "{t:?}");
    }

    #[test]
    fn custom_diff_suffix() {
        // RFC §22 customdiff cases.
        assert_eq!(split_custom_diff("WALLET+50000"), ("WALLET", 50000));
        assert_eq!(split_custom_diff("WALLET+abc"), ("WALLET+abc", 0));
        assert_eq!(split_custom_diff("WALLET"), ("WALLET", 0));
        assert_eq!(split_custom_diff("WALLET+"), ("WALLET+", 0));
        assert_eq!(split_custom_diff("+500"), ("+500", 0));
        assert_eq!(split_custom_diff("a+b+700"), ("a+b", 700));
        assert_eq!(
            split_custom_diff("W+99999999999999999999999"),
            ("W", 0),
            "overflow is no difficulty"
        );
    }

    #[test]
    fn a_login_is_refused_without_an_address_or_with_a_wrong_password() {
        let open = LoginRules::default();
        assert_eq!(check_login("", "x", &open), Err(Refusal::InvalidAddress));
        let closed = LoginRules {
            access_password: Some("secret"),
            ..open
        };
        assert_eq!(
            check_login("W", "x", &closed),
            Err(Refusal::InvalidPassword)
        );
        assert_eq!(
            check_login("W", "secret", &closed),
            Ok(LoginOk {
                user: "W",
                custom_diff: 0
            })
        );
    }

    #[test]
    fn custom_difficulty_comes_from_the_suffix_else_the_config_and_never_below_the_floor() {
        let rules = LoginRules {
            access_password: None,
            custom_diff: 5_000,
            custom_diff_min: 1_000,
        };
        let diff = |login| check_login(login, "", &rules).map(|l| l.custom_diff);
        assert_eq!(diff("W+20000"), Ok(20_000));
        assert_eq!(diff("W"), Ok(5_000), "custom-diff without a suffix");
        assert_eq!(diff("W+10"), Ok(1_000), "raised to custom-diff-min");
        let no_default = LoginRules {
            custom_diff: 0,
            ..rules
        };
        assert_eq!(
            check_login("W", "", &no_default).map(|l| l.custom_diff),
            Ok(0),
            "no custom difficulty at all: the pool's"
        );
    }

    const SID: Uuid = Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);

    fn logged_in(login: &str) -> Session<&'static str> {
        let mut s = Session::new();
        s.login(SID, Id::from(1), login, "", &LoginRules::default())
            .unwrap();
        s.set_route("upstream-1");
        s
    }

    #[test]
    fn login_waits_for_the_first_job_which_carries_the_reply() {
        let mut s = logged_in("W+500");
        assert_eq!(s.phase(), Phase::WaitReady);
        assert_eq!(
            s.submit_route(&SID.to_string()),
            Err(Refusal::Unauthenticated),
            "no share before the first job"
        );
        assert_eq!(
            s.on_job(1000),
            JobFor::LoginReply {
                request_id: Id::from(1),
                session: SID,
                difficulty: 500
            }
        );
        assert_eq!(s.phase(), Phase::Ready);
        assert_eq!(
            s.on_job(300),
            JobFor::Job { difficulty: 300 },
            "custom above the pool's"
        );
        assert_eq!(s.diff(), 300);
        assert_eq!(s.submit_route(&SID.to_string()), Ok((&"upstream-1", 500)));
    }

    #[test]
    fn a_second_login_and_a_foreign_session_id_are_refused() {
        let mut s = logged_in("W");
        assert_eq!(
            s.login(SID, Id::from(2), "W", "", &LoginRules::default()),
            Err(Refusal::AlreadyLoggedIn)
        );
        s.on_job(1000);
        assert_eq!(
            s.submit_route("00000000-0000-0000-0000-000000000000"),
            Err(Refusal::Unauthenticated)
        );
        assert_eq!(s.submit_route("not a uuid"), Err(Refusal::Unauthenticated));
        assert_eq!(s.route_for(&SID.to_string()), Some(&"upstream-1"));
        assert_eq!(s.route_for("nope"), None);
    }

    #[test]
    fn a_refused_login_can_be_tried_again_and_a_closed_session_gets_no_job() {
        let mut s: Session<&str> = Session::new();
        assert_eq!(
            s.login(SID, Id::from(1), "", "", &LoginRules::default()),
            Err(Refusal::InvalidAddress)
        );
        assert_eq!(
            s.phase(),
            Phase::WaitLogin,
            "a refused login changes nothing"
        );
        s.login(SID, Id::from(1), "W", "", &LoginRules::default())
            .unwrap();
        s.login_refused();
        assert_eq!((s.phase(), s.id()), (Phase::WaitLogin, None));
        assert_eq!(s.on_job(1000), JobFor::Nothing);
        s.login(SID, Id::from(3), "W", "", &LoginRules::default())
            .unwrap();
        s.close();
        assert_eq!(s.on_job(1000), JobFor::Nothing);
        assert_eq!(s.phase(), Phase::Closing);
    }

    #[test]
    fn the_route_is_taken_once() {
        let mut s = logged_in("W");
        assert_eq!(s.take_route(), Some("upstream-1"));
        assert_eq!(s.take_route(), None);
    }

    #[test]
    fn submit_fields_are_checked_in_the_spec_order() {
        assert_eq!(check_submit("", "zz", "zz"), Err(Refusal::MissingJobId));
        assert_eq!(
            check_submit("j", "zz", HASH_DIFF_1K),
            Err(Refusal::InvalidNonce)
        );
        assert_eq!(
            check_submit("j", "0000000a", "beef"),
            Err(Refusal::InvalidResult)
        );
        let ok = check_submit("j", "0a000000", HASH_DIFF_1K).unwrap();
        assert_eq!(ok.nonce, [0x0a, 0, 0, 0]);
        assert!(ok.share_diff > 0);
    }
}
