//! `mining.submit` read the short way: the one request a miner sends thousands of times.
//!
//! [`super::parse_client_line`] reads a line into an envelope whose params are a
//! `serde_json::Value` (an array of six allocated strings), then copies the fields out. A
//! submit line is read here instead straight into its typed params: the line checked as
//! UTF-8 once, the strings borrowed from it (unless they hold escapes), nothing allocated
//! but the [`Submit`]'s own fields. Only a line this reads whole and valid is taken: any
//! other (another method, a params shape or a field the general path refuses, bad JSON)
//! gets `None` and goes the general way, which gives the answer and the error it always
//! gave; what is taken here is the [`Submit`] the general path makes of the same line (a
//! test compares the two on good and bad lines).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::Deserialize;

use super::{hex_bytes, hex_u32, ClientMessage, ClientRequest, Submit, MAX_EXTRANONCE_SIZE};
use crate::Id;

/// The method name as it appears in a submit line's JSON.
const METHOD: &[u8] = b"\"mining.submit\"";

/// The search for [`METHOD`], built once (building it costs more than a search of a line).
static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(METHOD));

/// A submit line's envelope. `result` and `error` are read as the general envelope reads
/// them (a value each: a duplicate key, a number out of range or nesting past serde_json's
/// limit fails here as there), then dropped; any other key (`jsonrpc`, ...) is skipped, as
/// the general envelope skips it.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(default)]
    id: Id,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    params: Option<Params<'a>>,
    #[serde(default, rename = "result")]
    _result: Option<serde_json::Value>,
    #[serde(default, rename = "error")]
    _error: Option<serde_json::Value>,
}

/// `[worker, job id, extranonce2, ntime, nonce(, version bits or null)(, ...)]`: five
/// strings, an optional sixth (null is none), anything after read as a value (as the
/// general path reads the whole array) and dropped.
struct Params<'a> {
    fields: [Cow<'a, str>; 5],
    version_bits: Option<Cow<'a, str>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Params<'a> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Seq<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for Seq<'a> {
            type Value = Params<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("mining.submit params")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Params<'a>, A::Error> {
                let mut next = || -> Result<Cow<'a, str>, A::Error> {
                    seq.next_element::<Borrowed<'a>>()?
                        .map(|b| b.0)
                        .ok_or_else(|| de::Error::custom("fewer than 5 params"))
                };
                let fields = [next()?, next()?, next()?, next()?, next()?];
                let version_bits = seq.next_element::<Option<Borrowed<'a>>>()?.flatten();
                while seq.next_element::<serde_json::Value>()?.is_some() {}
                Ok(Params {
                    fields,
                    version_bits: version_bits.map(|b| b.0),
                })
            }
        }

        d.deserialize_seq(Seq(std::marker::PhantomData))
    }
}

/// A string borrowed from the line when it holds no escape (serde's `Cow<str>` alone
/// always copies).
struct Borrowed<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Borrowed<'a> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Str<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for Str<'a> {
            type Value = Borrowed<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Borrowed<'a>, E> {
                Ok(Borrowed(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Borrowed<'a>, E> {
                Ok(Borrowed(Cow::Owned(v.to_owned())))
            }
        }

        d.deserialize_str(Str(std::marker::PhantomData))
    }
}

/// `line` read as a `mining.submit` request, or `None` when it is not one this path takes
/// whole (the caller then reads it the general way).
pub(super) fn parse(line: &[u8]) -> Option<ClientMessage> {
    FINDER.find(line)?;
    let text = std::str::from_utf8(line).ok()?;
    if !text.trim_start().starts_with('{') {
        return None;
    }
    let l: Line<'_> = serde_json::from_str(text).ok()?;
    if l.method.as_deref() != Some("mining.submit") {
        return None;
    }
    let Params {
        fields: [worker, job_id, extranonce2, ntime, nonce],
        version_bits,
    } = l.params?;
    let extranonce2 = hex_bytes(&extranonce2).filter(|e| e.len() <= MAX_EXTRANONCE_SIZE)?;
    let version_bits = match version_bits {
        None => None,
        Some(v) => Some(hex_u32(&v)?),
    };
    let submit = Submit {
        worker: worker.into_owned(),
        job_id: job_id.into_owned(),
        extranonce2,
        ntime: hex_u32(&ntime)?,
        nonce: hex_u32(&nonce)?,
        version_bits,
    };
    Some(ClientMessage::Request {
        id: l.id,
        request: ClientRequest::Submit(submit),
    })
}

#[cfg(test)]
mod tests {
    use super::super::parse_client_line_in_general;
    use super::*;

