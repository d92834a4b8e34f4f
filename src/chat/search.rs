//! `GET /api/search?q=...`: the signed-in user's conversations whose title or message text matches,
//! newest first, each with the hit in context.
//!
//! The index is SQLite FTS5 (`store.rs`, migration 11). What a person types is never handed to
//! FTS5's query language: each word becomes a quoted prefix term (`"word"*`), so quotes, `*`,
//! `NEAR(`, `AND` and the like are plain text and cannot make a syntax error. Every query joins
//! the index to `conversations.user_id`, so another user's text is never a hit.
//!
//! The snippet comes back as parts (`{"text", "hit"}`), not as marked-up text: the page builds
//! text nodes and `<mark>` elements from them and never parses HTML.

use http::{Request, StatusCode};
use rusqlite::params;

use crate::auth::User;
use crate::response::{self, Resp};
use crate::store::rfc3339_ms;

use super::conversations::store_failed;
use crate::app::App;

/// Longest query taken, in characters: longer is a `400` (nobody types this much into a search
/// box; it bounds the work of one request).
pub(crate) const MAX_QUERY_CHARS: usize = 200;
/// Words of a query used; further words are ignored.
const MAX_TERMS: usize = 12;
/// Conversations returned when the request names no `limit`, and the most it may ask for.
const DEFAULT_LIMIT: usize = 30;
const MAX_LIMIT: usize = 100;
/// Words of context around a hit in a snippet.
const SNIPPET_TOKENS: i64 = 14;
/// Private-use characters that mark a hit inside FTS5's snippet text; split out before it leaves.
const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';

/// The FTS5 query for what a person typed: every word (a run without spaces that holds a letter
/// or digit) as a quoted prefix term, all of them required. `None` when nothing searchable is left.
pub(crate) fn fts_query(q: &str) -> Option<String> {
    let terms: Vec<String> = q
        .split_whitespace()
        // Without a letter or digit the tokenizer finds no token in it: an empty phrase.
        .filter(|w| w.chars().any(char::is_alphanumeric))
        .take(MAX_TERMS)
        .map(|w| {
            let clean: String = w.chars().filter(|c| *c != OPEN && *c != CLOSE).collect();
            format!("\"{}\"*", clean.replace('"', "\"\""))
        })
        .collect();
    if terms.is_empty() {
        None
    } else {
        Some(terms.join(" "))
    }
}

/// FTS5 `snippet()`/`highlight()` text with the hit markers as `[{"text", "hit"}]` parts.
pub(crate) fn parts(marked: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut hit = false;
    let mut flush = |cur: &mut String, hit: bool| {
        if !cur.is_empty() {
            out.push(serde_json::json!({ "text": std::mem::take(cur), "hit": hit }));
        }
    };
    for ch in marked.chars() {
        match ch {
            OPEN => {
                flush(&mut cur, hit);
                hit = true;
            }
            CLOSE => {
                flush(&mut cur, hit);
                hit = false;
            }
            c => cur.push(c),
        }
    }
    flush(&mut cur, hit);
    out
}

/// One conversation in the results.
struct Found {
    id: String,
    title: String,
    updated_at: i64,
    /// The title with its hits marked, when the title matched.
    title_marked: Option<String>,
    /// The newest matching message: its index and snippet.
    message: Option<(i64, String)>,
}

fn bad_query(message: &str) -> Resp {
    response::error(StatusCode::BAD_REQUEST, "bad_query", message)
}

/// The value of `name` in the request's query string.
fn query_param<B>(req: &Request<B>, name: &str) -> Option<String> {
    form_urlencoded::parse(req.uri().query()?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `GET /api/search?q=...[&limit=N]`.
pub(crate) async fn get<B>(app: &App, req: &Request<B>, user: &User) -> Resp {
    let q = query_param(req, "q").unwrap_or_default();
    if q.chars().count() > MAX_QUERY_CHARS {
        return bad_query(&format!(
            "A search is at most {MAX_QUERY_CHARS} characters; use fewer words."
        ));
    }
    let limit = match query_param(req, "limit") {
        None => DEFAULT_LIMIT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return bad_query(&format!("limit is a whole number from 1 to {MAX_LIMIT}.")),
        },
    };
    let Some(fts) = fts_query(&q) else {
        // Nothing to look for (empty, or only punctuation): no hits, not an error.
        return response::json(
            StatusCode::OK,
            &serde_json::json!({ "query": q, "results": [] }),
        );
    };
    let uid = user.id;
    let result = app.store.call(move |c| search(c, uid, &fts, limit)).await;
    match result {
        Ok(found) => {
            let results: Vec<serde_json::Value> = found
                .iter()
                .map(|f| {
                    serde_json::json!({
                        "id": f.id,
                        "title": f.title,
                        "updated_at": rfc3339_ms(f.updated_at),
                        "title_parts": f.title_marked.as_deref().map(parts),
                        "message_index": f.message.as_ref().map(|m| m.0),
                        "snippet": f.message.as_ref().map(|m| parts(&m.1)),
                    })
                })
                .collect();
            response::json(
                StatusCode::OK,
                &serde_json::json!({ "query": q, "results": results }),
            )
        }
        // The query is built to be valid whatever was typed; should FTS5 still refuse it, that is
        // about the input, not an outage.
        Err(crate::store::StoreError::Sql(e)) if is_query_error(&e) => {
            tracing::warn!("search query refused by FTS5: {e}");
            bad_query("That search cannot be run; try other words.")
        }
        Err(e) => store_failed(e),
    }
}

fn is_query_error(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::Unknown)
}

