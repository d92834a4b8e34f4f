//! The cache of personal API tokens checked recently (`tokens` checks them and serves their routes),
//! apart from the routes because `App` holds it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::users::User;

/// How long a checked token is trusted without asking the database again. Deleting a token in the
/// page or removing its account forgets it at once; a change by the command line (another process
/// writing the same file) empties the cache within `auth::DB_WATCH_INTERVAL` (see
/// `auth::spawn_upkeep`). This lifetime is only the backstop should that watch ever fail.
const CACHE_TTL: Duration = Duration::from_secs(30);
const CACHE_MAX: usize = 10_000;

/// Recently checked tokens (by hash), so API clients do not cost a database round trip per
/// request (the database is one connection behind a mutex).
///
/// Every forgetting bumps a generation, and a lookup puts its answer in only if no forgetting
/// happened since it started: otherwise a lookup that read the database just before a revocation
/// could put the revoked token back right after the revocation emptied the cache.
#[derive(Default)]
pub(crate) struct TokenCache {
    entries: Mutex<(Entries, u64)>,
}

/// The checked tokens by the SHA-256 of the token.
type Entries = HashMap<[u8; 32], Cached, DigestKeys>;

/// A checked token's user, its id (to forget it when deleted) and when it was checked.
type Cached = (User, i64, Instant);

/// Hashes a key, itself a SHA-256 digest, by its first eight bytes: SipHash over the 32 bytes
/// showed in profiles of proxied requests. Only tokens found in the database are ever put in the
/// cache, so nobody can choose keys to crowd one bucket.
#[derive(Default, Clone, Copy)]
struct DigestKeys;

impl std::hash::BuildHasher for DigestKeys {
    type Hasher = DigestHasher;
    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(0)
    }
}

struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn write(&mut self, bytes: &[u8]) {
        // The array's bytes (its length comes through `write_usize`).
        if let Some(head) = bytes.first_chunk::<8>() {
            self.0 = u64::from_ne_bytes(*head);
        }
    }
    fn write_usize(&mut self, _len: usize) {}
    fn finish(&self) -> u64 {
        self.0
    }
}

impl TokenCache {
    pub(super) fn get(&self, hash: &[u8; 32]) -> Option<User> {
        let map = self.entries.lock().ok()?;
        let (user, _, at) = map.0.get(hash)?;
        (at.elapsed() < CACHE_TTL).then(|| user.clone())
    }

    /// The generation to pass to [`TokenCache::put`], read before asking the database.
    pub(super) fn generation(&self) -> Option<u64> {
        self.entries.lock().ok().map(|m| m.1)
    }

    pub(super) fn put(&self, hash: [u8; 32], user: User, token_id: i64, generation: Option<u64>) {
        if let Ok(mut map) = self.entries.lock() {
            if generation != Some(map.1) {
                return;
            }
            if map.0.len() >= CACHE_MAX {
                map.0.clear();
            }
            map.0.insert(hash, (user, token_id, Instant::now()));
        }
    }

    fn forget_where(&self, gone: impl Fn(&Cached) -> bool) {
        if let Ok(mut map) = self.entries.lock() {
            map.0.retain(|_, c| !gone(c));
            map.1 = map.1.wrapping_add(1);
        }
    }

    pub(super) fn forget(&self, token_id: i64) {
        self.forget_where(|(_, id, _)| *id == token_id);
    }

    /// Forgets every token of one account (removed: its tokens must stop at once).
    pub(crate) fn forget_user(&self, user_id: i64) {
        self.forget_where(|(user, _, _)| user.id == user_id);
    }

    /// Forgets every token: the database was changed by another process, which may have removed
    /// or revoked any of them; the next request of each asks the database again.
    pub(crate) fn clear(&self) {
        self.forget_where(|_| true);
    }
}
