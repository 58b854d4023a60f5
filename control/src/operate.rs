//! Operator commands against a running control service: `switchyard status` (exit 0 only when
//! every live gateway runs the published generation) and `switchyard rollback`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Sends one request to the control service and returns (status, body).
fn call(
    control: &str,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<(StatusCode, Bytes)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = format!("{}{path}", control.trim_end_matches('/'));
    rt.block_on(async {
        let client = Client::builder(TokioExecutor::new()).build_http();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = Request::builder()
            .method(method)
            .uri(&url)
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .with_context(|| format!("bad control URL {url}"))?;
        let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
            .await
            .with_context(|| format!("{url}: timed out"))?
            .with_context(|| format!("cannot reach the control service at {url}"))?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        if status == StatusCode::UNAUTHORIZED {
            bail!("{url}: 401 unauthorized (check the operator token: --token-file or SWITCHYARD_TOKEN)");
        }
        Ok((status, bytes))
    })
}

/// `switchyard status`: prints the fleet and returns whether it converged.
pub fn status(control: &str, token: &str, as_json: bool) -> Result<bool> {
    let (code, body) = call(control, token, Method::GET, "/v1/status", None)?;
    if code != StatusCode::OK {
        bail!(
            "/v1/status answered {code}: {}",
            String::from_utf8_lossy(&body).trim()
        );
    }
    let doc: Value = serde_json::from_slice(&body).context("status document")?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", render(&doc, SystemTime::now()));
    }
    Ok(doc["converged"].as_bool().unwrap_or(false))
}

/// `switchyard rollback`: returns the new generation number.
pub fn rollback(control: &str, token: &str, to: Option<u64>) -> Result<u64> {
    let body = match to {
        Some(n) => serde_json::json!({"to": n}),
        None => serde_json::json!({"previous": true}),
    };
    let (code, resp) = call(control, token, Method::POST, "/v1/rollback", Some(body))?;
    let text = String::from_utf8_lossy(&resp);
    if code != StatusCode::OK {
        bail!("rollback refused ({code}): {}", text.trim());
    }
    let v: Value = serde_json::from_str(&text).context("rollback answer")?;
    let generation = v["generation"].as_u64().unwrap_or(0);
    println!(
        "rolled back to generation {} as generation {generation}",
        v["rollback_of"]
    );
    Ok(generation)
}

fn ago(now: SystemTime, unix_ms: &Value) -> String {
    let Some(ms) = unix_ms.as_u64() else {
        return "never".into();
    };
    let then = UNIX_EPOCH + Duration::from_millis(ms);
    match now.duration_since(then) {
        Ok(d) if d.as_secs() >= 120 => format!("{} min ago", d.as_secs() / 60),
        Ok(d) if d.as_millis() >= 1000 => format!("{:.1} s ago", d.as_secs_f64()),
        Ok(d) => format!("{} ms ago", d.as_millis()),
        Err(_) => "just now".into(),
    }
}

