//! `hermes-edge setup` and `uninstall` under `--root` (the files a VPS would get, written into a
//! scratch folder) against the real Hermes API Server, whose settings live in a scratch
//! HERMES_HOME; the DNS check against a local DNS server (pebble-challtestsrv); the written unit
//! checked by `systemd-analyze verify`.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const DOMAIN: &str = "chat.example.com";

/// Runs `hermes-edge ARGS` (stdin not a terminal); (success, stdout, stderr).
fn edge(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(bin())
        .args(args)
        .env_remove("HERMES_HOME")
        .env_remove("SUDO_USER")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `setup --root ROOT --hermes-home HOME --no-start --domain … --email …` plus `extra`.
fn setup(root: &Path, home: &Path, extra: &[&str]) -> (bool, String, String) {
    let (root, home) = (root.display().to_string(), home.display().to_string());
    let mut args = vec![
        "setup",
        "--root",
        &root,
        "--hermes-home",
        &home,
        "--no-start",
        "--domain",
        DOMAIN,
        "--email",
        "ops@example.org",
    ];
    args.extend_from_slice(extra);
    edge(&args)
}

/// Every file and folder under `dir`: mode, owner, and contents (files), for before/after.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u32, u32, u32, i64, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(p) = pending.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let contents = if m.is_file() {
            std::fs::read(&p).unwrap()
        } else {
            Vec::new()
        };
        if m.is_dir() {
            pending.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
        out.insert(
            p,
            (
                m.mode() & 0o7777,
                m.uid(),
                m.gid(),
                m.mtime_nsec(),
                contents,
            ),
        );
    }
    out
}

fn mode_owner(path: &Path) -> (u32, u32, u32) {
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.mode() & 0o7777, m.uid(), m.gid())
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The uid and gid of `hermes-edge` in ROOT/etc/passwd.
fn service_ids(root: &Path) -> (u32, u32) {
    let passwd = read(&root.join("etc/passwd"));
    let line = passwd
        .lines()
        .find(|l| l.starts_with("hermes-edge:"))
        .unwrap_or_else(|| panic!("no hermes-edge user in {passwd}"));
    let f: Vec<&str> = line.split(':').collect();
    assert_eq!(f[5], "/var/lib/hermes-edge", "{line}");
    assert_eq!(f[6], "/usr/sbin/nologin", "{line}");
    (f[2].parse().unwrap(), f[3].parse().unwrap())
}

/// `systemd-analyze verify` on the written unit, in a private mount namespace where the root's
/// /usr/local/bin is mounted over the live one, so that the unit's ExecStart is the copied binary
/// and every other path (kill, the targets) is the live system's. Any complaint fails.
fn verify_unit(root: &Path) {
    ensure_peers();
    let script = format!(
        "mount --make-rprivate / && mount --bind {bin} /usr/local/bin && exec systemd-analyze verify {unit}",
        bin = root.join("usr/local/bin").display(),
        unit = root.join("etc/systemd/system/hermes-edge.service").display()
    );
    let out = Command::new("unshare")
        .args(["--mount", "sh", "-c", &script])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify complained: {stderr}"
    );
}

