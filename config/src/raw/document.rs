//! One YAML document: the apiVersion/kind envelope, metadata, and the deserializer that picks the spec type by kind.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use super::egress::ExternalServiceSpec;
use super::gateway::GatewaySpec;
use super::route::HttpRouteSpec;
use super::security::{AuthorizationPolicySpec, ClientTrafficPolicySpec};
use super::switchyard::{BackendPolicySpec, BackendSpec, TlsCertificateSpec, TrafficPolicySpec};

/// The supported object kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
    Gateway,
    HttpRoute,
    Backend,
    BackendPolicy,
    TlsCertificate,
    TrafficPolicy,
    ExternalService,
    ClientTrafficPolicy,
    AuthorizationPolicy,
}

impl Kind {
    const ALL: [Kind; 9] = [
        Kind::Gateway,
        Kind::HttpRoute,
        Kind::Backend,
        Kind::BackendPolicy,
        Kind::TlsCertificate,
        Kind::TrafficPolicy,
        Kind::ExternalService,
        Kind::ClientTrafficPolicy,
        Kind::AuthorizationPolicy,
    ];

    /// The `apiVersion` the kind is served under.
    pub(crate) fn api_version(self) -> &'static str {
        match self {
            Kind::Gateway | Kind::HttpRoute => "gateway.networking.k8s.io/v1",
            Kind::Backend
            | Kind::BackendPolicy
            | Kind::TlsCertificate
            | Kind::TrafficPolicy
            | Kind::ExternalService
            | Kind::ClientTrafficPolicy
            | Kind::AuthorizationPolicy => "switchyard.dev/v1alpha1",
        }
    }

    /// The `kind` spelling.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Gateway => "Gateway",
            Kind::HttpRoute => "HTTPRoute",
            Kind::Backend => "Backend",
            Kind::BackendPolicy => "BackendPolicy",
            Kind::TlsCertificate => "TLSCertificate",
            Kind::TrafficPolicy => "TrafficPolicy",
            Kind::ExternalService => "ExternalService",
            Kind::ClientTrafficPolicy => "ClientTrafficPolicy",
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
        }
    }

    /// The kind for an (apiVersion, kind) pair, if supported.
    pub(crate) fn resolve(api_version: &str, kind: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.api_version() == api_version && k.name() == kind)
    }

    /// "gateway.networking.k8s.io/v1 Gateway, ..." for error messages.
    pub(crate) fn supported() -> String {
        Kind::ALL
            .iter()
            .map(|k| format!("{} {}", k.api_version(), k.name()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `metadata`. Server-populated fields are accepted and ignored so that `kubectl get -o yaml`
/// output loads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Metadata {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(rename = "annotations", default)]
    pub _annotations: BTreeMap<String, String>,
    #[serde(rename = "uid", default)]
    _uid: Option<IgnoredAny>,
    #[serde(rename = "resourceVersion", default)]
    _resource_version: Option<IgnoredAny>,
    #[serde(rename = "generation", default)]
    _generation: Option<IgnoredAny>,
    #[serde(rename = "creationTimestamp", default)]
    _creation_timestamp: Option<IgnoredAny>,
    #[serde(rename = "managedFields", default)]
    _managed_fields: Option<IgnoredAny>,
}

fn default_namespace() -> String {
    "default".to_string()
}

/// The spec, typed by kind.
#[derive(Debug)]
pub(crate) enum Spec {
    Gateway(GatewaySpec),
    HttpRoute(HttpRouteSpec),
    Backend(BackendSpec),
    // The policy specs are boxed: they are large, and rare next to routes.
    BackendPolicy(Box<BackendPolicySpec>),
    TlsCertificate(TlsCertificateSpec),
    TrafficPolicy(Box<TrafficPolicySpec>),
    ExternalService(ExternalServiceSpec),
    ClientTrafficPolicy(Box<ClientTrafficPolicySpec>),
    AuthorizationPolicy(Box<AuthorizationPolicySpec>),
    /// apiVersion/kind not supported: the spec was skipped (validation reports it).
    Unsupported,
    /// `spec` came before `apiVersion`/`kind`: the parser reads the document again knowing the kind.
    Deferred,
}

/// One parsed object.
#[derive(Debug)]
pub(crate) struct RawObject {
    pub api_version: String,
    pub kind_name: String,
    pub kind: Option<Kind>,
    pub metadata: Metadata,
    pub spec: Spec,
}

/// What is known about the object so far, so a diagnostic can name it even when parsing fails.
#[derive(Debug, Default)]
pub(crate) struct Header {
    pub kind: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    /// Unknown or repeated top-level keys: (key, message), reported at the key.
    pub problems: Vec<(String, String)>,
}

impl Header {
    /// "HTTPRoute shop/cart", as far as known.
    pub(crate) fn label(&self) -> Option<String> {
        let kind = self.kind.as_deref()?;
        Some(match &self.name {
            Some(name) => format!(
                "{kind} {}/{name}",
                self.namespace.as_deref().unwrap_or("default")
            ),
            None => kind.to_string(),
        })
    }
}

/// Deserializes one document into `Option<RawObject>` (`None` for an empty document).
pub(crate) struct DocSeed<'h> {
    /// The kind, when a first pass found `spec` before `kind`.
    pub known: Option<Kind>,
    pub header: &'h mut Header,
}

impl<'de> DeserializeSeed<'de> for DocSeed<'_> {
    type Value = Option<RawObject>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for DocSeed<'_> {
    type Value = Option<RawObject>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with apiVersion, kind, metadata and spec")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(ObjectVisitor {
            known: self.known,
            header: self.header,
        })
        .map(Some)
    }
}

