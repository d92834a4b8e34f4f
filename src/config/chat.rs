//! `[chat]`: the Hermes API key (config file, then environment, then Hermes' own settings), stream
//! and retry timing, memory injection, image and attachment limits.

use std::path::PathBuf;
use std::time::Duration;

use super::file::FileChat;
use super::hermes_settings::HermesSettings;
use super::{defaults, invalid, secs, ConfigError};

#[derive(Clone)]
pub(crate) struct ChatConfig {
    /// The Hermes API Server key; never logged, never sent to a browser.
    pub api_key: Option<String>,
    /// Where the key came from, e.g. `environment HERMES_EDGE_API_KEY` or
    /// `/home/u/.hermes/.env (API_SERVER_KEY)`; what `doctor` and the start-up log show.
    pub api_key_source: Option<String>,
    pub idle_timeout: Duration,
    pub memory_inject: bool,
    pub hermes_home: PathBuf,
    pub memory_max_bytes: usize,
    pub max_image_bytes: usize,
    pub max_images: usize,
    /// The largest file attached to a message (`chat::attachments`); 0 turns attachments off.
    pub max_attachment_bytes: usize,
    /// What one account may keep in `<media>/users/<id>/`.
    pub attachment_quota_bytes: u64,
    pub retry_budget: Duration,
    pub max_runs_per_user: usize,
    pub max_runs: usize,
    /// Only administrators may answer approvals (`approvals = "admins"`).
    pub approvals_admins_only: bool,
    pub approval_timeout: Duration,
}

impl std::fmt::Debug for ChatConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatConfig")
            .field("api_key", &self.api_key.as_ref().map(|_| "<set>"))
            .field("api_key_source", &self.api_key_source)
            .field("idle_timeout", &self.idle_timeout)
            .field("memory_inject", &self.memory_inject)
            .field("hermes_home", &self.hermes_home)
            .finish_non_exhaustive()
    }
}

/// `chat.hermes_home`, else `$HERMES_HOME`, else `~/.hermes` (where Hermes itself looks).
pub(super) fn hermes_home(c: &FileChat) -> PathBuf {
    c.hermes_home.clone().unwrap_or_else(|| {
        std::env::var_os("HERMES_HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".hermes")))
            .unwrap_or_else(|| PathBuf::from(".hermes"))
    })
}

/// The API key and where it came from: `chat.api_key`, `chat.api_key_file`, the environment
/// (`HERMES_EDGE_API_KEY`, then `API_SERVER_KEY`), then Hermes' own settings in its home.
fn api_key(c: &FileChat, hermes: &HermesSettings) -> Result<Option<(String, String)>, ConfigError> {
    if let Some(k) = &c.api_key {
        return Ok(Some((k.clone(), "config file chat.api_key".into())));
    }
    if let Some(path) = &c.api_key_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            invalid(
                "chat.api_key_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let source = format!("config file chat.api_key_file ({})", path.display());
        return Ok(Some((text.trim().to_string(), source)));
    }
    for name in ["HERMES_EDGE_API_KEY", "API_SERVER_KEY"] {
        if let Some(k) = std::env::var(name).ok().filter(|k| !k.is_empty()) {
            return Ok(Some((k, format!("environment {name}"))));
        }
    }
    Ok(hermes
        .key
        .as_ref()
        .map(|k| (k.value.clone(), k.source.clone())))
}

pub(super) fn resolve(
    c: &FileChat,
    hermes_home: PathBuf,
    hermes: &HermesSettings,
) -> Result<ChatConfig, ConfigError> {
    let (api_key, api_key_source) = api_key(c, hermes)?.unzip();
    let chat = ChatConfig {
        api_key,
        api_key_source,
        idle_timeout: secs(c.idle_timeout_secs, defaults::IDLE_TIMEOUT_SECS),
        memory_inject: c.memory_inject.unwrap_or(defaults::MEMORY_INJECT),
        hermes_home,
        memory_max_bytes: c.memory_max_bytes.unwrap_or(defaults::MEMORY_MAX_BYTES),
        max_image_bytes: c.max_image_bytes.unwrap_or(defaults::MAX_IMAGE_BYTES),
        max_images: c.max_images.unwrap_or(defaults::MAX_IMAGES),
        max_attachment_bytes: c
            .max_attachment_bytes
            .unwrap_or(defaults::MAX_ATTACHMENT_BYTES),
        attachment_quota_bytes: c
            .attachment_quota_bytes
            .unwrap_or(defaults::ATTACHMENT_QUOTA_BYTES),
        retry_budget: secs(c.retry_budget_secs, defaults::RETRY_BUDGET_SECS),
        max_runs_per_user: c.max_runs_per_user.unwrap_or(defaults::MAX_RUNS_PER_USER),
        max_runs: c.max_runs.unwrap_or(defaults::MAX_RUNS),
        approvals_admins_only: match c.approvals.as_deref().unwrap_or(defaults::APPROVALS) {
            "owner" => false,
            "admins" => true,
            _ => return Err(invalid("chat.approvals", "must be \"owner\" or \"admins\"")),
        },
        approval_timeout: secs(c.approval_timeout_secs, defaults::APPROVAL_TIMEOUT_SECS),
    };
    if chat.max_runs_per_user == 0 || chat.max_runs == 0 {
        return Err(invalid(
            "chat.max_runs_per_user / chat.max_runs",
            "must be at least 1",
        ));
    }
    if chat.idle_timeout.is_zero() {
        return Err(invalid("chat.idle_timeout_secs", "must be at least 1"));
    }
    Ok(chat)
}
