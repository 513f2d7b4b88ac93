//! The CryptoNote (xmrig-style) stratum dialect (go-proxy RFC §19).
//!
//! Miner → proxy: `login`, `submit`, `keepalived`, `getjob` ([`parse_miner_request`]).
//! Proxy → miner: login result, `job` notification, status results, errors (`encode_*`).
//! Proxy → pool and pool → proxy: the same messages from the other side
//! ([`encode_pool_login`], [`encode_pool_submit`], [`parse_pool_message`]).
//!
//! Every encoder returns one complete line ending in `\n`.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::job::{hex_byte, Job, NICEHASH_BYTE_OFFSET};
use crate::Id;

/// Error code used in every error object (xmrig and xmrig-proxy use -1).
pub const ERROR_CODE: i64 = -1;

/// `login` params (RFC §6.1). Missing fields are empty so the session can answer with the
/// RFC's error strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct LoginParams {
    /// Wallet address, possibly with a `+difficulty` suffix.
    #[serde(default)]
    pub login: String,
    /// Password.
    #[serde(default)]
    pub pass: String,
    /// Miner software name and version, e.g. `XMRig/6.21.0`.
    #[serde(default)]
    pub agent: String,
    /// Algorithms the miner supports (algorithm extension), e.g. `["rx/0"]`.
    #[serde(default)]
    pub algo: Vec<String>,
    /// Rig identifier (RigID extension).
    #[serde(default)]
    pub rigid: Option<String>,
}

/// `submit` params (RFC §6.2). Missing fields are empty strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SubmitParams {
    /// Session id given in the login result.
    #[serde(default)]
    pub id: String,
    /// The job the share was found for.
    #[serde(default)]
    pub job_id: String,
    /// 8 hex chars: blob bytes 39..43.
    #[serde(default)]
    pub nonce: String,
    /// 64 hex chars: the PoW hash.
    #[serde(default)]
    pub result: String,
    /// Algorithm of the share (algorithm extension).
    #[serde(default)]
    pub algo: Option<String>,
}

/// Params of `keepalived` and `getjob`: just the session id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SessionParams {
    /// Session id given in the login result.
    #[serde(default)]
    pub id: String,
}

/// A request from a miner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MinerRequest {
    /// `login`.
    Login(LoginParams),
    /// `submit`.
    Submit(SubmitParams),
    /// `keepalived`.
    Keepalived(SessionParams),
    /// `getjob`.
    GetJob(SessionParams),
}

/// Why a miner's line is not a request we can serve. Each is answered with an error reply
/// ([`RequestError::message`]) under [`RequestError::id`]; the connection lives on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    /// Not JSON, or not a JSON object. Answered under id `null`.
    #[error("Parse error")]
    Parse,
    /// A method this dialect does not have (or no method at all).
    #[error("Invalid method")]
    InvalidMethod {
        /// The request's id.
        id: Id,
    },
    /// Params of the wrong shape (e.g. a number where a string belongs).
    #[error("Invalid params")]
    InvalidParams {
        /// The request's id.
        id: Id,
    },
}

impl RequestError {
    /// The id to answer under (`null` when the line had none we could read).
    pub fn id(&self) -> &Id {
        static NULL: Value = Value::Null;
        match self {
            Self::Parse => &NULL,
            Self::InvalidMethod { id } | Self::InvalidParams { id } => id,
        }
    }

    /// The error message sent to the miner.
    pub fn message(&self) -> &'static str {
        match self {
            Self::Parse => "Parse error",
            Self::InvalidMethod { .. } => "Invalid method",
            Self::InvalidParams { .. } => "Invalid params",
        }
    }
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default)]
    id: Id,
    #[serde(default, borrow)]
    method: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    params: Option<Value>,
}

