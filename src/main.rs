//! hermes-edge: one binary that puts Hermes Agent on the web safely: TLS, login, media, chat.
//!
//! `main` only reads the command line and hands over to the module that does the work.

mod app;
mod auth;
mod body;
mod chat;
mod config;
mod conn_limits;
mod dashboard;
mod disk_watch;
mod doctor;
mod forwarded;
mod hermes;
mod html;
mod memory;
mod metrics;
mod notify;
mod push;
mod redirect;
mod reload;
mod response;
mod router;
mod security;
mod send_timeout;
mod server;
mod setup;
mod static_files;
mod store;
mod sys;
mod tls;
mod www;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hermes-edge",
    version,
    about = "HTTPS, login and a streaming chat page in front of the Hermes Agent API Server"
)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Check the setup (ports, Hermes, API key, certificates, DNS) and say what to fix.
    Doctor,
    /// Manage accounts: add, passwd, remove, role, list, 2fa.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage personal API tokens (for /v1/chat/completions): create, list, revoke.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Certificates: `cert status` shows issuer, names, expiry and files for each name.
    #[command(subcommand)]
    Cert(CertCommand),
    /// What the running server is doing: addresses, certificates, Hermes, connections, streams,
    /// answers, users signed in, uptime. Asks it over the metrics listener (same --config); exits
    /// non-zero when it is not running or not healthy.
    Status {
        /// Print JSON (for scripts) instead of the summary.
        #[arg(long)]
        json: bool,
    },
    /// Install on this machine as a service: checks ports and DNS, turns Hermes' API server on,
    /// writes the config, key file and systemd unit, starts it and waits for the certificate
    /// (`setup --domain chat.example.com --email me@example.com`; safe to run again).
    Setup(setup::SetupArgs),
    /// Remove what setup installed; the data in /var/lib/hermes-edge is kept unless --purge.
    Uninstall(setup::UninstallArgs),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token for a user and print it (shown once; only its hash is stored).
    Create {
        #[arg(long)]
        user: String,
        /// A label to recognise the token by.
        #[arg(long, default_value = "API token")]
        name: String,
    },
    /// List a user's tokens (ids, labels, prefixes; never the secrets).
    List {
        #[arg(long)]
        user: String,
    },
    /// Delete one of a user's tokens by id.
    Revoke {
        #[arg(long)]
        user: String,
        id: i64,
    },
}

fn token_command(config: &config::Config, init: bool, cmd: TokenCommand) -> Result<(), String> {
    use auth::tokens;
    let store = store::Store::open_with(&config.data_dir, init).map_err(|e| e.to_string())?;
    match cmd {
        TokenCommand::Create { user, name } => {
            let secret = tokens::cli_create(&store, &user, &name).map_err(|e| e.to_string())?;
            println!("{secret}");
            eprintln!("token for `{user}` created; it is shown only this once. Use it as `Authorization: Bearer <token>` on /v1/chat/completions and /v1/models.");
        }
        TokenCommand::List { user } => {
            for t in tokens::cli_list(&store, &user).map_err(|e| e.to_string())? {
                println!(
                    "{}\t{}\t{}…\tcreated {}",
                    t.id,
                    t.name,
                    t.prefix,
                    store::rfc3339_ms(t.created_at)
                );
            }
        }
        TokenCommand::Revoke { user, id } => {
            if !tokens::cli_revoke(&store, &user, id).map_err(|e| e.to_string())? {
                return Err(format!("`{user}` has no token with id {id}"));
            }
            println!("revoked token {id} of `{user}`");
        }
    }
    Ok(())
}

#[derive(Subcommand)]
enum CertCommand {
    /// For each name: the certificate served, its issuer, SANs, expiry and where the files are.
    Status,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account (asks for the password, or reads it from stdin).
    Add {
        name: String,
        /// `user` (default) or `admin`.
        #[arg(long, default_value = "user")]
        role: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a new password (signs the account out everywhere and revokes its API tokens).
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete an account with its sessions, API tokens and conversations.
    Remove { name: String },
    /// Make an account `admin` or `user` (the last administrator stays one).
    Role { name: String, role: String },
    /// List the accounts.
    List,
    /// Two-factor sign-in: enable (prints the otpauth:// URI and recovery codes), reset.
    #[command(name = "2fa", subcommand)]
    TwoFa(TwoFaCommand),
}

#[derive(Subcommand)]
enum TwoFaCommand {
    /// Turn on a one-time code app for the account: prints the otpauth:// URI (and its QR code)
    /// to hand to the user, and ten single-use recovery codes, shown only this once.
    Enable { name: String },
    /// For someone locked out: removes the account's code app and recovery codes and signs it
    /// out everywhere. It can then sign in with its password alone (and enrol again).
    Reset { name: String },
}

fn read_password(from_stdin: bool) -> Result<String, String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password from stdin: {e}"))?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    let first = rpassword::prompt_password("New password: ").map_err(|e| {
        format!("cannot read the password (no terminal? use --password-stdin): {e}")
    })?;
    let again = rpassword::prompt_password("Repeat it: ")
        .map_err(|e| format!("cannot read the password: {e}"))?;
    if first != again {
        return Err("the two passwords differ; nothing was changed".into());
    }
    Ok(first)
}

