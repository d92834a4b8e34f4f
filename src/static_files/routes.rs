//! The entry points of the router that read the `App` (the `/media/` settings, the site's files,
//! the security headers): `/media/` and the site's own files. They are apart from `mod.rs` because
//! `App` holds the engine's `SmallFiles` (through `www::Www`), so the engine never imports `App`.

use bytes::Bytes;
use http::Request;

use super::{
    content_type, decide, media, media_inner, memory_body, only_get_head, parse_rel, pick_coding,
    serve_under, site_policy, Ask, Coding, Outcome, Policy, Refusal, Rep, Reply, CACHE_PRIVATE,
    CACHE_PUBLIC,
};
use crate::app::App;
use crate::response::Resp;

/// `/media/...` from the configured folder. `Access-Control-Allow-Origin: *` when public.
/// `private`: an account's own file (`super::media_owner`), never public or shared-cached.
pub(crate) async fn media<B>(app: &App, req: &Request<B>, private: bool) -> Resp {
    let m = &app.config.media;
    let public = m.public && !private;
    let policy = Policy {
        cache_control: if public { CACHE_PUBLIC } else { CACHE_PRIVATE },
        media: true,
    };
    let resp = media_inner(&m.dir, m.listing, policy, req).await;
    if resp.status() == http::StatusCode::NOT_FOUND && media::wants_html(req.headers()) {
        let mut page = media::missing_page(req.uri().path());
        media::answer_headers(&mut page, public);
        page.headers_mut().insert(
            http::header::CONTENT_SECURITY_POLICY,
            http::HeaderValue::from_static(media::MISSING_PAGE_CSP),
        );
        return page;
    }
    let mut resp = resp;
    media::answer_headers(&mut resp, public);
    resp
}

/// A site file (`www/`) by its raw URL path relative to the site root, from the `--www` folder if
/// one is set, else from the copy embedded in the binary. HTML gets `no-cache`, hashed names a year.
pub(crate) async fn site<B>(app: &App, req: &Request<B>, raw_rel: &str) -> Result<Resp, Refusal> {
    if let Some(resp) = only_get_head(req.method()) {
        return Ok(resp);
    }
    let rel = parse_rel(raw_rel)?;
    if rel.dir || rel.as_str().is_empty() {
        return Err(Refusal::NotFound);
    }
    let name = rel.as_str();
    let ask = Ask::new(req.method(), req.headers());
    if let Some(dir) = app.www.disk_dir() {
        if let Some(resp) = app.www.small_files.serve(dir, &rel, &ask, &app.headers) {
            return Ok(resp);
        }
        let policy = site_policy(name);
        // Resolved on this thread; see "Threads" at the top of the file.
        return match serve_under(dir, &rel, &ask, policy, false) {
            Outcome::Reply(reply, body) => Ok(reply.into_response(body)),
            Outcome::Refused(r) => Err(r),
            Outcome::AddSlash | Outcome::Listing(_) => Err(Refusal::NotFound),
        };
    }
    let file = app.www.embedded(name).ok_or(Refusal::NotFound)?;
    let br = app.www.embedded(&format!("{name}.br"));
    let gz = app.www.embedded(&format!("{name}.gz"));
    let vary = br.is_some() || gz.is_some();
    let (coding, chosen) = match pick_coding(ask.accept_encoding.as_deref(), |c| match c {
        Coding::Br => br.is_some(),
        Coding::Gzip => gz.is_some(),
    }) {
        Some(Coding::Br) => (Some(Coding::Br), br.unwrap_or(file)),
        Some(Coding::Gzip) => (Some(Coding::Gzip), gz.unwrap_or(file)),
        None => (None, file),
    };
    let rep = Rep {
        len: chosen.contents.len() as u64,
        etag: chosen.etag.to_string(),
        modified: None,
        content_type: content_type(name),
        coding,
        vary,
    };
    let plan = decide(&rep, &ask);
    let reply = Reply::new(&rep, plan, ask.head, site_policy(name));
    let body = memory_body(Bytes::from_static(chosen.contents), &reply.pieces);
    Ok(reply.into_response(body))
}
