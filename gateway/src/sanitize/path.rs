//! The path canonicalizer: one canonical form of a request path, used for route matching,
//! authorization and the upstream request alike.
//!
//! In one pass over the bytes: percent-encodings are checked (two hex digits), those of
//! unreserved characters (`ALPHA / DIGIT / - . _ ~`) are decoded and the others written
//! with uppercase hex; encoded slashes and backslashes, raw backslashes and path parameters
//! follow the port's [`PathPolicy`]; bytes that are not allowed in a path (non-ASCII,
//! `"`, `{`...) are percent-encoded; control bytes, raw or encoded, are refused. The
//! segments then go through RFC 3986 §5.2.4 dot-segment removal (a decoded `%2e` is a dot)
//! and, by default, runs of `/` are merged. Nothing climbs above `/`.

use std::borrow::Cow;

use switchyard_config::{Backslashes, EscapedSlashes, PathParameters, PathPolicy};

/// Why a path was refused (every kind answers 400 `invalid_path`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not origin-form (`*`, authority-form, an opaque target) or not starting with `/`.
    NotOriginForm,
    /// `%` not followed by two hex digits.
    InvalidEncoding,
    /// A NUL or other control byte, raw or percent-encoded.
    ControlByte,
    /// `%2F` or `%5C` under `escapedSlashes: Reject`.
    EncodedSlash,
    /// A raw `\` under `backslashes: Reject`.
    Backslash,
    /// `;` under `pathParameters: Reject`.
    PathParameter,
}

impl PathError {
    pub fn as_str(self) -> &'static str {
        match self {
            PathError::NotOriginForm => "not origin-form",
            PathError::InvalidEncoding => "invalid percent-encoding",
            PathError::ControlByte => "control byte",
            PathError::EncodedSlash => "encoded slash or backslash",
            PathError::Backslash => "backslash",
            PathError::PathParameter => "path parameter",
        }
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// `pchar` minus `%` (RFC 3986): what may stay literal in a canonical segment.
fn is_literal(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@'
        )
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn push_encoded(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[usize::from(b >> 4)] as char);
    out.push(HEX[usize::from(b & 15)] as char);
}

/// True when `path` is certainly canonical already: only literal bytes and `/`, no empty,
/// `.` or `..` segment. Lets the common request skip the rewrite (and its allocation).
fn already_canonical(path: &[u8], merge_slashes: bool) -> bool {
    if path.first() != Some(&b'/') {
        return false;
    }
    let mut segment_start = 1;
    for i in 1..=path.len() {
        let end = i == path.len();
        if end || path[i] == b'/' {
            let seg = &path[segment_start..i];
            let trailing_empty = end && seg.is_empty();
            if (seg.is_empty() && !trailing_empty && merge_slashes) || seg == b"." || seg == b".." {
                return false;
            }
            segment_start = i + 1;
        } else if !is_literal(path[i]) {
            return false;
        }
    }
    true
}

/// Canonicalizes an origin-form path (no query). `Borrowed` when it is already canonical.
pub fn canonicalize<'a>(path: &'a str, policy: &PathPolicy) -> Result<Cow<'a, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    if already_canonical(bytes, policy.merge_slashes) {
        return Ok(Cow::Borrowed(path));
    }
    // Split into segments of canonical text; a segment ends at a separator.
    let mut segments: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut in_params = false;
    let mut i = 1;
    while i < bytes.len() {
        let b = bytes[i];
        let mut separator = false;
        match b {
            b'/' => separator = true,
            b'\\' => match policy.backslashes {
                Backslashes::Reject => return Err(PathError::Backslash),
                Backslashes::Slash => separator = true,
            },
            b'%' => {
                let (Some(h), Some(l)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::InvalidEncoding);
                };
                i += 2;
                let v = h << 4 | l;
                if v < 0x20 || v == 0x7f {
                    return Err(PathError::ControlByte);
                }
                if v == b'/' || v == b'\\' {
                    match policy.escaped_slashes {
                        EscapedSlashes::Reject => return Err(PathError::EncodedSlash),
                        EscapedSlashes::Keep if !in_params => push_encoded(&mut current, v),
                        EscapedSlashes::Keep => {}
                        // A decoded slash ends a segment, and with it any parameters.
                        EscapedSlashes::Decode => separator = true,
                    }
                } else if !in_params {
                    if is_unreserved(v) {
                        current.push(v as char);
                    } else {
                        push_encoded(&mut current, v);
                    }
                }
            }
            _ if b < 0x20 || b == 0x7f => return Err(PathError::ControlByte),
            b';' if !in_params => match policy.path_parameters {
                PathParameters::Reject => return Err(PathError::PathParameter),
                PathParameters::Strip => in_params = true,
                PathParameters::Keep => current.push(';'),
            },
            _ if in_params => {}
            _ if is_literal(b) => current.push(b as char),
            _ => push_encoded(&mut current, b),
        }
        if separator {
            segments.push(std::mem::take(&mut current));
            in_params = false;
        }
        i += 1;
    }
    segments.push(current);
    Ok(Cow::Owned(remove_dot_segments(
        segments,
        policy.merge_slashes,
    )))
}

