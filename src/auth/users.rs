//! Accounts: argon2id password hashes, roles, and the first-run `admin`.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use rusqlite::{params, OptionalExtension};

use crate::response::Resp;
use crate::store::{now, Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Role {
    Admin,
    User,
}

impl Role {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }
    pub(crate) fn parse(text: &str) -> Option<Role> {
        match text {
            "admin" => Some(Role::Admin),
            "user" => Some(Role::User),
            _ => None,
        }
    }
}

/// A signed-in person.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct User {
    pub id: i64,
    pub username: String,
    pub role: Role,
    /// What names this account in Hermes: its memory is `web:<scope>`, its API sessions
    /// `api-<scope>-...`. Never the same for two accounts, even after one is removed (see
    /// migration 5 in `store.rs`). Shared, since a `User` is cloned for each API request.
    #[serde(skip)]
    pub scope: std::sync::Arc<str>,
    /// This request's session was signed in with more than a password: a one-time or recovery
    /// code, a passkey, or a single sign-on provider (`sessions.second_factor`). What
    /// `auth.require_second_factor` asks of a session.
    #[serde(skip)]
    pub second_factor: bool,
}

impl User {
    /// A user from four columns of a row, `id, username, role, scope`, starting at column `at`.
    pub(crate) fn from_row(r: &rusqlite::Row<'_>, at: usize) -> Result<User, rusqlite::Error> {
        let role: String = r.get(at + 2)?;
        Ok(User {
            id: r.get(at)?,
            username: r.get(at + 1)?,
            role: Role::parse(&role).unwrap_or(Role::User),
            scope: r.get::<_, String>(at + 3)?.into(),
            second_factor: false,
        })
    }
}

/// A memory scope no account has had: `u<id>-<96 random bits in hex>`. The `u` keeps it apart
/// from the all-digit scopes of accounts made before migration 5 (whose ids may since have been
/// freed and, with no trace left, handed out again); the id, never reused from now on, keeps it
/// apart from every later account of this database; the random part from accounts of another
/// database (a reinstallation) talking to the same Hermes. Only `[0-9a-z-]`: it goes into a header,
/// a session id and a JSON string unescaped.
pub(crate) fn new_scope(id: i64) -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("u{id}-{}", hex::encode(bytes))
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum UserError {
    #[error("a user named `{0}` already exists")]
    Exists(String),
    #[error("no user named `{0}`")]
    Unknown(String),
    #[error("user names are 1 to 64 letters, digits, `.`, `_`, `-` or `@`; `{0}` is not")]
    BadName(String),
    #[error("passwords must be at least 8 characters")]
    WeakPassword,
    #[error("`{0}` is the only administrator; make another account an administrator first")]
    LastAdmin(String),
    #[error("cannot hash the password: {0}")]
    Hash(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub(crate) fn valid_username(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

pub(crate) fn hash_password(password: &str) -> Result<String, UserError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| UserError::Hash(e.to_string()))
}

/// Checks a password against a stored hash; a malformed hash is a mismatch.
pub(crate) fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A hash of a random password, verified against when the user is unknown, so an unknown
/// name and a wrong password take the same time.
pub(crate) fn decoy_hash() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    hash_password(&hex::encode(bytes)).unwrap_or_default()
}

pub(crate) fn random_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    (0..20)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

pub(crate) fn create_user(
    store: &Store,
    username: &str,
    password: &str,
    role: Role,
) -> Result<User, UserError> {
    if !valid_username(username) {
        return Err(UserError::BadName(username.to_string()));
    }
    if password.chars().count() < 8 {
        return Err(UserError::WeakPassword);
    }
    let hash = hash_password(password)?;
    insert_user(store, username, &hash, role)
}

