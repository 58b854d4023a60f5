//! `deploy/systemd`: the units parse as INI sections of `Key=value` lines; ExecStart runs the
//! binary with flags it accepts (specifiers and `${VAR}`s expanded from the unit's own
//! `Environment=` lines); the service restarts on failure, stops with SIGTERM within a
//! TimeoutStopSec above the drain time, runs hardened as an unprivileged user with a
//! StateDirectory holding `--state-dir`, and reads its tokens from an EnvironmentFile.

use std::collections::BTreeMap;

use crate::cli::{self, Args};
use crate::{read, RUNTIME_SHUTDOWN_S};

const BINARY: &str = "/usr/local/bin/switchyard";

/// A unit file: section -> key -> values (repeated keys accumulate, in order).
#[derive(Debug)]
struct Unit {
    file: String,
    sections: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

impl Unit {
    fn parse(file: &str) -> Unit {
        let text = read(&format!("systemd/{file}"));
        let mut sections: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
        let mut current: Option<String> = None;
        let mut pending = String::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if pending.is_empty()
                && (line.is_empty() || line.starts_with('#') || line.starts_with(';'))
            {
                continue;
            }
            if let Some(cont) = line.strip_suffix('\\') {
                pending.push_str(cont);
                pending.push(' ');
                continue;
            }
            let line = std::mem::take(&mut pending) + line;
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                current = Some(name.to_string());
                sections.entry(name.to_string()).or_default();
                continue;
            }
            let section = current
                .clone()
                .unwrap_or_else(|| panic!("{file}:{}: a key outside any section", n + 1));
            let (k, v) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{file}:{}: not Key=value: {line:?}", n + 1));
            let k = k.trim();
            assert!(
                !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric()),
                "{file}:{}: bad key {k:?}",
                n + 1
            );
            sections
                .entry(section)
                .or_default()
                .entry(k.to_string())
                .or_default()
                .push(v.trim().to_string());
        }
        assert!(pending.is_empty(), "{file}: ends in a continuation");
        Unit {
            file: file.to_string(),
            sections,
        }
    }

    fn all(&self, section: &str, key: &str) -> &[String] {
        self.sections
            .get(section)
            .and_then(|s| s.get(key))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The last value of a key (later assignments win), or a panic.
    fn one(&self, section: &str, key: &str) -> &str {
        self.all(section, key)
            .last()
            .unwrap_or_else(|| panic!("{}: [{section}] {key}= is missing", self.file))
    }

    /// `Environment=K=V` assignments.
    fn environment(&self) -> BTreeMap<String, String> {
        self.all("Service", "Environment")
            .iter()
            .flat_map(|e| e.split_whitespace())
            .filter_map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect()
    }

    /// ExecStart with `%i`/`%H` and `${VAR}` expanded, checked against the binary.
    fn exec_start(&self, instance: &str) -> Args {
        let env = self.environment();
        let exec = self.one("Service", "ExecStart");
        let mut words = exec.split_whitespace();
        assert_eq!(
            words.next(),
            Some(BINARY),
            "{}: ExecStart runs {BINARY}",
            self.file
        );
        let argv: Vec<String> = words
            .map(|w| {
                let mut w = w.replace("%i", instance).replace("%H", "host1");
                for (k, v) in &env {
                    w = w.replace(&format!("${{{k}}}"), v);
                }
                assert!(!w.contains('$') && !w.contains('%'), "{}: {w:?} is not expanded by the unit's own Environment= (the check needs a default)", self.file);
                w
            })
            .collect();
        cli::check(&argv, &self.file)
    }

    /// TimeoutStopSec in seconds (`30s`, `30`, `1min`).
    fn timeout_stop(&self) -> u64 {
        let v = self.one("Service", "TimeoutStopSec");
        let v = v
            .strip_suffix("min")
            .map(|m| m.to_string() + "m")
            .unwrap_or_else(|| v.to_string());
        let v = if v.chars().all(|c| c.is_ascii_digit()) {
            v + "s"
        } else {
            v
        };
        switchyard_config::parse_duration(&v)
            .unwrap_or_else(|e| panic!("{}: TimeoutStopSec: {e}", self.file))
            .as_secs()
    }
}

