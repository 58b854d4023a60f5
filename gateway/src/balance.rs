//! Endpoint selection within one backend: weighted round robin, weighted random, least request
//! (power of two choices over in-flight counts) and a consistent-hash ring on a request key.
//!
//! Endpoints out of rotation (ejected by outlier detection or failing active health checks)
//! are skipped: the algorithm's choice stands when available, else the next available endpoint
//! in a fixed order after it (so a ring-hash key still lands on one stable fallback). When the
//! available share falls below the backend's panic threshold, health is ignored and every
//! endpoint takes traffic again. While all endpoints are in rotation this costs one atomic load.

use std::net::SocketAddr;
use std::sync::Arc;

use switchyard_config::{Endpoint, LbAlgorithm};
use xxhash_rust::xxh3::xxh3_64;

use crate::resilience::clock::now_ms;
use crate::state::{BackendState, EndpointState};

/// Virtual nodes per unit of weight on the hash ring.
const RING_POINTS_PER_WEIGHT: u32 = 64;
/// Bound on the expanded round-robin schedule (weights are reduced by their gcd first).
const MAX_SCHEDULE: usize = 64 * 1024;

/// One endpoint as the balancer sees it.
#[derive(Debug)]
pub struct EndpointSlot {
    pub address: SocketAddr,
    pub zone: Option<String>,
    pub weight: u32,
    pub state: Arc<EndpointState>,
}

#[derive(Debug)]
enum Strategy {
    RoundRobin { schedule: Vec<u32> },
    Random { cumulative: Vec<u64>, total: u64 },
    LeastRequest,
    RingHash { ring: Vec<(u64, u32)> },
}

/// A compiled balancer: immutable per generation, its counters live in [`BackendState`] and
/// [`EndpointState`].
#[derive(Debug)]
pub struct Balancer {
    pub endpoints: Vec<EndpointSlot>,
    /// Indexes of endpoints with a weight above zero.
    eligible: Vec<u32>,
    strategy: Strategy,
    state: Arc<BackendState>,
    /// Percent of available endpoints under which health is ignored (0: never).
    panic_threshold: u32,
}

