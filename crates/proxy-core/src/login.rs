//! What a miner sent at login, as the proxy keeps it (shared by the session driver, the
//! worker records and the logs).

use std::sync::Arc;

/// What a miner sent at login. The strings many miners share (wallet, password, agent) are
/// shared copies; the custom-difficulty suffix of the login is cut off.
#[derive(Debug, Clone, Default)]
pub struct LoginInfo {
    /// `params.login`, without a `+DIFF` suffix (RFC §14).
    pub user: Arc<str>,
    /// `params.pass`.
    pub pass: Arc<str>,
    /// `params.agent`.
    pub agent: Arc<str>,
    /// `params.rigid`, when not empty (shared with the worker record it names).
    pub rig_id: Option<Arc<str>>,
}
