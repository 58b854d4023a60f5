//! Validation of a BackendPolicy's resilience fields (circuit breaker, outlier detection,
//! health check, panic threshold, retry budget; see `docs/policies.md`), and the value checks
//! TrafficPolicies share with them.

use std::time::Duration;

use super::{duration, Field};
use crate::model::{BackendPolicy, Locality};
use crate::raw::switchyard::{
    BackendPolicySpec, RawCircuitBreaker, RawHealthCheck, RawHttpProbe, RawLocality,
    RawOutlierDetection, RawRetryBudget, RawStatus, RawSuccessRate,
};
use crate::report::{Reporter, Site};
use crate::resilience::{
    CircuitBreaker, HealthCheck, HealthProbe, OutlierDetection, RetryBudget, SuccessRate,
};

/// Health-check defaults (`docs/policies.md`).
const HC_INTERVAL: Duration = Duration::from_secs(10);
const HC_TIMEOUT: Duration = Duration::from_secs(1);
const HC_HEALTHY: u32 = 2;
const HC_UNHEALTHY: u32 = 3;
/// Success-rate defaults.
const SR_MINIMUM_HOSTS: u32 = 5;
const SR_REQUEST_VOLUME: u32 = 100;
/// Largest `stdevFactor`.
const MAX_STDEV_FACTOR: f64 = 1000.0;

/// Fills the resilience fields of `policy` from `spec`. An invalid value is reported and the
/// field keeps its default.
pub(super) fn apply(
    spec: &BackendPolicySpec,
    site: &Site,
    policy: &mut BackendPolicy,
    rep: &mut Reporter<'_>,
) {
    let root = Field::Root("spec");
    if let Some(cb) = &spec.circuit_breaker {
        policy.circuit_breaker = circuit_breaker(cb, &root.key("circuitBreaker"), site, rep);
    }
    if let Some(o) = &spec.outlier_detection {
        policy.outlier = Some(outlier(o, &root.key("outlierDetection"), site, rep));
    }
    if let Some(h) = &spec.health_check {
        policy.health_check = health_check(h, &root.key("healthCheck"), site, rep);
    }
    if let Some(p) = spec.panic_threshold {
        if let Some(p) = percent(p, site, root.key("panicThreshold"), rep) {
            policy.panic_threshold = p;
        }
    }
    if let Some(b) = &spec.retry_budget {
        policy.retry_budget = retry_budget(b, &root.key("retryBudget"), site, rep);
    }
    if let Some(l) = &spec.locality {
        policy.locality = locality(l, &root.key("locality"), site, rep);
    }
}

fn locality(raw: &RawLocality, base: &Field<'_>, site: &Site, rep: &mut Reporter<'_>) -> Locality {
    let mut out = Locality::default();
    if let Some(p) = raw.min_healthy_percent {
        if let Some(p) = percent(p, site, base.key("minHealthyPercent"), rep) {
            out.min_healthy_percent = p;
        }
    }
    for (i, zone) in raw.failover.iter().flatten().enumerate() {
        let failover = base.key("failover");
        let field = failover.at(i);
        if let Err(why) = super::check_name(zone, 63, false) {
            rep.error(site, field, format!("zone {zone:?}: {why}"));
        } else if out.failover.contains(zone) {
            rep.error(site, field, format!("zone {zone:?} is listed twice"));
        } else {
            out.failover.push(zone.clone());
        }
    }
    out
}

fn circuit_breaker(
    raw: &RawCircuitBreaker,
    base: &Field<'_>,
    site: &Site,
    rep: &mut Reporter<'_>,
) -> CircuitBreaker {
    let mut limit = |value: Option<u32>, key: &'static str| {
        value.filter(|&v| {
            let ok = v >= 1;
            if !ok {
                rep.error(
                    site,
                    base.key(key),
                    "a limit must be at least 1 (leave it out for no limit)",
                );
            }
            ok
        })
    };
    CircuitBreaker {
        max_connections: limit(raw.max_connections, "maxConnections"),
        max_pending_requests: limit(raw.max_pending_requests, "maxPendingRequests"),
        max_requests: limit(raw.max_requests, "maxRequests"),
        max_retries: limit(raw.max_retries, "maxRetries"),
    }
}

