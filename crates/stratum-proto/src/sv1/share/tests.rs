//! Share checks against real blocks (Bitcoin mainnet genesis and block 100000, the testnet
//! block of slush's spec example) and a real share of `para` 0.6.0
//! (`shared/docs/reference/sv1-para-miner-transcript.md`).

use std::str::FromStr;

use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, TxMerkleNode, Txid};
use proptest::prelude::*;

use super::*;
use crate::sv1::{
    parse_client_line, parse_server_line, ClientMessage, ClientRequest, PrevHash, ServerMessage,
};

fn hex(s: &str) -> Vec<u8> {
    bitcoin::hex::FromHex::from_hex(s).unwrap()
}

fn submit(extranonce2: &[u8], ntime: u32, nonce: u32, version_bits: Option<u32>) -> Submit {
    Submit {
        worker: "w".into(),
        job_id: "1".into(),
        extranonce2: extranonce2.to_vec(),
        ntime,
        nonce,
        version_bits,
    }
}

#[test]
fn the_genesis_block_checks_out_whatever_the_coinbase_split() {
    let genesis = bitcoin::blockdata::constants::genesis_block(bitcoin::Network::Bitcoin);
    let coinbase = bitcoin::consensus::encode::serialize(&genesis.txdata[0]);
    // Extranonce1 and extranonce2 are just the bytes at the split points.
    for (a, b, c) in [(41, 45, 49), (0, 0, 0), (100, 104, 112)] {
        let job = Notify {
            job_id: "0".into(),
            prevhash: PrevHash([0; 32]),
            coinb1: coinbase[..a].to_vec(),
            coinb2: coinbase[c..].to_vec(),
            merkle_branch: vec![],
            version: 1,
            nbits: 0x1d00_ffff,
            ntime: 1_231_006_505,
            clean_jobs: true,
        };
        assert_eq!(
            coinbase_bytes(&job, &coinbase[a..b], &coinbase[b..c]),
            coinbase
        );
        let s = submit(&coinbase[b..c], 1_231_006_505, 2_083_236_893, None);
        let check = check_share(&job, &coinbase[a..b], &s, 0, 1.0).unwrap();
        assert_eq!(
            check.hash.to_string(),
            "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"
        );
        assert_eq!(check.header, genesis.header);
        assert!(check.meets_network && check.meets_share);
        assert!(
            (check.difficulty - 2536.426).abs() < 0.001,
            "{}",
            check.difficulty
        );
    }
}

/// Mainnet block 100000: its coinbase (rebuilt byte by byte) and its three other txids.
const B100K_COINBASE: &str = concat!(
    "01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff08",
    "044c86041b020602ffffffff0100f2052a010000004341041b0e8c2567c12536aa13357b79a073dc4444",
    "acb83c4ec7a0e2f99dd7457516c5817242da796924ca4e99947d087fedf9ce467cb9f7c6287078f801df",
    "276fdf84ac00000000"
);
const B100K_TXIDS: [&str; 3] = [
    "fff2525b8931402dd09222c50775608f75787bd2b87e56995a7bdd30f79702c4",
    "6359f0868171b1d194cbee1af2f16ea598ae8fad666d9b012c8ed2b79a236ec4",
    "e9a66845e05d5abc0ad04ec80f774a7e585c6e8db975962d069a522137b80c1d",
];

fn block_100000() -> (Notify, Vec<u8>, Submit) {
    let coinbase = hex(B100K_COINBASE);
    let txids: Vec<Txid> = B100K_TXIDS.iter().map(|t| t.parse().unwrap()).collect();
    // The scriptSig is `04 4c86041b 02 0602`: call its last 4 bytes extranonce1 ‖ extranonce2.
    let at = 42 + 4;
    let job = Notify {
        job_id: "186a0".into(),
        prevhash: PrevHash::from_block_hash(
            "000000000002d01c1fccc21636b607dfd930d31d01c3a62104612a1719011250"
                .parse()
                .unwrap(),
        ),
        coinb1: coinbase[..at].to_vec(),
        coinb2: coinbase[at + 4..].to_vec(),
        merkle_branch: merkle_branch(&txids),
        version: 1,
        nbits: 0x1b04_864c,
        ntime: 0,
        clean_jobs: false,
    };
    let s = submit(&coinbase[at + 2..at + 4], 1_293_623_863, 274_148_111, None);
    (job, coinbase[at..at + 2].to_vec(), s)
}

