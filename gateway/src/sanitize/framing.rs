//! Request framing checks: a request whose body length is ambiguous is refused (400
//! `conflicting_framing`) and its connection closed, so nothing can be smuggled behind it.
//!
//! Refused: Content-Length together with Transfer-Encoding; more than one Content-Length
//! field, or a comma list in one; a Content-Length that is not a plain decimal number; a
//! Transfer-Encoding whose final coding is not `chunked`. Pingora 0.9 refuses some of these
//! itself (differing Content-Lengths, a non-chunked final coding), but when a request has
//! both Content-Length and Transfer-Encoding it drops the Content-Length and carries on, and
//! it accepts repeated identical Content-Lengths; for HTTP/1 the check therefore reads the
//! raw header bytes as received, before pingora's reconciliation.

/// Why the framing is ambiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    ContentLengthAndTransferEncoding,
    RepeatedContentLength,
    ContentLengthList,
    InvalidContentLength,
    NotChunked,
}

impl FramingError {
    pub fn as_str(self) -> &'static str {
        match self {
            FramingError::ContentLengthAndTransferEncoding => {
                "Content-Length together with Transfer-Encoding"
            }
            FramingError::RepeatedContentLength => "more than one Content-Length",
            FramingError::ContentLengthList => "Content-Length is a list",
            FramingError::InvalidContentLength => "Content-Length is not a number",
            FramingError::NotChunked => "the final Transfer-Encoding is not chunked",
        }
    }
}

/// Checks header fields given as (name, value) byte pairs, in order.
pub fn check<'a>(fields: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Result<(), FramingError> {
    let mut content_lengths = 0;
    let mut content_length_error = None;
    let mut last_coding: Option<&[u8]> = None;
    for (name, value) in fields {
        if name.eq_ignore_ascii_case(b"content-length") {
            content_lengths += 1;
            let v = value.trim_ascii();
            if v.contains(&b',') {
                content_length_error.get_or_insert(FramingError::ContentLengthList);
            } else if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
                content_length_error.get_or_insert(FramingError::InvalidContentLength);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // Several fields form one list, in order; the last non-empty element counts.
            let coding = value
                .split(|b| *b == b',')
                .map(<[u8]>::trim_ascii)
                .rfind(|c| !c.is_empty());
            last_coding = Some(coding.unwrap_or(b""));
        }
    }
    if content_lengths > 0 && last_coding.is_some() {
        return Err(FramingError::ContentLengthAndTransferEncoding);
    }
    if content_lengths > 1 {
        return Err(FramingError::RepeatedContentLength);
    }
    if let Some(e) = content_length_error {
        return Err(e);
    }
    match last_coding {
        Some(c) if !c.eq_ignore_ascii_case(b"chunked") => Err(FramingError::NotChunked),
        _ => Ok(()),
    }
}

/// The header fields of a raw HTTP/1 request head (request line skipped), as received.
/// The head was already accepted by pingora's parser, so a field line is `name:value`.
pub fn raw_fields(head: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    head.split(|b| *b == b'\n')
        .skip(1)
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .take_while(|line| !line.is_empty())
        .filter_map(|line| {
            let colon = line.iter().position(|b| *b == b':')?;
            Some((&line[..colon], &line[colon + 1..]))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(head: &str) -> Result<(), FramingError> {
        check(raw_fields(head.as_bytes()))
    }

    #[test]
    fn plain_requests_pass() {
        assert_eq!(raw("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Ok(()));
        assert_eq!(
            raw("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"),
            Ok(())
        );
        assert_eq!(
            raw("POST / HTTP/1.1\r\nContent-Length:  0 \r\n\r\n"),
            Ok(())
        );
        assert_eq!(
            raw("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Ok(())
        );
        assert_eq!(
            raw("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n"),
            Ok(())
        );
        assert_eq!(
            raw("POST / HTTP/1.1\nTransfer-Encoding: gzip\nTransfer-Encoding: chunked\n\n"),
            Ok(())
        );
        // Body bytes after the head are not fields.
        assert_eq!(
            raw("POST / HTTP/1.1\r\nContent-Length: 16\r\n\r\nContent-Length: 1"),
            Ok(())
        );
    }

    #[test]
    fn conflicts_are_refused() {
        use FramingError::*;
        let cases = [
            ("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", ContentLengthAndTransferEncoding),
            ("POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n", ContentLengthAndTransferEncoding),
            ("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", RepeatedContentLength),
            ("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", RepeatedContentLength),
            ("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n", ContentLengthList),
            ("POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n", InvalidContentLength),
            ("POST / HTTP/1.1\r\nContent-Length: 0x5\r\n\r\n", InvalidContentLength),
            ("POST / HTTP/1.1\r\nContent-Length: \r\n\r\n", InvalidContentLength),
            ("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", InvalidContentLength),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", NotChunked),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", NotChunked),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n", NotChunked),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: \r\n\r\n", NotChunked),
            ("POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n", NotChunked),
        ];
        for (head, want) in cases {
            assert_eq!(raw(head), Err(want), "{head:?}");
        }
    }

    #[test]
    fn header_maps_are_checked_the_same_way() {
        let mut h = http::HeaderMap::new();
        h.append("content-length", "3".parse().unwrap());
        let fields = |h: &http::HeaderMap| {
            check(h.iter().map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes())))
        };
        assert_eq!(fields(&h), Ok(()));
        h.append("content-length", "3".parse().unwrap());
        assert_eq!(fields(&h), Err(FramingError::RepeatedContentLength));
    }
}
