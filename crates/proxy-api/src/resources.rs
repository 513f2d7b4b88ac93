//! xmrig-proxy's `resources` summary object: host memory, load and CPU count, read from
//! Linux's `/proc` (best effort: zeros where a value cannot be read).

use serde::Serialize;

/// `resources.memory` of `/1/summary`, in bytes.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Memory {
    /// Memory available for new work (`MemAvailable`).
    pub free: u64,
    /// Physical memory (`MemTotal`).
    pub total: u64,
    /// The proxy's resident set size (`VmRSS`).
    pub resident_set_memory: u64,
}

/// `resources` of `/1/summary`.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Resources {
    /// Memory figures.
    pub memory: Memory,
    /// 1, 5 and 15 minute load averages.
    pub load_average: [f64; 3],
    /// CPUs the proxy may run on.
    pub hardware_concurrency: usize,
}

/// The `kB` value of `key` in a `/proc` status-style file, in bytes.
fn kb_field(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line[key.len()..]
        .trim_start_matches(':')
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Reads the current figures.
pub(crate) fn read() -> Resources {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut load = loadavg
        .split_whitespace()
        .map(|v| v.parse::<f64>().unwrap_or(0.0));
    Resources {
        memory: Memory {
            free: kb_field(&meminfo, "MemAvailable").unwrap_or(0),
            total: kb_field(&meminfo, "MemTotal").unwrap_or(0),
            resident_set_memory: kb_field(&status, "VmRSS").unwrap_or(0),
        },
        load_average: std::array::from_fn(|_| load.next().unwrap_or(0.0)),
        hardware_concurrency: std::thread::available_parallelism().map_or(0, |n| n.get()),
    }
}

/// The host name (Linux), for `worker_id`.
pub(crate) fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kb_fields_are_read_in_bytes() {
        let text = "MemTotal:       24684084 kB\nMemAvailable:   100 kB\n";
        assert_eq!(kb_field(text, "MemTotal"), Some(24_684_084 * 1024));
        assert_eq!(kb_field(text, "MemAvailable"), Some(102_400));
        assert_eq!(kb_field(text, "VmRSS"), None);
    }
}
