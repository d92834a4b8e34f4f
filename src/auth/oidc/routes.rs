//! The single sign-on routes, open to anyone (they are how one signs in):
//! - `GET /login/oidc`: the providers, for the login page's buttons;
//! - `GET /login/oidc/NAME[?next=/path&remember=1]`: starts a sign-in (flow cookie, `303` to the
//!   provider);
//! - `GET /login/oidc/NAME/callback`: where the provider sends the browser back. It checks the
//!   flow cookie and `state`, exchanges the code (with the PKCE verifier), verifies the ID token
//!   (signature with the provider's published keys, issuer, audience, expiry, nonce), applies the
//!   email rules, finds the account (`accounts.rs`), and then signs in exactly as `POST /login`
//!   does: the same session cookie, the same audit row, the same per-address attempt limit.
//!
//! Every refusal is a page (or JSON for a client that asks for it) saying what went wrong, a line
//! in the log and a failed row in the sign-in audit; none of them makes a session.

use std::borrow::Cow;

use base64::Engine;
use http::{header, HeaderValue, Method, Request, StatusCode};
use hyper::body::Incoming;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, SignatureVerificationError, TokenResponse,
};

use super::accounts::{self, Identity, Refusal};
use super::flow::{self, Flow, FlowError};
use crate::app::{App, Ctx};
use crate::auth::{request_host, safe_next, session_cookie_header, Role};
use crate::config::OidcProvider;
use crate::response::{self, Resp};
use crate::store::now;

/// True for the paths this module answers.
pub(crate) fn is_oidc_path(path: &str) -> bool {
    path == "/login/oidc" || path.starts_with("/login/oidc/")
}

/// Answers a path for which `is_oidc_path` is true.
pub(crate) async fn route(app: &App, ctx: &Ctx, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    if path == "/login/oidc" && (req.method() == Method::GET || req.method() == Method::HEAD) {
        return list(app);
    }
    // GET only: a HEAD would start a flow, or spend the code, for an answer nobody sees.
    if req.method() != Method::GET {
        return response::method_not_allowed();
    }
    let rest = path.strip_prefix("/login/oidc/").unwrap_or("");
    let (name, callback) = match rest.strip_suffix("/callback") {
        Some(name) => (name, true),
        None => (rest, false),
    };
    let Some(provider) = app.oidc.config(name) else {
        return page(
            &req,
            StatusCode::NOT_FOUND,
            "oidc_unknown_provider",
            "There is no single sign-on provider by that name here.",
        );
    };
    if callback {
        Box::pin(finish(app, ctx, &req, provider)).await
    } else {
        start(app, &req, provider).await
    }
}

/// `GET /login/oidc`: `{"providers": [{"name", "label", "url"}]}` (empty without providers).
fn list(app: &App) -> Resp {
    let providers: Vec<_> = app
        .oidc
        .configs()
        .map(|p| {
            serde_json::json!({
                "name": p.name,
                "label": p.label,
                "url": format!("/login/oidc/{}", p.name),
            })
        })
        .collect();
    response::json(
        StatusCode::OK,
        &serde_json::json!({ "providers": providers }),
    )
}

