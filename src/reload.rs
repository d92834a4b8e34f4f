//! SIGHUP: reload what can change without a restart, and never exit.
//!
//! Without a handler the kernel's default for SIGHUP ends the process at once, cutting every
//! download in flight. `systemctl reload`, `kill -HUP` and a closed terminal all send it, so the
//! server takes it as "look at your files again":
//!
//! - certificate files (`--cert`/`--key`): loaded at once instead of at the next poll;
//! - the local CA's leaf: issued again when the names it must cover changed (a new address, or
//!   `tls.san` in the config file); the root itself is never swapped under running clients;
//! - site files of `--www`: the copies kept in memory are dropped and read again;
//! - the config file: read again and checked; a bad file is reported and changes nothing; each
//!   changed key that only a restart can apply is named in one log line.
//!
//! `App` holds its `Config` for the life of the process (limits, listeners and clients are built
//! from it once), so no other key is applied: a key that looks applied but is half used would be
//! worse than one that says "restart".

use std::sync::{Arc, OnceLock};

use tokio::signal::unix::{signal, Signal, SignalKind};

use crate::app::App;
use crate::config::{CliOverrides, Config, TlsMode};
use crate::tls::{local_ca::LocalCa, CertResolver};

/// The command-line settings of this process, so the config file is read again with the same
/// overrides on top (they cannot change without a restart).
static COMMAND_LINE: OnceLock<CliOverrides> = OnceLock::new();

pub(crate) fn remember_command_line(cli: CliOverrides) {
    let _ = COMMAND_LINE.set(cli);
}

/// SIGHUP, caught from the moment this is made: from then on it no longer ends the process.
pub(crate) struct Hangups(Option<Signal>);

impl Hangups {
    pub(crate) fn listen() -> Hangups {
        match signal(SignalKind::hangup()) {
            Ok(s) => Hangups(Some(s)),
            Err(e) => {
                tracing::warn!("cannot listen for SIGHUP (it will end the process): {e}");
                Hangups(None)
            }
        }
    }
}

/// What a SIGHUP reloads.
pub(crate) struct Reload {
    /// The configuration the process started with (what `App` uses).
    running: Config,
    app: Arc<App>,
    resolver: Arc<CertResolver>,
    /// `tls.san` as last applied to the local-CA leaf (a config file that cannot be read keeps
    /// these, not the ones of start-up).
    names: tokio::sync::Mutex<Vec<String>>,
}

impl Reload {
    pub(crate) fn new(running: Config, app: Arc<App>, resolver: Arc<CertResolver>) -> Reload {
        Reload {
            names: tokio::sync::Mutex::new(running.extra_names.clone()),
            running,
            app,
            resolver,
        }
    }

    /// Reloads on each SIGHUP until the process ends.
    pub(crate) fn spawn(self, hangups: Hangups) {
        let Some(mut signal) = hangups.0 else {
            return;
        };
        tokio::spawn(async move {
            while signal.recv().await.is_some() {
                crate::notify::reloading();
                self.run().await;
                crate::notify::ready("serving (reloaded)");
            }
        });
    }

    async fn run(&self) {
        tracing::info!("SIGHUP: reloading certificates, site files and the config file");
        let fresh = self.config_file();
        match &self.running.tls {
            TlsMode::Files { .. } => self.resolver.request_reload(),
            TlsMode::LocalCa | TlsMode::Acme(_) => {
                let mut names = self.names.lock().await;
                if let Some(fresh) = &fresh {
                    if self.local_ca(&fresh.extra_names).await {
                        *names = fresh.extra_names.clone();
                    }
                } else {
                    self.local_ca(&names).await;
                }
            }
        }
        let www = &self.app.www;
        match www.disk_dir() {
            Some(dir) => {
                let dropped = www.small_files.forget_all();
                tracing::info!(
                    dir = %dir.display(),
                    "SIGHUP: site files will be read again from disk ({dropped} kept in memory dropped)"
                );
            }
            None => tracing::info!(
                "SIGHUP: site files are the ones built into the binary; nothing to reload"
            ),
        }
        if let Some(fresh) = fresh {
            let changed = changed_keys(&self.running, &fresh);
            for key in &changed {
                if !applied_on_reload(key, &self.running.tls) {
                    tracing::warn!("config key {key} changed: restart to apply");
                }
            }
            if changed.is_empty() {
                if fresh.source.is_some() {
                    tracing::info!("SIGHUP: config file read again, nothing changed");
                } else {
                    tracing::info!(
                        "SIGHUP: no config file in use; settings come from the command line"
                    );
                }
            }
        }
    }

