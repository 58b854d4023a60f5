//! The control service's Prometheus metrics: generations, rejections, NACKs, abandoned
//! commits, build time, propagation latency and the last commit's flip skew.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub generation: IntGauge,
    pub generations: IntCounter,
    pub rejections: IntCounter,
    pub nacks: IntCounterVec,
    pub abandoned: IntCounter,
    pub build_seconds: Histogram,
    pub propagation: HistogramVec,
    pub flip_skew: Gauge,
}

/// Latency buckets from 1 ms to 30 s.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let generation = IntGauge::new(
            "switchyard_control_generation",
            "The published generation number.",
        )?;
        let generations = IntCounter::new(
            "switchyard_control_generations_total",
            "Generations published since start (rollbacks included).",
        )?;
        let rejections = IntCounter::new(
            "switchyard_control_rejections_total",
            "Route-file sets rejected by validation.",
        )?;
        let nacks = IntCounterVec::new(
            Opts::new(
                "switchyard_control_nacks_total",
                "Generations a gateway refused to stage or apply.",
            ),
            &["zone"],
        )?;
        let abandoned = IntCounter::new(
            "switchyard_control_commits_abandoned_total",
            "Fleet- or zone-atomic commits abandoned (a NACK or a stage timeout).",
        )?;
        let build_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "switchyard_control_build_seconds",
                "Time to validate the route files and cut the views.",
            )
            .buckets(BUCKETS.to_vec()),
        )?;
        let propagation = HistogramVec::new(
            HistogramOpts::new(
                "switchyard_control_propagation_seconds",
                "From the newest changed file's save to a gateway's ack of the generation.",
            )
            .buckets(BUCKETS.to_vec()),
            &["zone"],
        )?;
        let flip_skew = Gauge::new(
            "switchyard_control_flip_skew_seconds",
            "Spread of the gateways' swap times in the last atomic commit.",
        )?;
        registry.register(Box::new(generation.clone()))?;
        registry.register(Box::new(generations.clone()))?;
        registry.register(Box::new(rejections.clone()))?;
        registry.register(Box::new(nacks.clone()))?;
        registry.register(Box::new(abandoned.clone()))?;
        registry.register(Box::new(build_seconds.clone()))?;
        registry.register(Box::new(propagation.clone()))?;
        registry.register(Box::new(flip_skew.clone()))?;
        Ok(Metrics {
            registry,
            generation,
            generations,
            rejections,
            nacks,
            abandoned,
            build_seconds,
            propagation,
            flip_skew,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Encoding into a Vec only fails on metric families that do not validate, which the
        // constructors above rule out.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}
