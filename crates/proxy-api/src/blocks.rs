//! `GET /1/blocks`: solo mining's rounds, as bcoin-stratum keeps them
//! (`shared/spec/bcoin-stratum.md`, "Payouts"): the current round's shares per user and the
//! last blocks the node accepted, each with its height, hash, time, finder and the round's
//! shares per user ([`proxy_core::BlocksSnapshot`]; `docs/API.md` has the shape). Empty
//! (`found` 0, no blocks) behind a pool.

use axum::extract::State;
use axum::Json;
use proxy_core::BlocksSnapshot;

use crate::Api;

/// The body of `GET /1/blocks`.
pub(crate) async fn get_blocks(State(api): State<Api>) -> Json<BlocksSnapshot> {
    Json(api.monitor.solo_blocks())
}