/// Why no endpoint was picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoPick {
    /// The backend has no endpoint with weight.
    Empty,
    /// Every endpoint is ejected or unhealthy and the panic threshold is 0.
    NoneHealthy,
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl Balancer {
    pub fn new(
        algorithm: &LbAlgorithm,
        endpoints: Vec<EndpointSlot>,
        state: Arc<BackendState>,
        panic_threshold: u32,
    ) -> Self {
        let eligible: Vec<u32> = (0..endpoints.len() as u32)
            .filter(|&i| endpoints[i as usize].weight > 0)
            .collect();
        let strategy = match algorithm {
            LbAlgorithm::RoundRobin => Strategy::RoundRobin {
                schedule: round_robin_schedule(&endpoints, &eligible),
            },
            LbAlgorithm::Random => {
                let mut total = 0u64;
                let cumulative = eligible
                    .iter()
                    .map(|&i| {
                        total += u64::from(endpoints[i as usize].weight);
                        total
                    })
                    .collect();
                Strategy::Random { cumulative, total }
            }
            LbAlgorithm::LeastRequest => Strategy::LeastRequest,
            LbAlgorithm::RingHash { .. } => Strategy::RingHash {
                ring: hash_ring(&endpoints, &eligible),
            },
        };
        Balancer {
            endpoints,
            eligible,
            strategy,
            state,
            panic_threshold,
        }
    }

    /// The backend's long-lived state.
    pub fn state(&self) -> &Arc<BackendState> {
        &self.state
    }

    pub fn is_empty(&self) -> bool {
        self.eligible.is_empty()
    }

    /// Picks an endpoint among those in rotation (see the module docs). `key` is the request's
    /// hash key (ring hash only; without one the pick is random). `avoid` is an endpoint to
    /// skip when another exists (a retry). An endpoint whose ejection just ended is returned
    /// as its half-open trial.
    pub fn pick_available(
        &self,
        key: Option<&[u8]>,
        avoid: Option<usize>,
    ) -> Result<usize, NoPick> {
        self.pick_in_rotation(key, avoid, true)
    }

    /// Endpoints in rotation now and endpoints with weight: `(available, eligible)`.
    pub fn availability(&self) -> (usize, usize) {
        let n = self.eligible.len();
        if !self.state.outlier.is_degraded() {
            return (n, n);
        }
        let now = now_ms();
        let available = self
            .eligible
            .iter()
            .filter(|&&i| self.endpoints[i as usize].state.may_serve(now))
            .count();
        (available, n)
    }

    /// [`pick_available`](Self::pick_available), with the panic threshold applied only when
    /// `panic` is set; without it, a backend with no endpoint in rotation gives `NoneHealthy`
    /// (the caller has somewhere else to go: another zone).
    pub fn pick_in_rotation(
        &self,
        key: Option<&[u8]>,
        avoid: Option<usize>,
        panic: bool,
    ) -> Result<usize, NoPick> {
        let Some(chosen) = self.pick(key, avoid) else {
            return Err(NoPick::Empty);
        };
        if !self.state.outlier.is_degraded() {
            return Ok(chosen);
        }
        let now = now_ms();
        let n = self.eligible.len();
        let available = self
            .eligible
            .iter()
            .filter(|&&i| self.endpoints[i as usize].state.may_serve(now))
            .count();
        if panic && (available as u64) * 100 < u64::from(self.panic_threshold) * n as u64 {
            // Panic: too few endpoints left to carry the load; use them all.
            return Ok(chosen);
        }
        if available == 0 {
            return Err(NoPick::NoneHealthy);
        }
        let skip_avoid = available > 1;
        let usable =
            |i: usize| !(skip_avoid && Some(i) == avoid) && self.endpoints[i].state.admit(now);
        // Draw again so the load of the missing endpoints spreads over the rest; a keyed ring
        // hash instead walks on from its choice, so the key keeps one stable fallback.
        let redraw = !(matches!(self.strategy, Strategy::RingHash { .. }) && key.is_some());
        if usable(chosen) {
            return Ok(chosen);
        }
        if redraw {
            for _ in 0..2 * n {
                if let Some(i) = self.pick(key, None) {
                    if usable(i) {
                        return Ok(i);
                    }
                }
            }
        }
        let start = self
            .eligible
            .iter()
            .position(|&i| i as usize == chosen)
            .unwrap_or(0);
        for k in 1..=n {
            let i = self.eligible[(start + k) % n] as usize;
            if usable(i) {
                return Ok(i);
            }
        }
        // The one available endpoint was `avoid`, or its trial was just claimed elsewhere.
        match avoid {
            Some(a) if self.endpoints[a].state.admit(now) => Ok(a),
            _ => Err(NoPick::NoneHealthy),
        }
    }

    /// The algorithm's pick, ignoring health.
    pub fn pick(&self, key: Option<&[u8]>, avoid: Option<usize>) -> Option<usize> {
        if self.eligible.is_empty() {
            return None;
        }
        let n = self.eligible.len();
        let chosen = match &self.strategy {
            Strategy::RoundRobin { schedule } => {
                schedule[self.state.next() % schedule.len()] as usize
            }
            Strategy::Random { cumulative, total } => self.weighted_random(cumulative, *total),
            Strategy::LeastRequest => self.least_request(),
            Strategy::RingHash { ring } => match key {
                Some(k) => ring_lookup(ring, xxh3_64(k)),
                None => self.eligible[fastrand::usize(..n)] as usize,
            },
        };
        match avoid {
            Some(a) if a == chosen && n > 1 => {
                let pos = self
                    .eligible
                    .iter()
                    .position(|&i| i as usize == chosen)
                    .unwrap_or(0);
                Some(self.eligible[(pos + 1) % n] as usize)
            }
            _ => Some(chosen),
        }
    }

    fn weighted_random(&self, cumulative: &[u64], total: u64) -> usize {
        let draw = fastrand::u64(..total.max(1));
        let pos = cumulative.partition_point(|&c| c <= draw);
        self.eligible[pos.min(self.eligible.len() - 1)] as usize
    }

    /// Power of two choices: two distinct random endpoints, the one with fewer in-flight
    /// requests per unit of weight wins.
    fn least_request(&self) -> usize {
        let n = self.eligible.len();
        if n == 1 {
            return self.eligible[0] as usize;
        }
        let a = fastrand::usize(..n);
        let mut b = fastrand::usize(..n - 1);
        if b >= a {
            b += 1;
        }
        let (ia, ib) = (self.eligible[a] as usize, self.eligible[b] as usize);
        let (ea, eb) = (&self.endpoints[ia], &self.endpoints[ib]);
        // (in_flight_a + 1) / weight_a <= (in_flight_b + 1) / weight_b, cross-multiplied.
        let cost_a = (ea.state.in_flight() + 1) * u64::from(eb.weight);
        let cost_b = (eb.state.in_flight() + 1) * u64::from(ea.weight);
        if cost_a <= cost_b {
            ia
        } else {
            ib
        }
    }
}

