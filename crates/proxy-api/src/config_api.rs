//! `GET /1/config` (the running config, secrets masked) and `PUT /1/config` (a new config,
//! applied live and written back to the config file).

use std::borrow::Cow;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use proxy_core::config::host_port;
use proxy_core::{Config, ConfigError};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::{error, Api};

/// What `GET /1/config` shows instead of a secret (pool passwords, `access-password`,
/// `http.access-token`); empty or unset secrets are shown as they are.
pub const SECRET_MASK: &str = "********";

fn mask(slot: Option<&mut Value>) {
    if let Some(v) = slot {
        if v.as_str().is_some_and(|s| !s.is_empty()) {
            *v = SECRET_MASK.into();
        }
    }
}

/// `config` as the JSON of `GET /1/config`: every key of the config, those this proxy does
/// not use included (so that a GET, edit, PUT round trip keeps them), with every secret
/// replaced by [`SECRET_MASK`].
pub fn masked_config(config: &Config) -> Value {
    let mut v = serde_json::to_value(config).unwrap_or(Value::Null);
    if let Some(obj) = v.as_object_mut() {
        for (k, extra) in &config.unknown_keys {
            obj.entry(k.clone()).or_insert_with(|| extra.clone());
        }
    }
    mask(v.get_mut("access-password"));
    mask(v.pointer_mut("/http/access-token"));
    if let Some(pools) = v.get_mut("pools").and_then(Value::as_array_mut) {
        for p in pools {
            mask(p.get_mut("pass"));
        }
    }
    v
}

fn is_mask(v: Option<&Value>) -> bool {
    v.and_then(Value::as_str) == Some(SECRET_MASK)
}

/// Puts the running secrets back where a PUT body carries [`SECRET_MASK`] (a body made from
/// `GET /1/config`). A masked pool password is taken from the running pool with the same
/// url. Returns whether anything was replaced.
fn restore_secrets(v: &mut Value, running: &Config) -> Result<bool, String> {
    let mut restored = false;
    if is_mask(v.get("access-password")) {
        v["access-password"] = running.access_password.clone().into();
        restored = true;
    }
    if let Some(slot) = v.pointer_mut("/http/access-token") {
        if is_mask(Some(slot)) {
            *slot = running.http.access_token.clone().into();
            restored = true;
        }
    }
    if let Some(pools) = v.get_mut("pools").and_then(Value::as_array_mut) {
        for (i, p) in pools.iter_mut().enumerate() {
            if !is_mask(p.get("pass")) {
                continue;
            }
            let url = p.get("url").and_then(Value::as_str).unwrap_or_default();
            let wanted = host_port(url);
            let Some(old) = running.pools.iter().find(|o| o.host_port() == wanted) else {
                return Err(format!(
                    "pools[{i}].pass is the mask {SECRET_MASK:?} but no running pool has url \
                     {url:?}: send the real password"
                ));
            };
            p["pass"] = old.pass.clone().into();
            restored = true;
        }
    }
    Ok(restored)
}

/// `GET /1/config`.
pub(crate) async fn get_config(State(api): State<Api>) -> Json<Value> {
    Json(masked_config(&api.monitor.config()))
}

