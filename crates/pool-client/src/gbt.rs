//! Solo-mining jobs from a Bitcoin node's `getblocktemplate` (BIP 22/23, segwit's BIP 145),
//! and the block back from a miner's solution. Pure: no I/O, no clock.
//!
//! This is the job side of a solo upstream (the bcoin-stratum system,
//! `docs/spec/bcoin-stratum.md`): the proxy asks the node for a template, builds a coinbase of
//! its own and hands miners a Stratum V1 job (`mining.notify`'s coinb1, coinb2, merkle branch,
//! version, nbits, ntime, prevhash); a solution that meets the network target becomes a full
//! block for `submitblock`. What it is not: the RPC client, polling or longpoll, share
//! checking against a miner's target, or vardiff (those live with the SV1 upstream and
//! `stratum-proto`).
//!
//! Every hash, script, address, transaction and block type is rust-bitcoin's.
//!
//! # The coinbase
//! Legacy (non-witness) serialization, as miners hash it for the txid; `E` = extranonce1 size
//! + extranonce2 size (at most 75, one push).
//!
//! | bytes | field | part |
//! |---|---|---|
//! | 4 | version 2 | coinb1 |
//! | 1 | input count 1 | coinb1 |
//! | 36 | null outpoint (32 zero bytes, index `ffffffff`) | coinb1 |
//! | 1 | scriptSig length (at most 100) | coinb1 |
//! | 1–5 | BIP 34 height push (`OP_1`..`OP_16` or minimal little-endian number) | coinb1 |
//! | 1 | push opcode of `E` bytes | coinb1 |
//! | E | extranonce1 ‖ extranonce2 | filled in per share |
//! | 0 or 1 + T | push of the coinbase tag (`CoinbaseParams::tag`), when not empty | coinb2 |
//! | 4 | sequence `ffffffff` | coinb2 |
//! | 1 | output count | coinb2 |
//! | … | payout: `coinbasevalue` satoshis to the payout script | coinb2 |
//! | … | witness commitment (0 satoshis; `BlockTemplate::witness_commitment`: the template's `default_witness_commitment`, else computed when segwit is active) | coinb2 |
//! | 4 | lock time 0 | coinb2 |
//!
//! In the submitted block the coinbase also carries the witness reserved value (one 32-byte
//! zero item) when segwit is active (the template's `rules` list `segwit` or `!segwit`);
//! before activation the block has no witness data at all (bcoin and Bitcoin Core refuse
//! `unexpected-witness`), and the commitment output is a harmless `OP_RETURN`.
//!
//! # Payout addresses
//! [`payout_script`] takes an address as rust-bitcoin parses it for the configured network.
//! rust-bitcoin's regtest uses Bitcoin Core's prefixes (base58 111/196, bech32 `bcrt`); bcoin's
//! regtest uses others (base58 60 `R...` for P2PKH, 38 for P2SH, bech32 `rb`), which
//! rust-bitcoin does not know. For [`Network::Regtest`] both forms are taken: bcoin's are
//! decoded with rust-bitcoin's `base58` and `bech32` modules and turned into the same
//! scriptPubKeys.

use stratum_proto::sv1::{share, PrevHash};

use bitcoin::block::{Header, Version};
use bitcoin::consensus::encode;
use bitcoin::hashes::Hash;
use bitcoin::hex::DisplayHex;
use bitcoin::script::{Builder, PushBytesBuf};
use bitcoin::{
    absolute, transaction, Address, Amount, Block, BlockHash, CompactTarget, Network, OutPoint,
    PubkeyHash, ScriptBuf, ScriptHash, Sequence, Target, Transaction, TxIn, TxMerkleNode, TxOut,
    Txid, Witness, WitnessMerkleNode, WitnessProgram, WitnessVersion, Wtxid,
};

/// The largest scriptSig a coinbase may have (consensus: 2 to 100 bytes).
pub const MAX_COINBASE_SCRIPT_SIG: usize = 100;
/// The largest extranonce1 + extranonce2 this module places (one direct push).
pub const MAX_EXTRANONCE: usize = 75;
/// bcoin's regtest base58 version byte for P2PKH addresses (`R...`).
const BCOIN_REGTEST_P2PKH: u8 = 60;
/// bcoin's regtest base58 version byte for P2SH addresses.
const BCOIN_REGTEST_P2SH: u8 = 38;
/// bcoin's regtest bech32 human-readable part.
const BCOIN_REGTEST_HRP: &str = "rb";

/// Why a template, an address or a solution could not be turned into a job or a block.
/// All are errors of the input (the node's template, the config, or the miner's share); none
/// is helped by retrying with the same input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GbtError {
    /// The node's template lacks a field or has one of the wrong shape.
    #[error("getblocktemplate: field `{field}`: {reason}")]
    Template {
        /// The template's field name (`transactions[3].data` for a transaction's).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The payout address (config) is not an address of the network.
    #[error("payout address `{address}`: {reason}")]
    Payout {
        /// The address as configured.
        address: String,
        /// Why it was refused.
        reason: String,
    },
    /// The coinbase scriptSig would exceed 100 bytes (height push + extranonce + tag).
    #[error(
        "coinbase scriptSig of {len} bytes exceeds 100: shorten the coinbase tag or the extranonce"
    )]
    ScriptSigTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// extranonce1 + extranonce2 sizes are above [`MAX_EXTRANONCE`].
    #[error("extranonce of {size} bytes exceeds {MAX_EXTRANONCE}")]
    ExtranonceTooLong {
        /// extranonce1 size + extranonce2 size.
        size: usize,
    },
    /// A solution's extranonce1 or extranonce2 has another size than the job's.
    #[error("{which} of {got} bytes, the job expects {expected}")]
    ExtranonceSize {
        /// `extranonce1` or `extranonce2`.
        which: &'static str,
        /// The job's size.
        expected: usize,
        /// The solution's size.
        got: usize,
    },
}

