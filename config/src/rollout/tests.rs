//! Rollout editor tests: exact output text for every layout, the share arithmetic, the errors.

use super::*;

/// A Gateway, then the route (2nd document) in block style with comments and blank lines.
const FILE: &str = "\
# Shop routes. Edited by hand and by `switchyard rollout`.
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  gatewayClassName: switchyard
  listeners: [{name: http, port: 8080, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}]
---
# The cart route.
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: cart          # the cart service
  namespace: shop
spec:
  parentRefs: [{name: edge, namespace: default}]

  rules:
    - matches: [{path: {value: /cart}}]
      backendRefs:
        # stable
        - group: switchyard.dev
          kind: Backend
          name: cart-v1
          weight: 90    # was 100 yesterday

        # canary
        - {group: switchyard.dev, kind: Backend, name: cart-v2, weight: 10}
    - name: admin
      backendRefs:
      - name: cart-admin
";

fn cart() -> ObjRef {
    ObjRef::new("shop", "cart")
}

fn edit(text: &str, route: &ObjRef, backend: &str, change: WeightChange) -> Edit {
    set_weights(text, route, &RuleSelector::Auto, backend, change).expect("edit")
}

fn err(
    text: &str,
    route: &ObjRef,
    rule: RuleSelector,
    backend: &str,
    c: WeightChange,
) -> RolloutError {
    set_weights(text, route, &rule, backend, c).expect_err("error")
}

/// (line, backend, old, new) of each change.
fn summary(e: &Edit) -> Vec<(usize, &str, Option<u32>, u32)> {
    e.changes
        .iter()
        .map(|c| (c.line, c.backend.as_str(), c.old, c.new))
        .collect()
}

#[test]
fn block_and_flow_weights_change_and_nothing_else() {
    let e = edit(FILE, &cart(), "cart-v2", WeightChange::Set(30));
    let expected = FILE
        .replace("weight: 90    #", "weight: 70    #")
        .replace("cart-v2, weight: 10}", "cart-v2, weight: 30}");
    assert_eq!(e.text, expected);
    assert_eq!(
        summary(&e),
        [(25, "cart-v1", Some(90), 70), (28, "cart-v2", Some(10), 30)]
    );
    assert_eq!(
        (e.rule, e.rule_label()),
        (0, "shop/cart rule 0".to_string())
    );
    assert_eq!(
        e.changes[1].to_string(),
        "backendRef cart-v2 weight 10 -> 30"
    );
}

#[test]
fn promote_abort_and_no_change() {
    let e = edit(FILE, &cart(), "cart-v2", WeightChange::Promote);
    assert_eq!(summary(&e)[0], (25, "cart-v1", Some(90), 0));
    assert_eq!(summary(&e)[1], (28, "cart-v2", Some(10), 100));
    // Promoting again changes nothing.
    let again = edit(&e.text, &cart(), "cart-v2", WeightChange::Promote);
    assert!(again.changes.is_empty());
    assert_eq!(again.text, e.text);
    // Abort: cart-v1 is at 0, the only other one, so it gets everything back.
    let back = edit(&e.text, &cart(), "cart-v2", WeightChange::Abort);
    assert_eq!(
        back.text,
        FILE.replace("weight: 90 ", "weight: 100 ")
            .replace("weight: 10}", "weight: 0}")
    );
}

#[test]
fn quoted_weights_keep_their_quotes() {
    let text = FILE
        .replace("weight: 90 ", "weight: \"90\" ")
        .replace("weight: 10}", "weight: '10'}");
    let e = edit(&text, &cart(), "cart-v1", WeightChange::Set(45));
    let expected = text.replace("\"90\"", "\"45\"").replace("'10'", "'55'");
    assert_eq!(e.text, expected);
}

#[test]
fn missing_weights_are_inserted_in_block_and_flow_style() {
    let text = "\
kind: HTTPRoute
metadata: {name: web}
spec:
  rules:
    - backendRefs:
        - name: v1   # stable
          port: 80
        - {kind: Backend, name: v2}
        - name: v3
";
    let e = edit(
        text,
        &ObjRef::new("default", "web"),
        "v3",
        WeightChange::Set(40),
    );
    let expected = "\
kind: HTTPRoute
metadata: {name: web}
spec:
  rules:
    - backendRefs:
        - name: v1   # stable
          weight: 30
          port: 80
        - {kind: Backend, name: v2, weight: 30}
        - name: v3
          weight: 40
";
    assert_eq!(e.text, expected);
    assert_eq!(
        summary(&e),
        [
            (7, "v1", None, 30),
            (9, "v2", None, 30),
            (11, "v3", None, 40)
        ]
    );
    assert_eq!(
        e.changes[0].to_string(),
        "backendRef v1 weight 1 (unset) -> 30"
    );
    // At the very end of a file without a final newline, and with a weight of 1 kept as is.
    let text = "kind: HTTPRoute\nmetadata: {name: web}\nspec:\n  rules:\n  - backendRefs:\n    - name: v1\n    - name: v2";
    let e = edit(
        text,
        &ObjRef::new("default", "web"),
        "v1",
        WeightChange::Abort,
    );
    assert_eq!(
        e.text,
        "kind: HTTPRoute\nmetadata: {name: web}\nspec:\n  rules:\n  - backendRefs:\n    - name: v1\n      weight: 0\n    - name: v2\n      weight: 100"
    );
    assert_eq!(summary(&e), [(7, "v1", None, 0), (9, "v2", None, 100)]);
}

