//! The certificate part of the control API, both sides' shapes and the gateway's client:
//! `POST /v1/certs` (a CSR in, a certificate and the bundle out) and `GET /v1/bundle`, both
//! with the gateway token.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};

use super::PkiError;

pub const CERTS_PATH: &str = "/v1/certs";
pub const BUNDLE_PATH: &str = "/v1/bundle";
pub const ROTATE_PATH: &str = "/v1/ca/rotate";

/// `POST /v1/certs` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertRequest {
    /// PKCS#10 PEM; only its key and self-signature count.
    pub csr: String,
    pub zone: String,
    pub name: String,
}

/// `POST /v1/certs` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertResponse {
    /// The leaf (PEM chain; the root is in `bundle`).
    pub certificate: String,
    pub bundle: String,
    pub bundle_version: u64,
    /// RFC 3339.
    pub not_after: String,
    pub not_after_unix: u64,
    /// Lowercase hex.
    pub serial: String,
    pub spiffe_id: String,
    pub trust_domain: String,
}

/// `GET /v1/bundle` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BundleResponse {
    pub bundle: String,
    pub version: u64,
    pub trust_domain: String,
}

/// A gateway's client for the certificate endpoints.
pub struct CaClient {
    base: String,
    token: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl CaClient {
    pub fn new(base: &str, token: &str) -> CaClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        CaClient {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    fn error(&self, reason: impl Into<String>) -> PkiError {
        PkiError::Control {
            url: self.base.clone(),
            reason: reason.into(),
        }
    }

    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, PkiError> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            );
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| self.error(e.to_string()))?;
        let wait = Duration::from_secs(10);
        let resp = tokio::time::timeout(wait, self.client.request(req))
            .await
            .map_err(|_| self.error(format!("{path} timed out")))?
            .map_err(|e| self.error(format!("{path}: {e}")))?;
        let status = resp.status();
        let bytes = tokio::time::timeout(wait, resp.into_body().collect())
            .await
            .map_err(|_| self.error(format!("{path} body timed out")))?
            .map_err(|e| self.error(format!("{path} body: {e}")))?
            .to_bytes();
        if status != StatusCode::OK {
            let text = String::from_utf8_lossy(&bytes);
            return Err(self.error(format!("{path} answered {status}: {}", text.trim())));
        }
        serde_json::from_slice(&bytes).map_err(|e| self.error(format!("{path} answer: {e}")))
    }

    pub async fn issue(&self, req: &CertRequest) -> Result<CertResponse, PkiError> {
        let body = serde_json::to_vec(req).map_err(|e| self.error(e.to_string()))?;
        self.call(Method::POST, CERTS_PATH, Some(body)).await
    }

    pub async fn bundle(&self) -> Result<BundleResponse, PkiError> {
        self.call(Method::GET, BUNDLE_PATH, None).await
    }
}