struct ObjectVisitor<'h> {
    known: Option<Kind>,
    header: &'h mut Header,
}

const FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];

impl<'de> Visitor<'de> for ObjectVisitor<'_> {
    type Value = RawObject;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with apiVersion, kind, metadata and spec")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawObject, A::Error> {
        let mut api_version: Option<String> = None;
        let mut kind_name: Option<String> = None;
        let mut metadata: Option<Metadata> = None;
        let mut spec: Option<Spec> = None;
        let mut seen_status = false;
        while let Some(key) = map.next_key::<String>()? {
            let duplicate = match key.as_str() {
                "apiVersion" => api_version.is_some(),
                "kind" => kind_name.is_some(),
                "metadata" => metadata.is_some(),
                "spec" => spec.is_some(),
                "status" => seen_status,
                other => {
                    let message =
                        <de::value::Error as de::Error>::unknown_field(other, FIELDS).to_string();
                    self.header.problems.push((key.clone(), message));
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if duplicate {
                self.header
                    .problems
                    .push((key.clone(), format!("duplicate field `{key}`")));
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            match key.as_str() {
                "apiVersion" => api_version = Some(map.next_value()?),
                "kind" => {
                    let k: String = map.next_value()?;
                    self.header.kind = Some(k.clone());
                    kind_name = Some(k);
                }
                "metadata" => {
                    let m: Metadata = map.next_value()?;
                    self.header.name = Some(m.name.clone());
                    self.header.namespace = Some(m.namespace.clone());
                    metadata = Some(m);
                }
                "spec" => {
                    let kind = match (&api_version, &kind_name) {
                        (Some(a), Some(k)) => Some(Kind::resolve(a, k)),
                        _ => self.known.map(Some),
                    };
                    spec = Some(match kind {
                        Some(Some(kind)) => next_spec(&mut map, kind)?,
                        Some(None) => {
                            map.next_value::<IgnoredAny>()?;
                            Spec::Unsupported
                        }
                        None => {
                            map.next_value::<IgnoredAny>()?;
                            Spec::Deferred
                        }
                    });
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    seen_status = true;
                }
            }
        }
        let api_version = api_version.ok_or_else(|| de::Error::missing_field("apiVersion"))?;
        let kind_name = kind_name.ok_or_else(|| de::Error::missing_field("kind"))?;
        let metadata = metadata.ok_or_else(|| de::Error::missing_field("metadata"))?;
        let kind = Kind::resolve(&api_version, &kind_name);
        let spec = match spec {
            Some(spec) => spec,
            None if kind.is_none() => Spec::Unsupported,
            None => return Err(de::Error::missing_field("spec")),
        };
        Ok(RawObject {
            api_version,
            kind_name,
            kind,
            metadata,
            spec,
        })
    }
}

fn next_spec<'de, A: MapAccess<'de>>(map: &mut A, kind: Kind) -> Result<Spec, A::Error> {
    Ok(match kind {
        Kind::Gateway => Spec::Gateway(map.next_value()?),
        Kind::HttpRoute => Spec::HttpRoute(map.next_value()?),
        Kind::Backend => Spec::Backend(map.next_value()?),
        Kind::BackendPolicy => Spec::BackendPolicy(map.next_value()?),
        Kind::TlsCertificate => Spec::TlsCertificate(map.next_value()?),
        Kind::TrafficPolicy => Spec::TrafficPolicy(map.next_value()?),
        Kind::ExternalService => Spec::ExternalService(map.next_value()?),
        Kind::ClientTrafficPolicy => Spec::ClientTrafficPolicy(map.next_value()?),
        Kind::AuthorizationPolicy => Spec::AuthorizationPolicy(map.next_value()?),
    })
}
