//! Files attached to a message that are not images for the model (a PDF, a spreadsheet, a log):
//! `POST /api/attachments?name=...` stores the body under the account's own folder of the media
//! directory, `<media>/users/<id>/<random>-<name>`, within `[chat] max_attachment_bytes` and the
//! account's `attachment_quota_bytes`. `POST /api/chat` then names them (`"files"`), and the
//! message gets one line per file telling the agent where it is on disk, so its tools can read it:
//!
//! `[attached file: report.pdf (application/pdf, 120 KB) at /srv/hermes-edge/media/users/3/1f2e3d4c-report.pdf]`
//!
//! The line is part of the stored text, so a regenerate, an edit or a branch's history tell the
//! agent again, and the page shows it as the attachment (`www/js/files.js`). Fetching it back
//! (`/media/users/<id>/...`) is for its owner and administrators only (`router.rs`).

use std::path::{Path, PathBuf};

use http::{Request, StatusCode};
use hyper::body::Incoming;
use rand::RngCore;

use crate::app::{App, Ctx};
use crate::auth::User;
use crate::response::{self, Resp};
use crate::static_files::USERS_DIR;

/// Files one message may name.
pub(crate) const MAX_FILES_PER_MESSAGE: usize = 10;
/// Longest stored name, in bytes (before the random prefix).
const MAX_NAME_BYTES: usize = 100;
/// The start of the line that tells the agent about a file.
pub(crate) const NOTE_PREFIX: &str = "[attached file: ";

/// A file a message names, checked to be the sender's.
pub(crate) struct Attached {
    /// Its name as shown (the stored name without the random prefix).
    name: String,
    /// Where it is on disk, absolute: what the agent's tools open.
    disk_path: PathBuf,
    size: u64,
    content_type: String,
}

fn bad(code: &str, message: &str) -> Resp {
    response::error(StatusCode::BAD_REQUEST, code, message)
}

/// A file name safe on any file system and in a URL path without encoding: ASCII letters,
/// digits, `.`, `-`, `_`; anything else becomes `_`; never hidden; at most [`MAX_NAME_BYTES`].
pub(crate) fn safe_name(name: &str) -> String {
    // Only the last part of a path a browser might send.
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut out: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    while out.starts_with('.') {
        out.remove(0);
    }
    if out.len() > MAX_NAME_BYTES {
        // Keep the extension: it says what the file is.
        let ext = out
            .rfind('.')
            .map(|i| out[i..].to_string())
            .filter(|e| e.len() <= 16)
            .unwrap_or_default();
        out.truncate(MAX_NAME_BYTES - ext.len());
        out.push_str(&ext);
    }
    if out.trim_matches(['_', '.']).is_empty() {
        "file".into()
    } else {
        out
    }
}

/// `1.5 MB`, `120 KB`, `512 bytes`.
fn human_size(n: u64) -> String {
    if n < 1024 {
        format!("{n} bytes")
    } else if n < 1024 * 1024 {
        format!("{} KB", n.div_ceil(1024))
    } else {
        format!("{:.1} MB", n as f64 / (1024.0 * 1024.0))
    }
}

fn user_dir(app: &App, uid: i64) -> PathBuf {
    app.config.media.dir.join(USERS_DIR).join(uid.to_string())
}

/// Bytes of the regular files in `dir` (not following links); nothing when it does not exist.
fn used_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

