//! `switchyard cert`: the mesh CA offline. `init-ca` creates a CA dir, `issue` writes a gateway
//! or workload certificate and key signed by a CA dir (e.g. the control service's STATE/ca),
//! `rotate-ca` stages a new root (trusted at once, signing after the propagation time) and keeps
//! the old one in the bundle for the overlap (a running control service notices the change at
//! its next CA request).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use switchyard_gateway::pki::{rfc3339, write_private_key, Ca, SubjectKey, DEFAULT_TRUST_DOMAIN};

#[derive(Args)]
pub struct CertArgs {
    #[command(subcommand)]
    command: CertCommand,
}

#[derive(Subcommand)]
enum CertCommand {
    /// Create a CA dir: a new ECDSA P-256 root (root.pem, root.key) and its trust bundle.
    InitCa {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value = DEFAULT_TRUST_DOMAIN)]
        trust_domain: String,
    },
    /// Issue a certificate from a CA dir: a workload (--spiffe-id, URI SAN only) or a gateway
    /// (--zone Z --gateway N: spiffe://TD/zone/Z/gateway/N and gateway.Z.TD).
    Issue {
        #[arg(long)]
        ca_dir: PathBuf,
        #[arg(long, conflicts_with_all = ["zone", "gateway"], required_unless_present = "zone")]
        spiffe_id: Option<String>,
        #[arg(long, requires = "gateway")]
        zone: Option<String>,
        #[arg(long, requires = "zone")]
        gateway: Option<String>,
        #[arg(long)]
        out_cert: PathBuf,
        #[arg(long)]
        out_key: PathBuf,
        /// Lifetime: a duration (`24h`, `90s`, `1h30m`) or seconds.
        #[arg(long, default_value = "24h", value_parser = parse_duration_arg)]
        ttl: Duration,
    },
    /// Make a new root; the previous one stays in the bundle for --overlap.
    RotateCa {
        #[arg(long)]
        ca_dir: PathBuf,
        /// How long the previous root stays trusted after the new one starts signing
        /// (default: twice the default leaf TTL).
        #[arg(long, default_value = "24h", value_parser = parse_duration_arg)]
        overlap: Duration,
        /// How long the new root is only trusted before it signs, so every peer's bundle has
        /// it first (default: twice the default bundle refresh).
        #[arg(long, default_value = "60s", value_parser = parse_duration_arg)]
        propagation: Duration,
    },
}

/// A duration flag: Gateway API form (`12h`, `3s`, `1h30m`, `500ms`) or plain seconds.
pub fn parse_duration_arg(s: &str) -> std::result::Result<Duration, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    switchyard_config::parse_duration(s).map_err(|e| e.to_string())
}

pub fn run(args: CertArgs) -> Result<()> {
    match args.command {
        CertCommand::InitCa { dir, trust_domain } => {
            let ca = Ca::init(&dir, &trust_domain)?;
            println!(
                "created CA in {} (trust domain {}, bundle version {})",
                dir.display(),
                ca.trust_domain(),
                ca.version()
            );
        }
        CertCommand::Issue {
            ca_dir,
            spiffe_id,
            zone,
            gateway,
            out_cert,
            out_key,
            ttl,
        } => {
            let ca = Ca::open(&ca_dir)?;
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .context("generate a key")?;
            let issued = match (spiffe_id, zone, gateway) {
                (Some(id), _, _) => ca.sign_workload(SubjectKey::Key(&key), &id, ttl)?,
                (None, Some(z), Some(g)) => ca.sign_gateway(SubjectKey::Key(&key), &z, &g, ttl)?,
                _ => anyhow::bail!("pass --spiffe-id ID, or --zone Z --gateway N"),
            };
            write_private_key(&out_key, &key.serialize_pem())?;
            std::fs::write(&out_cert, &issued.cert_pem)
                .with_context(|| format!("write {}", out_cert.display()))?;
            println!(
                "issued {} serial {} valid until {} -> {} {}",
                issued.spiffe_id,
                issued.serial,
                rfc3339(issued.not_after),
                out_cert.display(),
                out_key.display()
            );
        }
        CertCommand::RotateCa {
            ca_dir,
            overlap,
            propagation,
        } => {
            let mut ca = Ca::open(&ca_dir)?;
            let version = ca.rotate(overlap, propagation)?;
            println!(
                "rotating the root of {}: bundle version {version}; the new root signs from {}, the previous one stays trusted {}s after that",
                ca_dir.display(),
                ca.activates_at().map(rfc3339).unwrap_or_else(|| "now".into()),
                overlap.as_secs()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_both_forms() {
        assert_eq!(parse_duration_arg("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_duration_arg("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration_arg("90"), Ok(Duration::from_secs(90)));
        assert!(parse_duration_arg("soon").is_err());
    }
}
