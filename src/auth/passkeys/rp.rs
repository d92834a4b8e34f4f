//! The relying party of a passkey ceremony: which name (RP id) and origin a ceremony is for.
//!
//! The RP id is never taken from the `Host` header as such: the server knows the names it serves
//! (the ACME domains; with the local CA or certificate files `localhost`, the machine's hostname
//! and the configured `tls.hostnames` / `tls.san`), and a request's host only picks one of them.
//! A host that is not one of them, or an IP address (browsers refuse WebAuthn there), gets no
//! ceremony at all. The origin is `https://` + that name + the port the HTTPS listener is bound
//! to, and `webauthn-rs` refuses an answer whose signed origin is anything else.

use std::net::IpAddr;

use crate::config::TlsMode;

/// The name and origin one ceremony is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RelyingParty {
    pub id: String,
    pub origin: String,
}

/// Why a request's address cannot hold a passkey ceremony.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unavailable {
    /// The page was opened by an IP address: browsers refuse WebAuthn there.
    IpAddress,
    /// A name this server does not serve (a stray or forged `Host`).
    UnknownName(String),
    /// No usable host in the request, or a port other than the listener's.
    BadHost,
}

impl Unavailable {
    /// What the page shows; the password stays available in every case.
    pub(crate) fn message(&self) -> String {
        match self {
            Unavailable::IpAddress => {
                "Passkeys need a name: browsers refuse them on a page opened \
                by IP address. Open this site by its name (a real domain, the machine's hostname, \
                or localhost on this machine) to use passkeys; your password works everywhere."
                    .into()
            }
            Unavailable::UnknownName(name) => format!(
                "Passkeys are not offered at {name}: it is not one of the names this server is \
                 configured for (tls.domains, tls.hostnames). Sign in with your password, or open \
                 the site by its configured name."
            ),
            Unavailable::BadHost => "Passkeys are not offered at this address (its port is not \
                the server's HTTPS port). Sign in with your password."
                .into(),
        }
    }

    pub(crate) fn code(&self) -> &'static str {
        match self {
            Unavailable::IpAddress => "passkeys_need_a_name",
            Unavailable::UnknownName(_) | Unavailable::BadHost => "passkeys_not_offered_here",
        }
    }
}

/// The names passkeys may be registered for: the ACME domains in ACME mode; otherwise
/// `localhost`, the machine's `hostname` and the configured extra names that are DNS names.
pub(crate) fn served_names(tls: &TlsMode, extra: &[String], hostname: Option<&str>) -> Vec<String> {
    let mut names: Vec<String> = match tls {
        TlsMode::Acme(acme) => acme.domains.clone(),
        TlsMode::LocalCa | TlsMode::Files { .. } => {
            let mut n = vec!["localhost".to_string()];
            n.extend(hostname.map(str::to_string));
            n.extend(extra.iter().cloned());
            n
        }
    };
    for n in &mut names {
        *n = n.trim().trim_end_matches('.').to_ascii_lowercase();
    }
    names.retain(|n| is_dns_name(n));
    names.sort();
    names.dedup();
    names
}

/// A name WebAuthn accepts as an RP id: letters, digits, `-` and dots, not an IP address.
fn is_dns_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.parse::<IpAddr>().is_err()
        && n.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The machine's hostname from `/etc/hostname`, when it is a usable name.
pub(crate) fn machine_hostname() -> Option<String> {
    let text = std::fs::read_to_string("/etc/hostname").ok()?;
    let name = text.trim().to_ascii_lowercase();
    is_dns_name(&name).then_some(name)
}

