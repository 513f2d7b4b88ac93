//! `parse_pool_message` on arbitrary bytes: never panics. A job it yields, sent to miners as
//! one `JobLine` patched per miner, reads back as that job, with the miner's fixed byte in its
//! blob (`Job::blob_with_fixed_byte`) when the blob is hex (any job that passes
//! `Job::validate`) and unchanged otherwise; the three parts of the vectored write are the
//! same line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stratum_proto::cryptonote::{parse_pool_message, JobLine, PoolMessage};

fuzz_target!(|data: &[u8]| {
    let Ok(PoolMessage::Job(job)) = parse_pool_message(data) else {
        return;
    };
    let hex = job.blob.bytes().all(|b| b.is_ascii_hexdigit());
    let line = JobLine::new(&job);
    for fixed_byte in [0x00, 0x7f, 0xff] {
        let patched = line.to_vec(fixed_byte);
        assert_eq!(line.parts(fixed_byte).concat(), patched);
        assert_eq!(patched.last(), Some(&b'\n'));
        let Ok(PoolMessage::Job(sent)) = parse_pool_message(&patched[..patched.len() - 1]) else {
            panic!("the job line for byte {fixed_byte} does not read back as a job");
        };
        let want = if hex {
            job.blob_with_fixed_byte(fixed_byte)
        } else {
            job.blob.clone()
        };
        assert_eq!(sent.blob, want);
        assert_eq!(sent.job_id, job.job_id);
        assert_eq!(sent.target, job.target);
    }
});