/// What both units must have.
fn common(u: &Unit, args: &Args, instance: &str) {
    let f = &u.file;
    u.one("Unit", "Description");
    assert!(
        u.all("Unit", "After")
            .iter()
            .any(|a| a.contains("network-online.target")),
        "{f}: After=network-online.target"
    );
    assert_eq!(u.one("Service", "Restart"), "on-failure", "{f}");
    assert_eq!(
        u.one("Service", "KillSignal"),
        "SIGTERM",
        "{f}: pingora drains on SIGTERM"
    );
    assert!(
        u.one("Service", "DynamicUser") == "yes" || !u.all("Service", "User").is_empty(),
        "{f}: DynamicUser=yes or a dedicated User="
    );
    assert!(
        u.all("Service", "User").iter().all(|x| x != "root"),
        "{f}: not root"
    );
    assert_eq!(u.one("Service", "ProtectSystem"), "strict", "{f}");
    assert_eq!(u.one("Service", "NoNewPrivileges"), "yes", "{f}");
    assert_eq!(u.one("Service", "PrivateTmp"), "yes", "{f}");
    let state = u.one("Service", "StateDirectory").replace("%i", instance);
    assert_eq!(args.value("state-dir", f), format!("/var/lib/{state}"), "{f}: --state-dir must be the StateDirectory (the only writable path under ProtectSystem=strict)");
    assert!(
        !u.all("Service", "EnvironmentFile").is_empty(),
        "{f}: tokens come from an EnvironmentFile"
    );
    // No capability unless a listener needs a port below 1024.
    let caps = u.all("Service", "AmbientCapabilities");
    assert!(
        caps.iter()
            .all(|c| c.is_empty() || c == "CAP_NET_BIND_SERVICE"),
        "{f}: AmbientCapabilities {caps:?}"
    );
    assert_eq!(
        u.one("Service", "CapabilityBoundingSet"),
        caps.last().map(String::as_str).unwrap_or(""),
        "{f}: bounding set = ambient set"
    );
    assert!(
        !u.all("Install", "WantedBy").is_empty(),
        "{f}: [Install] WantedBy="
    );
}

#[test]
fn the_control_unit_runs_real_flags_hardened() {
    let u = Unit::parse("switchyard-control.service");
    let args = u.exec_start("");
    assert_eq!(args.sub, "control");
    common(&u, &args, "");
    let listen = args.addr("listen", &u.file);
    assert!(
        listen.port() >= 1024 || !u.all("Service", "AmbientCapabilities").is_empty(),
        "{}: --listen {listen} needs CAP_NET_BIND_SERVICE",
        u.file
    );
    assert!(
        args.value("config-dir", &u.file)
            .starts_with("/etc/switchyard"),
        "{}: route files under /etc/switchyard",
        u.file
    );
    assert!(u.timeout_stop() > 0, "{}: TimeoutStopSec", u.file);
}

#[test]
fn the_gateway_template_runs_real_flags_and_outlasts_its_drain() {
    let u = Unit::parse("switchyard-gateway@.service");
    for instance in ["zone-a", "zone-b"] {
        let args = u.exec_start(instance);
        assert_eq!(args.sub, "gateway");
        common(&u, &args, instance);
        assert_eq!(
            args.value("zone", &u.file),
            instance,
            "{}: the instance is the zone",
            u.file
        );
        let admin = args.addr("admin", &u.file);
        assert!(admin.port() >= 1024, "{}: --admin {admin}", u.file);
        let grace = args.number("grace-period", &u.file);
        let stop = u.timeout_stop();
        assert!(stop > grace + RUNTIME_SHUTDOWN_S, "{}: TimeoutStopSec {stop} must exceed --grace-period {grace} + {RUNTIME_SHUTDOWN_S} (pingora's runtime shutdown)", u.file);
    }
}
