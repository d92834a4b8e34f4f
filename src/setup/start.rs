//! The end of setup: the first admin account, Hermes' gateway restarted when its settings changed,
//! the service enabled and (re)started, its log followed until the certificate is there, and the
//! words a person needs next (URL, sign-in, what to do). With `--no-start` or `--root`, the
//! commands to run instead.

use std::process::Command;
use std::time::{Duration, Instant};

use super::hermes::GatewayUnit;
use super::Layout;

/// How long the log is followed for the certificate; Let's Encrypt usually takes seconds.
const FOLLOW_FOR: Duration = Duration::from_secs(120);

pub(super) struct Start<'a> {
    pub layout: &'a Layout,
    pub no_start: bool,
    pub dry_run: bool,
    /// Hermes' `.env` was changed: its gateway must read it again.
    pub hermes_changed: bool,
    pub gateway: Option<GatewayUnit>,
    /// Any installed file changed: a running service must restart.
    pub changed: bool,
    pub domains: &'a [String],
}

impl Start<'_> {
    pub(super) fn finish(self) -> Result<(), String> {
        if self.dry_run {
            println!("Dry run: nothing was changed.");
            return Ok(());
        }
        let admin = if self.layout.live() {
            first_admin(self.layout)?
        } else {
            None
        };
        let gateway_cmd = self.gateway.as_ref().map(GatewayUnit::restart_command);
        let mut next: Vec<String> = Vec::new();
        if self.hermes_changed {
            match (&gateway_cmd, self.no_start) {
                (Some(cmd), false) => {
                    println!("Restarting Hermes' gateway so that it reads its new settings:");
                    // hermes-edge works once Hermes has restarted, whoever restarts it: a failure
                    // here is said, not fatal.
                    match super::plan::run(cmd) {
                        Ok(()) => println!("  done: {}", cmd.join(" ")),
                        Err(e) => next.push(format!(
                            "{e}: restart Hermes' gateway yourself so that it reads its new settings"
                        )),
                    }
                }
                (Some(cmd), true) => next.push(format!(
                    "restart Hermes' gateway so that it reads its new settings: `{}`",
                    cmd.join(" ")
                )),
                (None, _) => next.push(
                    "restart Hermes' gateway so that it reads its new settings: as the user who \
                     runs it, `hermes gateway restart` (or stop `hermes gateway run` and start it \
                     again)"
                        .into(),
                ),
            }
        }
        let url = format!(
            "https://{}/",
            self.domains.first().map_or("", String::as_str)
        );
        if self.no_start {
            next.push(format!(
                "start hermes-edge: `systemctl daemon-reload && systemctl enable --now hermes-edge`, \
                 then open {url}"
            ));
            if !self.layout.live() {
                next.push(format!(
                    "(files were written under {}; nothing on this machine was started)",
                    self.layout.root.display()
                ));
            }
        } else {
            self.start_service()?;
            match follow() {
                Ok(line) => {
                    println!("  {line}");
                    println!("hermes-edge is running: {url}");
                }
                Err(why) => next.push(why),
            }
        }
        match admin {
            Some(password) => println!(
                "Sign in as `admin` with the password {password}\n  (shown this once and stored \
                 only as a hash; change it after signing in, or with `hermes-edge user passwd admin`)"
            ),
            None if self.layout.live() => println!(
                "The accounts were kept (an `admin` exists already; `hermes-edge user passwd admin` \
                 sets a new password)."
            ),
            None => next.push(
                "the server creates the account `admin` at its first start and prints its password \
                 once in its log (`journalctl -u hermes-edge -o cat | grep admin`)"
                    .into(),
            ),
        }
        if !next.is_empty() {
            println!("Next:");
            for n in &next {
                println!("  - {n}");
            }
        }
        println!(
            "Then: add accounts (`hermes-edge user add NAME`), check everything with `hermes-edge \
             doctor --config {}`; to undo: `hermes-edge uninstall` (docs/setup.md).",
            super::CONFIG
        );
        Ok(())
    }

    fn start_service(&self) -> Result<(), String> {
        println!("Starting hermes-edge:");
        let run = |args: &[&str]| {
            let argv: Vec<String> = std::iter::once("systemctl")
                .chain(args.iter().copied())
                .map(String::from)
                .collect();
            super::plan::run(&argv).map(|()| println!("  done: {}", argv.join(" ")))
        };
        run(&["daemon-reload"])?;
        run(&["enable", "hermes-edge"])?;
        let active = Command::new("systemctl")
            .args(["is-active", "--quiet", "hermes-edge"])
            .status()
            .is_ok_and(|s| s.success());
        match (active, self.changed) {
            (true, true) => run(&["restart", "hermes-edge"]),
            (true, false) => {
                println!("  left alone (running, nothing changed): hermes-edge");
                Ok(())
            }
            (false, _) => run(&["start", "hermes-edge"]),
        }
    }
}

