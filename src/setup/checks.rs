//! What setup checks before it changes anything: the ports (and who holds them), the domain's
//! DNS records against this machine's addresses (with a reachability check for 1:1 NAT), free
//! memory and disk. A wrong DNS record found here costs nothing; found by the CA it costs one of
//! Let's Encrypt's five failed validations per name and hour.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::Resolver;

/// How long the NAT reachability check may take in all.
const REACH_TIMEOUT: Duration = Duration::from_secs(4);
/// Below this much available memory the server and an ACME order still run, but Hermes beside
/// it may not; said, not refused.
const LOW_MEMORY_BYTES: u64 = 128 << 20;
/// Less free disk than this stops setup: the binary alone is tens of megabytes.
const MIN_DISK_BYTES: u64 = 100 << 20;

/// A process listening on a port setup needs.
pub(crate) struct Holder {
    pub port: u16,
    pub pid: Option<u32>,
    pub name: Option<String>,
}

impl Holder {
    /// Whether it is hermes-edge itself (a second run while the service runs).
    pub(crate) fn is_hermes_edge(&self) -> bool {
        self.name.as_deref() == Some("hermes-edge")
    }

    /// What holds the port and how to free it.
    pub(crate) fn advice(&self) -> String {
        let who = match (&self.name, self.pid) {
            (Some(n), Some(p)) => format!("{n} (PID {p})"),
            _ => "another process (run `ss -tlnp` to see which)".to_string(),
        };
        let how = match self.name.as_deref() {
            Some(
                n @ ("nginx" | "apache2" | "httpd" | "caddy" | "lighttpd" | "haproxy" | "traefik"),
            ) => {
                format!("stop it for good with `systemctl disable --now {n}` (hermes-edge takes over HTTPS; move any other site it served first)")
            }
            Some(_) => "stop it, or run hermes-edge behind it (see docs/setup.md)".to_string(),
            None => "stop it".to_string(),
        };
        format!("port {} is in use by {who}: {how}", self.port)
    }
}

/// The processes listening on `ports` (TCP, IPv4 and IPv6), from `/proc/net/tcp{,6}` and the
/// sockets in `/proc/*/fd`.
pub(crate) fn port_holders(ports: &[u16]) -> Vec<Holder> {
    let mut listening: Vec<(u16, u64)> = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // local_address is cols[1] ("0100007F:0050"), st cols[3] ("0A" = LISTEN), inode cols[9].
            let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9))
            else {
                continue;
            };
            if *state != "0A" {
                continue;
            }
            let Some(port) = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok())
            else {
                continue;
            };
            if ports.contains(&port) {
                let inode = inode.parse().unwrap_or(0);
                if !listening.contains(&(port, inode)) {
                    listening.push((port, inode));
                }
            }
        }
    }
    let mut out: Vec<Holder> = Vec::new();
    for (port, inode) in listening {
        let (pid, name) = socket_owner(inode).unzip();
        if !out.iter().any(|h| h.port == port && h.pid == pid) {
            out.push(Holder { port, pid, name });
        }
    }
    out
}

/// The process holding socket `inode`, and its name.
fn socket_owner(inode: u64) -> Option<(u32, String)> {
    if inode == 0 {
        return None;
    }
    let want = format!("socket:[{inode}]");
    let procs = std::fs::read_dir("/proc").ok()?;
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == want.as_str()) {
                let name = std::fs::read_to_string(p.path().join("comm"))
                    .map(|s| s.trim().to_string())
                    .unwrap_or_default();
                return Some((pid, name));
            }
        }
    }
    None
}

/// This machine's addresses (every interface, loopback included).
pub(crate) fn local_addresses() -> Vec<IpAddr> {
    if_addrs::get_if_addrs()
        .map(|v| v.into_iter().map(|i| i.ip()).collect())
        .unwrap_or_default()
}

/// A domain's A and AAAA records.
pub(crate) struct Records {
    pub a: Vec<IpAddr>,
    pub aaaa: Vec<IpAddr>,
}

impl Records {
    pub(crate) fn all(&self) -> impl Iterator<Item = &IpAddr> {
        self.a.iter().chain(self.aaaa.iter())
    }
}

/// The resolver: the system's (`/etc/resolv.conf`), or the one DNS server given.
fn resolver(server: Option<SocketAddr>) -> Result<Resolver<TokioConnectionProvider>, String> {
    let mut builder = match server {
        Some(addr) => {
            let group = NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
            Resolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], group),
                TokioConnectionProvider::default(),
            )
        }
        None => Resolver::builder_tokio()
            .map_err(|e| format!("cannot read the system's DNS settings: {e}"))?,
    };
    let opts: &mut ResolverOpts = builder.options_mut();
    // What a CA sees: fresh answers, not a cache, and no search domains appended.
    opts.cache_size = 0;
    opts.ndots = 0;
    opts.timeout = Duration::from_secs(3);
    opts.attempts = 2;
    Ok(builder.build())
}

