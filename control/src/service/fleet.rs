//! The fleet: every gateway the control service knows, the generation each should run, and
//! the two-phase commit that makes a generation flip everywhere at once.
//!
//! Pure state, no I/O: the API feeds it polls and acks, the publisher feeds it generations,
//! and a ticker expires stages. Under `atomic: fleet` (or `zone`), a new generation is first
//! *staged* on every live gateway (of the fleet, or of each zone); each compiles it and acks.
//! When the last target acks, the generation is *committed* and every target flips at once. A
//! NACK, or a target that does not ack before the deadline, abandons the commit: the previous
//! generation stays published. Under `atomic: off` a generation is applied as it arrives.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde::Serialize;
use switchyard_gateway::protocol::{gateway_matches, Ack, Phase, Update, WatchQuery};

/// The commit policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Atomic {
    /// Every live gateway stages; all flip together.
    Fleet,
    /// Each zone stages and flips on its own.
    Zone,
    /// Apply as published; no staging.
    Off,
}

/// One Gateway object's view of a generation, serialized once for every gateway serving it.
#[derive(Debug)]
pub struct ViewBody {
    /// "namespace/name".
    pub gateway: String,
    pub zone: Option<String>,
    pub body: Bytes,
}

/// A generation ready to send.
#[derive(Debug)]
pub struct Publication {
    pub number: u64,
    pub digest: String,
    pub published_at: SystemTime,
    /// Newest modification time of the changed files: where propagation latency starts.
    pub saved_at: SystemTime,
    pub changed_files: Vec<String>,
    pub rollback_of: Option<u64>,
    pub views: Vec<ViewBody>,
}

impl Publication {
    /// The view for a gateway in `zone`, by explicit Gateway name or the zone's only one.
    pub fn view_for(&self, zone: &str, gateway: Option<&str>) -> Result<&ViewBody, String> {
        match gateway {
            Some(g) => {
                let view = self
                    .views
                    .iter()
                    .find(|v| gateway_matches(g, &v.gateway))
                    .ok_or_else(|| format!("generation {} has no Gateway {g}", self.number))?;
                match view.zone.as_deref() {
                    Some(z) if z != zone => Err(format!(
                        "Gateway {} is in zone {z}, not {zone}",
                        view.gateway
                    )),
                    _ => Ok(view),
                }
            }
            None => {
                let mut in_zone = self
                    .views
                    .iter()
                    .filter(|v| v.zone.as_deref() == Some(zone));
                match (in_zone.next(), in_zone.next()) {
                    (Some(v), None) => Ok(v),
                    (None, _) => Err(format!(
                        "generation {} has no Gateway labelled switchyard.dev/zone: {zone}",
                        self.number
                    )),
                    (Some(_), Some(_)) => Err(format!(
                        "zone {zone} has several Gateways in generation {}; pass --gateway",
                        self.number
                    )),
                }
            }
        }
    }
}

/// What a gateway instance last told us.
#[derive(Debug, Clone)]
pub struct GatewayRecord {
    pub zone: String,
    pub gateway: Option<String>,
    pub applied: u64,
    pub staged: u64,
    pub acked_at: Option<SystemTime>,
    pub propagation: Option<Duration>,
    pub last_error: Option<String>,
    /// A generation this gateway refused; it is not sent again.
    pub nacked: Option<u64>,
    last_seen: Instant,
    polling: usize,
}

/// A two-phase commit in progress for one group (the fleet, or one zone).
#[derive(Debug)]
struct Stage {
    publication: Arc<Publication>,
    targets: BTreeSet<String>,
    staged: BTreeSet<String>,
    deadline: Instant,
}

