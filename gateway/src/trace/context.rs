//! W3C Trace Context (`traceparent`, version 00): parsing what a client sent and writing what
//! the upstream gets. A gateway hop keeps the trace id, gets a span id of its own, and names
//! the client's span as its parent.

/// The `traceparent` header.
pub const TRACEPARENT: &str = "traceparent";
/// The `tracestate` header (passed through untouched when the traceparent is valid).
pub const TRACESTATE: &str = "tracestate";

/// The sampled bit of the trace flags.
pub const FLAG_SAMPLED: u8 = 0x01;

/// A parsed `traceparent`: trace id, the sender's span id (our parent) and the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub flags: u8,
}

impl TraceParent {
    /// Parses a header value. Version 00 must be exactly 55 characters; a later version may
    /// append fields after a `-`, which are ignored. Ids are lowercase hex and not all zero;
    /// version `ff` is invalid. `None` for anything else.
    pub fn parse(value: &[u8]) -> Option<TraceParent> {
        let v = value;
        if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
            return None;
        }
        let version = hex_byte(&v[0..2])?;
        if version == 0xff || (version == 0 && v.len() != 55) || (v.len() > 55 && v[55] != b'-') {
            return None;
        }
        let mut trace_id = [0u8; 16];
        hex_into(&v[3..35], &mut trace_id)?;
        let mut parent_id = [0u8; 8];
        hex_into(&v[36..52], &mut parent_id)?;
        let flags = hex_byte(&v[53..55])?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceParent {
            trace_id,
            parent_id,
            flags,
        })
    }

    pub fn sampled(&self) -> bool {
        self.flags & FLAG_SAMPLED != 0
    }
}

/// This hop's place in a trace: the trace id, our own span id, the client's span (if it sent
/// a valid traceparent) and whether the trace is sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HopContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The client's span id: `None` when this hop started the trace.
    pub parent_id: Option<[u8; 8]>,
    pub sampled: bool,
}

impl HopContext {
    /// Joins the client's trace, or starts one (sampled with probability `sample`) when
    /// `incoming` is `None`. A joined trace keeps the client's sampling decision.
    pub fn new(incoming: Option<TraceParent>, sample: f64) -> HopContext {
        let span_id = random_nonzero_8();
        match incoming {
            Some(p) => HopContext {
                trace_id: p.trace_id,
                span_id,
                parent_id: Some(p.parent_id),
                sampled: p.sampled(),
            },
            None => HopContext {
                trace_id: random_nonzero_16(),
                span_id,
                parent_id: None,
                sampled: sample > 0.0 && fastrand::f64() < sample,
            },
        }
    }

    /// The `traceparent` value for the upstream request: same trace, this hop's span as the
    /// parent.
    pub fn traceparent(&self) -> String {
        let mut s = String::with_capacity(55);
        s.push_str("00-");
        push_hex(&mut s, &self.trace_id);
        s.push('-');
        push_hex(&mut s, &self.span_id);
        s.push_str(if self.sampled { "-01" } else { "-00" });
        s
    }

    /// The trace id as 32 lowercase hex characters (for the access log).
    pub fn trace_id_hex(&self) -> String {
        let mut s = String::with_capacity(32);
        push_hex(&mut s, &self.trace_id);
        s
    }
}

fn random_nonzero_16() -> [u8; 16] {
    loop {
        let id = fastrand::u128(..).to_be_bytes();
        if id != [0; 16] {
            return id;
        }
    }
}

fn random_nonzero_8() -> [u8; 8] {
    loop {
        let id = fastrand::u64(..).to_be_bytes();
        if id != [0; 8] {
            return id;
        }
    }
}

fn push_hex(s: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xf)]));
    }
}

fn hex_nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn hex_byte(two: &[u8]) -> Option<u8> {
    Some(hex_nibble(two[0])? << 4 | hex_nibble(two[1])?)
}

fn hex_into(src: &[u8], out: &mut [u8]) -> Option<()> {
    for (i, o) in out.iter_mut().enumerate() {
        *o = hex_byte(&src[2 * i..2 * i + 2])?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_spec_example() {
        let p = TraceParent::parse(EXAMPLE.as_bytes()).unwrap();
        assert_eq!(hex::encode(p.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex::encode(p.parent_id), "00f067aa0ba902b7");
        assert!(p.sampled());
        let unsampled = EXAMPLE.replace("-01", "-00");
        assert!(!TraceParent::parse(unsampled.as_bytes()).unwrap().sampled());
    }

    #[test]
    fn rejects_malformed_values() {
        let bad = [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            // uppercase hex
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            // all-zero ids
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // version ff, version 00 with extra data
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            // wrong separators, non-hex
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ];
        for v in bad {
            assert_eq!(TraceParent::parse(v.as_bytes()), None, "{v:?}");
        }
    }

    #[test]
    fn a_later_version_may_carry_more_fields() {
        let v = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever";
        assert!(TraceParent::parse(v.as_bytes()).is_some());
        let glued = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x";
        assert!(TraceParent::parse(glued.as_bytes()).is_none());
    }

    #[test]
    fn a_hop_keeps_the_trace_and_gets_a_new_span() {
        let incoming = TraceParent::parse(EXAMPLE.as_bytes()).unwrap();
        let hop = HopContext::new(Some(incoming), 0.0);
        assert_eq!(hop.trace_id, incoming.trace_id);
        assert_eq!(hop.parent_id, Some(incoming.parent_id));
        assert_ne!(hop.span_id, incoming.parent_id);
        assert!(hop.sampled, "the client's sampling decision is kept");
        let out = hop.traceparent();
        let parsed = TraceParent::parse(out.as_bytes()).expect("we write valid traceparents");
        assert_eq!(parsed.trace_id, incoming.trace_id);
        assert_eq!(parsed.parent_id, hop.span_id);
        assert!(out.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(out.ends_with("-01"));
    }

    #[test]
    fn a_new_trace_is_random_valid_and_sampled_by_policy() {
        let a = HopContext::new(None, 1.0);
        let b = HopContext::new(None, 0.0);
        assert_ne!(a.trace_id, b.trace_id);
        assert!(a.sampled && !b.sampled);
        assert_eq!(a.parent_id, None);
        for hop in [a, b] {
            let p = TraceParent::parse(hop.traceparent().as_bytes()).expect("valid");
            assert_eq!(p.trace_id, hop.trace_id);
            assert_eq!(p.sampled(), hop.sampled);
        }
        assert_eq!(a.trace_id_hex().len(), 32);
    }
}
