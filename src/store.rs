//! The embedded SQLite database: users, sessions, second factors, login audit, conversations and
//! their messages.
//!
//! One connection behind a mutex; every call runs on tokio's blocking pool so a slow disk never
//! stalls the request threads. The schema is a list of migrations applied in order and recorded in
//! `PRAGMA user_version`, so a newer binary upgrades an older database in place.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("cannot open the database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot create the data directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the database {} exists but holds nothing (no tables): a failed copy or restore, or a \
         disk that filled up? Starting would make a new installation with a new `admin` password. \
         Restore it from a backup; or, to really start afresh, remove it (with any -wal and -shm \
         file beside it) or start once with --init-database",
        path.display()
    )]
    Empty { path: PathBuf },
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("database task failed: {0}")]
    Task(String),
}

/// Each entry upgrades the schema by one version. Append only; never edit a released entry.
const MIGRATIONS: &[&str] = &[
    // 1: accounts and sessions
    "CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('admin','user')),
        created_at INTEGER NOT NULL
    );
    CREATE TABLE sessions (
        token_hash BLOB PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        ip TEXT NOT NULL DEFAULT '',
        user_agent TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX sessions_user ON sessions(user_id);
    CREATE TABLE login_audit (
        id INTEGER PRIMARY KEY,
        at INTEGER NOT NULL,
        username TEXT NOT NULL,
        user_id INTEGER,
        ip TEXT NOT NULL,
        success INTEGER NOT NULL
    );",
    // 2: finding where an account signed in from before (the per-account login limit spares those addresses)
    "CREATE INDEX login_audit_user ON login_audit(user_id, at);",
    // 3: chat conversations, their messages and tool steps; personal API tokens
    "CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        title TEXT NOT NULL,
        hermes_session TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX conversations_user ON conversations(user_id, updated_at);
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('user','assistant')),
        content TEXT NOT NULL,
        images TEXT NOT NULL DEFAULT '[]',
        tool_steps TEXT NOT NULL DEFAULT '[]',
        error TEXT,
        created_at INTEGER NOT NULL,
        UNIQUE (conversation_id, idx)
    );
    CREATE TABLE api_tokens (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        token_hash BLOB NOT NULL UNIQUE,
        prefix TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER
    );
    CREATE INDEX api_tokens_user ON api_tokens(user_id);",
    // 4: the sessions Hermes derived for a conversation's branch turns (sent without a session id),
    // so deleting the conversation can delete them in Hermes too
    "CREATE TABLE hermes_sessions (
        conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        session_id TEXT NOT NULL,
        PRIMARY KEY (conversation_id, session_id)
    ) WITHOUT ROWID;",
    // 5: account ids are never handed out again, and each account has its own Hermes memory scope.
    //
    // Before this, `users.id` was a plain rowid: removing the account with the highest id freed
    // that id for the next account, which then got the removed account's `web:<id>` memory and
    // `api-<id>-...` sessions in Hermes. Now:
    // - `AUTOINCREMENT` never reuses an id once this sequence is past it. The sequence starts
    //   above every user id any table still mentions (sign-in audit rows outlive their account).
    // - That is not enough on its own: an id freed before this migration may have left no trace
    //   here at all, while Hermes still holds its memory. So what goes to Hermes is `scope`:
    //   existing accounts keep their id (`web:<id>`, `api-<id>-...`: their memory stays theirs);
    //   accounts created from now on get `u<id>-<96 random bits>` (see `users::create_user`),
    //   which no earlier version ever sent (those scopes are all digits), which no later account
    //   of this database repeats (UNIQUE, and the id part never comes back), and which does not
    //   repeat across installations either (a new database against the same Hermes).
    // Rebuilding the table is SQLite's way to change a column's kind; `Store::prepare` runs
    // migrations with foreign keys off so dropping the old table does not cascade.
    "CREATE TABLE users_v5 (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        username TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('admin','user')),
        created_at INTEGER NOT NULL,
        scope TEXT NOT NULL UNIQUE
    );
    INSERT INTO users_v5 (id, username, password_hash, role, created_at, scope)
        SELECT id, username, password_hash, role, created_at, CAST(id AS TEXT) FROM users;
    DROP TABLE users;
    ALTER TABLE users_v5 RENAME TO users;
    DELETE FROM sqlite_sequence WHERE name IN ('users', 'users_v5');
    INSERT INTO sqlite_sequence (name, seq) SELECT 'users', COALESCE(MAX(m), 0) FROM (
        SELECT MAX(id) AS m FROM users
        UNION ALL SELECT MAX(user_id) FROM sessions
        UNION ALL SELECT MAX(user_id) FROM login_audit
        UNION ALL SELECT MAX(user_id) FROM conversations
        UNION ALL SELECT MAX(user_id) FROM api_tokens
    );
    CREATE INDEX login_audit_at ON login_audit(at);",
    // 6: an answer being written by a run that the server owns ('running'; its text so far is
    // stored about once a second), so one left running by a crash is found and closed at start.
    "ALTER TABLE messages ADD COLUMN state TEXT NOT NULL DEFAULT 'done'
        CHECK (state IN ('running','done'));
    CREATE INDEX messages_running ON messages(state) WHERE state = 'running';",
    // 7: single sign-on: which account a provider's identity is. An identity is the issuer and its
    // subject (`sub`, stable at the provider), never the email address, which the person (or an
    // administrator there) can change: so a later address cannot move the identity to another
    // account. One identity per account and issuer, so a second identity at the same provider
    // cannot take over an account already linked.
    "CREATE TABLE oidc_links (
        issuer TEXT NOT NULL,
        subject TEXT NOT NULL,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        provider TEXT NOT NULL,
        email TEXT,
        created_at INTEGER NOT NULL,
        last_used INTEGER NOT NULL,
        PRIMARY KEY (issuer, subject),
        UNIQUE (issuer, user_id)
    ) WITHOUT ROWID;
    CREATE INDEX oidc_links_user ON oidc_links(user_id);",
    // 8: second factors. A TOTP secret per account (kept in the clear: checking a code needs it),
    // pending until a first code confirms it; `last_step` is the time step of the last code
    // accepted, so no code is accepted twice. Recovery codes are stored as SHA-256 hashes (they
    // are 80 random bits, like session tokens) and marked when used. `detail` says why a sign-in
    // attempt failed or how it passed (`code_required`, `wrong_code`, `totp`, ...).
    "CREATE TABLE totp (
        user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
        secret BLOB NOT NULL,
        confirmed_at INTEGER,
        last_step INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE recovery_codes (
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        code_hash BLOB NOT NULL,
        used_at INTEGER,
        PRIMARY KEY (user_id, code_hash)
    ) WITHOUT ROWID;
    ALTER TABLE login_audit ADD COLUMN detail TEXT NOT NULL DEFAULT '';",
    // 9: passkeys (WebAuthn). `passkey` is webauthn-rs's stored form of the credential (its id,
    // public key, signature counter); `cred_id` is that id again, unique across all accounts.
    // `passkey_handles` holds each account's random WebAuthn user handle. The sign-in audit says
    // how someone signed in.
    "CREATE TABLE passkey_handles (
        user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
        handle TEXT NOT NULL UNIQUE
    );
    CREATE TABLE passkeys (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        cred_id BLOB NOT NULL UNIQUE,
        rp_id TEXT NOT NULL,
        passkey TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER
    );
    CREATE INDEX passkeys_user ON passkeys(user_id);
    ALTER TABLE login_audit ADD COLUMN method TEXT NOT NULL DEFAULT 'password';",
    // 10: whether a session was signed in with more than a password (a one-time or recovery code,
    // a passkey, a single sign-on provider): what `auth.require_second_factor` asks of a session.
    // Sessions made before are taken as password-only.
    "ALTER TABLE sessions ADD COLUMN second_factor INTEGER NOT NULL DEFAULT 0;",
    // 11: full-text search over the user's conversations (`chat::search`). Message text is indexed
    // by an external-content FTS5 table (the text is not stored twice) that triggers keep in step
    // with every insert, update of the text and delete, cascades from a deleted conversation or
    // account included. Titles go into a small table of their own that keeps its own copy: an
    // external-content table needs a stable integer row id, and a conversation's (a TEXT key) may
    // be renumbered by VACUUM. Existing rows are indexed here once.
    "CREATE VIRTUAL TABLE messages_fts USING fts5(
        content, content = 'messages', content_rowid = 'id',
        tokenize = 'unicode61 remove_diacritics 2'
    );
    INSERT INTO messages_fts (messages_fts) VALUES ('rebuild');
    CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
        INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content);
    END;
    CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
    END;
    CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN
        INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
        INSERT INTO messages_fts (rowid, content) VALUES (new.id, new.content);
    END;
    CREATE VIRTUAL TABLE conversations_fts USING fts5(
        title, conversation_id UNINDEXED,
        tokenize = 'unicode61 remove_diacritics 2'
    );
    INSERT INTO conversations_fts (title, conversation_id) SELECT title, id FROM conversations;
    CREATE TRIGGER conversations_fts_insert AFTER INSERT ON conversations BEGIN
        INSERT INTO conversations_fts (title, conversation_id) VALUES (new.title, new.id);
    END;
    CREATE TRIGGER conversations_fts_delete AFTER DELETE ON conversations BEGIN
        DELETE FROM conversations_fts WHERE conversation_id = old.id;
    END;
    CREATE TRIGGER conversations_fts_update AFTER UPDATE OF title ON conversations BEGIN
        UPDATE conversations_fts SET title = new.title WHERE conversation_id = old.id;
    END;",
    // 12: one-time links that let a person set their password: an invitation to a new account or
    // a reset of an existing one. Only the SHA-256 of the link's 256-bit token is kept (like a
    // session's), so a copy of the database opens no account; `used_at` makes it single use.
    "CREATE TABLE password_links (
        token_hash BLOB PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        purpose TEXT NOT NULL CHECK (purpose IN ('invite','reset')),
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX password_links_user ON password_links(user_id);",
    // 13: Web Push (src/push/): the server's VAPID key pair (one row), and each device's
    // subscription, one per endpoint; an account's go with it.
    "CREATE TABLE push_vapid (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        pkcs8 BLOB NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE push_subscriptions (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        endpoint TEXT NOT NULL UNIQUE,
        p256dh BLOB NOT NULL,
        auth BLOB NOT NULL,
        include_text INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX push_subscriptions_user ON push_subscriptions (user_id);",
];