    /// Submit lines as miners write them, and odd ones the general path reads too.
    const TAKEN: &[&str] = &[
        r#"{"id":4,"method":"mining.submit","params":["bc1q.rig-00001","0000002a","0000000100000002","504e86ed","b2957c02"]}"#,
        r#"{"params":["w","bf","00000001","504e86ed","b2957c02","1fffe000"],"id":"x","method":"mining.submit"}"#,
        r#"{"id":null,"method":"mining.submit","params":["w","bf","","504e86ed","b2957c02",null,7,{"a":1}]}"#,
        "  {\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"mining.submit\",\"result\":1,\"params\":[\"w\\\"é\\u0001\",\"j\\\\b\",\"AbCd\",\"504E86ED\",\"00000000\"]}\n",
        r#"{"method":"mining.submit","params":["w","bf","00","504e86ed","b2957c02"]}"#,
    ];

    /// Lines this path leaves to the general one (which refuses each, or reads another
    /// method).
    const LEFT: &[&str] = &[
        r#"{"id":4,"method":"mining.submit","params":["w","bf","00","504e86ed"]}"#,
        r#"{"id":4,"method":"mining.submit","params":["w","bf","0","504e86ed","b2957c02"]}"#,
        r#"{"id":4,"method":"mining.submit","params":["w","bf","00","504e86e","b2957c02"]}"#,
        r#"{"id":4,"method":"mining.submit","params":["w","bf","00","504e86ed","b2957c02",5]}"#,
        r#"{"id":4,"method":"mining.submit","params":["w","bf","00","504e86ed","b2957c02","xyz"]}"#,
        r#"{"id":4,"method":"mining.submit","params":[1,"bf","00","504e86ed","b2957c02"]}"#,
        r#"{"id":4,"method":"mining.submit","params":{"worker":"w"}}"#,
        r#"{"id":4,"method":"mining.submit","params":null}"#,
        r#"{"id":4,"method":"mining.submit"}"#,
        r#"{"id":4,"method":"mining.submit","method":"mining.submit","params":[]}"#,
        r#"{"id":4,"method":"mining.authorize","params":["mining.submit","x"]}"#,
        r#"{"id":4,"result":"mining.submit","error":null}"#,
        r#"{"id":4,"method":"mining.submit","params":["w","bf","00","504e86ed","b2957c02"]} x"#,
        r#"["mining.submit"]"#,
        r#"{"id":4,"method":"mining.subscribe","params":["cgminer/4.11"]}"#,
        r#"{"id":1,"method":"mining.submit","params":["w","bf","00","504e86ed","b2957c02"],"result":1,"result":2}"#,
        r#"{"id":1,"method":"mining.submit","params":["w","bf","00","504e86ed","b2957c02"],"error":null,"error":null}"#,
        r#"{"id":1,"method":"mining.submit","params":["w","bf","00","504e86ed","b2957c02"],"result":1e999}"#,
        r#"{"id":1,"method":"mining.submit","params":["w","bf","00","504e86ed","b2957c02",null,1e999]}"#,
    ];

    #[test]
    fn a_submit_read_the_short_way_is_what_the_general_path_reads() {
        for line in TAKEN {
            let short = parse(line.as_bytes()).unwrap_or_else(|| panic!("not taken: {line}"));
            assert_eq!(
                Ok(short),
                parse_client_line_in_general(line.as_bytes()),
                "{line}"
            );
        }
        let escaped = parse(TAKEN[3].as_bytes()).unwrap();
        let ClientMessage::Request {
            request: ClientRequest::Submit(s),
            ..
        } = escaped
        else {
            panic!("{escaped:?}")
        };
        assert_eq!(
            (s.worker.as_str(), s.job_id.as_str()),
            ("w\"é\u{1}", "j\\b")
        );
        assert_eq!((s.extranonce2, s.ntime), (vec![0xab, 0xcd], 0x504e_86ed));
    }

    #[test]
    fn any_other_line_goes_the_general_way_with_its_answer_unchanged() {
        for line in LEFT {
            assert_eq!(parse(line.as_bytes()), None, "{line}");
            // And the public parser gives the general path's answer.
            assert_eq!(
                super::super::parse_client_line(line.as_bytes()),
                parse_client_line_in_general(line.as_bytes()),
                "{line}"
            );
        }
        let bad_utf8 = b"{\"id\":1,\"method\":\"mining.submit\",\"params\":[\"\xff\",\"bf\",\"00\",\"504e86ed\",\"b2957c02\"]}";
        assert_eq!(parse(bad_utf8), None);
        assert!(parse_client_line_in_general(bad_utf8).is_err());
        // Nesting past serde_json's limit, where the general path reads a value.
        for deep in [
            format!(
                r#"{{"id":1,"method":"mining.submit","params":["w","bf","00","504e86ed","b2957c02"],"result":{}1{}}}"#,
                "[".repeat(200),
                "]".repeat(200)
            ),
            format!(
                r#"{{"id":1,"method":"mining.submit","params":["w","bf","00","504e86ed","b2957c02",null,{}1{}]}}"#,
                "[".repeat(200),
                "]".repeat(200)
            ),
        ] {
            assert_eq!(parse(deep.as_bytes()), None);
            assert!(parse_client_line_in_general(deep.as_bytes()).is_err());
        }
    }
}