fn outlier(
    raw: &RawOutlierDetection,
    base: &Field<'_>,
    site: &Site,
    rep: &mut Reporter<'_>,
) -> OutlierDetection {
    let d = OutlierDetection::default();
    // Absent: the default; 0: disabled.
    let consecutive = |value: Option<u32>, default: Option<u32>| match value {
        None => default,
        Some(0) => None,
        Some(n) => Some(n),
    };
    let interval = positive_duration(raw.interval.as_deref(), site, base.key("interval"), rep);
    let base_field = base.key("baseEjectionTime");
    let max_field = base.key("maxEjectionTime");
    let base_time = positive_duration(raw.base_ejection_time.as_deref(), site, base_field, rep);
    let max_time = positive_duration(raw.max_ejection_time.as_deref(), site, max_field, rep);
    let base_ejection_time = base_time.unwrap_or(d.base_ejection_time);
    let max_ejection_time = max_time.unwrap_or(d.max_ejection_time);
    if base_ejection_time > max_ejection_time {
        let at = if base_time.is_some() {
            base_field
        } else {
            max_field
        };
        rep.error(
            site,
            at,
            format!(
                "baseEjectionTime {} is longer than maxEjectionTime {}",
                shown(raw.base_ejection_time.as_deref(), base_ejection_time),
                shown(raw.max_ejection_time.as_deref(), max_ejection_time),
            ),
        );
    }
    let max_ejection_percent = raw
        .max_ejection_percent
        .and_then(|p| percent(p, site, base.key("maxEjectionPercent"), rep))
        .unwrap_or(d.max_ejection_percent);
    let success_rate = raw
        .success_rate
        .as_ref()
        .and_then(|sr| success_rate(sr, &base.key("successRate"), site, rep));
    OutlierDetection {
        consecutive_5xx: consecutive(raw.consecutive_5xx, d.consecutive_5xx),
        consecutive_gateway_errors: consecutive(
            raw.consecutive_gateway_errors,
            d.consecutive_gateway_errors,
        ),
        success_rate,
        interval: interval.unwrap_or(d.interval),
        base_ejection_time,
        max_ejection_time,
        max_ejection_percent,
    }
}

fn success_rate(
    raw: &RawSuccessRate,
    base: &Field<'_>,
    site: &Site,
    rep: &mut Reporter<'_>,
) -> Option<SuccessRate> {
    if raw.threshold.is_none() && raw.stdev_factor.is_none() {
        rep.error(
            site,
            base,
            "successRate needs threshold (a percentage) or stdevFactor",
        );
        return None;
    }
    let threshold = raw
        .threshold
        .and_then(|t| percent(t, site, base.key("threshold"), rep));
    let stdev_factor_milli = raw.stdev_factor.and_then(|f| {
        let field = base.key("stdevFactor");
        let milli = scaled(f, 1000.0);
        match milli {
            Some(m) if f > 0.0 && f <= MAX_STDEV_FACTOR => Some(m),
            _ => {
                rep.error(
                    site,
                    field,
                    format!(
                        "stdevFactor {f} is not a number above 0 and at most {MAX_STDEV_FACTOR} with up to three decimals"
                    ),
                );
                None
            }
        }
    });
    Some(SuccessRate {
        threshold,
        stdev_factor_milli,
        minimum_hosts: raw
            .minimum_hosts
            .and_then(|n| at_least_one(n, site, base.key("minimumHosts"), rep))
            .unwrap_or(SR_MINIMUM_HOSTS),
        request_volume: raw
            .request_volume
            .and_then(|n| at_least_one(n, site, base.key("requestVolume"), rep))
            .unwrap_or(SR_REQUEST_VOLUME),
    })
}

