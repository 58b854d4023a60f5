//! Resilience: what protects backends from overload and failing endpoints, and what shapes
//! traffic per rule. Every piece of state here is long-lived, keyed by backend and endpoint
//! (through [`crate::state::StateRegistry`]) or by rule and limit ([`ratelimit::Limiters`]),
//! so config reloads never reset it.
//!
//! - [`breaker`]: circuit-breaker limits per backend, refused at once with 503.
//! - [`outlier`]: passive health per endpoint: ejection, growing ejection times, half-open.
//! - [`health`]: active HTTP/TCP health checks on a thread of their own.
//! - [`budget`]: the per-backend retry budget.
//! - [`ratelimit`]: keyed token buckets per rule.
//! - [`cohort`]: the weighted backend choice with pinned and sticky canary cohorts.
//! - [`clock`]: the millisecond clock the atomics use.

pub mod breaker;
pub mod budget;
pub mod clock;
pub mod cohort;
pub mod health;
pub mod outlier;
pub mod ratelimit;

pub use crate::state::BackendState;
