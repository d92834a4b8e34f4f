//! `GET /api/conversations/{id}/export?format=md|json`: one conversation as a file to keep.
//!
//! Owner only (another user's conversation is `404`, as everywhere in `conversations`). JSON
//! holds everything stored (messages with roles, times, images, tool steps, errors); Markdown is
//! for reading: a heading per turn with its time, the text as written (code blocks stay code
//! blocks), tool steps as a list. The file name comes from the title, reduced to characters that
//! are safe in a header and on any file system, with the exact title in `filename*`.

use http::{header, HeaderValue, Request, StatusCode};

use super::conversations::{find, messages, not_found, store_failed, StoredMessage, Summary};
use crate::app::App;
use crate::auth::User;
use crate::response::{self, Resp};
use crate::store::rfc3339_ms;

/// Longest file name stem, in characters.
const MAX_NAME_CHARS: usize = 80;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Markdown,
    Json,
}

/// `GET /api/conversations/{id}/export?format=md|json` (Markdown when no format is named).
pub(crate) async fn get<B>(app: &App, req: &Request<B>, user: &User, id: &str) -> Resp {
    let format = form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "format")
        .map(|(_, v)| v.into_owned());
    let format = match format.as_deref() {
        None | Some("md") | Some("markdown") => Format::Markdown,
        Some("json") => Format::Json,
        Some(_) => {
            return response::error(
                StatusCode::BAD_REQUEST,
                "bad_format",
                "format is md (Markdown) or json.",
            )
        }
    };
    let uid = user.id;
    let id = id.to_string();
    let result = app
        .store
        .call(move |c| {
            let Some(conv) = find(c, uid, &id)? else {
                return Ok(None);
            };
            let msgs = messages(c, &conv.id)?;
            Ok(Some((conv, msgs)))
        })
        .await;
    let (conv, msgs) = match result {
        Ok(Some(found)) => found,
        Ok(None) => return not_found(),
        Err(e) => return store_failed(e),
    };
    let stem = safe_file_stem(&conv.title);
    let (body, content_type, ext) = match format {
        Format::Json => {
            let mut v = conv.to_json();
            v["messages"] = msgs.iter().map(StoredMessage::to_json).collect();
            v["exported_at"] = rfc3339_ms(crate::store::now_ms()).into();
            let text = serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string());
            (text, "application/json; charset=utf-8", "json")
        }
        Format::Markdown => (markdown(&conv, &msgs), "text/markdown; charset=utf-8", "md"),
    };
    let mut resp = response::with_body(StatusCode::OK, content_type, body);
    let disposition = format!(
        "attachment; filename=\"{stem}.{ext}\"; filename*=UTF-8''{}.{ext}",
        percent_encoding::utf8_percent_encode(&conv.title_or_default(), FILENAME_SET)
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    // A conversation is private: no shared cache keeps it.
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    resp
}

/// Everything but RFC 5987's attr-chars is percent-encoded in `filename*`.
const FILENAME_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

impl Summary {
    fn title_or_default(&self) -> String {
        let t: String = self
            .title
            .chars()
            .filter(|c| !c.is_control() && *c != '/' && *c != '\\')
            .take(MAX_NAME_CHARS)
            .collect();
        let t = t.trim();
        if t.is_empty() {
            "conversation".into()
        } else {
            t.to_string()
        }
    }
}

/// A file name stem for the plain `filename=`: ASCII letters, digits, `-`, `_` and single spaces
/// (everything else, quotes and slashes included, becomes a space), at most [`MAX_NAME_CHARS`].
pub(crate) fn safe_file_stem(title: &str) -> String {
    let mut out = String::new();
    for c in title.chars() {
        if out.chars().count() >= MAX_NAME_CHARS {
            break;
        }
        let keep = c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if keep {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with(' ') {
            out.push(' ');
        }
    }
    let out = out.trim().to_string();
    if out.is_empty() {
        "conversation".into()
    } else {
        out
    }
}

/// A Markdown heading's text on one line (a title cannot hold line breaks, but stay safe).
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The conversation as Markdown for people to read.
fn markdown(conv: &Summary, msgs: &[StoredMessage]) -> String {
    let mut out = String::new();
    out.push_str(&format!("# {}\n\n", one_line(&conv.title)));
    out.push_str(&format!(
        "Created {}, last updated {}. Exported {}.\n",
        rfc3339_ms(conv.created_at),
        rfc3339_ms(conv.updated_at),
        rfc3339_ms(crate::store::now_ms())
    ));
    for m in msgs {
        let who = if m.role == "user" { "You" } else { "Hermes" };
        out.push_str(&format!("\n## {who} · {}\n\n", rfc3339_ms(m.created_at)));
        if !m.images.is_empty() {
            let n = m.images.len();
            out.push_str(&format!(
                "*({n} image{} attached; the JSON export holds {})*\n\n",
                if n == 1 { "" } else { "s" },
                if n == 1 { "it" } else { "them" }
            ));
        }
        if !m.tool_steps.is_empty() {
            out.push_str("Tool steps:\n\n");
            for s in &m.tool_steps {
                let mut line = format!("- {} {} ({})", s.emoji, one_line(&s.label), s.status);
                if let Some(p) = s.preview.as_deref().filter(|p| !p.is_empty()) {
                    line.push_str(&format!(": `{}`", one_line(p).replace('`', "'")));
                }
                out.push_str(&line);
                out.push('\n');
            }
            out.push('\n');
        }
        let text = m.content.trim_end();
        if !text.is_empty() {
            out.push_str(text);
            out.push('\n');
            // An unclosed code fence (an answer cut off mid-block) would swallow what follows.
            if text
                .lines()
                .filter(|l| l.trim_start().starts_with("```"))
                .count()
                % 2
                == 1
            {
                out.push_str("```\n");
            }
        }
        if let Some(e) = &m.error {
            let msg = e
                .get("message")
                .and_then(|v| v.as_str())
                .unwrap_or("the answer did not complete");
            out.push_str(&format!("\n> *{}*\n", one_line(msg)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::safe_file_stem;

    #[test]
    fn file_stems_are_safe() {
        assert_eq!(safe_file_stem("Hello, world!"), "Hello world");
        assert_eq!(safe_file_stem("a\"b/../c\r\nd"), "a b c d");
        assert_eq!(safe_file_stem("日本語"), "conversation");
        assert_eq!(safe_file_stem(&"x".repeat(300)).len(), 80);
    }
}