/// The flips of the last commit, for the skew.
#[derive(Debug, Clone, Serialize)]
pub struct CommitRecord {
    pub generation: u64,
    pub gateways: usize,
    pub flip_skew_ms: f64,
    #[serde(skip)]
    flips_us: BTreeMap<String, u64>,
    #[serde(skip)]
    targets: BTreeSet<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Abandoned {
    pub generation: u64,
    pub reason: String,
    pub at_unix_ms: u64,
}

/// What a poll should answer.
#[derive(Debug)]
pub enum Reply {
    Send {
        update: Update,
        generation: u64,
        body: Bytes,
    },
    /// Nothing yet: wait for a change.
    Wait,
    /// The gateway cannot be served (no Gateway for its zone): say why.
    Refuse(String),
}

/// Events the caller turns into metrics and logs.
#[derive(Debug, PartialEq)]
pub enum Event {
    Committed { generation: u64, group: String },
    Abandoned { generation: u64, reason: String },
    Nack { zone: String },
    Propagated { zone: String, seconds: f64 },
}

pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Debug)]
pub struct Fleet {
    pub atomic: Atomic,
    stage_timeout: Duration,
    stale_after: Duration,
    /// The newest publication accepted; what groups without their own entry run.
    base: Option<Arc<Publication>>,
    /// Groups pinned to another publication while they stage (or after an abandoned stage).
    pinned: BTreeMap<String, Arc<Publication>>,
    stages: BTreeMap<String, Stage>,
    gateways: BTreeMap<String, GatewayRecord>,
    pub last_commit: Option<CommitRecord>,
    pub last_abandoned: Option<Abandoned>,
}

impl Fleet {
    pub fn new(atomic: Atomic, stage_timeout: Duration, stale_after: Duration) -> Fleet {
        Fleet {
            atomic,
            stage_timeout,
            stale_after,
            base: None,
            pinned: BTreeMap::new(),
            stages: BTreeMap::new(),
            gateways: BTreeMap::new(),
            last_commit: None,
            last_abandoned: None,
        }
    }

    fn group_of(&self, zone: &str) -> String {
        match self.atomic {
            Atomic::Zone => zone.to_string(),
            Atomic::Fleet | Atomic::Off => "*".to_string(),
        }
    }

    /// The publication gateways of `zone` should run.
    pub fn current_for(&self, zone: &str) -> Option<&Arc<Publication>> {
        self.pinned.get(&self.group_of(zone)).or(self.base.as_ref())
    }

    /// The published generation: the fleet's, or under `zone` the newest.
    pub fn current(&self) -> Option<&Arc<Publication>> {
        match self.atomic {
            Atomic::Fleet => self.pinned.get("*").or(self.base.as_ref()),
            Atomic::Zone | Atomic::Off => self.base.as_ref(),
        }
    }

    fn is_live(&self, g: &GatewayRecord, now: Instant) -> bool {
        g.polling > 0 || now.duration_since(g.last_seen) < self.stale_after
    }

    /// Accepts a new generation: applies it at once, or stages it on every live gateway that
    /// has something to protect.
    pub fn publish(&mut self, p: Arc<Publication>, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        for (_, stage) in std::mem::take(&mut self.stages) {
            events.push(self.abandon_event(
                stage.publication.number,
                format!("superseded by generation {}", p.number),
            ));
        }
        let previous = self.base.replace(p.clone());
        let old_pins = std::mem::take(&mut self.pinned);
        if self.atomic == Atomic::Off {
            return events;
        }
        let mut targets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (name, g) in &self.gateways {
            if g.applied > 0 && self.is_live(g, now) {
                targets
                    .entry(self.group_of(&g.zone))
                    .or_default()
                    .insert(name.clone());
            }
        }
        for (group, targets) in targets {
            let running = old_pins.get(&group).or(previous.as_ref()).cloned();
            if let Some(running) = running {
                self.pinned.insert(group.clone(), running);
            }
            self.stages.insert(
                group,
                Stage {
                    publication: p.clone(),
                    targets,
                    staged: BTreeSet::new(),
                    deadline: now + self.stage_timeout,
                },
            );
        }
        events
    }

    fn abandon_event(&mut self, generation: u64, reason: String) -> Event {
        self.last_abandoned = Some(Abandoned {
            generation,
            reason: reason.clone(),
            at_unix_ms: unix_ms(SystemTime::now()),
        });
        Event::Abandoned { generation, reason }
    }

    /// Abandons a group's stage: the group stays on what it runs. Under `fleet`, the
    /// published generation goes back to it.
    fn abandon(&mut self, group: &str, reason: String) -> Vec<Event> {
        let Some(stage) = self.stages.remove(group) else {
            return Vec::new();
        };
        if self.atomic == Atomic::Fleet {
            if let Some(running) = self.pinned.remove(group) {
                self.base = Some(running);
            }
        }
        vec![self.abandon_event(stage.publication.number, reason)]
    }

