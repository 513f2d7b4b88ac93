//! A miner's own checks, before any upstream is involved (go-proxy RFC §6.1–6.3, §14): the
//! login rules, the submit checks of RFC §6.2 steps 2–3, the custom-difficulty suffix and the
//! share tally of the invalid-share rule.
//!
//! The checks of a share against the upstream's jobs (steps 4 on) are the [`Channel`]'s
//! (`crate::Channel`); together they are every refusal of RFC §6.2, each in one place.
//!
//! [`Channel`]: crate::Channel

use stratum_proto::{parse_nonce, result_difficulty};

use crate::Refusal;

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
