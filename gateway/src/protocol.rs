//! The subscription protocol between the control service and its gateways: the messages, the
//! headers that carry them and the paths they use. Both sides use these types, so the wire
//! format is defined once.
//!
//! A gateway long-polls `GET /v1/watch` with what it has applied and staged. The control
//! service answers at once when there is something for it, and otherwise holds the request
//! until there is, or until the poll's wait runs out (204). The answer's `x-switchyard-update`
//! header says what to do:
//! - `apply`: compile the body's view and swap it in now;
//! - `stage`: compile it and hold it, then ack `staged` (phase one of a fleet-atomic commit);
//! - `commit`: swap in the staged generation named by `x-switchyard-generation` (no body).
//!
//! Every outcome is reported with `POST /v1/ack`; a failed one is a NACK carrying the error.

use serde::{Deserialize, Serialize};
use switchyard_config::SourceFile;

pub const WATCH_PATH: &str = "/v1/watch";
pub const ACK_PATH: &str = "/v1/ack";
/// What the watch answer asks for: `apply`, `stage` or `commit`.
pub const UPDATE_HEADER: &str = "x-switchyard-update";
/// The generation a watch answer is about.
pub const GENERATION_HEADER: &str = "x-switchyard-generation";
/// How long the control service holds a watch with nothing to send.
pub const WATCH_WAIT_SECS: u64 = 25;

/// What a watch answer asks the gateway to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Update {
    Apply,
    Stage,
    Commit,
}

impl Update {
    pub fn as_str(self) -> &'static str {
        match self {
            Update::Apply => "apply",
            Update::Stage => "stage",
            Update::Commit => "commit",
        }
    }

    pub fn parse(s: &str) -> Option<Update> {
        match s {
            "apply" => Some(Update::Apply),
            "stage" => Some(Update::Stage),
            "commit" => Some(Update::Commit),
            _ => None,
        }
    }
}

/// True when `wanted` (`--gateway`: "namespace/name" or a bare "name") names the Gateway
/// `id` ("namespace/name").
pub fn gateway_matches(wanted: &str, id: &str) -> bool {
    wanted == id || id.split_once('/').is_some_and(|(_, name)| name == wanted)
}

/// One file of a view on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireFile {
    pub path: String,
    pub contents: String,
}

/// A generation as one gateway sees it: its Gateway's view of the whole set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    pub generation: u64,
    /// Digest of the operator's whole set (what `switchyard status` shows).
    pub digest: String,
    /// The Gateway object the view is for ("namespace/name").
    pub gateway: String,
    pub zone: Option<String>,
    pub files: Vec<WireFile>,
}

impl Payload {
    pub fn source_files(&self) -> Vec<SourceFile> {
        self.files
            .iter()
            .map(|f| SourceFile::new(&f.path, f.contents.clone()))
            .collect()
    }
}

/// The query of a watch: who is asking and what it has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchQuery {
    /// The gateway instance (`--name`).
    pub name: String,
    pub zone: String,
    /// The Gateway object (`--gateway`), when the zone has several.
    pub gateway: Option<String>,
    /// The generation in force (0: none).
    pub applied: u64,
    /// The generation compiled and waiting for a commit (0: none).
    pub staged: u64,
}

impl WatchQuery {
    /// `name=..&zone=..&applied=..&staged=..[&gateway=..]`, percent-encoded.
    pub fn to_query(&self) -> String {
        let enc = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let mut q = format!(
            "name={}&zone={}&applied={}&staged={}",
            enc(&self.name),
            enc(&self.zone),
            self.applied,
            self.staged
        );
        if let Some(g) = &self.gateway {
            q.push_str("&gateway=");
            q.push_str(&enc(g));
        }
        q
    }

    /// Parses [`WatchQuery::to_query`]'s output; the error names the bad or missing field.
    pub fn from_query(query: &str) -> Result<WatchQuery, String> {
        let mut q = WatchQuery {
            name: String::new(),
            zone: String::new(),
            gateway: None,
            applied: 0,
            staged: 0,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_encoding::percent_decode_str(v)
                .decode_utf8()
                .map_err(|_| format!("{k}: not UTF-8"))?
                .into_owned();
            let number = |v: &str| v.parse::<u64>().map_err(|_| format!("{k}: not a number"));
            match k {
                "name" => q.name = v,
                "zone" => q.zone = v,
                "gateway" => q.gateway = Some(v),
                "applied" => q.applied = number(&v)?,
                "staged" => q.staged = number(&v)?,
                _ => return Err(format!("unknown parameter {k:?}")),
            }
        }
        if q.name.is_empty() {
            return Err("name: missing".into());
        }
        if q.zone.is_empty() {
            return Err("zone: missing".into());
        }
        Ok(q)
    }
}

/// Which phase an ack reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Compiled and held (phase one).
    Staged,
    /// Swapped in and serving.
    Applied,
}

/// A gateway's report on one generation; `error` set means NACK.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub name: String,
    pub zone: String,
    pub generation: u64,
    pub phase: Phase,
    pub error: Option<String>,
    /// When the gateway swapped the generation in (applied acks), by its clock.
    pub at_unix_us: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_query_round_trips_and_names_bad_fields() {
        let q = WatchQuery {
            name: "gw a&1".into(),
            zone: "zone-a".into(),
            gateway: Some("default/edge".into()),
            applied: 7,
            staged: 8,
        };
        assert_eq!(WatchQuery::from_query(&q.to_query()).unwrap(), q);
        assert_eq!(
            WatchQuery::from_query("zone=a").unwrap_err(),
            "name: missing"
        );
        assert_eq!(
            WatchQuery::from_query("name=a&zone=b&applied=x").unwrap_err(),
            "applied: not a number"
        );
    }
}