fn query_pairs<B>(req: &Request<B>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

fn query<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The redirect URI for a request addressed to `Host`: `https://HOST[:PORT]/login/oidc/NAME/callback`,
/// but only when HOST is one of the names this server is configured to serve (`localhost`,
/// `tls.hostnames`, `tls.san`, `tls.domains`). A `Host` made up by a client never becomes the
/// place the provider sends a code to; the provider checks the URI against its registration too.
fn redirect_uri<B>(app: &App, req: &Request<B>, name: &str) -> Option<String> {
    let authority: http::uri::Authority = request_host(req)?.parse().ok()?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let known = host == "localhost"
        || app
            .config
            .extra_names
            .iter()
            .any(|n| n.eq_ignore_ascii_case(host));
    known.then(|| format!("https://{authority}/login/oidc/{name}/callback"))
}

/// A client made from discovered metadata: an authorization endpoint always, a token endpoint
/// if the provider has one (checked at the exchange).
type MetadataClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

fn client(meta: &CoreProviderMetadata, p: &OidcProvider) -> MetadataClient {
    CoreClient::from_provider_metadata(
        meta.clone(),
        ClientId::new(p.client_id.clone()),
        p.client_secret
            .as_ref()
            .map(|s| ClientSecret::new(s.0.clone())),
    )
}

/// `GET /login/oidc/NAME`: a new flow cookie and a `303` to the provider's authorization page.
async fn start(app: &App, req: &Request<Incoming>, p: &OidcProvider) -> Resp {
    let pairs = query_pairs(req);
    let next = safe_next(query(&pairs, "next").unwrap_or("/"));
    let remember = matches!(query(&pairs, "remember"), Some("1" | "on" | "true" | "yes"));
    let Some(redirect) = redirect_uri(app, req, &p.name) else {
        return page(
            req,
            StatusCode::BAD_REQUEST,
            "oidc_unknown_host",
            "Single sign-on works only at one of this server's configured names (tls.hostnames or tls.domains); open the site by that name and try again.",
        );
    };
    let Ok(redirect_url) = RedirectUrl::new(redirect.clone()) else {
        return page(
            req,
            StatusCode::BAD_REQUEST,
            "oidc_unknown_host",
            "This site's address cannot be used as a sign-in return address.",
        );
    };
    let meta = match app.oidc.metadata(&p.name, false).await {
        Ok(m) => m,
        // Why is in the log (`metadata` says it); the page need not show the server's view of
        // the network to whoever asks.
        Err(_) => {
            return page(
                req,
                StatusCode::SERVICE_UNAVAILABLE,
                "oidc_provider_unreachable",
                "The sign-in provider cannot be reached right now. Try again in a moment, or sign in with your password.",
            )
        }
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let client = client(&meta, p);
    let mut auth = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge)
        .set_redirect_uri(Cow::Owned(redirect_url));
    for scope in p.scopes.iter().filter(|s| *s != "openid") {
        auth = auth.add_scope(Scope::new(scope.clone()));
    }
    let (url, state, nonce) = auth.url();
    let flow = Flow {
        provider: p.name.clone(),
        state: state.secret().clone(),
        nonce: nonce.secret().clone(),
        pkce_verifier: verifier.secret().clone(),
        redirect_uri: redirect,
        next,
        remember,
        expires: now() + flow::FLOW_LIFETIME_SECS,
    };
    let mut resp = response::redirect(StatusCode::SEE_OTHER, url.as_str());
    match flow::cookie(app.oidc.key(), &flow) {
        Some(c) => {
            resp.headers_mut().insert(header::SET_COOKIE, c);
        }
        None => {
            return page(
                req,
                StatusCode::INTERNAL_SERVER_ERROR,
                "oidc_internal",
                "The sign-in could not be started.",
            )
        }
    }
    no_store(&mut resp);
    resp
}

/// A refused callback: what the person reads, and what the log and the audit keep.
struct Refused {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// For the log: the details the page does not show (library errors, claims).
    detail: String,
}

fn refused(status: StatusCode, code: &'static str, message: &str, detail: String) -> Refused {
    Refused {
        status,
        code,
        message: message.to_string(),
        detail,
    }
}

/// `GET /login/oidc/NAME/callback`.
async fn finish(app: &App, ctx: &Ctx, req: &Request<Incoming>, p: &OidcProvider) -> Resp {
    let ip = ctx.client_ip;
    // Each callback counts against the per-address sign-in limit, as each `POST /login` does.
    if let Err(secs) = app.login_ip_limit.check(&ip) {
        tracing::info!(ip = %ip, provider = %p.name, "single sign-on refused: too many attempts from this address");
        let secs = secs.max(1);
        let mut resp = page(
            req,
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            &format!("Too many sign-in attempts. Try again in {secs} seconds."),
        );
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return resp;
    }
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .chars()
        .take(256)
        .collect::<String>();
    let mut who = format!("oidc:{}", p.name);
    let outcome = check(app, req, p, &mut who).await;
    let (user, flow) = match outcome {
        Ok(done) => done,
        Err(r) => {
            tracing::info!(ip = %ip, provider = %p.name, who = %who, reason = r.code, detail = %r.detail,
                "single sign-on refused");
            audit(app, &who, None, ip, false).await;
            return page(req, r.status, r.code, &r.message);
        }
    };
    audit(app, &user.username, Some(user.id), ip, true).await;
    let lifetime = if flow.remember {
        app.config.auth.remember_lifetime
    } else {
        app.config.auth.session_lifetime
    };
    let token = match crate::auth::login::create_session(
        app, user.id, lifetime, ip, user_agent, true,
    )
    .await
    {
        Ok(t) => t,
        Err(e) => {
            tracing::error!("cannot create session: {e}");
            return page(
                req,
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "Sign-in is unavailable right now; try again shortly.",
            );
        }
    };
    tracing::info!(user = %user.username, ip = %ip, provider = %p.name, "signed in");
    let mut resp = continue_page(&flow.next);
    if let Some(v) = session_cookie_header(&token, lifetime) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

/// Everything between the callback's arrival and the account: `Err` is why it is refused.
/// `who` is updated to the identity as soon as one is known (for the audit).
async fn check(
    app: &App,
    req: &Request<Incoming>,
    p: &OidcProvider,
    who: &mut String,
) -> Result<(crate::auth::User, Flow), Refused> {
    let bad_request = StatusCode::BAD_REQUEST;
    let flow = match flow::read(app.oidc.key(), req.headers()) {
        Ok(f) if f.provider == p.name => f,
        Ok(f) => {
            return Err(refused(bad_request, "oidc_state_mismatch",
                "This sign-in was started for another provider. Start again from the login page.",
                format!("flow for {}", f.provider)))
        }
        Err(FlowError::Missing) => {
            return Err(refused(bad_request, "oidc_no_flow",
                "No sign-in was started in this browser (or it took more than ten minutes). Start again from the login page.",
                "no flow cookie".into()))
        }
        Err(FlowError::Expired) => {
            return Err(refused(bad_request, "oidc_expired",
                "The sign-in took more than ten minutes. Start again from the login page.",
                "flow expired".into()))
        }
        Err(FlowError::BadSignature) => {
            return Err(refused(bad_request, "oidc_no_flow",
                "This sign-in was not started by this server (or the server restarted since). Start again from the login page.",
                "flow cookie not signed by this server".into()))
        }
    };
    let pairs = query_pairs(req);
    let state_ok = query(&pairs, "state").is_some_and(|s| flow::same_secret(s, &flow.state));
    if !state_ok {
        return Err(refused(
            bad_request,
            "oidc_state_mismatch",
            "The answer from the sign-in provider does not belong to the sign-in started in this browser, so it was refused. Start again from the login page.",
            "state differs".into(),
        ));
    }
    // RFC 9207: a provider that names itself in its answer must be the one this flow went to
    // (with the per-provider callback path and flow cookie, a second defence against mix-ups).
    if let Some(iss) = query(&pairs, "iss").filter(|iss| *iss != p.issuer) {
        return Err(refused(
            bad_request,
            "oidc_wrong_issuer",
            "The answer names another sign-in provider than the one this sign-in went to, so it was refused. Start again from the login page.",
            format!("iss {iss}"),
        ));
    }
    if let Some(error) = query(&pairs, "error") {
        let description = query(&pairs, "error_description").unwrap_or("");
        return Err(refused(
            StatusCode::FORBIDDEN,
            "oidc_provider_refused",
            &format!("The sign-in provider did not sign you in: {error} {description}"),
            format!("provider error {error}: {description}"),
        ));
    }
    let Some(code) = query(&pairs, "code").filter(|c| !c.is_empty()) else {
        return Err(refused(
            bad_request,
            "oidc_no_code",
            "The sign-in provider sent no authorization code.",
            "no code".into(),
        ));
    };
    let unreachable = |e: String| {
        refused(
            StatusCode::BAD_GATEWAY,
            "oidc_provider_unreachable",
            "The sign-in provider cannot be reached right now. Try again in a moment, or sign in with your password.",
            e,
        )
    };
    let meta = app
        .oidc
        .metadata(&p.name, false)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let http = app.oidc.http_fn();
    let redirect_url = RedirectUrl::new(flow.redirect_uri.clone())
        .map_err(|e| unreachable(format!("redirect uri: {e}")))?;
    let token = client(&meta, p)
        .exchange_code(AuthorizationCode::new(code.to_string()))
        .map_err(|e| unreachable(format!("no token endpoint: {e}")))?
        .set_pkce_verifier(PkceCodeVerifier::new(flow.pkce_verifier.clone()))
        .set_redirect_uri(Cow::Owned(redirect_url))
        .request_async(&http)
        .await
        .map_err(|e| {
            refused(
                StatusCode::BAD_GATEWAY,
                "oidc_exchange_failed",
                "The sign-in provider did not accept this sign-in's code. Start again from the login page.",
                super::error_chain(&e),
            )
        })?;
    let Some(id_token) = token.id_token() else {
        return Err(refused(
            StatusCode::BAD_GATEWAY,
            "oidc_invalid_token",
            "The sign-in provider sent no ID token.",
            "no id_token".into(),
        ));
    };
    let nonce = Nonce::new(flow.nonce.clone());
    let verify = |meta: &CoreProviderMetadata| {
        let c = client(meta, p);
        let verifier = c.id_token_verifier().set_allowed_algs(signing_algs());
        id_token.claims(&verifier, &nonce).cloned()
    };
    let claims = match verify(&meta) {
        Err(ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey,
        )) => {
            // A key the provider started using since its keys were read: read them again.
            tracing::info!(provider = %p.name, "an ID token names a signing key not seen before; reading the provider's keys again");
            let fresh = app
                .oidc
                .metadata(&p.name, true)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
            verify(&fresh)
        }
        other => other,
    }
    .map_err(|e| {
        refused(
            StatusCode::FORBIDDEN,
            "oidc_invalid_token",
            "The sign-in provider's ID token did not pass the checks (signature, issuer, audience, expiry, nonce), so it was refused.",
            super::error_chain(&e),
        )
    })?;
    let subject = claims.subject().as_str().to_string();
    let issuer = claims.issuer().as_str().to_string();
    let email = claims.email().map(|e| e.as_str().to_ascii_lowercase());
    let verified_email = email
        .clone()
        .filter(|_| claims.email_verified() == Some(true));
    // Characters, not bytes: an address may hold any letter.
    *who = email
        .clone()
        .unwrap_or_else(|| format!("oidc:{}:{subject}", p.name))
        .chars()
        .take(64)
        .collect();
    if p.has_email_rule() {
        let Some(address) = &verified_email else {
            return Err(refused(
                StatusCode::FORBIDDEN,
                "oidc_email_unverified",
                "The sign-in provider did not vouch for your email address (it is missing or not verified), and this site admits people by address.",
                format!("email {email:?}, email_verified {:?}", claims.email_verified()),
            ));
        };
        if !p.email_allowed(address) {
            return Err(refused(
                StatusCode::FORBIDDEN,
                "oidc_email_not_allowed",
                "Your email address is not among those allowed to sign in here.",
                address.to_string(),
            ));
        }
    }
    let role = p.admin_claim.as_ref().map(|(claim, values)| {
        match claim_values(&id_token.to_string(), claim) {
            found if found.iter().any(|v| values.contains(v)) => Role::Admin,
            _ => Role::User,
        }
    });
    let (provider, create) = (p.name.clone(), p.create_accounts);
    let found = app
        .store
        .call(move |c| {
            let id = Identity {
                provider: &provider,
                issuer: &issuer,
                subject: &subject,
                verified_email: verified_email.as_deref(),
            };
            accounts::sign_in(c, &id, create, role)
        })
        .await
        .map_err(|e| {
            refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "Sign-in is unavailable right now; try again shortly.",
                e.to_string(),
            )
        })?;
    let user = found.map_err(|r| {
        let (code, message) = match r {
            Refusal::NoVerifiedEmail => ("oidc_email_unverified",
                "This identity is not linked to an account here, and the provider did not vouch for an email address to find one by."),
            Refusal::NoAccount => ("oidc_no_account",
                "There is no account here for your email address. Ask an administrator to create one named by it."),
            Refusal::LinkedToAnother => ("oidc_linked_to_another",
                "The account of your email address is already linked to another identity at this provider, so it was refused."),
            Refusal::BadName => ("oidc_bad_name",
                "Your email address cannot be a user name here (letters, digits, . _ - @ only). Ask an administrator to create your account."),
        };
        refused(StatusCode::FORBIDDEN, code, message, format!("{r:?}"))
    })?;
    Ok((user, flow))
}

