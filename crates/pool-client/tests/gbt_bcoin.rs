//! The solo job of `pool_client::gbt` against a real node: bcoin 1.0.2 regtest (installed and
//! started by test-support). Templates are turned into jobs, a nonce is ground on the CPU
//! (regtest's target is met by one hash in two), the block is rebuilt from the solution and
//! submitted; the node must take it as its new tip. Before segwit (an empty coinbase witness)
//! and after (the witness reserved value, a witness commitment over real segwit spends).
//! Takes about 2 s once bcoin is installed (the first run installs it with npm: about 10 s).

use std::time::Duration;

use bitcoin::block::Header;
use bitcoin::consensus::encode;
use bitcoin::{
    absolute, transaction, Amount, Network, OutPoint, ScriptBuf, Sequence, Transaction, TxIn,
    TxOut, Txid, Witness, WitnessProgram,
};
use pool_client::gbt::{payout_script, BlockTemplate, CoinbaseParams, SoloJob, Solution};
use serde_json::json;
use test_support::bcoin::{Bcoin, SEGWIT_HEIGHT};

/// Where the proxy's blocks pay: bcoin's regtest P2WPKH form (`rb1...`).
const PAYOUT: &str = test_support::bcoin::REGTEST_P2WPKH;
/// How many nonces to try before giving up (each succeeds with probability 1/2).
const MAX_TRIES: u32 = 256;

fn params() -> CoinbaseParams {
    CoinbaseParams {
        payout: payout_script(PAYOUT, Network::Regtest).expect("bcoin's regtest address"),
        extranonce1_size: 4,
        extranonce2_size: 4,
        tag: b"/stratum-proxy/".to_vec(),
    }
}

/// The first nonce from 0 whose header meets (`true`) or misses (`false`) the job's network
/// target, and that header.
fn grind(job: &SoloJob, en1: &[u8], en2: &[u8], meets: bool) -> (u32, Header) {
    for nonce in 0..MAX_TRIES {
        let solution = Solution {
            extranonce1: en1,
            extranonce2: en2,
            ntime: job.template().cur_time,
            nonce,
            version: job.template().version,
        };
        let header = job.header(&solution).expect("sizes match the job");
        if header.validate_pow(job.network_target()).is_ok() == meets {
            return (nonce, header);
        }
    }
    panic!("no nonce in {MAX_TRIES} tries");
}

/// Takes a template from the node, mines it and submits the block; checks the node's new tip.
/// Returns the template's transaction count.
async fn mine_one(node: &Bcoin, miner: u8) -> usize {
    let height = node.block_count().await.unwrap();
    let tip = node.best_block_hash().await.unwrap();
    let template = BlockTemplate::from_json(&node.get_block_template().await.unwrap())
        .expect("bcoin's template parses");
    assert_eq!(template.height, height + 1);
    assert_eq!(template.prev_hash.to_string(), tip);
    let job = SoloJob::new(template, &params()).unwrap();
    let en1 = [miner, 0, 0, 1];
    let en2 = [0, 0, 0, miner];

    // A header that misses the target is refused by the node, and changes nothing.
    let (nonce, _) = grind(&job, &en1, &en2, false);
    let bad = job
        .block_hex(&Solution {
            extranonce1: &en1,
            extranonce2: &en2,
            ntime: job.template().cur_time,
            nonce,
            version: job.template().version,
        })
        .unwrap();
    let answer = node.submit_block(&bad).await.unwrap();
    assert_eq!(answer.as_deref(), Some("rejected: high-hash"));

    let (nonce, header) = grind(&job, &en1, &en2, true);
    let block = job
        .block_hex(&Solution {
            extranonce1: &en1,
            extranonce2: &en2,
            ntime: job.template().cur_time,
            nonce,
            version: job.template().version,
        })
        .unwrap();
    let answer = node.submit_block(&block).await.unwrap();
    assert_eq!(answer, None, "bcoin accepts the block (null)");
    assert_eq!(node.block_count().await.unwrap(), height + 1);
    assert_eq!(
        node.best_block_hash().await.unwrap(),
        header.block_hash().to_string(),
        "our block is the tip"
    );
    let again = node.submit_block(&block).await.unwrap();
    assert_eq!(again.as_deref(), Some("rejected: duplicate"));
    job.template().transactions.len()
}