/// `PUT /1/config`: 415 unless the body is `application/json`; 400 with the reason when it
/// is not a valid config; else the config is applied, written to the config file (when the
/// proxy runs from one) and the outcome returned.
pub(crate) async fn put_config(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, None);
    }
    let bad = |m: String| error(StatusCode::BAD_REQUEST, Some(m));
    let Ok(text) = std::str::from_utf8(&body) else {
        return bad("the body is not UTF-8".into());
    };
    let mut value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return bad(ConfigError::Parse(e).to_string()),
    };
    let text: Cow<'_, str> = match restore_secrets(&mut value, &api.monitor.config()) {
        Ok(false) => Cow::Borrowed(text),
        Ok(true) => Cow::Owned(format!("{value:#}\n")),
        Err(m) => return bad(m),
    };
    let config = match Config::from_json(&text) {
        Ok(c) => c,
        Err(e) => return bad(e.to_string()),
    };
    let outcome = match api.monitor.apply_config(config) {
        Ok(o) => o,
        Err(e) => return bad(e.to_string()),
    };
    let saved = match api.monitor.config_path() {
        None => None,
        Some(path) => match write_atomic(path, &text).await {
            Ok(()) => Some(path.display().to_string()),
            Err(e) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Some(format!(
                        "the config was applied but not saved to {}: {e}",
                        path.display()
                    )),
                )
            }
        },
    };
    Json(serde_json::json!({
        "changed": outcome.changed,
        "needs_restart": outcome.needs_restart,
        "saved": saved,
    }))
    .into_response()
}

/// Replaces the file at `path` (or the file a symlink there points to) with `text`, through
/// a temporary file in the same folder that gets the old file's permissions before any byte
/// is written, then a rename: a reader sees the old or the new file, never a part.
async fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let target = tokio::fs::canonicalize(path)
        .await
        .unwrap_or_else(|_| path.to_path_buf());
    let name = target
        .file_name()
        .map_or_else(|| "config".into(), |n| n.to_string_lossy().into_owned());
    let tmp = target.with_file_name(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Relaxed)
    ));
    let result = async {
        let mut f = tokio::fs::File::create(&tmp).await?;
        if let Ok(meta) = tokio::fs::metadata(&target).await {
            f.set_permissions(meta.permissions()).await?;
        }
        f.write_all(text.as_bytes()).await?;
        f.sync_all().await?;
        drop(f);
        tokio::fs::rename(&tmp, &target).await
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running() -> Config {
        Config::from_json(
            r#"{"bind":["127.0.0.1:0"],"access-password":"letmein",
                "http":{"access-token":"tok"},
                "pools":[{"url":"a:1","pass":"pa"},{"url":"stratum+tcp://b:2","pass":"pb"},
                         {"url":"c:3","pass":""}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn secrets_are_masked_and_empty_ones_shown() {
        let v = masked_config(&running());
        assert_eq!(v["access-password"], SECRET_MASK);
        assert_eq!(v["http"]["access-token"], SECRET_MASK);
        assert_eq!(v["pools"][0]["pass"], SECRET_MASK);
        assert_eq!(v["pools"][2]["pass"], "");
        assert_eq!(v["pools"][0]["url"], "a:1");
        let none = masked_config(&Config::default());
        assert_eq!(none["access-password"], Value::Null);
        assert_eq!(none["http"]["access-token"], Value::Null);
    }

    #[test]
    fn a_masked_body_gets_the_running_secrets_back() {
        let run = running();
        let mut v = masked_config(&run);
        // Reordered pools and a scheme prefix still find their passwords.
        let pools = v["pools"].as_array_mut().unwrap();
        pools.swap(0, 1);
        pools[1]["url"] = "stratum+tcp://a:1".into();
        assert_eq!(restore_secrets(&mut v, &run), Ok(true));
        let back = Config::from_json(&v.to_string()).unwrap();
        assert_eq!(back.access_password.as_deref(), Some("letmein"));
        assert_eq!(back.http.access_token.as_deref(), Some("tok"));
        assert_eq!(back.pools[0].pass, "pb");
        assert_eq!(back.pools[1].pass, "pa");
        // Nothing masked: nothing to do.
        let mut plain = serde_json::to_value(&run).unwrap();
        assert_eq!(restore_secrets(&mut plain, &run), Ok(false));
        // A masked password for a pool that is not running cannot be guessed.
        let mut v = masked_config(&run);
        v["pools"][0]["url"] = "new:9".into();
        let err = restore_secrets(&mut v, &run).unwrap_err();
        assert!(
            err.contains("pools[0].pass") && err.contains("new:9"),
            "{err}"
        );
    }
}