/// The asymmetric algorithms accepted for ID tokens: what providers sign with. Never `none`, and
/// not the HMAC ones, which would make the client secret a signing key.
fn signing_algs() -> Vec<CoreJwsSigningAlgorithm> {
    use CoreJwsSigningAlgorithm::*;
    vec![
        RsaSsaPkcs1V15Sha256,
        RsaSsaPkcs1V15Sha384,
        RsaSsaPkcs1V15Sha512,
        RsaSsaPssSha256,
        RsaSsaPssSha384,
        RsaSsaPssSha512,
        EcdsaP256Sha256,
        EcdsaP384Sha384,
        EdDsa,
    ]
}

/// The string values of `claim` in a JWT whose signature was verified already: a string, or the
/// strings of a list. Nothing for a missing claim or another shape.
fn claim_values(jwt: &str, claim: &str) -> Vec<String> {
    let payload = jwt.split('.').nth(1).unwrap_or("");
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload) else {
        return Vec::new();
    };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Vec::new();
    };
    match value.get(claim) {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

async fn audit(app: &App, username: &str, user_id: Option<i64>, ip: std::net::IpAddr, ok: bool) {
    crate::auth::login::record_attempt(app, "oidc", username, user_id, ip, ok, "").await;
}

fn no_store(resp: &mut Resp) {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn wants_json<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"))
}

fn html_page(title: &str, head_extra: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"referrer\" content=\"same-origin\">\n{head_extra}\
         <title>{title} · Hermes</title>\n<link rel=\"stylesheet\" href=\"/style.css\">\n</head>\n\
         <body class=\"auth-page\">\n<main class=\"auth\">\n<div class=\"auth-card\">\n{body}</div>\n</main>\n</body>\n</html>\n"
    )
}

