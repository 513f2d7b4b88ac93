//! What the real-node harnesses ([`crate::monerod`], [`crate::bcoin`]) share: a node process
//! with its console log in a temp directory of its own, started with retries, waited for until
//! its RPC answers, killed (by its own child handle, nothing else) and its directory removed on
//! drop.

use std::fs::File;
use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

/// How long [`wait_ready`] waits for the RPC server to answer.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How many times [`start_with_retries`] tries when the node exits while starting.
const START_ATTEMPTS: usize = 3;
/// How long one readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The file in the node's directory that gets its stdout and stderr.
const CONSOLE_LOG: &str = "console.log";

/// A node's child process and its directory. On drop the child is killed and waited for, and
/// the directory removed.
#[derive(Debug)]
pub(crate) struct NodeProcess {
    /// The node's name in messages (`monerod`, `bcoin`).
    name: &'static str,
    child: Child,
    dir: PathBuf,
}

impl NodeProcess {
    /// Makes a fresh directory `DIR_PREFIX-…` under the system temp dir, opens its
    /// `console.log` for the node's stdout and stderr, and spawns `program` with the arguments
    /// `args` adds (given the directory). The directory is removed again when this fails.
    ///
    /// # Errors
    /// Fatal ones: the directory or log cannot be made, or `program` cannot be run.
    pub(crate) fn spawn(
        name: &'static str,
        dir_prefix: &str,
        program: &Path,
        args: impl FnOnce(&mut Command, &Path),
    ) -> Result<NodeProcess, StartError> {
        let dir = make_temp_dir(dir_prefix).map_err(StartError::Fatal)?;
        let spawned = File::create(dir.join(CONSOLE_LOG))
            .and_then(|f| Ok((f.try_clone()?, f)))
            .with_context(|| format!("creating the console log in {}", dir.display()))
            .and_then(|(stdout, stderr)| {
                let mut command = Command::new(program);
                args(&mut command, &dir);
                command
                    .stdin(Stdio::null())
                    .stdout(stdout)
                    .stderr(stderr)
                    .spawn()
                    .with_context(|| format!("running {}", program.display()))
            });
        match spawned {
            Ok(child) => Ok(NodeProcess { name, child, dir }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(StartError::Fatal(e))
            }
        }
    }

    /// The process id of the node (the child this value owns).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The node's directory (removed on drop); its `console.log` holds the node's output.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last `max_bytes` bytes (at most) of the node's console output, for error messages.
    pub(crate) fn log_tail(&self, max_bytes: u64) -> String {
        let read = || -> std::io::Result<String> {
            let mut file = File::open(self.dir.join(CONSOLE_LOG))?;
            let len = file.metadata()?.len();
            file.seek(SeekFrom::Start(len.saturating_sub(max_bytes)))?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        };
        read().unwrap_or_else(|e| format!("(no console log: {e})"))
    }

    /// `Err(Exited)` with the log tail when the child has exited, `Ok` while it runs.
    fn check_running(&mut self) -> Result<(), StartError> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(StartError::Exited(anyhow!(
                "{} exited while starting ({status}); its output ends with:\n{}",
                self.name,
                self.log_tail(4096)
            ))),
            Ok(None) => Ok(()),
            Err(e) => Err(StartError::Fatal(e.into())),
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        // Our own child only, by its handle; `kill` fails harmlessly if it already exited.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A harness value that owns a [`NodeProcess`] and can ask its RPC whether it is up.
pub(crate) trait Node {
    /// The RPC method [`Node::probe`] calls, for the timeout message.
    const PROBE_METHOD: &'static str;
    /// The node's process.
    fn process(&mut self) -> &mut NodeProcess;
    /// One RPC call that succeeds once the node serves requests.
    fn probe(&self) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// Waits until `node` answers [`Node::probe`], asking every `poll`, for at most
/// [`START_TIMEOUT`].
///
/// # Errors
/// `Exited` (with the log tail) when the process ends meanwhile; `Fatal` when it does not
/// answer in time.
pub(crate) async fn wait_ready<N: Node>(node: &mut N, poll: Duration) -> Result<(), StartError> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        node.process().check_running()?;
        if let Ok(Ok(())) = tokio::time::timeout(PROBE_TIMEOUT, node.probe()).await {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            let process = node.process();
            return Err(StartError::Fatal(anyhow!(
                "{} did not answer {} within {START_TIMEOUT:?}; its output ends with:\n{}",
                process.name,
                N::PROBE_METHOD,
                process.log_tail(4096)
            )));
        }
        tokio::time::sleep(poll).await;
    }
}