fn query_param<B>(req: &Request<B>, name: &str) -> Option<String> {
    form_urlencoded::parse(req.uri().query()?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn store_failed(e: impl std::fmt::Display) -> Resp {
    tracing::error!("attachment store: {e}");
    response::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "attachment_store_failed",
        "The file could not be stored on the server (is the media directory writable, and the disk not full?).",
    )
}

/// `POST /api/attachments?name=<file name>` with the file as the body: `201`
/// `{"path":"/media/users/<id>/<stored name>","name","size","type"}`.
pub(crate) async fn upload(app: &App, ctx: &Ctx, req: Request<Incoming>, user: &User) -> Resp {
    let c = &app.config.chat;
    if c.max_attachment_bytes == 0 {
        return response::error(
            StatusCode::FORBIDDEN,
            "attachments_off",
            "This server does not take attached files ([chat] max_attachment_bytes = 0).",
        );
    }
    let Some(name) = query_param(&req, "name").filter(|n| !n.trim().is_empty()) else {
        return bad(
            "bad_attachment",
            "Name the file: POST /api/attachments?name=<file name>.",
        );
    };
    let name = safe_name(&name);
    let body = match crate::body::read_body(app.body_room(ctx), req, c.max_attachment_bytes).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let bytes = body.to_vec();
    drop(body);
    if bytes.is_empty() {
        return bad("empty_file", "The file is empty.");
    }
    let dir = user_dir(app, user.id);
    let quota = c.attachment_quota_bytes;
    let mut random = [0u8; 4];
    rand::thread_rng().fill_bytes(&mut random);
    let stored = format!("{}-{name}", hex(&random));
    let size = bytes.len() as u64;
    let path = dir.join(&stored);
    let tmp = dir.join(format!(".upload-{stored}"));
    // Over the quota: files picked but never sent (or removed before sending) make room first.
    let probe = dir.clone();
    let used = tokio::task::spawn_blocking(move || used_bytes(&probe))
        .await
        .unwrap_or(0);
    if used + size > quota {
        sweep_unsent(app, user.id).await;
    }
    let result = tokio::task::spawn_blocking(move || -> std::io::Result<Result<(), u64>> {
        // One upload at a time checks and writes, so two at once cannot both fit the same room.
        let _one = WRITING.lock().unwrap_or_else(|e| e.into_inner());
        let used = used_bytes(&dir);
        if used + size > quota {
            return Ok(Err(used));
        }
        std::fs::create_dir_all(&dir)?;
        // Written under a hidden name (never served) and renamed, so a half-written file is
        // never seen by the agent or the page.
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, &path)
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&tmp);
            })
            .map(Ok)
    })
    .await;
    match result {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(used))) => {
            return response::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "quota_exceeded",
                &format!(
                    "Your files on this server take {} of your {}; this one ({}) does not fit. Ask an administrator to make room.",
                    human_size(used),
                    human_size(quota),
                    human_size(size)
                ),
            )
        }
        Ok(Err(e)) => return store_failed(e),
        Err(e) => return store_failed(e),
    }
    let content_type = mime_guess::from_path(&name)
        .first_or_octet_stream()
        .essence_str()
        .to_string();
    response::json(
        StatusCode::CREATED,
        &serde_json::json!({
            "path": format!("/media/{USERS_DIR}/{}/{stored}", user.id),
            "name": name,
            "size": size,
            "type": content_type,
        }),
    )
}

/// Held while an upload checks the quota and writes.
static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// How long an uploaded file may wait for a message that names it before it can be swept.
const UNSENT_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Deletes the files of `uid` that no message names and that are older than [`UNSENT_GRACE`]
/// (picked and then removed from the message, or the tab closed before sending), and any
/// half-written upload left by a crash. On a store error nothing is deleted.
async fn sweep_unsent(app: &App, uid: i64) {
    let named = app
        .store
        .call(move |c| {
            let mut st = c.prepare(
                "SELECT m.content FROM messages m JOIN conversations c ON c.id = m.conversation_id
                 WHERE c.user_id = ?1 AND instr(m.content, ?2) > 0",
            )?;
            let rows = st.query_map(rusqlite::params![uid, NOTE_PREFIX], |r| {
                r.get::<_, String>(0)
            })?;
            let mut named = std::collections::HashSet::new();
            for content in rows {
                named.extend(noted_files(&content?, uid));
            }
            Ok(named)
        })
        .await;
    let Ok(named) = named else {
        return;
    };
    let dir = user_dir(app, uid);
    let _ = tokio::task::spawn_blocking(move || {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Ok(meta) = e.metadata() else { continue };
            let old = meta
                .modified()
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age > UNSENT_GRACE);
            if meta.is_file() && old && !named.contains(&name) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    })
    .await;
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Checks that every path is a file this user uploaded (`/media/users/<their id>/<name>`, there
/// now) and describes it; the refusal says which one and what to do.
pub(crate) async fn resolve(
    app: &App,
    user: &User,
    paths: &[String],
) -> Result<Vec<Attached>, Resp> {
    if paths.len() > MAX_FILES_PER_MESSAGE {
        return Err(bad(
            "too_many_files",
            &format!("At most {MAX_FILES_PER_MESSAGE} files can be attached to one message."),
        ));
    }
    let prefix = format!("/media/{USERS_DIR}/{}/", user.id);
    let dir = user_dir(app, user.id);
    let mut out = Vec::with_capacity(paths.len());
    for p in paths {
        let gone = || {
            bad(
                "bad_attachment",
                &format!("The attached file {p} is not one of yours on this server (or is gone); attach it again."),
            )
        };
        let Some(stored) = p.strip_prefix(&prefix) else {
            return Err(gone());
        };
        if !is_plain(stored) {
            return Err(gone());
        }
        let path = dir.join(stored);
        let meta = match tokio::fs::symlink_metadata(&path).await {
            Ok(m) if m.is_file() => m,
            _ => return Err(gone()),
        };
        // The agent runs elsewhere: it needs the whole path.
        let disk_path = tokio::fs::canonicalize(&path).await.unwrap_or(path);
        let name = stored
            .split_once('-')
            .map(|(_, n)| n)
            .unwrap_or(stored)
            .to_string();
        let content_type = mime_guess::from_path(&name)
            .first_or_octet_stream()
            .essence_str()
            .to_string();
        out.push(Attached {
            name,
            disk_path,
            size: meta.len(),
            content_type,
        });
    }
    Ok(out)
}

/// The message text with one line per attached file for the agent.
pub(crate) fn with_notes(text: &str, files: &[Attached]) -> String {
    let mut out = text.trim_end().to_string();
    for (i, f) in files.iter().enumerate() {
        if i > 0 || !out.is_empty() {
            out.push_str(if i == 0 { "\n\n" } else { "\n" });
        }
        out.push_str(&format!(
            "{NOTE_PREFIX}{} ({}, {}) at {}]",
            f.name,
            f.content_type,
            human_size(f.size),
            f.disk_path.display()
        ));
    }
    out
}

/// The name of the file a note line tells of, for a title (`None` for any other line).
pub(crate) fn noted_name(line: &str) -> Option<&str> {
    line.strip_prefix(NOTE_PREFIX)?.split(" (").next()
}

fn is_plain(stored: &str) -> bool {
    !stored.is_empty()
        && !stored.starts_with('.')
        && stored
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// The stored names of the files in `uid`'s folder that a message's lines tell of.
pub(crate) fn noted_files(content: &str, uid: i64) -> Vec<String> {
    let marker = format!("/{USERS_DIR}/{uid}/");
    content
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(NOTE_PREFIX)?.strip_suffix(']')?;
            let (_, path) = rest.rsplit_once(" at ")?;
            let (_, stored) = path.rsplit_once(&marker)?;
            is_plain(stored).then(|| stored.to_string())
        })
        .collect()
}