#[test]
fn crlf_files_stay_crlf() {
    let text = FILE
        .replace('\n', "\r\n")
        .replace("weight: 90    # was 100 yesterday\r\n", "");
    let e = edit(&text, &cart(), "cart-v2", WeightChange::Set(25));
    let expected = text
        .replace(
            "name: cart-v1\r\n",
            "name: cart-v1\r\n          weight: 75\r\n",
        )
        .replace("weight: 10}", "weight: 25}");
    assert_eq!(e.text, expected);
    assert!(!e.text.replace("\r\n", "").contains('\n'));
}

#[test]
fn unicode_bom_and_anchored_flow_mappings() {
    let text = "\u{feff}# Größe — ünïcode comment\nkind: HTTPRoute\nmetadata: {name: r, annotations: {note: \"café ☕\"}}\nspec:\n  rules:\n    - backendRefs: [&a {name: a}, {name: b, weight: 3}]  # → ok\n";
    let e = edit(
        text,
        &ObjRef::new("default", "r"),
        "b",
        WeightChange::Set(60),
    );
    assert_eq!(
        e.text,
        text.replace("{name: a}", "{name: a, weight: 40}")
            .replace("weight: 3}", "weight: 60}")
    );
    assert_eq!(summary(&e), [(6, "a", None, 40), (6, "b", Some(3), 60)]);
}

#[test]
fn same_name_in_two_namespaces_and_the_default_namespace() {
    let other = "---\nkind: HTTPRoute\nmetadata: {name: cart}\nspec:\n  rules: [{backendRefs: [{name: cart-v1, weight: 90}, {name: cart-v2, weight: 10}]}]\n";
    let text = format!("{FILE}{other}");
    let e = edit(&text, &cart(), "cart-v2", WeightChange::Set(50));
    assert!(e.text.ends_with(other), "default/cart untouched");
    assert!(e.text.contains("cart-v2, weight: 50}"));
    let e = edit(
        &text,
        &ObjRef::new("default", "cart"),
        "cart-v2",
        WeightChange::Set(50),
    );
    assert!(e.text.starts_with(FILE), "shop/cart untouched");
    assert!(e
        .text
        .ends_with("[{name: cart-v1, weight: 50}, {name: cart-v2, weight: 50}]}]\n"));
    assert_eq!(summary(&e)[0].0, 36);
}

#[test]
fn shares_are_proportional_with_the_remainder_to_the_first() {
    // 70 shared 60:30 (2:1) → 46 and 23, remainder 1 to the first.
    assert_eq!(share(&[10, 60, 30], 0, 30), Some(vec![30, 47, 23]));
    // All others at 0: equal shares.
    assert_eq!(share(&[5, 0, 0, 0], 0, 0), Some(vec![0, 34, 33, 33]));
    // A drained backend stays drained; the remainder goes to the first that has a share.
    assert_eq!(share(&[1, 0, 5, 5], 0, 29), Some(vec![29, 0, 36, 35]));
    assert_eq!(share(&[100, 0], 1, 100), Some(vec![0, 100]));
    assert_eq!(share(&[7], 0, 100), Some(vec![100]));
    assert_eq!(share(&[7], 0, 50), None);
}

#[test]
fn named_and_indexed_rules() {
    let text = "\
kind: HTTPRoute
metadata: {name: r}
spec:
  rules:
    - backendRefs: [{name: a}, {name: b}]
    - name: beta
      backendRefs: [{name: a, weight: 0}, {name: b, weight: 100}]
";
    let r = ObjRef::new("default", "r");
    let ambiguous = err(text, &r, RuleSelector::Auto, "a", WeightChange::Promote);
    assert_eq!(
        ambiguous.to_string(),
        "HTTPRoute default/r: backendRef \"a\" is in several rules (rule 0 at line 5, rule 1 at line 6); choose one by name or index"
    );
    assert_eq!(ambiguous.line(), Some(5));
    let e = set_weights(
        text,
        &r,
        &RuleSelector::from_arg(Some("beta")),
        "a",
        WeightChange::Promote,
    )
    .unwrap();
    assert_eq!(e.rule_label(), "default/r rule 1 (beta)");
    assert!(e
        .text
        .ends_with("[{name: a, weight: 100}, {name: b, weight: 0}]\n"));
    let e = set_weights(
        text,
        &r,
        &RuleSelector::from_arg(Some("0")),
        "a",
        WeightChange::Set(20),
    )
    .unwrap();
    assert!(e
        .text
        .contains("[{name: a, weight: 20}, {name: b, weight: 80}]\n"));
    let missing = err(text, &r, RuleSelector::Index(7), "a", WeightChange::Promote);
    assert_eq!(missing.to_string(), "HTTPRoute default/r: no rule 7");
    assert_eq!(missing.line(), Some(1));
    let missing = err(
        text,
        &r,
        RuleSelector::Name("gamma".into()),
        "a",
        WeightChange::Promote,
    );
    assert_eq!(
        missing.to_string(),
        "HTTPRoute default/r: no rule named \"gamma\""
    );
}

