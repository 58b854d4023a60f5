//! BackendPolicy `locality`: compiled values, defaults and positioned diagnostics.

use super::{errors, ok, pos};
use crate::{Locality, ObjRef};

#[test]
fn locality_compiles_with_defaults() {
    let yaml = "\
apiVersion: switchyard.dev/v1alpha1
kind: BackendPolicy
metadata: {name: cart, namespace: shop}
spec:
  targetRefs: [{kind: Backend, name: cart-v1}]
  locality:
    failover: [zone-c, zone-b]
    minHealthyPercent: 50
";
    let g = ok(&[("p.yaml", yaml)]);
    let p = &g.backends[&ObjRef::new("shop", "cart-v1")].policy;
    assert_eq!(
        p.locality,
        Locality {
            failover: vec!["zone-c".into(), "zone-b".into()],
            min_healthy_percent: 50,
        }
    );
    let other = &g.backends[&ObjRef::new("shop", "cart-v2")].policy;
    assert_eq!(other.locality, Locality::default());
    assert_eq!(other.locality.min_healthy_percent, 1);
}

#[test]
fn locality_errors_name_the_field() {
    let yaml = "\
apiVersion: switchyard.dev/v1alpha1
kind: BackendPolicy
metadata: {name: bad, namespace: shop}
spec:
  targetRefs: [{kind: Backend, name: cart-v1}]
  locality:
    failover: [zone-b, Zone_C, zone-b]
    minHealthyPercent: 120
    weights: {}
";
    let got = errors(&[("p.yaml", yaml)]);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].starts_with(&format!("p.yaml:{}:", pos(yaml, "weights", 0))),
        "{got:#?}"
    );
    assert!(got[0].contains("weights"), "{got:#?}");
    let yaml2 = yaml.replace("    weights: {}\n", "");
    let yaml2 = yaml2.as_str();
    let e2 = |needle: &str, nth, field: &str, msg: &str| {
        format!(
            "p.yaml:{}: BackendPolicy shop/bad spec.{field}: {msg}",
            pos(yaml2, needle, nth)
        )
    };
    assert_eq!(
        errors(&[("p.yaml", yaml2)]),
        [
            e2(
                "Zone_C",
                0,
                "locality.failover[1]",
                "zone \"Zone_C\": only lowercase letters, digits and '-' are allowed"
            ),
            e2(
                "zone-b]",
                0,
                "locality.failover[2]",
                "zone \"zone-b\" is listed twice"
            ),
            e2(
                "120",
                0,
                "locality.minHealthyPercent",
                "120 is not a percentage from 0 to 100"
            ),
        ]
    );
}