fn health_check(
    raw: &RawHealthCheck,
    base: &Field<'_>,
    site: &Site,
    rep: &mut Reporter<'_>,
) -> Option<HealthCheck> {
    let interval_field = base.key("interval");
    let timeout_field = base.key("timeout");
    let given_interval = positive_duration(raw.interval.as_deref(), site, interval_field, rep);
    let given_timeout = positive_duration(raw.timeout.as_deref(), site, timeout_field, rep);
    let interval = given_interval.unwrap_or(HC_INTERVAL);
    let timeout = given_timeout.unwrap_or(HC_TIMEOUT);
    if timeout > interval {
        let at = if given_timeout.is_some() {
            timeout_field
        } else {
            interval_field
        };
        rep.error(
            site,
            at,
            format!(
                "timeout {} is longer than interval {}",
                shown(raw.timeout.as_deref(), timeout),
                shown(raw.interval.as_deref(), interval),
            ),
        );
    }
    let healthy_threshold = raw
        .healthy_threshold
        .and_then(|n| at_least_one(n, site, base.key("healthyThreshold"), rep))
        .unwrap_or(HC_HEALTHY);
    let unhealthy_threshold = raw
        .unhealthy_threshold
        .and_then(|n| at_least_one(n, site, base.key("unhealthyThreshold"), rep))
        .unwrap_or(HC_UNHEALTHY);
    let probe = match (&raw.http, &raw.tcp) {
        (Some(http), None) => http_probe(http, &base.key("http"), site, rep)?,
        (None, Some(_)) => HealthProbe::Tcp,
        (Some(_), Some(_)) => {
            rep.error(site, base, "set exactly one of http or tcp");
            return None;
        }
        (None, None) => {
            rep.error(
                site,
                base,
                "a health check needs http (with a path) or tcp: {}",
            );
            return None;
        }
    };
    Some(HealthCheck {
        interval,
        timeout,
        healthy_threshold,
        unhealthy_threshold,
        probe,
    })
}

fn http_probe(
    raw: &RawHttpProbe,
    base: &Field<'_>,
    site: &Site,
    rep: &mut Reporter<'_>,
) -> Option<HealthProbe> {
    let mut ok = true;
    let path = match &raw.path {
        None => {
            rep.error(
                site,
                base,
                "an http health check needs a path (e.g. /healthz)",
            );
            ok = false;
            String::new()
        }
        Some(p) => {
            if !p.starts_with('/') || p.parse::<http::uri::PathAndQuery>().is_err() {
                rep.error(
                    site,
                    base.key("path"),
                    format!("invalid path {p:?}: expected a path starting with / (e.g. /healthz)"),
                );
                ok = false;
            }
            p.clone()
        }
    };
    if let Some(host) = &raw.host {
        let valid = !host.contains('@')
            && host.parse::<http::uri::Authority>().is_ok()
            && http::HeaderValue::from_str(host).is_ok();
        if !valid {
            rep.error(
                site,
                base.key("host"),
                format!("invalid host {host:?}: expected a hostname, optionally with :port"),
            );
            ok = false;
        }
    }
    let expected = match &raw.expected_statuses {
        None => vec![(200, 299)],
        Some(list) if list.is_empty() => {
            rep.error(
                site,
                base.key("expectedStatuses"),
                "expectedStatuses needs at least one code or range (leave it out for 200-299)",
            );
            ok = false;
            Vec::new()
        }
        Some(list) => {
            let field = base.key("expectedStatuses");
            let mut out = Vec::with_capacity(list.len());
            for (i, status) in list.iter().enumerate() {
                match status_range(status) {
                    Ok(range) => out.push(range),
                    Err(why) => {
                        rep.error(site, field.at(i), why);
                        ok = false;
                    }
                }
            }
            out
        }
    };
    ok.then(|| HealthProbe::Http {
        path,
        host: raw.host.clone(),
        expected,
    })
}

/// An `expectedStatuses` entry as an inclusive range within 100-599.
fn status_range(status: &RawStatus) -> Result<(u16, u16), String> {
    let code = |n: i64| -> Result<u16, String> {
        match u16::try_from(n) {
            Ok(c) if (100..=599).contains(&c) => Ok(c),
            _ => Err(format!("status {n} is not between 100 and 599")),
        }
    };
    match status {
        RawStatus::Code(n) => code(*n).map(|c| (c, c)),
        RawStatus::Text(text) => {
            let number = |s: &str| -> Result<u16, String> {
                let s = s.trim();
                if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!(
                        "invalid status {text:?}: expected a code (200) or a range (\"200-299\")"
                    ));
                }
                code(s.parse::<i64>().unwrap_or(i64::MAX))
            };
            let (lo, hi) = match text.split_once('-') {
                Some((lo, hi)) => (number(lo)?, number(hi)?),
                None => {
                    let c = number(text)?;
                    (c, c)
                }
            };
            if lo > hi {
                return Err(format!(
                    "status range {text:?} is empty: {lo} is above {hi}"
                ));
            }
            Ok((lo, hi))
        }
    }
}

