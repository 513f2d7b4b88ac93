//! Every refusal the proxy answers a miner with, in one place (go-proxy RFC §6, §8.2, §14).

/// Why the proxy refuses a miner's request. The [`Display`](std::fmt::Display) text (and
/// [`Refusal::message`]) is the JSON-RPC error message of the spec, byte for byte: miners and
/// tests match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A `submit`, `keepalived` or `getjob` without a session, or with another session's id
    /// (RFC §6.2 step 1).
    #[error("Unauthenticated")]
    Unauthenticated,
    /// A second `login` on one connection (RFC §6.1).
    #[error("Already logged in")]
    AlreadyLoggedIn,
    /// `login` with an empty `params.login` (RFC §6.1).
    #[error("Invalid payment address provided")]
    InvalidAddress,
    /// `login` whose `pass` is not the configured `access-password` (RFC §6.1).
    #[error("Invalid password")]
    InvalidPassword,
    /// No upstream can take another miner (RFC §8.1 `OnLogin`).
    #[error("Proxy is full, try again later")]
    ProxyFull,
    /// `getjob` before the upstream has a job.
    #[error("No job available yet")]
    NoJobYet,
    /// `submit` with an empty `job_id` (RFC §6.2 step 2).
    #[error("Missing job id")]
    MissingJobId,
    /// `submit` whose `nonce` is not 8 hex characters (RFC §6.2 step 2).
    #[error("Invalid nonce")]
    InvalidNonce,
    /// `submit` whose `result` is not a 32-byte hash in hex (RFC §6.2 step 3).
    #[error("Invalid result")]
    InvalidResult,
    /// A share for a job that is neither the upstream's current nor its previous one
    /// (RFC §8.2): stale, not the miner's fault.
    #[error("Invalid job id")]
    StaleJob,
    /// In NiceHash mode, a nonce whose fixed byte is not the miner's (RFC §8.2).
    #[error("Invalid nonce; is miner not compatible with NiceHash?")]
    WrongFixedByte,
    /// The share names another algorithm than the job's (RFC §6.2, algo extension).
    #[error("Incorrect algorithm")]
    WrongAlgorithm,
    /// The share's hash does not meet the miner's difficulty (RFC §6.2 step 4, §14).
    #[error("Low difficulty share")]
    LowDifficulty,
    /// The same nonce again for the same job (issue 10 item 3); never forwarded.
    #[error("Duplicate share")]
    Duplicate,
}

impl Refusal {
    /// The spec's error message, e.g. `"Low difficulty share"`.
    pub const fn message(self) -> &'static str {
        match self {
            Self::Unauthenticated => "Unauthenticated",
            Self::AlreadyLoggedIn => "Already logged in",
            Self::InvalidAddress => "Invalid payment address provided",
            Self::InvalidPassword => "Invalid password",
            Self::ProxyFull => "Proxy is full, try again later",
            Self::NoJobYet => "No job available yet",
            Self::MissingJobId => "Missing job id",
            Self::InvalidNonce => "Invalid nonce",
            Self::InvalidResult => "Invalid result",
            Self::StaleJob => "Invalid job id",
            Self::WrongFixedByte => "Invalid nonce; is miner not compatible with NiceHash?",
            Self::WrongAlgorithm => "Incorrect algorithm",
            Self::LowDifficulty => "Low difficulty share",
            Self::Duplicate => "Duplicate share",
        }
    }

    /// True when the refusal counts against the miner's work under the invalid-share rule
    /// (`rate-limit.invalid-shares`): every share refusal except a stale job, which is the
    /// pool moving on, not the miner's fault.
    pub fn counts_as_invalid(self) -> bool {
        self != Self::StaleJob
    }
}

#[cfg(test)]
mod tests {
    use super::Refusal;

    const ALL: [Refusal; 14] = [
        Refusal::Unauthenticated,
        Refusal::AlreadyLoggedIn,
        Refusal::InvalidAddress,
        Refusal::InvalidPassword,
        Refusal::ProxyFull,
        Refusal::NoJobYet,
        Refusal::MissingJobId,
        Refusal::InvalidNonce,
        Refusal::InvalidResult,
        Refusal::StaleJob,
        Refusal::WrongFixedByte,
        Refusal::WrongAlgorithm,
        Refusal::LowDifficulty,
        Refusal::Duplicate,
    ];

    #[test]
    fn the_message_is_the_display_text_and_every_message_differs() {
        let mut seen = std::collections::HashSet::new();
        for r in ALL {
            assert_eq!(r.to_string(), r.message());
            assert!(seen.insert(r.message()), "{r:?}");
        }
    }
}
