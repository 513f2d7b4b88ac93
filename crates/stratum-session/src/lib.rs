//! Sans-IO miner sessions and upstream channels of the proxy (CryptoNote, go-proxy RFC §6,
//! §8, §9, §14; Bitcoin Stratum V1 in [`sv1`]).
//!
//! This crate owns the protocol decisions of the share and login paths; `proxy-core` only
//! moves bytes and time (as `quinn-proto` and `quinn`). It does no I/O, reads no clock
//! (every `now` is passed in), takes no lock and depends on no async runtime; `cargo xtask
//! tidy` checks the last.
//!
//! - [`session`]: a miner's [`Session`] (its [`Phase`], advanced only there; session id,
//!   route, custom difficulty, invalid-share tally) and its own checks: the login rules
//!   ([`check_login`]), the submit fields of RFC §6.2 steps 2–3 ([`check_submit`]), the
//!   `+DIFF` suffix.
//! - [`channel`]: one upstream's state ([`Channel`]): slots, current and previous job,
//!   duplicate memory, the share checks against the jobs and the shares in flight.
//! - [`WorkerName`]: a login or worker name as its account part (shared between miners
//!   by the driver) and the miner's own worker part.
//! - [`Refusal`]: every error message the proxy answers a miner with, once.
//! - [`sv1`]: the same for Bitcoin Stratum V1 miners (issue 12): `sv1::Session` (subscribe,
//!   authorize, configure, vardiff), `sv1::Channel` (extranonce split, jobs, sha256d share
//!   checks, shares in flight), `sv1::Refusal` (codes 20..=25).
//! - [`seam`]: what the driver asks of any family's session ([`MinerSession`]) and channel
//!   ([`UpstreamChannel`]), implemented here for CryptoNote's.
//!
//! A share's path through it: [`check_submit`] → [`Channel::check_share`] →
//! [`Checked::Local`] (answered `OK` by the driver) or [`Checked::Forward`] →
//! [`Channel::add_pending`] → the driver writes to the pool → [`Channel::on_result`].
//! Every share gets exactly one verdict: a refusal, a local `OK`, or the pool's answer taken
//! out of `pending` once.

pub mod channel;
mod name;
mod refusal;
pub mod seam;
mod seen;
pub mod session;
pub mod sv1;

pub use channel::{
    effective_difficulty, Channel, ChannelJob, Checked, ShareIn, NICEHASH_SLOTS,
    SEEN_NONCES_PER_JOB,
};
pub use name::WorkerName;
pub use refusal::Refusal;
pub use seam::{MinerSession, UpstreamChannel};
pub use session::{
    check_login, check_submit, floor_custom_diff, split_custom_diff, JobFor, LoginOk, LoginRules,
    Phase, Session, ShareTally, SubmitFields,
};

/// `s` cut to at most `max` bytes, at the last UTF-8 character boundary at or before
/// `max` (a character is never split); `s` itself when it is no longer. For text from a
/// miner or a pool kept or passed on with a length bound (user agents, worker names, pool
/// messages).
pub fn cut_at_char_boundary(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests;
