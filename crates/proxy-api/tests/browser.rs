//! The dashboard in a real browser: headless Chromium (Debian's `chromium`) loads the page
//! from a running proxy (loopback, port 0) with a mock pool and miners that submitted shares,
//! and the test checks what the page shows (the DOM after the script ran) and takes a
//! screenshot (`$CARGO_TARGET_TMPDIR/dashboard.png`; a copy is kept in `docs/dashboard.png`).
//!
//! A second test does the same for a proxy serving CryptoNote and Stratum V1 (a bind and a
//! pool of each, `common::start_two_families`, as in `families.rs`): the page shows each
//! family's figures, a family column and a chart per family (its screenshot:
//! `$CARGO_TARGET_TMPDIR/dashboard-families.png`).
//!
//! The browser is `$CHROMIUM` when set, else `chromium` from `PATH`; without it the test fails
//! and says how to install it (`apt-get install -y chromium`), as the monerod tests do.
//! Each Chromium run has its own profile directory and process group, is bounded to 90 s,
//! and is stopped by its PID (its group) when it overruns.

mod common;

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use proxy_core::config::Protocol;
use test_support::mock_pool::Reply;
use tokio::sync::oneshot;

const TOKEN: &str = "dash-token";
/// Longest a Chromium run may take.
const BROWSER_LIMIT: Duration = Duration::from_secs(90);

/// `$CHROMIUM`, else `chromium` on `PATH`; panics with how to install it.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMIUM").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "CHROMIUM={} is not a file", p.display());
        return p;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("chromium"))
        .find(|c| c.is_file())
        .unwrap_or_else(|| {
            panic!(
                "chromium is not on PATH: install it (`apt-get install -y chromium`) or set \
                 CHROMIUM; this test loads the dashboard in a real browser"
            )
        })
}

/// A fresh directory under the target dir (the last run's is removed first).
fn work_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("dashboard-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs headless Chromium on `url` with `args`, in its own process group and profile; returns
/// its standard output. Kills the group if it runs past [`BROWSER_LIMIT`].
async fn run_chromium(url: &str, args: &[String], dir: &Path) -> String {
    let out = dir.join("stdout");
    let err = dir.join("stderr");
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--metrics-recording-only",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .process_group(0)
        .spawn()
        .expect("chromium starts");
    let pid = child.id();
    let deadline = tokio::time::Instant::now() + BROWSER_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if tokio::time::Instant::now() >= deadline {
            // The group we made for it: the browser and its helper processes, nothing else.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
            let _ = child.wait();
            panic!(
                "chromium (pid {pid}) ran past {BROWSER_LIMIT:?}; stderr:\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Helpers still alive after the browser exited are stopped too.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stderr(Stdio::null())
        .status();
    assert!(
        status.success(),
        "chromium failed ({status}); stderr:\n{}",
        std::fs::read_to_string(&err).unwrap_or_default()
    );
    let dom = std::fs::read_to_string(&out).unwrap();
    // The profile (some MB) is not kept.
    let _ = std::fs::remove_dir_all(dir.join("profile"));
    dom
}

/// The DOM of `url` after its script ran (up to 8 s of the page's virtual time).
async fn dump_dom(url: &str, dir: &Path) -> String {
    run_chromium(
        url,
        &["--virtual-time-budget=8000".into(), "--dump-dom".into()],
        dir,
    )
    .await
}

/// The `data-points` of the chart's line named `name`.
fn chart_points(dom: &str, name: &str) -> usize {
    let at = dom
        .find(&format!("data-name=\"{name}\""))
        .unwrap_or_else(|| panic!("no chart line {name}:\n{dom}"));
    let rest = &dom[at..];
    let rest = &rest[rest.find("data-points=\"").unwrap() + 13..];
    rest[..rest.find('"').unwrap()].parse().unwrap()
}

/// The element with `id`'s text (an element without children).
fn text_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}:\n{dom}"));
    let rest = &dom[at..];
    let rest = &rest[rest.find('>').unwrap() + 1..];
    &rest[..rest.find('<').unwrap()]
}

/// The table row (`<tr ...>...</tr>`) whose opening tag holds `attr`.
fn row_with<'a>(dom: &'a str, attr: &str) -> &'a str {
    let at = dom
        .find(attr)
        .unwrap_or_else(|| panic!("no row with {attr}:\n{dom}"));
    let start = dom[..at].rfind("<tr").unwrap();
    &dom[start..at + dom[at..].find("</tr>").unwrap()]
}

