//! `[dashboard]`: Hermes' own web dashboard, proxied at /dashboard/ for administrators; off unless set.

use super::file::FileDashboard;
use super::{invalid, CliOverrides, ConfigError};

/// `None` when /dashboard/ is off (unset, empty or `off`).
pub(super) fn resolve(
    d: &FileDashboard,
    cli: &CliOverrides,
) -> Result<Option<String>, ConfigError> {
    match cli.dashboard_upstream.clone().or(d.upstream.clone()) {
        None => Ok(None),
        Some(text) if text.is_empty() || text == "off" => Ok(None),
        Some(text) => Ok(Some(dashboard_url(&text)?)),
    }
}

/// The dashboard's base URL: `http://HOST:PORT` with no path, because the edge sends that
/// authority as `Host` (the dashboard refuses any other) and mounts it at `/dashboard/` itself.
fn dashboard_url(text: &str) -> Result<String, ConfigError> {
    const KEY: &str = "dashboard.upstream";
    let url = text.trim_end_matches('/');
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(invalid(
            KEY,
            format!("`{text}` is not an http:// URL; `hermes dashboard` listens on loopback, e.g. http://127.0.0.1:9119"),
        ));
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return Err(invalid(
            KEY,
            format!("`{text}` must be only a scheme, host and port, e.g. http://127.0.0.1:9119 (the edge serves it under /dashboard/ itself)"),
        ));
    }
    match url.parse::<http::Uri>() {
        Ok(uri) if uri.authority().is_some() => Ok(url.to_string()),
        _ => Err(invalid(KEY, format!("`{text}` is not a valid URL"))),
    }
}