/// On a database without accounts, `admin` with a random password (or
/// `HERMES_EDGE_ADMIN_PASSWORD`), made here so that the password is shown once on this terminal
/// rather than written into the journal by the server's first start.
fn first_admin(layout: &Layout) -> Result<Option<String>, String> {
    let dir = layout.at(&format!("{}/data", super::STATE_DIR));
    let store = crate::store::Store::open(&dir).map_err(|e| e.to_string())?;
    let created = crate::auth::users::ensure_first_admin(&store).map_err(|e| e.to_string())?;
    drop(store);
    let (uid, gid) = layout
        .service_ids()
        .ok_or_else(|| format!("the user `{}` does not exist", super::SERVICE_USER))?;
    // The database files were made by root; the service must own them.
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for e in entries.flatten() {
        std::os::unix::fs::chown(e.path(), Some(uid), Some(gid))
            .map_err(|err| format!("cannot change the owner of {}: {err}", e.path().display()))?;
    }
    Ok(created.map(|(password, from_env)| {
        if from_env {
            "from HERMES_EDGE_ADMIN_PASSWORD".to_string()
        } else {
            password
        }
    }))
}

/// Follows the service's log until the certificate is served, the service fails, or
/// [`FOLLOW_FOR`] passes; the ACME lines are shown as they come.
fn follow() -> Result<String, String> {
    println!(
        "Waiting for the certificate (up to {} s):",
        FOLLOW_FOR.as_secs()
    );
    let since = format!(
        "@{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .saturating_sub(5)
    );
    let started = Instant::now();
    let mut shown = 0;
    while started.elapsed() < FOLLOW_FOR {
        std::thread::sleep(Duration::from_secs(1));
        let out = Command::new("journalctl")
            .args([
                "-u",
                "hermes-edge",
                "-o",
                "cat",
                "--no-pager",
                "--since",
                &since,
            ])
            .output()
            .map_err(|e| format!("cannot read the log (`journalctl -u hermes-edge`): {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        for line in lines.iter().skip(shown) {
            if line.contains("ACME") || line.contains("ERROR") || line.contains("WARN") {
                println!("  log: {line}");
            }
            if line.contains("ACME: installed new certificate")
                || line.contains("ACME: using cached certificate")
            {
                return Ok("certificate: issued and served".into());
            }
        }
        shown = shown.max(lines.len());
        let state = Command::new("systemctl")
            .args(["is-active", "hermes-edge"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        if state == "failed" || (state == "inactive" && started.elapsed() > Duration::from_secs(5))
        {
            return Err(format!(
                "the service stopped ({state}); its log says why: `journalctl -u hermes-edge -o cat -n 50`"
            ));
        }
    }
    Err(format!(
        "no certificate after {} s: see the log lines above, `journalctl -u hermes-edge -f -o cat`, \
         and `hermes-edge cert status --config {}`",
        FOLLOW_FOR.as_secs(),
        super::CONFIG
    ))
}

/// Whether Hermes answers at `upstream` and takes `key`: one `GET /v1/models`, a few seconds at
/// most. Said, never fatal (Hermes may simply not be running yet).
pub(super) async fn probe_hermes(upstream: &str, key: &str) -> String {
    match crate::hermes::probe(upstream, "/v1/models", Some(key), Duration::from_secs(5)).await {
        Ok((status, _)) if status.is_success() => "Hermes answers there and accepts the key".into(),
        Ok((http::StatusCode::UNAUTHORIZED, _)) => {
            "warning: Hermes answers there but refuses the key: it runs with other settings than \
             its files say (restart its gateway)"
                .into()
        }
        Ok((status, _)) => format!(
            "warning: {upstream} answered {status} to /v1/models, not as Hermes' API server does"
        ),
        Err(e) => format!(
            "warning: Hermes does not answer at {upstream} ({e}); start its gateway (`hermes \
             gateway run`, or its service) before using the chat"
        ),
    }
}
