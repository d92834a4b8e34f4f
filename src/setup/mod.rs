//! `hermes-edge setup` and `hermes-edge uninstall`: from a VPS with a domain to HTTPS chat in one
//! command (`docs/setup.md` is the person's side of this).
//!
//! Setup runs in three phases, and nothing changes before the third:
//! 1. checks (`checks.rs`): ports 80/443, the domain's DNS records against this machine's
//!    addresses, free memory and disk;
//! 2. Hermes (`hermes.rs`): its home, its API server settings, and whether `.env` must turn the
//!    API server on;
//! 3. the steps (`plan.rs`): every file with its mode and owner, every command; printed by
//!    `--dry-run`, else applied, each saying whether it changed anything (a second run changes
//!    nothing). Then (`start.rs`) the service is started and followed until it has a certificate.
//!
//! `--root DIR` writes everything under DIR (packaging, tests): the checks of the live machine
//! (ports, DNS) are skipped unless `--dns-server` asks for the DNS one, and nothing is started.

mod checks;
mod envfile;
mod files;
mod hermes;
mod plan;
mod start;
mod uninstall;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use plan::{Existing, Owner, Step};

pub(crate) use uninstall::{run as uninstall, UninstallArgs};

/// The system user the service runs as.
pub(crate) const SERVICE_USER: &str = "hermes-edge";
pub(crate) const BIN: &str = "/usr/local/bin/hermes-edge";
pub(crate) const CONF_DIR: &str = "/etc/hermes-edge";
pub(crate) const CONFIG: &str = "/etc/hermes-edge/config.toml";
pub(crate) const ENV_FILE: &str = "/etc/hermes-edge/env";
pub(crate) const UNIT: &str = "/etc/systemd/system/hermes-edge.service";
pub(crate) const SYSUSERS: &str = "/etc/sysusers.d/hermes-edge.conf";
pub(crate) const STATE_DIR: &str = "/var/lib/hermes-edge";
/// Hermes' API server when its settings name no host or port (its own default).
const DEFAULT_UPSTREAM: &str = "http://127.0.0.1:8642";

/// `setup`'s own flags. The domain, email and ACME options are the server's flags (`--domain`,
/// `--email`, `--acme-staging`, `--acme-directory`, `--acme-ca-root`, `--upstream`), read from
/// the command line's shared options.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct SetupArgs {
    /// Hermes' home folder (its .env and config.yaml). Default: $HERMES_HOME, else ~/.hermes of
    /// the user who ran sudo, else the one .hermes folder in /root or /home/*.
    #[arg(long, value_name = "DIR")]
    pub hermes_home: Option<PathBuf>,
    /// Write everything under DIR instead of / (packaging, tests). Skips the checks of the live
    /// machine (ports; DNS unless --dns-server is given) and starts nothing.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Print every change (files with modes and owners, commands) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Install but start or restart nothing (neither hermes-edge nor Hermes); print what to run.
    #[arg(long)]
    pub no_start: bool,
    /// Answer yes to every question (turning Hermes' API server on); for scripts.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// The DNS server for the record check, ADDR:PORT (default: the system's resolver). With
    /// --root it turns the DNS check on.
    #[arg(long, value_name = "ADDR:PORT")]
    pub dns_server: Option<SocketAddr>,
    /// Skip the DNS check (records not published yet; Let's Encrypt will still need them).
    #[arg(long)]
    pub skip_dns_check: bool,
    /// Where the NAT reachability check listens (default [::]:80); tests use a loopback port.
    #[arg(long, value_name = "ADDR:PORT", hide = true)]
    pub check_http_listen: Option<SocketAddr>,
}