fn user_command(config: &config::Config, init: bool, cmd: UserCommand) -> Result<(), String> {
    use auth::users;
    let store = store::Store::open_with(&config.data_dir, init).map_err(|e| e.to_string())?;
    match cmd {
        UserCommand::Add {
            name,
            role,
            password_stdin,
        } => {
            let role = users::Role::parse(&role)
                .ok_or_else(|| format!("`{role}` is not a role; use `user` or `admin`"))?;
            let password = read_password(password_stdin)?;
            users::create_user(&store, &name, &password, role).map_err(|e| e.to_string())?;
            println!("added {} `{name}`", role.as_str());
        }
        UserCommand::Passwd {
            name,
            password_stdin,
        } => {
            let password = read_password(password_stdin)?;
            let tokens =
                users::set_password(&store, &name, &password).map_err(|e| e.to_string())?;
            // A running server notices within seconds (it watches the database for changes).
            println!(
                "password of `{name}` changed; it was signed out everywhere and its {tokens} API \
                 token(s) revoked (a password is changed when the old one may be known: so may \
                 its tokens). New tokens: in the page, or `hermes-edge token create --user {name}`"
            );
        }
        UserCommand::Remove { name } => {
            users::remove_user(&store, &name).map_err(|e| e.to_string())?;
            println!("removed `{name}`");
        }
        UserCommand::Role { name, role } => {
            let role = users::Role::parse(&role)
                .ok_or_else(|| format!("`{role}` is not a role; use `user` or `admin`"))?;
            users::set_role(&store, &name, role).map_err(|e| e.to_string())?;
            println!("`{name}` is now {}", role.as_str());
        }
        UserCommand::TwoFa(cmd) => two_factor_command(&store, cmd)?,
        UserCommand::List => {
            for (user, _) in users::list_users(&store).map_err(|e| e.to_string())? {
                println!("{}\t{}", user.username, user.role.as_str());
            }
        }
    }
    Ok(())
}

fn two_factor_command(store: &store::Store, cmd: TwoFaCommand) -> Result<(), String> {
    use auth::{second_factor, users};
    let user_id = |name: &str| -> Result<i64, String> {
        let found = store
            .call_blocking(|c| users::find_for_login(c, name))
            .map_err(|e| e.to_string())?;
        found
            .map(|(u, _)| u.id)
            .ok_or_else(|| format!("no user named `{name}` (see `hermes-edge user list`)"))
    };
    match cmd {
        TwoFaCommand::Enable { name } => {
            let id = user_id(&name)?;
            let made = store
                .call_blocking(|c| second_factor::enable_totp(c, id, &name))
                .map_err(|e| e.to_string())?;
            let Some((enrolment, codes)) = made else {
                return Err(format!(
                    "`{name}` already has two-factor sign-in; to give it a new one, \
                     `hermes-edge user 2fa reset {name}` first"
                ));
            };
            if let Some(qr) = second_factor::qr_text(&enrolment.uri) {
                println!("{qr}");
            }
            println!("{}", enrolment.uri);
            println!("secret: {}", enrolment.secret);
            println!("recovery codes (each works once):");
            for code in codes {
                println!("  {code}");
            }
            eprintln!(
                "two-factor sign-in is on for `{name}`: give them the URI (or the QR code, or the \
                 secret) for their code app and the recovery codes, which are shown only this once"
            );
        }
        TwoFaCommand::Reset { name } => {
            let id = user_id(&name)?;
            let had = store
                .call_blocking(|c| second_factor::remove_all(c, id, true))
                .map_err(|e| e.to_string())?;
            if had {
                println!(
                    "two-factor sign-in of `{name}` removed and it was signed out everywhere; it \
                     signs in with its password alone now (and enrols again where \
                     auth.require_second_factor says so)"
                );
            } else {
                println!(
                    "`{name}` had no two-factor sign-in; any set-up begun and recovery codes were \
                     removed and it was signed out everywhere"
                );
            }
        }
    }
    Ok(())
}

