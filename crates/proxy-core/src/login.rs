//! What a miner sent at login, as the proxy keeps it (shared by the session driver, the
//! worker records and the logs).

use arcstr::ArcStr;
use stratum_session::WorkerName;

/// What a miner sent at login, 40 bytes. The strings many miners share (wallet or address,
/// password, agent) are shared copies; a user `account.worker` keeps its own block only for
/// the worker part; the custom-difficulty suffix of the login is cut off.
#[derive(Debug, Clone, Default)]
pub struct LoginInfo {
    /// `params.login` (CryptoNote, without a `+DIFF` suffix, RFC §14) or the first
    /// worker's `mining.authorize` name (Stratum V1), its account part shared.
    pub user: WorkerName,
    /// `params.pass`.
    pub pass: ArcStr,
    /// `params.agent`.
    pub agent: ArcStr,
    /// `params.rigid`, when not empty (shared with the worker record it names).
    pub rig_id: Option<ArcStr>,
}