/// Adds an account with this password hash (`NO_PASSWORD` for one invited to set its own).
pub(crate) fn insert_user(
    store: &Store,
    username: &str,
    hash: &str,
    role: Role,
) -> Result<User, UserError> {
    if !valid_username(username) {
        return Err(UserError::BadName(username.to_string()));
    }
    let name = username.to_string();
    let made = store.call_blocking(|c| {
        let tx = c.transaction()?;
        // The scope needs the id, known only once the row is in: a placeholder that is unique
        // (the random part alone) goes in first, within the same transaction.
        let placeholder = new_scope(0);
        tx.execute(
            "INSERT OR IGNORE INTO users (username, password_hash, role, created_at, scope)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![name, hash, role.as_str(), now(), placeholder],
        )?;
        if tx.changes() == 0 {
            return Ok(None);
        }
        let id = tx.last_insert_rowid();
        let scope = new_scope(id);
        tx.execute(
            "UPDATE users SET scope = ?1 WHERE id = ?2",
            params![scope, id],
        )?;
        tx.commit()?;
        Ok(Some((id, scope)))
    })?;
    match made {
        Some((id, scope)) => Ok(User {
            id,
            username: username.to_string(),
            role,
            scope: scope.into(),
            second_factor: false,
        }),
        None => Err(UserError::Exists(username.to_string())),
    }
}

/// Sets a new password; signs the account out everywhere and revokes its personal API tokens.
///
/// A password is changed here by an administrator (the command line), most often because the
/// old one may be known to someone else, who may then have made a token with it: a token keeps
/// working after a password change only until someone notices. So the tokens go too, as the
/// sessions do, and the owner makes new ones once signed in again. Returns how many tokens went.
pub(crate) fn set_password(
    store: &Store,
    username: &str,
    password: &str,
) -> Result<usize, UserError> {
    if password.chars().count() < 8 {
        return Err(UserError::WeakPassword);
    }
    let hash = hash_password(password)?;
    reset_password_hash(store, username, &hash)
}