fn template_error(field: impl Into<String>, reason: impl std::fmt::Display) -> GbtError {
    GbtError::Template {
        field: field.into(),
        reason: reason.to_string(),
    }
}

/// The parts of a `getblocktemplate` reply a solo job needs, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockTemplate {
    /// Block version (`version`), before any version rolling.
    pub version: Version,
    /// The block to build on (`previousblockhash`).
    pub prev_hash: BlockHash,
    /// The network target in compact form (`bits`).
    pub bits: CompactTarget,
    /// The node's current time (`curtime`), UNIX seconds: the job's ntime.
    pub cur_time: u32,
    /// The earliest allowed ntime (`mintime`), UNIX seconds; `cur_time` when absent.
    pub min_time: u32,
    /// The new block's height (`height`), pushed in the coinbase (BIP 34).
    pub height: u64,
    /// Subsidy plus fees (`coinbasevalue`), paid to the payout script.
    pub coinbase_value: Amount,
    /// The witness commitment output script: `default_witness_commitment` when given, else
    /// computed ([`witness_commitment_script`]) when segwit is active, else none.
    pub witness_commitment: Option<ScriptBuf>,
    /// Whether segwit is active (`rules` lists `segwit` or `!segwit`): the block then
    /// carries the coinbase's witness reserved value.
    pub segwit: bool,
    /// The transactions to include after the coinbase (`transactions[].data`), in order.
    pub transactions: Vec<Transaction>,
    /// The longpoll id (`longpollid`), when given.
    pub longpoll_id: Option<String>,
}

impl BlockTemplate {
    /// Parses the `result` object of a `getblocktemplate` reply (field names of BIP 22/23
    /// and BIP 145, as bcoin and Bitcoin Core send them). A transaction's `txid`, when given,
    /// must match the txid of its `data`.
    ///
    /// # Errors
    /// [`GbtError::Template`] naming the first missing or malformed field.
    pub fn from_json(t: &serde_json::Value) -> Result<Self, GbtError> {
        let str_field = |name: &str| -> Result<&str, GbtError> {
            t.get(name)
                .and_then(|v| v.as_str())
                .ok_or_else(|| template_error(name, "missing or not a string"))
        };
        let u64_field = |name: &str| -> Result<u64, GbtError> {
            t.get(name)
                .and_then(|v| v.as_u64())
                .ok_or_else(|| template_error(name, "missing or not an unsigned integer"))
        };
        let u32_field = |name: &str| -> Result<u32, GbtError> {
            u32::try_from(u64_field(name)?).map_err(|e| template_error(name, e))
        };
        let version = t
            .get("version")
            .and_then(|v| v.as_i64())
            .and_then(|v| i32::try_from(v).ok())
            .ok_or_else(|| template_error("version", "missing or not a 32-bit integer"))?;
        let prev_hash: BlockHash = str_field("previousblockhash")?
            .parse()
            .map_err(|e| template_error("previousblockhash", e))?;
        let bits = CompactTarget::from_unprefixed_hex(str_field("bits")?)
            .map_err(|e| template_error("bits", e))?;
        let cur_time = u32_field("curtime")?;
        let min_time = match t.get("mintime") {
            None => cur_time,
            Some(_) => u32_field("mintime")?,
        };
        let height = u64_field("height")?;
        let coinbase_value = Amount::from_sat(u64_field("coinbasevalue")?);
        let witness_commitment = match t.get("default_witness_commitment") {
            None | Some(serde_json::Value::Null) => None,
            Some(_) => Some(
                ScriptBuf::from_hex(str_field("default_witness_commitment")?)
                    .map_err(|e| template_error("default_witness_commitment", e))?,
            ),
        };
        let segwit = t
            .get("rules")
            .and_then(|r| r.as_array())
            .ok_or_else(|| template_error("rules", "missing or not a list"))?
            .iter()
            .any(|r| matches!(r.as_str(), Some("segwit" | "!segwit")));
        let list = t
            .get("transactions")
            .and_then(|v| v.as_array())
            .ok_or_else(|| template_error("transactions", "missing or not a list"))?;
        let mut transactions = Vec::with_capacity(list.len());
        for (i, entry) in list.iter().enumerate() {
            let data = entry.get("data").and_then(|d| d.as_str()).ok_or_else(|| {
                template_error(format!("transactions[{i}].data"), "missing or not a string")
            })?;
            let tx: Transaction = encode::deserialize_hex(data)
                .map_err(|e| template_error(format!("transactions[{i}].data"), e))?;
            if let Some(txid) = entry.get("txid").and_then(|t| t.as_str()) {
                let given: Txid = txid
                    .parse()
                    .map_err(|e| template_error(format!("transactions[{i}].txid"), e))?;
                if given != tx.compute_txid() {
                    return Err(template_error(
                        format!("transactions[{i}].txid"),
                        format!(
                            "{given} is not the txid of its data ({})",
                            tx.compute_txid()
                        ),
                    ));
                }
            }
            transactions.push(tx);
        }
        let witness_commitment = match witness_commitment {
            Some(given) => Some(given),
            None if segwit => Some(witness_commitment_script(&transactions)),
            None => None,
        };
        let longpoll_id = t
            .get("longpollid")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        Ok(Self {
            version: Version::from_consensus(version),
            prev_hash,
            bits,
            cur_time,
            min_time,
            height,
            coinbase_value,
            witness_commitment,
            segwit,
            transactions,
            longpoll_id,
        })
    }
}

