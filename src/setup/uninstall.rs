//! `hermes-edge uninstall`: removes what setup made (the service, the binary, `/etc/hermes-edge`,
//! the sysusers.d file and the system user) and keeps the data in `/var/lib/hermes-edge`
//! (accounts, conversations, certificates) unless `--purge`. Hermes' settings are never touched:
//! its API server stays on with its key, which other clients may use.

use std::path::PathBuf;

use super::plan::{self, Step};
use super::{Layout, BIN, CONF_DIR, SERVICE_USER, STATE_DIR, SYSUSERS, UNIT};

#[derive(clap::Args, Debug, Clone)]
pub(crate) struct UninstallArgs {
    /// Remove what setup wrote under DIR instead of / (nothing is stopped).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Print what would be removed and remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also delete /var/lib/hermes-edge: accounts, conversations, certificates. Cannot be undone.
    #[arg(long)]
    pub purge: bool,
}

pub(crate) fn run(args: UninstallArgs) -> Result<(), String> {
    let layout = Layout::new(args.root.as_deref());
    if !super::is_root_user() && !args.dry_run {
        return Err("uninstall removes system files: run it as root, or add --dry-run".into());
    }
    let live = layout.live();
    let mut steps = Vec::new();
    let unit = layout.at(UNIT);
    if live && unit.exists() {
        steps.push(Step::Run {
            argv: ["systemctl", "disable", "--now", "hermes-edge"]
                .map(String::from)
                .to_vec(),
            why: "stop the service and stop starting it at boot".into(),
            may_fail: true,
        });
    }
    steps.push(Step::Remove {
        path: unit.clone(),
        what: "the systemd service",
    });
    if live && unit.exists() {
        steps.push(Step::Run {
            argv: vec!["systemctl".into(), "daemon-reload".into()],
            why: "make systemd forget the service".into(),
            may_fail: true,
        });
    }
    steps.push(Step::Remove {
        path: layout.at(BIN),
        what: "the program",
    });
    steps.push(Step::Remove {
        path: layout.at(CONF_DIR),
        what: "the settings and the key file",
    });
    steps.push(Step::Remove {
        path: layout.at(SYSUSERS),
        what: "the system user's sysusers.d line",
    });
    if layout.service_ids().is_some() {
        if live {
            steps.push(Step::Run {
                argv: vec!["userdel".into(), SERVICE_USER.into()],
                why: "remove the system user".into(),
                may_fail: false,
            });
        } else {
            // Under another root the user's lines are removed from its files directly (userdel
            // --root would need that root's login.defs and could run its hooks).
            for file in ["/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow"] {
                steps.push(Step::DropLines {
                    path: layout.at(file),
                    prefix: format!("{SERVICE_USER}:"),
                    what: "the system user",
                });
            }
        }
    }
    let state = layout.at(STATE_DIR);
    if args.purge {
        steps.push(Step::Remove {
            path: state.clone(),
            what: "the data: accounts, conversations, certificates (--purge)",
        });
    }
    println!(
        "{}",
        if args.dry_run {
            "Uninstall would (nothing is changed: --dry-run):"
        } else {
            "Uninstalling hermes-edge:"
        }
    );
    let none = || None;
    plan::execute(&steps, args.dry_run, &none)?;
    if !args.purge && state.exists() {
        println!(
            "Kept {} (accounts, conversations, certificates): setup uses it again; delete it with \
             `hermes-edge uninstall --purge` (or rm -r).",
            state.display()
        );
    }
    println!(
        "Hermes' settings were not changed: its API server stays on with its key (turn it off in \
         its .env with API_SERVER_ENABLED=false if nothing else uses it)."
    );
    Ok(())
}