/// RFC 3986 §5.2.4 over the segments of an absolute path (`/` + segments joined by `/`),
/// with empty segments dropped when `merge` is set. Never climbs above the root.
fn remove_dot_segments(segments: Vec<String>, merge: bool) -> String {
    let last = segments.len() - 1;
    let mut out: Vec<String> = Vec::with_capacity(segments.len());
    let mut trailing_slash = false;
    for (i, seg) in segments.into_iter().enumerate() {
        let is_last = i == last;
        match seg.as_str() {
            "." => trailing_slash = is_last,
            ".." => {
                out.pop();
                trailing_slash = is_last;
            }
            "" if is_last => trailing_slash = true,
            "" if merge => {}
            _ => {
                out.push(seg);
                trailing_slash = false;
            }
        }
    }
    let mut path = String::with_capacity(out.iter().map(|s| s.len() + 1).sum::<usize>() + 1);
    for seg in &out {
        path.push('/');
        path.push_str(seg);
    }
    if trailing_slash || out.is_empty() {
        path.push('/');
    }
    path
}

/// The origin-form path of a request target: origin-form as is; absolute-form
/// (`http://host/p`) through pingora's parsed path; anything else (`*`, authority-form,
/// opaque targets) is refused.
pub fn target_path<'a>(raw_target: &[u8], uri_path: &'a str) -> Result<&'a str, PathError> {
    match raw_target.first() {
        Some(b'/') => Ok(uri_path),
        _ => {
            let lower = |n: usize| raw_target.get(..n).map(|p| p.to_ascii_lowercase());
            let absolute =
                lower(7).as_deref() == Some(b"http://") || lower(8).as_deref() == Some(b"https://");
            if absolute && uri_path.starts_with('/') {
                Ok(uri_path)
            } else {
                Err(PathError::NotOriginForm)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> PathPolicy {
        PathPolicy::default()
    }

    fn canon(p: &str) -> Result<String, PathError> {
        canonicalize(p, &policy()).map(Cow::into_owned)
    }

    fn with(p: &str, f: impl FnOnce(&mut PathPolicy)) -> Result<String, PathError> {
        let mut pol = policy();
        f(&mut pol);
        canonicalize(p, &pol).map(Cow::into_owned)
    }

    #[test]
    fn canonical_paths_are_borrowed() {
        for p in [
            "/",
            "/a",
            "/a/b/",
            "/api/v1/items",
            "/a-b_c.d~e",
            "/a:b@c!$&'()*+,=",
            "/.well-known/x",
            "/a..b",
        ] {
            assert!(
                matches!(canonicalize(p, &policy()), Ok(Cow::Borrowed(_))),
                "{p}"
            );
        }
    }

    #[test]
    fn dot_segments_follow_rfc_3986() {
        let cases = [
            ("/a/b/c/./../../g", "/a/g"),
            ("/mid/content=5/../6", "/mid/6"),
            ("/a/./b", "/a/b"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/b/../", "/a/"),
            ("/..", "/"),
            ("/../..", "/"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/.", "/"),
            ("/./", "/"),
            ("/a/../../b", "/b"),
            ("/a/...", "/a/..."),
            ("/a/..b/c", "/a/..b/c"),
            ("/a/.b", "/a/.b"),
        ];
        for (input, want) in cases {
            assert_eq!(canon(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn encoded_dots_are_dots() {
        let cases = [
            ("/a/%2e%2e/b", "/b"),
            ("/a/%2E%2E/b", "/b"),
            ("/a/.%2e/b", "/b"),
            ("/a/%2e/b", "/a/b"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/%2e%2e/%2e%2e/x", "/x"),
        ];
        for (input, want) in cases {
            assert_eq!(canon(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn slashes_merge_by_default_and_can_be_kept() {
        assert_eq!(canon("//admin").as_deref(), Ok("/admin"));
        assert_eq!(canon("/a//b///c").as_deref(), Ok("/a/b/c"));
        assert_eq!(canon("/a//").as_deref(), Ok("/a/"));
        assert_eq!(canon("//").as_deref(), Ok("/"));
        let keep = |p| with(p, |pol| pol.merge_slashes = false);
        assert_eq!(keep("//admin").as_deref(), Ok("//admin"));
        assert_eq!(keep("/a//b").as_deref(), Ok("/a//b"));
        assert_eq!(keep("/a//../b").as_deref(), Ok("/a/b"));
        assert!(matches!(
            canonicalize(
                "/a//b",
                &PathPolicy {
                    merge_slashes: false,
                    ..policy()
                }
            ),
            Ok(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn unreserved_encodings_are_decoded_and_others_uppercased() {
        let cases = [
            ("/%61dmin", "/admin"),
            ("/%41%42%43", "/ABC"),
            ("/%7e%2d%5f", "/~-_"),
            ("/a%20b", "/a%20b"),
            ("/a%3fb", "/a%3Fb"),
            ("/a%3Bb", "/a%3Bb"),
            ("/a%25", "/a%25"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/a%2b", "/a%2B"),
        ];
        for (input, want) in cases {
            assert_eq!(canon(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn bytes_outside_pchar_are_encoded() {
        assert_eq!(canon("/caf\u{e9}").as_deref(), Ok("/caf%C3%A9"));
        assert_eq!(canon("/a\"b").as_deref(), Ok("/a%22b"));
        assert_eq!(canon("/a{b}|c^`").as_deref(), Ok("/a%7Bb%7D%7Cc%5E%60"));
        assert_eq!(canon("/a b").as_deref(), Ok("/a%20b"));
    }

    #[test]
    fn invalid_encodings_and_control_bytes_are_refused() {
        for p in ["/%zz", "/%", "/a%2", "/a%g0", "/%%41"] {
            assert_eq!(canon(p), Err(PathError::InvalidEncoding), "{p}");
        }
        for p in [
            "/a\0b", "/a\tb", "/a\rb", "/a\x7f", "/a%00b", "/a%0d%0a", "/%7F", "/%1f",
        ] {
            assert_eq!(canon(p), Err(PathError::ControlByte), "{p:?}");
        }
        for p in ["", "*", "admin", "http://x/a"] {
            assert_eq!(canon(p), Err(PathError::NotOriginForm), "{p}");
        }
    }

    #[test]
    fn encoded_slashes_follow_the_policy() {
        for p in [
            "/%2Fadmin",
            "/admin%2F",
            "/a%2fb",
            "/a%5Cb",
            "/a%5cb",
            "/public/..%2fadmin",
        ] {
            assert_eq!(canon(p), Err(PathError::EncodedSlash), "{p}");
        }
        let keep = |p| with(p, |pol| pol.escaped_slashes = EscapedSlashes::Keep);
        assert_eq!(keep("/a%2fb").as_deref(), Ok("/a%2Fb"));
        assert_eq!(keep("/%2Fadmin").as_deref(), Ok("/%2Fadmin"));
        assert_eq!(keep("/a%5cb").as_deref(), Ok("/a%5Cb"));
        // Never a separator: `..%2f` is not a dot segment.
        assert_eq!(
            keep("/public/..%2fadmin").as_deref(),
            Ok("/public/..%2Fadmin")
        );
        let decode = |p| with(p, |pol| pol.escaped_slashes = EscapedSlashes::Decode);
        assert_eq!(decode("/a%2fb").as_deref(), Ok("/a/b"));
        assert_eq!(decode("/%2Fadmin").as_deref(), Ok("/admin"));
        assert_eq!(decode("/admin%2F").as_deref(), Ok("/admin/"));
        assert_eq!(decode("/public/..%2fadmin").as_deref(), Ok("/admin"));
        assert_eq!(decode("/public/%2e%2e%2fadmin").as_deref(), Ok("/admin"));
        assert_eq!(decode("/a%5c..%5cb").as_deref(), Ok("/b"));
        assert_eq!(decode("/..%2f..%2f..%2fetc").as_deref(), Ok("/etc"));
    }

    #[test]
    fn backslashes_follow_the_policy() {
        assert_eq!(canon("/public\\..\\admin"), Err(PathError::Backslash));
        assert_eq!(canon("\\"), Err(PathError::NotOriginForm));
        let slash = |p| with(p, |pol| pol.backslashes = Backslashes::Slash);
        assert_eq!(slash("/public\\..\\admin").as_deref(), Ok("/admin"));
        assert_eq!(slash("/a\\b").as_deref(), Ok("/a/b"));
        assert_eq!(slash("/a\\\\b").as_deref(), Ok("/a/b"));
    }

    #[test]
    fn path_parameters_follow_the_policy() {
        let cases = [
            ("/admin;jsessionid=x", "/admin"),
            ("/admin;param", "/admin"),
            ("/a;x/b;y=1;z/c", "/a/b/c"),
            ("/;x/admin", "/admin"),
            ("/public/..;/admin", "/admin"),
            ("/public/;x/../admin", "/admin"),
            ("/a;", "/a"),
        ];
        for (input, want) in cases {
            assert_eq!(canon(input).as_deref(), Ok(want), "{input}");
        }
        // Parameters are skipped but still checked.
        assert_eq!(canon("/a;%2F..%2Fb"), Err(PathError::EncodedSlash));
        let decode = |p| with(p, |pol| pol.escaped_slashes = EscapedSlashes::Decode);
        assert_eq!(decode("/a;%2F..%2Fb").as_deref(), Ok("/b"));
        assert_eq!(canon("/a;%zz/b"), Err(PathError::InvalidEncoding));
        assert_eq!(canon("/a;\x01/b"), Err(PathError::ControlByte));
        let reject = |p| with(p, |pol| pol.path_parameters = PathParameters::Reject);
        assert_eq!(reject("/admin;x"), Err(PathError::PathParameter));
        assert_eq!(reject("/a%3Bb").as_deref(), Ok("/a%3Bb"));
        let keep = |p| with(p, |pol| pol.path_parameters = PathParameters::Keep);
        assert_eq!(keep("/admin;x=1").as_deref(), Ok("/admin;x=1"));
        assert_eq!(keep("/a/..;/b").as_deref(), Ok("/a/..;/b"));
    }

    #[test]
    fn the_bypass_corpus_lands_on_admin_or_is_refused() {
        // Each either becomes exactly /admin (so a rule on /admin sees it) or is refused.
        let corpus = [
            "/public/%2e%2e/admin",
            "/public/%2E%2E/admin",
            "//admin",
            "/admin;param",
            "/%61dmin",
            "/./admin",
            "/admin/.",
            "/public/../admin",
            "/public/..%2fadmin",
            "/%2Fadmin",
            "/admin%2F",
            "/public\\..\\admin",
        ];
        for p in corpus {
            if let Ok(c) = canon(p) {
                assert!(c == "/admin" || c == "/admin/", "{p} -> {c}");
            }
        }
    }

    #[test]
    fn idempotent() {
        let pol = PathPolicy {
            escaped_slashes: EscapedSlashes::Keep,
            ..policy()
        };
        for p in [
            "/a/%2e%2e/b",
            "/x%2fy/../z",
            "/caf%c3%a9",
            "//a//b/./c/..",
            "/a;b/c",
            "/%7e",
        ] {
            let once = canonicalize(p, &pol).unwrap().into_owned();
            let twice = canonicalize(&once, &pol).unwrap();
            assert_eq!(once, twice, "{p}");
            assert!(
                matches!(twice, Cow::Borrowed(_)) || once.contains('%'),
                "{p}"
            );
        }
    }

    #[test]
    fn target_forms() {
        assert_eq!(target_path(b"/a?b", "/a"), Ok("/a"));
        assert_eq!(target_path(b"http://h/a", "/a"), Ok("/a"));
        assert_eq!(target_path(b"HTTPS://h/a", "/a"), Ok("/a"));
        assert_eq!(target_path(b"*", "*"), Err(PathError::NotOriginForm));
        assert_eq!(target_path(b"h:443", "/"), Err(PathError::NotOriginForm));
        assert_eq!(target_path(b"foo:bar", "/"), Err(PathError::NotOriginForm));
    }
}
