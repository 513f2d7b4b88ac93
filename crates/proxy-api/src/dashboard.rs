//! The dashboard page, served at `/` with its stylesheet and script: static files embedded in
//! the binary (no CDN: the proxy's host may have no internet), written for this proxy.
//!
//! The files hold no data and are served without the token (a browser sends no bearer
//! header when it navigates to a page); the script reads the JSON API (`/1/summary`,
//! `/1/workers`, `/1/history`, `/1/upstreams`, `/1/events`) every 10 s, asks for the token
//! when the API answers 401 or 403, and sends it as `Authorization: Bearer`. It also takes
//! the token from the URL's fragment (`/#token=...`, which the browser never sends to the
//! server). Strings from the API are set as text, never parsed as HTML, and the
//! `Content-Security-Policy` allows scripts, styles and requests to this origin only.
//!
//! When `/1/summary` has `protocols` (the proxy serves CryptoNote and Stratum V1), the page
//! adds a row of figures per family, a family column in the pools and workers tables, and a
//! chart per family from `/1/history`'s `protocols`; a CryptoNote-only proxy's page is as
//! before.

use axum::http::{header, HeaderName, HeaderValue};
use axum::response::IntoResponse;

/// Path of the stylesheet.
pub(crate) const CSS_PATH: &str = "/dashboard.css";
/// Path of the script.
pub(crate) const JS_PATH: &str = "/dashboard.js";

/// The page.
pub(crate) const INDEX_HTML: &str = include_str!("../assets/index.html");
/// Its stylesheet.
pub(crate) const DASHBOARD_CSS: &str = include_str!("../assets/dashboard.css");
/// Its script.
pub(crate) const DASHBOARD_JS: &str = include_str!("../assets/dashboard.js");

/// The `Content-Security-Policy` of the dashboard's files.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// True for the paths of the dashboard's files, which are served without the token.
pub(crate) fn is_public(path: &str) -> bool {
    matches!(path, "/" | CSS_PATH | JS_PATH)
}

fn file(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    let headers: [(HeaderName, HeaderValue); 5] = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ];
    (headers, body)
}

pub(crate) async fn index() -> impl IntoResponse {
    file("text/html; charset=utf-8", INDEX_HTML)
}

pub(crate) async fn css() -> impl IntoResponse {
    file("text/css; charset=utf-8", DASHBOARD_CSS)
}

pub(crate) async fn js() -> impl IntoResponse {
    file("text/javascript; charset=utf-8", DASHBOARD_JS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_files() {
        assert!(INDEX_HTML.contains(r#"href="/dashboard.css""#));
        assert!(INDEX_HTML.contains(r#"src="/dashboard.js""#));
        for text in [INDEX_HTML, DASHBOARD_CSS, DASHBOARD_JS] {
            assert!(!text.contains("https://"), "no CDN");
            assert!(!text.contains("src=\"http") && !text.contains("href=\"http"));
        }
        assert!(
            !DASHBOARD_JS.contains("innerHTML"),
            "API strings go in as text"
        );
        assert!(is_public("/") && is_public(JS_PATH) && !is_public("/1/summary"));
    }
}
