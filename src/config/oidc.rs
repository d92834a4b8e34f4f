//! `[[auth.oidc]]`: single sign-on providers (OpenID Connect), each checked at start so a typo in
//! an issuer or a missing secret stops the start with the key named, never a sign-in later.

use std::net::IpAddr;

use super::file::FileOidc;
use super::{defaults, invalid, ConfigError};

/// A client secret: never printed (`Config` is logged with `{:?}` by `doctor` and in errors).
#[derive(Clone)]
pub(crate) struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// One provider as the server uses it.
#[derive(Debug, Clone)]
pub(crate) struct OidcProvider {
    /// The id in URLs: `/login/oidc/<name>`.
    pub name: String,
    /// The button's text.
    pub label: String,
    /// The issuer exactly as the provider's ID tokens name it (no trailing slash added or removed).
    pub issuer: String,
    pub client_id: String,
    /// `None` for a public client (PKCE alone).
    pub client_secret: Option<Secret>,
    pub scopes: Vec<String>,
    /// Lower case, without `@`.
    pub allowed_email_domains: Vec<String>,
    /// Lower case.
    pub allowed_emails: Vec<String>,
    /// The claim (`groups`, `roles`) whose values decide the admin role, with the values that do.
    pub admin_claim: Option<(String, Vec<String>)>,
    pub create_accounts: bool,
}

impl OidcProvider {
    /// True when the address passes `allowed_email_domains` / `allowed_emails` (either list; both
    /// empty lets any address through, which `resolve` allows only without `create_accounts`).
    pub(crate) fn email_allowed(&self, email: &str) -> bool {
        if self.allowed_email_domains.is_empty() && self.allowed_emails.is_empty() {
            return true;
        }
        let email = email.to_ascii_lowercase();
        if self.allowed_emails.contains(&email) {
            return true;
        }
        match email.rsplit_once('@') {
            Some((local, domain)) if !local.is_empty() => {
                self.allowed_email_domains.iter().any(|d| d == domain)
            }
            _ => false,
        }
    }

    /// True when an email rule is configured (an email is then required to sign in).
    pub(crate) fn has_email_rule(&self) -> bool {
        !self.allowed_email_domains.is_empty() || !self.allowed_emails.is_empty()
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Plain `http://` only to this machine (a provider beside the server, a test); anywhere else
/// the discovery document, the keys and the code exchange must be protected by TLS.
fn issuer_ok(issuer: &str) -> Result<(), String> {
    let uri: http::Uri = issuer
        .parse()
        .map_err(|_| format!("`{issuer}` is not a URL"))?;
    let host = uri.host().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if uri.query().is_some() || host.is_empty() {
        return Err(format!(
            "`{issuer}` must be https://HOST[/PATH] without a query"
        ));
    }
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http")
            if host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "`{issuer}` must start with https:// (plain http:// only for a provider on this machine: localhost, 127.0.0.1, ::1)"
        )),
    }
}

fn lower_list(v: &Option<Vec<String>>) -> Vec<String> {
    v.iter()
        .flatten()
        .map(|s| s.trim().to_ascii_lowercase())
        .collect()
}

