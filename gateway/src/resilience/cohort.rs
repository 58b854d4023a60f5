//! Choosing a rule's backend: the weighted split, plus canary cohorts. A pinned cohort (a
//! header or cookie naming one of the rule's backends) goes there whatever the weights. A
//! sticky cohort keeps its backend as weights ramp: by a cookie the gateway sets naming the
//! backend it drew, or by weighted rendezvous hashing of a header keyed by backend name, so
//! raising a backend's weight only moves clients to it and lowering it only moves its own
//! clients away.

use http::HeaderMap;
use switchyard_config::{Cohort, CohortSource, Rule, Sticky};
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The backend chosen for a request, why, and the cookie to set when a sticky cookie was
/// drawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub index: usize,
    pub why: Why,
    pub set_cookie: Option<String>,
}

/// Why a backend was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// A weighted draw: `draw` in `0..rule.total_weight` fell in this backend's share.
    Weighted { draw: u32 },
    /// The cohort pin (header or cookie) named this backend.
    Pinned,
    /// The sticky cookie named this backend, which still has weight.
    StickyCookie,
    /// Rendezvous hashing of the sticky header's value.
    StickyHash,
}

/// Picks the index of one of `rule.backends`; `None` when no backend takes traffic. Draws
/// come from `rng`.
pub fn choose(
    rule: &Rule,
    cohort: Option<&Cohort>,
    headers: &HeaderMap,
    rng: &mut fastrand::Rng,
) -> Option<Choice> {
    let plain = |index, why| Choice {
        index,
        why,
        set_cookie: None,
    };
    let weighted = |rng: &mut fastrand::Rng| {
        pick_weighted(rule, rng).map(|(index, draw)| plain(index, Why::Weighted { draw }))
    };
    let Some(cohort) = cohort else {
        return weighted(rng);
    };
    if let Some(pin) = &cohort.pin {
        if let Some(index) = read(pin, headers).and_then(|v| by_name(rule, v)) {
            return Some(plain(index, Why::Pinned));
        }
    }
    match &cohort.sticky {
        None => weighted(rng),
        Some(Sticky::Hash(header)) => match headers.get(header) {
            Some(v) => rendezvous(rule, v.as_bytes()).map(|i| plain(i, Why::StickyHash)),
            None => weighted(rng),
        },
        Some(Sticky::Cookie { name, max_age }) => {
            let kept = cookie(headers, name)
                .and_then(|v| by_name(rule, v))
                .filter(|&i| rule.backends[i].weight > 0);
            if let Some(index) = kept {
                return Some(plain(index, Why::StickyCookie));
            }
            let (index, draw) = pick_weighted(rule, rng)?;
            let mut set = format!(
                "{name}={}; Path=/; HttpOnly; SameSite=Lax",
                rule.backends[index].backend.id.name
            );
            if let Some(age) = max_age {
                set.push_str(&format!("; Max-Age={}", age.as_secs()));
            }
            Some(Choice {
                index,
                why: Why::Weighted { draw },
                set_cookie: Some(set),
            })
        }
    }
}

/// A weighted draw among the rule's backendRefs: the index and the draw.
pub fn pick_weighted(rule: &Rule, rng: &mut fastrand::Rng) -> Option<(usize, u32)> {
    if rule.total_weight == 0 {
        return None;
    }
    let draw = rng.u32(..rule.total_weight);
    let mut left = draw;
    for (i, b) in rule.backends.iter().enumerate() {
        if left < b.weight {
            return Some((i, draw));
        }
        left -= b.weight;
    }
    None
}

/// Weighted rendezvous hashing: the backend with the highest `-weight / ln(u)` wins, where `u`
/// is a uniform draw seeded by (key, backend name).
fn rendezvous(rule: &Rule, key: &[u8]) -> Option<usize> {
    let mut best: Option<(f64, usize)> = None;
    for (i, b) in rule.backends.iter().enumerate() {
        if b.weight == 0 {
            continue;
        }
        let seed = xxh3_64_with_seed(b.backend.id.name.as_bytes(), 0x5eed);
        let h = xxh3_64_with_seed(key, seed);
        // u in (0, 1): 53 random bits, never 0.
        let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let score = -f64::from(b.weight) / u.ln();
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, i));
        }
    }
    best.map(|(_, i)| i)
}