/// [`set_password`] with the hash made already (`NO_PASSWORD` when a reset link is to set the
/// next one): the same effects. Returns how many API tokens went.
pub(crate) fn reset_password_hash(
    store: &Store,
    username: &str,
    hash: &str,
) -> Result<usize, UserError> {
    let name = username.to_string();
    let changed = store.call_blocking(|c| {
        let tx = c.transaction()?;
        let id: Option<i64> = tx
            .query_row(
                "SELECT id FROM users WHERE username = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?;
        let Some(id) = id else {
            return Ok(None);
        };
        let tokens = replace_password(&tx, id, hash)?;
        tx.commit()?;
        Ok(Some(tokens))
    })?;
    changed.ok_or_else(|| UserError::Unknown(username.to_string()))
}

/// Within a transaction: the account's new password hash; every session of it ends, its API
/// tokens are revoked and its unused password links are void. What every password reset does
/// (the command line, the admin page, a used invitation or reset link). Returns how many tokens
/// went.
pub(crate) fn replace_password(
    tx: &rusqlite::Transaction<'_>,
    user_id: i64,
    hash: &str,
) -> Result<usize, rusqlite::Error> {
    tx.execute(
        "UPDATE users SET password_hash = ?1 WHERE id = ?2",
        params![hash, user_id],
    )?;
    // A new password signs every device out.
    tx.execute("DELETE FROM sessions WHERE user_id = ?1", params![user_id])?;
    let tokens = tx.execute(
        "DELETE FROM api_tokens WHERE user_id = ?1",
        params![user_id],
    )?;
    tx.execute(
        "DELETE FROM password_links WHERE user_id = ?1 AND used_at IS NULL",
        params![user_id],
    )?;
    Ok(tokens)
}

/// The password hash of accounts without a password (single sign-on, an invitation not yet
/// used): not a hash, so no password matches it.
pub(crate) const NO_PASSWORD: &str = "!";

/// True when `hash` is a real password hash (the account can sign in with a password).
pub(crate) fn has_password(hash: &str) -> bool {
    hash.starts_with('$')
}

/// The signed-in user's own password change, once the current one was checked: the new hash goes
/// in and every other session of the account ends; `keep` (the hash of this session's token)
/// stays signed in. API tokens stay: the owner changed the password, nobody else.
pub(crate) fn change_own_password(
    c: &mut rusqlite::Connection,
    user_id: i64,
    new_hash: &str,
    keep: &[u8],
) -> Result<usize, rusqlite::Error> {
    let tx = c.transaction()?;
    tx.execute(
        "UPDATE users SET password_hash = ?1 WHERE id = ?2",
        params![new_hash, user_id],
    )?;
    let ended = tx.execute(
        "DELETE FROM sessions WHERE user_id = ?1 AND token_hash <> ?2",
        params![user_id, keep],
    )?;
    tx.execute(
        "DELETE FROM password_links WHERE user_id = ?1 AND used_at IS NULL",
        params![user_id],
    )?;
    tx.commit()?;
    Ok(ended)
}

/// Gives the account `username` the role `role`. The last administrator cannot become a user, so
/// the site always keeps someone who can manage it. Shared by `hermes-edge user role` and
/// `POST /api/admin/users/{name}/role`.
pub(crate) fn set_role(store: &Store, username: &str, role: Role) -> Result<(), UserError> {
    let name = username.to_string();
    let outcome = store.call_blocking(|c| {
        let tx = c.transaction()?;
        let current: Option<String> = tx
            .query_row(
                "SELECT role FROM users WHERE username = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?;
        let Some(current) = current else {
            return Ok(Err(UserError::Unknown(name.clone())));
        };
        if current == "admin" && role == Role::User {
            let admins: i64 =
                tx.query_row("SELECT COUNT(*) FROM users WHERE role = 'admin'", [], |r| {
                    r.get(0)
                })?;
            if admins <= 1 {
                return Ok(Err(UserError::LastAdmin(name.clone())));
            }
        }
        tx.execute(
            "UPDATE users SET role = ?1 WHERE username = ?2",
            params![role.as_str(), name],
        )?;
        tx.commit()?;
        Ok(Ok(()))
    })?;
    outcome
}

/// Deletes the account with its sessions, API tokens, conversations and links; returns its id.
/// The last administrator cannot be removed, so the site always keeps someone who can manage
/// it. Shared by `hermes-edge user remove` and `DELETE /api/admin/users/{name}`.
pub(crate) fn remove_user(store: &Store, username: &str) -> Result<i64, UserError> {
    let name = username.to_string();
    let outcome = store.call_blocking(|c| {
        let tx = c.transaction()?;
        let found: Option<(i64, String)> = tx
            .query_row(
                "SELECT id, role FROM users WHERE username = ?1",
                params![name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((id, role)) = found else {
            return Ok(Err(UserError::Unknown(name.clone())));
        };
        if role == "admin" {
            let admins: i64 =
                tx.query_row("SELECT COUNT(*) FROM users WHERE role = 'admin'", [], |r| {
                    r.get(0)
                })?;
            if admins <= 1 {
                return Ok(Err(UserError::LastAdmin(name.clone())));
            }
        }
        tx.execute("DELETE FROM users WHERE id = ?1", params![id])?;
        tx.commit()?;
        Ok(Ok(id))
    })?;
    outcome
}

pub(crate) fn list_users(store: &Store) -> Result<Vec<(User, i64)>, UserError> {
    Ok(store.call_blocking(|c| {
        let mut st =
            c.prepare("SELECT id, username, role, scope, created_at FROM users ORDER BY username")?;
        let rows = st.query_map([], |r| Ok((User::from_row(r, 0)?, r.get::<_, i64>(4)?)))?;
        rows.collect()
    })?)
}

/// The user and their password hash, by name.
pub(crate) fn find_for_login(
    c: &rusqlite::Connection,
    username: &str,
) -> Result<Option<(User, String)>, rusqlite::Error> {
    c.query_row(
        "SELECT id, username, role, scope, password_hash FROM users WHERE username = ?1",
        params![username],
        |r| Ok((User::from_row(r, 0)?, r.get(4)?)),
    )
    .optional()
}

/// On a database with no users, creates `admin` with `HERMES_EDGE_ADMIN_PASSWORD` or a random
/// password, which is returned so it can be printed once.
pub(crate) fn ensure_first_admin(store: &Store) -> Result<Option<(String, bool)>, UserError> {
    let count: i64 =
        store.call_blocking(|c| c.query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0)))?;
    if count > 0 {
        return Ok(None);
    }
    let (password, from_env) = match std::env::var("HERMES_EDGE_ADMIN_PASSWORD") {
        Ok(p) if !p.is_empty() => (p, true),
        _ => (random_password(), false),
    };
    create_user(store, "admin", &password, Role::Admin)?;
    Ok(Some((password, from_env)))
}

/// The user name a response was served to, for the access log.
#[derive(Clone)]
pub(crate) struct LogUser(pub String);

/// `resp` marked with the user's name for the access log, when the access log is written (the
/// name's copy and the response's extension map are two allocations per request otherwise).
pub(crate) fn with_user(mut resp: Resp, user: &User) -> Resp {
    if tracing::enabled!(target: "access", tracing::Level::INFO) {
        resp.extensions_mut().insert(LogUser(user.username.clone()));
    }
    resp
}