/// Parses one line from a miner into its id and request.
///
/// # Errors
/// [`RequestError`]: not JSON → `Parse`; unknown or missing method → `InvalidMethod`; params
/// of the wrong types → `InvalidParams`. Missing params fields are not errors (they come back
/// empty).
pub fn parse_miner_request(line: &[u8]) -> Result<(Id, MinerRequest), RequestError> {
    let env: Envelope<'_> = serde_json::from_slice(line).map_err(|_| RequestError::Parse)?;
    let params = env.params.unwrap_or(Value::Null);
    let params = if params.is_null() {
        Value::Object(Default::default())
    } else {
        params
    };
    let id = env.id;
    let bad = |id: &Id| RequestError::InvalidParams { id: id.clone() };
    let req = match env.method.as_deref() {
        Some("login") => MinerRequest::Login(serde_json::from_value(params).map_err(|_| bad(&id))?),
        Some("submit") => {
            MinerRequest::Submit(serde_json::from_value(params).map_err(|_| bad(&id))?)
        }
        Some("keepalived") => {
            MinerRequest::Keepalived(serde_json::from_value(params).map_err(|_| bad(&id))?)
        }
        Some("getjob") => {
            MinerRequest::GetJob(serde_json::from_value(params).map_err(|_| bad(&id))?)
        }
        _ => return Err(RequestError::InvalidMethod { id }),
    };
    Ok((id, req))
}

#[derive(Serialize)]
struct OkReply<'a, R> {
    id: &'a Id,
    jsonrpc: &'static str,
    error: Option<()>,
    result: R,
}

#[derive(Serialize)]
struct ErrorObject<'a> {
    code: i64,
    message: &'a str,
}

#[derive(Serialize)]
struct ErrorReply<'a> {
    id: &'a Id,
    jsonrpc: &'static str,
    error: ErrorObject<'a>,
}

#[derive(Serialize)]
struct Status<'a> {
    status: &'a str,
}

fn line<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail: no maps with non-string keys, no I/O.
    let mut out = serde_json::to_vec(value).unwrap_or_default();
    out.push(b'\n');
    out
}

/// `{"id":ID,"jsonrpc":"2.0","error":null,"result":{"status":STATUS}}\n`; STATUS is `"OK"`
/// for an accepted share and `"KEEPALIVED"` for a keepalive.
pub fn encode_status(id: &Id, status: &str) -> Vec<u8> {
    line(&OkReply {
        id,
        jsonrpc: "2.0",
        error: None,
        result: Status { status },
    })
}

/// `{"id":ID,"jsonrpc":"2.0","error":{"code":-1,"message":MESSAGE}}\n`.
pub fn encode_error(id: &Id, message: &str) -> Vec<u8> {
    line(&ErrorReply {
        id,
        jsonrpc: "2.0",
        error: ErrorObject {
            code: ERROR_CODE,
            message,
        },
    })
}

#[derive(Serialize)]
struct LoginResultOut<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    job: Option<&'a Job>,
    extensions: &'a [&'a str],
    status: &'static str,
}

/// The login result: `{"id":ID,"jsonrpc":"2.0","error":null,"result":{"id":SESSION,
/// "job":JOB,"extensions":[..],"status":"OK"}}\n`. `job` is left out while no job is
/// available (the miner gets one as a `job` notification later).
pub fn encode_login_ok(
    id: &Id,
    session_id: &str,
    job: Option<&Job>,
    extensions: &[&str],
) -> Vec<u8> {
    line(&OkReply {
        id,
        jsonrpc: "2.0",
        error: None,
        result: LoginResultOut {
            id: session_id,
            job,
            extensions,
            status: "OK",
        },
    })
}

/// The `getjob` result: `{"id":ID,"jsonrpc":"2.0","error":null,"result":JOB}\n`.
pub fn encode_getjob_ok(id: &Id, job: &Job) -> Vec<u8> {
    line(&OkReply {
        id,
        jsonrpc: "2.0",
        error: None,
        result: job,
    })
}

#[derive(Serialize)]
struct Notification<P> {
    jsonrpc: &'static str,
    method: &'static str,
    params: P,
}

/// `{"jsonrpc":"2.0","method":"job","params":JOB}\n`.
pub fn encode_job_notification(job: &Job) -> Vec<u8> {
    line(&Notification {
        jsonrpc: "2.0",
        method: "job",
        params: job,
    })
}

static HEX_PAIRS: [u8; 512] = {
    let digits = b"0123456789abcdef";
    let mut t = [0u8; 512];
    let mut i = 0;
    while i < 256 {
        t[2 * i] = digits[i >> 4];
        t[2 * i + 1] = digits[i & 15];
        i += 1;
    }
    t
};

