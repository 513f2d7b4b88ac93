//! Micro-benchmarks of the codec work on the proxy's hot paths, one call each:
//!
//! - `miner_request/*`: [`parse_miner_request`] on an xmrig-shaped `submit` (every share) and
//!   `login` (every connection) line.
//! - `job_line/*`: a job for one miner with its fixed byte patched. `parts` is what the proxy
//!   does per miner and job (three shared slices, no copy); `to_vec` the copying alternative;
//!   `new` the encoding done once per upstream job; `parts_x256` one upstream's whole fan-out.
//! - `submit_path/*`: the rest of a share's trip through the codec: the pool-bound `submit`
//!   line, the pool's `OK` parsed (`parse_pool_ok` the long way into a `Value`,
//!   `parse_pool_line_ok` as the share path reads it), the miner's `OK` encoded, the nonce and
//!   result decoded.
//! - `line_codec/*`: [`LineCodec`] framing: one miner `submit` line out of the read buffer
//!   (every share), and 64 pool answers read in one go.
//! - `sv1/*`: Stratum V1: a `mining.submit` line parsed (every share), the sha256d share
//!   check of para's real share (every share: coinbase, merkle branch of 2, header), and a
//!   `mining.notify` encoded (once per upstream job).
//!
//! Run with `cargo bench -p stratum-proto` (or `cargo xtask bench`, which runs the load
//! generator instead); `cargo test --benches` runs each once as a test.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_main, Criterion, Throughput};
use stratum_proto::cryptonote::{
    encode_pool_submit, encode_status, is_status_ok, parse_miner_request, parse_pool_line,
    parse_pool_message, JobLine, MinerRequest, PoolLine, PoolMessage,
};
use stratum_proto::sv1::share::check_share;
use stratum_proto::sv1::{
    parse_client_line, parse_server_line, ClientMessage, ClientRequest, ServerMessage,
};
use stratum_proto::{parse_nonce, result_difficulty, Job, LineCodec};
use tokio_util::codec::Decoder;

const SUBMIT: &[u8] = br#"{"id":3,"jsonrpc":"2.0","method":"submit","params":{"id":"6f1c2a57-3b1e-4c9a-9d0e-2b7f4a1c5e93","job_id":"stubjob000002","nonce":"3a1c00b9","result":"000000000000000000000000000000000000000000000000fdd478e926310800","algo":"rx/0"}}"#;

const LOGIN: &[u8] = br#"{"id":1,"jsonrpc":"2.0","method":"login","params":{"login":"44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A","pass":"x","agent":"XMRig/6.26.0 (Linux x86_64) libuv/1.44.2 gcc/12.2.0","rigid":"rig-00042","algo":["rx/0","cn/r","rx/wow"]}}"#;

const POOL_OK: &[u8] = br#"{"id":17,"jsonrpc":"2.0","error":null,"result":{"status":"OK"}}"#;

/// A Monero-shaped job (76-byte blob), as in the xmrig-proxy transcripts.
fn job() -> Job {
    Job {
        blob: "1010b6d0e7b0060e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d000000001a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637383905".into(),
        job_id: "stubjob000002".into(),
        target: "9bc42000".into(),
        algo: Some("rx/0".into()),
        height: Some(3_000_002),
        seed_hash: Some("a".repeat(64)),
    }
}

fn miner_request(c: &mut Criterion) {
    let mut g = c.benchmark_group("miner_request");
    g.bench_function("submit", |b| {
        b.iter(|| {
            let r = parse_miner_request(black_box(SUBMIT));
            debug_assert!(matches!(r, Ok((_, MinerRequest::Submit(_)))));
            r
        })
    });
    g.bench_function("login", |b| {
        b.iter(|| parse_miner_request(black_box(LOGIN)))
    });
    g.finish();
}

fn job_line(c: &mut Criterion) {
    let job = job();
    let line = JobLine::new(&job);
    let mut g = c.benchmark_group("job_line");
    g.bench_function("parts", |b| b.iter(|| line.parts(black_box(0xb9))));
    g.bench_function("to_vec", |b| b.iter(|| line.to_vec(black_box(0xb9))));
    g.bench_function("new", |b| b.iter(|| JobLine::new(black_box(&job))));
    g.throughput(Throughput::Elements(256));
    g.bench_function("parts_x256", |b| {
        b.iter(|| {
            let mut bytes = 0;
            for fixed in 0..=255u8 {
                bytes += line
                    .parts(black_box(fixed))
                    .iter()
                    .map(|p| p.len())
                    .sum::<usize>();
            }
            bytes
        })
    });
    g.finish();
}