/// The witness commitment output script (BIP 141) of a block whose transactions after the
/// coinbase are `transactions`, with the coinbase's witness reserved value all zeros:
/// `OP_RETURN` and a push of `aa21a9ed` ‖ sha256d(witness root ‖ reserved value).
pub fn witness_commitment_script(transactions: &[Transaction]) -> ScriptBuf {
    let wtxids = std::iter::once(Wtxid::all_zeros())
        .chain(transactions.iter().map(Transaction::compute_wtxid))
        .map(|w| w.to_raw_hash());
    let root: WitnessMerkleNode = bitcoin::merkle_tree::calculate_root(wtxids)
        .expect("at least the coinbase")
        .into();
    let commitment = Block::compute_witness_commitment(&root, &[0u8; 32]);
    let mut data = PushBytesBuf::from([0xaa, 0x21, 0xa9, 0xed]);
    data.extend_from_slice(commitment.as_byte_array())
        .expect("36 bytes fit a push");
    Builder::new()
        .push_opcode(bitcoin::opcodes::all::OP_RETURN)
        .push_slice(data)
        .into_script()
}

/// The scriptPubKey of a payout address for `network` (see the module doc for bcoin's regtest
/// forms).
///
/// # Errors
/// [`GbtError::Payout`] when the address does not parse or belongs to another network.
pub fn payout_script(address: &str, network: Network) -> Result<ScriptBuf, GbtError> {
    let refused = |reason: String| GbtError::Payout {
        address: address.to_owned(),
        reason,
    };
    let parsed = address
        .parse::<Address<bitcoin::address::NetworkUnchecked>>()
        .map_err(|e| e.to_string())
        .and_then(|a| a.require_network(network).map_err(|e| e.to_string()));
    match parsed {
        Ok(a) => Ok(a.script_pubkey()),
        Err(e) if network == Network::Regtest => {
            bcoin_regtest_script(address).ok_or_else(|| refused(e))
        }
        Err(e) => Err(refused(e)),
    }
}

/// The scriptPubKey of a bcoin regtest address (`rb1...`, `R...`, or P2SH version 38).
fn bcoin_regtest_script(address: &str) -> Option<ScriptBuf> {
    if let Ok((hrp, version, program)) = bitcoin::bech32::segwit::decode(address) {
        if hrp.as_str() != BCOIN_REGTEST_HRP {
            return None;
        }
        let version = WitnessVersion::try_from(version).ok()?;
        let program = WitnessProgram::new(version, &program).ok()?;
        return Some(ScriptBuf::new_witness_program(&program));
    }
    let data = bitcoin::base58::decode_check(address).ok()?;
    let (&prefix, hash) = data.split_first()?;
    match prefix {
        BCOIN_REGTEST_P2PKH => Some(ScriptBuf::new_p2pkh(&PubkeyHash::from_slice(hash).ok()?)),
        BCOIN_REGTEST_P2SH => Some(ScriptBuf::new_p2sh(&ScriptHash::from_slice(hash).ok()?)),
        _ => None,
    }
}

/// What the proxy puts into its coinbase besides the template's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoinbaseParams {
    /// Where the block reward goes (see [`payout_script`]).
    pub payout: ScriptBuf,
    /// Bytes of extranonce1 (the proxy's per-miner part), at least 0.
    pub extranonce1_size: usize,
    /// Bytes of extranonce2 (the miner's own part).
    pub extranonce2_size: usize,
    /// Free bytes pushed after the extranonce (a pool tag such as `/stratum-proxy/`); may be
    /// empty.
    pub tag: Vec<u8>,
}

/// A miner's solution of a [`SoloJob`]: the fields of a `mining.submit`, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Solution<'a> {
    /// The miner's extranonce1 (its subscribe reply's), [`CoinbaseParams::extranonce1_size`]
    /// bytes.
    pub extranonce1: &'a [u8],
    /// The miner's extranonce2, [`CoinbaseParams::extranonce2_size`] bytes.
    pub extranonce2: &'a [u8],
    /// Header time, UNIX seconds.
    pub ntime: u32,
    /// Header nonce.
    pub nonce: u32,
    /// The full header version (the job's with the miner's rolled bits applied).
    pub version: Version,
}

/// A Stratum V1 job built from a block template: the coinbase split around the extranonce,
/// the merkle branch, and what it takes to rebuild the block from a solution. Immutable once
/// built (its parts are read through accessors), so coinb1 ‖ extranonce ‖ coinb2 is always
/// the coinbase it serialized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoloJob {
    template: BlockTemplate,
    coinb1: Vec<u8>,
    coinb2: Vec<u8>,
    merkle_branch: Vec<TxMerkleNode>,
    extranonce1_size: usize,
    extranonce2_size: usize,
}