/// bcoin's regtest bech32 form of a P2WSH address.
fn bcoin_address(program: &WitnessProgram) -> String {
    let hrp = bitcoin::bech32::Hrp::parse("rb").unwrap();
    bitcoin::bech32::segwit::encode(hrp, program.version().to_fe(), program.program().as_bytes())
        .unwrap()
}

/// A segwit spend of output 0 of `txid` (a P2WSH of `OP_TRUE`, worth `value`) back to the
/// same script, less a fee.
fn spend_op_true(txid: Txid, value: Amount, op_true: &ScriptBuf) -> Transaction {
    Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint { txid, vout: 0 },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::from_slice(&[op_true.as_bytes()]),
        }],
        output: vec![TxOut {
            value: value - Amount::from_sat(10_000),
            script_pubkey: ScriptBuf::new_p2wsh(&op_true.wscript_hash()),
        }],
    }
}

#[tokio::test]
async fn solo_jobs_mine_blocks_that_bcoin_accepts_before_and_after_segwit() {
    test_support::init_tracing();
    tokio::time::timeout(Duration::from_secs(300), async {
        let node = Bcoin::start()
            .await
            .expect("bcoin starts (apt-get install -y nodejs npm)");

        // Before segwit: two blocks in a row, the second on top of the first.
        assert_eq!(mine_one(&node, 1).await, 0);
        assert_eq!(mine_one(&node, 2).await, 0);
        assert_eq!(node.block_count().await.unwrap(), 2);

        // Activate segwit with the node's own blocks, paying to a P2WSH of OP_TRUE: anyone
        // can spend those coinbases once mature (100 blocks), no keys needed.
        let op_true = bitcoin::script::Builder::new()
            .push_opcode(bitcoin::opcodes::OP_TRUE)
            .into_script();
        let program = WitnessProgram::p2wsh(&op_true);
        let hashes = node
            .generate_to_address(SEGWIT_HEIGHT - 1, &bcoin_address(&program))
            .await
            .unwrap();
        assert_eq!(node.block_count().await.unwrap(), SEGWIT_HEIGHT + 1);

        // Three segwit spends of early coinbases (heights 3, 4, 5: 50 BTC each) to the mempool.
        for hash in &hashes[..3] {
            let block = node
                .call("getblock", json!([hash, true, false]))
                .await
                .unwrap();
            let txid: Txid = block["tx"][0].as_str().unwrap().parse().unwrap();
            let tx = spend_op_true(txid, Amount::from_sat(5_000_000_000), &op_true);
            let sent = node
                .send_raw_transaction(&encode::serialize_hex(&tx))
                .await
                .expect("the node takes the spend");
            assert_eq!(sent, tx.compute_txid().to_string());
        }

        // After segwit: a block with those transactions (witness commitment over them, the
        // coinbase's witness reserved value), then an empty one on top.
        let template = node.get_block_template().await.unwrap();
        let rules = template["rules"].as_array().unwrap();
        assert!(rules.iter().any(|r| r == "!segwit"), "{rules:?}");
        assert_eq!(mine_one(&node, 3).await, 3);
        assert_eq!(mine_one(&node, 4).await, 0);
        assert_eq!(node.block_count().await.unwrap(), SEGWIT_HEIGHT + 3);
        // bcoin's submitblock quietly adds a missing witness reserved value (its "eloipool
        // fix") and says so in its log: ours must have been there.
        let log = node.log_tail(1 << 22);
        assert!(
            !log.contains("Submitted block had no witness nonce"),
            "a block lacked the coinbase's witness reserved value"
        );
    })
    .await
    .expect("done within 300 s");
}

#[test]
fn the_bcoin_form_of_a_p2wsh_address_parses_back_to_its_script() {
    let op_true = bitcoin::script::Builder::new()
        .push_opcode(bitcoin::opcodes::OP_TRUE)
        .into_script();
    let program = WitnessProgram::p2wsh(&op_true);
    let address = bcoin_address(&program);
    assert!(address.starts_with("rb1q"), "{address}");
    assert_eq!(
        payout_script(&address, Network::Regtest).unwrap(),
        ScriptBuf::new_p2wsh(&op_true.wscript_hash())
    );
}