fn submit_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("submit_path");
    g.bench_function("encode_pool_submit", |b| {
        b.iter(|| {
            encode_pool_submit(
                black_box(17),
                "02381691-b3ae-46fc-b997-629c24a133f9",
                "stubjob000002",
                "3a1c00b9",
                "000000000000000000000000000000000000000000000000fdd478e926310800",
                Some("rx/0"),
            )
        })
    });
    g.bench_function("parse_pool_ok", |b| {
        b.iter(|| match parse_pool_message(black_box(POOL_OK)) {
            Ok(PoolMessage::Response { outcome: Ok(v), .. }) => is_status_ok(&v),
            _ => false,
        })
    });
    g.bench_function("parse_pool_line_ok", |b| {
        b.iter(|| {
            matches!(
                parse_pool_line(black_box(POOL_OK)),
                Ok(PoolLine::Accepted { .. })
            )
        })
    });
    let id = serde_json::json!(3);
    g.bench_function("encode_status_ok", |b| {
        b.iter(|| encode_status(black_box(&id), "OK"))
    });
    g.bench_function("nonce_and_result", |b| {
        b.iter(|| {
            (
                parse_nonce(black_box("3a1c00b9")),
                result_difficulty(black_box(
                    "000000000000000000000000000000000000000000000000fdd478e926310800",
                )),
            )
        })
    });
    g.finish();
}

fn line_codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("line_codec");
    let mut codec = LineCodec::default();
    let mut submit = SUBMIT.to_vec();
    submit.push(b'\n');
    g.bench_function("decode_submit", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(black_box(&submit[..]));
            codec.decode(&mut buf).ok().flatten().map(|l| l.len())
        })
    });
    let mut answers = Vec::new();
    for _ in 0..64 {
        answers.extend_from_slice(POOL_OK);
        answers.push(b'\n');
    }
    g.throughput(Throughput::Elements(64));
    g.bench_function("decode_64_answers", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(black_box(&answers[..]));
            let mut n = 0;
            while let Ok(Some(_)) = codec.decode(&mut buf) {
                n += 1;
            }
            n
        })
    });
    g.finish();
}

/// para 0.6.0's job and first share (`shared/docs/reference/sv1-para-miner-transcript.md`).
const SV1_NOTIFY: &[u8] = br#"{"id":null,"method":"mining.notify","params":["a000001","c488987d58337b55b94478e8455ca3399eefbc00487f85961c7c5da756853076","01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff10c488987d","ffffffff0100f2052a010000001976a91458337b55b94478e8455ca3399eefbc00487f859688ac00000000",["07961f775b3f9d73bcbb87538e23b6e2ed57d590e21a32d4a92ee6f4523fa8cf","0fe437305229ed54f1e20edcd7370dd28de61cb49bd8155bc3515d2b5cf3e3b5"],"20000000","207fffff","6b0d54b4",true]}"#;
const SV1_SUBMIT: &[u8] = br#"{"id":3,"method":"mining.submit","params":["bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.rig1","a000001","0000000000000000","6b0d54b4","00000b07","04534000"]}"#;

fn sv1(c: &mut Criterion) {
    let Ok(notify @ ServerMessage::Notify(_)) = parse_server_line(SV1_NOTIFY) else {
        panic!("the notify line parses")
    };
    let ServerMessage::Notify(job) = &notify else {
        unreachable!()
    };
    let Ok(ClientMessage::Request {
        request: ClientRequest::Submit(submit),
        ..
    }) = parse_client_line(SV1_SUBMIT)
    else {
        panic!("the submit line parses")
    };
    let mut g = c.benchmark_group("sv1");
    g.bench_function("parse_submit", |b| {
        b.iter(|| parse_client_line(black_box(SV1_SUBMIT)))
    });
    g.bench_function("check_share", |b| {
        b.iter(|| {
            let r = check_share(
                job,
                &[0xa1, 0, 0, 1],
                black_box(&submit),
                0x1fff_e000,
                1.5e-5,
            );
            debug_assert!(r.is_ok_and(|c| c.meets_share));
            r
        })
    });
    g.bench_function("encode_notify", |b| b.iter(|| black_box(&notify).encode()));
    g.finish();
}

/// Every benchmark of this file (what `criterion_group!` would write, documented).
fn benches() {
    let mut c = Criterion::default().configure_from_args();
    miner_request(&mut c);
    job_line(&mut c);
    submit_path(&mut c);
    line_codec(&mut c);
    sv1(&mut c);
}

criterion_main!(benches);
