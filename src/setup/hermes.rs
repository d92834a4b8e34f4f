//! Finding Hermes for setup: its home, its API server settings (read by `config::hermes_settings`
//! as Hermes 0.19 reads them), turning the API server on in its `.env`, and the systemd unit that
//! `hermes gateway install` made, to restart it (`docs/hermes-notes.md`, "setup").

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::plan::{Existing, Owner, Step};
use crate::config::HermesSettings;

/// A home chosen, and why (said to the person).
pub(crate) struct Home {
    pub path: PathBuf,
    pub why: String,
}

/// The user's home folder from a passwd file (`name:x:uid:gid:gecos:home:shell`).
fn passwd_home(passwd: &str, user: &str) -> Option<PathBuf> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 7 && f[0] == user).then(|| PathBuf::from(f[5]))
    })
}

/// A user's uid and gid from a passwd file.
pub(crate) fn passwd_ids(passwd: &str, user: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() >= 7 && f[0] == user {
            Some((f[2].parse().ok()?, f[3].parse().ok()?))
        } else {
            None
        }
    })
}

/// The user name of a uid, from `/etc/passwd`.
fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 7 && f[2] == uid.to_string()).then(|| f[0].to_string())
    })
}

/// `--hermes-home`, else `$HERMES_HOME`, else `~/.hermes` of the user who ran sudo, else the one
/// `.hermes` in `/root` or `/home/*` (more than one: the person must choose).
pub(crate) fn find_home(flag: Option<&Path>) -> Result<Home, String> {
    if let Some(p) = flag {
        if !p.is_dir() {
            return Err(format!(
                "--hermes-home {} is not a folder: give the folder that holds Hermes' .env and config.yaml",
                p.display()
            ));
        }
        return Ok(Home {
            path: p.to_path_buf(),
            why: "--hermes-home".into(),
        });
    }
    if let Some(h) = std::env::var_os("HERMES_HOME").filter(|h| !h.is_empty()) {
        return Ok(Home {
            path: PathBuf::from(h),
            why: "$HERMES_HOME".into(),
        });
    }
    if let Ok(user) = std::env::var("SUDO_USER") {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        if let Some(home) = passwd_home(&passwd, &user).map(|h| h.join(".hermes")) {
            if home.is_dir() {
                return Ok(Home {
                    path: home,
                    why: format!("the home of {user}, who ran sudo"),
                });
            }
        }
    }
    let mut found: Vec<PathBuf> = Vec::new();
    if Path::new("/root/.hermes").is_dir() {
        found.push(PathBuf::from("/root/.hermes"));
    }
    if let Ok(homes) = std::fs::read_dir("/home") {
        let mut more: Vec<PathBuf> = homes
            .flatten()
            .map(|e| e.path().join(".hermes"))
            .filter(|p| p.is_dir())
            .collect();
        more.sort();
        found.extend(more);
    }
    match found.len() {
        0 => Err(
            "found no Hermes home (no $HERMES_HOME, no /root/.hermes, no /home/*/.hermes): \
                  install Hermes Agent first, or give its folder with --hermes-home DIR"
                .into(),
        ),
        1 => Ok(Home {
            path: found.swap_remove(0),
            why: "the only .hermes folder in /root and /home".into(),
        }),
        _ => Err(format!(
            "found several Hermes homes ({}): choose one with --hermes-home DIR",
            found
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// A fresh API key: 32 random bytes in hex (Hermes wants at least 16 characters).
pub(crate) fn fresh_key() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// What `.env` needs so that the API server is on with a key, or `None` when it already is.
/// The key to use is returned either way.
pub(crate) fn enable_api(
    home: &Path,
    settings: &HermesSettings,
) -> Result<(String, Option<Step>), String> {
    // A symlinked .env (dotfiles kept elsewhere) is edited where it points: the new file is
    // renamed into place, which would otherwise replace the link.
    let env_path = std::fs::canonicalize(home.join(".env")).unwrap_or_else(|_| home.join(".env"));
    // Hermes refuses keys shorter than 16 characters: such a key is replaced.
    let key = settings
        .key
        .as_ref()
        .map(|k| k.value.clone())
        .filter(|k| k.len() >= 16);
    if let (true, Some(key)) = (settings.enabled.value, &key) {
        return Ok((key.clone(), None));
    }
    let key = key.unwrap_or_else(fresh_key);
    let (text, mode, owner) = match std::fs::metadata(&env_path) {
        Ok(meta) => {
            let bytes = std::fs::read(&env_path)
                .map_err(|e| format!("cannot read {}: {e}", env_path.display()))?;
            let text = String::from_utf8(bytes).map_err(|_| {
                format!(
                    "{} is not UTF-8 text; add API_SERVER_ENABLED=true and API_SERVER_KEY=<a long random key> to it yourself",
                    env_path.display()
                )
            })?;
            (
                text,
                meta.mode() & 0o7777,
                Owner::Ids(meta.uid(), meta.gid()),
            )
        }
        Err(_) => {
            let meta = std::fs::metadata(home)
                .map_err(|e| format!("cannot read {}: {e}", home.display()))?;
            (String::new(), 0o600, Owner::Ids(meta.uid(), meta.gid()))
        }
    };
    let new = super::envfile::set_vars(
        &text,
        &[("API_SERVER_ENABLED", "true"), ("API_SERVER_KEY", &key)],
    );
    Ok((
        key,
        Some(Step::File {
            path: env_path,
            mode,
            owner,
            contents: new.into_bytes(),
            existing: Existing::Replace,
            secret: true,
            what: "Hermes' settings: API_SERVER_ENABLED=true and API_SERVER_KEY (other lines kept)",
        }),
    ))
}

/// A Hermes gateway unit: `hermes gateway install` writes a user unit
/// (`~/.config/systemd/user/hermes-gateway[-suffix].service`) or, with `--system`, a system
/// unit in `/etc/systemd/system/`, with `Environment="HERMES_HOME=..."`.
pub(crate) struct GatewayUnit {
    pub name: String,
    /// `None`: a system unit; `Some(user)`: that user's unit.
    pub user: Option<String>,
}

impl GatewayUnit {
    pub(crate) fn restart_command(&self) -> Vec<String> {
        let mut argv = vec!["systemctl".to_string()];
        if let Some(user) = &self.user {
            argv.push("--user".into());
            argv.push(format!("--machine={user}@"));
        }
        argv.push("restart".into());
        argv.push(self.name.clone());
        argv
    }
}

/// The unit that runs the gateway of `home`, looked for under `root`: system units first, then
/// the user units of the home's owner.
pub(crate) fn gateway_unit(root: &Path, home: &Path) -> Option<GatewayUnit> {
    let canonical = std::fs::canonicalize(home).unwrap_or_else(|_| home.to_path_buf());
    let owner = std::fs::metadata(home)
        .ok()
        .and_then(|m| user_name(m.uid()));
    let mut places: Vec<(PathBuf, Option<String>)> = vec![(root.join("etc/systemd/system"), None)];
    if let Some(user) = &owner {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        if let Some(h) = passwd_home(&passwd, user) {
            let rel = h.strip_prefix("/").unwrap_or(&h);
            places.push((
                root.join(rel).join(".config/systemd/user"),
                Some(user.clone()),
            ));
        }
    }
    for (dir, user) in places {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| {
                (n.starts_with("hermes-gateway") || n == "hermes.service")
                    && n.ends_with(".service")
            })
            .collect();
        names.sort();
        for name in names {
            let Ok(text) = std::fs::read_to_string(dir.join(&name)) else {
                continue;
            };
            let serves_home = text.lines().any(|l| {
                let l = l
                    .trim()
                    .trim_start_matches("Environment=")
                    .trim_matches('"');
                l.strip_prefix("HERMES_HOME=").is_some_and(|h| {
                    let h = Path::new(h.trim_matches('"'));
                    h == canonical || h == home
                })
            });
            if serves_home {
                return Some(GatewayUnit {
                    name: name.trim_end_matches(".service").to_string(),
                    user,
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines_are_read_for_homes_and_ids() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nann:x:1000:1000:Ann,,,:/home/ann:/bin/bash\nbad line\n";
        assert_eq!(passwd_home(passwd, "ann"), Some(PathBuf::from("/home/ann")));
        assert_eq!(passwd_ids(passwd, "ann"), Some((1000, 1000)));
        assert_eq!(passwd_ids(passwd, "bob"), None);
        assert_eq!(passwd_ids("x:x:nope:0:::\n", "x"), None);
    }

    #[test]
    fn a_symlinked_env_is_edited_where_it_points_and_an_enabled_server_is_left_alone() {
        let home = tempfile::tempdir().unwrap();
        let real = home.path().join("dotfiles-env");
        std::fs::write(&real, "A=1\n").unwrap();
        std::os::unix::fs::symlink(&real, home.path().join(".env")).unwrap();
        let settings = HermesSettings::read(home.path());
        let (key, step) = enable_api(home.path(), &settings).unwrap();
        assert_eq!(key.len(), 64);
        match step {
            Some(Step::File { path, contents, .. }) => {
                assert_eq!(path, std::fs::canonicalize(&real).unwrap());
                assert_eq!(
                    String::from_utf8(contents).unwrap(),
                    format!("A=1\nAPI_SERVER_ENABLED=true\nAPI_SERVER_KEY={key}\n")
                );
            }
            other => panic!("expected a file step, got {other:?}"),
        }
        std::fs::write(&real, format!("API_SERVER_KEY={key}\n")).unwrap();
        let settings = HermesSettings::read(home.path());
        let (same, step) = enable_api(home.path(), &settings).unwrap();
        assert_eq!(same, key);
        assert!(
            step.is_none(),
            "a non-empty key turns the server on: nothing to change"
        );
    }

    #[test]
    fn the_unit_of_a_home_is_found_by_its_hermes_home_line() {
        let root = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let units = root.path().join("etc/systemd/system");
        std::fs::create_dir_all(&units).unwrap();
        std::fs::write(
            units.join("hermes-gateway-other.service"),
            "[Service]\nEnvironment=\"HERMES_HOME=/somewhere/else\"\n",
        )
        .unwrap();
        assert!(gateway_unit(root.path(), home.path()).is_none());
        let canonical = std::fs::canonicalize(home.path()).unwrap();
        std::fs::write(
            units.join("hermes-gateway.service"),
            format!(
                "[Service]\nExecStart=/x/python -m hermes_cli.main gateway run\nEnvironment=\"HERMES_HOME={}\"\n",
                canonical.display()
            ),
        )
        .unwrap();
        let unit = gateway_unit(root.path(), home.path()).unwrap();
        assert_eq!(unit.name, "hermes-gateway");
        assert_eq!(
            unit.restart_command(),
            ["systemctl", "restart", "hermes-gateway"]
        );
    }
}