    /// Abandons stages past their deadline.
    pub fn expire(&mut self, now: Instant) -> Vec<Event> {
        let expired: Vec<(String, Vec<String>)> = self
            .stages
            .iter()
            .filter(|(_, s)| now >= s.deadline)
            .map(|(g, s)| {
                (
                    g.clone(),
                    s.targets.difference(&s.staged).cloned().collect(),
                )
            })
            .collect();
        let mut events = Vec::new();
        for (group, missing) in expired {
            let n = self.stages.get(&group).map_or(0, |s| s.publication.number);
            let reason = format!(
                "generation {n}: gateway(s) {} did not stage within {} ms",
                missing.join(", "),
                self.stage_timeout.as_millis()
            );
            events.extend(self.abandon(&group, reason));
        }
        events
    }

    /// The earliest stage deadline, for the ticker.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.stages.values().map(|s| s.deadline).min()
    }

    /// The record of a gateway, created on first contact; marks it seen.
    fn touch(&mut self, name: &str, zone: &str, now: Instant) -> &mut GatewayRecord {
        let g = self
            .gateways
            .entry(name.to_string())
            .or_insert_with(|| GatewayRecord {
                zone: zone.to_string(),
                gateway: None,
                applied: 0,
                staged: 0,
                acked_at: None,
                propagation: None,
                last_error: None,
                nacked: None,
                last_seen: now,
                polling: 0,
            });
        g.zone = zone.to_string();
        g.last_seen = now;
        g
    }

    /// Takes what a poll says the gateway has.
    fn record(&mut self, q: &WatchQuery, now: Instant) -> &mut GatewayRecord {
        let g = self.touch(&q.name, &q.zone, now);
        g.gateway = q.gateway.clone();
        g.applied = q.applied;
        g.staged = q.staged;
        g
    }

    /// A poll starts (`start`) or ends: keeps liveness true while a long-poll is held.
    pub fn polling(&mut self, q: &WatchQuery, start: bool, now: Instant) {
        let g = self.record(q, now);
        if start {
            g.polling += 1;
        } else {
            g.polling = g.polling.saturating_sub(1);
        }
    }

    /// Decides what a poll gets now.
    pub fn decide(&mut self, q: &WatchQuery, now: Instant) -> Reply {
        let nacked = self.record(q, now).nacked;
        let Some(current) = self.current_for(&q.zone).cloned() else {
            return Reply::Wait;
        };
        if q.applied != current.number && nacked != Some(current.number) {
            if q.staged == current.number {
                return Reply::Send {
                    update: Update::Commit,
                    generation: current.number,
                    body: Bytes::new(),
                };
            }
            return match current.view_for(&q.zone, q.gateway.as_deref()) {
                Ok(v) => Reply::Send {
                    update: Update::Apply,
                    generation: current.number,
                    body: v.body.clone(),
                },
                Err(e) => Reply::Refuse(e),
            };
        }
        let group = self.group_of(&q.zone);
        if let Some(stage) = self.stages.get(&group) {
            let n = stage.publication.number;
            if stage.targets.contains(&q.name) && !stage.staged.contains(&q.name) && q.staged != n {
                return match stage.publication.view_for(&q.zone, q.gateway.as_deref()) {
                    Ok(v) => Reply::Send {
                        update: Update::Stage,
                        generation: n,
                        body: v.body.clone(),
                    },
                    Err(e) => {
                        let reason = format!(
                            "gateway {} ({}) cannot stage generation {n}: {e}",
                            q.name, q.zone
                        );
                        self.abandon(&group, reason);
                        Reply::Refuse(e)
                    }
                };
            }
        }
        Reply::Wait
    }

    /// Takes an ack or NACK.
    pub fn ack(&mut self, a: &Ack, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        let group = self.group_of(&a.zone);
        let rec = self.touch(&a.name, &a.zone, now);
        if let Some(e) = &a.error {
            rec.last_error = Some(e.clone());
            events.push(Event::Nack {
                zone: a.zone.clone(),
            });
            match a.phase {
                Phase::Applied => rec.nacked = Some(a.generation),
                Phase::Staged => {
                    let staging = self
                        .stages
                        .get(&group)
                        .is_some_and(|s| s.publication.number == a.generation);
                    if staging {
                        let reason = format!(
                            "gateway {} ({}) failed to stage generation {}: {e}",
                            a.name, a.zone, a.generation
                        );
                        events.extend(self.abandon(&group, reason));
                    }
                }
            }
            return events;
        }
        match a.phase {
            Phase::Staged => {
                rec.staged = a.generation;
                let Some(stage) = self.stages.get_mut(&group) else {
                    return events;
                };
                if stage.publication.number != a.generation {
                    return events;
                }
                stage.staged.insert(a.name.clone());
                if stage.targets.is_subset(&stage.staged) {
                    let stage = self.stages.remove(&group);
                    if let Some(stage) = stage {
                        self.commit(&group, stage, &mut events);
                    }
                }
            }
            Phase::Applied => {
                let saved_at = self
                    .publication(a.generation)
                    .map(|p| p.saved_at)
                    .unwrap_or_else(SystemTime::now);
                let acked_at = SystemTime::now();
                let rec = self.touch(&a.name, &a.zone, now);
                rec.applied = a.generation;
                rec.acked_at = Some(acked_at);
                rec.last_error = None;
                rec.nacked = None;
                let propagation = acked_at.duration_since(saved_at).unwrap_or_default();
                rec.propagation = Some(propagation);
                events.push(Event::Propagated {
                    zone: a.zone.clone(),
                    seconds: propagation.as_secs_f64(),
                });
                if let Some(c) = self.last_commit.as_mut() {
                    if c.generation == a.generation && c.targets.contains(&a.name) {
                        c.flips_us.insert(a.name.clone(), a.at_unix_us);
                        let (min, max) = c
                            .flips_us
                            .values()
                            .fold((u64::MAX, 0), |(lo, hi), &t| (lo.min(t), hi.max(t)));
                        c.flip_skew_ms = max.saturating_sub(min) as f64 / 1000.0;
                    }
                }
            }
        }
        events
    }

    fn commit(&mut self, group: &str, stage: Stage, events: &mut Vec<Event>) {
        let n = stage.publication.number;
        let newest = self.base.as_ref().is_some_and(|b| b.number == n);
        if newest {
            self.pinned.remove(group);
        } else {
            self.pinned
                .insert(group.to_string(), stage.publication.clone());
        }
        self.last_commit = Some(CommitRecord {
            generation: n,
            gateways: stage.targets.len(),
            flip_skew_ms: 0.0,
            flips_us: BTreeMap::new(),
            targets: stage.targets,
        });
        events.push(Event::Committed {
            generation: n,
            group: group.to_string(),
        });
    }

    /// A publication still referenced (published, pinned or staging) by number.
    fn publication(&self, n: u64) -> Option<&Arc<Publication>> {
        self.base
            .iter()
            .chain(self.pinned.values())
            .chain(self.stages.values().map(|s| &s.publication))
            .find(|p| p.number == n)
    }

    /// True while some live gateway does not run what it should, or a stage is open.
    pub fn converged(&self, now: Instant) -> bool {
        self.stages.is_empty()
            && self.current().is_some()
            && self
                .gateways
                .values()
                .filter(|g| self.is_live(g, now))
                .all(|g| self.current_for(&g.zone).map(|p| p.number) == Some(g.applied))
    }

    /// The per-gateway part of the status document.
    pub fn gateway_status(&self, now: Instant) -> Vec<serde_json::Value> {
        self.gateways
            .iter()
            .map(|(name, g)| {
                let target = self.current_for(&g.zone).map_or(0, |p| p.number);
                let live = self.is_live(g, now);
                let state = if !live {
                    "stale"
                } else if g.nacked.is_some() {
                    "nack"
                } else if g.applied == target {
                    "converged"
                } else {
                    "behind"
                };
                serde_json::json!({
                    "name": name,
                    "zone": g.zone,
                    "gateway": self.current_for(&g.zone)
                        .and_then(|p| p.view_for(&g.zone, g.gateway.as_deref()).ok())
                        .map(|v| v.gateway.clone())
                        .or(g.gateway.clone()),
                    "applied": g.applied,
                    "staged": (g.staged > 0).then_some(g.staged),
                    "acked_at_unix_ms": g.acked_at.map(unix_ms),
                    "lag": target.saturating_sub(g.applied),
                    "propagation_ms": g.propagation.map(|d| d.as_secs_f64() * 1000.0),
                    "last_error": g.last_error,
                    "live": live,
                    "state": state,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
