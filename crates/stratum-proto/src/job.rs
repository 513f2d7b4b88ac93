//! The job value, targets and difficulties (go-proxy RFC §7, §19).
//!
//! | quantity | wire form | meaning |
//! |---|---|---|
//! | blob | hex, ≥ 43 bytes (86 hex chars); 76 bytes for Monero | hashing blob; 4-byte LE nonce at bytes 39..43 |
//! | target | 8 hex chars (u32 LE) or 16 hex chars (u64 LE) | difficulty = `0xFFFFFFFF / t32` or `(2^64-1) / t64` |
//! | nonce | 8 hex chars | the 4 blob bytes 39..43 as the miner wrote them |
//! | result | 64 hex chars | the 32-byte PoW hash; its last 8 bytes as LE u64 `h` give difficulty `(2^64-1) / h` |
//!
//! NiceHash: the proxy fixes blob byte 42 ([`NICEHASH_BYTE_OFFSET`], hex chars 84..86), the most
//! significant byte of the nonce, to the miner's slot. (The RFC says byte 39; real miners keep
//! byte 42 and roll the low 24 bits, and xmrig-proxy patches byte 42.)

use serde::{Deserialize, Serialize};

/// Byte offset in the hashing blob of the nonce (4 bytes, little-endian).
pub const NONCE_OFFSET: usize = 39;
/// Byte offset in the hashing blob of the NiceHash fixed byte: the nonce's most significant byte.
pub const NICEHASH_BYTE_OFFSET: usize = 42;
/// Smallest blob, in bytes, that holds a whole nonce.
pub const MIN_BLOB_BYTES: usize = NONCE_OFFSET + 4;
/// Longest job id [`Job::validate`] takes, in bytes (ids are echoed to miners and logged).
pub const MAX_JOB_ID: usize = 128;

/// One unit of work from a pool (RFC §7).
///
/// Field names are the wire names of the CryptoNote `job` object. Optional fields are left
/// out of the JSON when absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// Hex of the hashing blob (lowercase; 152 hex chars for Monero).
    pub blob: String,
    /// Pool-assigned job identifier.
    pub job_id: String,
    /// 8- or 16-hex-char little-endian target.
    pub target: String,
    /// Algorithm name such as `rx/0`, when the pool names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algo: Option<String>,
    /// Block height, when the pool gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
    /// RandomX seed hash, 64 hex chars, when the algorithm uses one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed_hash: Option<String>,
}

/// Why a job from a pool cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// `job_id` is empty.
    #[error("job has an empty job_id")]
    EmptyJobId,
    /// `job_id` is longer than [`MAX_JOB_ID`] bytes or holds a byte that is not printable
    /// ASCII.
    #[error("job id of {0} bytes is not 1..={MAX_JOB_ID} bytes of printable ASCII")]
    BadJobId(usize),
    /// `blob` is not hex, has an odd length, or is shorter than 43 bytes.
    #[error("job blob is not hex of at least {MIN_BLOB_BYTES} bytes")]
    BadBlob,
    /// `target` is not 8 or 16 hex chars, or is zero.
    #[error("job target {0:?} is not an 8- or 16-hex-char non-zero target")]
    BadTarget(String),
}

impl Job {
    /// Checks that the job can be split and sent to miners: id of 1..=[`MAX_JOB_ID`] bytes
    /// of printable ASCII, blob hex of at least [`MIN_BLOB_BYTES`] bytes (the nonce at
    /// 39..43, the NiceHash fixed byte at 42), target a non-zero difficulty.
    ///
    /// # Errors
    /// [`JobError`] naming the first bad field.
    pub fn validate(&self) -> Result<(), JobError> {
        if self.job_id.is_empty() {
            return Err(JobError::EmptyJobId);
        }
        if self.job_id.len() > MAX_JOB_ID || !self.job_id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(JobError::BadJobId(self.job_id.len()));
        }
        if self.blob.len() % 2 != 0
            || self.blob.len() < MIN_BLOB_BYTES * 2
            || !self.blob.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(JobError::BadBlob);
        }
        match target_to_difficulty(&self.target) {
            Some(d) if d > 0 => Ok(()),
            _ => Err(JobError::BadTarget(self.target.clone())),
        }
    }

    /// The job's difficulty from its target; 0 when the target is not valid.
    pub fn difficulty(&self) -> u64 {
        target_to_difficulty(&self.target).unwrap_or(0)
    }

    /// A copy of the blob with the NiceHash fixed byte written at blob byte 42 (hex chars
    /// 84..86, lowercase). A blob too short to hold it is returned unchanged.
    pub fn blob_with_fixed_byte(&self, fixed_byte: u8) -> String {
        let mut blob = self.blob.clone().into_bytes();
        patch_fixed_byte(&mut blob, fixed_byte);
        // Only ASCII hex digits were written into an ASCII string.
        String::from_utf8(blob).unwrap_or_else(|_| self.blob.clone())
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Two lowercase hex digits of `byte`.
pub fn hex_byte(byte: u8) -> [u8; 2] {
    [HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0x0f)]]
}

