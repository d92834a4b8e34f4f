//! What would be sent for a file (RFC 9110's selected representation): its length, its validators
//! (a strong `ETag`, `Last-Modified`), its `Content-Type`, its precompressed coding chosen by
//! `Accept-Encoding`, and the caching policy of a site file by its name.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Policy, CACHE_IMMUTABLE, CACHE_REVALIDATE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Coding {
    Br,
    Gzip,
}

impl Coding {
    pub(super) fn token(self) -> &'static str {
        match self {
            Coding::Br => "br",
            Coding::Gzip => "gzip",
        }
    }
    pub(super) fn suffix(self) -> &'static str {
        match self {
            Coding::Br => ".br",
            Coding::Gzip => ".gz",
        }
    }
}

/// What is known about the bytes that would be sent.
pub(super) struct Rep {
    pub(super) len: u64,
    /// Opaque tag, without quotes.
    pub(super) etag: String,
    /// Whole seconds (HTTP dates have no finer resolution).
    pub(super) modified: Option<SystemTime>,
    pub(super) content_type: String,
    pub(super) coding: Option<Coding>,
    /// Precompressed siblings exist, so the answer depends on `Accept-Encoding`.
    pub(super) vary: bool,
}

/// The precompressed coding to send, if any: the highest `q` among the available ones, `br`
/// before `gzip` on a tie, never one with `q=0`, and not one the client likes less than
/// `identity` when it says so.
pub(super) fn pick_coding(
    accept: Option<&str>,
    available: impl Fn(Coding) -> bool,
) -> Option<Coding> {
    let accept = accept?;
    let (mut br, mut gzip, mut identity, mut star) = (None, None, None, None);
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = 1.0f32;
        for p in parts {
            if let Some((k, v)) = p.split_once('=') {
                if k.trim().eq_ignore_ascii_case("q") {
                    q = v.trim().parse::<f32>().unwrap_or(0.0).clamp(0.0, 1.0);
                }
            }
        }
        match name.as_str() {
            "br" => br = Some(q),
            "gzip" | "x-gzip" => gzip = Some(q),
            "identity" => identity = Some(q),
            "*" => star = Some(q),
            _ => {}
        }
    }
    let floor = identity.or(star).unwrap_or(0.0);
    let mut best: Option<(Coding, f32)> = None;
    for (coding, q) in [(Coding::Br, br.or(star)), (Coding::Gzip, gzip.or(star))] {
        let Some(q) = q else { continue };
        if q <= 0.0 || q < floor || !available(coding) {
            continue;
        }
        if best.is_none_or(|(_, b)| q > b) {
            best = Some((coding, q));
        }
    }
    best.map(|(c, _)| c)
}

/// `Content-Type` from the extension; text gets `charset=utf-8`.
pub(super) fn content_type(name: &str) -> String {
    let mime = mime_guess::from_path(name).first_or_octet_stream();
    let essence = mime.essence_str();
    let texty = mime.type_() == mime_guess::mime::TEXT
        || matches!(
            essence,
            "application/javascript" | "application/json" | "application/xml" | "image/svg+xml"
        );
    if texty && mime.get_param("charset").is_none() {
        format!("{essence}; charset=utf-8")
    } else {
        mime.to_string()
    }
}

/// The policy of a site file, by its name (see [`site_cache_control`]). A kept file remembers its
/// own, so a request answered from memory does not look at the name again.
pub(super) fn site_policy(name: &str) -> Policy {
    Policy {
        cache_control: site_cache_control(name),
        media: false,
    }
}

/// Hashed asset names (a hex run of 8+ characters with a digit, like `app.3f2a9c1b.js`) never
/// change content, so they may be cached for a year; everything else revalidates.
pub(super) fn site_cache_control(name: &str) -> &'static str {
    let file = name.rsplit('/').next().unwrap_or(name);
    let stem = file.rsplit_once('.').map_or(file, |(stem, _)| stem);
    let hashed = stem.split(['.', '-', '_']).any(|part| {
        part.len() >= 8
            && part.bytes().all(|b| b.is_ascii_hexdigit())
            && part.bytes().any(|b| b.is_ascii_digit())
    });
    if hashed && !file.ends_with(".html") {
        CACHE_IMMUTABLE
    } else {
        CACHE_REVALIDATE
    }
}

/// A strong tag from what changes when the file does: inode, length, modification time in
/// nanoseconds, and the coding of the sibling.
pub(super) fn disk_etag(meta: &Metadata, coding: Option<Coding>) -> String {
    let nanos = i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec());
    let suffix = coding.map_or(String::new(), |c| format!("-{}", c.token()));
    format!("{:x}-{:x}-{:x}{suffix}", meta.ino(), meta.len(), nanos)
}

pub(super) fn whole_seconds(t: SystemTime) -> Option<SystemTime> {
    let secs = t.duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_picks_highest_q_and_respects_zero() {
        let all = |_: Coding| true;
        assert_eq!(
            pick_coding(Some("gzip, deflate, br"), all),
            Some(Coding::Br)
        );
        assert_eq!(pick_coding(Some("br;q=0.5, gzip"), all), Some(Coding::Gzip));
        assert_eq!(pick_coding(Some("br;q=0, gzip;q=0"), all), None);
        assert_eq!(pick_coding(Some("*"), all), Some(Coding::Br));
        assert_eq!(pick_coding(Some("*;q=0"), all), None);
        assert_eq!(pick_coding(Some("*, br;q=0"), all), Some(Coding::Gzip));
        assert_eq!(pick_coding(Some("identity"), all), None);
        assert_eq!(pick_coding(Some("gzip;q=0.4, identity;q=0.5"), all), None);
        assert_eq!(pick_coding(Some("GZIP"), all), Some(Coding::Gzip));
        assert_eq!(pick_coding(Some("br"), |c| c == Coding::Gzip), None);
        assert_eq!(pick_coding(None, all), None);
    }

    #[test]
    fn hashed_names_are_immutable_and_html_revalidates() {
        assert_eq!(site_cache_control("app.3f2a9c1b.js"), CACHE_IMMUTABLE);
        assert_eq!(site_cache_control("vendor/x-0123abcd.css"), CACHE_IMMUTABLE);
        assert_eq!(site_cache_control("app.js"), CACHE_REVALIDATE);
        assert_eq!(site_cache_control("deadbeefcafe.js"), CACHE_REVALIDATE);
        assert_eq!(site_cache_control("index.html"), CACHE_REVALIDATE);
        assert_eq!(site_cache_control("page.3f2a9c1b.html"), CACHE_REVALIDATE);
        assert_eq!(site_cache_control("highlight.min.js"), CACHE_REVALIDATE);
    }

    #[test]
    fn text_types_carry_utf8() {
        assert_eq!(content_type("a.txt"), "text/plain; charset=utf-8");
        assert_eq!(content_type("a.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("a.mp4"), "video/mp4");
        assert_eq!(content_type("a.unknownext"), "application/octet-stream");
    }
}
