//! The real binary's command line: each subcommand's flags, read from `switchyard SUB --help`,
//! and a check of whole argument lists by clap itself: `switchyard ARGS.. --help` exits 0 only
//! when every flag before `--help` exists and every value parses (addresses, numbers, enums).

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::OnceLock;

/// The subcommands the deploy files run.
const SUBCOMMANDS: &[&str] = &["control", "gateway"];

/// A subcommand's long flags and whether each takes a value (`--admin <ADMIN>`).
#[derive(Debug)]
pub struct Flags(BTreeMap<String, bool>);

impl Flags {
    pub fn takes_value(&self, flag: &str) -> Option<bool> {
        self.0.get(flag).copied()
    }
}

/// One checked command line: its subcommand and the value of each flag that takes one.
#[derive(Debug)]
pub struct Args {
    pub sub: String,
    pub values: BTreeMap<String, String>,
}

impl Args {
    /// A flag's value, or a panic naming the command line's `context`.
    pub fn value(&self, flag: &str, context: &str) -> &str {
        self.values
            .get(flag)
            .unwrap_or_else(|| panic!("{context}: `{} --{flag}` is not set", self.sub))
    }

    /// A flag's value parsed as a number.
    pub fn number(&self, flag: &str, context: &str) -> u64 {
        let v = self.value(flag, context);
        v.parse()
            .unwrap_or_else(|e| panic!("{context}: --{flag} {v:?}: {e}"))
    }

    /// A flag's value parsed as a socket address.
    pub fn addr(&self, flag: &str, context: &str) -> std::net::SocketAddr {
        let v = self.value(flag, context);
        v.parse()
            .unwrap_or_else(|e| panic!("{context}: --{flag} {v:?}: {e}"))
    }
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_switchyard")
}

/// The flags of `switchyard SUB`, from its `--help` (read once per subcommand).
pub fn flags(sub: &str) -> &'static Flags {
    static ALL: OnceLock<BTreeMap<&'static str, Flags>> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        SUBCOMMANDS
            .iter()
            .map(|&s| {
                let out = Command::new(bin())
                    .args([s, "--help"])
                    .output()
                    .unwrap_or_else(|e| panic!("run {} {s} --help: {e}", bin()));
                assert!(out.status.success(), "{} {s} --help: {out:?}", bin());
                (s, parse_help(&String::from_utf8_lossy(&out.stdout)))
            })
            .collect()
    });
    all.get(sub)
        .unwrap_or_else(|| panic!("the deploy files run only {SUBCOMMANDS:?}, not {sub:?}"))
}

/// Option lines of clap's help: `  -h, --help`, `      --admin <ADMIN>  text`.
fn parse_help(text: &str) -> Flags {
    let mut flags = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim_start();
        let line = match line.strip_prefix('-') {
            Some(rest) if !rest.starts_with('-') => match rest.split_once(", ") {
                Some((_, long)) => long,
                None => continue,
            },
            Some(_) => line,
            None => continue,
        };
        let Some(rest) = line.strip_prefix("--") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        let takes_value = rest[name.len()..].starts_with(" <");
        flags.insert(name, takes_value);
    }
    Flags(flags)
}

/// [`try_check`], panicking with `context` (the file and object) on failure.
pub fn check(argv: &[String], context: &str) -> Args {
    try_check(argv).unwrap_or_else(|e| panic!("{context}: `switchyard {}`: {e}", argv.join(" ")))
}

/// Checks `argv` (subcommand first) against the subcommand's flags, then lets clap parse it.
pub fn try_check(argv: &[String]) -> Result<Args, String> {
    let (sub, rest) = argv.split_first().ok_or("no subcommand")?;
    if !SUBCOMMANDS.contains(&sub.as_str()) {
        return Err(format!("unexpected subcommand {sub:?}"));
    }
    let flags = flags(sub);
    let mut values = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        let Some(flag) = arg.strip_prefix("--") else {
            return Err(format!("unexpected positional argument {arg:?}"));
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        let takes_value = flags
            .takes_value(name)
            .ok_or_else(|| format!("`switchyard {sub}` has no flag --{name}"))?;
        if !seen.insert(name.to_string()) {
            return Err(format!("--{name} is given twice"));
        }
        match (takes_value, inline) {
            (true, Some(v)) => {
                values.insert(name.to_string(), v);
            }
            (true, None) => {
                let v = it
                    .next()
                    .ok_or_else(|| format!("--{name} lacks its value"))?;
                values.insert(name.to_string(), v.clone());
            }
            (false, Some(_)) => return Err(format!("--{name} takes no value")),
            (false, None) => {}
        }
    }
    let out = Command::new(bin())
        .args(argv)
        .arg("--help")
        .output()
        .map_err(|e| format!("run {}: {e}", bin()))?;
    if !out.status.success() {
        return Err(format!(
            "the binary rejects it: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(Args {
        sub: sub.clone(),
        values,
    })
}

fn argv(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// The check itself catches what it is for: unknown flags, bad values, missing values.
#[test]
fn the_command_line_check_rejects_unknown_flags_and_bad_values() {
    let ok = try_check(&argv(
        "gateway --control=http://c:9090 --zone z --name n --state-dir /s --admin 0.0.0.0:9901",
    ))
    .unwrap();
    assert_eq!(ok.values["zone"], "z");
    assert_eq!(ok.values["control"], "http://c:9090");
    for bad in [
        "gateway --bogus 1",
        "gateway --admin not-an-address",
        "gateway --threads many",
        "gateway --admin",
        "control --atomic sometimes",
        "control --listen 0.0.0.0:9090 --listen 0.0.0.0:9091",
        "status",
    ] {
        assert!(try_check(&argv(bad)).is_err(), "accepted: {bad}");
    }
    assert!(flags("control").takes_value("config-dir").unwrap());
    assert_eq!(flags("gateway").takes_value("help"), Some(false));
}