/// Writes `fixed_byte` as two lowercase hex digits at hex chars 84..86 of `blob_hex` (blob
/// byte 42). Does nothing when the hex blob is shorter than 86 chars.
pub fn patch_fixed_byte(blob_hex: &mut [u8], fixed_byte: u8) {
    let at = NICEHASH_BYTE_OFFSET * 2;
    if let Some(dst) = blob_hex.get_mut(at..at + 2) {
        dst.copy_from_slice(&hex_byte(fixed_byte));
    }
}

/// Marks a byte that is not a hex digit in [`HEX_DIGIT`].
const NOT_HEX: u8 = 0x80;

/// The value of each byte as a hex digit (either case), [`NOT_HEX`] for any other byte: one
/// load a digit, and a whole string checked by OR-ing its values, with no branch a byte
/// (a share's 64-digit `result` is checked at every submit).
const HEX_DIGIT: [u8; 256] = {
    let mut t = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// True when every byte of `hex` is a hex digit (either case); true for an empty slice.
fn all_hex(hex: &[u8]) -> bool {
    hex.iter().fold(0, |bad, &c| bad | HEX_DIGIT[c as usize]) & NOT_HEX == 0
}

/// Decodes hex (either case) into `out`; `None` if `hex` is not exactly `2 * out.len()` hex
/// digits (`out` may then hold anything).
pub fn decode_hex_into(hex: &[u8], out: &mut [u8]) -> Option<()> {
    if hex.len() != out.len() * 2 {
        return None;
    }
    let mut bad = 0;
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let (hi, lo) = (HEX_DIGIT[pair[0] as usize], HEX_DIGIT[pair[1] as usize]);
        bad |= hi | lo;
        *o = (hi << 4) | lo;
    }
    (bad & NOT_HEX == 0).then_some(())
}

/// Decodes a hex string of any even length into bytes; `None` if it is not hex.
pub fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    let mut out = vec![0; hex.len() / 2];
    decode_hex_into(hex.as_bytes(), &mut out)?;
    Some(out)
}

/// Lowercase hex of `bytes`.
pub fn encode_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let [h, l] = hex_byte(*b);
        s.push(char::from(h));
        s.push(char::from(l));
    }
    s
}

/// Difficulty of an 8-hex (u32 LE) or 16-hex (u64 LE) target.
///
/// `0xFFFFFFFF / t32` or `u64::MAX / t64`; a zero target gives 0. `None` when the string is not
/// 8 or 16 hex digits. Example: `"b88d0600"` → 10000, `"ffffffff"` → 1.
pub fn target_to_difficulty(target: &str) -> Option<u64> {
    match target.len() {
        8 => {
            let mut b = [0u8; 4];
            decode_hex_into(target.as_bytes(), &mut b)?;
            let t = u32::from_le_bytes(b);
            Some(u64::from(u32::MAX).checked_div(u64::from(t)).unwrap_or(0))
        }
        16 => {
            let mut b = [0u8; 8];
            decode_hex_into(target.as_bytes(), &mut b)?;
            let t = u64::from_le_bytes(b);
            Some(u64::MAX.checked_div(t).unwrap_or(0))
        }
        _ => None,
    }
}

/// The target for a difficulty: 8 hex chars (`0xFFFFFFFF / d` as u32 LE) while `d` fits in 32
/// bits, else 16 hex chars (`u64::MAX / d` as u64 LE). Difficulty 0 is treated as 1.
/// Example: 10000 → `"b88d0600"`.
pub fn difficulty_to_target(difficulty: u64) -> String {
    let d = difficulty.max(1);
    if d <= u64::from(u32::MAX) {
        let t = u32::MAX / u32::try_from(d).unwrap_or(u32::MAX);
        encode_hex(&t.to_le_bytes())
    } else {
        encode_hex(&(u64::MAX / d).to_le_bytes())
    }
}

/// The actual difficulty of a share from its `result` hash: the last 8 of its 32 bytes as a
/// little-endian u64 `h`, difficulty `u64::MAX / h` (`u64::MAX` when `h` is 0). `None` when
/// `result` is not 64 hex digits.
pub fn result_difficulty(result: &str) -> Option<u64> {
    if result.len() != 64 {
        return None;
    }
    let mut b = [0u8; 8];
    decode_hex_into(&result.as_bytes()[48..64], &mut b)?;
    if !all_hex(&result.as_bytes()[..48]) {
        return None;
    }
    let h = u64::from_le_bytes(b);
    Some(u64::MAX.checked_div(h).unwrap_or(u64::MAX))
}