fn round_robin_schedule(endpoints: &[EndpointSlot], eligible: &[u32]) -> Vec<u32> {
    let g = eligible
        .iter()
        .fold(0, |g, &i| gcd(g, endpoints[i as usize].weight))
        .max(1);
    let total: usize = eligible
        .iter()
        .map(|&i| (endpoints[i as usize].weight / g) as usize)
        .sum();
    if total > MAX_SCHEDULE {
        // Weights too fine-grained to expand: fall back to one slot each.
        return eligible.to_vec();
    }
    // Interleave: each round hands one slot to every endpoint that still has weight left,
    // so heavy endpoints are spread out rather than served in a burst.
    let mut left: Vec<u32> = eligible
        .iter()
        .map(|&i| endpoints[i as usize].weight / g)
        .collect();
    let mut schedule = Vec::with_capacity(total);
    while schedule.len() < total {
        for (slot, &i) in eligible.iter().enumerate() {
            if left[slot] > 0 {
                left[slot] -= 1;
                schedule.push(i);
            }
        }
    }
    schedule
}

fn hash_ring(endpoints: &[EndpointSlot], eligible: &[u32]) -> Vec<(u64, u32)> {
    let mut ring = Vec::new();
    for &i in eligible {
        let e = &endpoints[i as usize];
        let points = e.weight.min(1000) * RING_POINTS_PER_WEIGHT;
        for p in 0..points {
            let label = format!("{}-{p}", e.address);
            ring.push((xxh3_64(label.as_bytes()), i));
        }
    }
    ring.sort_unstable();
    ring
}

fn ring_lookup(ring: &[(u64, u32)], hash: u64) -> usize {
    let pos = ring.partition_point(|&(h, _)| h < hash);
    ring[pos % ring.len()].1 as usize
}