pub(super) fn resolve(list: &[FileOidc]) -> Result<Vec<OidcProvider>, ConfigError> {
    let mut out: Vec<OidcProvider> = Vec::new();
    for p in list {
        let key = |k: &str| format!("auth.oidc.{k} (provider `{}`)", p.name);
        if !valid_name(&p.name) {
            return Err(invalid(
                "auth.oidc.name",
                format!(
                    "`{}` must be 1 to 32 lower-case letters, digits, `-` or `_` (it is part of the sign-in URL)",
                    p.name
                ),
            ));
        }
        if out.iter().any(|o| o.name == p.name) {
            return Err(invalid(
                "auth.oidc.name",
                format!("two providers are named `{}`", p.name),
            ));
        }
        issuer_ok(&p.issuer).map_err(|m| invalid(&key("issuer"), m))?;
        if p.client_id.trim().is_empty() {
            return Err(invalid(&key("client_id"), "must not be empty"));
        }
        let client_secret = match (&p.client_secret_file, &p.client_secret_env) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    &key("client_secret_env"),
                    "give either client_secret_file or client_secret_env, not both",
                ))
            }
            (Some(path), None) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    invalid(
                        &key("client_secret_file"),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                Some(text.trim().to_string())
            }
            (None, Some(var)) => Some(std::env::var(var).map_err(|_| {
                invalid(
                    &key("client_secret_env"),
                    format!("the environment variable {var} is not set"),
                )
            })?),
            (None, None) => None,
        };
        if client_secret.as_deref().is_some_and(str::is_empty) {
            return Err(invalid(
                &key("client_secret_file"),
                "the client secret is empty",
            ));
        }
        let scopes = p.scopes.clone().unwrap_or_else(|| {
            defaults::OIDC_SCOPES
                .iter()
                .map(|s| s.to_string())
                .collect()
        });
        if !scopes.iter().any(|s| s == "openid") {
            return Err(invalid(&key("scopes"), "must include \"openid\""));
        }
        if scopes
            .iter()
            .any(|s| s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic() && b != b'"'))
        {
            return Err(invalid(&key("scopes"), "a scope is one word"));
        }
        let allowed_email_domains = lower_list(&p.allowed_email_domains);
        if let Some(d) = allowed_email_domains
            .iter()
            .find(|d| d.is_empty() || d.contains('@'))
        {
            return Err(invalid(
                &key("allowed_email_domains"),
                format!("`{d}` is not a domain like example.com"),
            ));
        }
        let allowed_emails = lower_list(&p.allowed_emails);
        if let Some(e) = allowed_emails
            .iter()
            .find(|e| !e.contains('@') || e.starts_with('@'))
        {
            return Err(invalid(
                &key("allowed_emails"),
                format!("`{e}` is not an email address"),
            ));
        }
        let admin_claim = match (&p.admin_claim, &p.admin_values) {
            (Some(c), Some(v)) if !c.is_empty() && !v.is_empty() => Some((c.clone(), v.clone())),
            (None, None) => None,
            _ => {
                return Err(invalid(
                    &key("admin_claim"),
                    "give admin_claim and a non-empty admin_values together, or neither",
                ))
            }
        };
        let create_accounts = p.create_accounts.unwrap_or(defaults::OIDC_CREATE_ACCOUNTS);
        if create_accounts && allowed_email_domains.is_empty() && allowed_emails.is_empty() {
            return Err(invalid(
                &key("create_accounts"),
                "creating accounts needs allowed_email_domains or allowed_emails: otherwise anyone with an account at the provider gets one here",
            ));
        }
        out.push(OidcProvider {
            label: p
                .label
                .clone()
                .filter(|l| !l.trim().is_empty())
                .unwrap_or_else(|| format!("Sign in with {}", p.name)),
            name: p.name.clone(),
            issuer: p.issuer.clone(),
            client_id: p.client_id.clone(),
            client_secret: client_secret.map(Secret),
            scopes,
            allowed_email_domains,
            allowed_emails,
            admin_claim,
            create_accounts,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(extra: &str) -> Result<Vec<OidcProvider>, ConfigError> {
        let text = format!(
            "[[auth.oidc]]\nname = \"corp\"\nissuer = \"https://id.example.com\"\nclient_id = \"edge\"\n{extra}"
        );
        let file = crate::config::Config::parse_str(&text, std::path::Path::new("t.toml"))?;
        resolve(&file.auth.oidc)
    }

    #[test]
    fn issuers_need_tls_unless_on_this_machine() {
        assert!(issuer_ok("https://id.example.com/realms/x").is_ok());
        assert!(issuer_ok("http://127.0.0.1:9000").is_ok());
        assert!(issuer_ok("http://[::1]:9000").is_ok());
        assert!(issuer_ok("http://localhost:9000").is_ok());
        assert!(issuer_ok("http://id.example.com").is_err());
        assert!(issuer_ok("http://192.0.2.1").is_err());
        assert!(issuer_ok("ftp://id.example.com").is_err());
    }

    #[test]
    fn allow_lists_match_whole_domains_and_addresses() {
        let p = &provider(
            "allowed_email_domains = [\"Example.com\"]\nallowed_emails = [\"Boss@Else.org\"]",
        )
        .unwrap()[0];
        assert!(p.email_allowed("alice@example.com"));
        assert!(p.email_allowed("ALICE@EXAMPLE.COM"));
        assert!(p.email_allowed("boss@else.org"));
        assert!(!p.email_allowed("alice@evil-example.com"));
        assert!(!p.email_allowed("alice@example.com.evil.org"));
        assert!(!p.email_allowed("other@else.org"));
        assert!(!p.email_allowed("@example.com"));
        assert!(!p.email_allowed("example.com"));
    }

    #[test]
    fn creating_accounts_needs_an_allow_list_and_secrets_are_not_printed() {
        let err = provider("create_accounts = true").unwrap_err().to_string();
        assert!(err.contains("allowed_email_domains"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "s3cret\n").unwrap();
        let p = provider(&format!("client_secret_file = \"{}\"", path.display())).unwrap();
        assert_eq!(p[0].client_secret.as_ref().unwrap().0, "s3cret");
        assert!(!format!("{p:?}").contains("s3cret"));
        assert!(provider("name2 = 1").is_err());
        assert!(provider("admin_claim = \"groups\"").is_err());
    }
}