#[derive(Clone)]
pub(crate) struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens (creating if needed) `<data_dir>/hermes-edge.db` and brings its schema up to date.
    ///
    /// A file that exists but holds no tables is refused ([`StoreError::Empty`]) unless `init` is
    /// set: treated as new, it would silently start a new installation (a new `admin` with a new
    /// password) over what was surely meant to be the old one's data. No file at all is a new
    /// installation, as always.
    pub(crate) fn open_with(data_dir: &Path, init: bool) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Dir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join("hermes-edge.db");
        let existed = path.exists();
        let conn = Connection::open(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        if existed && !init {
            // Before any pragma below writes a header into an empty file.
            let empty = conn
                .query_row(
                    "SELECT (SELECT COUNT(*) FROM sqlite_master) = 0 AND user_version = 0
                     FROM pragma_user_version",
                    [],
                    |r| r.get::<_, bool>(0),
                )
                .map_err(|source| StoreError::Open {
                    path: path.clone(),
                    source,
                })?;
            if empty {
                return Err(StoreError::Empty { path });
            }
        }
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        }
        Self::prepare(conn).map_err(|source| StoreError::Open { path, source })
    }

    /// [`Store::open_with`] without `--init-database`.
    pub(crate) fn open(data_dir: &Path) -> Result<Store, StoreError> {
        Self::open_with(data_dir, false)
    }

    fn prepare(mut conn: Connection) -> Result<Store, rusqlite::Error> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Off while migrating: a migration that rebuilds a table drops the old one, which with
        // foreign keys on would delete every row that refers to it. (The pragma cannot change
        // inside a transaction, so it is set around them.)
        conn.pragma_update(None, "foreign_keys", "OFF")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
            // IMMEDIATE: a command-line tool opening the same file at the same moment waits
            // (busy timeout) instead of running the same migration alongside.
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let now: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
            if now > i as i64 {
                // Another process migrated while this one waited.
                continue;
            }
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        conn.pragma_update(None, "foreign_keys", "ON")?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    pub(crate) async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        F: FnOnce(&mut Connection) -> Result<R, rusqlite::Error> + Send + 'static,
        R: Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Task("database lock poisoned".into()))?;
            f(&mut guard).map_err(StoreError::from)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Runs `f` on the current thread (command-line tools, start-up).
    pub(crate) fn call_blocking<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, rusqlite::Error>,
    ) -> Result<R, StoreError> {
        let mut guard = self
            .conn
            .lock()
            .map_err(|_| StoreError::Task("database lock poisoned".into()))?;
        f(&mut guard).map_err(StoreError::from)
    }
}

