//! Route matching and generation compile benchmarks over synthetic configurations.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use http::{HeaderMap, HeaderValue, Method};
use serde::Deserialize;
use switchyard_benches::synthetic_routes;
use switchyard_config::{build, RequestView};

fn route_match(c: &mut Criterion) {
    let mut group = c.benchmark_group("match");
    for n in [10usize, 1_000, 10_000] {
        let generation = build(&synthetic_routes(n)).expect("synthetic config builds");
        let table = &generation.gateways[0].ports[0].routes;
        let host = format!("svc-{}.example.com", n / 2);
        let mut headers = HeaderMap::new();
        headers.insert("x-canary", HeaderValue::from_static("true"));
        headers.insert("user-agent", HeaderValue::from_static("bench/1.0"));
        headers.insert("accept", HeaderValue::from_static("*/*"));
        let method = Method::GET;
        let req = RequestView {
            method: &method,
            host: &host,
            path: "/api/v1/orders/42",
            query: Some("page=2"),
            headers: &headers,
        };
        assert_eq!(table.find(&req).map(|m| m.rule.rule_index), Some(1));
        group.bench_with_input(BenchmarkId::from_parameter(n), &req, |b, req| {
            b.iter(|| black_box(table.find(black_box(req))).map(|m| m.match_index))
        });
    }
    group.finish();
}

fn compile(c: &mut Criterion) {
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    let files = synthetic_routes(10_000);
    // The floor: serde_yaml reading every document into `IgnoredAny`, on one thread.
    group.bench_function("yaml_floor/10000", |b| {
        b.iter(|| {
            let mut documents = 0;
            for file in &files {
                for doc in serde_yaml::Deserializer::from_str(&file.contents) {
                    let _ = serde::de::IgnoredAny::deserialize(doc);
                    documents += 1;
                }
            }
            black_box(documents)
        })
    });
    // Dropping the result is left out: the gateway drops an old generation off the request
    // path, after the swap.
    group.bench_function(BenchmarkId::from_parameter(10_000), |b| {
        b.iter_with_large_drop(|| build(black_box(&files)).expect("synthetic config builds"))
    });
    // What the control service pays per edit: one route file changed, the rest parsed before
    // (config::Builder's parse cache), views cut for the one Gateway.
    let mut builder = switchyard_config::Builder::new();
    let mut edited = files.clone();
    builder
        .build_with_views(&edited)
        .expect("synthetic config builds");
    let mut round = 0u32;
    group.bench_function("one_file_edit/10000", |b| {
        b.iter_with_large_drop(|| {
            round += 1;
            edited[2].contents.push_str(&format!("# edit {round}\n"));
            builder
                .build_with_views(black_box(&edited))
                .expect("synthetic config builds")
        })
    });
    group.finish();
}

criterion_group!(benches, route_match, compile);
criterion_main!(benches);