/// The A and AAAA records of `domain`.
pub(crate) async fn records(domain: &str, server: Option<SocketAddr>) -> Result<Records, String> {
    let r = resolver(server)?;
    let fqdn = format!("{}.", domain.trim_end_matches('.'));
    let a = match r.ipv4_lookup(fqdn.as_str()).await {
        Ok(l) => l.iter().map(|a| IpAddr::V4(a.0)).collect(),
        Err(e) if e.is_no_records_found() => Vec::new(),
        Err(e) => return Err(format!("cannot look up the A record of {domain}: {e}")),
    };
    let aaaa = match r.ipv6_lookup(fqdn.as_str()).await {
        Ok(l) => l.iter().map(|a| IpAddr::V6(a.0)).collect(),
        Err(e) if e.is_no_records_found() => Vec::new(),
        Err(e) => return Err(format!("cannot look up the AAAA record of {domain}: {e}")),
    };
    Ok(Records { a, aaaa })
}

fn list(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The addresses worth naming to a person fixing a DNS record: not loopback or link-local.
pub(crate) fn public_looking(local: &[IpAddr]) -> Vec<IpAddr> {
    local
        .iter()
        .copied()
        .filter(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local(),
            IpAddr::V6(v6) => !v6.is_loopback() && (v6.segments()[0] & 0xffc0) != 0xfe80,
        })
        .collect()
}

/// The records that are not addresses of this machine; an error when there is no record at all.
pub(crate) fn foreign_records(
    domain: &str,
    records: &Records,
    local: &[IpAddr],
) -> Result<Vec<(&'static str, IpAddr)>, String> {
    if records.a.is_empty() && records.aaaa.is_empty() {
        return Err(format!(
            "{domain} has no A or AAAA record. Create an A record (and an AAAA record for IPv6) \
             for {domain} pointing at this machine ({}), wait until `dig +short {domain}` shows it, \
             then run setup again",
            list(&public_looking(local))
        ));
    }
    let mut out = Vec::new();
    for (kind, ips) in [("A", &records.a), ("AAAA", &records.aaaa)] {
        for ip in ips {
            if !local.contains(ip) {
                out.push((kind, *ip));
            }
        }
    }
    Ok(out)
}

/// The error for records that point elsewhere.
pub(crate) fn wrong_records_error(
    domain: &str,
    wrong: &[(&'static str, IpAddr)],
    local: &[IpAddr],
    reach: Option<&str>,
) -> String {
    let named: Vec<String> = wrong
        .iter()
        .map(|(kind, ip)| format!("the {kind} record {domain} → {ip}"))
        .collect();
    let mut s = format!(
        "{} does not point at this machine, whose addresses are {}. Let's Encrypt validates through \
         every A and AAAA record, so the certificate cannot be issued: change the record to this \
         machine's public address (or delete a stale AAAA record), wait until `dig +short {domain}` \
         shows it, then run setup again. Nothing was changed.",
        named.join(" and "),
        list(&public_looking(local))
    );
    if let Some(reach) = reach {
        s.push_str(&format!(
            " (If this machine is behind 1:1 NAT, that address must forward ports 80 and 443 here: \
             {reach}.)"
        ));
    }
    s
}

/// Whether `http://domain/.well-known/hermes-edge-check/TOKEN` through `addr` reaches a listener
/// bound here on `listen`: the check for a machine behind 1:1 NAT, whose public address is not
/// on any of its interfaces. Bounded by [`REACH_TIMEOUT`].
pub(crate) async fn reachable(
    domain: &str,
    addr: IpAddr,
    listen: SocketAddr,
) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let token = hex::encode(rand::random::<[u8; 16]>());
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen} for the check: {e}"))?;
    let path = format!("/.well-known/hermes-edge-check/{token}");
    let serve_token = token.clone();
    let server = tokio::spawn(async move {
        // Answers every connection with the token: whoever reaches us, reached us.
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let body = serve_token.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    let port = listen.port();
    let host = domain.to_string();
    let get = async move {
        let mut s = tokio::net::TcpStream::connect(SocketAddr::new(addr, port))
            .await
            .map_err(|e| format!("connecting to {addr}:{port} failed ({e})"))?;
        let req = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("sending to {addr}:{port} failed ({e})"))?;
        let mut got = Vec::new();
        let _ = (&mut s).take(4096).read_to_end(&mut got).await;
        Ok::<_, String>(String::from_utf8_lossy(&got).into_owned())
    };
    let result = tokio::time::timeout(REACH_TIMEOUT, get).await;
    server.abort();
    match result {
        Ok(Ok(answer)) if answer.starts_with("HTTP/1.1 200") && answer.ends_with(&token) => Ok(()),
        Ok(Ok(_)) => Err(format!(
            "http://{domain}:{port} through {addr} answered, but not from this machine"
        )),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!(
            "http://{domain}:{port} through {addr} did not answer within {} s",
            REACH_TIMEOUT.as_secs()
        )),
    }
}

