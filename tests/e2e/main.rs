//! End-to-end tests: the real `switchyard` binary on 127.0.0.1 in front of real in-process
//! backends, driven by real clients. One test binary; each module tells one story.

mod accesslog;
mod authz;
mod bad_input;
mod certreload;
mod common;
mod control;
mod control_load;
mod egress;
mod explain;
mod filters;
mod fleet;
mod hardening;
mod metrics;
mod mtls;
mod mtls_rotation;
mod protocols;
mod reload;
mod resilience;
mod rollout;
mod routing;
mod trace_context;
mod traffic;
mod upgrade;
mod zones;
