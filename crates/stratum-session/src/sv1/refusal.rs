//! Every error the proxy answers a Stratum V1 miner with, in one place, each with its code
//! (20..=25, [`ErrorCode`]) and message.

use stratum_proto::sv1::{ErrorCode, RequestError};

/// Why the proxy refuses a Stratum V1 miner's request. On the wire:
/// `"error":[code,"message",null]` with [`Refusal::code`] and the
/// [`Display`](std::fmt::Display) text; [`Refusal::reply`] writes the line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// A line that is not a request we serve (unreadable JSON, unknown method, bad params):
    /// code 20 with the parser's message (`"Unknown method"`, `"Invalid params: ..."`).
    #[error("{0}")]
    BadRequest(RequestError),
    /// `mining.subscribe` a second time on one connection (20).
    #[error("Already subscribed")]
    AlreadySubscribed,
    /// No upstream can take another miner (20): every slot of every upstream is taken.
    #[error("Proxy is full, try again later")]
    ProxyFull,
    /// `mining.authorize`, `suggest_difficulty`, `extranonce.subscribe` or `submit` before
    /// `mining.subscribe` (25).
    #[error("Not subscribed")]
    NotSubscribed,
    /// A `mining.submit` for a worker this connection did not authorize (24).
    #[error("Unauthorized worker")]
    Unauthorized,
    /// `mining.authorize` with a worker name the proxy does not take (24): empty, longer
    /// than [`super::MAX_WORKER_NAME_LEN`] bytes, or with control characters.
    #[error("Unauthorized worker: {0}")]
    InvalidWorkerName(&'static str),
    /// `mining.authorize` whose password is not the configured `access-password` (24).
    #[error("Unauthorized worker: wrong password")]
    WrongPassword,
    /// A connection authorizing more than [`super::MAX_WORKERS_PER_CONNECTION`] distinct
    /// workers (20).
    #[error("Too many workers on one connection")]
    TooManyWorkers,
    /// A share for a job the upstream no longer has (voided by a clean job or a new
    /// extranonce, or too old) or never had (21). Stale work is not the miner's fault.
    #[error("Job not found")]
    JobNotFound,
    /// A share whose extranonce2 is not the size the miner was given (20).
    #[error("Invalid extranonce2 size: expected {expected} bytes, got {got}")]
    Extranonce2Size {
        /// The miner's extranonce2_size, bytes.
        expected: usize,
        /// Bytes received.
        got: usize,
    },
    /// A share whose ntime is before the job's or more than
    /// [`super::NTIME_MAX_AHEAD_SECS`] after it (20).
    #[error("ntime out of range")]
    NtimeOutOfRange,
    /// A share rolling version bits outside the negotiated mask (20; BIP 310).
    #[error("Version bits outside the negotiated mask")]
    VersionBits,
    /// The same header again (22): never forwarded twice.
    #[error("Duplicate share")]
    Duplicate,
    /// The share's hash does not meet the miner's difficulty (23).
    #[error("Low difficulty share")]
    LowDifficulty,
    /// The share was forwarded, but the upstream's connection ended before it answered (20).
    #[error("Upstream connection lost")]
    UpstreamLost,
    /// The share was forwarded, but the upstream did not answer in time (20).
    #[error("Upstream did not answer")]
    UpstreamTimeout,
}

impl Refusal {
    /// The Stratum V1 error code (20..=25).
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::NotSubscribed => ErrorCode::NotSubscribed,
            Self::Unauthorized | Self::InvalidWorkerName(_) | Self::WrongPassword => {
                ErrorCode::Unauthorized
            }
            Self::JobNotFound => ErrorCode::JobNotFound,
            Self::Duplicate => ErrorCode::Duplicate,
            Self::LowDifficulty => ErrorCode::LowDifficulty,
            Self::BadRequest(_)
            | Self::AlreadySubscribed
            | Self::ProxyFull
            | Self::TooManyWorkers
            | Self::Extranonce2Size { .. }
            | Self::NtimeOutOfRange
            | Self::VersionBits
            | Self::UpstreamLost
            | Self::UpstreamTimeout => ErrorCode::Other,
        }
    }

    /// The numeric code as it goes on the wire.
    pub fn code(&self) -> i64 {
        self.error_code().code()
    }

    /// The error line to send under request id `id`.
    pub fn reply(&self, id: &stratum_proto::Id) -> Vec<u8> {
        stratum_proto::sv1::encode_error_message(id, self.code(), &self.to_string())
    }

    /// True when the refusal counts against the miner under the invalid-share rule: every
    /// share refusal except a stale job and the upstream's failures.
    pub fn counts_as_invalid(&self) -> bool {
        !matches!(
            self,
            Self::JobNotFound | Self::UpstreamLost | Self::UpstreamTimeout
        )
    }
}
