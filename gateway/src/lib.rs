//! Switchyard's data plane on Pingora.
//!
//! Start at [`server::serve`]: it loads the route files, compiles the first generation into a
//! [`runtime::Runtime`], binds the listeners and runs [`proxy::Gateway`], the request pipeline.
//! [`live::LiveConfig`] holds the generation in force behind one atomic pointer; the watcher in
//! [`watch`] swaps in each new valid generation. Per-endpoint state lives in [`state`] and
//! survives every swap.

pub mod accesslog;
pub mod admin;
pub mod attempt;
pub mod authz;
pub mod balance;
pub mod certwatch;
pub mod decide;
pub mod eastwest;
pub mod egress;
pub mod explain;
pub mod filters;
pub mod identity;
pub mod lifecycle;
pub mod live;
pub mod locality;
pub mod metrics;
pub mod mirror;
pub mod observe;
pub mod persist;
pub mod pki;
pub mod protocol;
pub mod proxy;
pub mod request;
pub mod resilience;
pub mod respond;
pub mod runtime;
pub mod sanitize;
pub mod server;
pub mod source;
pub mod state;
pub mod subscribe;
pub mod tls;
pub mod trace;
pub mod upstream;
pub mod watch;

pub use server::{serve, ConfigSource, GatewayOptions, ServeError, UpgradeOptions};
pub use subscribe::SubscribeOptions;
