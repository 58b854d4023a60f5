//! Unit tests of `explain` over the decision tests' fixture: each step of the report, the
//! agreement of its outcome with `decide::route`, text and JSON forms, and bad queries.

use super::*;
use crate::decide::tests::{request, runtime};

fn q(method: &str, host: &str, path: &str, headers: &[(&str, &str)]) -> Query {
    Query {
        method: method.into(),
        host: host.into(),
        path: path.into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        seed: Some(11),
        ..Query::default()
    }
}

fn run(query: &Query) -> Explanation {
    explain(&runtime(), "files", query).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_non_canonical_path_is_explained_on_its_canonical_form() {
    let ex = run(&q("GET", "shop.test", "/x/../cart//items?a=1", &[]));
    assert_eq!(ex.listener.canonical_path.as_deref(), Some("/cart/items"));
    assert_eq!(ex.outcome.action, "proxy");
    assert_eq!(ex.outcome.backend.as_deref(), Some("default/v2"));
    assert_eq!(ex.rules[0].verdict, "matched");
    assert_eq!(
        (ex.rules[0].rule_index, ex.rules[0].file.as_str()),
        (0, "routes.yaml")
    );
    assert!(ex.rules[0].line > 0);
    let upstream = ex.upstream.as_ref().unwrap();
    assert_eq!(upstream.path, "/cart/items?a=1");
    let b = ex.backend.as_ref().unwrap();
    assert_eq!(b.why, "weighted");
    assert_eq!(
        b.weights,
        [
            ("default/v1".to_string(), 0),
            ("default/v2".to_string(), 100)
        ]
    );
    assert_eq!(b.endpoints.as_ref().unwrap().target, "local");
    assert_eq!(ex.exit_code(), 0);
    assert_eq!(ex.authz.as_ref().unwrap().reason, "no policy on this port");
}

#[test]
fn the_outcome_is_the_one_decide_route_gives_for_the_same_seed() {
    let rt = runtime();
    let port = rt.port(8080).unwrap();
    for path in [
        "/split", "/split/a", "/cart", "/mirror", "/old", "/none", "/",
    ] {
        let ex = explain(&rt, "files", &q("GET", "shop.test", path, &[])).unwrap();
        let req = request("GET", "shop.test", path, &[]);
        let routed = decide::route(&rt, port, &req, &mut fastrand::Rng::with_seed(11));
        let backend = routed.backend.as_ref().map(|(b, _)| b.id.to_string());
        match routed.outcome {
            Outcome::Proxy => {
                assert_eq!(ex.outcome.action, "proxy", "{path}");
                assert_eq!(ex.outcome.backend, backend, "{path}");
            }
            Outcome::Redirect { status, .. } => {
                assert_eq!(
                    (ex.outcome.action.as_str(), ex.outcome.status),
                    ("redirect", Some(status))
                )
            }
            Outcome::Reply { status, reason } => {
                assert_eq!(ex.outcome.status, Some(status), "{path}");
                assert_eq!(
                    ex.outcome.reason.as_deref(),
                    Some(reason.as_str()),
                    "{path}"
                );
            }
        }
    }
}

#[test]
fn other_rules_say_why_they_did_not_match() {
    let ex = run(&q("GET", "shop.test", "/api/users", &[]));
    let verdict = |i: usize| {
        ex.rules
            .iter()
            .find(|r| r.route == "default/shop" && r.rule_index == i)
            .map(|r| r.verdict.as_str())
    };
    assert_eq!(verdict(7), Some("matched"));
    assert_eq!(verdict(2), Some("method"));
    assert_eq!(verdict(0), Some("path"));
    assert_eq!(verdict(1), Some("path"));
    // The wildcard route is another host's: not a candidate here.
    assert!(ex.rules.iter().all(|r| r.route != "default/wild"));
    let text = ex.to_text();
    assert!(text.contains("method is not POST"), "{text}");
    assert!(text.contains("routes.yaml:"), "{text}");
}

#[test]
fn unknown_hosts_list_the_port_hostnames() {
    let ex = run(&q("GET", "nowhere.test", "/", &[]));
    let host = ex.host.as_ref().unwrap();
    assert_eq!(host.bucket, None);
    assert_eq!(host.port_hostnames, ["*.wild.test", "shop.test"]);
    assert_eq!(
        (ex.outcome.status, ex.outcome.reason.as_deref()),
        (Some(404), Some("no_route"))
    );
    assert_eq!(ex.exit_code(), 1);
    assert!(ex.to_text().contains("no route serves this host"));
    let wild = run(&q("GET", "a.b.wild.test", "/", &[]));
    assert_eq!(wild.host.unwrap().bucket.as_deref(), Some("*.wild.test"));
}

#[test]
fn redirects_pins_rewrites_and_mirrors_are_reported() {
    let ex = run(&q("GET", "shop.test", "/old", &[]));
    assert_eq!(ex.outcome.action, "redirect");
    assert_eq!(
        ex.outcome.location.as_deref(),
        Some("http://shop.test:8080/new")
    );
    assert_eq!(
        ex.filters,
        ["RequestRedirect: 301 to http://shop.test:8080/new"]
    );
    assert!(
        ex.authz.is_none(),
        "a redirect is answered before authorization"
    );

    let ex = run(&q("GET", "shop.test", "/cart", &[("x-canary", "v1")]));
    let b = ex.backend.unwrap();
    assert_eq!(
        (b.backend.as_str(), b.why.as_str()),
        ("default/v1", "pinned")
    );

    let ex = run(&q("POST", "shop.test", "/api/x?k=v", &[]));
    let up = ex.upstream.unwrap();
    assert_eq!(
        (up.path.as_str(), up.host.as_str()),
        ("/v2/x?k=v", "api.internal")
    );
    assert_eq!(
        ex.filters,
        ["URLRewrite: hostname api.internal, path ReplacePrefixMatch /v2"]
    );

    let ex = run(&q("GET", "shop.test", "/mirror", &[]));
    assert_eq!(ex.upstream.unwrap().mirrors, ["default/v2"]);
    assert!(
        ex.filters[0].contains("this request is copied"),
        "{:?}",
        ex.filters
    );
}

#[test]
fn listener_refusals_and_stripped_headers() {
    let ex = run(&q("GET", "shop.test", "/a%00b", &[]));
    assert_eq!(
        ex.listener.refused.as_deref(),
        Some("invalid_path: control byte")
    );
    assert_eq!(ex.outcome.status, Some(400));
    assert!(ex.host.is_none() && ex.rules.is_empty());

    let spoof = [(crate::identity::IDENTITY_HEADER, "spiffe://evil")];
    let ex = run(&q("GET", "shop.test", "/", &spoof));
    assert_eq!(ex.listener.stripped, [crate::identity::IDENTITY_HEADER]);
    assert_eq!(ex.outcome.action, "proxy");

    let framing = [("content-length", "1"), ("transfer-encoding", "chunked")];
    let ex = run(&q("POST", "shop.test", "/", &framing));
    assert!(ex
        .listener
        .refused
        .unwrap()
        .starts_with("conflicting_framing"));
}

#[test]
fn seeds_repeat_draws_and_the_json_round_trips() {
    let a = run(&q("GET", "shop.test", "/split", &[]));
    let b = run(&q("GET", "shop.test", "/split", &[]));
    assert_eq!(
        a.backend.as_ref().unwrap().draw,
        b.backend.as_ref().unwrap().draw
    );
    assert_eq!(a.backend.as_ref().unwrap().seed, 11);
    let json = serde_json::to_string(&a).unwrap();
    let back: Explanation = serde_json::from_str(&json).unwrap();
    assert_eq!(back.to_text(), a.to_text());
    assert_eq!(back.generation.number, 1);
    assert_eq!(back.generation.digest, runtime().info.digest);
}

#[test]
fn bad_queries_are_errors() {
    let mut query = q("GET", "shop.test", "/", &[]);
    query.port = Some(9);
    let e = explain(&runtime(), "files", &query).unwrap_err();
    assert_eq!(
        e.to_string(),
        "no port 9 on Gateway default/gw (ports: 8080 (HTTP))"
    );
    let e = explain(&runtime(), "files", &q("G T", "shop.test", "/", &[])).unwrap_err();
    assert!(matches!(e, ExplainError::Invalid(_)), "{e}");
    let e = explain(
        &runtime(),
        "files",
        &q("GET", "shop.test", "/", &[("bad name", "v")]),
    )
    .unwrap_err();
    assert!(e.to_string().contains("header bad name"), "{e}");
}
