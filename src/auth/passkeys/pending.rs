//! Ceremonies in progress: the server-side state of each passkey registration or sign-in between
//! its two requests, in memory only.
//!
//! A ceremony is found by a random token (kept in the page for a registration, in a short-lived
//! cookie for a sign-in), is used once, and expires after [`CEREMONY_LIFETIME`]. Their number is
//! bounded per owner (a signed-in account, or the network an anonymous sign-in comes from) and
//! overall, so nobody can fill memory by starting ceremonies; when the whole table is full a new
//! ceremony is refused (the password still works) rather than pushing out someone else's.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use webauthn_rs::prelude::{DiscoverableAuthentication, PasskeyRegistration};

/// How long a browser has to answer: WebAuthn's own timeout is about as long.
pub(crate) const CEREMONY_LIFETIME: Duration = Duration::from_secs(300);
/// Ceremonies open at once for one account or one client network. The login page starts one at
/// each load (for passkey autofill), so an office or a school behind one address opens many: the
/// bound only keeps one network from taking the whole table.
pub(crate) const PER_OWNER: usize = 64;

/// Who started a ceremony.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Owner {
    /// A signed-in account registering a passkey.
    User(i64),
    /// An anonymous sign-in, counted per IPv4 address or IPv6 /64.
    Net(IpAddr),
}

impl Owner {
    pub(crate) fn network(ip: IpAddr) -> Owner {
        Owner::Net(match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
            v4 => v4,
        })
    }
}

pub(crate) enum State {
    Register {
        state: PasskeyRegistration,
        /// The session that started it: another session of the same account cannot finish it.
        session: [u8; 32],
        name: String,
    },
    SignIn(DiscoverableAuthentication),
}

pub(crate) struct Ceremony {
    pub owner: Owner,
    /// The RP id it was started for; finishing it at another name is refused.
    pub rp_id: String,
    pub state: State,
    expires: Instant,
}

/// The table of ceremonies in progress (`App::passkeys`).
pub(crate) struct Pending {
    max: usize,
    table: Mutex<HashMap<String, Ceremony>>,
}

/// Why a ceremony could not start.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Full {
    Owner,
    Everyone,
}

impl Pending {
    pub(crate) fn new(max: usize) -> Pending {
        Pending {
            max,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Keeps a new ceremony and returns its token.
    pub(crate) fn insert(&self, owner: Owner, rp_id: String, state: State) -> Result<String, Full> {
        self.insert_at(owner, rp_id, state, Instant::now())
    }

    fn insert_at(
        &self,
        owner: Owner,
        rp_id: String,
        state: State,
        now: Instant,
    ) -> Result<String, Full> {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table.retain(|_, c| c.expires > now);
        if table.values().filter(|c| c.owner == owner).count() >= PER_OWNER {
            return Err(Full::Owner);
        }
        if table.len() >= self.max {
            return Err(Full::Everyone);
        }
        let token = crate::auth::new_token();
        table.insert(
            token.clone(),
            Ceremony {
                owner,
                rp_id,
                state,
                expires: now + CEREMONY_LIFETIME,
            },
        );
        Ok(token)
    }

    /// Takes the ceremony of `token` out (a ceremony is answered once), if it has not expired.
    pub(crate) fn take(&self, token: &str) -> Option<Ceremony> {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let c = table.remove(token)?;
        (c.expires > Instant::now()).then_some(c)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.lock().map(|t| t.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign_in() -> State {
        let rp = super::super::rp::RelyingParty {
            id: "localhost".into(),
            origin: "https://localhost:8443".into(),
        };
        let w = super::super::webauthn_for(&rp).unwrap();
        State::SignIn(w.start_discoverable_authentication().unwrap().1)
    }

    #[test]
    fn ceremonies_are_bounded_per_owner_and_overall_and_expire() {
        let p = Pending::new(PER_OWNER + 2);
        let a = Owner::network("2001:db8::1".parse().unwrap());
        assert_eq!(a, Owner::network("2001:db8::ffff".parse().unwrap()));
        let now = Instant::now();
        for _ in 0..PER_OWNER {
            p.insert_at(a, "localhost".into(), sign_in(), now).unwrap();
        }
        assert_eq!(
            p.insert_at(a, "localhost".into(), sign_in(), now).err(),
            Some(Full::Owner)
        );
        p.insert_at(Owner::User(1), "localhost".into(), sign_in(), now)
            .unwrap();
        p.insert_at(Owner::User(2), "localhost".into(), sign_in(), now)
            .unwrap();
        assert_eq!(
            p.insert_at(Owner::User(3), "localhost".into(), sign_in(), now)
                .err(),
            Some(Full::Everyone)
        );
        // Expired ones make room.
        let later = now + CEREMONY_LIFETIME + Duration::from_secs(1);
        p.insert_at(Owner::User(3), "localhost".into(), sign_in(), later)
            .unwrap();
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn a_ceremony_is_taken_once() {
        let p = Pending::new(10);
        let t = p
            .insert(Owner::User(1), "localhost".into(), sign_in())
            .unwrap();
        assert!(p.take(&t).is_some());
        assert!(p.take(&t).is_none());
        assert!(p.take("nonsense").is_none());
    }
}