/// The relying party for a request addressed to `host` (its `Host` or `:authority`), when that
/// host is one of `names` on the listener's `port`.
pub(crate) fn relying_party(
    names: &[String],
    host: &str,
    port: u16,
) -> Result<RelyingParty, Unavailable> {
    if host.contains('@') {
        return Err(Unavailable::BadHost);
    }
    let authority =
        http::uri::Authority::try_from(host.trim()).map_err(|_| Unavailable::BadHost)?;
    let name = authority.host().trim_end_matches('.').to_ascii_lowercase();
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    if bare.parse::<IpAddr>().is_ok() {
        return Err(Unavailable::IpAddress);
    }
    if authority.port_u16().unwrap_or(443) != port {
        return Err(Unavailable::BadHost);
    }
    let Some(id) = names.iter().find(|n| **n == name) else {
        return Err(Unavailable::UnknownName(
            name.chars()
                .filter(|c| c.is_ascii_graphic())
                .take(100)
                .collect(),
        ));
    };
    let origin = if port == 443 {
        format!("https://{id}")
    } else {
        format!("https://{id}:{port}")
    };
    Ok(RelyingParty {
        id: id.clone(),
        origin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AcmeChallenge, AcmeSettings};

    fn acme(domains: &[&str]) -> TlsMode {
        TlsMode::Acme(AcmeSettings {
            domains: domains.iter().map(|d| d.to_string()).collect(),
            email: None,
            challenge: AcmeChallenge::TlsAlpn01,
            staging: false,
            directory: None,
            ca_root: None,
            retry_initial: std::time::Duration::from_secs(1),
        })
    }

    #[test]
    fn acme_domains_are_the_only_names() {
        let names = served_names(
            &acme(&["Chat.Example.com."]),
            &["lan-box".into()],
            Some("vps1"),
        );
        assert_eq!(names, ["chat.example.com"]);
        let rp = relying_party(&names, "chat.example.com", 443).unwrap();
        assert_eq!(rp.id, "chat.example.com");
        assert_eq!(rp.origin, "https://chat.example.com");
        let rp = relying_party(&names, "CHAT.example.com:443", 443).unwrap();
        assert_eq!(rp.origin, "https://chat.example.com");
        // localhost is not served in ACME mode.
        assert_eq!(
            relying_party(&names, "localhost", 443),
            Err(Unavailable::UnknownName("localhost".into()))
        );
    }

    #[test]
    fn local_ca_serves_localhost_the_hostname_and_extra_names_but_no_ip() {
        let names = served_names(
            &TlsMode::LocalCa,
            &[
                "hermes.lan".into(),
                "192.168.1.20".into(),
                "bad name".into(),
            ],
            Some("box"),
        );
        assert_eq!(names, ["box", "hermes.lan", "localhost"]);
        let rp = relying_party(&names, "localhost:8443", 8443).unwrap();
        assert_eq!(
            rp,
            RelyingParty {
                id: "localhost".into(),
                origin: "https://localhost:8443".into()
            }
        );
        assert_eq!(
            relying_party(&names, "hermes.lan:8443", 8443)
                .unwrap()
                .origin,
            "https://hermes.lan:8443"
        );
    }

    #[test]
    fn ip_addresses_unknown_names_and_other_ports_get_no_ceremony() {
        let names = served_names(&TlsMode::LocalCa, &[], None);
        for ip in [
            "127.0.0.1:8443",
            "192.168.1.20:8443",
            "[::1]:8443",
            "[fe80::1]:8443",
        ] {
            assert_eq!(
                relying_party(&names, ip, 8443),
                Err(Unavailable::IpAddress),
                "{ip}"
            );
        }
        assert_eq!(
            relying_party(&names, "evil.example:8443", 8443),
            Err(Unavailable::UnknownName("evil.example".into()))
        );
        // A name that merely ends with a served one is another name.
        assert!(relying_party(&names, "notlocalhost:8443", 8443).is_err());
        assert_eq!(
            relying_party(&names, "localhost:9443", 8443),
            Err(Unavailable::BadHost)
        );
        // No port means 443.
        assert_eq!(
            relying_party(&names, "localhost", 8443),
            Err(Unavailable::BadHost)
        );
        assert_eq!(relying_party(&names, "", 8443), Err(Unavailable::BadHost));
        assert_eq!(
            relying_party(&names, "user@localhost:8443", 8443),
            Err(Unavailable::BadHost)
        );
    }

    #[test]
    fn webauthn_accepts_each_derived_party() {
        for (names, host, port) in [
            (
                served_names(&TlsMode::LocalCa, &[], None),
                "localhost:8443",
                8443,
            ),
            (
                served_names(&acme(&["chat.example.com"]), &[], None),
                "chat.example.com",
                443,
            ),
        ] {
            let rp = relying_party(&names, host, port).unwrap();
            assert!(super::super::webauthn_for(&rp).is_ok(), "{rp:?}");
        }
    }
}