/// A warning when ufw is active and does not allow ports 80 and 443: the certificate and the
/// site need both from outside. Said, not changed: the firewall is the operator's.
pub(crate) fn firewall_warning() -> Option<String> {
    let out = std::process::Command::new("ufw")
        .arg("status")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !text.lines().any(|l| l.trim() == "Status: active") {
        return None;
    }
    let allows = |port: &str| {
        text.lines().any(|l| {
            let first = l.split_whitespace().next().unwrap_or("");
            let opens = first == port
                || first == format!("{port}/tcp")
                || (port == "80" && first.starts_with("WWW"))
                || (port == "443" && first.starts_with("WWW"));
            opens && l.contains("ALLOW")
        })
    };
    let closed: Vec<&str> = ["80", "443"].into_iter().filter(|p| !allows(p)).collect();
    (!closed.is_empty()).then(|| {
        format!(
            "ufw is active and does not seem to allow port {}: run `ufw allow 80/tcp && ufw allow 443/tcp`",
            closed.join(" and ")
        )
    })
}

/// Warnings about free memory, and an error when the disk holding `dir` is nearly full.
pub(crate) fn resources(dir: &Path) -> (Vec<String>, Option<String>) {
    let mut warnings = Vec::new();
    let available = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    if let Some(bytes) = available.filter(|b| *b < LOW_MEMORY_BYTES) {
        warnings.push(format!(
            "only {} MiB of memory available: hermes-edge needs about 20 MiB, but Hermes beside it \
             may run short (add swap, or a larger machine)",
            bytes >> 20
        ));
    }
    // The nearest existing folder: the target itself may not exist yet.
    let mut probe = dir.to_path_buf();
    while !probe.exists() {
        if !probe.pop() {
            break;
        }
    }
    let error = rustix::fs::statvfs(&probe).ok().and_then(|s| {
        let free = s.f_bavail.saturating_mul(s.f_frsize);
        (free < MIN_DISK_BYTES).then(|| {
            format!(
                "only {} MiB free on the disk holding {}: free at least {} MiB and run setup again",
                free >> 20,
                probe.display(),
                MIN_DISK_BYTES >> 20
            )
        })
    });
    (warnings, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_socket_is_traced_to_its_process() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let holders = port_holders(&[port]);
        assert_eq!(holders.len(), 1);
        assert_eq!(holders[0].pid, Some(std::process::id()));
        assert!(holders[0]
            .advice()
            .contains(&format!("port {port} is in use by ")));
        drop(l);
        assert!(port_holders(&[port]).is_empty());
    }

    #[test]
    fn advice_names_the_service_to_stop() {
        let h = Holder {
            port: 443,
            pid: Some(12),
            name: Some("nginx".into()),
        };
        assert!(h.advice().contains("nginx (PID 12)"));
        assert!(h.advice().contains("systemctl disable --now nginx"));
    }

    #[test]
    fn records_elsewhere_are_named_with_this_machines_addresses() {
        let local: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "203.0.113.5".parse().unwrap()];
        let records = Records {
            a: vec!["203.0.113.5".parse().unwrap()],
            aaaa: vec!["2001:db8::1".parse().unwrap()],
        };
        let wrong = foreign_records("chat.example.com", &records, &local).unwrap();
        assert_eq!(wrong, [("AAAA", "2001:db8::1".parse::<IpAddr>().unwrap())]);
        let e = wrong_records_error("chat.example.com", &wrong, &local, None);
        assert!(
            e.contains("the AAAA record chat.example.com → 2001:db8::1"),
            "{e}"
        );
        assert!(e.contains("whose addresses are 203.0.113.5."), "{e}");
        let none = Records {
            a: vec![],
            aaaa: vec![],
        };
        assert!(foreign_records("x.example", &none, &local).is_err());
    }
}
