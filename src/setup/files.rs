//! The texts setup writes: the systemd unit (made from `config/hermes-edge.service`, the one
//! template, with its ExecStart pointed at the config file), the config file, the sysusers.d
//! line that makes the system user, and hermes-edge's environment file with the key.

/// The unit template of the source tree, so that the documented unit and the installed one
/// cannot drift apart.
const UNIT_TEMPLATE: &str = include_str!("../../config/hermes-edge.service");

/// The installed unit: the template with its header comment replaced and its ExecStart (with
/// continuation lines) replaced by one that reads the config file.
pub(crate) fn unit() -> Result<String, String> {
    let mut out = String::from(
        "# hermes-edge, written by `hermes-edge setup` (settings: /etc/hermes-edge/config.toml,\n\
         # the Hermes key: /etc/hermes-edge/env). Written again by the next setup; for changes of\n\
         # your own use `systemctl edit hermes-edge`. `hermes-edge uninstall` removes it.\n",
    );
    let mut lines = UNIT_TEMPLATE.lines().skip_while(|l| l.starts_with('#'));
    let mut exec_found = false;
    while let Some(line) = lines.next() {
        if line.starts_with("ExecStart=") {
            let mut l = line;
            while l.ends_with('\\') {
                match lines.next() {
                    Some(next) => l = next,
                    None => break,
                }
            }
            out.push_str(&format!(
                "ExecStart={} --config {}\n",
                super::BIN,
                super::CONFIG
            ));
            exec_found = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !exec_found {
        return Err("internal: the unit template has no ExecStart line".into());
    }
    Ok(out)
}

/// The sysusers.d line for the system user: no login, home in the state folder.
pub(crate) fn sysusers() -> String {
    format!(
        "# The system user hermes-edge runs as (written by `hermes-edge setup`).\n\
         u {} - \"hermes-edge HTTPS front end of Hermes\" {} /usr/sbin/nologin\n",
        super::SERVICE_USER,
        super::STATE_DIR
    )
}

/// A TOML string literal.
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// What the config file records.
pub(crate) struct ConfigValues<'a> {
    pub domains: &'a [String],
    pub email: Option<&'a str>,
    pub upstream: &'a str,
    pub upstream_source: &'a str,
    pub hermes_home: &'a std::path::Path,
    pub acme_staging: bool,
    pub acme_directory: Option<&'a str>,
    pub acme_ca_root: Option<&'a std::path::Path>,
}

/// `/etc/hermes-edge/config.toml`, commented.
pub(crate) fn config(v: &ConfigValues<'_>) -> String {
    let state = super::STATE_DIR;
    let domains: Vec<String> = v.domains.iter().map(|d| quoted(d)).collect();
    let mut s = format!(
        "# hermes-edge settings, written by `hermes-edge setup`. Yours to edit: setup keeps this file\n\
         # when run again. After a change: `systemctl reload hermes-edge` (keys that need a restart\n\
         # are named in the log; then `systemctl restart hermes-edge`). Every key, with its default:\n\
         # config/hermes-edge.example.toml in the source, or `hermes-edge --help`.\n\
         \n\
         # The database (accounts, sessions, conversations).\n\
         data_dir = {}\n\
         # The ACME account key and certificates (files 0600).\n\
         certs_dir = {}\n\
         \n\
         # Hermes' API server, from {}.\n\
         # Its key is in {} (HERMES_EDGE_API_KEY), readable by root only.\n\
         upstream = {}\n\
         \n\
         [tls]\n\
         # The names of the Let's Encrypt certificate; their A/AAAA records point at this machine.\n\
         domains = [{}]\n",
        quoted(&format!("{state}/data")),
        quoted(&format!("{state}/certs")),
        v.upstream_source,
        super::ENV_FILE,
        quoted(v.upstream),
        domains.join(", "),
    );
    match v.email {
        Some(e) => s.push_str(&format!(
            "# Let's Encrypt writes here when a certificate is about to expire unrenewed.\nemail = {}\n",
            quoted(e)
        )),
        None => s.push_str(
            "# A contact address for Let's Encrypt (expiry warnings):\n# email = \"me@example.com\"\n",
        ),
    }
    if v.acme_staging {
        s.push_str("# Let's Encrypt's staging CA: untrusted certificates, for trying things out.\nacme_staging = true\n");
    }
    if let Some(d) = v.acme_directory {
        s.push_str(&format!("acme_directory = {}\n", quoted(d)));
    }
    if let Some(r) = v.acme_ca_root {
        s.push_str(&format!(
            "acme_ca_root = {}\n",
            quoted(&r.display().to_string())
        ));
    }
    s.push_str(&format!(
        "\n[media]\n\
         # Files served at /media/ to signed-in users.\n\
         dir = {}\n\
         \n\
         [chat]\n\
         # Hermes' home, whose memories/ are read with memory_inject = true (the hermes-edge user\n\
         # then needs read access to it):\n\
         # hermes_home = {}\n",
        quoted(&format!("{state}/media")),
        quoted(&v.hermes_home.display().to_string()),
    ));
    s
}

/// `/etc/hermes-edge/env` with the key set, other lines of an existing file kept.
pub(crate) fn env_file(existing: &str, key: &str) -> String {
    let base = if existing.is_empty() {
        "# The Hermes API Server's key (its API_SERVER_KEY), read by the hermes-edge service.\n\
         # Written by `hermes-edge setup`; root only (0600).\n"
    } else {
        existing
    };
    super::envfile::set_vars(base, &[("HERMES_EDGE_API_KEY", key)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_is_the_template_with_one_exec_start() {
        let u = unit().unwrap();
        let exec: Vec<&str> = u.lines().filter(|l| l.starts_with("ExecStart=")).collect();
        assert_eq!(
            exec,
            ["ExecStart=/usr/local/bin/hermes-edge --config /etc/hermes-edge/config.toml"]
        );
        assert!(!u.contains("chat.example.com") && !u.contains("--certs-dir"));
        for kept in [
            "Type=notify",
            "LimitNOFILE=",
            "User=hermes-edge",
            "[Install]",
        ] {
            assert!(u.contains(kept), "{kept} missing");
        }
    }

    #[test]
    fn the_config_file_parses_with_the_values_given() {
        let text = config(&ConfigValues {
            domains: &["chat.example.com".into(), "b.example.com".into()],
            email: Some("me@example.com\"x"),
            upstream: "http://127.0.0.1:8642",
            upstream_source: "Hermes' default",
            hermes_home: std::path::Path::new("/root/.hermes"),
            acme_staging: true,
            acme_directory: None,
            acme_ca_root: None,
        });
        let file =
            crate::config::Config::parse_str(&text, std::path::Path::new("config.toml")).unwrap();
        assert_eq!(
            file.tls.domains.unwrap(),
            ["chat.example.com", "b.example.com"]
        );
        assert_eq!(file.tls.email.as_deref(), Some("me@example.com\"x"));
        assert_eq!(file.upstream.as_deref(), Some("http://127.0.0.1:8642"));
    }
}