/// Milliseconds since the Unix epoch (chat times, which need a finer order than seconds).
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A Unix time as a calendar date and time in UTC (the epoch for times out of range).
fn civil(secs: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn ymd_hms(t: time::OffsetDateTime, date_time_sep: char) -> String {
    format!(
        "{:04}-{:02}-{:02}{date_time_sep}{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// RFC 3339 (UTC, milliseconds) for a time in milliseconds since the Unix epoch.
pub(crate) fn rfc3339_ms(ms: i64) -> String {
    let t = civil(ms.div_euclid(1000));
    format!("{}.{:03}Z", ymd_hms(t, 'T'), ms.rem_euclid(1000))
}

/// Seconds since the Unix epoch as an RFC 3339 UTC time (`2025-01-31T08:05:09Z`).
pub(crate) fn rfc3339(secs: i64) -> String {
    format!("{}Z", ymd_hms(civil(secs), 'T'))
}

/// Seconds since the Unix epoch for people reading a console: `2026-11-24 10:19:24 UTC`.
pub(crate) fn human_utc(secs: i64) -> String {
    format!("{} UTC", ymd_hms(civil(secs), ' '))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_735_689_599), "2024-12-31T23:59:59Z");
        assert_eq!(rfc3339(1_709_164_800 + 3_723), "2024-02-29T01:02:03Z");
        assert_eq!(human_utc(1_709_164_800 + 3_723), "2024-02-29 01:02:03 UTC");
        assert_eq!(rfc3339_ms(1_709_164_800_007), "2024-02-29T00:00:00.007Z");
    }

    #[test]
    fn the_search_index_is_filled_from_existing_rows_and_follows_changes() {
        // A database of the version before the index, with a conversation in it.
        let conn = Connection::open_in_memory().unwrap();
        for sql in &MIGRATIONS[..6] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "PRAGMA user_version = 6;
             INSERT INTO users (username, password_hash, role, created_at, scope)
                 VALUES ('a', 'x', 'user', 0, 's');
             INSERT INTO conversations VALUES ('c1', 1, 'Old albatross', 'web-c1', 0, 0);
             INSERT INTO messages (conversation_id, idx, role, content, created_at)
                 VALUES ('c1', 0, 'user', 'about kittiwakes', 0);",
        )
        .unwrap();
        let store = Store::prepare(conn).unwrap();
        let count = |q: &'static str| {
            store
                .call_blocking(move |c| {
                    c.query_row(
                        "SELECT (SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?1)
                              + (SELECT count(*) FROM conversations_fts WHERE conversations_fts MATCH ?1)",
                        [q],
                        |r| r.get::<_, i64>(0),
                    )
                })
                .unwrap()
        };
        assert_eq!((count("kittiwakes"), count("albatross")), (1, 1));
        store
            .call_blocking(|c| {
                c.execute_batch(
                    "UPDATE messages SET content = 'about puffins' WHERE idx = 0;
                     UPDATE conversations SET title = 'New gannet';",
                )
            })
            .unwrap();
        assert_eq!((count("kittiwakes"), count("puffins")), (0, 1));
        assert_eq!((count("albatross"), count("gannet")), (0, 1));
        // Deleting the account cascades to the conversation and its messages, and to the index.
        store
            .call_blocking(|c| c.execute_batch("DELETE FROM users;"))
            .unwrap();
        assert_eq!((count("puffins"), count("gannet")), (0, 0));
        let rows = store
            .call_blocking(|c| {
                c.query_row("SELECT count(*) FROM messages_fts_docsize", [], |r| {
                    r.get::<_, i64>(0)
                })
            })
            .unwrap();
        assert_eq!(rows, 0);
    }
}