/// The matching conversations of `uid`, newest first, at most `limit`.
fn search(
    c: &rusqlite::Connection,
    uid: i64,
    fts: &str,
    limit: usize,
) -> Result<Vec<Found>, rusqlite::Error> {
    let limit = limit as i64;
    let mut found: Vec<Found> = Vec::new();
    // Titles.
    {
        let mut st = c.prepare(
            "SELECT c.id, c.title, c.updated_at,
                    highlight(conversations_fts, 0, char(57344), char(57345))
             FROM conversations_fts JOIN conversations c ON c.id = conversations_fts.conversation_id
             WHERE conversations_fts MATCH ?1 AND c.user_id = ?2
             ORDER BY c.updated_at DESC LIMIT ?3",
        )?;
        let rows = st.query_map(params![fts, uid, limit], |r| {
            Ok(Found {
                id: r.get(0)?,
                title: r.get(1)?,
                updated_at: r.get(2)?,
                title_marked: Some(r.get(3)?),
                message: None,
            })
        })?;
        for f in rows {
            found.push(f?);
        }
    }
    // Messages: the newest matching message of each conversation (SQLite takes the bare columns
    // from the row of MAX()).
    let hits: Vec<(String, String, i64, i64, i64)> = {
        let mut st = c.prepare(
            "SELECT c.id, c.title, c.updated_at, MAX(m.idx), m.id
             FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid
             JOIN conversations c ON c.id = m.conversation_id
             WHERE messages_fts MATCH ?1 AND c.user_id = ?2
             GROUP BY c.id ORDER BY c.updated_at DESC LIMIT ?3",
        )?;
        let rows = st.query_map(params![fts, uid, limit], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })?;
        rows.collect::<Result<_, _>>()?
    };
    let mut snip = c.prepare(
        "SELECT snippet(messages_fts, 0, char(57344), char(57345), '…', ?3)
         FROM messages_fts WHERE messages_fts MATCH ?1 AND rowid = ?2",
    )?;
    for (id, title, updated_at, idx, row) in hits {
        let text: String = snip
            .query_row(params![fts, row, SNIPPET_TOKENS], |r| r.get(0))
            .unwrap_or_default();
        match found.iter_mut().find(|f| f.id == id) {
            Some(f) => f.message = Some((idx, text)),
            None => found.push(Found {
                id,
                title,
                updated_at,
                title_marked: None,
                message: Some((idx, text)),
            }),
        }
    }
    found.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(b.id.cmp(&a.id)));
    found.truncate(limit as usize);
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_text_becomes_quoted_prefix_terms() {
        assert_eq!(
            fts_query("hello world").as_deref(),
            Some("\"hello\"* \"world\"*")
        );
        assert_eq!(
            fts_query("say \"hi\"").as_deref(),
            Some("\"say\"* \"\"\"hi\"\"\"*")
        );
        assert_eq!(fts_query("NEAR(a b").as_deref(), Some("\"NEAR(a\"* \"b\"*"));
        assert_eq!(fts_query("\" * ( -"), None);
        assert_eq!(fts_query("   "), None);
        assert_eq!(
            fts_query(&"w ".repeat(50)).map(|q| q.matches('*').count()),
            Some(MAX_TERMS)
        );
    }

    #[test]
    fn snippet_markers_become_parts() {
        let v = parts("a \u{E000}b\u{E001} c");
        assert_eq!(
            serde_json::Value::Array(v),
            serde_json::json!([
                {"text": "a ", "hit": false},
                {"text": "b", "hit": true},
                {"text": " c", "hit": false}
            ])
        );
    }

    #[test]
    fn hostile_queries_run_against_fts5() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch(
            "CREATE VIRTUAL TABLE t USING fts5(x, tokenize = 'unicode61 remove_diacritics 2');
             INSERT INTO t (x) VALUES ('say \"hi\" NEAR the café');",
        )
        .unwrap();
        for q in [
            "\"hi\"",
            "NEAR(",
            "near(the",
            "*x",
            "a\"b\"c",
            "AND OR NOT",
            "cafe",
            "x:y",
            "^a",
        ] {
            let Some(f) = fts_query(q) else { continue };
            let n: Result<i64, _> =
                c.query_row("SELECT count(*) FROM t WHERE t MATCH ?1", [&f], |r| {
                    r.get(0)
                });
            assert!(n.is_ok(), "{q} -> {f}: {n:?}");
        }
        let n: i64 = c
            .query_row(
                "SELECT count(*) FROM t WHERE t MATCH ?1",
                [fts_query("CAFE").unwrap()],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1);
    }
}
