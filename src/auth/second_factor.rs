//! Second factors: one-time codes from an authenticator app (TOTP, RFC 6238: SHA-1, 6 digits,
//! 30-second steps, one step of clock skew either way) and single-use recovery codes.
//!
//! What the rest of the server asks is kind-neutral: [`enrolled`] (does this account have any
//! second factor?) and [`verify_code`] (does this code prove it?). A passkey joins by counting in
//! `enrolled`; the login and the policy gate need no change for it.
//!
//! Every function takes a `rusqlite::Connection`, so the server (`Store::call`) and the command
//! line (`Store::call_blocking`) share them; each that changes state runs in one transaction, so
//! two requests with the same code cannot both pass.

use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};
use totp_rs::{Algorithm, TOTP};

use crate::store::now;

/// RFC 6238's step; what every authenticator app uses by default.
const STEP_SECS: u64 = 30;
const DIGITS: usize = 6;
/// 160 bits, the HMAC-SHA-1 key size RFC 4226 recommends.
const SECRET_BYTES: usize = 20;
/// How many recovery codes an enrolment gives (each works once).
pub(crate) const RECOVERY_CODES: usize = 10;
/// Unambiguous lower-case letters and digits (no 0/o, 1/l/i): 31 symbols, so 16 of them are
/// about 79 random bits, beyond offline guessing of their SHA-256 even from a stolen database.
const RECOVERY_ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";
const RECOVERY_LEN: usize = 16;
/// The name authenticator apps show above the code.
const ISSUER: &str = "Hermes";

/// How a code proved the second factor (written to the sign-in audit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proof {
    Totp,
    RecoveryCode,
}

impl Proof {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Proof::Totp => "totp",
            Proof::RecoveryCode => "recovery_code",
        }
    }
}

/// What an account has, for the account page.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Status {
    /// A confirmed authenticator app.
    pub totp: bool,
    /// An enrolment started and not yet confirmed.
    pub pending: bool,
    pub recovery_codes_left: i64,
}

/// A new TOTP secret and what an authenticator app needs to take it.
pub(crate) struct Enrolment {
    /// The secret in base32, for typing in by hand.
    pub secret: String,
    /// `otpauth://totp/Hermes:NAME?secret=...&issuer=Hermes`, what the QR code holds.
    pub uri: String,
}

fn totp(secret: Vec<u8>, username: &str) -> Option<TOTP> {
    // The label must not hold `:`; user names cannot (see `users::valid_username`).
    TOTP::new(
        Algorithm::SHA1,
        DIGITS,
        1,
        STEP_SECS,
        secret,
        Some(ISSUER.to_string()),
        username.replace(':', "_"),
    )
    .ok()
}

