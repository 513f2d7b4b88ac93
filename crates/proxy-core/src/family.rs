//! The stratum families the driver serves, each a unit type implementing the splitter's
//! `Family` and the miner driver's `MinerProtocol` (see ARCHITECTURE.md, "The seam for
//! stratum families"). A second family is a second file beside `cryptonote.rs`.

mod cryptonote;
mod sv1;

pub(crate) use cryptonote::CryptoNote;
pub use cryptonote::{DUPLICATE_SHARE, NICEHASH_SLOTS};
pub(crate) use sv1::Sv1;
