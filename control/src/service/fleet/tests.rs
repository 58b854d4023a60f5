//! The fleet state machine, driven the way the API drives it.

use super::*;

fn publication(n: u64) -> Arc<Publication> {
    let view = |gw: &str, zone: &str| ViewBody {
        gateway: format!("default/{gw}"),
        zone: Some(zone.to_string()),
        body: Bytes::from(format!("view {gw} {n}")),
    };
    Arc::new(Publication {
        number: n,
        digest: format!("d{n}"),
        published_at: SystemTime::now(),
        saved_at: SystemTime::now(),
        changed_files: Vec::new(),
        rollback_of: None,
        views: vec![view("a", "zone-a"), view("b", "zone-b")],
    })
}

fn query(name: &str, zone: &str, applied: u64, staged: u64) -> WatchQuery {
    WatchQuery {
        name: name.into(),
        zone: zone.into(),
        gateway: None,
        applied,
        staged,
    }
}

fn ack(name: &str, zone: &str, n: u64, phase: Phase, error: Option<&str>) -> Ack {
    Ack {
        name: name.into(),
        zone: zone.into(),
        generation: n,
        phase,
        error: error.map(str::to_string),
        at_unix_us: 1_000 * n,
    }
}

fn update(r: Reply) -> Option<(Update, u64)> {
    match r {
        Reply::Send {
            update, generation, ..
        } => Some((update, generation)),
        _ => None,
    }
}

/// Three gateways, two zones, all running generation 1.
fn running(atomic: Atomic) -> (Fleet, Instant) {
    let now = Instant::now();
    let mut f = Fleet::new(atomic, Duration::from_secs(5), Duration::from_secs(30));
    f.publish(publication(1), now);
    for (name, zone) in [("a1", "zone-a"), ("a2", "zone-a"), ("b1", "zone-b")] {
        assert_eq!(
            update(f.decide(&query(name, zone, 0, 0), now)),
            Some((Update::Apply, 1))
        );
        f.ack(&ack(name, zone, 1, Phase::Applied, None), now);
        assert!(matches!(
            f.decide(&query(name, zone, 1, 0), now),
            Reply::Wait
        ));
    }
    assert!(f.converged(now));
    (f, now)
}

const GWS: [(&str, &str); 3] = [("a1", "zone-a"), ("a2", "zone-a"), ("b1", "zone-b")];

#[test]
fn fleet_stages_everywhere_then_commits_together() {
    let (mut f, now) = running(Atomic::Fleet);
    f.publish(publication(2), now);
    assert!(!f.converged(now));
    assert_eq!(
        f.current().unwrap().number,
        1,
        "not published before commit"
    );
    for (i, (name, zone)) in GWS.iter().enumerate() {
        assert_eq!(
            update(f.decide(&query(name, zone, 1, 0), now)),
            Some((Update::Stage, 2))
        );
        let events = f.ack(&ack(name, zone, 2, Phase::Staged, None), now);
        let committed = events
            .iter()
            .any(|e| matches!(e, Event::Committed { generation: 2, .. }));
        assert_eq!(
            committed,
            i == GWS.len() - 1,
            "commit only after the last stage"
        );
    }
    assert_eq!(f.current().unwrap().number, 2);
    for (name, zone) in GWS {
        assert_eq!(
            update(f.decide(&query(name, zone, 1, 2), now)),
            Some((Update::Commit, 2))
        );
    }
    for (i, (name, zone)) in GWS.iter().enumerate() {
        let mut a = ack(name, zone, 2, Phase::Applied, None);
        a.at_unix_us = 5_000_000 + 1_500 * i as u64;
        f.ack(&a, now);
    }
    let c = f.last_commit.clone().unwrap();
    assert_eq!((c.generation, c.gateways), (2, 3));
    assert!((c.flip_skew_ms - 3.0).abs() < 1e-9, "{}", c.flip_skew_ms);
    assert!(f.converged(now));
}

