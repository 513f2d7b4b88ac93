//! Stratum V1 messages: the real lines of para 0.6.0 and of slush's spec, every parse error,
//! and encode → parse round trips.

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;

fn request(line: &str) -> (Id, ClientRequest) {
    match parse_client_line(line.as_bytes()) {
        Ok(ClientMessage::Request { id, request }) => (id, request),
        other => panic!("{line}: {other:?}"),
    }
}

fn invalid(line: &str) -> &'static str {
    match parse_client_line(line.as_bytes()) {
        Err(RequestError::InvalidParams { reason, .. }) => reason,
        other => panic!("{line}: {other:?}"),
    }
}

fn server_invalid(line: &str) -> &'static str {
    match parse_server_line(line.as_bytes()) {
        Err(ServerMessageError::InvalidParams { reason, .. }) => reason,
        other => panic!("{line}: {other:?}"),
    }
}

fn as_json(line: &[u8]) -> Value {
    assert_eq!(line.last(), Some(&b'\n'));
    serde_json::from_slice(line).unwrap()
}

// ----- para 0.6.0 (shared/docs/reference/sv1-para-miner-transcript.md) -----

#[test]
fn paras_requests_parse() {
    let (id, r) = request(
        r#"{"id":0,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"ffffffff"}]}"#,
    );
    assert_eq!(id, json!(0));
    assert_eq!(
        r,
        ClientRequest::Configure(Configure {
            version_rolling: Some(VersionRollingRequest {
                mask: Some(0xffff_ffff),
                min_bit_count: None
            }),
            ..Configure::default()
        })
    );
    let (_, r) = request(r#"{"id":1,"method":"mining.subscribe","params":["para/0.6.0"]}"#);
    assert_eq!(
        r,
        ClientRequest::Subscribe(Subscribe {
            user_agent: Some("para/0.6.0".into()),
            session_id: None
        })
    );
    let (_, r) = request(
        r#"{"id":2,"method":"mining.authorize","params":["bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.rig1","x"]}"#,
    );
    assert_eq!(
        r,
        ClientRequest::Authorize(Authorize {
            username: "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.rig1".into(),
            password: Some("x".into())
        })
    );
    let (id, r) = request(
        r#"{"id":4,"method":"mining.submit","params":["bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.rig1","a000001","0000000000000001","6b0d54b4","000065e6","1fe64000"]}"#,
    );
    assert_eq!(id, json!(4));
    assert_eq!(
        r,
        ClientRequest::Submit(Submit {
            worker: "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.rig1".into(),
            job_id: "a000001".into(),
            extranonce2: vec![0, 0, 0, 0, 0, 0, 0, 1],
            ntime: 0x6b0d_54b4,
            nonce: 0x65e6,
            version_bits: Some(0x1fe6_4000),
        })
    );
}

#[test]
fn the_pool_side_of_paras_session_encodes_as_the_transcript_shows() {
    let configure = encode_configure_result(
        &json!(0),
        &ConfigureResult {
            version_rolling: Some(VersionRollingResult::Enabled { mask: 0x1fff_e000 }),
            ..ConfigureResult::default()
        },
    );
    assert_eq!(
        as_json(&configure),
        json!({"id":0,"error":null,"result":{"version-rolling":true,"version-rolling.mask":"1fffe000"}})
    );
    let subscribe = SubscribeResult {
        subscriptions: vec![
            ("mining.set_difficulty".into(), "s1".into()),
            ("mining.notify".into(), "s1".into()),
        ],
        extranonce1: vec![0xa1, 0, 0, 1],
        extranonce2_size: 8,
    };
    assert_eq!(
        as_json(&encode_subscribe_result(&json!(1), &subscribe)),
        json!({"id":1,"error":null,"result":[[["mining.set_difficulty","s1"],["mining.notify","s1"]],"a1000001",8]})
    );
    assert_eq!(
        as_json(&encode_bool_result(&json!(2), true)),
        json!({"id":2,"error":null,"result":true})
    );
    assert_eq!(
        as_json(&ServerMessage::SetDifficulty(1.525_878_906_25e-5).encode()),
        json!({"id":null,"method":"mining.set_difficulty","params":[1.52587890625e-05]})
    );
    let notify = r#"{"id":null,"method":"mining.notify","params":["a000001","c488987d58337b55b94478e8455ca3399eefbc00487f85961c7c5da756853076","01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff10c488987d","ffffffff0100f2052a010000001976a91458337b55b94478e8455ca3399eefbc00487f859688ac00000000",["07961f775b3f9d73bcbb87538e23b6e2ed57d590e21a32d4a92ee6f4523fa8cf","0fe437305229ed54f1e20edcd7370dd28de61cb49bd8155bc3515d2b5cf3e3b5"],"20000000","207fffff","6b0d54b4",true]}"#;
    let msg = parse_server_line(notify.as_bytes()).unwrap();
    let mut expected = notify.as_bytes().to_vec();
    expected.push(b'\n');
    assert_eq!(msg.encode(), expected, "byte for byte");
}

#[test]
fn integral_difficulties_are_written_as_integers() {
    assert_eq!(
        ServerMessage::SetDifficulty(2.0).encode(),
        b"{\"id\":null,\"method\":\"mining.set_difficulty\",\"params\":[2]}\n"
    );
    let line = ClientRequest::SuggestDifficulty(65536.0).encode(&json!(1));
    assert_eq!(as_json(&line)["params"], json!([65536]));
    let line = ClientRequest::SuggestDifficulty(0.5).encode(&json!(1));
    assert_eq!(as_json(&line)["params"], json!([0.5]));
    let line = ServerMessage::SetDifficulty(1e300).encode();
    assert_eq!(
        parse_server_line(&line),
        Ok(ServerMessage::SetDifficulty(1e300))
    );
}

#[test]
fn the_subscribe_answer_lists_subscriptions_even_when_there_are_none() {
    let line = encode_subscribe_result(&json!(1), &SubscribeResult::default());
    assert_eq!(as_json(&line)["result"], json!([[], "", 0]));
}

#[test]
fn subscribe_answers_are_read_in_every_shape_pools_send() {
    let read = |v: Value| SubscribeResult::from_value(&v);
    let full = read(json!([
        [["mining.set_difficulty", "b4b6"], ["mining.notify", "ae68"]],
        "08000002",
        4
    ]))
    .unwrap();
    assert_eq!(full.subscriptions.len(), 2);
    assert_eq!(full.extranonce1, vec![8, 0, 0, 2]);
    assert_eq!(full.extranonce2_size, 4);
    let single = read(json!([["mining.notify", "ae68"], "08000002", 4])).unwrap();
    assert_eq!(
        single.subscriptions,
        vec![("mining.notify".into(), "ae68".into())]
    );
    assert!(read(json!([null, "08000002", 4]))
        .unwrap()
        .subscriptions
        .is_empty());
    for bad in [
        json!({}),
        json!([[], "08000002"]),
        json!([7, "08000002", 4]),
        json!([[[1, 2]], "08000002", 4]),
        json!([[], "0800000", 4]),
        json!([[], "zz", 4]),
        json!([[], "00".repeat(33), 4]),
        json!([[], "08000002", -1]),
        json!([[], "08000002", 33]),
    ] {
        assert!(read(bad.clone()).is_err(), "{bad}");
    }
}

// ----- slush's spec (shared/spec/stratum-v1-slush.md) -----

#[test]
fn the_spec_examples_parse() {
    let (id, r) = request(r#"{"id": 1, "method": "mining.subscribe", "params": []}"#);
    assert_eq!(id, json!(1));
    assert_eq!(r, ClientRequest::Subscribe(Subscribe::default()));
    let answer = r#"{"id": 1, "result": [[["mining.set_difficulty", "b4b6693b72a50c7116db18d6497cac52"], ["mining.notify", "ae6812eb4cd7735a302a8a9dd95cf71f"]], "08000002", 4], "error": null}"#;
    let ServerMessage::Response { id, outcome } = parse_server_line(answer.as_bytes()).unwrap()
    else {
        panic!("not a response")
    };
    assert_eq!(id, json!(1));
    let r = SubscribeResult::from_value(&outcome.unwrap()).unwrap();
    assert_eq!(r.extranonce1, vec![8, 0, 0, 2]);
    let (_, r) = request(
        r#"{"params": ["slush.miner1", "password"], "id": 2, "method": "mining.authorize"}"#,
    );
    assert!(matches!(r, ClientRequest::Authorize(a) if a.username == "slush.miner1"));
    assert_eq!(
        parse_server_line(br#"{ "id": null, "method": "mining.set_difficulty", "params": [2]}"#),
        Ok(ServerMessage::SetDifficulty(2.0))
    );
    let (_, r) = request(
        r#"{"params": ["slush.miner1", "bf", "00000001", "504e86ed", "b2957c02"], "id": 4, "method": "mining.submit"}"#,
    );
    let ClientRequest::Submit(s) = r else {
        panic!()
    };
    assert_eq!(
        (s.ntime, s.nonce, s.version_bits),
        (0x504e_86ed, 0xb295_7c02, None)
    );
}

// ----- the other messages -----

#[test]
fn bip310_configure_with_every_extension_parses() {
    let (_, r) = request(
        r#"{"id":"c","method":"mining.configure","params":[["version-rolling","minimum-difficulty","subscribe-extranonce","info"],{"version-rolling.mask":"1fffe000","version-rolling.min-bit-count":2,"minimum-difficulty.value":2048,"info.connection-url":"x"}]}"#,
    );
    assert_eq!(
        r,
        ClientRequest::Configure(Configure {
            version_rolling: Some(VersionRollingRequest {
                mask: Some(0x1fff_e000),
                min_bit_count: Some(2)
            }),
            minimum_difficulty: Some(2048.0),
            subscribe_extranonce: true,
            unknown: vec!["info".into()],
        })
    );
}

#[test]
fn configure_answers_are_read_per_bip310() {
    let read = |v: Value| ConfigureResult::from_value(&v);
    assert_eq!(
        read(
            json!({"version-rolling": true, "version-rolling.mask": "00ffe000", "minimum-difficulty": true})
        ),
        Ok(ConfigureResult {
            version_rolling: Some(VersionRollingResult::Enabled { mask: 0x00ff_e000 }),
            minimum_difficulty: Some(true),
            subscribe_extranonce: None,
        })
    );
    assert_eq!(
        read(json!({"version-rolling": false}))
            .unwrap()
            .version_rolling,
        Some(VersionRollingResult::Disabled)
    );
    assert_eq!(
        read(json!({"version-rolling": "mask too wide"}))
            .unwrap()
            .version_rolling,
        Some(VersionRollingResult::Error("mask too wide".into()))
    );
    assert!(read(json!({})).unwrap().version_rolling.is_none());
    assert!(read(json!({"version-rolling": true})).is_err());
    assert!(read(json!({"version-rolling": true, "version-rolling.mask": "1fffe00"})).is_err());
    assert!(read(json!([true])).is_err());
}

#[test]
fn resume_suggest_and_extranonce_subscribe_parse() {
    let (_, r) =
        request(r#"{"id":1,"method":"mining.subscribe","params":["cgminer/4.10.0","deadbeef"]}"#);
    assert_eq!(
        r,
        ClientRequest::Subscribe(Subscribe {
            user_agent: Some("cgminer/4.10.0".into()),
            session_id: Some("deadbeef".into())
        })
    );
    let (_, r) = request(
        r#"{"id":1,"method":"mining.subscribe","params":["bmminer/2.0.0",null,"pool.example",3333]}"#,
    );
    assert!(matches!(r, ClientRequest::Subscribe(s) if s.session_id.is_none()));
    let (_, r) = request(r#"{"id":2,"method":"mining.suggest_difficulty","params":[512]}"#);
    assert_eq!(r, ClientRequest::SuggestDifficulty(512.0));
    let (_, r) = request(r#"{"id":3,"method":"mining.extranonce.subscribe","params":[]}"#);
    assert_eq!(r, ClientRequest::ExtranonceSubscribe);
    let (_, r) = request(r#"{"id":3,"method":"mining.extranonce.subscribe"}"#);
    assert_eq!(r, ClientRequest::ExtranonceSubscribe);
    let (_, r) = request(r#"{"id":4,"method":"mining.authorize","params":["w"]}"#);
    assert_eq!(
        r,
        ClientRequest::Authorize(Authorize {
            username: "w".into(),
            password: None
        })
    );
}

#[test]
fn pool_notifications_and_requests_parse() {
    assert_eq!(
        parse_server_line(
            br#"{"id":null,"method":"mining.set_extranonce","params":["a1b2c3d4",4]}"#
        ),
        Ok(ServerMessage::SetExtranonce {
            extranonce1: vec![0xa1, 0xb2, 0xc3, 0xd4],
            extranonce2_size: 4
        })
    );
    assert_eq!(
        parse_server_line(
            br#"{"id":null,"method":"mining.set_version_mask","params":["1fffe000"]}"#
        ),
        Ok(ServerMessage::SetVersionMask(0x1fff_e000))
    );
    assert_eq!(
        parse_server_line(
            br#"{"id":null,"method":"client.reconnect","params":["pool.example","3334",5]}"#
        ),
        Ok(ServerMessage::Reconnect {
            id: Value::Null,
            params: Reconnect {
                host: Some("pool.example".into()),
                port: Some(3334),
                wait_secs: Some(5)
            }
        })
    );
    assert_eq!(
        parse_server_line(br#"{"id":9,"method":"client.reconnect","params":[]}"#),
        Ok(ServerMessage::Reconnect {
            id: json!(9),
            params: Reconnect::default()
        })
    );
    assert_eq!(
        parse_server_line(br#"{"id":"v","method":"client.get_version","params":[]}"#),
        Ok(ServerMessage::GetVersion { id: json!("v") })
    );
    assert_eq!(
        parse_server_line(br#"{"id":null,"method":"client.show_message","params":["hi"]}"#),
        Ok(ServerMessage::Other("client.show_message".into()))
    );
}

#[test]
fn a_miners_answer_to_get_version_is_read_as_a_response() {
    let line = encode_result(&json!(7), &json!("cgminer/4.10.0"));
    assert_eq!(
        parse_client_line(&line),
        Ok(ClientMessage::Response {
            id: json!(7),
            outcome: Ok(json!("cgminer/4.10.0"))
        })
    );
    assert_eq!(
        parse_client_line(br#"{"id":7,"result":null,"error":null}"#),
        Ok(ClientMessage::Response {
            id: json!(7),
            outcome: Ok(Value::Null)
        })
    );
}

// ----- errors -----

#[test]
fn error_codes_have_their_standard_numbers_and_messages() {
    let table: Vec<(i64, &str)> = ErrorCode::ALL
        .iter()
        .map(|c| (c.code(), c.message()))
        .collect();
    assert_eq!(
        table,
        vec![
            (20, "Other/Unknown"),
            (21, "Job not found"),
            (22, "Duplicate share"),
            (23, "Low difficulty share"),
            (24, "Unauthorized worker"),
            (25, "Not subscribed"),
        ]
    );
    for c in ErrorCode::ALL {
        assert_eq!(ErrorCode::from_code(c.code()), Some(c));
    }
    assert_eq!(ErrorCode::from_code(19), None);
    assert_eq!(ErrorCode::from_code(26), None);
    assert_eq!(
        encode_error(&json!(5), ErrorCode::Duplicate),
        b"{\"id\":5,\"result\":null,\"error\":[22,\"Duplicate share\",null]}\n"
    );
}

#[test]
fn pool_errors_are_read_as_arrays_objects_or_strings() {
    let outcome = |line: &str| match parse_server_line(line.as_bytes()).unwrap() {
        ServerMessage::Response { outcome, .. } => outcome,
        other => panic!("{other:?}"),
    };
    let e =
        outcome(r#"{"id":3,"result":null,"error":[23,"Low difficulty share",null]}"#).unwrap_err();
    assert_eq!(e.error_code(), Some(ErrorCode::LowDifficulty));
    assert_eq!(e.message, "Low difficulty share");
    let e =
        outcome(r#"{"id":3,"result":false,"error":{"code":21,"message":"Stale"}}"#).unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (21, "Stale"));
    let e = outcome(r#"{"id":3,"error":"nope"}"#).unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (20, "nope"));
    let e = outcome(r#"{"id":3,"error":[-3,{"m":1}]}"#).unwrap_err();
    assert_eq!((e.code, e.error_code()), (-3, None));
    assert_eq!(e.message, r#"{"m":1}"#);
    assert_eq!(
        outcome(r#"{"id":3,"result":true,"error":null}"#),
        Ok(json!(true))
    );
    assert_eq!(RpcError::from(ErrorCode::NotSubscribed).code, 25);
}

#[test]
fn lines_that_are_not_json_objects_are_parse_errors() {
    for line in [
        "",
        "nope",
        "[1,\"mining.subscribe\",[]]",
        "42",
        "\"x\"",
        "{\"id\":1",
        "null",
    ] {
        assert_eq!(
            parse_client_line(line.as_bytes()),
            Err(RequestError::Parse),
            "{line}"
        );
        assert_eq!(
            parse_server_line(line.as_bytes()),
            Err(ServerMessageError::Parse),
            "{line}"
        );
    }
    assert_eq!(RequestError::Parse.id(), &Value::Null);
    assert_eq!(
        as_json(&RequestError::Parse.reply()),
        json!({"id":null,"result":null,"error":[20,"Parse error",null]})
    );
}

#[test]
fn unknown_methods_are_answered_under_their_id() {
    let e = parse_client_line(br#"{"id":"q","method":"mining.get_transactions","params":["x"]}"#)
        .unwrap_err();
    assert_eq!(
        e,
        RequestError::UnknownMethod {
            id: json!("q"),
            method: "mining.get_transactions".into()
        }
    );
    assert_eq!(
        as_json(&e.reply()),
        json!({"id":"q","result":null,"error":[20,"Unknown method",null]})
    );
    // No method, no result, no id: nothing to answer but an error.
    assert!(matches!(
        parse_client_line(br#"{"params":[]}"#),
        Err(RequestError::UnknownMethod { .. })
    ));
}

#[test]
fn every_bad_request_param_is_named() {
    let cases = [
        (
            r#"{"id":1,"method":"mining.subscribe","params":{"a":1}}"#,
            "params is not an array",
        ),
        (
            r#"{"id":1,"method":"mining.subscribe","params":[5]}"#,
            "user agent is not a string",
        ),
        (
            r#"{"id":1,"method":"mining.subscribe","params":["a",5]}"#,
            "session id is not a string",
        ),
        (
            r#"{"id":1,"method":"mining.authorize","params":[]}"#,
            "username is not a string",
        ),
        (
            r#"{"id":1,"method":"mining.authorize","params":["w",1]}"#,
            "password is not a string",
        ),
        (
            r#"{"id":1,"method":"mining.suggest_difficulty","params":[0]}"#,
            "difficulty is not a positive number",
        ),
        (
            r#"{"id":1,"method":"mining.suggest_difficulty","params":[-1]}"#,
            "difficulty is not a positive number",
        ),
        (
            r#"{"id":1,"method":"mining.suggest_difficulty","params":["8"]}"#,
            "difficulty is not a positive number",
        ),
        (
            r#"{"id":1,"method":"mining.suggest_difficulty","params":[]}"#,
            "difficulty is not a positive number",
        ),
        (
            r#"{"id":1,"method":"mining.configure","params":[]}"#,
            "extensions are not a list",
        ),
        (
            r#"{"id":1,"method":"mining.configure","params":[[1],{}]}"#,
            "extension name is not a string",
        ),
        (
            r#"{"id":1,"method":"mining.configure","params":[["version-rolling"],[]]}"#,
            "extension params are not an object",
        ),
        (
            r#"{"id":1,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"fffffffff"}]}"#,
            "version-rolling.mask is not 8 hex chars",
        ),
        (
            r#"{"id":1,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":7}]}"#,
            "version-rolling.mask is not 8 hex chars",
        ),
        (
            r#"{"id":1,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.min-bit-count":33}]}"#,
            "version-rolling.min-bit-count is not 0..=32",
        ),
        (
            r#"{"id":1,"method":"mining.configure","params":[["minimum-difficulty"],{}]}"#,
            "minimum-difficulty.value is not a positive number",
        ),
        (
            r#"{"id":1,"method":"mining.submit","params":["w","j","00","5","00000000"]}"#,
            "ntime is not 8 hex chars",
        ),
        (
            r#"{"id":1,"method":"mining.submit","params":["w","j","00","00000000"]}"#,
            "mining.submit needs 5 params",
        ),
        (
            r#"{"id":1,"method":"mining.submit","params":[1,"j","00","00000000","00000000"]}"#,
            "worker is not a string",
        ),
        (
            r#"{"id":1,"method":"mining.submit","params":["w",1,"00","00000000","00000000"]}"#,
            "job id is not a string",
        ),
        (
            r#"{"id":1,"method":"mining.submit","params":["w","j",0,"00000000","00000000"]}"#,
            "extranonce2 is not a string",
        ),
        (
            r#"{"id":1,"method":"mining.submit","params":["w","j","0","00000000","00000000"]}"#,
            "extranonce2 is not hex of at most 32 bytes",
        ),
        (
            r#"{"id":1,"method":"mining.submit","params":["w","j","zz","00000000","00000000"]}"#,
            "extranonce2 is not hex of at most 32 bytes",
        ),
        (
            r#"{"id":1,"method":"mining.submit","params":["w","j","00",1,"00000000"]}"#,
            "ntime is not a string",
        ),
        (
            r#"{"id":1,"method":"mining.submit","params":["w","j","00","+0000000","00000000"]}"#,
            "ntime is not 8 hex chars",
        ),
        (
            r#"{"id":1,"method":"mining.submit","params":["w","j","00","00000000",null]}"#,
            "nonce is not a string",
        ),
        (
            r#"{"id":1,"method":"mining.submit","params":["w","j","00","00000000","0000000g"]}"#,
            "nonce is not 8 hex chars",
        ),
        (
            r#"{"id":1,"method":"mining.submit","params":["w","j","00","00000000","00000000","1fffe00"]}"#,
            "version bits are not 8 hex chars",
        ),
        (
            r#"{"id":1,"method":"mining.submit","params":["w","j","00","00000000","00000000",5]}"#,
            "version bits are not 8 hex chars",
        ),
    ];
    for (line, reason) in cases {
        assert_eq!(invalid(line), reason, "{line}");
    }
    let long = format!(
        r#"{{"id":1,"method":"mining.submit","params":["w","j","{}","00000000","00000000"]}}"#,
        "00".repeat(33)
    );
    assert_eq!(invalid(&long), "extranonce2 is not hex of at most 32 bytes");
    let e = parse_client_line(cases[0].0.as_bytes()).unwrap_err();
    assert_eq!(e.id(), &json!(1));
    assert_eq!(
        as_json(&e.reply()),
        json!({"id":1,"result":null,"error":[20,"Invalid params: params is not an array",null]})
    );
}

/// A change to a good notify's params.
type NotifyEdit = Box<dyn FnOnce(&mut Vec<Value>)>;

fn notify_line(edit: impl FnOnce(&mut Vec<Value>)) -> String {
    let mut p = vec![
        json!("1f"),
        json!("00".repeat(32)),
        json!("0100"),
        json!("ffff"),
        json!(["11".repeat(32)]),
        json!("20000000"),
        json!("1d00ffff"),
        json!("504e86b9"),
        json!(false),
    ];
    edit(&mut p);
    json!({"id": null, "method": "mining.notify", "params": p}).to_string()
}

#[test]
fn every_bad_pool_param_is_named() {
    assert!(matches!(
        parse_server_line(notify_line(|_| {}).as_bytes()),
        Ok(ServerMessage::Notify(_))
    ));
    let cases: Vec<(NotifyEdit, &str)> = vec![
        (
            Box::new(|p| {
                p.pop();
            }),
            "mining.notify needs 9 params",
        ),
        (Box::new(|p| p[0] = json!(1)), "job id is not a string"),
        (
            Box::new(|p| p[1] = json!("00".repeat(31))),
            "prevhash is not 64 hex chars",
        ),
        (Box::new(|p| p[1] = json!(0)), "prevhash is not a string"),
        (Box::new(|p| p[2] = json!("0g")), "coinb1 is not hex"),
        (Box::new(|p| p[3] = json!("f")), "coinb2 is not hex"),
        (Box::new(|p| p[3] = json!(null)), "coinb2 is not a string"),
        (
            Box::new(|p| p[4] = json!("11")),
            "merkle branch is not a list",
        ),
        (
            Box::new(|p| p[4] = json!(["11"])),
            "merkle branch entry is not 64 hex chars",
        ),
        (
            Box::new(|p| p[4] = json!([7])),
            "merkle branch entry is not 64 hex chars",
        ),
        (
            Box::new(|p| p[4] = json!(vec!["11".repeat(32); 33])),
            "merkle branch is longer than 32",
        ),
        (
            Box::new(|p| p[5] = json!("2")),
            "version is not 8 hex chars",
        ),
        (
            Box::new(|p| p[6] = json!(486604799)),
            "nbits is not a string",
        ),
        (
            Box::new(|p| p[7] = json!("504e86b9a")),
            "ntime is not 8 hex chars",
        ),
        (
            Box::new(|p| p[8] = json!("true")),
            "clean_jobs is not a boolean",
        ),
    ];
    for (edit, reason) in cases {
        let line = notify_line(edit);
        assert_eq!(server_invalid(&line), reason, "{line}");
    }
    let others = [
        (
            r#"{"id":null,"method":"mining.notify","params":"x"}"#,
            "params is not an array",
        ),
        (
            r#"{"id":null,"method":"mining.set_difficulty","params":[0]}"#,
            "difficulty is not a positive number",
        ),
        (
            r#"{"id":null,"method":"mining.set_difficulty","params":["1"]}"#,
            "difficulty is not a positive number",
        ),
        (
            r#"{"id":null,"method":"mining.set_difficulty","params":{}}"#,
            "difficulty is not a positive number",
        ),
        (
            r#"{"id":null,"method":"mining.set_extranonce","params":["xyz",4]}"#,
            "extranonce1 is not hex of at most 32 bytes",
        ),
        (
            r#"{"id":null,"method":"mining.set_extranonce","params":["00",33]}"#,
            "extranonce2_size is not 0..=32",
        ),
        (
            r#"{"id":null,"method":"mining.set_extranonce","params":["00"]}"#,
            "extranonce2_size is not 0..=32",
        ),
        (
            r#"{"id":null,"method":"mining.set_version_mask","params":["1fffe00"]}"#,
            "mask is not 8 hex chars",
        ),
        (
            r#"{"id":null,"method":"client.reconnect","params":[1]}"#,
            "host is not a string",
        ),
        (
            r#"{"id":null,"method":"client.reconnect","params":["h",70000]}"#,
            "bad port",
        ),
        (
            r#"{"id":null,"method":"client.reconnect","params":["h","x"]}"#,
            "bad port",
        ),
        (
            r#"{"id":null,"method":"client.reconnect","params":["h",1,-1]}"#,
            "wait is not seconds",
        ),
    ];
    for (line, reason) in others {
        assert_eq!(server_invalid(line), reason, "{line}");
    }
}

#[test]
fn ids_of_any_type_are_echoed_unchanged() {
    for id in [
        json!(0),
        json!("abc"),
        json!(null),
        json!(7.5),
        json!({"x": 1}),
        json!([1]),
    ] {
        let line =
            json!({"id": id, "method": "mining.authorize", "params": ["w", "x"]}).to_string();
        let (got, _) = request(&line);
        assert_eq!(got, id);
        assert_eq!(as_json(&encode_bool_result(&got, true))["id"], id);
        assert_eq!(
            as_json(&encode_error(&got, ErrorCode::Unauthorized))["id"],
            id
        );
    }
}

#[test]
fn job_ids_are_hex() {
    assert_eq!(job_id(0), "0");
    assert_eq!(job_id(0xa00_0001), "a000001");
    assert_eq!(job_id(u64::MAX), "ffffffffffffffff");
    assert!(is_hex_job_id("a000001") && is_hex_job_id("bf") && is_hex_job_id("ABCDEF"));
    assert!(!is_hex_job_id("") && !is_hex_job_id("job-1") && !is_hex_job_id(&"f".repeat(17)));
}

#[test]
fn prevhash_words_are_swapped_and_back() {
    let wire = "4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000";
    let p = PrevHash::from_hex(wire).unwrap();
    let block = p.to_block_hash();
    assert_eq!(
        block.to_string(),
        "00000000440b921e1b77c6c0487ae5616de67f788f44ae2a5af6e2194d16b6f8"
    );
    assert_eq!(PrevHash::from_block_hash(block), p);
    assert_eq!(p.to_hex(), wire);
    assert_eq!(PrevHash::from_hex(&wire[2..]), None);
    assert_eq!(hex_u32("20000000"), Some(0x2000_0000));
    assert_eq!(u32_hex(2), "00000002");
    assert_eq!(hex_u32("-0000001"), None);
}

// ----- round trips -----

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._/:\"\\\\ -]{0,24}"
}

/// Difficulties whose decimal form reads back exactly (n / 1024, integers among them).
fn difficulty() -> impl Strategy<Value = f64> {
    prop_oneof![
        (1u32..100_000_000).prop_map(|n| f64::from(n) / 1024.0),
        (1u64..1 << 53).prop_map(|n| n as f64),
    ]
}

fn client_request() -> impl Strategy<Value = ClientRequest> {
    let ua = proptest::option::of(text());
    prop_oneof![
        (ua, proptest::option::of(text())).prop_map(|(user_agent, session_id)| {
            ClientRequest::Subscribe(Subscribe {
                user_agent,
                session_id,
            })
        }),
        (text(), proptest::option::of(text())).prop_map(|(username, password)| {
            ClientRequest::Authorize(Authorize { username, password })
        }),
        (
            proptest::option::of((
                proptest::option::of(any::<u32>()),
                proptest::option::of(0u32..=32)
            )),
            proptest::option::of(difficulty()),
            any::<bool>(),
            proptest::collection::vec("[a-z]{1,8}\\.x", 0..3),
        )
            .prop_map(|(vr, minimum_difficulty, subscribe_extranonce, unknown)| {
                ClientRequest::Configure(Configure {
                    version_rolling: vr.map(|(mask, min_bit_count)| VersionRollingRequest {
                        mask,
                        min_bit_count,
                    }),
                    minimum_difficulty,
                    subscribe_extranonce,
                    unknown,
                })
            }),
        Just(ClientRequest::ExtranonceSubscribe),
        difficulty().prop_map(ClientRequest::SuggestDifficulty),
        (
            text(),
            "[0-9a-f]{1,16}",
            proptest::collection::vec(any::<u8>(), 0..=MAX_EXTRANONCE_SIZE),
            any::<u32>(),
            any::<u32>(),
            proptest::option::of(any::<u32>()),
        )
            .prop_map(
                |(worker, job_id, extranonce2, ntime, nonce, version_bits)| {
                    ClientRequest::Submit(Submit {
                        worker,
                        job_id,
                        extranonce2,
                        ntime,
                        nonce,
                        version_bits,
                    })
                }
            ),
    ]
}

fn id() -> impl Strategy<Value = Id> {
    prop_oneof![
        Just(Value::Null),
        any::<u32>().prop_map(Value::from),
        text().prop_map(Value::from)
    ]
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    prop_oneof![
        (
            text(),
            any::<[u8; 32]>(),
            proptest::collection::vec(any::<u8>(), 0..100),
            proptest::collection::vec(any::<u8>(), 0..100),
            proptest::collection::vec(any::<[u8; 32]>(), 0..=MAX_MERKLE_BRANCH),
            (any::<u32>(), any::<u32>(), any::<u32>(), any::<bool>()),
        )
            .prop_map(
                |(
                    job_id,
                    prev,
                    coinb1,
                    coinb2,
                    merkle_branch,
                    (version, nbits, ntime, clean_jobs),
                )| {
                    ServerMessage::Notify(Notify {
                        job_id,
                        prevhash: PrevHash(prev),
                        coinb1,
                        coinb2,
                        merkle_branch,
                        version,
                        nbits,
                        ntime,
                        clean_jobs,
                    })
                }
            ),
        difficulty().prop_map(ServerMessage::SetDifficulty),
        (
            proptest::collection::vec(any::<u8>(), 0..=MAX_EXTRANONCE_SIZE),
            0..=MAX_EXTRANONCE_SIZE
        )
            .prop_map(
                |(extranonce1, extranonce2_size)| ServerMessage::SetExtranonce {
                    extranonce1,
                    extranonce2_size
                }
            ),
        any::<u32>().prop_map(ServerMessage::SetVersionMask),
        (
            id(),
            proptest::option::of(text()),
            proptest::option::of(any::<u16>()),
            proptest::option::of(any::<u64>())
        )
            .prop_map(|(id, host, port, wait_secs)| ServerMessage::Reconnect {
                id,
                params: Reconnect {
                    host,
                    port,
                    wait_secs
                }
            }),
        id().prop_map(|id| ServerMessage::GetVersion { id }),
        (any::<u32>().prop_map(Value::from), any::<bool>()).prop_map(|(id, ok)| {
            ServerMessage::Response {
                id,
                outcome: if ok {
                    Ok(json!(true))
                } else {
                    Err(RpcError::from(ErrorCode::JobNotFound))
                },
            }
        }),
        "client\\.[a-z_]{1,12}".prop_map(ServerMessage::Other),
    ]
}

proptest! {
    #[test]
    fn client_requests_round_trip(id in id(), r in client_request()) {
        let line = r.encode(&id);
        prop_assert_eq!(line.last(), Some(&b'\n'));
        prop_assert_eq!(
            parse_client_line(&line),
            Ok(ClientMessage::Request { id, request: r })
        );
    }

    #[test]
    fn server_messages_round_trip(m in server_message()) {
        let line = m.encode();
        prop_assert_eq!(line.last(), Some(&b'\n'));
        prop_assert_eq!(parse_server_line(&line), Ok(m));
    }

    #[test]
    fn subscribe_and_configure_answers_round_trip(
        subscriptions in proptest::collection::vec((text(), text()), 0..3),
        extranonce1 in proptest::collection::vec(any::<u8>(), 0..=MAX_EXTRANONCE_SIZE),
        extranonce2_size in 0..=MAX_EXTRANONCE_SIZE,
        vr in proptest::option::of(prop_oneof![
            any::<u32>().prop_map(|mask| VersionRollingResult::Enabled { mask }),
            Just(VersionRollingResult::Disabled),
            "[a-z ]{1,12}".prop_map(VersionRollingResult::Error),
        ]),
        minimum_difficulty in proptest::option::of(any::<bool>()),
        subscribe_extranonce in proptest::option::of(any::<bool>()),
    ) {
        let s = SubscribeResult { subscriptions, extranonce1, extranonce2_size };
        let line = as_json(&encode_subscribe_result(&json!(1), &s));
        prop_assert!(line["result"][0].is_array());
        prop_assert_eq!(SubscribeResult::from_value(&line["result"]), Ok(s));
        let c = ConfigureResult { version_rolling: vr, minimum_difficulty, subscribe_extranonce };
        let line = as_json(&encode_configure_result(&json!(1), &c));
        prop_assert_eq!(ConfigureResult::from_value(&line["result"]), Ok(c));
    }

    #[test]
    fn no_line_panics_the_parsers(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_client_line(&bytes);
        let _ = parse_server_line(&bytes);
    }
}

/// The encoders as they were before they wrote into a caller's buffer (session 9): a
/// `serde_json::Map` for the configure answer, `Value`s and `String`s for the params. The
/// new ones must give these bytes.
mod former {
    use super::*;

    fn line(value: &impl Serialize) -> Vec<u8> {
        let mut out = serde_json::to_vec(value).unwrap();
        out.push(b'\n');
        out
    }

    pub(super) fn configure(id: &Id, r: &ConfigureResult) -> Vec<u8> {
        let mut o = serde_json::Map::new();
        match &r.version_rolling {
            None => {}
            Some(VersionRollingResult::Enabled { mask }) => {
                o.insert("version-rolling".into(), true.into());
                o.insert("version-rolling.mask".into(), u32_hex(*mask).into());
            }
            Some(VersionRollingResult::Disabled) => {
                o.insert("version-rolling".into(), false.into());
            }
            Some(VersionRollingResult::Error(e)) => {
                o.insert("version-rolling".into(), e.as_str().into());
            }
        }
        if let Some(b) = r.minimum_difficulty {
            o.insert("minimum-difficulty".into(), b.into());
        }
        if let Some(b) = r.subscribe_extranonce {
            o.insert("subscribe-extranonce".into(), b.into());
        }
        line(&ResultOut {
            id,
            result: Value::Object(o),
            error: None,
        })
    }

    pub(super) fn subscribe(id: &Id, r: &SubscribeResult) -> Vec<u8> {
        let result = (
            &r.subscriptions,
            r.extranonce1.to_lower_hex_string(),
            r.extranonce2_size,
        );
        line(&ResultOut {
            id,
            result,
            error: None,
        })
    }

    pub(super) fn note(method: &'static str, params: Value) -> Vec<u8> {
        line(&RequestOut {
            id: &Value::Null,
            method,
            params,
        })
    }
}

proptest! {
    #[test]
    fn configure_answers_are_the_bytes_the_object_map_gave(
        id in id(),
        vr in proptest::option::of(prop_oneof![
            any::<u32>().prop_map(|mask| VersionRollingResult::Enabled { mask }),
            Just(VersionRollingResult::Disabled),
            text().prop_map(VersionRollingResult::Error),
        ]),
        minimum_difficulty in proptest::option::of(any::<bool>()),
        subscribe_extranonce in proptest::option::of(any::<bool>()),
    ) {
        let c = ConfigureResult { version_rolling: vr, minimum_difficulty, subscribe_extranonce };
        let old = former::configure(&id, &c);
        prop_assert_eq!(&encode_configure_result(&id, &c), &old);
        let mut out = b"before\n".to_vec();
        encode_configure_result_into(&mut out, &id, &c);
        prop_assert_eq!(&out[7..], &old[..]);
    }

    #[test]
    fn a_miners_subscribe_answer_is_the_bytes_of_its_subscribe_result(
        id in id(),
        subscription in any::<u64>(),
        extranonce1 in proptest::collection::vec(any::<u8>(), 0..=MAX_EXTRANONCE_SIZE),
        extranonce2_size in 0..=MAX_EXTRANONCE_SIZE,
    ) {
        let a = SubscribeAnswer { subscription, extranonce1, extranonce2_size };
        let r = a.to_result();
        prop_assert_eq!(&r.subscriptions[0].1, &format!("{subscription:x}"));
        let old = former::subscribe(&id, &r);
        prop_assert_eq!(&encode_subscribe_result(&id, &r), &old);
        let mut out = b"x".to_vec();
        a.encode_into(&mut out, &id);
        prop_assert_eq!(&out[1..], &old[..]);
    }

    #[test]
    fn notifications_are_the_bytes_their_values_gave(
        d in any::<f64>(),
        mask in any::<u32>(),
        extranonce1 in proptest::collection::vec(any::<u8>(), 0..=MAX_EXTRANONCE_SIZE),
        extranonce2_size in 0..=MAX_EXTRANONCE_SIZE,
    ) {
        prop_assert_eq!(
            ServerMessage::SetDifficulty(d).encode(),
            former::note("mining.set_difficulty", Value::from(vec![difficulty_value(d)]))
        );
        prop_assert_eq!(
            ServerMessage::SetVersionMask(mask).encode(),
            former::note("mining.set_version_mask", json!([u32_hex(mask)]))
        );
        let e1 = extranonce1.to_lower_hex_string();
        prop_assert_eq!(
            ServerMessage::SetExtranonce { extranonce1, extranonce2_size }.encode(),
            former::note("mining.set_extranonce", json!([e1, extranonce2_size]))
        );
    }

    #[test]
    fn answers_appended_to_a_buffer_are_the_lines_alone(
        id in id(),
        ok in any::<bool>(),
        code in any::<i64>(),
        message in text(),
        m in server_message(),
    ) {
        let mut out = Vec::new();
        encode_bool_result_into(&mut out, &id, ok);
        let n = out.len();
        prop_assert_eq!(&out[..], &encode_bool_result(&id, ok)[..]);
        encode_error_message_into(&mut out, &id, code, &message);
        let k = out.len();
        prop_assert_eq!(&out[n..], &encode_error_message(&id, code, &message)[..]);
        m.encode_into(&mut out);
        prop_assert_eq!(&out[k..], &m.encode()[..]);
    }
}