impl SoloJob {
    /// Builds the job's coinbase and merkle branch from `template`.
    ///
    /// # Errors
    /// [`GbtError::ExtranonceTooLong`] when the extranonce sizes add up to more than 75
    /// bytes, [`GbtError::ScriptSigTooLong`] when the scriptSig exceeds 100 bytes,
    /// [`GbtError::Template`] when the height does not fit a script number.
    pub fn new(template: BlockTemplate, params: &CoinbaseParams) -> Result<Self, GbtError> {
        let extranonce = params.extranonce1_size + params.extranonce2_size;
        if extranonce > MAX_EXTRANONCE {
            return Err(GbtError::ExtranonceTooLong { size: extranonce });
        }
        let height = i64::try_from(template.height)
            .ok()
            .filter(|h| *h <= i64::from(i32::MAX))
            .ok_or_else(|| template_error("height", "does not fit a script number"))?;
        // BIP 34: the height first, as `CScript() << height` writes it.
        let mut builder = Builder::new().push_int(height);
        let before_extranonce = builder.len();
        let placeholder = PushBytesBuf::try_from(vec![0u8; extranonce])
            .expect("at most 75 bytes always fit a push");
        builder = builder.push_slice(placeholder);
        // One opcode byte for a push of up to 75 bytes (none when empty: OP_0).
        let extranonce_at = before_extranonce + usize::from(extranonce > 0);
        if !params.tag.is_empty() {
            let tag = PushBytesBuf::try_from(params.tag.clone()).map_err(|_| {
                GbtError::ScriptSigTooLong {
                    len: params.tag.len(),
                }
            })?;
            builder = builder.push_slice(tag);
        }
        let script_sig = builder.into_script();
        if script_sig.len() > MAX_COINBASE_SCRIPT_SIG {
            return Err(GbtError::ScriptSigTooLong {
                len: script_sig.len(),
            });
        }
        let mut output = vec![TxOut {
            value: template.coinbase_value,
            script_pubkey: params.payout.clone(),
        }];
        if let Some(commitment) = &template.witness_commitment {
            output.push(TxOut {
                value: Amount::ZERO,
                script_pubkey: commitment.clone(),
            });
        }
        let coinbase = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig,
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output,
        };
        // No witness yet, so this is the legacy serialization miners hash.
        let bytes = encode::serialize(&coinbase);
        let script_len = coinbase.input[0].script_sig.len();
        let script_at = 4 + 1 + 36 + encode::VarInt(script_len as u64).size();
        let split = script_at + extranonce_at;
        let coinb1 = bytes[..split].to_vec();
        let coinb2 = bytes[split + extranonce..].to_vec();
        let txids: Vec<_> = template
            .transactions
            .iter()
            .map(|tx| tx.compute_txid())
            .collect();
        let merkle_branch = share::merkle_branch(&txids)
            .into_iter()
            .map(TxMerkleNode::from_byte_array)
            .collect();
        Ok(Self {
            template,
            coinb1,
            coinb2,
            merkle_branch,
            extranonce1_size: params.extranonce1_size,
            extranonce2_size: params.extranonce2_size,
        })
    }

    /// The template it was built from.
    pub fn template(&self) -> &BlockTemplate {
        &self.template
    }

    /// Coinbase bytes before the extranonce (see the module doc's table): `mining.notify`'s
    /// coinb1, once hex-encoded.
    pub fn coinb1(&self) -> &[u8] {
        &self.coinb1
    }

    /// Coinbase bytes after the extranonce: `mining.notify`'s coinb2, once hex-encoded.
    pub fn coinb2(&self) -> &[u8] {
        &self.coinb2
    }

    /// Merkle branch of the coinbase (position 0): the sibling hashes from the leaves up.
    pub fn merkle_branch(&self) -> &[TxMerkleNode] {
        &self.merkle_branch
    }

    /// The extranonce1 size in bytes, as given in [`CoinbaseParams`].
    pub fn extranonce1_size(&self) -> usize {
        self.extranonce1_size
    }

    /// The extranonce2 size in bytes, as given in [`CoinbaseParams`].
    pub fn extranonce2_size(&self) -> usize {
        self.extranonce2_size
    }

    /// The block's height.
    pub fn height(&self) -> u64 {
        self.template.height
    }

    /// Whether miners must drop their work for this job (`mining.notify`'s `clean_jobs`):
    /// there was no job before, or it built on another previous block. A new template on the
    /// same tip (new transactions, a new time) keeps older jobs' shares good.
    pub fn clean_jobs(&self, previous: Option<&SoloJob>) -> bool {
        previous.is_none_or(|p| p.template.prev_hash != self.template.prev_hash)
    }

    /// The network target the block hash must meet (from `bits`).
    pub fn network_target(&self) -> Target {
        Target::from_compact(self.template.bits)
    }

    /// `mining.notify`'s prevhash: the previous block hash's internal bytes with each 4-byte
    /// word reversed, as 64 hex digits.
    pub fn notify_prev_hash(&self) -> String {
        PrevHash::from_block_hash(self.template.prev_hash).to_hex()
    }

    /// `mining.notify`'s merkle branch: each hash's internal bytes as 64 hex digits.
    pub fn notify_merkle_branch(&self) -> Vec<String> {
        self.merkle_branch
            .iter()
            .map(|h| h.to_byte_array().to_lower_hex_string())
            .collect()
    }

    /// `mining.notify`'s version: 8 hex digits, big-endian.
    pub fn notify_version(&self) -> String {
        format!("{:08x}", self.template.version.to_consensus() as u32)
    }

    /// `mining.notify`'s nbits: 8 hex digits, big-endian.
    pub fn notify_bits(&self) -> String {
        format!("{:08x}", self.template.bits.to_consensus())
    }

    /// `mining.notify`'s ntime (the template's `curtime`): 8 hex digits, big-endian.
    pub fn notify_time(&self) -> String {
        format!("{:08x}", self.template.cur_time)
    }

    /// The coinbase of a solution, with the witness reserved value when segwit is active.
    ///
    /// # Errors
    /// [`GbtError::ExtranonceSize`] when an extranonce has another size than the job's.
    pub fn coinbase(&self, solution: &Solution<'_>) -> Result<Transaction, GbtError> {
        for (which, expected, got) in [
            (
                "extranonce1",
                self.extranonce1_size,
                solution.extranonce1.len(),
            ),
            (
                "extranonce2",
                self.extranonce2_size,
                solution.extranonce2.len(),
            ),
        ] {
            if expected != got {
                return Err(GbtError::ExtranonceSize {
                    which,
                    expected,
                    got,
                });
            }
        }
        let mut bytes = Vec::with_capacity(
            self.coinb1.len() + self.extranonce1_size + self.extranonce2_size + self.coinb2.len(),
        );
        bytes.extend_from_slice(&self.coinb1);
        bytes.extend_from_slice(solution.extranonce1);
        bytes.extend_from_slice(solution.extranonce2);
        bytes.extend_from_slice(&self.coinb2);
        let mut tx: Transaction = encode::deserialize(&bytes)
            .expect("coinb1 ‖ extranonce ‖ coinb2 is the coinbase this job serialized");
        if self.template.segwit {
            tx.input[0].witness = Witness::from_slice(&[[0u8; 32]]);
        }
        Ok(tx)
    }

    /// The 80-byte header of a solution: merkle root from the coinbase's txid through the
    /// branch.
    ///
    /// # Errors
    /// As [`SoloJob::coinbase`].
    pub fn header(&self, solution: &Solution<'_>) -> Result<Header, GbtError> {
        let coinbase = self.coinbase(solution)?;
        Ok(self.header_for(&coinbase, solution))
    }

    fn header_for(&self, coinbase: &Transaction, solution: &Solution<'_>) -> Header {
        // Built only for a solution (a block or its header), never per job or share.
        let branch: Vec<[u8; 32]> = self
            .merkle_branch
            .iter()
            .map(|n| n.to_byte_array())
            .collect();
        let merkle_root = share::merkle_root(coinbase.compute_txid(), &branch);
        Header {
            version: solution.version,
            prev_blockhash: self.template.prev_hash,
            merkle_root,
            time: solution.ntime,
            bits: self.template.bits,
            nonce: solution.nonce,
        }
    }

    /// The full block of a solution: header, coinbase (with witness reserved value when
    /// segwit is active) and the template's transactions. Whether its hash meets the network
    /// target is the caller's question ([`Header::validate_pow`] with
    /// [`SoloJob::network_target`]).
    ///
    /// # Errors
    /// As [`SoloJob::coinbase`].
    pub fn block(&self, solution: &Solution<'_>) -> Result<Block, GbtError> {
        let coinbase = self.coinbase(solution)?;
        let header = self.header_for(&coinbase, solution);
        let mut txdata = Vec::with_capacity(1 + self.template.transactions.len());
        txdata.push(coinbase);
        txdata.extend(self.template.transactions.iter().cloned());
        Ok(Block { header, txdata })
    }

    /// [`SoloJob::block`] serialized (with witness data) as hex: `submitblock`'s parameter.
    ///
    /// # Errors
    /// As [`SoloJob::coinbase`].
    pub fn block_hex(&self, solution: &Solution<'_>) -> Result<String, GbtError> {
        Ok(encode::serialize_hex(&self.block(solution)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// bcoin 1.0.2's regtest template at height 0 (docs/reference/bcoin-regtest.md).
    fn bcoin_template() -> serde_json::Value {
        json!({
            "capabilities": ["proposal"],
            "mutable": ["time", "transactions", "prevblock"],
            "version": 536870912,
            "rules": [],
            "vbavailable": {},
            "vbrequired": 0,
            "height": 1,
            "previousblockhash": "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206",
            "target": "7fffff0000000000000000000000000000000000000000000000000000000000",
            "bits": "207fffff",
            "noncerange": "00000000ffffffff",
            "curtime": 1796035791,
            "mintime": 1296688603,
            "maxtime": 1796042991,
            "expires": 1796042991,
            "sigoplimit": 20000,
            "sizelimit": 1000000,
            "longpollid": "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e220600000000",
            "submitold": false,
            "coinbaseaux": {"flags": "6d696e65642062792062636f696e"},
            "coinbasevalue": 5000000000u64,
            "default_witness_commitment": "6a24aa21a9ede2f61c3f71d1defd3fa999dfa36953755c690689799962b48bebd836974e8cf9",
            "transactions": []
        })
    }

    fn params(tag: &[u8]) -> CoinbaseParams {
        CoinbaseParams {
            payout: payout_script(
                "rb1qzyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg328fddy",
                Network::Regtest,
            )
            .unwrap(),
            extranonce1_size: 4,
            extranonce2_size: 4,
            tag: tag.to_vec(),
        }
    }

    /// Two spends of made-up outpoints (one with a witness), as a template lists them.
    fn some_transactions(n: u32) -> Vec<Transaction> {
        (0..n)
            .map(|i| Transaction {
                version: transaction::Version::TWO,
                lock_time: absolute::LockTime::ZERO,
                input: vec![TxIn {
                    previous_output: OutPoint {
                        txid: Txid::from_byte_array([i as u8 + 1; 32]),
                        vout: i,
                    },
                    script_sig: ScriptBuf::new(),
                    sequence: Sequence::MAX,
                    witness: Witness::from_slice(&[vec![0x51u8]]),
                }],
                output: vec![TxOut {
                    value: Amount::from_sat(1000 + u64::from(i)),
                    script_pubkey: ScriptBuf::new_op_return([i as u8]),
                }],
            })
            .collect()
    }

    fn template_with(transactions: &[Transaction], segwit: bool) -> serde_json::Value {
        let mut t = bcoin_template();
        t["transactions"] = transactions
            .iter()
            .map(|tx| {
                json!({
                    "data": encode::serialize_hex(tx),
                    "txid": tx.compute_txid().to_string(),
                    "hash": tx.compute_wtxid().to_string(),
                })
            })
            .collect();
        if segwit {
            t["rules"] = json!(["csv", "!segwit"]);
        }
        t["default_witness_commitment"] = json!(witness_commitment_script(transactions)
            .as_bytes()
            .to_lower_hex_string());
        t
    }

    fn solution<'a>(job: &SoloJob, en1: &'a [u8], en2: &'a [u8], nonce: u32) -> Solution<'a> {
        Solution {
            extranonce1: en1,
            extranonce2: en2,
            ntime: job.template().cur_time,
            nonce,
            version: job.template().version,
        }
    }

    #[test]
    fn bcoins_template_parses() {
        let t = BlockTemplate::from_json(&bcoin_template()).unwrap();
        assert_eq!(t.height, 1);
        assert_eq!(t.version, Version::from_consensus(0x2000_0000));
        assert_eq!(t.bits.to_consensus(), 0x207f_ffff);
        assert_eq!(t.cur_time, 1_796_035_791);
        assert_eq!(t.min_time, 1_296_688_603);
        assert_eq!(t.coinbase_value, Amount::from_sat(5_000_000_000));
        assert!(!t.segwit, "segwit is not active at height 1 on regtest");
        assert!(t.transactions.is_empty());
        assert_eq!(
            t.prev_hash.to_string(),
            "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"
        );
        assert_eq!(
            Target::from_compact(t.bits)
                .to_be_bytes()
                .to_lower_hex_string(),
            "7fffff0000000000000000000000000000000000000000000000000000000000",
            "bits and the template's target agree"
        );
        let commitment = t.witness_commitment.unwrap();
        assert!(commitment
            .as_bytes()
            .starts_with(&[0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed]));
    }

    #[test]
    fn the_computed_witness_commitment_is_bcoins_and_is_used_when_absent() {
        let given = BlockTemplate::from_json(&bcoin_template()).unwrap();
        assert_eq!(
            given.witness_commitment,
            Some(witness_commitment_script(&[])),
            "bcoin's default_witness_commitment for an empty block"
        );
        let txs = some_transactions(2);
        let mut t = template_with(&txs, true);
        t.as_object_mut()
            .unwrap()
            .remove("default_witness_commitment");
        let parsed = BlockTemplate::from_json(&t).unwrap();
        assert_eq!(
            parsed.witness_commitment,
            Some(witness_commitment_script(&txs))
        );
        t["rules"] = json!([]);
        assert_eq!(
            BlockTemplate::from_json(&t).unwrap().witness_commitment,
            None
        );
    }

    #[test]
    fn a_broken_template_names_the_field() {
        for (field, value) in [
            ("bits", json!("zz")),
            ("previousblockhash", json!(12)),
            ("height", json!(-1)),
            ("rules", json!(null)),
            ("transactions", json!([{"data": "00"}])),
            ("default_witness_commitment", json!("0g")),
        ] {
            let mut t = bcoin_template();
            t[field] = value;
            let err = BlockTemplate::from_json(&t).unwrap_err();
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
        let mut t = template_with(&some_transactions(1), true);
        t["transactions"][0]["txid"] = json!(Txid::from_byte_array([9; 32]).to_string());
        let err = BlockTemplate::from_json(&t).unwrap_err();
        assert!(err.to_string().contains("is not the txid"), "{err}");
    }

    #[test]
    fn coinbase_splits_around_the_extranonce_with_bip34_height_first() {
        let t = BlockTemplate::from_json(&bcoin_template()).unwrap();
        let job = SoloJob::new(t, &params(b"/stratum-proxy/")).unwrap();
        let en1 = [0xa1, 0xa2, 0xa3, 0xa4];
        let en2 = [0xb1, 0xb2, 0xb3, 0xb4];
        let cb = job.coinbase(&solution(&job, &en1, &en2, 0)).unwrap();
        assert!(cb.is_coinbase());
        assert!(cb.input[0].witness.is_empty(), "no witness before segwit");
        let script = cb.input[0].script_sig.as_bytes();
        // OP_1 (height 1), push 8 bytes, the tag.
        assert_eq!(script[0], 0x51);
        assert_eq!(script[1], 8);
        assert_eq!(
            &script[2..10],
            &[0xa1, 0xa2, 0xa3, 0xa4, 0xb1, 0xb2, 0xb3, 0xb4]
        );
        assert_eq!(script[10] as usize, b"/stratum-proxy/".len());
        assert_eq!(&script[11..], b"/stratum-proxy/");
        assert_eq!(cb.output.len(), 2);
        assert_eq!(cb.output[0].value, Amount::from_sat(5_000_000_000));
        assert_eq!(cb.output[1].value, Amount::ZERO);
        let mut joined = job.coinb1().to_vec();
        joined.extend_from_slice(&en1);
        joined.extend_from_slice(&en2);
        joined.extend_from_slice(job.coinb2());
        assert_eq!(
            joined,
            encode::serialize(&cb),
            "coinb1 ‖ en1 ‖ en2 ‖ coinb2"
        );
        assert!(job.merkle_branch().is_empty());
        assert_eq!(job.notify_bits(), "207fffff");
        assert_eq!(job.notify_version(), "20000000");
        assert_eq!(job.notify_time(), format!("{:08x}", 1_796_035_791u32));
    }

    #[test]
    fn bip34_heights_are_minimal_script_numbers() {
        for (height, prefix) in [
            (16u64, vec![0x60]),
            (17, vec![0x01, 17]),
            (433, vec![0x02, 0xb1, 0x01]),
            (840_000, vec![0x03, 0x40, 0xd1, 0x0c]),
        ] {
            let mut t = BlockTemplate::from_json(&bcoin_template()).unwrap();
            t.height = height;
            let job = SoloJob::new(t, &params(b"")).unwrap();
            let cb = job.coinbase(&solution(&job, &[0; 4], &[0; 4], 0)).unwrap();
            assert!(
                cb.input[0].script_sig.as_bytes().starts_with(&prefix),
                "height {height}: {:?}",
                cb.input[0].script_sig
            );
            assert_eq!(cb.input[0].script_sig.len(), prefix.len() + 9);
        }
    }

    #[test]
    fn prevhash_is_word_swapped_internal_order() {
        let t = BlockTemplate::from_json(&bcoin_template()).unwrap();
        let job = SoloJob::new(t, &params(b"")).unwrap();
        // Display hex 0f9188f1 3cb7b2c7 ... 466e2206: internal order is its byte reverse; the
        // word swap gives the display's 8-digit words in reverse order.
        assert_eq!(
            job.notify_prev_hash(),
            "466e2206590b1a116012afcabf5beb433a4fc3281f2a335e3cb7b2c70f9188f1"
        );
    }

    #[test]
    fn the_branch_leads_to_the_blocks_merkle_root_for_any_count() {
        for n in 0..=9 {
            let txs = some_transactions(n);
            let t = BlockTemplate::from_json(&template_with(&txs, true)).unwrap();
            let job = SoloJob::new(t, &params(b"tag")).unwrap();
            let expected_len = if n == 0 {
                0
            } else {
                (usize::BITS - (n as usize).leading_zeros()) as usize
            };
            assert_eq!(job.merkle_branch().len(), expected_len, "{n} transactions");
            assert_eq!(job.notify_merkle_branch().len(), expected_len);
            let sol = solution(&job, &[1, 2, 3, 4], &[5, 6, 7, 8], 42);
            let block = job.block(&sol).unwrap();
            assert_eq!(block.txdata.len(), n as usize + 1);
            assert!(block.check_merkle_root(), "{n} transactions");
            assert!(block.check_witness_commitment(), "{n} transactions");
            assert_eq!(block.header, job.header(&sol).unwrap());
            assert_eq!(block.header.nonce, 42);
        }
    }

    #[test]
    fn the_block_hex_round_trips_and_carries_the_witness_reserved_value() {
        let txs = some_transactions(3);
        let t = BlockTemplate::from_json(&template_with(&txs, true)).unwrap();
        let job = SoloJob::new(t, &params(b"")).unwrap();
        let sol = solution(&job, &[0; 4], &[0, 0, 0, 1], 7);
        let hex = job.block_hex(&sol).unwrap();
        let block: Block = encode::deserialize_hex(&hex).unwrap();
        assert_eq!(block, job.block(&sol).unwrap());
        assert_eq!(
            block.txdata[0].input[0].witness.to_vec(),
            vec![vec![0u8; 32]]
        );
        assert_eq!(&block.txdata[1..], &txs[..]);
        // rust-bitcoin reads BIP 34 heights above 16 only (1..=16 are OP_N, as Core writes).
        let mut t = BlockTemplate::from_json(&template_with(&txs, true)).unwrap();
        t.height = 433;
        let job = SoloJob::new(t, &params(b"")).unwrap();
        let block = job.block(&sol).unwrap();
        assert_eq!(block.bip34_block_height(), Ok(433));
    }

    /// Reverses the bytes of each 4-byte word (cgminer's `flip32`/`flip80`).
    fn flip_words(bytes: &[u8]) -> Vec<u8> {
        bytes
            .chunks_exact(4)
            .flat_map(|w| w.iter().rev().copied())
            .collect()
    }

    fn unhex(s: &str) -> Vec<u8> {
        <Vec<u8> as bitcoin::hex::FromHex>::from_hex(s).unwrap()
    }

    #[test]
    fn a_miner_rebuilds_the_same_header_from_the_notify_fields() {
        // As cgminer does: the header as notify's hex fields in a row (merkle root as its
        // raw bytes word-flipped), then every 4-byte word flipped.
        let txs = some_transactions(5);
        let t = BlockTemplate::from_json(&template_with(&txs, true)).unwrap();
        let job = SoloJob::new(t, &params(b"/x/")).unwrap();
        let (en1, en2, nonce) = ([9, 8, 7, 6], [1, 2, 3, 4], 0x1234_5678u32);
        let mut coinbase = job.coinb1().to_vec();
        coinbase.extend_from_slice(&en1);
        coinbase.extend_from_slice(&en2);
        coinbase.extend_from_slice(job.coinb2());
        let mut root = bitcoin::hashes::sha256d::Hash::hash(&coinbase).to_byte_array();
        for sibling in job.notify_merkle_branch() {
            let mut pair = root.to_vec();
            pair.extend_from_slice(&unhex(&sibling));
            root = bitcoin::hashes::sha256d::Hash::hash(&pair).to_byte_array();
        }
        let mut wire = unhex(&job.notify_version());
        wire.extend(unhex(&job.notify_prev_hash()));
        wire.extend(flip_words(&root));
        wire.extend(unhex(&job.notify_time()));
        wire.extend(unhex(&job.notify_bits()));
        wire.extend(nonce.to_be_bytes());
        let miners = flip_words(&wire);
        let ours = job
            .header(&Solution {
                nonce,
                ..solution(&job, &en1, &en2, 0)
            })
            .unwrap();
        assert_eq!(miners, encode::serialize(&ours));
    }

    #[test]
    fn jobs_are_clean_on_a_new_previous_block_only() {
        let first = SoloJob::new(
            BlockTemplate::from_json(&bcoin_template()).unwrap(),
            &params(b""),
        )
        .unwrap();
        assert!(first.clean_jobs(None), "the first job");
        let same_tip = SoloJob::new(
            BlockTemplate::from_json(&template_with(&some_transactions(2), false)).unwrap(),
            &params(b""),
        )
        .unwrap();
        assert!(!same_tip.clean_jobs(Some(&first)), "new transactions only");
        let mut t = BlockTemplate::from_json(&bcoin_template()).unwrap();
        t.prev_hash = BlockHash::from_byte_array([7; 32]);
        t.height = 2;
        let next = SoloJob::new(t, &params(b"")).unwrap();
        assert!(next.clean_jobs(Some(&same_tip)), "a new tip");
    }

    #[test]
    fn a_solution_of_the_wrong_size_is_refused() {
        let t = BlockTemplate::from_json(&bcoin_template()).unwrap();
        let job = SoloJob::new(t, &params(b"")).unwrap();
        let err = job.block(&solution(&job, &[0; 4], &[0; 3], 0)).unwrap_err();
        assert_eq!(
            err,
            GbtError::ExtranonceSize {
                which: "extranonce2",
                expected: 4,
                got: 3
            }
        );
        let err = job
            .header(&solution(&job, &[0; 5], &[0; 4], 0))
            .unwrap_err();
        assert!(err.to_string().contains("extranonce1 of 5 bytes"), "{err}");
    }

    #[test]
    fn oversized_extranonce_or_tag_is_refused() {
        let t = BlockTemplate::from_json(&bcoin_template()).unwrap();
        let mut p = params(b"");
        p.extranonce2_size = 72;
        assert_eq!(
            SoloJob::new(t.clone(), &p),
            Err(GbtError::ExtranonceTooLong { size: 76 })
        );
        // OP_1, push of 8, OP_PUSHDATA1 90 and the tag: 102 bytes.
        let p = params(&[b'x'; 90]);
        assert_eq!(
            SoloJob::new(t.clone(), &p),
            Err(GbtError::ScriptSigTooLong { len: 102 })
        );
        let p = params(&[b'x'; 88]);
        assert!(SoloJob::new(t, &p).is_ok(), "100 bytes is the limit");
    }

    #[test]
    fn payout_takes_rust_bitcoin_and_bcoin_regtest_addresses() {
        let p2wpkh = payout_script(
            "rb1qzyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg328fddy",
            Network::Regtest,
        )
        .unwrap();
        assert!(p2wpkh.is_p2wpkh());
        assert_eq!(&p2wpkh.as_bytes()[2..], &[0x11; 20]);
        let p2pkh = payout_script("RAqS1bAuWqW2f6ufsU5H4XpKfy5Pqj2oHz", Network::Regtest).unwrap();
        assert_eq!(
            p2pkh,
            ScriptBuf::new_p2pkh(&PubkeyHash::from_byte_array([0x11; 20]))
        );
        let p2sh = payout_script("GKQAMCcZtsJkfZqmLEkGPmq1psQeHtPeGZ", Network::Regtest).unwrap();
        assert_eq!(
            p2sh,
            ScriptBuf::new_p2sh(&ScriptHash::from_byte_array([0x11; 20]))
        );
        // The same key hash in rust-bitcoin's (Bitcoin Core's) regtest form.
        let program = WitnessProgram::new(WitnessVersion::V0, &[0x11; 20]).unwrap();
        let core = Address::from_witness_program(program, Network::Regtest);
        assert!(core.to_string().starts_with("bcrt1q"));
        assert_eq!(
            payout_script(&core.to_string(), Network::Regtest).unwrap(),
            core.script_pubkey()
        );
        // Mainnet is taken for mainnet only; bcoin's regtest forms for regtest only.
        let main = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4";
        assert!(payout_script(main, Network::Bitcoin).unwrap().is_p2wpkh());
        let err = payout_script(main, Network::Regtest).unwrap_err();
        assert!(err.to_string().contains(main), "{err}");
        assert!(payout_script("RAqS1bAuWqW2f6ufsU5H4XpKfy5Pqj2oHz", Network::Bitcoin).is_err());
        assert!(payout_script("rb1qnotanaddress", Network::Regtest).is_err());
        assert!(payout_script("", Network::Regtest).is_err());
    }
}