#[test]
fn a_stage_nack_abandons_the_fleet_commit() {
    let (mut f, now) = running(Atomic::Fleet);
    f.publish(publication(2), now);
    f.ack(&ack("a1", "zone-a", 2, Phase::Staged, None), now);
    f.ack(&ack("a2", "zone-a", 2, Phase::Staged, None), now);
    let events = f.ack(
        &ack("b1", "zone-b", 2, Phase::Staged, Some("ports changed")),
        now,
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Abandoned { generation: 2, .. })));
    assert_eq!(f.current().unwrap().number, 1);
    let why = f.last_abandoned.clone().unwrap();
    assert!(
        why.reason.contains("b1") && why.reason.contains("ports changed"),
        "{}",
        why.reason
    );
    // Nobody is told to flip: the staged gateways stay on 1.
    for (name, zone) in GWS {
        assert!(matches!(
            f.decide(&query(name, zone, 1, 2), now),
            Reply::Wait
        ));
    }
    assert!(f.converged(now));
}

#[test]
fn a_silent_gateway_abandons_the_commit_at_the_deadline() {
    let (mut f, now) = running(Atomic::Fleet);
    f.publish(publication(2), now);
    f.ack(&ack("a1", "zone-a", 2, Phase::Staged, None), now);
    assert!(f.expire(now + Duration::from_secs(1)).is_empty());
    let events = f.expire(now + Duration::from_secs(6));
    assert_eq!(events.len(), 1);
    let reason = &f.last_abandoned.as_ref().unwrap().reason;
    assert!(reason.contains("a2, b1"), "{reason}");
    assert_eq!(f.current().unwrap().number, 1);
}

#[test]
fn zone_mode_commits_each_zone_on_its_own() {
    let (mut f, now) = running(Atomic::Zone);
    f.publish(publication(2), now);
    f.ack(&ack("b1", "zone-b", 2, Phase::Staged, Some("boom")), now);
    f.ack(&ack("a1", "zone-a", 2, Phase::Staged, None), now);
    f.ack(&ack("a2", "zone-a", 2, Phase::Staged, None), now);
    assert_eq!(f.current_for("zone-a").unwrap().number, 2);
    assert_eq!(f.current_for("zone-b").unwrap().number, 1);
    assert_eq!(
        update(f.decide(&query("a1", "zone-a", 1, 2), now)),
        Some((Update::Commit, 2))
    );
    assert!(matches!(
        f.decide(&query("b1", "zone-b", 1, 0), now),
        Reply::Wait
    ));
}

#[test]
fn off_applies_at_once_and_does_not_resend_a_nacked_generation() {
    let (mut f, now) = running(Atomic::Off);
    f.publish(publication(2), now);
    assert_eq!(f.current().unwrap().number, 2);
    assert_eq!(
        update(f.decide(&query("b1", "zone-b", 1, 0), now)),
        Some((Update::Apply, 2))
    );
    f.ack(
        &ack("b1", "zone-b", 2, Phase::Applied, Some("bad cert")),
        now,
    );
    assert!(matches!(
        f.decide(&query("b1", "zone-b", 1, 0), now),
        Reply::Wait
    ));
    assert!(!f.converged(now));
    f.publish(publication(3), now);
    assert_eq!(
        update(f.decide(&query("b1", "zone-b", 1, 0), now)),
        Some((Update::Apply, 3))
    );
}

#[test]
fn a_zone_without_a_gateway_object_is_refused_with_the_reason() {
    let (mut f, now) = running(Atomic::Off);
    match f.decide(&query("c1", "zone-c", 0, 0), now) {
        Reply::Refuse(why) => assert!(why.contains("zone-c"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn stale_gateways_are_not_targets() {
    let (mut f, now) = running(Atomic::Fleet);
    let later = now + Duration::from_secs(60);
    // Only a1 is still around.
    f.polling(&query("a1", "zone-a", 1, 0), true, later);
    f.publish(publication(2), later);
    let events = f.ack(&ack("a1", "zone-a", 2, Phase::Staged, None), later);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Committed { generation: 2, .. })));
}