#[test]
fn errors_name_the_route_and_line() {
    let e = err(
        FILE,
        &ObjRef::new("default", "cart"),
        RuleSelector::Auto,
        "cart-v2",
        WeightChange::Promote,
    );
    assert_eq!(
        e,
        RolloutError::RouteNotFound {
            route: ObjRef::new("default", "cart")
        }
    );
    assert_eq!(e.to_string(), "HTTPRoute default/cart not found");
    let e = err(
        FILE,
        &cart(),
        RuleSelector::Auto,
        "cart-v9",
        WeightChange::Promote,
    );
    assert_eq!(
        e.to_string(),
        "HTTPRoute shop/cart: no rule has a backendRef named \"cart-v9\""
    );
    assert_eq!(e.line(), Some(10));
    let e = err(
        FILE,
        &cart(),
        RuleSelector::Auto,
        "cart-v2",
        WeightChange::Set(101),
    );
    assert_eq!(e, RolloutError::WeightOutOfRange(101));
    let e = err(
        FILE,
        &cart(),
        RuleSelector::Index(1),
        "cart-v2",
        WeightChange::Promote,
    );
    assert_eq!(
        e.to_string(),
        "HTTPRoute shop/cart rule 1: no backendRef named \"cart-v2\""
    );
    assert_eq!(e.line(), Some(29));
    let e = err(
        FILE,
        &cart(),
        RuleSelector::Auto,
        "cart-admin",
        WeightChange::Abort,
    );
    assert!(
        matches!(
            e,
            RolloutError::NoOtherBackends {
                rest: 100,
                line: 31,
                ..
            }
        ),
        "{e:?}"
    );
    let dup = format!("{FILE}{}", &FILE[FILE.find("---").unwrap_or(0)..]);
    let e = err(
        &dup,
        &cart(),
        RuleSelector::Auto,
        "cart-v2",
        WeightChange::Promote,
    );
    assert!(
        matches!(
            e,
            RolloutError::DuplicateRoute {
                line: 34,
                other: 10,
                ..
            }
        ),
        "{e:?}"
    );
    let bad = FILE.replace("weight: 90 ", "weight: ninety ");
    let e = err(
        &bad,
        &cart(),
        RuleSelector::Auto,
        "cart-v2",
        WeightChange::Promote,
    );
    assert_eq!(
        e.to_string(),
        "HTTPRoute shop/cart: backendRef \"cart-v1\" has weight \"ninety\", not a whole number"
    );
    assert_eq!(e.line(), Some(25));
    let pair = "kind: HTTPRoute\nmetadata: {name: p}\nspec:\n  rules: [{backendRefs: [name: a, {name: b}]}]\n";
    let e = err(
        pair,
        &ObjRef::new("default", "p"),
        RuleSelector::Auto,
        "b",
        WeightChange::Promote,
    );
    assert_eq!(
        e.to_string(),
        "HTTPRoute default/p: backendRef \"a\" without braces in a flow sequence cannot be edited in place"
    );
    let broken = FILE.replace("rules:\n", "rules: [\n");
    let e = err(
        &broken,
        &cart(),
        RuleSelector::Auto,
        "cart-v2",
        WeightChange::Promote,
    );
    assert!(matches!(e, RolloutError::Syntax { .. }), "{e:?}");
}

#[test]
fn the_edited_set_still_builds() {
    let backends = "\
---
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata: {name: cart-v1, namespace: shop}
spec: {endpoints: [{address: \"127.0.0.1:9001\"}]}
---
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata: {name: cart-v2, namespace: shop}
spec: {endpoints: [{address: \"127.0.0.1:9002\"}]}
---
apiVersion: switchyard.dev/v1alpha1
kind: Backend
metadata: {name: cart-admin, namespace: shop}
spec: {endpoints: [{address: \"127.0.0.1:9003\"}]}
";
    let e = edit(FILE, &cart(), "cart-v2", WeightChange::Set(30));
    let files = [
        crate::SourceFile::new("routes.yaml", e.text),
        crate::SourceFile::new("backends.yaml", backends),
    ];
    if let Err(d) = crate::build(&files) {
        panic!("{d:?}");
    }
}