fn by_name(rule: &Rule, name: &str) -> Option<usize> {
    rule.backends.iter().position(|b| b.backend.id.name == name)
}

fn read<'h>(source: &CohortSource, headers: &'h HeaderMap) -> Option<&'h str> {
    match source {
        CohortSource::Header(h) => headers.get(h).and_then(|v| v.to_str().ok()),
        CohortSource::Cookie(name) => cookie(headers, name),
    }
}

/// The value of cookie `name` in the request's Cookie headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use switchyard_config::{Backend, BackendPolicy, ObjRef, Timeouts, WeightedBackend};

    fn rule(weights: &[(&str, u32)]) -> Rule {
        let backends: Vec<WeightedBackend> = weights
            .iter()
            .map(|(n, w)| WeightedBackend {
                backend: Arc::new(Backend {
                    id: ObjRef::new("default", *n),
                    endpoints: vec![],
                    policy: BackendPolicy::default(),
                }),
                weight: *w,
                filters: vec![],
            })
            .collect();
        Rule {
            route: ObjRef::new("default", "r"),
            rule_index: 0,
            name: None,
            file: "r.yaml".into(),
            line: 1,
            filters: vec![],
            total_weight: backends.iter().map(|b| b.weight).sum(),
            backends,
            timeouts: Timeouts::default(),
            retry: None,
            traffic: None,
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn hash_cohorts_only_move_towards_a_growing_backend() {
        let sticky = Cohort {
            pin: None,
            sticky: Some(Sticky::Hash(http::HeaderName::from_static("x-user"))),
        };
        let mut previous: Vec<usize> = vec![0; 2000];
        for (step, w) in [0u32, 5, 10, 25, 50, 75, 100].iter().enumerate() {
            let r = rule(&[("v1", 100 - w), ("v2", *w)]);
            let mut on_v2 = 0;
            for (u, prev) in previous.iter_mut().enumerate() {
                let h = headers(&[("x-user", &format!("user-{u}"))]);
                let c = choose(&r, Some(&sticky), &h, &mut fastrand::Rng::new())
                    .unwrap()
                    .index;
                if step > 0 && *prev == 1 {
                    assert_eq!(c, 1, "user-{u} flipped back from v2 at weight {w}");
                }
                on_v2 += c;
                *prev = c;
            }
            let share = on_v2 as f64 / 2000.0;
            assert!(
                (share - f64::from(*w) / 100.0).abs() < 0.05,
                "weight {w}: share {share}"
            );
        }
    }

    #[test]
    fn pins_and_cookies() {
        let cohort = Cohort {
            pin: Some(CohortSource::Header(http::HeaderName::from_static(
                "x-canary",
            ))),
            sticky: Some(Sticky::Cookie {
                name: "sy".into(),
                max_age: Some(std::time::Duration::from_secs(60)),
            }),
        };
        let mut rng = fastrand::Rng::with_seed(7);
        let r = rule(&[("v1", 100), ("v2", 0)]);
        let pinned = choose(&r, Some(&cohort), &headers(&[("x-canary", "v2")]), &mut rng).unwrap();
        assert_eq!(
            pinned,
            Choice {
                index: 1,
                why: Why::Pinned,
                set_cookie: None
            }
        );
        let fresh = choose(&r, Some(&cohort), &HeaderMap::new(), &mut rng).unwrap();
        assert_eq!(fresh.index, 0);
        assert_eq!(
            fresh.set_cookie.as_deref(),
            Some("sy=v1; Path=/; HttpOnly; SameSite=Lax; Max-Age=60")
        );
        let r2 = rule(&[("v1", 10), ("v2", 90)]);
        let kept = choose(
            &r2,
            Some(&cohort),
            &headers(&[("cookie", "a=b; sy=v1")]),
            &mut rng,
        )
        .unwrap();
        assert_eq!(
            kept,
            Choice {
                index: 0,
                why: Why::StickyCookie,
                set_cookie: None
            }
        );
        // A cookie naming a backend that lost all weight is drawn again.
        let r3 = rule(&[("v1", 0), ("v2", 100)]);
        let moved = choose(
            &r3,
            Some(&cohort),
            &headers(&[("cookie", "sy=v1")]),
            &mut rng,
        )
        .unwrap();
        assert_eq!(moved.index, 1);
        assert!(moved.set_cookie.is_some());
    }
}