fn new_secret() -> Vec<u8> {
    use rand::RngCore;
    let mut bytes = vec![0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

fn enrolment(secret: Vec<u8>, username: &str) -> Option<Enrolment> {
    let t = totp(secret, username)?;
    Some(Enrolment {
        secret: t.get_secret_base32(),
        uri: t.get_url(),
    })
}

/// Equal without an early exit: how long a comparison takes says nothing about the code.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A code as typed, reduced to what counts: spaces and dashes dropped, lower case.
fn normalise(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_lowercase)
        .take(64)
        .collect()
}

/// The time step (within one either side of `at`) whose code `code` is, if any, and later than
/// `after`: a code already accepted, or one older than it, is refused.
fn totp_step(secret: &[u8], code: &str, at: u64, after: i64) -> Option<i64> {
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let t = totp(secret.to_vec(), "x")?;
    let current = at / STEP_SECS;
    let mut found = None;
    for step in current.saturating_sub(1)..=current + 1 {
        let step_i = i64::try_from(step).ok()?;
        if step_i > after && same(t.generate(step * STEP_SECS).as_bytes(), code.as_bytes()) {
            found = Some(step_i);
        }
    }
    found
}

fn recovery_hash(code: &str) -> Vec<u8> {
    Sha256::digest(code.as_bytes()).to_vec()
}

/// Ten new recovery codes for the account, replacing any it had; returns them as shown to the
/// user (`abcd-efgh-jkmn-pqrs`), which is the only time they are seen.
fn new_recovery_codes(
    tx: &rusqlite::Transaction<'_>,
    user_id: i64,
) -> Result<Vec<String>, rusqlite::Error> {
    use rand::Rng;
    tx.execute(
        "DELETE FROM recovery_codes WHERE user_id = ?1",
        params![user_id],
    )?;
    let mut rng = rand::rngs::OsRng;
    let mut shown = Vec::with_capacity(RECOVERY_CODES);
    while shown.len() < RECOVERY_CODES {
        let raw: String = (0..RECOVERY_LEN)
            .map(|_| RECOVERY_ALPHABET[rng.gen_range(0..RECOVERY_ALPHABET.len())] as char)
            .collect();
        let added = tx.execute(
            "INSERT OR IGNORE INTO recovery_codes (user_id, code_hash) VALUES (?1, ?2)",
            params![user_id, recovery_hash(&raw)],
        )?;
        if added == 1 {
            let groups: Vec<&str> = (0..RECOVERY_LEN)
                .step_by(4)
                .map(|i| &raw[i..i + 4])
                .collect();
            shown.push(groups.join("-"));
        }
    }
    Ok(shown)
}

/// True when the account has a confirmed authenticator app: a password sign-in then asks for its
/// code. (A passkey is not asked for after a password: it signs in by itself, and a session it
/// signs in carries `User::second_factor`.)
pub(crate) fn enrolled(c: &rusqlite::Connection, user_id: i64) -> Result<bool, rusqlite::Error> {
    c.query_row(
        "SELECT EXISTS (SELECT 1 FROM totp WHERE user_id = ?1 AND confirmed_at IS NOT NULL)",
        params![user_id],
        |r| r.get(0),
    )
}

pub(crate) fn status(c: &rusqlite::Connection, user_id: i64) -> Result<Status, rusqlite::Error> {
    let totp: Option<bool> = c
        .query_row(
            "SELECT confirmed_at IS NOT NULL FROM totp WHERE user_id = ?1",
            params![user_id],
            |r| r.get(0),
        )
        .optional()?;
    let recovery_codes_left = c.query_row(
        "SELECT COUNT(*) FROM recovery_codes WHERE user_id = ?1 AND used_at IS NULL",
        params![user_id],
        |r| r.get(0),
    )?;
    Ok(Status {
        totp: totp == Some(true),
        pending: totp == Some(false),
        recovery_codes_left,
    })
}

/// Starts an enrolment: a new pending secret (replacing an unconfirmed one). `None` when the
/// account already has a confirmed authenticator (it must be turned off first, with a code).
pub(crate) fn start_totp(
    c: &mut rusqlite::Connection,
    user_id: i64,
    username: &str,
) -> Result<Option<Enrolment>, rusqlite::Error> {
    let tx = c.transaction()?;
    if enrolled(&tx, user_id)? {
        return Ok(None);
    }
    let secret = new_secret();
    tx.execute(
        "INSERT OR REPLACE INTO totp (user_id, secret, confirmed_at, last_step, created_at)
         VALUES (?1, ?2, NULL, 0, ?3)",
        params![user_id, secret, now()],
    )?;
    tx.commit()?;
    Ok(enrolment(secret, username))
}

/// Why a confirmation did not happen.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ConfirmError {
    /// No enrolment was started (or it was already confirmed).
    NotStarted,
    WrongCode,
}

/// Confirms a pending enrolment with a first code from the app; returns the recovery codes.
pub(crate) fn confirm_totp(
    c: &mut rusqlite::Connection,
    user_id: i64,
    code: &str,
) -> Result<Result<Vec<String>, ConfirmError>, rusqlite::Error> {
    let tx = c.transaction()?;
    let secret: Option<Vec<u8>> = tx
        .query_row(
            "SELECT secret FROM totp WHERE user_id = ?1 AND confirmed_at IS NULL",
            params![user_id],
            |r| r.get(0),
        )
        .optional()?;
    let Some(secret) = secret else {
        return Ok(Err(ConfirmError::NotStarted));
    };
    let at = u64::try_from(now()).unwrap_or(0);
    let Some(step) = totp_step(&secret, &normalise(code), at, 0) else {
        return Ok(Err(ConfirmError::WrongCode));
    };
    tx.execute(
        "UPDATE totp SET confirmed_at = ?1, last_step = ?2 WHERE user_id = ?3",
        params![now(), step, user_id],
    )?;
    let codes = new_recovery_codes(&tx, user_id)?;
    tx.commit()?;
    Ok(Ok(codes))
}

/// Turns on an authenticator at once, without a first code (the command line: the operator
/// hands the URI over). `None` when the account already has one.
pub(crate) fn enable_totp(
    c: &mut rusqlite::Connection,
    user_id: i64,
    username: &str,
) -> Result<Option<(Enrolment, Vec<String>)>, rusqlite::Error> {
    let tx = c.transaction()?;
    if enrolled(&tx, user_id)? {
        return Ok(None);
    }
    let secret = new_secret();
    tx.execute(
        "INSERT OR REPLACE INTO totp (user_id, secret, confirmed_at, last_step, created_at)
         VALUES (?1, ?2, ?3, 0, ?3)",
        params![user_id, secret, now()],
    )?;
    let codes = new_recovery_codes(&tx, user_id)?;
    tx.commit()?;
    Ok(enrolment(secret, username).map(|e| (e, codes)))
}