/// Where the installed files go: `/` or `--root`.
pub(crate) struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub(crate) fn new(root: Option<&Path>) -> Layout {
        Layout {
            root: root.map_or_else(|| PathBuf::from("/"), Path::to_path_buf),
        }
    }
    pub(crate) fn live(&self) -> bool {
        self.root == Path::new("/")
    }
    /// An absolute path of the installed system, under the root.
    pub(crate) fn at(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }
    /// The service user's uid and gid, from the root's passwd file.
    pub(crate) fn service_ids(&self) -> Option<(u32, u32)> {
        let passwd = std::fs::read_to_string(self.at("/etc/passwd")).ok()?;
        hermes::passwd_ids(&passwd, SERVICE_USER)
    }
}

/// A question on the terminal; `None` when stdin is not one (the flag must say it then).
fn ask(question: &str) -> Option<String> {
    if !std::io::stdin().is_terminal() {
        return None;
    }
    use std::io::Write;
    print!("{question} ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).ok()?;
    Some(line.trim().to_string())
}

/// A DNS name a certificate can be issued for: letters, digits, hyphens, at least one dot.
fn check_domain(d: &str) -> Result<(), String> {
    let ok = d.len() <= 253
        && d.contains('.')
        && d.parse::<std::net::IpAddr>().is_err()
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{d}` is not a domain name a certificate can be issued for (e.g. chat.example.com)"
        ))
    }
}

fn is_root_user() -> bool {
    rustix::process::geteuid().is_root()
}

/// `hermes-edge setup`.
pub(crate) fn run(mut args: SetupArgs, cli: &crate::config::CliOverrides) -> Result<(), String> {
    if let Some(root) = &args.root {
        // An absolute root, so that every path printed and passed to systemd-sysusers is one; it
        // is created by the first step that writes into it, after the checks.
        let abs = std::fs::canonicalize(root)
            .or_else(|_| std::env::current_dir().map(|cwd| cwd.join(root)));
        if let Ok(abs) = abs {
            args.root = Some(abs);
        }
    }
    refuse_server_flags(cli)?;
    let layout = Layout::new(args.root.as_deref());
    if !is_root_user() && !args.dry_run {
        return Err(
            "setup installs system files and a service: run it as root (`sudo hermes-edge setup ...`), \
             or add --dry-run to see what it would do"
                .into(),
        );
    }
    let mut domains: Vec<String> = cli
        .domains
        .iter()
        .map(|d| d.trim().to_lowercase())
        .collect();
    if domains.is_empty() {
        match ask("Domain name for HTTPS (its A/AAAA record points at this machine):") {
            Some(d) if !d.is_empty() => domains.push(d.to_lowercase()),
            _ => {
                return Err(
                    "--domain is missing: give the name whose DNS record points at this machine, \
                     e.g. `hermes-edge setup --domain chat.example.com --email me@example.com`"
                        .into(),
                )
            }
        }
    }
    for d in &domains {
        check_domain(d)?;
    }
    let email = match &cli.email {
        Some(e) => Some(e.trim().to_string()),
        None => ask("Email for Let's Encrypt's expiry warnings (Enter to skip):")
            .filter(|e| !e.is_empty()),
    };
    if let Some(e) = &email {
        if !e.contains('@') || e.contains(char::is_whitespace) {
            return Err(format!("`{e}` is not an email address"));
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;

    println!("Checking this machine (nothing is changed until every check passes):");
    runtime.block_on(run_checks(&args, &layout, &domains))?;

    println!("Hermes:");
    let home = hermes::find_home(args.hermes_home.as_deref())?;
    println!("  home {} ({})", home.path.display(), home.why);
    let settings = crate::config::HermesSettings::read(&home.path);
    println!(
        "  API server {} ({})",
        if settings.enabled.value { "on" } else { "off" },
        settings.enabled.source
    );
    let (key, env_step) = hermes::enable_api(&home.path, &settings)?;
    if env_step.is_some() && !args.yes && !args.dry_run {
        let answer = ask(&format!(
            "Hermes' API server is off or has no key. Turn it on with a new key in {}? [Y/n]",
            home.path.join(".env").display()
        ));
        match answer.as_deref() {
            Some("" | "y" | "Y" | "yes") => {}
            Some(_) => {
                return Err(
                    "Hermes' API server stays off; hermes-edge needs it. Nothing was changed."
                        .into(),
                )
            }
            None => {
                let env = home.path.join(".env");
                return Err(format!(
                    "Hermes' API server is off or has no key ({}). Run setup again with --yes to \
                     turn it on with a new key in {}, or set API_SERVER_ENABLED=true and \
                     API_SERVER_KEY there yourself. Nothing was changed.",
                    settings.enabled.source,
                    env.display()
                ));
            }
        }
    }
    let (upstream, upstream_source) = match &cli.upstream {
        Some(u) => (u.clone(), "--upstream".to_string()),
        None => settings
            .upstream()
            .map(|f| (f.value, f.source))
            .unwrap_or_else(|| (DEFAULT_UPSTREAM.into(), "Hermes' default port".into())),
    };
    println!("  API server at {upstream} ({upstream_source})");
    if env_step.is_none() {
        let said = runtime.block_on(start::probe_hermes(&upstream, &key));
        println!("  {said}");
    }
    let gateway = hermes::gateway_unit(&layout.root, &home.path);
    let hermes_changed = env_step.is_some();

    let steps = steps(
        &layout,
        &args,
        cli,
        &domains,
        email.as_deref(),
        &home.path,
        &upstream,
        &upstream_source,
        &key,
        env_step,
    )?;
    println!(
        "{}",
        if args.dry_run {
            "Changes setup would make (nothing is changed: --dry-run):"
        } else {
            "Installing:"
        }
    );
    let service_ids = || layout.service_ids();
    let changed = plan::execute(&steps, args.dry_run, &service_ids)?;
    let start = start::Start {
        layout: &layout,
        no_start: args.no_start || !layout.live(),
        dry_run: args.dry_run,
        hermes_changed,
        gateway,
        changed,
        domains: &domains,
    };
    start.finish()
}

/// Phase 1: nothing here changes anything.
async fn run_checks(args: &SetupArgs, layout: &Layout, domains: &[String]) -> Result<(), String> {
    let (warnings, disk_error) = checks::resources(&layout.at(STATE_DIR));
    for w in &warnings {
        println!("  warning: {w}");
    }
    if let Some(e) = disk_error {
        return Err(e);
    }
    let mut port80_ours = false;
    if layout.live() {
        let holders = checks::port_holders(&[80, 443]);
        port80_ours = holders.iter().any(|h| h.port == 80 && h.is_hermes_edge());
        let others: Vec<String> = holders
            .iter()
            .filter(|h| !h.is_hermes_edge())
            .map(checks::Holder::advice)
            .collect();
        if !others.is_empty() {
            return Err(format!(
                "hermes-edge needs ports 80 and 443. {}. Nothing was changed.",
                others.join("; ")
            ));
        }
        println!(
            "  ports 80 and 443: free{}",
            if port80_ours {
                " (or held by hermes-edge itself)"
            } else {
                ""
            }
        );
        if let Some(w) = checks::firewall_warning() {
            println!("  warning: {w}");
        }
    } else {
        println!("  ports: not checked (--root)");
    }
    let dns_check = !args.skip_dns_check && (layout.live() || args.dns_server.is_some());
    if !dns_check {
        println!(
            "  DNS: not checked ({})",
            if args.skip_dns_check {
                "--skip-dns-check"
            } else {
                "--root without --dns-server"
            }
        );
        return Ok(());
    }
    let local = checks::local_addresses();
    // The NAT check needs port 80 of this machine: on the live machine, or where a test says.
    let reach_listen = args
        .check_http_listen
        .or_else(|| (layout.live() && !port80_ours).then(|| SocketAddr::from(([0u16; 8], 80))));
    for domain in domains {
        let records = checks::records(domain, args.dns_server).await?;
        let foreign = checks::foreign_records(domain, &records, &local)?;
        let all: Vec<String> = records.all().map(|i| i.to_string()).collect();
        if foreign.is_empty() {
            println!("  DNS: {domain} → {} (this machine)", all.join(", "));
            continue;
        }
        if port80_ours {
            // Run again behind NAT: hermes-edge answers port 80 itself, so the check cannot
            // listen there; an earlier run passed it (or the service already has its certificate).
            println!(
                "  DNS: {domain} → {} (not on this machine's interfaces; hermes-edge already serves \
                 port 80, so reachability is not checked again)",
                all.join(", ")
            );
            continue;
        }
        let Some(listen) = reach_listen else {
            return Err(checks::wrong_records_error(domain, &foreign, &local, None));
        };
        let mut failures = Vec::new();
        for (_, ip) in &foreign {
            if let Err(e) = checks::reachable(domain, *ip, listen).await {
                failures.push(e);
            }
        }
        if !failures.is_empty() {
            return Err(checks::wrong_records_error(
                domain,
                &foreign,
                &local,
                Some(&failures.join("; ")),
            ));
        }
        println!(
            "  DNS: {domain} → {} (not on this machine's interfaces, but it reaches this machine: 1:1 NAT)",
            all.join(", ")
        );
    }
    Ok(())
}

/// Phase 3's steps, in order.
#[allow(clippy::too_many_arguments)]
fn steps(
    layout: &Layout,
    args: &SetupArgs,
    cli: &crate::config::CliOverrides,
    domains: &[String],
    email: Option<&str>,
    hermes_home: &Path,
    upstream: &str,
    upstream_source: &str,
    key: &str,
    env_step: Option<Step>,
) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    steps.extend(env_step);
    steps.push(Step::File {
        path: layout.at(SYSUSERS),
        mode: 0o644,
        owner: Owner::Root,
        contents: files::sysusers().into_bytes(),
        existing: Existing::Replace,
        secret: false,
        what: "the system user hermes-edge (systemd-sysusers)",
    });
    if layout.service_ids().is_none() {
        let argv: Vec<String> = if layout.live() {
            if Path::new("/usr/bin/systemd-sysusers").exists()
                || Path::new("/bin/systemd-sysusers").exists()
            {
                vec!["systemd-sysusers".into(), SYSUSERS.into()]
            } else {
                [
                    "useradd",
                    "--system",
                    "--user-group",
                    "--home-dir",
                    STATE_DIR,
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    SERVICE_USER,
                ]
                .map(String::from)
                .to_vec()
            }
        } else {
            vec![
                "systemd-sysusers".into(),
                format!("--root={}", layout.root.display()),
            ]
        };
        steps.push(Step::Run {
            argv,
            why: "create the system user hermes-edge".into(),
            may_fail: false,
        });
    }
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find this program's file: {e}"))?;
    let target = layout.at(BIN);
    let same_file = std::fs::canonicalize(&exe).ok() == std::fs::canonicalize(&target).ok();
    if !same_file {
        let contents = if args.dry_run {
            Vec::new()
        } else {
            std::fs::read(&exe).map_err(|e| format!("cannot read {}: {e}", exe.display()))?
        };
        steps.push(Step::File {
            path: target,
            mode: 0o755,
            owner: Owner::Root,
            contents,
            existing: Existing::Replace,
            secret: true,
            what: "this program",
        });
    }
    steps.push(Step::Dir {
        path: layout.at(CONF_DIR),
        mode: 0o755,
        owner: Owner::Root,
        recursive: false,
    });
    steps.push(Step::File {
        path: layout.at(CONFIG),
        mode: 0o644,
        owner: Owner::Root,
        contents: files::config(&files::ConfigValues {
            domains,
            email,
            upstream,
            upstream_source,
            hermes_home,
            acme_staging: cli.acme_staging,
            acme_directory: cli.acme_directory.as_deref(),
            acme_ca_root: cli.acme_ca_root.as_deref(),
        })
        .into_bytes(),
        existing: Existing::Keep,
        secret: false,
        what: "hermes-edge's settings",
    });
    kept_config_note(&layout.at(CONFIG), domains, upstream);
    let env_path = layout.at(ENV_FILE);
    let existing_env = std::fs::read_to_string(&env_path).unwrap_or_default();
    steps.push(Step::File {
        path: env_path,
        mode: 0o600,
        owner: Owner::Root,
        contents: files::env_file(&existing_env, key).into_bytes(),
        existing: Existing::Replace,
        secret: true,
        what: "the Hermes API key (HERMES_EDGE_API_KEY) the service reads",
    });
    steps.push(Step::Dir {
        path: layout.at(STATE_DIR),
        mode: 0o750,
        owner: Owner::Service,
        recursive: true,
    });
    for sub in ["data", "certs", "media"] {
        steps.push(Step::Dir {
            path: layout.at(&format!("{STATE_DIR}/{sub}")),
            mode: 0o750,
            owner: Owner::Service,
            recursive: false,
        });
    }
    steps.push(Step::File {
        path: layout.at(UNIT),
        mode: 0o644,
        owner: Owner::Root,
        contents: files::unit()?.into_bytes(),
        existing: Existing::Replace,
        secret: false,
        what: "the systemd service",
    });
    Ok(steps)
}

/// The config file is the operator's once written: setup keeps it, but says where it differs from
/// what this run was asked for, so that a new `--domain` is not silently ignored.
fn kept_config_note(path: &Path, domains: &[String], upstream: &str) {
    let Ok(text) = std::fs::read_to_string(path) else {
        return;
    };
    let file = match crate::config::Config::parse_str(&text, path) {
        Ok(f) => f,
        Err(e) => {
            println!(
                "  warning: {e}; setup keeps the file: fix it, or move it away and run setup again"
            );
            return;
        }
    };
    let mut differs = Vec::new();
    if file.tls.domains.as_deref().unwrap_or_default() != domains {
        differs.push(format!(
            "tls.domains is {:?}, not {domains:?}",
            file.tls.domains.unwrap_or_default()
        ));
    }
    if file.upstream.as_deref() != Some(upstream) {
        differs.push(format!(
            "upstream is {:?}, not \"{upstream}\"",
            file.upstream.unwrap_or_default()
        ));
    }
    if !differs.is_empty() {
        println!(
            "  note: {} is kept as it is, and {}: edit it (then `systemctl restart hermes-edge`), \
             or move it away and run setup again",
            path.display(),
            differs.join("; ")
        );
    }
}

/// The server's flags are shared by every subcommand; setup uses a few and would silently drop the
/// rest, so those are refused, with where the setting goes instead.
fn refuse_server_flags(cli: &crate::config::CliOverrides) -> Result<(), String> {
    let given: Vec<&str> = [
        ("--config", cli.config.is_some()),
        ("--listen", cli.listen.is_some()),
        ("--http-listen", cli.http_listen.is_some()),
        ("--certs-dir", cli.certs_dir.is_some()),
        ("--data-dir", cli.data_dir.is_some()),
        ("--dashboard-upstream", cli.dashboard_upstream.is_some()),
        ("--www", cli.www.is_some()),
        ("--media", cli.media.is_some()),
        ("--self-signed", cli.self_signed),
        ("--cert", cli.cert.is_some()),
        ("--key", cli.key.is_some()),
        ("--san", !cli.san.is_empty()),
        ("--acme-challenge", cli.acme_challenge.is_some()),
        ("--log-json", cli.log_json),
    ]
    .into_iter()
    .filter_map(|(flag, set)| set.then_some(flag))
    .collect();
    if given.is_empty() {
        return Ok(());
    }
    Err(format!(
        "setup does not take {}: run setup without, then set it in {CONFIG} \
         (config/hermes-edge.example.toml lists every key) and `systemctl restart hermes-edge`",
        given.join(", ")
    ))
}
