//! The page of a `/media/` folder when `media.listing = true`: the names that may be shown (not
//! hidden, not leading out of the root), as links.

use std::path::Path;

use http::{header, HeaderValue, StatusCode};

use super::path::confine;
use super::Policy;
use crate::response::{self, Resp};

/// A directory listing shows at most this many entries.
const MAX_LISTING: usize = 10_000;

/// Entries of a directory that may be shown: not hidden, not leading out of the root.
pub(super) fn list_dir(root: &Path, dir: &Path) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten().take(MAX_LISTING) {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let Ok(target) = confine(root, &entry.path()) else {
            continue;
        };
        match std::fs::metadata(&target) {
            Ok(m) if m.is_dir() => out.push((name, true)),
            Ok(m) if m.is_file() => out.push((name, false)),
            _ => {}
        }
    }
    out.sort();
    out
}

pub(super) fn listing_page(url_path: &str, entries: &[(String, bool)], policy: Policy) -> Resp {
    let title =
        crate::html::escape(&percent_encoding::percent_decode_str(url_path).decode_utf8_lossy());
    let mut html = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title></head>\n<body><h1>Index of {title}</h1>\n<ul>\n"
    );
    if url_path != "/media/" {
        html.push_str("<li><a href=\"../\">../</a></li>\n");
    }
    for (name, is_dir) in entries {
        let href = percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC);
        let slash = if *is_dir { "/" } else { "" };
        html.push_str(&format!(
            "<li><a href=\"{href}{slash}\">{}{slash}</a></li>\n",
            crate::html::escape(name)
        ));
    }
    html.push_str("</ul></body></html>\n");
    let mut r = response::with_body(StatusCode::OK, "text/html; charset=utf-8", html);
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(policy.cache_control),
    );
    r
}