/// Runs `attempt` up to three times while it fails with [`StartError::Exited`] (a lost race
/// for a port, say); a fatal error ends it at once.
///
/// # Errors
/// The fatal error, or the last `Exited` one.
pub(crate) async fn start_with_retries<T, F, Fut>(name: &str, mut attempt: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StartError>>,
{
    let mut last_error = None;
    for _ in 0..START_ATTEMPTS {
        match attempt().await {
            Ok(node) => return Ok(node),
            Err(StartError::Exited(e)) => last_error = Some(e),
            Err(StartError::Fatal(e)) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow!("{name} did not start")))
}

/// How one start attempt failed: `Exited` may be a lost race for a port and is retried.
pub(crate) enum StartError {
    /// The node exited while starting.
    Exited(anyhow::Error),
    /// Anything else; not retried.
    Fatal(anyhow::Error),
}

impl From<StartError> for anyhow::Error {
    fn from(e: StartError) -> Self {
        match e {
            StartError::Exited(e) | StartError::Fatal(e) => e,
        }
    }
}

/// A `reqwest` client for a node's loopback RPC: 30 s timeout, no proxy.
pub(crate) fn rpc_client() -> Result<reqwest::Client, StartError> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()
        .map_err(|e| StartError::Fatal(e.into()))
}

/// `$VAR` when set, else the first `name` on `PATH`; when there is none, the error says
/// `{name} is not on PATH: {install} or set {var}`.
pub(crate) fn find_program(var: &str, name: &str, install: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(var).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("{var}={} is not a file", path.display());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| anyhow!("{name} is not on PATH: {install} or set {var}"))
}

/// The cache directory for installed test programs (bcoin, para): `$VAR` when set, else
/// `$XDG_CACHE_HOME/stratum-proxy`, else `~/.cache/stratum-proxy`.
///
/// # Errors
/// None of `VAR`, `XDG_CACHE_HOME` and `HOME` is set.
pub(crate) fn cache_root(var: &str) -> anyhow::Result<PathBuf> {
    let get = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = get(var) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = get("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("stratum-proxy"));
    }
    let home = get("HOME")
        .ok_or_else(|| anyhow!("no cache directory: set {var} (or HOME or XDG_CACHE_HOME)"))?;
    Ok(PathBuf::from(home).join(".cache").join("stratum-proxy"))
}