/// The opening tag of the workers-table row of `name`.
fn worker_row<'a>(dom: &'a str, name: &str) -> &'a str {
    let at = dom
        .find(&format!("data-worker=\"{name}\""))
        .unwrap_or_else(|| panic!("worker {name} not shown:\n{dom}"));
    let start = dom[..at].rfind('<').unwrap();
    &dom[start..at + dom[at..].find('>').unwrap()]
}

/// The API served on loopback with its history sampled every second instead of every
/// minute, until [`Api::stop`].
struct Api {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Api {
    async fn serve(monitor: &proxy_core::Monitor) -> Self {
        let (bound_tx, bound_rx) = oneshot::channel::<SocketAddr>();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(proxy_api::serve_with_history_period(
            "127.0.0.1:0".parse().unwrap(),
            monitor.clone(),
            Duration::from_secs(1),
            async {
                let _ = stop_rx.await;
            },
            move |addr| {
                let _ = bound_tx.send(addr);
            },
        ));
        let addr = bound_rx.await.unwrap();
        Self { addr, stop, task }
    }

    /// Stops the server and checks it ended cleanly.
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_the_dashboard_of_a_running_proxy() {
    let browser = chromium();
    let (pool, proxy) = start(|c| {
        c.http.access_token = Some(TOKEN.into());
    })
    .await;
    let monitor = proxy.monitor();

    // The API on loopback, its history sampled every second instead of every minute.
    let api = Api::serve(&monitor).await;
    let addr = api.addr;

    // rig-A stays, rig-B leaves (offline), rig-C has a share refused by the pool. The shares
    // are spread over a few seconds, so that the history (a point a second here) has a shape.
    let mut a = miner(&proxy, "WALLET1", Some("rig-A")).await;
    let mut b = miner(&proxy, "WALLET2", Some("rig-B")).await;
    let mut c = miner(&proxy, "WALLET3", Some("rig-C")).await;
    pool.set_reply(Reply::OkAfter(Duration::from_millis(25)));
    for round in 0..6u8 {
        accepted(&mut a, round, 1000).await;
        if round % 2 == 0 {
            accepted(&mut c, round, 1000).await;
        }
        if round < 2 {
            accepted(&mut b, round, 1000).await;
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    pool.set_reply(Reply::Error("Low difficulty share".into()));
    let r = share(&mut c, 100, 1000).await;
    assert!(!r["error"].is_null(), "{r}");
    until(&monitor, |m| {
        m.stats().accepted == 11 && m.stats().rejected == 1
    })
    .await;
    drop(b);
    until(&monitor, |m| m.stats().miners == 2).await;

    // The history holds the shares (points a second apart), and the tick has attributed them.
    let client = reqwest::Client::new();
    for _ in 0..100 {
        let h: serde_json::Value = client
            .get(format!("http://{addr}/1/history"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if h["proxy"].as_array().unwrap().len() >= 6
            && monitor.upstream_hashes().values().sum::<u64>() == 11_000
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Without the token the page loads and asks for it.
    let dom = dump_dom(&format!("http://{addr}/"), &work_dir("no-token")).await;
    assert!(dom.contains("data-state=\"token\""), "{dom}");
    assert!(
        dom.contains("id=\"login\"") && !dom.contains("id=\"login\" hidden"),
        "{dom}"
    );

    // With it (in the URL's fragment), the figures.
    let url = format!("http://{addr}/#token={TOKEN}");
    let dom = dump_dom(&url, &work_dir("dom")).await;
    assert!(dom.contains("data-state=\"ready\""), "{dom}");
    assert_eq!(text_of(&dom, "miners-now"), "2");
    assert_eq!(text_of(&dom, "upstreams-active"), "1 / 1");
    assert_eq!(text_of(&dom, "accepted"), "11");
    assert_eq!(text_of(&dom, "rejected"), "1");
    assert_eq!(text_of(&dom, "invalid"), "0");
    let latency: u64 = text_of(&dom, "latency")
        .strip_suffix(" ms")
        .unwrap()
        .parse()
        .unwrap();
    assert!(latency >= 25, "the pool answers after 25 ms: {latency}");
    assert!(worker_row(&dom, "rig-A").contains("data-status=\"online\""));
    assert!(worker_row(&dom, "rig-C").contains("data-status=\"online\""));
    assert!(
        worker_row(&dom, "rig-B").contains("data-status=\"offline\""),
        "a worker whose miner left is shown offline, not dropped:\n{dom}"
    );
    assert!(dom.contains(">offline<"), "{dom}");
    assert!(chart_points(&dom, "proxy") >= 5, "{dom}");
    assert!(chart_points(&dom, &pool.addr().to_string()) >= 5, "{dom}");
    assert!(
        dom.contains(&format!("data-pool=\"{}\"", pool.addr())),
        "the pool's row:\n{dom}"
    );
    assert!(
        dom.contains("Low difficulty share"),
        "recent errors:\n{dom}"
    );
    // One family: no family table, column or second chart.
    assert!(dom.contains("id=\"families\" hidden"), "{dom}");
    assert!(!dom.contains("data-protocol="), "{dom}");
    assert!(!dom.contains("class=\"family-col\">"), "{dom}");

    // The screenshot.
    let dir = work_dir("shot");
    let png = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&png);
    run_chromium(
        &url,
        &[
            "--virtual-time-budget=8000".into(),
            "--window-size=1280,900".into(),
            format!("--screenshot={}", png.display()),
        ],
        &dir,
    )
    .await;
    let bytes = std::fs::read(&png).expect("chromium wrote the screenshot");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(
        bytes.len() > 20_000,
        "{} bytes: a page, not a blank",
        bytes.len()
    );
    eprintln!("screenshot: {} ({})", png.display(), browser.display());

    api.stop().await;
    drop((a, c));
    proxy.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_each_familys_figures_for_a_two_family_proxy() {
    chromium();
    // A CryptoNote bind and pool (the top-level family) and a Stratum V1 bind and pool.
    let (cn_pool, sv1_pool, proxy) = start_two_families().await;
    let monitor = proxy.monitor();

    let api = Api::serve(&monitor).await;
    let addr = api.addr;

    let (cn, report) = shares_of_both_families(&proxy).await;
    assert_eq!(report.accepted(), SV1_SHARES, "{report:?}");
    // That miner has left; another SV1 miner stays connected, idle.
    let idle = idle_sv1_miner(&proxy).await;
    let sv1 = monitor.family(Protocol::StratumV1).unwrap();
    until(&monitor, |m| {
        m.stats().accepted == 2
            && sv1.stats().accepted == SV1_SHARES as u64
            && sv1.stats().miners == 1
            && sv1.upstreams().active == 1
    })
    .await;

    // The history has a line per family with the shares in it.
    let client = reqwest::Client::new();
    let mut h = serde_json::Value::Null;
    for _ in 0..100 {
        h = client
            .get(format!("http://{addr}/1/history"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let sum = |fam: &str| -> f64 {
            h["protocols"][fam]
                .as_array()
                .map_or(0.0, |pts| pts.iter().map(|p| p[1].as_f64().unwrap()).sum())
        };
        if h["proxy"].as_array().unwrap().len() >= 3
            && sum("cryptonote") > 0.0
            && sum("stratum-v1") > 0.0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        h["protocols"]["cryptonote"], h["proxy"],
        "the proxy line is the top-level family's: {h}"
    );

    let url = format!("http://{addr}/");
    let dom = dump_dom(&url, &work_dir("families-dom")).await;
    assert!(dom.contains("data-state=\"ready\""), "{dom}");
    // The cards are the top-level family's, and say so.
    assert_eq!(text_of(&dom, "accepted"), "2");
    assert_eq!(text_of(&dom, "miners-now"), "1");
    assert!(text_of(&dom, "cards-note").contains("cryptonote"), "{dom}");
    // A row of figures per family.
    assert!(!dom.contains("id=\"families\" hidden"), "{dom}");
    assert_eq!(text_of(&dom, "family-cryptonote-accepted"), "2");
    assert_eq!(
        text_of(&dom, "family-stratum-v1-accepted"),
        SV1_SHARES.to_string()
    );
    assert_eq!(text_of(&dom, "family-stratum-v1-rejected"), "0");
    assert_eq!(text_of(&dom, "family-stratum-v1-miners"), "1 (peak 1)");
    assert_eq!(text_of(&dom, "family-stratum-v1-workers"), "2");
    assert_eq!(text_of(&dom, "family-stratum-v1-upstreams"), "1 / 1");
    assert_eq!(text_of(&dom, "family-cryptonote-upstreams"), "1 / 1");
    let sv1_rate = text_of(&dom, "family-stratum-v1-hr-600");
    assert!(
        sv1_rate.ends_with("H/s") && sv1_rate != "0.00 H/s",
        "{sv1_rate}"
    );
    // The family columns, in the pools and workers tables.
    assert!(
        dom.contains("<th class=\"family-col\">family</th>"),
        "{dom}"
    );
    let sv1_pool_row = row_with(&dom, &format!("data-pool=\"{}\"", sv1_pool.addr()));
    assert!(sv1_pool_row.contains(">stratum-v1<"), "{sv1_pool_row}");
    let cn_pool_row = row_with(&dom, &format!("data-pool=\"{}\"", cn_pool.addr()));
    assert!(cn_pool_row.contains(">cryptonote<"), "{cn_pool_row}");
    assert!(row_with(&dom, "data-worker=\"bc1qminer.sv1-rig\"").contains(">stratum-v1<"));
    assert!(row_with(&dom, "data-worker=\"cn-rig\"").contains(">cryptonote<"));
    // A chart per family, each with its family's line and its own pool's.
    assert!(dom.contains("data-protocol=\"cryptonote\""), "{dom}");
    assert!(dom.contains("data-protocol=\"stratum-v1\""), "{dom}");
    assert!(chart_points(&dom, "cryptonote") >= 3, "{dom}");
    assert!(chart_points(&dom, "stratum-v1") >= 3, "{dom}");
    let sv1_chart = &dom[dom.find("data-protocol=\"stratum-v1\"").unwrap()..];
    assert!(
        sv1_chart.contains(&format!("data-name=\"{}\"", sv1_pool.addr())),
        "the SV1 pool's line is in the SV1 chart:\n{dom}"
    );
    assert!(!dom.contains("data-name=\"proxy\""), "{dom}");

    let png = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-families.png");
    let _ = std::fs::remove_file(&png);
    run_chromium(
        &url,
        &[
            "--virtual-time-budget=8000".into(),
            "--window-size=1280,1400".into(),
            format!("--screenshot={}", png.display()),
        ],
        &work_dir("families-shot"),
    )
    .await;
    let bytes = std::fs::read(&png).expect("chromium wrote the screenshot");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");

    api.stop().await;
    drop((cn, idle));
    proxy.shutdown(Duration::from_secs(1)).await;
}