#[test]
fn block_100000_is_rebuilt_from_its_coinbase_and_branch() {
    let (job, en1, s) = block_100000();
    let coinbase = hex(B100K_COINBASE);
    assert_eq!(
        coinbase_txid(&coinbase, &[], &[], &[]).to_string(),
        "8c14f0db3df150123e6f3dbbf30f8b955a8249b62ac1d1ff16284aefa3d06d87"
    );
    let check = check_share(&job, &en1, &s, 0, 14_484.0).unwrap();
    assert_eq!(
        check.header.merkle_root.to_string(),
        "f3e94742aca4b5ef85488dc37c06c3282295ffec960994b2c0d5ac2a25a95766"
    );
    assert_eq!(
        check.hash.to_string(),
        "000000000003ba27aa200b1cecaad478d2b00432346c3f1f3986da1afd33e506"
    );
    assert!(check.meets_network && check.meets_share);
    assert!((check.difficulty - 17_583.056).abs() < 0.001);
    // A share difficulty above the hash's is not met; the network target still is.
    let check = check_share(&job, &en1, &s, 0, 17_584.0).unwrap();
    assert!(!check.meets_share && check.meets_network);
}

#[test]
fn another_extranonce1_gives_another_hash_that_is_no_block() {
    let (job, mut en1, s) = block_100000();
    en1[0] ^= 1;
    let check = check_share(&job, &en1, &s, 0, 1.0).unwrap();
    assert_ne!(
        check.hash.to_string(),
        "000000000003ba27aa200b1cecaad478d2b00432346c3f1f3986da1afd33e506"
    );
    assert!(!check.meets_network);
}

#[test]
fn the_branch_gives_the_same_root_as_rust_bitcoin_over_all_txids() {
    let coinbase: Txid = "8c14f0db3df150123e6f3dbbf30f8b955a8249b62ac1d1ff16284aefa3d06d87"
        .parse()
        .unwrap();
    let txids: Vec<Txid> = B100K_TXIDS.iter().map(|t| t.parse().unwrap()).collect();
    let all = std::iter::once(coinbase)
        .chain(txids.iter().copied())
        .map(|t| TxMerkleNode::from_byte_array(t.to_byte_array()));
    let expected = bitcoin::merkle_tree::calculate_root(all).unwrap();
    assert_eq!(merkle_root(coinbase, &merkle_branch(&txids)), expected);
    assert_eq!(merkle_branch(&txids).len(), 2);
}

#[test]
fn a_block_with_only_a_coinbase_has_an_empty_branch_and_its_txid_as_root() {
    let txid = Txid::from_byte_array([7; 32]);
    assert!(merkle_branch(&[]).is_empty());
    assert_eq!(merkle_root(txid, &[]).to_byte_array(), [7; 32]);
    assert_eq!(merkle_branch(&[txid]), vec![[7; 32]]);
}

proptest! {
    #[test]
    fn branch_and_root_agree_with_rust_bitcoin(
        seeds in proptest::collection::vec(any::<[u8; 32]>(), 1..40),
    ) {
        let txids: Vec<Txid> = seeds.iter().map(|s| Txid::from_byte_array(*s)).collect();
        let expected = bitcoin::merkle_tree::calculate_root(
            txids.iter().map(|t| TxMerkleNode::from_byte_array(t.to_byte_array())),
        )
        .unwrap();
        let branch = merkle_branch(&txids[1..]);
        prop_assert!(branch.len() <= 6);
        prop_assert_eq!(merkle_root(txids[0], &branch), expected);
    }

    #[test]
    fn rolled_versions_keep_the_bits_outside_the_mask(
        job in any::<u32>(), mask in any::<u32>(), bits in any::<u32>(),
    ) {
        match rolled_version(job, mask, Some(bits)) {
            Ok(v) => {
                prop_assert_eq!(v & !mask, job & !mask);
                prop_assert_eq!(v & mask, bits);
            }
            Err(ShareError::VersionBitsOutsideMask { .. }) => prop_assert!(bits & !mask != 0),
        }
    }
}

/// slush's spec example: the subscribe answer's extranonce1 `08000002`, the notify and the
/// submit as printed; they hash to testnet block 000000002076870f….
#[test]
fn the_spec_example_share_is_the_testnet_block_it_names() {
    let notify = r#"{"params": ["bf", "4d16b6f85af6e2198f44ae2a6de67f78487ae5611b77c6c0440b921e00000000",
"01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff20020862062f503253482f04b8864e5008",
"072f736c7573682f000000000100f2052a010000001976a914d23fcdf86f7e756a64a7a9688ef9903327048ed988ac00000000", [],
"00000002", "1c2ac4af", "504e86b9", false], "id": null, "method": "mining.notify"}"#
        .replace('\n', "");
    let ServerMessage::Notify(job) = parse_server_line(notify.as_bytes()).unwrap() else {
        panic!("not a notify")
    };
    assert_eq!(
        job.prevhash.to_block_hash().to_string(),
        "00000000440b921e1b77c6c0487ae5616de67f788f44ae2a5af6e2194d16b6f8"
    );
    let submit_line = r#"{"params": ["slush.miner1", "bf", "00000001", "504e86ed", "b2957c02"], "id": 4, "method": "mining.submit"}"#;
    let ClientMessage::Request {
        request: ClientRequest::Submit(s),
        ..
    } = parse_client_line(submit_line.as_bytes()).unwrap()
    else {
        panic!("not a submit")
    };
    let check = check_share(&job, &[0x08, 0, 0, 2], &s, 0, 1.0).unwrap();
    assert_eq!(
        check.hash.to_string(),
        "000000002076870fe65a2b6eeed84fa892c0db924f1482243a6247d931dcab32"
    );
    assert!(check.meets_network && check.meets_share);
}