/// A `job` notification encoded once for all the miners of one upstream; each miner's copy
/// differs only in the two hex chars of the NiceHash fixed byte (blob byte 42).
///
/// [`JobLine::parts`] gives the line as three shared slices (prefix, the two hex chars,
/// suffix) without copying, ready for a vectored write.
///
/// Only a hex blob (as every job that passes [`Job::validate`] has) is patched: another one
/// may be escaped in the line, or hold a multi-byte character at byte 42, and is sent whole.
#[derive(Debug, Clone)]
pub struct JobLine {
    line: Bytes,
    /// Offset in `line` of the fixed byte's two hex chars, when the blob is long enough.
    patch_at: Option<usize>,
}

impl JobLine {
    /// Encodes the notification for `job`.
    pub fn new(job: &Job) -> Self {
        let line = encode_job_notification(job);
        // Anything but hex may not be where its raw offsets say (JSON escapes), or may be
        // split mid-character: never patched.
        let hex = job.blob.bytes().all(|b| b.is_ascii_hexdigit());
        let patch_at = find_blob(&line)
            .filter(|(start, end)| hex && &line[*start..*end] == job.blob.as_bytes())
            .map(|(start, end)| (start + NICEHASH_BYTE_OFFSET * 2, end))
            .filter(|(at, end)| at + 2 <= *end)
            .map(|(at, _)| at);
        Self {
            line: Bytes::from(line),
            patch_at,
        }
    }

    /// The line unpatched (simple mode, or a miner without a slot).
    pub fn whole(&self) -> Bytes {
        self.line.clone()
    }

    /// The line for the miner whose fixed byte is `fixed_byte`: prefix, two hex chars, suffix.
    /// Concatenated they are the full line. When the blob is too short to patch, the prefix
    /// is the whole line and the other two parts are empty.
    pub fn parts(&self, fixed_byte: u8) -> [Bytes; 3] {
        match self.patch_at {
            Some(at) => {
                let i = usize::from(fixed_byte) * 2;
                [
                    self.line.slice(..at),
                    Bytes::from_static(&HEX_PAIRS[i..i + 2]),
                    self.line.slice(at + 2..),
                ]
            }
            None => [self.line.clone(), Bytes::new(), Bytes::new()],
        }
    }

    /// The patched line as one contiguous buffer (copies).
    pub fn to_vec(&self, fixed_byte: u8) -> Vec<u8> {
        let mut v = self.line.to_vec();
        if let Some(at) = self.patch_at {
            v[at..at + 2].copy_from_slice(&hex_byte(fixed_byte));
        }
        v
    }
}

/// The span (start, end) of the blob string's contents in an encoded job line.
fn find_blob(line: &[u8]) -> Option<(usize, usize)> {
    const KEY: &[u8] = b"\"blob\":\"";
    let start = line.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = line[start..].iter().position(|b| *b == b'"')?;
    Some((start, start + len))
}

// ----- the proxy's own upstream side -----

#[derive(Serialize)]
struct Request<P> {
    id: u64,
    jsonrpc: &'static str,
    method: &'static str,
    params: P,
}

#[derive(Serialize)]
struct PoolLoginParams<'a> {
    login: &'a str,
    pass: &'a str,
    agent: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rigid: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    algo: &'a [String],
}

/// The proxy's login to a pool: `{"id":N,"jsonrpc":"2.0","method":"login","params":{"login",
/// "pass","agent"[,"rigid"][,"algo"]}}\n`.
pub fn encode_pool_login(
    id: u64,
    login: &str,
    pass: &str,
    agent: &str,
    rigid: Option<&str>,
    algo: &[String],
) -> Vec<u8> {
    line(&Request {
        id,
        jsonrpc: "2.0",
        method: "login",
        params: PoolLoginParams {
            login,
            pass,
            agent,
            rigid,
            algo,
        },
    })
}

#[derive(Serialize)]
struct PoolSubmitParams<'a> {
    id: &'a str,
    job_id: &'a str,
    nonce: &'a str,
    result: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    algo: Option<&'a str>,
}