/// Builds the slots for a backend's endpoints, taking state handles from `state_for`.
pub fn slots(
    endpoints: &[Endpoint],
    mut state_for: impl FnMut(SocketAddr) -> Arc<EndpointState>,
) -> Vec<EndpointSlot> {
    endpoints
        .iter()
        .map(|e| EndpointSlot {
            address: e.address,
            zone: e.zone.clone(),
            weight: e.weight,
            state: state_for(e.address),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::InFlight;
    use switchyard_config::HashKey;

    fn balancer(algorithm: LbAlgorithm, weights: &[u32]) -> Balancer {
        let eps: Vec<Endpoint> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Endpoint {
                address: format!("127.0.0.1:{}", 9000 + i).parse().unwrap(),
                zone: None,
                weight: w,
            })
            .collect();
        Balancer::new(
            &algorithm,
            slots(&eps, |_| Arc::default()),
            Arc::default(),
            50,
        )
    }

    fn histogram(b: &Balancer, n: usize, key: impl Fn(usize) -> Option<Vec<u8>>) -> Vec<usize> {
        let mut h = vec![0; b.endpoints.len()];
        for i in 0..n {
            h[b.pick(key(i).as_deref(), None).unwrap()] += 1;
        }
        h
    }

    #[test]
    fn round_robin_follows_weights_exactly() {
        let b = balancer(LbAlgorithm::RoundRobin, &[3, 1, 0]);
        assert_eq!(histogram(&b, 400, |_| None), vec![300, 100, 0]);
    }

    #[test]
    fn random_follows_weights_roughly() {
        let b = balancer(LbAlgorithm::Random, &[9, 1]);
        let h = histogram(&b, 20_000, |_| None);
        let share = h[0] as f64 / 20_000.0;
        assert!((0.88..0.92).contains(&share), "share {share}");
    }

    #[test]
    fn least_request_avoids_busy_endpoint() {
        let b = balancer(LbAlgorithm::LeastRequest, &[1, 1]);
        let _busy: Vec<InFlight> = (0..10)
            .map(|_| InFlight::start(&b.endpoints[0].state))
            .collect();
        assert_eq!(histogram(&b, 100, |_| None), vec![0, 100]);
    }

    #[test]
    fn ring_hash_is_sticky_and_spreads() {
        let algo = LbAlgorithm::RingHash {
            key: HashKey::Header(http::HeaderName::from_static("x-user")),
        };
        let b = balancer(algo, &[1, 1, 1]);
        let first: Vec<usize> = (0..300)
            .map(|i| b.pick(Some(format!("user-{i}").as_bytes()), None).unwrap())
            .collect();
        let again: Vec<usize> = (0..300)
            .map(|i| b.pick(Some(format!("user-{i}").as_bytes()), None).unwrap())
            .collect();
        assert_eq!(first, again);
        for e in 0..3 {
            let c = first.iter().filter(|&&x| x == e).count();
            assert!(c > 50, "endpoint {e} got {c} of 300");
        }
    }

    #[test]
    fn unavailable_endpoints_are_skipped_until_the_panic_threshold() {
        use std::sync::atomic::Ordering;
        let b = balancer(LbAlgorithm::RoundRobin, &[1, 1, 1, 1]);
        let down = |i: usize| {
            b.endpoints[i].state.healthy.store(false, Ordering::Relaxed);
            b.state.outlier.mark_degraded();
        };
        down(0);
        let mut h = [0; 4];
        for _ in 0..300 {
            h[b.pick_available(None, None).unwrap()] += 1;
        }
        assert_eq!(h[0], 0, "an unhealthy endpoint gets no traffic: {h:?}");
        assert!(h[1..].iter().all(|&c| c >= 90), "{h:?}");
        // Retries still avoid the previous endpoint.
        assert_ne!(b.pick_available(None, Some(1)).unwrap(), 1);
        // 1 of 4 available is under the 50% panic threshold: everything takes traffic again.
        down(1);
        down(2);
        let mut h = [0; 4];
        for _ in 0..400 {
            h[b.pick_available(None, None).unwrap()] += 1;
        }
        assert!(
            h.iter().all(|&c| c == 100),
            "panic mode spreads over all: {h:?}"
        );
        // Threshold 0: never panic; with none available the pick fails.
        let strict = Balancer::new(
            &LbAlgorithm::RoundRobin,
            slots(
                &[Endpoint {
                    address: "127.0.0.1:1".parse().unwrap(),
                    zone: None,
                    weight: 1,
                }],
                |_| Arc::default(),
            ),
            Arc::default(),
            0,
        );
        strict.endpoints[0]
            .state
            .healthy
            .store(false, Ordering::Relaxed);
        strict.state.outlier.mark_degraded();
        assert_eq!(strict.pick_available(None, None), Err(NoPick::NoneHealthy));
    }

    #[test]
    fn avoid_moves_to_another_endpoint_and_empty_gives_none() {
        let b = balancer(LbAlgorithm::RoundRobin, &[1, 1]);
        for _ in 0..10 {
            assert_eq!(b.pick(None, Some(0)), Some(1));
        }
        let single = balancer(LbAlgorithm::RoundRobin, &[1]);
        assert_eq!(single.pick(None, Some(0)), Some(0));
        let none = balancer(LbAlgorithm::RoundRobin, &[0]);
        assert!(none.is_empty());
        assert_eq!(none.pick(None, None), None);
    }
}