    /// The config file read again and checked; `None` (reported) when it cannot be used.
    fn config_file(&self) -> Option<Config> {
        let cli = COMMAND_LINE.get().cloned().unwrap_or_default();
        match Config::load(&cli) {
            Ok(mut c) => {
                // As at start (`conn_limits::fit_limits`, which said so then): otherwise a
                // `max_connections` lowered to fit the open-files limit reads as changed.
                c.limits.max_connections = crate::conn_limits::fit_to_open_files(
                    c.limits.max_connections,
                    crate::conn_limits::raise_open_files_limit(),
                );
                if let Some(path) = &c.source {
                    tracing::info!(path = %path.display(), "SIGHUP: config file read again");
                }
                Some(c)
            }
            Err(e) => {
                tracing::warn!("SIGHUP: {e}; nothing of it is applied, the server runs as before");
                None
            }
        }
    }

    /// Issues the leaf again when its names changed. A root that changed on disk is not taken:
    /// `/ca.crt` and every device that trusts the running root would disagree with it. `true`
    /// when the served certificate covers `extra` now.
    async fn local_ca(&self, extra: &[String]) -> bool {
        let names = crate::tls::local_ca::wanted_names(extra);
        let dir = self.running.certs_dir.clone();
        let loaded =
            tokio::task::spawn_blocking(move || LocalCa::load_or_create(&dir, &names)).await;
        let ca = match loaded {
            Ok(Ok(ca)) => ca,
            Ok(Err(e)) => {
                tracing::warn!(
                    "SIGHUP: local CA not reloaded, still serving the previous certificate: {e}"
                );
                return false;
            }
            Err(e) => {
                tracing::warn!("SIGHUP: local CA reload task failed: {e}");
                return false;
            }
        };
        let running_root = self.app.ca_pem.as_deref().map(root_fingerprint);
        if running_root.as_deref() != Some(ca.ca_fingerprint.as_str()) {
            tracing::warn!(
                "SIGHUP: the local CA in {} is not the one this process serves: restart to apply",
                self.running.certs_dir.display()
            );
            return false;
        }
        if ca.leaf_reissued {
            self.resolver.replace(ca.key);
            tracing::info!(
                names = %ca.leaf_names.join(" "),
                fingerprint = %ca.leaf_fingerprint,
                "SIGHUP: local CA issued a new certificate for changed names"
            );
        } else {
            tracing::info!("SIGHUP: local CA certificate still covers every name; kept");
        }
        true
    }
}

fn root_fingerprint(pem: &[u8]) -> String {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_slice(pem)
        .map(|der| crate::tls::fingerprint(&der))
        .unwrap_or_default()
}

/// Keys a SIGHUP applies: the extra names of the local-CA certificate.
fn applied_on_reload(key: &str, tls: &TlsMode) -> bool {
    key == "tls.san" && matches!(tls, TlsMode::LocalCa | TlsMode::Acme(_))
}

