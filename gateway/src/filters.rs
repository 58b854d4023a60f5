//! Applies a rule's compiled HTTPRoute filters to pingora's request and response headers.
//! (The pure Gateway API semantics — path rewrites, redirect locations — live in the config
//! crate; this module only edits headers.)

use pingora::http::{RequestHeader, ResponseHeader};
use pingora::Result;
use switchyard_config::{Filter, HeaderModifier};

/// Set, then add, then remove, as the Gateway API orders them.
pub fn modify_request(req: &mut RequestHeader, m: &HeaderModifier) -> Result<()> {
    for (k, v) in &m.set {
        req.insert_header(k.clone(), v.clone())?;
    }
    for (k, v) in &m.add {
        req.append_header(k.clone(), v.clone())?;
    }
    for k in &m.remove {
        req.remove_header(k);
    }
    Ok(())
}

pub fn modify_response(resp: &mut ResponseHeader, m: &HeaderModifier) -> Result<()> {
    for (k, v) in &m.set {
        resp.insert_header(k.clone(), v.clone())?;
    }
    for (k, v) in &m.add {
        resp.append_header(k.clone(), v.clone())?;
    }
    for k in &m.remove {
        resp.remove_header(k);
    }
    Ok(())
}

/// Runs every RequestHeaderModifier among `filters` on the upstream request.
pub fn request_headers<'a>(
    req: &mut RequestHeader,
    filters: impl Iterator<Item = &'a Filter>,
) -> Result<()> {
    for f in filters {
        if let Filter::RequestHeaderModifier(m) = f {
            modify_request(req, m)?;
        }
    }
    Ok(())
}

/// Runs every ResponseHeaderModifier among `filters` on the downstream response.
pub fn response_headers<'a>(
    resp: &mut ResponseHeader,
    filters: impl Iterator<Item = &'a Filter>,
) -> Result<()> {
    for f in filters {
        if let Filter::ResponseHeaderModifier(m) = f {
            modify_response(resp, m)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderName, HeaderValue};

    #[test]
    fn set_add_remove_in_order() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("x-a", "old").unwrap();
        req.insert_header("x-gone", "1").unwrap();
        let m = HeaderModifier {
            set: vec![(
                HeaderName::from_static("x-a"),
                HeaderValue::from_static("new"),
            )],
            add: vec![(
                HeaderName::from_static("x-b"),
                HeaderValue::from_static("1"),
            )],
            remove: vec![HeaderName::from_static("x-gone")],
        };
        modify_request(&mut req, &m).unwrap();
        assert_eq!(req.headers.get("x-a").unwrap(), "new");
        assert_eq!(req.headers.get("x-b").unwrap(), "1");
        assert!(req.headers.get("x-gone").is_none());
    }
}
