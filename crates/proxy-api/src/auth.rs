//! Access rules: `http.access-token` and `http.restricted`, read from the running config on
//! every request. Writes (any method but `GET`, `HEAD` and `OPTIONS`) need a token: an
//! unrestricted API without one serves reads only ([`proxy_core::config::HttpConfig::writable`]).

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::{error, Api};

/// The 403 message of a write to an API without a token.
pub(crate) const NO_TOKEN_NO_WRITES: &str = "writes need a token: set `http.access-token` \
     (and send `Authorization: Bearer <token>`); without one the API serves reads only";

/// Checks the token, then the restricted mode, then that a write has a token behind it,
/// then passes the request on.
pub(crate) async fn guard(State(api): State<Api>, req: Request, next: Next) -> Response {
    // The dashboard's files hold no data, and a browser cannot send a bearer header for a
    // page it navigates to: they are served to anyone; the page asks for the token.
    if matches!(*req.method(), Method::GET | Method::HEAD)
        && crate::dashboard::is_public(req.uri().path())
    {
        return next.run(req).await;
    }
    let config = api.monitor.config();
    let http = &config.http;
    let token = http.access_token();
    if let Some(token) = token {
        match req.headers().get(header::AUTHORIZATION) {
            None => {
                let mut r = error(StatusCode::UNAUTHORIZED, None);
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return r;
            }
            Some(v) if !bearer_matches(v.as_bytes(), token.as_bytes()) => {
                return error(StatusCode::FORBIDDEN, None);
            }
            Some(_) => {}
        }
    }
    if http.restricted {
        let read = matches!(*req.method(), Method::GET | Method::HEAD);
        if !read || req.uri().path().starts_with("/1/config") {
            return error(StatusCode::FORBIDDEN, None);
        }
    }
    let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if write && !http.writable() {
        return error(StatusCode::FORBIDDEN, Some(NO_TOKEN_NO_WRITES.into()));
    }
    drop(config);
    next.run(req).await
}

/// True when `value` is `Bearer <token>` (scheme in any case). The token is compared in time
/// independent of where it differs.
fn bearer_matches(value: &[u8], token: &[u8]) -> bool {
    const SCHEME: &[u8] = b"bearer ";
    if value.len() != SCHEME.len() + token.len()
        || !value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME)
    {
        return false;
    }
    value[SCHEME.len()..]
        .iter()
        .zip(token)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::bearer_matches;

    #[test]
    fn bearer_token_comparison() {
        assert!(bearer_matches(b"Bearer tok123", b"tok123"));
        assert!(bearer_matches(b"bearer tok123", b"tok123"));
        assert!(!bearer_matches(b"Bearer tok124", b"tok123"));
        assert!(!bearer_matches(b"Bearer tok1234", b"tok123"));
        assert!(!bearer_matches(b"Basic tok123", b"tok123"));
        assert!(!bearer_matches(b"tok123", b"tok123"));
    }
}
