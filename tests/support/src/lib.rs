//! Test support for Switchyard's end-to-end tests: echo backends, certificates, clients, gateway and control processes, config dirs and token files.
//!
//! Everything binds 127.0.0.1 only. The echo backend answers every request with 200 and a JSON
//! body `{"backend", "method", "path", "query", "host", "version", "headers", "body_len",
//! "connection", "tls"}`; `/status/{code}` answers that code, `/delay/{ms}` waits first and `/ws`
//! is a WebSocket echo. Async items need a tokio runtime (`#[tokio::test]`).

pub mod backend;
pub mod certs;
pub mod child;
pub mod client;
pub mod configdir;
pub mod control;
mod echo;
pub mod process;
pub mod tls;
pub mod ws_client;

#[cfg(test)]
mod tests;

pub use backend::{EchoBackend, RecordedRequest, TlsInfo};
pub use certs::{TestCa, TestCert};
pub use child::LoggedChild;
pub use client::{get, request, try_get, H1Conn, H2Conn, Response, TlsConn};
pub use configdir::ConfigDir;
pub use control::{ControlProcess, TokenFiles};
pub use process::{free_port, GatewayProcess};
pub use ws_client::{try_ws_echo, ws_echo};
