//! End-to-end tests: the real `switchyard` binary on 127.0.0.1 in front of real in-process
//! backends, driven by real clients. One test binary; each module tells one story.

mod bad_input;
mod common;
mod control;
mod control_load;
mod filters;
mod fleet;
mod mtls;
mod mtls_rotation;
mod protocols;
mod reload;
mod resilience;
mod rollout;
mod routing;
mod traffic;