/// A share forwarded to a pool: `{"id":N,"jsonrpc":"2.0","method":"submit","params":{"id":
/// SESSION,"job_id","nonce","result"[,"algo"]}}\n`.
pub fn encode_pool_submit(
    id: u64,
    session_id: &str,
    job_id: &str,
    nonce: &str,
    result: &str,
    algo: Option<&str>,
) -> Vec<u8> {
    line(&Request {
        id,
        jsonrpc: "2.0",
        method: "submit",
        params: PoolSubmitParams {
            id: session_id,
            job_id,
            nonce,
            result,
            algo,
        },
    })
}

/// `{"id":N,"jsonrpc":"2.0","method":"keepalived","params":{"id":SESSION}}\n`.
pub fn encode_pool_keepalived(id: u64, session_id: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct P<'a> {
        id: &'a str,
    }
    line(&Request {
        id,
        jsonrpc: "2.0",
        method: "keepalived",
        params: P { id: session_id },
    })
}

/// An error object from a pool.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RpcError {
    /// Error code.
    #[serde(default)]
    pub code: i64,
    /// Human-readable message, passed on to the miner.
    #[serde(default)]
    pub message: String,
}

/// A message from a pool.
#[derive(Debug, Clone, PartialEq)]
pub enum PoolMessage {
    /// A `job` notification.
    Job(Job),
    /// The answer to one of our requests.
    Response {
        /// Our request id.
        id: u64,
        /// `result` or `error`.
        outcome: Result<Value, RpcError>,
    },
    /// A notification we do not act on (its method name).
    Other(String),
}

/// Why a pool's line could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolMessageError {
    /// Not JSON or not an object.
    #[error("pool sent a line that is not a JSON object")]
    Parse,
    /// A `job` notification whose params are not a job.
    #[error("pool sent a job with missing or mistyped fields")]
    BadJob,
    /// A response whose id is not one of our (numeric) ids.
    #[error("pool answered an id we never used: {0}")]
    UnknownId(String),
}

/// Parses one line from a pool.
///
/// # Errors
/// [`PoolMessageError`] when the line is not JSON, a job is malformed, or a response id is
/// not a number.
pub fn parse_pool_message(line: &[u8]) -> Result<PoolMessage, PoolMessageError> {
    let env: crate::rpc::Envelope<RpcError> =
        serde_json::from_slice(line).map_err(|_| PoolMessageError::Parse)?;
    if let Some(method) = env.method {
        if method == "job" {
            let job = env
                .params
                .and_then(|p| serde_json::from_value(p).ok())
                .ok_or(PoolMessageError::BadJob)?;
            return Ok(PoolMessage::Job(job));
        }
        return Ok(PoolMessage::Other(method));
    }
    let (id, outcome) = env.outcome();
    let id = id
        .as_u64()
        .ok_or_else(|| PoolMessageError::UnknownId(id.to_string()))?;
    Ok(PoolMessage::Response { id, outcome })
}

/// The `result` of a pool's answer to our login.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PoolLoginResult {
    /// Our session id at the pool, sent back in every submit.
    pub id: String,
    /// The first job, if the pool sent one with the login result.
    #[serde(default)]
    pub job: Option<Job>,
    /// Extensions the pool supports, e.g. `["algo","nicehash","keepalive"]`.
    #[serde(default)]
    pub extensions: Vec<String>,
    /// `"OK"` normally.
    #[serde(default)]
    pub status: Option<String>,
}

impl PoolLoginResult {
    /// Reads a login result out of a response's `result` value; `None` if it lacks an `id`.
    pub fn from_value(value: Value) -> Option<Self> {
        serde_json::from_value(value).ok()
    }
}