/// The settings that differ between two configurations, by the name of their key in the file
/// (a section's name when a setting there has no line of its own below).
fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    fn d<T: std::fmt::Debug>(v: &T) -> String {
        format!("{v:?}")
    }
    let (l, nl) = (&old.limits, &new.limits);
    let (a, na) = (&old.auth, &new.auth);
    let (c, nc) = (&old.chat, &new.chat);
    let pairs: Vec<(&str, String, String)> = vec![
        ("listen", d(&old.listen), d(&new.listen)),
        ("http_listen", d(&old.http_listen), d(&new.http_listen)),
        ("certs_dir", d(&old.certs_dir), d(&new.certs_dir)),
        ("data_dir", d(&old.data_dir), d(&new.data_dir)),
        ("upstream", d(&old.upstream), d(&new.upstream)),
        ("www", d(&old.www), d(&new.www)),
        ("log_json", d(&old.log_json), d(&new.log_json)),
        (
            "tls (mode, cert, key, domains, acme_*)",
            d(&old.tls),
            d(&new.tls),
        ),
        ("tls.san", d(&old.extra_names), d(&new.extra_names)),
        (
            "tls.reload_interval_secs",
            d(&old.cert_reload_interval),
            d(&new.cert_reload_interval),
        ),
        (
            "tls.hsts_max_age_secs",
            d(&old.hsts_max_age),
            d(&new.hsts_max_age),
        ),
        // The secret itself prints as `Secret(..)`: a new secret in the same file is not named.
        ("auth.oidc", d(&old.oidc), d(&new.oidc)),
        (
            "limits.header_read_timeout_secs",
            d(&l.header_read_timeout),
            d(&nl.header_read_timeout),
        ),
        (
            "limits.tls_handshake_timeout_secs",
            d(&l.tls_handshake_timeout),
            d(&nl.tls_handshake_timeout),
        ),
        (
            "limits.max_header_bytes",
            d(&l.max_header_bytes),
            d(&nl.max_header_bytes),
        ),
        (
            "limits.max_connections",
            d(&l.max_connections),
            d(&nl.max_connections),
        ),
        (
            "limits.h2_max_concurrent_streams",
            d(&l.h2_max_concurrent_streams),
            d(&nl.h2_max_concurrent_streams),
        ),
        (
            "limits.max_body_bytes",
            d(&l.max_body_bytes),
            d(&nl.max_body_bytes),
        ),
        (
            "limits.shutdown_grace_secs",
            d(&l.shutdown_grace),
            d(&nl.shutdown_grace),
        ),
        (
            "limits.requests_per_second_per_ip",
            d(&l.requests_per_second_per_ip),
            d(&nl.requests_per_second_per_ip),
        ),
        (
            "limits.request_burst_per_ip",
            d(&l.request_burst_per_ip),
            d(&nl.request_burst_per_ip),
        ),
        (
            "limits.trusted_proxies",
            d(&l.trusted_proxies),
            d(&nl.trusted_proxies),
        ),
        ("limits", d(l), d(nl)),
        ("media", d(&old.media), d(&new.media)),
        ("auth", d(a), d(na)),
        // `ChatConfig`'s Debug leaves fields out (and hides the key): each is compared here.
        ("chat.api_key", d(&(c.api_key == nc.api_key)), d(&true)),
        (
            "chat.idle_timeout_secs",
            d(&c.idle_timeout),
            d(&nc.idle_timeout),
        ),
        (
            "chat.memory_inject",
            d(&c.memory_inject),
            d(&nc.memory_inject),
        ),
        ("chat.hermes_home", d(&c.hermes_home), d(&nc.hermes_home)),
        (
            "chat.memory_max_bytes",
            d(&c.memory_max_bytes),
            d(&nc.memory_max_bytes),
        ),
        (
            "chat.max_image_bytes",
            d(&c.max_image_bytes),
            d(&nc.max_image_bytes),
        ),
        ("chat.max_images", d(&c.max_images), d(&nc.max_images)),
        (
            "chat.retry_budget_secs",
            d(&c.retry_budget),
            d(&nc.retry_budget),
        ),
        (
            "dashboard.upstream",
            d(&old.dashboard_upstream),
            d(&new.dashboard_upstream),
        ),
        ("routes", d(&old.routes), d(&new.routes)),
        (
            "metrics.listen",
            d(&old.metrics.listen),
            d(&new.metrics.listen),
        ),
        (
            "metrics.token_file",
            d(&old.metrics.token_file),
            // The token itself is compared, never printed.
            if old.metrics.token == new.metrics.token {
                d(&old.metrics.token_file)
            } else {
                "(another token)".into()
            },
        ),
    ];
    let mut changed: Vec<String> = Vec::new();
    for (key, before, after) in pairs {
        if before == after {
            continue;
        }
        // A whole section is named only when none of its own lines above did.
        let section = !key.contains('.') && !key.contains(' ');
        let prefix = format!("{key}.");
        if section && changed.iter().any(|k| k.starts_with(&prefix)) {
            continue;
        }
        changed.push(key.to_string());
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        let path = std::path::Path::new("test.toml");
        let file = Config::parse_str(text, path).unwrap();
        Config::resolve(file, None, &CliOverrides::default()).unwrap()
    }

    #[test]
    fn changed_keys_are_named_once_each() {
        let old = config("[limits]\nmax_connections = 10\n[auth]\nsession_hours = 2\n");
        let new = config(
            "[limits]\nmax_connections = 11\n[auth]\nsession_hours = 3\n[tls]\nsan = [\"a.example\"]\n",
        );
        assert_eq!(
            changed_keys(&old, &new),
            vec!["tls.san", "limits.max_connections", "auth"]
        );
        assert!(changed_keys(&old, &old).is_empty());
        assert!(applied_on_reload("tls.san", &TlsMode::LocalCa));
        assert!(!applied_on_reload(
            "limits.max_connections",
            &TlsMode::LocalCa
        ));
    }
}