/// The files setup writes under ROOT, checked for mode, owner and contents; the key they hold.
fn check_installed(root: &Path, upstream: &str) -> String {
    let (uid, gid) = service_ids(root);
    assert_eq!(
        mode_owner(&root.join("usr/local/bin/hermes-edge")),
        (0o755, 0, 0)
    );
    assert_eq!(
        std::fs::read(root.join("usr/local/bin/hermes-edge")).unwrap(),
        std::fs::read(bin()).unwrap(),
        "the binary is a copy of the running one"
    );
    assert_eq!(mode_owner(&root.join("etc/hermes-edge")), (0o755, 0, 0));
    for dir in ["", "/data", "/certs", "/media"] {
        let p = root.join(format!("var/lib/hermes-edge{dir}"));
        assert_eq!(mode_owner(&p), (0o750, uid, gid), "{}", p.display());
    }

    let config_path = root.join("etc/hermes-edge/config.toml");
    assert_eq!(mode_owner(&config_path), (0o644, 0, 0));
    let config: toml::Value = toml::from_str(&read(&config_path)).unwrap();
    assert_eq!(config["upstream"].as_str(), Some(upstream));
    assert_eq!(
        config["data_dir"].as_str(),
        Some("/var/lib/hermes-edge/data")
    );
    assert_eq!(
        config["certs_dir"].as_str(),
        Some("/var/lib/hermes-edge/certs")
    );
    assert_eq!(
        config["tls"]["domains"].as_array().unwrap()[0].as_str(),
        Some(DOMAIN)
    );
    assert_eq!(config["tls"]["email"].as_str(), Some("ops@example.org"));
    assert_eq!(
        config["media"]["dir"].as_str(),
        Some("/var/lib/hermes-edge/media")
    );
    assert!(
        config.get("chat").and_then(|c| c.get("api_key")).is_none(),
        "the key stays out of the 0644 file"
    );
    // The server itself accepts the file (every key known, every value valid).
    let (ok, out, err) = edge(&[
        "cert",
        "status",
        "--config",
        &config_path.display().to_string(),
    ]);
    assert!(ok, "the written config is refused: {out}{err}");

    let env_path = root.join("etc/hermes-edge/env");
    assert_eq!(mode_owner(&env_path), (0o600, 0, 0));
    let env = read(&env_path);
    let key = env
        .lines()
        .find_map(|l| l.strip_prefix("HERMES_EDGE_API_KEY="))
        .unwrap_or_else(|| panic!("no key in {env}"))
        .to_string();
    assert!(key.len() >= 32);

    let sysusers = root.join("etc/sysusers.d/hermes-edge.conf");
    assert_eq!(mode_owner(&sysusers), (0o644, 0, 0));
    assert!(read(&sysusers).contains("u hermes-edge - "));

    let unit_path = root.join("etc/systemd/system/hermes-edge.service");
    assert_eq!(mode_owner(&unit_path), (0o644, 0, 0));
    let unit = read(&unit_path);
    let exec: Vec<&str> = unit
        .lines()
        .filter(|l| l.starts_with("ExecStart="))
        .collect();
    assert_eq!(
        exec,
        ["ExecStart=/usr/local/bin/hermes-edge --config /etc/hermes-edge/config.toml"]
    );
    for line in [
        "Type=notify",
        "User=hermes-edge",
        "EnvironmentFile=-/etc/hermes-edge/env",
        "LimitNOFILE=65536",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "{line} missing from the unit:\n{unit}"
        );
    }
    verify_unit(root);
    key
}

/// A Hermes .env for a home whose API server is on (the real server's port and key).
fn hermes_env_on(hermes: &RealHermes) -> String {
    let port = hermes.url.rsplit(':').next().unwrap();
    format!(
        "# written by hand\nAPI_SERVER_ENABLED=true\nAPI_SERVER_KEY={}\nAPI_SERVER_HOST=127.0.0.1\nAPI_SERVER_PORT={port}\n",
        hermes.key
    )
}