/// Whether a submit's `result` value means the share was accepted (`{"status":"OK"}`).
pub fn is_status_ok(result: &Value) -> bool {
    result
        .get("status")
        .and_then(Value::as_str)
        .is_some_and(|s| s.eq_ignore_ascii_case("OK"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LOGIN: &str = r#"{"id":1,"jsonrpc":"2.0","method":"login","params":{"login":"fakeminer1+2000","pass":"x","agent":"fake-miner/0.1","rigid":"rig-A","algo":["rx/0","cn/r"]}}"#;

    fn job() -> Job {
        Job {
            blob: "1010b6d0e7b0060e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d000000001a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637383905".into(),
            job_id: "stubjob000002".into(),
            target: "9bc42000".into(),
            algo: Some("rx/0".into()),
            height: Some(3000002),
            seed_hash: Some("a".repeat(64)),
        }
    }

    #[test]
    fn parses_transcript_login() {
        let (id, req) = parse_miner_request(LOGIN.as_bytes()).unwrap();
        assert_eq!(id, json!(1));
        let MinerRequest::Login(p) = req else {
            panic!("not a login")
        };
        assert_eq!(p.login, "fakeminer1+2000");
        assert_eq!(p.rigid.as_deref(), Some("rig-A"));
        assert_eq!(p.algo, vec!["rx/0", "cn/r"]);
    }

    #[test]
    fn ids_of_any_type_are_kept() {
        for id in [json!("abc"), json!(null), json!(7.5), json!({"x":1})] {
            let line = json!({"id": id, "method":"keepalived","params":{"id":"s"}}).to_string();
            let (got, _) = parse_miner_request(line.as_bytes()).unwrap();
            assert_eq!(got, id);
            let reply: Value = serde_json::from_slice(&encode_status(&got, "KEEPALIVED")).unwrap();
            assert_eq!(reply["id"], id);
        }
    }

    #[test]
    fn bad_lines_are_classified() {
        assert_eq!(parse_miner_request(b"not json"), Err(RequestError::Parse));
        assert_eq!(parse_miner_request(b"[1,2]"), Err(RequestError::Parse));
        assert_eq!(
            parse_miner_request(br#"{"id":4,"method":"mine"}"#),
            Err(RequestError::InvalidMethod { id: json!(4) })
        );
        assert_eq!(
            parse_miner_request(br#"{"id":5}"#),
            Err(RequestError::InvalidMethod { id: json!(5) })
        );
        assert_eq!(
            parse_miner_request(br#"{"id":6,"method":"submit","params":{"nonce":5}}"#),
            Err(RequestError::InvalidParams { id: json!(6) })
        );
        // Missing fields are not a parse error: the session answers them.
        let (_, req) = parse_miner_request(br#"{"id":7,"method":"submit"}"#).unwrap();
        assert_eq!(req, MinerRequest::Submit(SubmitParams::default()));
    }

    #[test]
    fn encodes_like_the_transcripts() {
        assert_eq!(
            encode_status(&json!(3), "OK"),
            b"{\"id\":3,\"jsonrpc\":\"2.0\",\"error\":null,\"result\":{\"status\":\"OK\"}}\n"
        );
        assert_eq!(
            encode_error(&json!(3), "Unauthenticated"),
            b"{\"id\":3,\"jsonrpc\":\"2.0\",\"error\":{\"code\":-1,\"message\":\"Unauthenticated\"}}\n"
        );
        let login = encode_login_ok(&json!(1), "sess", Some(&job()), &["algo", "nicehash"]);
        let v: Value = serde_json::from_slice(&login).unwrap();
        assert_eq!(v["result"]["id"], "sess");
        assert_eq!(v["result"]["job"]["job_id"], "stubjob000002");
        assert_eq!(v["result"]["job"]["height"], 3000002);
        assert_eq!(v["result"]["extensions"], json!(["algo", "nicehash"]));
        assert_eq!(v["result"]["status"], "OK");
    }

    #[test]
    fn job_line_parts_patch_blob_byte_42() {
        let jl = JobLine::new(&job());
        for fixed in [0u8, 0x2a, 0xb9, 0xff] {
            let parts = jl.parts(fixed);
            let joined: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
            assert_eq!(joined, jl.to_vec(fixed));
            assert_eq!(*joined.last().unwrap(), b'\n');
            let v: Value = serde_json::from_slice(&joined).unwrap();
            let blob = v["params"]["blob"].as_str().unwrap();
            assert_eq!(blob, job().blob_with_fixed_byte(fixed));
        }
        let mut short = job();
        short.blob = "00".repeat(20);
        let jl = JobLine::new(&short);
        assert_eq!(jl.parts(7)[0], jl.whole());
        assert!(jl.parts(7)[1].is_empty());
    }

    /// Found by the `pool_message` fuzz target: with an escaped character in the blob, the
    /// fixed byte was written one character off, inside the blob's other bytes; a multi-byte
    /// character at byte 42 would have been cut in two (a line that is not UTF-8).
    #[test]
    fn job_line_patches_only_hex_blobs() {
        for blob in [
            format!("\\n{}", "ab".repeat(50)),
            format!("{}é{}", "a".repeat(83), "b".repeat(20)),
        ] {
            let mut odd = job();
            odd.blob = blob;
            let jl = JobLine::new(&odd);
            assert_eq!(jl.to_vec(0xff), jl.whole().to_vec());
            assert_eq!(jl.parts(0xff)[0], jl.whole());
            let v: Value = serde_json::from_slice(&jl.to_vec(0xff)).unwrap();
            assert_eq!(v["params"]["blob"].as_str(), Some(odd.blob.as_str()));
        }
    }

    /// Found by the `miner_request` fuzz target: serde_json's default float parser read this
    /// id one ulp off, so the answer carried another id (`float_roundtrip` fixes it).
    #[test]
    fn float_ids_are_echoed_exactly() {
        for line in [
            &br#"{"id":999155325592659262902}"#[..],
            br#"{"id":9.991553255926593e+20,"method":"getjob","params":{"id":"x"}}"#,
            br#"{"id":0.30000000000000004,"method":"keepalived"}"#,
        ] {
            let text: Value = serde_json::from_slice(line).unwrap();
            let (id, answer) = match parse_miner_request(line) {
                Ok((id, _)) => (id.clone(), encode_status(&id, "OK")),
                Err(e) => (e.id().clone(), encode_error(e.id(), e.message())),
            };
            assert_eq!(id, text["id"]);
            let echoed: Value = serde_json::from_slice(&answer).unwrap();
            assert_eq!(echoed["id"], text["id"]);
            assert_eq!(echoed["id"].to_string(), text["id"].to_string());
        }
    }

    #[test]
    fn pool_side_round_trip() {
        let l = encode_pool_submit(2, "S", "j", "000000b9", &"0".repeat(64), None);
        let v: Value = serde_json::from_slice(&l).unwrap();
        assert_eq!(v["method"], "submit");
        assert_eq!(v["params"]["id"], "S");
        assert!(v["params"].get("algo").is_none());
        let l = encode_pool_login(1, "W", "x", "proxy/0.1", Some("rig"), &[]);
        let v: Value = serde_json::from_slice(&l).unwrap();
        assert_eq!(v["params"]["rigid"], "rig");
        assert!(v["params"].get("algo").is_none());

        let job_line = encode_job_notification(&job());
        assert_eq!(parse_pool_message(&job_line), Ok(PoolMessage::Job(job())));
        let ok = parse_pool_message(
            br#"{"id":2,"jsonrpc":"2.0","error":null,"result":{"status":"OK"}}"#,
        )
        .unwrap();
        let PoolMessage::Response {
            id: 2,
            outcome: Ok(v),
        } = ok
        else {
            panic!("{ok:?}")
        };
        assert!(is_status_ok(&v));
        let err =
            parse_pool_message(br#"{"id":3,"error":{"code":-1,"message":"Low difficulty share"}}"#)
                .unwrap();
        assert_eq!(
            err,
            PoolMessage::Response {
                id: 3,
                outcome: Err(RpcError {
                    code: -1,
                    message: "Low difficulty share".into()
                })
            }
        );
        assert_eq!(
            parse_pool_message(br#"{"id":"x","result":null}"#),
            Err(PoolMessageError::UnknownId("\"x\"".into()))
        );
        assert_eq!(
            parse_pool_message(br#"{"method":"job","params":{"blob":1}}"#),
            Err(PoolMessageError::BadJob)
        );
    }

    #[test]
    fn pool_login_result_from_transcript() {
        let line = r#"{"id":1,"jsonrpc":"2.0","error":null,"result":{"id":"02381691","job":{"blob":"1010","job_id":"stubjob000001","target":"711b0d00","algo":"rx/0","height":3000001,"seed_hash":"aa"},"status":"OK","extensions":["algo","keepalive"]}}"#;
        let PoolMessage::Response { outcome: Ok(v), .. } =
            parse_pool_message(line.as_bytes()).unwrap()
        else {
            panic!()
        };
        let r = PoolLoginResult::from_value(v).unwrap();
        assert_eq!(r.id, "02381691");
        assert_eq!(r.job.unwrap().job_id, "stubjob000001");
        assert_eq!(r.extensions, vec!["algo", "keepalive"]);
    }
}
