//! Sans-IO Stratum V1 (Bitcoin) miner side: many SV1 miners split over one upstream
//! subscription or one solo job source (issue 12 items 2 to 4; slush's protocol,
//! `shared/spec/stratum-v1-slush.md`; BIP 310 for `mining.configure`).
//!
//! The same shape as the CryptoNote side of this crate, so that one driver runs both:
//!
//! - [`Session`] (per miner connection): its [`Phase`] (`Connected → Subscribed →
//!   Authorized → Closing`), the answers to `mining.configure`, `subscribe`, `authorize`,
//!   `extranonce.subscribe`, `suggest_difficulty` and bad lines, as [`Output`]s; the
//!   negotiated version mask (the miner's AND the upstream's); the miner's difficulty
//!   (vardiff, [`nonce_split::Vardiff`]: a share every ~10 s by default, at or above the
//!   floor and the miner's suggestion, at most the upstream's difficulty; a change is sent
//!   as `mining.set_difficulty` just before the next `mining.notify`, since the spec
//!   applies a difficulty to the next job); its workers and share tally.
//! - [`Channel`] (per upstream): the extranonce split ([`nonce_split::ExtranonceSplit`]:
//!   each miner's extranonce1 is the upstream's ‖ a tail, its extranonce2_size the
//!   upstream's minus the tail, at least `min-extranonce2-size` (default 4) and at most 8),
//!   the jobs (a clean job voids the others; older ones kept until then, [`MAX_JOBS`] at
//!   most), the upstream's difficulty (per job: a `mining.set_difficulty` applies to the
//!   next job) and version mask, [`Channel::check_share`], and the shares in flight.
//! - [`Refusal`]: every error answered to a miner, with its code (20 other, 21 job not
//!   found, 22 duplicate, 23 low difficulty, 24 unauthorized, 25 not subscribed).
//!
//! Units: difficulties are `f64` in Bitcoin difficulty-1 units (a hash meets difficulty
//! `d` when it is at most `0xffff · 2^208 / d`; fractions allowed); times are
//! `std::time::Instant`s passed in; byte fields are decoded bytes (hex is the codec's,
//! `stratum_proto::sv1`).
//!
//! A share's path: [`Session::submit`] (subscribed? worker authorized?) →
//! [`Channel::check_share`] (job kept, slot, extranonce2 size, ntime window, version bits,
//! sha256d against the miner's difficulty, duplicate by header hash) → [`Checked::Local`]
//! (answered `true` by the driver) or [`Checked::Forward`] (meets the upstream's
//! difficulty or the network target: sent upstream with extranonce2 = tail ‖ the miner's,
//! after [`Channel::add_pending`]) → [`Channel::on_result`] once. [`Session::on_valid_share`]
//! feeds vardiff; [`Session::count_verdict`] the invalid-share tally. Every share gets
//! exactly one verdict: a refusal, a local `true`, or the one answer taken out of
//! `pending` by `on_result`, [`Channel::expire`] or [`Channel::on_session_end`].
//!
//! When the upstream's extranonce1 changes (`mining.set_extranonce`),
//! [`Channel::on_set_extranonce`] lists the miners concerned; [`Session::on_extranonce_change`]
//! says `mining.set_extranonce` (the miner subscribed to it, the size unchanged) or
//! `client.reconnect`.

mod channel;
mod refusal;
mod seen;
mod session;

pub use channel::{
    Accepted, Assignment, Channel, Checked, ExtranonceChange, Forward, JobRef, JobSeq,
    NewExtranonce, ShareDifficulty, ShareIn, Sv1Job, UpstreamError, MAX_JOBS, NTIME_MAX_AHEAD_SECS,
    SEEN_SHARES_PER_JOB,
};
pub use refusal::Refusal;
pub use session::{
    check_worker_name, split_worker, AuthorizeRules, JobFor, Output, Phase, Reply, Session,
    MAX_USER_AGENT_LEN, MAX_WORKERS_PER_CONNECTION, MAX_WORKER_NAME_LEN,
};

#[cfg(test)]
mod tests;
