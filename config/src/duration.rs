//! The Gateway API duration format (`^([0-9]{1,5}(h|m|s|ms)){1,4}$`, e.g. `1h30m`, `250ms`).

use std::time::Duration;

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (expected 1 to 4 groups of up to 5 digits followed by h, m, s or ms, e.g. \"1m30s\" or \"250ms\")")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

/// Parses a Gateway API duration such as `10s`, `1h30m` or `500ms`.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let fail = |reason| DurationError {
        input: input.to_string(),
        reason,
    };
    if input.is_empty() {
        return Err(fail("empty"));
    }
    let bytes = input.as_bytes();
    let mut pos = 0;
    let mut groups = 0;
    let mut total = Duration::ZERO;
    while pos < bytes.len() {
        groups += 1;
        if groups > 4 {
            return Err(fail("more than 4 groups"));
        }
        let start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        let digits = &input[start..pos];
        if digits.is_empty() {
            return Err(fail("expected a number"));
        }
        if digits.len() > 5 {
            return Err(fail("more than 5 digits in a group"));
        }
        // At most 5 digits, so this cannot overflow.
        let n: u64 = digits.parse().map_err(|_| fail("bad number"))?;
        let rest = &input[pos..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(n), 2)
        } else if rest.starts_with('h') {
            (Duration::from_secs(n * 3600), 1)
        } else if rest.starts_with('m') {
            (Duration::from_secs(n * 60), 1)
        } else if rest.starts_with('s') {
            (Duration::from_secs(n), 1)
        } else if rest.is_empty() {
            return Err(fail("missing unit"));
        } else {
            return Err(fail("unknown unit"));
        };
        total += unit;
        pos += len;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_gateway_api_forms() {
        let cases = [
            ("0s", 0),
            ("1s", 1_000),
            ("250ms", 250),
            ("1m", 60_000),
            ("1h", 3_600_000),
            ("1h30m", 5_400_000),
            ("1m30s500ms", 90_500),
            ("99999ms", 99_999),
            ("1h1m1s1ms", 3_661_001),
            ("10s10s", 20_000),
        ];
        for (input, ms) in cases {
            assert_eq!(
                parse_duration(input),
                Ok(Duration::from_millis(ms)),
                "{input}"
            );
        }
    }

    #[test]
    fn rejects_everything_else() {
        for input in [
            "",
            "10",
            "s",
            "1.5s",
            "-1s",
            "1d",
            "1 s",
            "1S",
            "100000s",
            "1h1m1s1ms1s",
            "1sm",
            "ms",
            " 1s",
        ] {
            let err = parse_duration(input).unwrap_err();
            assert!(err.to_string().contains(&format!("{input:?}")), "{err}");
        }
        assert_eq!(
            parse_duration("10").unwrap_err().to_string(),
            "invalid duration \"10\": missing unit (expected 1 to 4 groups of up to 5 digits followed by h, m, s or ms, e.g. \"1m30s\" or \"250ms\")"
        );
    }
}
