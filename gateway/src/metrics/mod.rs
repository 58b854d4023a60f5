//! Prometheus metrics of the gateway. [`catalogue`] names every series and its labels.

pub mod catalogue;
