//! Step 4: what the request asks, and what to send. [`Ask`] copies the fields that matter; [`decide`]
//! applies the preconditions in the order of RFC 9110 §13.2.2 (`If-Match`,
//! `If-Unmodified-Since`, `If-None-Match`, `If-Modified-Since`), then the range (`range.rs`)
//! under `If-Range`.

use http::{header, HeaderMap, HeaderName, Method};

use super::range::{overlapping, parse_ranges, Ranges, MAX_RANGES};
use super::representation::Rep;

/// The request headers that matter, copied so the decision can run on a blocking thread.
#[derive(Debug, Default, Clone)]
pub(super) struct Ask {
    pub(super) head: bool,
    pub(super) accept_encoding: Option<String>,
    if_match: Option<String>,
    if_none_match: Option<String>,
    if_modified_since: Option<String>,
    if_unmodified_since: Option<String>,
    range: Option<String>,
    if_range: Option<String>,
}

/// The request fields an [`Ask`] copies, in the order of its members.
const ASKED: [HeaderName; 7] = [
    header::ACCEPT_ENCODING,
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
    header::RANGE,
    header::IF_RANGE,
];

impl Ask {
    /// One pass over the request's fields, not a lookup for each field asked about: most requests
    /// carry none of them, and each lookup hashed its name.
    pub(super) fn new(method: &Method, headers: &HeaderMap) -> Ask {
        let mut found: [Option<String>; 7] = Default::default();
        let mut unreadable = [false; 7];
        for (name, value) in headers {
            let Some(i) = ASKED.iter().position(|a| a == name) else {
                continue;
            };
            // Repeated fields are joined as a list; a date sent twice then fails to parse and is
            // ignored, as RFC 9110 asks. A field with a value that is not text counts as absent.
            match (value.to_str(), &mut found[i]) {
                (Err(_), _) => unreadable[i] = true,
                (Ok(v), Some(list)) => {
                    list.push_str(", ");
                    list.push_str(v);
                }
                (Ok(v), slot @ None) => *slot = Some(v.to_owned()),
            }
        }
        for (slot, bad) in found.iter_mut().zip(unreadable) {
            if bad {
                *slot = None;
            }
        }
        let [accept_encoding, if_match, if_none_match, if_modified_since, if_unmodified_since, range, if_range] =
            found;
        Ask {
            head: *method == Method::HEAD,
            accept_encoding,
            if_match,
            if_none_match,
            if_modified_since,
            if_unmodified_since,
            range,
            if_range,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Plan {
    NotModified,
    PreconditionFailed,
    Unsatisfiable,
    Whole,
    /// Inclusive byte ranges, in the order asked; one → a plain `206`, several → multipart.
    Ranges(Vec<(u64, u64)>),
}

/// RFC 9110 §13.2.2: preconditions first, then the range.
pub(super) fn decide(rep: &Rep, ask: &Ask) -> Plan {
    if let Some(list) = &ask.if_match {
        if !etag_list_matches(list, &rep.etag, true) {
            return Plan::PreconditionFailed;
        }
    } else if let (Some(date), Some(modified)) = (&ask.if_unmodified_since, rep.modified) {
        if httpdate::parse_http_date(date).is_ok_and(|d| modified > d) {
            return Plan::PreconditionFailed;
        }
    }
    if let Some(list) = &ask.if_none_match {
        if etag_list_matches(list, &rep.etag, false) {
            return Plan::NotModified;
        }
    } else if let (Some(date), Some(modified)) = (&ask.if_modified_since, rep.modified) {
        if httpdate::parse_http_date(date).is_ok_and(|d| modified <= d) {
            return Plan::NotModified;
        }
    }
    // Range requests are defined for GET only.
    let Some(range) = ask.range.as_deref().filter(|_| !ask.head) else {
        return Plan::Whole;
    };
    if let Some(cond) = &ask.if_range {
        if !if_range_holds(cond, rep) {
            return Plan::Whole;
        }
    }
    match parse_ranges(range, rep.len) {
        Ranges::Ignore => Plan::Whole,
        Ranges::Unsatisfiable => Plan::Unsatisfiable,
        Ranges::Satisfiable(ranges) => {
            if ranges.len() > 1 && (ranges.len() > MAX_RANGES || overlapping(&ranges)) {
                // RFC 9110 §14.2 allows ignoring many or overlapping ranges; the whole file
                // costs less than many copies of the same bytes.
                Plan::Whole
            } else {
                Plan::Ranges(ranges)
            }
        }
    }
}

/// Entity tags in a list header (`"a", W/"b"`): (weak, opaque tag). Stops at the first malformed
/// element.
fn parse_etags(list: &str) -> Vec<(bool, &str)> {
    let mut out = Vec::new();
    let mut rest = list;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            break;
        }
        let weak = match rest.strip_prefix("W/") {
            Some(r) => {
                rest = r;
                true
            }
            None => false,
        };
        let Some(r) = rest.strip_prefix('"') else {
            break;
        };
        let Some(end) = r.find('"') else {
            break;
        };
        out.push((weak, &r[..end]));
        rest = &r[end + 1..];
    }
    out
}

/// `If-Match` uses the strong comparison, `If-None-Match` the weak one (RFC 9110 §8.8.3.2).
fn etag_list_matches(list: &str, current: &str, strong: bool) -> bool {
    if list.trim() == "*" {
        return true;
    }
    parse_etags(list)
        .into_iter()
        .any(|(weak, tag)| !(strong && weak) && tag == current)
}

/// `If-Range`: an entity tag (strong comparison) or the exact `Last-Modified` date.
fn if_range_holds(cond: &str, rep: &Rep) -> bool {
    let cond = cond.trim();
    if cond.starts_with('"') {
        return parse_etags(cond) == [(false, rep.etag.as_str())];
    }
    if cond.starts_with("W/") {
        return false;
    }
    match (httpdate::parse_http_date(cond), rep.modified) {
        (Ok(date), Some(modified)) => date == modified,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn etag_lists_compare_weakly_or_strongly() {
        assert!(etag_list_matches("\"a\"", "a", true));
        assert!(etag_list_matches("W/\"a\"", "a", false));
        assert!(!etag_list_matches("W/\"a\"", "a", true));
        assert!(etag_list_matches("\"x\", W/\"a\"", "a", false));
        assert!(etag_list_matches("\"x,y\",\"a\"", "a", false));
        assert!(etag_list_matches(" * ", "a", true));
        assert!(!etag_list_matches("\"b\"", "a", false));
        assert!(!etag_list_matches("a", "a", false));
        assert!(!etag_list_matches("\"a", "a", false));
    }

    #[test]
    fn ask_copies_the_fields_that_matter_joining_repeats_and_dropping_unreadable_ones() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("example"));
        h.insert(header::RANGE, HeaderValue::from_static("bytes=0-1"));
        h.append(header::IF_NONE_MATCH, HeaderValue::from_static("\"a\""));
        h.append(header::IF_NONE_MATCH, HeaderValue::from_static("\"b\""));
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("br"));
        h.append(header::IF_MATCH, HeaderValue::from_static("\"a\""));
        h.append(header::IF_MATCH, HeaderValue::from_bytes(b"\xff").unwrap());
        let ask = Ask::new(&Method::HEAD, &h);
        assert!(ask.head);
        assert_eq!(ask.range.as_deref(), Some("bytes=0-1"));
        assert_eq!(ask.if_none_match.as_deref(), Some("\"a\", \"b\""));
        assert_eq!(ask.accept_encoding.as_deref(), Some("br"));
        assert_eq!(ask.if_match, None);
        assert_eq!(ask.if_range, None);
        assert_eq!(ask.if_modified_since, None);
        assert_eq!(ask.if_unmodified_since, None);
        let plain = Ask::new(&Method::GET, &HeaderMap::new());
        assert!(!plain.head && plain.accept_encoding.is_none() && plain.range.is_none());
    }
}