/// After a conversation is deleted: deletes the files it named that no other message of the
/// account names, so deleting conversations is how a person makes room under their quota. On a
/// store error the files stay (a file too many is better than one a message still needs).
pub(crate) async fn remove_unreferenced(app: &App, uid: i64, stored: Vec<String>) {
    if stored.is_empty() {
        return;
    }
    let names = stored.clone();
    let kept = app
        .store
        .call(move |c| {
            let mut st = c.prepare(
                "SELECT count(*) FROM messages m JOIN conversations c ON c.id = m.conversation_id
                 WHERE c.user_id = ?1 AND instr(m.content, ?2) > 0",
            )?;
            let mut kept = Vec::new();
            for n in &names {
                let uses: i64 = st.query_row(rusqlite::params![uid, n], |r| r.get(0))?;
                if uses > 0 {
                    kept.push(n.clone());
                }
            }
            Ok(kept)
        })
        .await;
    let Ok(kept) = kept else {
        return;
    };
    let dir = user_dir(app, uid);
    for name in stored.into_iter().filter(|n| !kept.contains(n)) {
        if let Err(e) = tokio::fs::remove_file(dir.join(&name)).await {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(
                    "cannot delete the attached file {name} of a deleted conversation: {e}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_safe() {
        assert_eq!(safe_name("report 2024.pdf"), "report_2024.pdf");
        assert_eq!(safe_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_name("C:\\x\\..\\a.txt"), "a.txt");
        assert_eq!(safe_name(".bashrc"), "bashrc");
        assert_eq!(safe_name("...."), "file");
        assert_eq!(safe_name("日本.txt"), "__.txt");
        let long = safe_name(&format!("{}.xlsx", "a".repeat(300)));
        assert!(
            long.len() <= MAX_NAME_BYTES && long.ends_with(".xlsx"),
            "{long}"
        );
    }

    #[test]
    fn notes_tell_the_agent_the_path() {
        let f = Attached {
            name: "r.pdf".into(),
            disk_path: "/m/users/3/ab-r.pdf".into(),
            size: 2048,
            content_type: "application/pdf".into(),
        };
        assert_eq!(
            with_notes("read this", std::slice::from_ref(&f)),
            "read this\n\n[attached file: r.pdf (application/pdf, 2 KB) at /m/users/3/ab-r.pdf]"
        );
        assert_eq!(
            with_notes("", &[f]),
            "[attached file: r.pdf (application/pdf, 2 KB) at /m/users/3/ab-r.pdf]"
        );
        assert_eq!(
            noted_name("[attached file: r.pdf (x, 1 KB) at /p]"),
            Some("r.pdf")
        );
        let text = "hi\n[attached file: r.pdf (x, 1 KB) at /m/users/3/ab-r.pdf]\n\
                    [attached file: o.pdf (x, 1 KB) at /m/users/4/ab-o.pdf]\n\
                    [attached file: e.pdf (x, 1 KB) at /m/users/3/../4/x]";
        assert_eq!(noted_files(text, 3), vec!["ab-r.pdf".to_string()]);
        assert_eq!(human_size(5 * 1024 * 1024 + 1), "5.0 MB");
    }
}
