//! Which account a provider's identity signs in to.
//!
//! An identity is the issuer and its subject (`sub`), linked to one account in `oidc_links`. At
//! an identity's first sign-in it is linked to the account whose user name is its verified email
//! address (an administrator who names an account `alice@example.com` trusts the provider with
//! that address), or, with `create_accounts`, to a new account of that name. After that the link
//! alone decides: an email address changed at the provider changes nothing here, and another
//! identity claiming an address whose account is already linked at this issuer is refused.
//! Accounts made here have no password (`!`, which matches none); an administrator can set one.

use rusqlite::{params, Connection, OptionalExtension};

use crate::auth::users::{new_scope, valid_username, Role, User};
use crate::store::now;

/// A provider's identity, from a verified ID token.
pub(crate) struct Identity<'a> {
    pub provider: &'a str,
    pub issuer: &'a str,
    pub subject: &'a str,
    /// The email address, only when the provider says it is verified; lower case.
    pub verified_email: Option<&'a str>,
}

/// Why an identity signs in to no account.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Not linked, and no verified email address to find or name an account by.
    NoVerifiedEmail,
    /// No account of that name, and accounts are not created for this provider.
    NoAccount,
    /// The account of that name is linked to another identity of the same issuer.
    LinkedToAnother,
    /// The address is not a valid user name (it has characters user names do not).
    BadName,
}

/// The password hash of accounts made by single sign-on: not a hash, so no password matches.
const NO_PASSWORD: &str = "!";

/// Finds (or links, or makes) the account of `id`. `role` is the role the provider's claim
/// gives, when `admin_claim` is configured: it is applied at every sign-in.
pub(crate) fn sign_in(
    c: &mut Connection,
    id: &Identity<'_>,
    create: bool,
    role: Option<Role>,
) -> Result<Result<User, Refusal>, rusqlite::Error> {
    let tx = c.transaction()?;
    let now = now();
    let linked = tx
        .query_row(
            "SELECT u.id, u.username, u.role, u.scope FROM oidc_links l JOIN users u ON u.id = l.user_id
             WHERE l.issuer = ?1 AND l.subject = ?2",
            params![id.issuer, id.subject],
            |r| User::from_row(r, 0),
        )
        .optional()?;
    let mut user = match linked {
        Some(user) => {
            tx.execute(
                "UPDATE oidc_links SET last_used = ?1, email = ?2, provider = ?3
                 WHERE issuer = ?4 AND subject = ?5",
                params![now, id.verified_email, id.provider, id.issuer, id.subject],
            )?;
            user
        }
        None => {
            let Some(email) = id.verified_email else {
                return Ok(Err(Refusal::NoVerifiedEmail));
            };
            let existing = tx
                .query_row(
                    "SELECT id, username, role, scope FROM users WHERE username = ?1",
                    params![email],
                    |r| User::from_row(r, 0),
                )
                .optional()?;
            let user = match existing {
                Some(user) => {
                    let taken: bool = tx.query_row(
                        "SELECT EXISTS (SELECT 1 FROM oidc_links WHERE issuer = ?1 AND user_id = ?2)",
                        params![id.issuer, user.id],
                        |r| r.get(0),
                    )?;
                    if taken {
                        return Ok(Err(Refusal::LinkedToAnother));
                    }
                    user
                }
                None if !create => return Ok(Err(Refusal::NoAccount)),
                None if !valid_username(email) => return Ok(Err(Refusal::BadName)),
                None => {
                    let role = role.unwrap_or(Role::User);
                    tx.execute(
                        "INSERT INTO users (username, password_hash, role, created_at, scope)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![email, NO_PASSWORD, role.as_str(), now, new_scope(0)],
                    )?;
                    let uid = tx.last_insert_rowid();
                    let scope = new_scope(uid);
                    tx.execute(
                        "UPDATE users SET scope = ?1 WHERE id = ?2",
                        params![scope, uid],
                    )?;
                    tracing::info!(user = %email, provider = %id.provider, "account created by single sign-on");
                    User {
                        id: uid,
                        username: email.to_string(),
                        role,
                        scope: scope.into(),
                        second_factor: false,
                    }
                }
            };
            tx.execute(
                "INSERT INTO oidc_links (issuer, subject, user_id, provider, email, created_at, last_used)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                params![id.issuer, id.subject, user.id, id.provider, email, now],
            )?;
            tracing::info!(user = %user.username, provider = %id.provider, "account linked to a single sign-on identity");
            user
        }
    };
    if let Some(role) = role {
        if role != user.role {
            tx.execute(
                "UPDATE users SET role = ?1 WHERE id = ?2",
                params![role.as_str(), user.id],
            )?;
            tracing::info!(user = %user.username, role = role.as_str(), provider = %id.provider,
                "role set by the single sign-on provider's claim");
            user.role = role;
        }
    }
    tx.commit()?;
    Ok(Ok(user))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident<'a>(sub: &'a str, email: Option<&'a str>) -> Identity<'a> {
        Identity {
            provider: "corp",
            issuer: "https://id.example.com",
            subject: sub,
            verified_email: email,
        }
    }

    #[test]
    fn identities_link_once_and_an_email_change_moves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path()).unwrap();
        crate::auth::users::create_user(&store, "alice@example.com", "long enough", Role::User)
            .unwrap();
        crate::auth::users::create_user(&store, "bob@example.com", "long enough", Role::User)
            .unwrap();
        store
            .call_blocking(|c| {
                // Not created when not allowed; created (as a user) when allowed.
                assert!(matches!(
                    sign_in(c, &ident("c", Some("carol@example.com")), false, None)?,
                    Err(Refusal::NoAccount)
                ));
                let carol =
                    sign_in(c, &ident("c", Some("carol@example.com")), true, None)?.unwrap();
                assert_eq!(
                    (carol.username.as_str(), carol.role),
                    ("carol@example.com", Role::User)
                );
                assert!(!crate::auth::users::verify_password("!", NO_PASSWORD));
                // First sign-in links by verified address; later ones by the subject alone.
                let alice =
                    sign_in(c, &ident("a", Some("alice@example.com")), false, None)?.unwrap();
                assert_eq!(alice.username, "alice@example.com");
                let again = sign_in(c, &ident("a", Some("bob@example.com")), false, None)?.unwrap();
                assert_eq!(
                    again.id, alice.id,
                    "a changed address stays on its own account"
                );
                let again = sign_in(c, &ident("a", None), false, None)?.unwrap();
                assert_eq!(again.id, alice.id);
                // Another identity with alice's address cannot take her account.
                assert!(matches!(
                    sign_in(c, &ident("m", Some("alice@example.com")), true, None)?,
                    Err(Refusal::LinkedToAnother)
                ));
                assert!(matches!(
                    sign_in(c, &ident("x", None), true, None)?,
                    Err(Refusal::NoVerifiedEmail)
                ));
                assert!(matches!(
                    sign_in(c, &ident("y", Some("a+b@example.com")), true, None)?,
                    Err(Refusal::BadName)
                ));
                // The claim's role is applied at each sign-in, both ways.
                let bob = sign_in(
                    c,
                    &ident("b", Some("bob@example.com")),
                    false,
                    Some(Role::Admin),
                )?
                .unwrap();
                assert_eq!(bob.role, Role::Admin);
                let bob = sign_in(c, &ident("b", None), false, Some(Role::User))?.unwrap();
                assert_eq!(bob.role, Role::User);
                Ok(())
            })
            .unwrap();
    }
}
