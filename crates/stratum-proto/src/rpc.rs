//! The JSON-RPC envelope both dialects read from a peer: `id`, `method`, `params`, and
//! `result` or `error`. What the params and the error look like stays with each dialect
//! ([`crate::cryptonote`], [`crate::sv1`]); this is only the part they read the same way.

use serde::Deserialize;
use serde_json::Value;

use crate::Id;

/// One JSON-RPC line: a request or notification (`method` set) or an answer (`result` or
/// `error`). Every field may be missing; `null` reads as missing for `method`, `params`,
/// `result` and `error`. `E` is the dialect's error shape.
#[derive(Deserialize)]
pub(crate) struct Envelope<E> {
    /// Any JSON id (number, string or null), echoed back unchanged.
    #[serde(default)]
    pub(crate) id: Id,
    #[serde(default)]
    pub(crate) method: Option<String>,
    #[serde(default)]
    pub(crate) params: Option<Value>,
    #[serde(default)]
    pub(crate) result: Option<Value>,
    #[serde(default = "none")]
    pub(crate) error: Option<E>,
}

/// `serde(default)` for `error` without asking `E: Default`.
fn none<E>() -> Option<E> {
    None
}

impl<E> Envelope<E> {
    /// An answer's outcome: the `error` when there is one, else the `result` (`null` when it
    /// is missing too).
    pub(crate) fn outcome(self) -> (Id, Result<Value, E>) {
        let outcome = match self.error {
            Some(e) => Err(e),
            None => Ok(self.result.unwrap_or(Value::Null)),
        };
        (self.id, outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(line: &str) -> Envelope<Value> {
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn an_error_wins_over_a_result_and_null_reads_as_missing() {
        let (id, outcome) = read(r#"{"id":"a","result":1,"error":[21,"x"]}"#).outcome();
        assert_eq!(id, "a");
        assert_eq!(outcome, Err(serde_json::json!([21, "x"])));
        let (id, outcome) = read(r#"{"id":7,"result":true,"error":null}"#).outcome();
        assert_eq!(id, 7);
        assert_eq!(outcome, Ok(Value::Bool(true)));
        let (id, outcome) = read("{}").outcome();
        assert_eq!(id, Value::Null);
        assert_eq!(outcome, Ok(Value::Null));
    }
}