#[test]
fn setup_with_the_api_server_on_points_at_it_runs_twice_and_uninstalls() {
    let hermes = RealHermes::start();
    let home = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let env_path = home.path().join(".env");
    std::fs::write(&env_path, hermes_env_on(&hermes)).unwrap();
    std::fs::set_permissions(
        &env_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let env_before = std::fs::read(&env_path).unwrap();

    // A dry run writes nothing and names every file.
    let (ok, out, err) = setup(root.path(), home.path(), &["--yes", "--dry-run"]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        std::fs::read_dir(root.path()).unwrap().count(),
        0,
        "a dry run wrote: {out}"
    );
    for f in [
        "usr/local/bin/hermes-edge",
        "etc/hermes-edge/config.toml — hermes-edge's settings (mode 0644, owner root, kept if it exists)",
        "etc/hermes-edge/env — the Hermes API key (HERMES_EDGE_API_KEY) the service reads (mode 0600",
        "etc/systemd/system/hermes-edge.service",
        "var/lib/hermes-edge (mode 0750, owner hermes-edge)",
        "run `systemd-sysusers --root=",
    ] {
        assert!(out.contains(f), "{f} not in the dry run:\n{out}");
    }
    assert!(
        !out.contains(&hermes.key),
        "a dry run prints no key:\n{out}"
    );

    let (ok, out, err) = setup(root.path(), home.path(), &["--yes"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("Hermes answers there and accepts the key"),
        "{out}"
    );
    assert!(!out.contains(&hermes.key), "setup prints no key:\n{out}");
    assert_eq!(
        std::fs::read(&env_path).unwrap(),
        env_before,
        "Hermes' settings left alone"
    );
    let key = check_installed(root.path(), &hermes.url);
    assert_eq!(key, hermes.key, "the edge holds Hermes' own key");

    // Again: nothing changes, and it says so.
    let before = snapshot(root.path());
    let (ok, out, err) = setup(root.path(), home.path(), &["--yes"]);
    assert!(ok, "{out}{err}");
    assert!(
        !out.contains("  done:"),
        "the second run changed something:\n{out}"
    );
    assert!(
        out.contains("left alone (exists, kept as it is): file"),
        "{out}"
    );
    assert_eq!(
        snapshot(root.path()),
        before,
        "the second run changed files"
    );
    assert_eq!(std::fs::read(&env_path).unwrap(), env_before);

    // Data an earlier install left is kept by uninstall; everything else goes.
    std::fs::write(
        root.path().join("var/lib/hermes-edge/data/hermes-edge.db"),
        b"x",
    )
    .unwrap();
    let with_data = snapshot(root.path());
    let (ok, out, err) = edge(&[
        "uninstall",
        "--root",
        &root.path().display().to_string(),
        "--dry-run",
    ]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("would remove"), "{out}");
    assert_eq!(
        snapshot(root.path()),
        with_data,
        "a dry run removed something"
    );
    let (ok, out, err) = edge(&["uninstall", "--root", &root.path().display().to_string()]);
    assert!(ok, "{out}{err}");
    for gone in [
        "usr/local/bin/hermes-edge",
        "etc/hermes-edge",
        "etc/systemd/system/hermes-edge.service",
        "etc/sysusers.d/hermes-edge.conf",
    ] {
        assert!(!root.path().join(gone).exists(), "{gone} is still there");
    }
    for file in ["passwd", "group", "shadow", "gshadow"] {
        let text = std::fs::read_to_string(root.path().join("etc").join(file)).unwrap_or_default();
        assert!(
            !text.contains("hermes-edge:"),
            "{file} still names the user: {text}"
        );
    }
    assert_eq!(
        read(&root.path().join("var/lib/hermes-edge/data/hermes-edge.db")),
        "x"
    );
    assert!(out.contains("Kept "), "{out}");
    assert_eq!(
        std::fs::read(&env_path).unwrap(),
        env_before,
        "uninstall leaves Hermes alone"
    );

    // Setup again over the kept data gives it to the new user (whose uid may differ from the old
    // one's, here 4242); --purge then deletes it.
    let state = root.path().join("var/lib/hermes-edge");
    for p in snapshot(&state).keys() {
        std::os::unix::fs::lchown(p, Some(4242), Some(4242)).unwrap();
    }
    let (ok, out, err) = setup(root.path(), home.path(), &["--yes"]);
    assert!(ok, "{out}{err}");
    let (uid, gid) = service_ids(root.path());
    let db = root.path().join("var/lib/hermes-edge/data/hermes-edge.db");
    assert_eq!(mode_owner(&db).1, uid);
    assert_eq!(mode_owner(&db).2, gid);
    let (ok, out, err) = edge(&[
        "uninstall",
        "--root",
        &root.path().display().to_string(),
        "--purge",
    ]);
    assert!(ok, "{out}{err}");
    assert!(!root.path().join("var/lib/hermes-edge").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn setup_turns_the_api_server_on_with_a_key_hermes_accepts() {
    let home = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let env_path = home.path().join(".env");
    // Comments, `export`, a quoted value, no final newline: all kept.
    let original = "# my Hermes\nOPENAI_API_KEY=sk-test-1\nexport API_SERVER_ENABLED=false\nTELEGRAM_HOME='a # b'";
    std::fs::write(&env_path, original).unwrap();
    std::fs::set_permissions(
        &env_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o640),
    )
    .unwrap();

    // Without a domain and without a terminal to ask on: refused, saying which flag.
    let (r, h) = (
        root.path().display().to_string(),
        home.path().display().to_string(),
    );
    let (ok, out, err) = edge(&["setup", "--root", &r, "--hermes-home", &h, "--yes"]);
    assert!(!ok && err.contains("--domain is missing"), "{out}{err}");
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    // A server flag setup would not write anywhere is refused, not dropped.
    let (ok, out, err) = setup(
        root.path(),
        home.path(),
        &["--yes", "--listen", "0.0.0.0:8443"],
    );
    assert!(
        !ok && err.contains("setup does not take --listen"),
        "{out}{err}"
    );
    // Without --yes and without a terminal to ask on: refused, nothing changed.
    let (ok, out, err) = setup(root.path(), home.path(), &[]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("--yes") && err.contains("Nothing was changed"),
        "{err}"
    );
    assert_eq!(read(&env_path), original);
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);

    let (ok, out, err) = setup(root.path(), home.path(), &["--yes"]);
    assert!(ok, "{out}{err}");
    let key = check_installed(root.path(), "http://127.0.0.1:8642");
    let env = read(&env_path);
    assert_eq!(
        env,
        format!("# my Hermes\nOPENAI_API_KEY=sk-test-1\nexport API_SERVER_ENABLED=true\nTELEGRAM_HOME='a # b'\nAPI_SERVER_KEY={key}\n")
    );
    assert_eq!(mode_owner(&env_path).0, 0o640, "the file's mode is kept");
    assert!(
        out.contains("restart Hermes' gateway"),
        "says how to make Hermes read it: {out}"
    );

    // A Hermes started with these settings accepts the written key, and only it.
    let env_file = env_path.display().to_string();
    let hermes = RealHermes::start_with(&[("HERMES_ENV_FILE", &env_file)]);
    assert_eq!(hermes.key, key);
    let c = reqwest::Client::new();
    let models = |k: String| {
        let c = c.clone();
        let url = format!("{}/v1/models", hermes.url);
        async move {
            c.get(url)
                .bearer_auth(k)
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(models(key.clone()).await, 200);
    assert_eq!(models(format!("{key}x")).await, 401);

    // Again: the key is kept, nothing changes.
    let before = snapshot(root.path());
    let (ok, out, err) = setup(root.path(), home.path(), &["--yes"]);
    assert!(ok, "{out}{err}");
    assert!(!out.contains("  done:"), "{out}");
    assert_eq!(read(&env_path), env);
    assert_eq!(snapshot(root.path()), before);
}

/// pebble-challtestsrv as a DNS server on loopback with only the records a test adds; stopped
/// (by PID) on drop.
struct Dns {
    child: std::process::Child,
    dns: String,
    management: String,
}

impl Dns {
    fn start() -> Dns {
        let (dns_port, mgmt_port) = (free_port(), free_port());
        ensure_peers();
        let child = Command::new("pebble-challtestsrv")
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{mgmt_port}")])
            .args(["-defaultIPv4", "", "-defaultIPv6", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv (tests/install-peers.sh installs it)");
        let dns = Dns {
            child,
            dns: format!("127.0.0.1:{dns_port}"),
            management: format!("http://127.0.0.1:{mgmt_port}"),
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", mgmt_port)).is_ok() {
                return dns;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("pebble-challtestsrv did not start");
    }

    async fn add_a(&self, host: &str, ip: &str) {
        let r = reqwest::Client::new()
            .post(format!("{}/add-a", self.management))
            .json(&serde_json::json!({ "host": host, "addresses": [ip] }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dns_record_that_points_elsewhere_stops_setup_before_any_change() {
    let dns = Dns::start();
    let home = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let env_path = home.path().join(".env");
    std::fs::write(&env_path, "API_SERVER_ENABLED=false\n").unwrap();
    let run = |domain: &str, extra: &[&str]| {
        let (root, home) = (
            root.path().display().to_string(),
            home.path().display().to_string(),
        );
        let mut args = vec![
            "setup",
            "--root",
            &root,
            "--hermes-home",
            &home,
            "--no-start",
            "--yes",
        ];
        args.extend_from_slice(&["--dns-server", &dns.dns, "--domain", domain]);
        args.extend_from_slice(extra);
        edge(&args)
    };

    dns.add_a("wrong.example.test", "192.0.2.10").await;
    let (ok, out, err) = run("wrong.example.test", &[]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("the A record wrong.example.test → 192.0.2.10"),
        "{err}"
    );
    assert!(
        err.contains("whose addresses are") && err.contains("Nothing was changed"),
        "{err}"
    );
    assert!(
        !out.contains("Hermes:"),
        "stopped before looking at Hermes: {out}"
    );
    assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    assert_eq!(read(&env_path), "API_SERVER_ENABLED=false\n");

    let (ok, _, err) = run("missing.example.test", &[]);
    assert!(!ok);
    assert!(
        err.contains("missing.example.test has no A or AAAA record"),
        "{err}"
    );

    dns.add_a("good.example.test", "127.0.0.1").await;
    let (ok, out, err) = run("good.example.test", &["--dry-run"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("DNS: good.example.test → 127.0.0.1 (this machine)"),
        "{out}"
    );

    // Behind 1:1 NAT the record is no address of this machine, but reaches it: 127.0.0.2 goes to
    // loopback without being an interface address, and the check's listener is bound there.
    dns.add_a("nat.example.test", "127.0.0.2").await;
    let listen = format!("127.0.0.2:{}", free_port());
    let (ok, out, err) = run(
        "nat.example.test",
        &["--dry-run", "--check-http-listen", &listen],
    );
    assert!(ok, "{out}{err}");
    assert!(out.contains("1:1 NAT"), "{out}");
    // A record that reaches nothing here fails the same check, naming what was tried.
    dns.add_a("elsewhere.example.test", "127.0.0.3").await;
    let (ok, out, err) = run(
        "elsewhere.example.test",
        &["--dry-run", "--check-http-listen", &listen],
    );
    assert!(!ok, "{out}");
    assert!(
        err.contains("the A record elsewhere.example.test → 127.0.0.3") && err.contains("1:1 NAT"),
        "{err}"
    );
}
