//! `[metrics]`: the plain-HTTP listener of `/metrics` (Prometheus) and `/status`
//! (`hermes-edge status`), on loopback unless a token guards it, and the token itself.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::file::FileMetrics;
use super::{defaults, invalid, parse_addr, CliOverrides, ConfigError};

/// The shortest token accepted: a guessable token would open the counters (user activity, the
/// certificate names) to whoever can reach the listener.
const MIN_TOKEN_CHARS: usize = 16;

#[derive(Clone)]
pub(crate) struct MetricsConfig {
    /// `None` when the listener is off.
    pub listen: Option<SocketAddr>,
    /// Whether `listen` was set (file or flag): an explicit address that cannot be bound stops
    /// the start, the default only logs a warning.
    pub explicit: bool,
    /// The Bearer token for `/metrics` and `/status` (on this listener and on the HTTPS port).
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
}

// The token is never printed, not even in a debug dump of the configuration.
impl std::fmt::Debug for MetricsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsConfig")
            .field("listen", &self.listen)
            .field("explicit", &self.explicit)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("token_file", &self.token_file)
            .finish()
    }
}

pub(super) fn resolve(m: &FileMetrics, cli: &CliOverrides) -> Result<MetricsConfig, ConfigError> {
    let given = cli.metrics_listen.clone().or(m.listen.clone());
    let explicit = given.is_some();
    let listen = match given.as_deref().unwrap_or(defaults::METRICS_LISTEN) {
        "off" | "" => None,
        text => Some(parse_addr("metrics.listen", text)?),
    };
    let token = match &m.token_file {
        None => None,
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                invalid(
                    "metrics.token_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            let token = text.trim().to_string();
            if token.chars().count() < MIN_TOKEN_CHARS
                || !token.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(invalid(
                    "metrics.token_file",
                    format!(
                        "{} must hold one token of at least {MIN_TOKEN_CHARS} printable characters without spaces; make one with: openssl rand -hex 32 > {}",
                        path.display(),
                        path.display()
                    ),
                ));
            }
            Some(token)
        }
    };
    if let Some(addr) = listen {
        if !addr.ip().is_loopback() && token.is_none() {
            return Err(invalid(
                "metrics.listen",
                format!(
                    "{addr} is not a loopback address, so /metrics and /status would be open to that network; set metrics.token_file (a file holding a long random token, e.g. `openssl rand -hex 32`) or listen on 127.0.0.1"
                ),
            ));
        }
    }
    Ok(MetricsConfig {
        listen,
        explicit,
        token,
        token_file: m.token_file.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_with(listen: Option<&str>, token: Option<&str>) -> Result<MetricsConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        let token_file = token.map(|t| {
            let p = dir.path().join("token");
            std::fs::write(&p, t).unwrap();
            p
        });
        let file = FileMetrics {
            listen: listen.map(str::to_string),
            token_file,
        };
        resolve(&file, &CliOverrides::default()).map_err(|e| e.to_string())
    }

    #[test]
    fn the_default_is_loopback_and_not_explicit() {
        let m = resolve_with(None, None).unwrap();
        assert_eq!(m.listen, Some(defaults::METRICS_LISTEN.parse().unwrap()));
        assert!(m.listen.unwrap().ip().is_loopback());
        assert!(!m.explicit);
        assert_eq!(resolve_with(Some("off"), None).unwrap().listen, None);
        assert!(resolve_with(Some("127.0.0.1:9000"), None).unwrap().explicit);
    }

    #[test]
    fn a_network_address_needs_a_long_token() {
        let e = resolve_with(Some("0.0.0.0:9000"), None).unwrap_err();
        assert!(
            e.starts_with(
                "invalid setting `metrics.listen`: 0.0.0.0:9000 is not a loopback address"
            ),
            "{e}"
        );
        let e = resolve_with(Some("0.0.0.0:9000"), Some("short\n")).unwrap_err();
        assert!(
            e.contains("metrics.token_file") && e.contains("openssl rand -hex 32"),
            "{e}"
        );
        let e = resolve_with(None, Some("has a space in it, long enough\n")).unwrap_err();
        assert!(e.contains("metrics.token_file"), "{e}");
        let m = resolve_with(Some("[::]:9000"), Some("0123456789abcdef0123\n")).unwrap();
        assert_eq!(m.token.as_deref(), Some("0123456789abcdef0123"));
        // Never printed, not even in a debug dump of the configuration.
        assert!(!format!("{m:?}").contains("0123456789abcdef0123"));
    }
}
