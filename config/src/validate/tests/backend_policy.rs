//! BackendPolicy resilience fields (docs/policies.md): compiled values, defaults and
//! positioned diagnostics.

use std::time::Duration;

use super::{errors, ok, pos};
use crate::{
    BackendPolicy, CircuitBreaker, Generation, HealthCheck, HealthProbe, ObjRef, OutlierDetection,
    RetryBudget, SuccessRate,
};

fn policy_of(g: &Generation, backend: &str) -> BackendPolicy {
    g.backends[&ObjRef::new("shop", backend)].policy.clone()
}

const FULL_BACKEND_POLICY: &str = "\
apiVersion: switchyard.dev/v1alpha1
kind: BackendPolicy
metadata: {name: cart, namespace: shop}
spec:
  targetRefs: [{group: switchyard.dev, kind: Backend, name: cart-v1}]
  circuitBreaker:
    maxConnections: 1000
    maxPendingRequests: 100
    maxRequests: 2000
    maxRetries: 50
  outlierDetection:
    consecutive5xx: 7
    consecutiveGatewayErrors: 0
    successRate:
      threshold: 80
      stdevFactor: 1.9
      minimumHosts: 3
      requestVolume: 50
    interval: 5s
    baseEjectionTime: 20s
    maxEjectionTime: 2m
    maxEjectionPercent: 30
  healthCheck:
    interval: 15s
    timeout: 2s
    healthyThreshold: 4
    unhealthyThreshold: 5
    http:
      path: /healthz?deep=1
      host: cart.internal:8080
      expectedStatuses: [204, \"200-299\", \"301\"]
  panicThreshold: 0
  retryBudget:
    ratio: 25
    minRetriesPerSecond: 0
    window: 30s
";

#[test]
fn backend_policy_resilience_fields_compile() {
    let g = ok(&[("p.yaml", FULL_BACKEND_POLICY)]);
    let p = policy_of(&g, "cart-v1");
    assert_eq!(
        p.circuit_breaker,
        CircuitBreaker {
            max_connections: Some(1000),
            max_pending_requests: Some(100),
            max_requests: Some(2000),
            max_retries: Some(50),
        }
    );
    assert_eq!(
        p.outlier,
        Some(OutlierDetection {
            consecutive_5xx: Some(7),
            consecutive_gateway_errors: None,
            success_rate: Some(SuccessRate {
                threshold: Some(80),
                stdev_factor_milli: Some(1900),
                minimum_hosts: 3,
                request_volume: 50,
            }),
            interval: Duration::from_secs(5),
            base_ejection_time: Duration::from_secs(20),
            max_ejection_time: Duration::from_secs(120),
            max_ejection_percent: 30,
        })
    );
    assert_eq!(
        p.health_check,
        Some(HealthCheck {
            interval: Duration::from_secs(15),
            timeout: Duration::from_secs(2),
            healthy_threshold: 4,
            unhealthy_threshold: 5,
            probe: HealthProbe::Http {
                path: "/healthz?deep=1".into(),
                host: Some("cart.internal:8080".into()),
                expected: vec![(204, 204), (200, 299), (301, 301)],
            },
        })
    );
    assert_eq!(p.panic_threshold, 0);
    assert_eq!(
        p.retry_budget,
        RetryBudget {
            ratio_percent: 25,
            min_per_second: 0,
            window: Duration::from_secs(30),
        }
    );
    // The other Backend keeps every default.
    assert_eq!(policy_of(&g, "cart-v2"), BackendPolicy::default());
}

#[test]
fn backend_policy_resilience_defaults() {
    let yaml = "\
apiVersion: switchyard.dev/v1alpha1
kind: BackendPolicy
metadata: {name: cart, namespace: shop}
spec:
  targetRefs: [{kind: Backend, name: cart-v1}]
  circuitBreaker: {maxRetries: 3}
  outlierDetection: {}
  healthCheck: {tcp: {}}
  retryBudget: {}
---
apiVersion: switchyard.dev/v1alpha1
kind: BackendPolicy
metadata: {name: cart-v2, namespace: shop}
spec:
  targetRefs: [{kind: Backend, name: cart-v2}]
  outlierDetection:
    consecutive5xx: 0
    successRate: {stdevFactor: 2}
  healthCheck: {http: {path: /}}
";
    let g = ok(&[("p.yaml", yaml)]);
    let p = policy_of(&g, "cart-v1");
    assert_eq!(
        p.circuit_breaker,
        CircuitBreaker {
            max_retries: Some(3),
            ..CircuitBreaker::default()
        }
    );
    assert_eq!(p.outlier, Some(OutlierDetection::default()));
    assert_eq!(
        p.outlier
            .as_ref()
            .map(|o| (o.consecutive_5xx, o.max_ejection_percent)),
        Some((Some(5), 50))
    );
    assert_eq!(
        p.health_check,
        Some(HealthCheck {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            probe: HealthProbe::Tcp,
        })
    );
    assert_eq!(p.panic_threshold, 50);
    assert_eq!(p.retry_budget, RetryBudget::default());
    assert_eq!(p.retry_budget.ratio_percent, 20);

    let p = policy_of(&g, "cart-v2");
    let outlier = p.outlier.unwrap();
    assert_eq!(
        (outlier.consecutive_5xx, outlier.consecutive_gateway_errors),
        (None, Some(5))
    );
    assert_eq!(
        outlier.success_rate,
        Some(SuccessRate {
            threshold: None,
            stdev_factor_milli: Some(2000),
            minimum_hosts: 5,
            request_volume: 100,
        })
    );
    assert_eq!(
        p.health_check.unwrap().probe,
        HealthProbe::Http {
            path: "/".into(),
            host: None,
            expected: vec![(200, 299)],
        }
    );
}

#[test]
fn backend_policy_resilience_errors() {
    let yaml = "\
apiVersion: switchyard.dev/v1alpha1
kind: BackendPolicy
metadata: {name: bad, namespace: shop}
spec:
  targetRefs: [{kind: Backend, name: cart-v1}]
  circuitBreaker: {maxConnections: 0}
  outlierDetection:
    successRate: {minimumHosts: 0}
    interval: 0s
    baseEjectionTime: 10m
    maxEjectionPercent: 101
  healthCheck:
    interval: 500ms
    healthyThreshold: 0
    http:
      path: healthz
      host: \"a b\"
      expectedStatuses: [99, \"300-200\", \"2xx\"]
  panicThreshold: 150
  retryBudget: {ratio: 200, window: 0s}
---
apiVersion: switchyard.dev/v1alpha1
kind: BackendPolicy
metadata: {name: bad2, namespace: shop}
spec:
  targetRefs: [{kind: Backend, name: cart-v2}]
  outlierDetection:
    successRate: {stdevFactor: 1.2345}
    maxEjectionTime: 1s
  healthCheck: {http: {path: /}, tcp: {}}
";
    let e = |needle: &str, nth, obj: &str, field: &str, msg: &str| {
        format!(
            "p.yaml:{}: BackendPolicy shop/{obj} spec.{field}: {msg}",
            pos(yaml, needle, nth)
        )
    };
    assert_eq!(
        errors(&[("p.yaml", yaml)]),
        [
            e("0}", 0, "bad", "circuitBreaker.maxConnections", "a limit must be at least 1 (leave it out for no limit)"),
            e("minimumHosts", 0, "bad", "outlierDetection.successRate", "successRate needs threshold (a percentage) or stdevFactor"),
            e("0s", 0, "bad", "outlierDetection.interval", "must be above 0s"),
            e("10m", 0, "bad", "outlierDetection.baseEjectionTime", "baseEjectionTime 10m is longer than maxEjectionTime 300s (the default)"),
            e("101", 0, "bad", "outlierDetection.maxEjectionPercent", "101 is not a percentage from 0 to 100"),
            e("500ms", 0, "bad", "healthCheck.interval", "timeout 1s (the default) is longer than interval 500ms"),
            e("0\n", 0, "bad", "healthCheck.healthyThreshold", "must be at least 1"),
            e("healthz", 0, "bad", "healthCheck.http.path", "invalid path \"healthz\": expected a path starting with / (e.g. /healthz)"),
            e("\"a b\"", 0, "bad", "healthCheck.http.host", "invalid host \"a b\": expected a hostname, optionally with :port"),
            e("99", 0, "bad", "healthCheck.http.expectedStatuses[0]", "status 99 is not between 100 and 599"),
            e("\"300-200\"", 0, "bad", "healthCheck.http.expectedStatuses[1]", "status range \"300-200\" is empty: 300 is above 200"),
            e("\"2xx\"", 0, "bad", "healthCheck.http.expectedStatuses[2]", "invalid status \"2xx\": expected a code (200) or a range (\"200-299\")"),
            e("150", 0, "bad", "panicThreshold", "150 is not a percentage from 0 to 100"),
            e("200,", 0, "bad", "retryBudget.ratio", "200 is not a percentage from 0 to 100"),
            e("0s}", 0, "bad", "retryBudget.window", "must be above 0s"),
            e("1.2345", 0, "bad2", "outlierDetection.successRate.stdevFactor", "stdevFactor 1.2345 is not a number above 0 and at most 1000 with up to three decimals"),
            e("1s\n", 0, "bad2", "outlierDetection.maxEjectionTime", "baseEjectionTime 30s (the default) is longer than maxEjectionTime 1s"),
            e("http: {path", 0, "bad2", "healthCheck", "set exactly one of http or tcp"),
        ]
    );
}

#[test]
fn percentages_and_factors_scale_exactly() {
    use crate::validate::resilience::scaled;
    assert_eq!(scaled(12.5, 10_000.0), Some(125_000));
    assert_eq!(scaled(0.0001, 10_000.0), Some(1));
    assert_eq!(scaled(99.9999, 10_000.0), Some(999_999));
    assert_eq!(scaled(33.33333, 10_000.0), None);
    assert_eq!(scaled(1.9, 1000.0), Some(1900));
    assert_eq!(scaled(-1.0, 1000.0), None);
    assert_eq!(scaled(f64::NAN, 1000.0), None);
}