/// Parses a submit's `nonce`: exactly 8 lowercase hex digits (RFC §6.2) → the 4 nonce bytes in
/// blob order (little-endian).
pub fn parse_nonce(nonce: &str) -> Option<[u8; 4]> {
    if nonce.len() != 8 || nonce.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut b = [0u8; 4];
    decode_hex_into(nonce.as_bytes(), &mut b)?;
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn job(blob: &str) -> Job {
        Job {
            blob: blob.into(),
            job_id: "j1".into(),
            target: "b88d0600".into(),
            algo: None,
            height: None,
            seed_hash: None,
        }
    }

    #[test]
    fn target_difficulty_known_values() {
        // The RFC's "b88d0600 → 100000" is a typo; its own formula gives 10000.
        assert_eq!(target_to_difficulty("b88d0600"), Some(10000));
        assert_eq!(target_to_difficulty("9bc42000"), Some(2000));
        assert_eq!(target_to_difficulty("711b0d00"), Some(5000));
        assert_eq!(target_to_difficulty("37894100"), Some(1000));
        assert_eq!(target_to_difficulty("00000000"), Some(0));
        assert_eq!(target_to_difficulty("ffffffff"), Some(1));
        assert_eq!(target_to_difficulty("ffffffffffffffff"), Some(1));
        assert_eq!(target_to_difficulty("xyz"), None);
        assert_eq!(target_to_difficulty("zzzzzzzz"), None);
        assert_eq!(difficulty_to_target(10000), "b88d0600");
        assert_eq!(difficulty_to_target(2000), "9bc42000");
        assert_eq!(difficulty_to_target(0), "ffffffff");
        assert_eq!(difficulty_to_target(1 << 40).len(), 16);
    }

    proptest! {
        #[test]
        fn hex_table_agrees_with_the_standard_library(bytes in proptest::collection::vec(any::<u8>(), 0..8)) {
            let std_hex = bytes.iter().all(u8::is_ascii_hexdigit);
            prop_assert_eq!(all_hex(&bytes), std_hex);
            let mut out = vec![0u8; bytes.len() / 2];
            let even = &bytes[..out.len() * 2];
            let decoded = decode_hex_into(even, &mut out).map(|()| out.clone());
            let expected = even
                .chunks_exact(2)
                .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
                .collect::<Option<Vec<u8>>>()
                .filter(|_| even.iter().all(u8::is_ascii_hexdigit));
            prop_assert_eq!(decoded, expected);
        }

        #[test]
        fn every_single_byte_is_judged_as_the_standard_library_does(c in any::<u8>()) {
            prop_assert_eq!(all_hex(&[c]), c.is_ascii_hexdigit());
            let mut r = "0".repeat(64).into_bytes();
            r[7] = c;
            if let Ok(r) = std::str::from_utf8(&r) {
                prop_assert_eq!(result_difficulty(r).is_some(), c.is_ascii_hexdigit());
            }
        }
    }

    #[test]
    fn result_difficulty_of_transcript_shares() {
        // From proxy_nicehash_errors.txt: accepted against a 5000-difficulty target.
        let d =
            result_difficulty("0000000000000000000000000000000000000000000000006588635ddc460300")
                .unwrap();
        assert!(d >= 5000, "{d}");
        assert_eq!(
            result_difficulty(&"f".repeat(64)),
            Some(1),
            "all-ones hash is difficulty 1"
        );
        assert_eq!(result_difficulty(&"0".repeat(64)), Some(u64::MAX));
        assert_eq!(result_difficulty("abcd"), None);
        assert_eq!(result_difficulty(&"g".repeat(64)), None);
    }

    #[test]
    fn fixed_byte_goes_to_hex_chars_84_86() {
        let j = job(&"0".repeat(152));
        let b = j.blob_with_fixed_byte(0x2a);
        assert_eq!(&b[84..86], "2a");
        assert_eq!(b.len(), 152);
        assert_eq!(b.matches('2').count(), 1);
        assert_eq!(&j.blob_with_fixed_byte(0xff)[84..86], "ff");
        let short = job(&"0".repeat(80));
        assert_eq!(short.blob_with_fixed_byte(0x2a), short.blob);
    }

    #[test]
    fn validate_names_the_bad_field() {
        assert_eq!(job(&"0".repeat(152)).validate(), Ok(()));
        assert_eq!(job(&"0".repeat(80)).validate(), Err(JobError::BadBlob));
        assert_eq!(job(&"z".repeat(152)).validate(), Err(JobError::BadBlob));
        let mut j = job(&"0".repeat(152));
        j.target = "00000000".into();
        assert!(matches!(j.validate(), Err(JobError::BadTarget(_))));
        j.target = "b88d0600".into();
        j.job_id.clear();
        assert_eq!(j.validate(), Err(JobError::EmptyJobId));
    }

    #[test]
    fn nonce_parsing() {
        assert_eq!(parse_nonce("000000b9"), Some([0, 0, 0, 0xb9]));
        assert_eq!(parse_nonce("000000B9"), None);
        assert_eq!(parse_nonce("00b9"), None);
        assert_eq!(parse_nonce("0000zzb9"), None);
    }

    proptest! {
        #[test]
        fn difficulty_target_round_trip_is_close(d in 1u64..=u64::from(u32::MAX)) {
            let back = target_to_difficulty(&difficulty_to_target(d)).unwrap();
            // Integer division loses at most a factor (t+1)/t.
            prop_assert!(back >= d, "{} -> {}", d, back);
            let t = u64::from(u32::MAX) / d;
            prop_assert!(back <= u64::from(u32::MAX) / t);
        }

        #[test]
        fn hex_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            prop_assert_eq!(decode_hex(&encode_hex(&bytes)), Some(bytes));
        }
    }
}