/// `serve`'s arguments: the settings that override the config file (their flags are derived from
/// `config::CliOverrides`), and the one that only matters when the server starts.
#[derive(Args, Clone, Default)]
struct ServeArgs {
    #[command(flatten)]
    overrides: config::CliOverrides,
    /// Accept an existing but empty database file (no tables) as a new installation. Without
    /// this such a file stops the start: it is more often a failed copy than a wish to start over.
    #[arg(long, global = true)]
    init_database: bool,
}

/// The log filter: `RUST_LOG` (default `info`), with rustls' own lines held to errors unless
/// `RUST_LOG` names rustls. rustls warns once per connection about things the client did (an IP
/// address sent as the TLS server name, as wrk and other OpenSSL-based tools do): nothing the
/// operator can act on, and anyone could fill the log with them, one line per connection.
fn log_directives(env: Option<&str>) -> String {
    let base = env
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("info");
    // A directive names rustls when its target is `rustls` or under it (`tokio_rustls` is not).
    let names_rustls = base.split(',').any(|d| {
        let target = d.split(['=', '[']).next().unwrap_or("").trim();
        target == "rustls" || target.starts_with("rustls::")
    });
    if names_rustls {
        base.to_string()
    } else {
        format!("{base},rustls=error")
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(log_directives(
        std::env::var("RUST_LOG").ok().as_deref(),
    ))
    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(log_directives(None)));
    // Colours only on a terminal: under systemd (journalctl) or in a log file the escape codes
    // were written out as text around every field.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    // glibc raises its mmap threshold once a large block is freed, after which the 19 MiB argon2
    // buffer of every sign-in is carved from a heap arena and stays resident (the resident memory
    // grew by about that much per login). A fixed threshold keeps blocks over 1 MiB in mmap,
    // returned to the OS when freed.
    //
    // Fixing the mmap threshold also fixes the trim threshold at glibc's 128 KiB, so freeing the
    // buffers of a burst of 100 KiB answers handed the top of the heap back to the kernel and the
    // next burst faulted it in again (madvise and page faults showed high in profiles of HTTP/2
    // downloads). Up to 4 MiB is kept at the top instead, for a little more resident memory
    // (bench/README.md has the figures).
    sys::tune_malloc();
    let cli = Cli::parse();
    // Before the config is loaded: setup writes the config, and must not stop on a bad one.
    match &cli.command {
        Some(Command::Setup(args)) => {
            return exit_code(setup::run(args.clone(), &cli.serve.overrides));
        }
        Some(Command::Uninstall(args)) => return exit_code(setup::uninstall(args.clone())),
        _ => {}
    }
    let overrides = cli.serve.overrides.clone();
    reload::remember_command_line(overrides.clone());
    let config = match config::Config::load(&overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hermes-edge: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Blocking work is database calls (one connection behind a mutex), password hashing and
        // file reads: more threads than this only wait, and each idle one costs memory (1,000 chat
        // streams opened at once left about a hundred threads behind without this cap).
        .max_blocking_threads(32)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hermes-edge: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let init = cli.serve.init_database;
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            if init {
                // Gives an empty file its schema; the start below then opens it as any other.
                if let Err(e) = store::Store::open_with(&config.data_dir, true) {
                    eprintln!("hermes-edge: {e}");
                    return ExitCode::FAILURE;
                }
            }
            let mut config = config;
            conn_limits::fit_limits(&mut config.limits);
            runtime.block_on(server::run(config))
        }
        Command::Token(cmd) => {
            return exit_code(token_command(&config, init, cmd));
        }
        Command::Doctor => {
            return if runtime.block_on(doctor::run(&config)) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        Command::Status { json } => {
            return if runtime.block_on(metrics::status::run(&config, json)) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        Command::Cert(CertCommand::Status) => {
            print!("{}", tls::status::report(&config));
            return ExitCode::SUCCESS;
        }
        Command::User(cmd) => {
            return exit_code(user_command(&config, init, cmd));
        }
        Command::Setup(_) | Command::Uninstall(_) => return ExitCode::SUCCESS,
    };
    exit_code(result)
}

/// The exit code for a command's outcome, its error said on stderr.
fn exit_code(result: Result<(), impl std::fmt::Display>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hermes-edge: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::log_directives;

    #[test]
    fn rustls_is_held_to_errors_unless_rust_log_names_it() {
        assert_eq!(log_directives(None), "info,rustls=error");
        assert_eq!(log_directives(Some("  ")), "info,rustls=error");
        assert_eq!(log_directives(Some("warn")), "warn,rustls=error");
        assert_eq!(
            log_directives(Some("tokio_rustls=debug")),
            "tokio_rustls=debug,rustls=error"
        );
        assert_eq!(
            log_directives(Some("info,rustls=debug")),
            "info,rustls=debug"
        );
        assert_eq!(
            log_directives(Some("rustls::server=trace")),
            "rustls::server=trace"
        );
    }
}
