//! The headers policy of `/media/`, a folder the agent can write into: nothing served from there
//! may run as the signed-in user. Every answer gets a sandboxing `Content-Security-Policy`
//! ([`MEDIA_CSP`], or [`MEDIA_PDF_CSP`] for a PDF); a file a browser would run or render as a
//! document is sent as `Content-Disposition: attachment`; scripts and styles are typed as plain
//! text, so with `nosniff` they never load as such.

use http::{header, HeaderValue};

use super::representation::content_type;
use crate::response::Resp;

/// The `Content-Security-Policy` of every `/media/` answer. Anything that can write into the
/// media folder (the agent can) must not get a page that runs as the signed-in user: `sandbox`
/// puts an HTML, SVG or XML document opened from there in an opaque origin with no script, and
/// the rest lets the browser's own image, video and text views work and nothing else load.
pub(super) const MEDIA_CSP: &str = "default-src 'none'; img-src 'self' data:; media-src 'self'; \
style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; sandbox";

/// The same for a PDF, without `sandbox`, and framable by the site's own pages (`frame-ancestors
/// 'self'`, with `X-Frame-Options: SAMEORIGIN`): the viewer page shows a PDF in an `<iframe>`.
/// Chromium 156 shows a PDF under either policy (tried in headless Chromium); a viewer built as a
/// plugin (older Chromium) may not load in a sandboxed document, and leaving `sandbox` out costs
/// nothing here: a PDF's own script runs in the viewer's sandbox (PDFium's, pdf.js'), never with
/// the page's origin, and with `nosniff` a file sent as `application/pdf` is never read as HTML. `object-src 'self'` lets the viewer load
/// this very file. Framing by the site's own origin only lets the site's pages, which run nothing
/// from the file, show it; every other origin is still refused.
pub(crate) const MEDIA_PDF_CSP: &str =
    "default-src 'none'; object-src 'self'; img-src 'self' data:; \
style-src 'unsafe-inline'; frame-ancestors 'self'; base-uri 'none'; form-action 'none'";

/// The `Content-Type` of a `/media/` file. JavaScript and CSS go out as plain text: with
/// `nosniff` a browser then refuses them as a script, module, worker or stylesheet, so a file
/// written into the media folder never runs in a page of this site even though the site's
/// `script-src 'self'` names the whole origin (a CSP source cannot name paths by origin alone,
/// and the site's host names are not known in advance).
pub(super) fn media_content_type(name: &str) -> String {
    let mime = mime_guess::from_path(name).first_or_octet_stream();
    if is_script_or_style(mime.essence_str()) {
        "text/plain; charset=utf-8".to_string()
    } else {
        content_type(name)
    }
}

fn is_script_or_style(essence: &str) -> bool {
    essence == "text/css"
        || ["javascript", "ecmascript", "jscript", "livescript"]
            .iter()
            .any(|k| essence.contains(k))
}

/// Whether a `/media/` file is shown in the browser or saved (`Content-Disposition: attachment`):
/// only types a browser displays without running anything of the file's in the page (raster
/// images, audio, video, PDF, plain text, JSON). HTML, XHTML, SVG, XML, JavaScript and anything
/// unknown are saved. `<img>`, `<video>` and `<audio>` ignore the header, so the viewer still
/// shows an SVG.
fn shown_inline(name: &str) -> bool {
    let mime = mime_guess::from_path(name).first_or_octet_stream();
    let essence = mime.essence_str();
    match mime.type_().as_str() {
        "image" => !essence.contains("svg") && !essence.ends_with("+xml"),
        "audio" | "video" => !essence.ends_with("+xml"),
        _ => matches!(
            essence,
            "application/pdf" | "text/plain" | "application/json"
        ),
    }
}

fn is_pdf(resp: &Resp) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/pdf"))
}

/// The headers every `/media/` answer gets, errors and listings included: whatever a browser
/// shows from here is sandboxed. `Access-Control-Allow-Origin: *` when the folder is public.
pub(super) fn answer_headers(resp: &mut Resp, public: bool) {
    let csp = if is_pdf(resp) {
        MEDIA_PDF_CSP
    } else {
        MEDIA_CSP
    };
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    if csp == MEDIA_PDF_CSP {
        // `SecurityHeaders::apply` leaves this one in place (it knows this policy) and puts
        // `DENY` on everything else.
        resp.headers_mut().insert(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("SAMEORIGIN"),
        );
    }
    if public {
        resp.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
    }
}

/// A file's answer: `Content-Disposition: attachment` unless it is [`shown_inline`].
pub(super) fn disposition(resp: &mut Resp, name: &str) {
    if !shown_inline(name) {
        resp.headers_mut().insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment"),
        );
    }
}

/// Whether a request is a browser's navigation to a page (its `Accept` names `text/html`), as
/// opposed to an API client or an `<img>`/`<video>` load, which get the JSON error as before.
pub(super) fn wants_html(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/html"))
}

/// The `Content-Security-Policy` of [`missing_page`]: no script at all, its one inline style, and
/// no `sandbox`: the page is the edge's own (the name in it is escaped), and a sandboxed page's
/// link is a cross-site navigation that would leave the `SameSite=Strict` session cookie behind,
/// so "Back to the chat" would land on the sign-in page.
pub(super) const MISSING_PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; \
frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The page a browser gets for a missing `/media/` file: what was asked for and a way back to the
/// chat, instead of a raw JSON body. It runs nothing ([`MISSING_PAGE_CSP`]).
pub(super) fn missing_page(url_path: &str) -> Resp {
    let name =
        crate::html::escape(&percent_encoding::percent_decode_str(url_path).decode_utf8_lossy());
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"color-scheme\" content=\"light dark\"><title>File not found \u{b7} Hermes</title>\
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:15vh auto;padding:0 20px}}\
code{{overflow-wrap:anywhere}}a{{display:inline-block;padding:10px 16px;border-radius:10px;\
background:#5b5bd6;color:#fff;text-decoration:none}}</style></head>\n<body><h1>File not found</h1>\
<p>There is no file at <code>{name}</code>. It may have been moved or deleted, or it was never \
written.</p><p><a href=\"/\">Back to the chat</a></p></body></html>\n"
    );
    let mut r = crate::response::with_body(
        http::StatusCode::NOT_FOUND,
        "text/html; charset=utf-8",
        html,
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
