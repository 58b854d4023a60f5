//! Local rate limiting: one keyed GCRA limiter (the `governor` crate) per rule with a
//! TrafficPolicy `rateLimit`, with one bucket per client IP or header value. Limiters live in
//! a registry keyed by (route, rule, limit), so a reload that leaves the limit alone keeps
//! every bucket; the health thread trims idle buckets every few seconds.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota};
use http::HeaderMap;
use switchyard_config::{ObjRef, RateLimit, RateLimitKey};
use xxhash_rust::xxh3::xxh3_64;

/// The limiter of one rule. Keys are 64-bit hashes of the client IP or header value, so a
/// check allocates nothing.
#[derive(Debug)]
pub struct Limiter {
    limit: RateLimit,
    buckets: DefaultKeyedRateLimiter<u64>,
}

impl Limiter {
    fn new(limit: &RateLimit) -> Limiter {
        let per_token = (limit.per / limit.requests.max(1)).max(Duration::from_nanos(1));
        let burst = NonZeroU32::new(limit.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        // `per_token` is at least 1 ns, so `with_period` always succeeds.
        let quota = Quota::with_period(per_token)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Limiter {
            limit: limit.clone(),
            buckets: DefaultKeyedRateLimiter::dashmap(quota),
        }
    }

    /// Takes a token for this request's key; `Err` carries how long until one is available.
    pub fn check(&self, client: Option<IpAddr>, headers: &HeaderMap) -> Result<(), Duration> {
        let key = match &self.limit.key {
            RateLimitKey::ClientIp => match client {
                Some(IpAddr::V4(ip)) => xxh3_64(&ip.octets()),
                Some(IpAddr::V6(ip)) => xxh3_64(&ip.octets()),
                None => 0,
            },
            RateLimitKey::Header(name) => headers
                .get(name)
                .map(|v| xxh3_64(v.as_bytes()))
                .unwrap_or(0),
        };
        self.buckets
            .check_key(&key)
            .map_err(|not_until| not_until.wait_time_from(self.buckets.clock().now()))
    }

    /// Forgets buckets that are full again (their keys went quiet).
    fn trim(&self) {
        self.buckets.retain_recent();
        self.buckets.shrink_to_fit();
    }
}

type Key = (ObjRef, usize, RateLimit);

/// Limiters by (route, rule index, limit); outlives generations.
#[derive(Debug, Default)]
pub struct Limiters {
    map: Mutex<HashMap<Key, Arc<Limiter>>>,
}

impl Limiters {
    /// The limiter for a rule, made on first use. Locked only while a generation compiles.
    pub fn get(&self, route: &ObjRef, rule: usize, limit: &RateLimit) -> Arc<Limiter> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.entry((route.clone(), rule, limit.clone()))
            .or_insert_with(|| Arc::new(Limiter::new(limit)))
            .clone()
    }

    /// Drops limiters no generation uses and trims idle buckets of the rest.
    pub fn housekeeping(&self) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, l| Arc::strong_count(l) > 1);
        let live: Vec<Arc<Limiter>> = map.values().cloned().collect();
        drop(map);
        for l in live {
            l.trim();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refused_with_a_wait_and_keys_are_separate() {
        let limit = RateLimit {
            requests: 10,
            per: Duration::from_secs(1),
            burst: 3,
            key: RateLimitKey::ClientIp,
        };
        let reg = Limiters::default();
        let l = reg.get(&ObjRef::new("default", "r"), 0, &limit);
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        let h = HeaderMap::new();
        for _ in 0..3 {
            assert!(l.check(a, &h).is_ok());
        }
        let wait = l.check(a, &h).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        assert!(l.check(b, &h).is_ok(), "another client has its own bucket");
        // The same (route, rule, limit) gets the same limiter: buckets survive a reload.
        let again = reg.get(&ObjRef::new("default", "r"), 0, &limit);
        assert!(Arc::ptr_eq(&l, &again));
        assert!(again.check(a, &h).is_err());
    }
}
