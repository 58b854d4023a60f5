//! Bearer tokens: read from a file or the environment, and compared in constant time.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// The operator token's environment variable (status, rollback, metrics).
pub const OPERATOR_ENV: &str = "SWITCHYARD_TOKEN";
/// The gateways' token's environment variable (watch, ack).
pub const GATEWAY_ENV: &str = "SWITCHYARD_GATEWAY_TOKEN";

/// Reads a token from `file` if given, else from the environment variable `env`; surrounding
/// whitespace is dropped. An empty or missing token is an error naming both sources.
pub fn load(file: Option<&Path>, env: &str, what: &str) -> Result<String> {
    let token = match file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("{what} token file {}", path.display()))?,
        None => std::env::var(env).unwrap_or_default(),
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        match file {
            Some(path) => bail!("{what} token file {} is empty", path.display()),
            None => bail!("no {what} token: pass a token file or set {env}"),
        }
    }
    Ok(token)
}

/// Compares a presented token with the expected one without an early exit on the first
/// differing byte (the length is not secret).
pub fn token_eq(presented: &str, expected: &str) -> bool {
    let (a, b) = (presented.as_bytes(), expected.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        assert!(token_eq("s3cret", "s3cret"));
        assert!(!token_eq("s3cres", "s3cret"));
        assert!(!token_eq("s3cret ", "s3cret"));
        assert!(!token_eq("", "s3cret"));
    }

    #[test]
    fn a_token_file_is_trimmed_and_an_empty_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t");
        std::fs::write(&f, "abc\n").unwrap();
        assert_eq!(
            load(Some(&f), "SWITCHYARD_TEST_UNSET", "test").unwrap(),
            "abc"
        );
        std::fs::write(&f, "  \n").unwrap();
        let err = load(Some(&f), "SWITCHYARD_TEST_UNSET", "test").unwrap_err();
        assert!(err.to_string().contains("is empty"), "{err}");
        let err = load(None, "SWITCHYARD_TEST_UNSET", "test").unwrap_err();
        assert!(err.to_string().contains("SWITCHYARD_TEST_UNSET"), "{err}");
    }
}