/// A refusal: an HTML page with a way back to the login page (JSON `{error, message}` for a
/// client that accepts JSON). The flow cookie goes: each answer ends its flow.
fn page<B>(req: &Request<B>, status: StatusCode, code: &str, message: &str) -> Resp {
    let mut resp = if wants_json(req) {
        response::error(status, code, message)
    } else {
        let body = format!(
            "<h1>Sign-in refused</h1>\n<div class=\"alert\" role=\"alert\" id=\"oidc-error\" data-code=\"{}\">{}</div>\n\
             <p><a class=\"btn btn-primary btn-block\" href=\"/login\">Back to sign-in</a></p>\n",
            crate::html::escape(code),
            crate::html::escape_text(message)
        );
        response::with_body(
            status,
            "text/html; charset=utf-8",
            html_page("Sign-in refused", "", &body),
        )
    };
    resp.headers_mut()
        .append(header::SET_COOKIE, flow::clear_cookie());
    no_store(&mut resp);
    resp
}

/// After a successful callback: a page that moves on to `next` by itself. Not a `303`: the
/// session cookie is `SameSite=Strict`, and a redirect in the chain of navigations the provider
/// started is cross-site, so the browser would leave the new cookie out of that first request.
/// A navigation started by this page is same-site and carries it. No script: a `refresh` meta
/// element, with a link for anyone whose browser ignores it.
fn continue_page(next: &str) -> Resp {
    let next = crate::html::escape(next);
    let head = format!("<meta http-equiv=\"refresh\" content=\"0;url={next}\">\n");
    let body = format!(
        "<h1>Signed in</h1>\n<p><a class=\"btn btn-primary btn-block\" href=\"{next}\" id=\"oidc-continue\">Continue</a></p>\n"
    );
    let mut resp = response::with_body(
        StatusCode::OK,
        "text/html; charset=utf-8",
        html_page("Signed in", &head, &body),
    );
    resp.headers_mut()
        .append(header::SET_COOKIE, flow::clear_cookie());
    no_store(&mut resp);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_values_are_strings_or_lists_of_strings() {
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let jwt = format!(
            "h.{}.s",
            b64(serde_json::json!({"groups": ["a", 1, "b"], "role": "admin", "n": 3}))
        );
        assert_eq!(claim_values(&jwt, "groups"), ["a", "b"]);
        assert_eq!(claim_values(&jwt, "role"), ["admin"]);
        assert!(claim_values(&jwt, "n").is_empty());
        assert!(claim_values(&jwt, "missing").is_empty());
        assert!(claim_values("garbage", "groups").is_empty());
    }
}
