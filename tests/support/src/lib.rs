//! Test support for Switchyard's end-to-end tests: echo and faulty backends, certificates, clients, a load driver, gateway and control processes, config dirs and token files.
//!
//! Everything binds 127.0.0.1 only. The echo backend answers every request with 200 and a JSON
//! body `{"backend", "method", "path", "query", "host", "version", "headers", "body_len",
//! "connection", "tls"}`; `/status/{code}` answers that code, `/delay/{ms}` waits first and `/ws`
//! is a WebSocket echo. Async items need a tokio runtime (`#[tokio::test]`).
//!
//! For resilience tests, [`FaultyBackend`] answers per a [`Mode`] switched at runtime (200,
//! a status, TCP reset, hang, truncated body; a separate mode for `/healthz`) and can be killed
//! and restarted on the same port. [`run_load`] and [`spawn_load`] drive bounded closed-loop or
//! paced HTTP/1.1 load from a [`LoadSpec`] and count statuses, errors, header values and a
//! timeline in a [`LoadReport`].

pub mod backend;
pub mod certs;
pub mod child;
pub mod client;
pub mod configdir;
pub mod control;
mod echo;
pub mod egress;
pub mod faulty;
pub mod load;
pub mod mtls;
pub mod process;
pub mod tls;
pub mod ws_client;

#[cfg(test)]
mod resilience_tests;
#[cfg(test)]
mod tests;

pub use backend::{EchoBackend, RecordedRequest, TlsInfo};
pub use certs::{TestCa, TestCert};
pub use child::LoggedChild;
pub use client::{get, request, try_get, H1Conn, H2Conn, Response, TlsConn};
pub use configdir::ConfigDir;
pub use control::{ControlProcess, TokenFiles};
pub use faulty::{FaultyBackend, Mode};
pub use load::{run_load, spawn_load, LoadHandle, LoadReport, LoadSpec, TimelineEntry};
pub use mtls::{mtls_config, mtls_get, mtls_get_with, plaintext_get, MtlsFailure, MtlsReply};
pub use process::{free_port, GatewayProcess};
pub use ws_client::{try_ws_echo, ws_echo};