/// The human form of the status document.
pub fn render(doc: &Value, now: SystemTime) -> String {
    let mut out = String::new();
    let digest = doc["digest"].as_str().unwrap_or("-");
    let _ = writeln!(
        out,
        "generation {} (digest {}, published {}, atomic: {})",
        doc["generation"],
        &digest[..digest.len().min(12)],
        ago(now, &doc["published_at_unix_ms"]),
        doc["atomic"].as_str().unwrap_or("?")
    );
    if let Some(files) = doc["changed_files"].as_array().filter(|f| !f.is_empty()) {
        let names: Vec<&str> = files.iter().filter_map(Value::as_str).collect();
        let _ = writeln!(out, "changed files: {}", names.join(", "));
    }
    if let Some(r) = doc["rollback"].as_object() {
        let _ = writeln!(
            out,
            "ROLLBACK IN FORCE: generation {} republishes generation {} ({}); the next change to the route files supersedes it",
            doc["generation"],
            r["to"],
            ago(now, &r["at_unix_ms"])
        );
    }
    if let Some(r) = doc["last_rejection"].as_object() {
        let errors = r["errors"].as_array().cloned().unwrap_or_default();
        let _ = writeln!(
            out,
            "REJECTED: the last change to the route files ({}) was rejected with {} error(s); generation {} stays published:",
            ago(now, &r["at_unix_ms"]),
            errors.len(),
            doc["generation"]
        );
        for e in errors.iter().filter_map(Value::as_str) {
            let _ = writeln!(out, "  {e}");
        }
    }
    if let Some(a) = doc["last_abandoned"].as_object() {
        let _ = writeln!(
            out,
            "last abandoned commit: generation {} ({}): {}",
            a["generation"],
            ago(now, &a["at_unix_ms"]),
            a["reason"].as_str().unwrap_or("")
        );
    }
    if let Some(c) = doc["last_commit"].as_object() {
        let _ = writeln!(
            out,
            "last atomic commit: generation {} on {} gateway(s), flip skew {:.2} ms",
            c["generation"],
            c["gateways"],
            c["flip_skew_ms"].as_f64().unwrap_or(0.0)
        );
    }
    let mut zones: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for g in doc["gateways"].as_array().into_iter().flatten() {
        zones
            .entry(g["zone"].as_str().unwrap_or("?").to_string())
            .or_default()
            .push(g);
    }
    for (zone, gateways) in &zones {
        let _ = writeln!(out, "zone {zone}");
        for g in gateways {
            let propagation = g["propagation_ms"]
                .as_f64()
                .map(|ms| format!("{ms:.1} ms"))
                .unwrap_or_else(|| "-".into());
            let _ = writeln!(
                out,
                "  {:<16} {:<24} applied {:<6} {:<9} lag {:<4} acked {:<14} save->ack {}",
                g["name"].as_str().unwrap_or("?"),
                g["gateway"].as_str().unwrap_or("-"),
                g["applied"],
                g["state"].as_str().unwrap_or("?"),
                g["lag"],
                ago(now, &g["acked_at_unix_ms"]),
                propagation
            );
            if let Some(e) = g["last_error"].as_str() {
                let _ = writeln!(out, "    last error: {e}");
            }
        }
    }
    if zones.is_empty() {
        let _ = writeln!(out, "no gateway has connected");
    }
    let converged = doc["converged"].as_bool().unwrap_or(false);
    let _ = writeln!(
        out,
        "{}",
        if converged {
            "converged: every live gateway runs the published generation"
        } else {
            "NOT CONVERGED: some gateway does not run the published generation yet"
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_shows_rejections_rollbacks_and_each_gateway() {
        let now = SystemTime::now();
        let ms = now.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
        let doc = serde_json::json!({
            "generation": 9, "digest": "0123456789abcdef", "published_at_unix_ms": ms - 50,
            "atomic": "fleet", "converged": false, "changed_files": ["routes.yaml"],
            "rollback": {"to": 4, "at_unix_ms": ms},
            "last_rejection": {"at_unix_ms": ms, "errors": ["/etc/r/routes.yaml:12:9: HTTPRoute default/x spec.rules[0]: bad"]},
            "gateways": [
                {"name": "gw-a1", "zone": "zone-a", "gateway": "default/a", "applied": 9, "state": "converged", "lag": 0, "acked_at_unix_ms": ms, "propagation_ms": 12.5},
                {"name": "gw-b1", "zone": "zone-b", "gateway": "default/b", "applied": 8, "state": "nack", "lag": 1, "last_error": "ports changed"}
            ]
        });
        let text = render(&doc, now);
        assert!(
            text.contains("ROLLBACK IN FORCE: generation 9 republishes generation 4"),
            "{text}"
        );
        assert!(
            text.contains("  /etc/r/routes.yaml:12:9: HTTPRoute"),
            "{text}"
        );
        assert!(text.contains("zone zone-b\n  gw-b1"), "{text}");
        assert!(text.contains("last error: ports changed"), "{text}");
        assert!(text.contains("NOT CONVERGED"), "{text}");
    }
}