/// Ten new recovery codes in place of the old ones (used or not), for an account with a confirmed
/// authenticator; `None` without one.
pub(crate) fn renew_recovery_codes(
    c: &mut rusqlite::Connection,
    user_id: i64,
) -> Result<Option<Vec<String>>, rusqlite::Error> {
    let tx = c.transaction()?;
    if !enrolled(&tx, user_id)? {
        return Ok(None);
    }
    let codes = new_recovery_codes(&tx, user_id)?;
    tx.commit()?;
    Ok(Some(codes))
}

/// Checks a second-factor code: six digits from the app (each accepted once, within one step of
/// clock skew), or one unused recovery code (used up by this). `None`: not a valid code.
pub(crate) fn verify_code(
    c: &mut rusqlite::Connection,
    user_id: i64,
    code: &str,
) -> Result<Option<Proof>, rusqlite::Error> {
    let code = normalise(code);
    let tx = c.transaction()?;
    let row: Option<(Vec<u8>, i64)> = tx
        .query_row(
            "SELECT secret, last_step FROM totp WHERE user_id = ?1 AND confirmed_at IS NOT NULL",
            params![user_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((secret, last_step)) = row else {
        return Ok(None);
    };
    let at = u64::try_from(now()).unwrap_or(0);
    if let Some(step) = totp_step(&secret, &code, at, last_step) {
        tx.execute(
            "UPDATE totp SET last_step = ?1 WHERE user_id = ?2",
            params![step, user_id],
        )?;
        tx.commit()?;
        return Ok(Some(Proof::Totp));
    }
    if code.len() == RECOVERY_LEN {
        let used = tx.execute(
            "UPDATE recovery_codes SET used_at = ?1
             WHERE user_id = ?2 AND code_hash = ?3 AND used_at IS NULL",
            params![now(), user_id, recovery_hash(&code)],
        )?;
        if used == 1 {
            tx.commit()?;
            return Ok(Some(Proof::RecoveryCode));
        }
    }
    Ok(None)
}

/// Removes every second factor of the account (authenticator and recovery codes); with
/// `sign_out`, its sessions too (a reset for someone locked out: whoever holds the device may
/// have been signed in). Returns whether it had an authenticator.
pub(crate) fn remove_all(
    c: &mut rusqlite::Connection,
    user_id: i64,
    sign_out: bool,
) -> Result<bool, rusqlite::Error> {
    let tx = c.transaction()?;
    let had = tx.execute(
        "DELETE FROM totp WHERE user_id = ?1 AND confirmed_at IS NOT NULL",
        params![user_id],
    )? > 0;
    tx.execute("DELETE FROM totp WHERE user_id = ?1", params![user_id])?;
    tx.execute(
        "DELETE FROM recovery_codes WHERE user_id = ?1",
        params![user_id],
    )?;
    if sign_out {
        tx.execute("DELETE FROM sessions WHERE user_id = ?1", params![user_id])?;
    }
    tx.commit()?;
    Ok(had)
}

/// The QR code of `text` as an SVG document (drawn here: the page loads nothing from elsewhere).
pub(crate) fn qr_svg(text: &str) -> Option<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .quiet_zone(true)
            .build(),
    )
}

/// The QR code of `text` for a terminal (two rows of modules per line of text).
pub(crate) fn qr_text(text: &str) -> Option<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::unicode::Dense1x2>()
            .dark_color(qrcode::render::unicode::Dense1x2::Light)
            .light_color(qrcode::render::unicode::Dense1x2::Dark)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_sha1_vectors_and_skew() {
        // RFC 6238 appendix B, SHA-1 (the last 6 of the 8 digits: the truncation is the same).
        let secret = b"12345678901234567890".to_vec();
        let t = totp(secret.clone(), "a").unwrap();
        assert_eq!(t.generate(59), "287082");
        assert_eq!(t.generate(1_111_111_109), "081804");
        assert_eq!(totp_step(&secret, "287082", 59, 0), Some(1));
        // One step either way is accepted, two are not.
        assert_eq!(totp_step(&secret, "287082", 59 + 30, 0), Some(1));
        assert_eq!(totp_step(&secret, "287082", 59 + 60, 0), None);
        // A step already used (or older) is refused.
        assert_eq!(totp_step(&secret, "287082", 59, 1), None);
        assert_eq!(totp_step(&secret, "28708", 59, 0), None);
        assert_eq!(totp_step(&secret, "abcdef", 59, 0), None);
    }

    #[test]
    fn codes_are_normalised() {
        assert_eq!(normalise(" 287 082 "), "287082");
        assert_eq!(normalise("ABCD-efgh-jkmn-PQRS"), "abcdefghjkmnpqrs");
    }

    #[test]
    fn the_qr_code_is_svg() {
        let svg = qr_svg("otpauth://totp/Hermes:a?secret=AAAA&issuer=Hermes").unwrap();
        assert!(svg.contains("<svg"), "{svg}");
    }
}
