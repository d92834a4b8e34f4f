//! The agent's memory files (`USER.md`, `MEMORY.md` under `HERMES_HOME/memories/`) as a system
//! message for web chats, so the web agent knows what the terminal agent knows.
//!
//! The files are read again only when their modification time or size changes (re-reading them on
//! every message costs time), and each is cut to `memory_max_bytes` so a runaway notes file cannot
//! blow up every request.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::config::ChatConfig;

#[derive(Clone)]
struct Cached {
    modified: Option<SystemTime>,
    len: u64,
    text: String,
}

/// Memory file contents keyed by path, with the stamp they were read at.
#[derive(Default)]
pub(crate) struct MemoryCache {
    files: Mutex<HashMap<PathBuf, Cached>>,
}

impl MemoryCache {
    /// The system message to put in front of a chat, or `None` when injection is off or both files
    /// are missing or empty.
    pub(crate) async fn system_message(&self, chat: &ChatConfig) -> Option<String> {
        if !chat.memory_inject {
            return None;
        }
        let dir = chat.hermes_home.join("memories");
        let user = self.read(&dir.join("USER.md"), chat.memory_max_bytes).await;
        let notes = self
            .read(&dir.join("MEMORY.md"), chat.memory_max_bytes)
            .await;
        let mut parts = Vec::new();
        if !user.trim().is_empty() {
            parts.push(format!(
                "What you know about the user (USER.md):\n{}",
                user.trim_end()
            ));
        }
        if !notes.trim().is_empty() {
            parts.push(format!("Your notes (MEMORY.md):\n{}", notes.trim_end()));
        }
        (!parts.is_empty()).then(|| parts.join("\n\n"))
    }

    /// The file's text (empty when missing), from the cache when its stamp is unchanged.
    async fn read(&self, path: &Path, cap: usize) -> String {
        let Ok(meta) = tokio::fs::metadata(path).await else {
            return String::new();
        };
        let modified = meta.modified().ok();
        let len = meta.len();
        if let Ok(files) = self.files.lock() {
            if let Some(c) = files.get(path) {
                if c.modified == modified && c.len == len {
                    return c.text.clone();
                }
            }
        }
        let text = match tokio::fs::read(path).await {
            Ok(bytes) => cap_text(&bytes, cap),
            Err(e) => {
                tracing::warn!(file = %path.display(), "cannot read memory file: {e}");
                return String::new();
            }
        };
        if let Ok(mut files) = self.files.lock() {
            files.insert(
                path.to_path_buf(),
                Cached {
                    modified,
                    len,
                    text: text.clone(),
                },
            );
        }
        text
    }
}

/// At most `cap` bytes of `bytes` as text, cut at a character boundary.
fn cap_text(bytes: &[u8], cap: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.len() <= cap {
        return text.into_owned();
    }
    let mut end = cap;
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_capped_at_a_character_boundary() {
        assert_eq!(cap_text("héllo".as_bytes(), 2), "h");
        assert_eq!(cap_text(b"hello", 10), "hello");
        assert_eq!(cap_text(b"hello", 3), "hel");
    }
}