const PARA_NOTIFY: &str = r#"{"id":null,"method":"mining.notify","params":["a000001","c488987d58337b55b94478e8455ca3399eefbc00487f85961c7c5da756853076","01000000010000000000000000000000000000000000000000000000000000000000000000ffffffff10c488987d","ffffffff0100f2052a010000001976a91458337b55b94478e8455ca3399eefbc00487f859688ac00000000",["07961f775b3f9d73bcbb87538e23b6e2ed57d590e21a32d4a92ee6f4523fa8cf","0fe437305229ed54f1e20edcd7370dd28de61cb49bd8155bc3515d2b5cf3e3b5"],"20000000","207fffff","6b0d54b4",true]}"#;

const PARA_SUBMITS: [&str; 3] = [
    r#"{"id":3,"method":"mining.submit","params":["bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.rig1","a000001","0000000000000000","6b0d54b4","00000b07","04534000"]}"#,
    r#"{"id":4,"method":"mining.submit","params":["bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.rig1","a000001","0000000000000001","6b0d54b4","000065e6","1fe64000"]}"#,
    r#"{"id":5,"method":"mining.submit","params":["bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq.rig1","a000001","0000000000000002","6b0d54b4","00004e93","1f590000"]}"#,
];

fn para_submit(line: &str) -> Submit {
    match parse_client_line(line.as_bytes()).unwrap() {
        ClientMessage::Request {
            request: ClientRequest::Submit(s),
            ..
        } => s,
        other => panic!("not a submit: {other:?}"),
    }
}

#[test]
fn paras_rolled_shares_meet_the_difficulty_it_was_given() {
    let ServerMessage::Notify(job) = parse_server_line(PARA_NOTIFY.as_bytes()).unwrap() else {
        panic!("not a notify")
    };
    let en1 = [0xa1, 0, 0, 1];
    let mask = 0x1fff_e000;
    let diff = 1.525_878_906_25e-5;
    for line in PARA_SUBMITS {
        let s = para_submit(line);
        let check = check_share(&job, &en1, &s, mask, diff).unwrap();
        assert!(check.meets_share, "{line}: difficulty {}", check.difficulty);
        // Regtest's target (nbits 207fffff) is met by any hash below 2^255.
        assert!(check.meets_network);
        assert_eq!(
            check.header.version.to_consensus() as u32,
            0x2000_0000 | s.version_bits.unwrap()
        );
        // Without the rolled bits the same share is (almost surely) worthless.
        let unrolled = Submit {
            version_bits: None,
            ..s.clone()
        };
        let plain = check_share(&job, &en1, &unrolled, mask, diff).unwrap();
        assert_ne!(plain.hash, check.hash);
    }
    let first = check_share(&job, &en1, &para_submit(PARA_SUBMITS[0]), mask, diff).unwrap();
    assert_eq!(
        first.hash.to_string(),
        "00000f83c30685321fbc7a9a9714c59bbf50c6238937f983f1224aff7445dec9"
    );
}

#[test]
fn version_bits_outside_the_mask_are_refused() {
    let ServerMessage::Notify(job) = parse_server_line(PARA_NOTIFY.as_bytes()).unwrap() else {
        panic!("not a notify")
    };
    let s = para_submit(PARA_SUBMITS[0]);
    // Not negotiated: no bits may roll.
    assert_eq!(
        check_share(&job, &[0xa1, 0, 0, 1], &s, 0, 1.0),
        Err(ShareError::VersionBitsOutsideMask {
            bits: 0x0453_4000,
            mask: 0
        })
    );
    // The full version (outside the mask's bits) is refused too.
    assert!(rolled_version(0x2000_0000, 0x1fff_e000, Some(0x2453_4000)).is_err());
    assert_eq!(
        rolled_version(0x2000_0000, 0x1fff_e000, None),
        Ok(0x2000_0000)
    );
}

#[test]
fn difficulty_of_the_diff1_target_is_one_and_of_zero_is_infinite() {
    let diff1 = BlockHash::from_byte_array(Target::MAX.to_le_bytes());
    assert_eq!(hash_difficulty(diff1), 1.0);
    assert_eq!(
        hash_difficulty(BlockHash::from_byte_array([0; 32])),
        f64::INFINITY
    );
    assert_eq!(
        network_target(0x1d00_ffff),
        Target::MAX,
        "nbits 1d00ffff is difficulty 1"
    );
    assert!(BlockHash::from_str("00").is_err());
}