/// Installs `what` as `root/NAME` whole or not at all: `fill` puts it into a private, empty
/// directory beside the target (`root/.NAME-tmp-PID-RAND`, given to it), which is then renamed
/// to `root/NAME`; the private directory is removed when `fill` fails. When another process
/// won the race, its copy is used if `complete` holds for it. Returns `root/NAME`.
///
/// # Errors
/// `root` or the private directory cannot be made; `fill`'s error; the rename failed and
/// `root/NAME` is not `complete`.
pub(crate) fn install_atomically(
    root: &Path,
    name: &str,
    what: &str,
    complete: impl Fn(&Path) -> bool,
    fill: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<PathBuf> {
    let target = root.join(name);
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let work = root.join(format!(
        ".{name}-tmp-{}-{:x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir(&work).with_context(|| format!("creating {}", work.display()))?;
    if let Err(e) = fill(&work) {
        let _ = std::fs::remove_dir_all(&work);
        return Err(e);
    }
    // Whole or not at all: another process may have won the race, then its copy is used.
    if std::fs::rename(&work, &target).is_err() {
        let _ = std::fs::remove_dir_all(&work);
        if !complete(&target) {
            bail!(
                "could not move the {what} install into {}",
                target.display()
            );
        }
    }
    Ok(target)
}

/// Two distinct free loopback ports: bound together, then released for the node to take.
pub(crate) fn free_ports() -> anyhow::Result<(u16, u16)> {
    let a = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    let b = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

/// A new, empty directory `PREFIX-PID-N-NANOS` under the system temp dir, unique to this
/// process and call.
pub(crate) fn make_temp_dir(prefix: &str) -> anyhow::Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("{prefix}-{}-{n}-{nanos:08x}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(anyhow!(e).context(format!("creating {}", dir.display())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_dirs_unique() {
        let (a, b) = free_ports().unwrap();
        assert_ne!(a, b);
        let d1 = make_temp_dir("node-test").unwrap();
        let d2 = make_temp_dir("node-test").unwrap();
        assert_ne!(d1, d2);
        std::fs::remove_dir(d1).unwrap();
        std::fs::remove_dir(d2).unwrap();
    }

    #[test]
    fn a_missing_program_names_how_to_install_it() {
        let err = find_program(
            "TEST_SUPPORT_NO_SUCH_VAR",
            "no-such-program-here",
            "install it",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "no-such-program-here is not on PATH: install it or set TEST_SUPPORT_NO_SUCH_VAR"
        );
    }

    #[tokio::test]
    async fn a_node_that_exits_at_once_is_retried_then_reported_with_its_log() {
        let sh = find_program("TEST_SUPPORT_NO_SUCH_VAR", "sh", "install sh").unwrap();
        let dirs = std::sync::Mutex::new(Vec::new());
        let mut attempts = 0;
        let err = start_with_retries("fake", || {
            attempts += 1;
            let spawned = NodeProcess::spawn("fake", "node-test", &sh, |cmd, _| {
                cmd.args(["-c", "echo it went wrong; exit 3"]);
            });
            let dirs = &dirs;
            async move {
                let mut node = Fake(spawned?);
                dirs.lock().unwrap().push(node.0.dir().to_path_buf());
                wait_ready(&mut node, Duration::from_millis(20)).await?;
                Ok(node)
            }
        })
        .await
        .unwrap_err();
        assert_eq!(attempts, 3, "an exit while starting is retried");
        let msg = err.to_string();
        assert!(msg.starts_with("fake exited while starting"), "{msg}");
        assert!(msg.ends_with("it went wrong\n"), "{msg}");
        let dirs = dirs.into_inner().unwrap();
        assert_eq!(dirs.len(), 3);
        assert!(dirs.iter().all(|d| !d.exists()), "directories removed");
    }

    #[tokio::test]
    async fn dropping_a_node_kills_it_and_removes_its_directory() {
        let sh = find_program("TEST_SUPPORT_NO_SUCH_VAR", "sh", "install sh").unwrap();
        let process = NodeProcess::spawn("fake", "node-test", &sh, |cmd, _| {
            cmd.args(["-c", "sleep 60"]);
        })
        .map_err(anyhow::Error::from)
        .unwrap();
        let dir = process.dir().to_path_buf();
        let proc_entry = PathBuf::from(format!("/proc/{}", process.pid()));
        assert!(dir.join(CONSOLE_LOG).is_file());
        drop(process);
        assert!(!dir.exists(), "directory removed");
        if cfg!(target_os = "linux") {
            assert!(!proc_entry.exists(), "process gone");
        }
    }

    /// A node whose probe never succeeds.
    #[derive(Debug)]
    struct Fake(NodeProcess);

    impl Node for Fake {
        const PROBE_METHOD: &'static str = "nothing";
        fn process(&mut self) -> &mut NodeProcess {
            &mut self.0
        }
        async fn probe(&self) -> anyhow::Result<()> {
            bail!("never up")
        }
    }
}