fn retry_budget(
    raw: &RawRetryBudget,
    base: &Field<'_>,
    site: &Site,
    rep: &mut Reporter<'_>,
) -> RetryBudget {
    let d = RetryBudget::default();
    RetryBudget {
        ratio_percent: raw
            .ratio
            .and_then(|r| percent(r, site, base.key("ratio"), rep))
            .unwrap_or(d.ratio_percent),
        min_per_second: raw.min_retries_per_second.unwrap_or(d.min_per_second),
        window: positive_duration(raw.window.as_deref(), site, base.key("window"), rep)
            .unwrap_or(d.window),
    }
}

/// A whole percentage, 0 to 100.
pub(super) fn percent(
    value: u32,
    site: &Site,
    field: Field<'_>,
    rep: &mut Reporter<'_>,
) -> Option<u32> {
    if value > 100 {
        rep.error(
            site,
            field,
            format!("{value} is not a percentage from 0 to 100"),
        );
        return None;
    }
    Some(value)
}

/// A percentage from 0 to 100 with up to four decimals, in millionths (`12.5` is 125000).
pub(super) fn millionths(
    value: f64,
    site: &Site,
    field: Field<'_>,
    rep: &mut Reporter<'_>,
) -> Option<u32> {
    match scaled(value, 10_000.0) {
        Some(n) if (0.0..=100.0).contains(&value) => Some(n),
        _ => {
            rep.error(
                site,
                field,
                format!("{value} is not a percentage from 0 to 100 with up to four decimals"),
            );
            None
        }
    }
}

/// `value * factor` when that is a whole number that fits a u32 (`value` has at most as many
/// decimals as `factor` has zeros).
pub(super) fn scaled(value: f64, factor: f64) -> Option<u32> {
    let x = value * factor;
    let rounded = x.round();
    // Inputs are at most about 1e6 once scaled, where f64 is exact to about 1e-10.
    let whole = (x - rounded).abs() <= 1e-6;
    (x.is_finite() && whole && (0.0..=f64::from(u32::MAX)).contains(&rounded))
        .then_some(rounded as u32)
}

/// A count that must be at least 1.
pub(super) fn at_least_one(
    value: u32,
    site: &Site,
    field: Field<'_>,
    rep: &mut Reporter<'_>,
) -> Option<u32> {
    if value == 0 {
        rep.error(site, field, "must be at least 1");
        return None;
    }
    Some(value)
}

/// An optional duration that must be above zero.
pub(super) fn positive_duration(
    value: Option<&str>,
    site: &Site,
    field: Field<'_>,
    rep: &mut Reporter<'_>,
) -> Option<Duration> {
    let d = duration(value, site, field, rep)?;
    if d.is_zero() {
        rep.error(site, field, "must be above 0s");
        return None;
    }
    Some(d)
}

/// A header name, lowercased.
pub(super) fn header_name(
    value: &str,
    site: &Site,
    field: Field<'_>,
    rep: &mut Reporter<'_>,
) -> Option<http::HeaderName> {
    match http::HeaderName::from_bytes(value.as_bytes()) {
        Ok(name) => Some(name),
        Err(_) => {
            rep.error(site, field, format!("invalid header name {value:?}"));
            None
        }
    }
}

/// True for a valid cookie name (an RFC 6265 token).
pub(super) fn is_cookie_name(name: &str) -> bool {
    let token = |b: u8| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b);
    !name.is_empty() && name.bytes().all(token)
}

/// A cookie name.
pub(super) fn cookie_name(
    value: &str,
    site: &Site,
    field: Field<'_>,
    rep: &mut Reporter<'_>,
) -> Option<String> {
    if !is_cookie_name(value) {
        rep.error(site, field, format!("invalid cookie name {value:?}"));
        return None;
    }
    Some(value.to_string())
}

/// A duration as written, or the default's spelling.
fn shown(written: Option<&str>, value: Duration) -> String {
    match written {
        Some(w) => w.to_string(),
        None if value.subsec_millis() == 0 => format!("{}s (the default)", value.as_secs()),
        None => format!("{}ms (the default)", value.as_millis()),
    }
}
