//! Who may try to authenticate, and when (issue #10 item 3, issue #11 item 7; supports HT-03 and
//! AP-02). Pure core (layer L0): time comes in as unix seconds, keys are plain strings.
//!
//! Three failure counters, each a [`Throttle`]:
//! - **user + address** (`auth.throttle_max_failures`, default 5): the one a typo or a guesser
//!   meets first. It never touches another user, so one client's wrong password cannot lock out
//!   everybody behind the same address (NAT, a SIP core, a trusted proxy).
//! - **user, from any address** (`auth.throttle_user_max_failures`): guessing one password from
//!   many addresses.
//! - **address, over every user name** (`auth.throttle_address_max_failures`): password
//!   spraying, many names from one address. Set above what honest clients reach.
//!
//! The last two are shared, so an attacker could trip them on purpose; a user who authenticated
//! successfully from an address recently (a *known pair*) is therefore not held by them, only by
//! its own user + address counter. User names are canonical XUIs (the caller canonicalizes), so
//! `bob`, `bob@example.com` and `sip:bob@example.com` count as one user.

use std::collections::{BTreeMap, HashMap};

use parking_lot::Mutex;

use super::throttle::{Throttle, ThrottleConfig, ThrottleError};

/// Lockout settings. A `max_failures` of 0 disables that counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockoutConfig {
    pub user_address_max_failures: u32,
    pub user_max_failures: u32,
    pub address_max_failures: u32,
    pub window_secs: u64,
    pub lockout_secs: u64,
    /// How long a successful (user, address) pair is exempt from the shared counters.
    pub known_pair_secs: u64,
    /// Most keys each counter, and the known-pair table, remember.
    pub max_entries: usize,
}

impl Default for LockoutConfig {
    fn default() -> Self {
        LockoutConfig {
            user_address_max_failures: 5,
            user_max_failures: 20,
            address_max_failures: 30,
            window_secs: 60,
            lockout_secs: 30,
            known_pair_secs: 7 * 24 * 3600,
            max_entries: 100_000,
        }
    }
}

/// The three counters and the known pairs. `Send + Sync`.
#[derive(Debug)]
pub struct Lockout {
    user_address: Throttle,
    user: Throttle,
    address: Throttle,
    known: Mutex<KnownPairs>,
    known_pair_secs: u64,
}

impl Lockout {
    pub fn new(cfg: LockoutConfig) -> Lockout {
        let counter = |max_failures| {
            Throttle::new(ThrottleConfig {
                max_failures,
                window_secs: cfg.window_secs,
                lockout_secs: cfg.lockout_secs,
                max_entries: cfg.max_entries,
                ..ThrottleConfig::default()
            })
        };
        Lockout {
            user_address: counter(cfg.user_address_max_failures),
            user: counter(cfg.user_max_failures),
            address: counter(cfg.address_max_failures),
            known: Mutex::new(KnownPairs {
                max_entries: cfg.max_entries,
                ..KnownPairs::default()
            }),
            known_pair_secs: cfg.known_pair_secs,
        }
    }

    /// Whether `user` (canonical; `None` when the credentials name nobody) may try to
    /// authenticate from `address` now.
    pub fn check(&self, user: Option<&str>, address: &str, now: u64) -> Result<(), ThrottleError> {
        if let Some(user) = user {
            let pair = pair_key(user, address);
            self.user_address.check(&pair, now)?;
            if self.known.lock().is_known(&pair, now, self.known_pair_secs) {
                return Ok(());
            }
            self.user.check(user, now)?;
        }
        self.address.check(address, now)
    }

    /// Counts a refused attempt.
    pub fn failure(&self, user: Option<&str>, address: &str, now: u64) {
        if let Some(user) = user {
            self.user_address
                .record_failure(&pair_key(user, address), now);
            self.user.record_failure(user, now);
        }
        self.address.record_failure(address, now);
    }

    /// Records a successful authentication: the pair's own counter is cleared and the pair
    /// becomes known. The shared counters are left alone, so an attacker holding one valid
    /// account cannot clear them by logging in between guesses.
    pub fn success(&self, user: &str, address: &str, now: u64) {
        let pair = pair_key(user, address);
        self.user_address.record_success(&pair);
        self.known.lock().insert(pair, now);
    }
}

fn pair_key(user: &str, address: &str) -> String {
    format!("{user}\u{0}{address}")
}

/// (user, address) pairs that authenticated, with the time of their last success; bounded,
/// the oldest forgotten first.
#[derive(Debug, Default)]
struct KnownPairs {
    last_success: HashMap<String, (u64, u64)>,
    by_time: BTreeMap<(u64, u64), String>,
    seq: u64,
    max_entries: usize,
}

impl KnownPairs {
    fn is_known(&self, pair: &str, now: u64, ttl: u64) -> bool {
        self.last_success
            .get(pair)
            .is_some_and(|(t, _)| now < t.saturating_add(ttl))
    }

    fn insert(&mut self, pair: String, now: u64) {
        if self.max_entries == 0 {
            return;
        }
        if let Some(old) = self.last_success.remove(&pair) {
            self.by_time.remove(&old);
        }
        while self.last_success.len() >= self.max_entries {
            match self.by_time.pop_first() {
                Some((_, oldest)) => {
                    self.last_success.remove(&oldest);
                }
                None => break,
            }
        }
        self.seq = self.seq.wrapping_add(1);
        let stamp = (now, self.seq);
        self.by_time.insert(stamp, pair.clone());
        self.last_success.insert(pair, stamp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000;
    const BOB: &str = "sip:bob@example.com";
    const ALICE: &str = "sip:alice@example.com";
    const NAT: &str = "192.0.2.1";

    fn lockout() -> Lockout {
        Lockout::new(LockoutConfig::default())
    }

    /// Issue #10 item 3: six wrong passwords for bob lock bob at that address, not alice.
    #[test]
    fn ht03_one_users_failures_never_lock_out_another_user() {
        let l = lockout();
        for _ in 0..6 {
            if l.check(Some(BOB), NAT, T0).is_ok() {
                l.failure(Some(BOB), NAT, T0);
            }
        }
        assert!(matches!(
            l.check(Some(BOB), NAT, T0),
            Err(ThrottleError::RetryAfter(_))
        ));
        assert_eq!(l.check(Some(ALICE), NAT, T0), Ok(()));
        // Bob from another address is not held by the pair counter (5 < 20 user-wide).
        assert_eq!(l.check(Some(BOB), "198.51.100.7", T0), Ok(()));
        // The lockout ends.
        assert_eq!(l.check(Some(BOB), NAT, T0 + 31), Ok(()));
    }

    /// Issue #11 item 7: spraying many names from one address is throttled by address.
    #[test]
    fn ap02_password_spraying_from_one_address_is_throttled() {
        let l = lockout();
        let mut refused = 0;
        for i in 0..40 {
            let user = format!("sip:user{i}@example.com");
            match l.check(Some(&user), NAT, T0) {
                Ok(()) => l.failure(Some(&user), NAT, T0),
                Err(_) => refused += 1,
            }
        }
        assert_eq!(refused, 10, "30 guesses, then the address is held");
        assert!(l.check(Some("sip:new@example.com"), NAT, T0).is_err());
        assert!(l.check(None, NAT, T0).is_err());
    }

    /// A user who authenticated from the address before is not held by the shared counters,
    /// so an attacker tripping them cannot lock that user out.
    #[test]
    fn known_pairs_pass_shared_lockouts() {
        let l = lockout();
        l.success(ALICE, NAT, T0);
        for i in 0..30 {
            l.failure(Some(&format!("sip:u{i}@example.com")), NAT, T0);
        }
        for _ in 0..25 {
            l.failure(Some(ALICE), "203.0.113.9", T0);
        }
        assert!(l.check(Some(ALICE), "203.0.113.9", T0).is_err());
        assert!(l.check(Some("sip:carol@example.com"), NAT, T0).is_err());
        assert_eq!(l.check(Some(ALICE), NAT, T0), Ok(()));
        // Known pairs expire.
        let later = T0 + LockoutConfig::default().known_pair_secs;
        for i in 0..30 {
            l.failure(Some(&format!("sip:v{i}@example.com")), NAT, later);
        }
        assert!(l.check(Some(ALICE), NAT, later).is_err());
    }

    #[test]
    fn success_clears_only_the_pair_counter() {
        let l = lockout();
        for _ in 0..4 {
            l.failure(Some(BOB), NAT, T0);
        }
        l.success(BOB, NAT, T0);
        for _ in 0..4 {
            l.failure(Some(BOB), NAT, T0);
        }
        assert_eq!(
            l.check(Some(BOB), NAT, T0),
            Ok(()),
            "4 + 4 with a success between"
        );
        l.failure(Some(BOB), NAT, T0);
        assert!(l.check(Some(BOB), NAT, T0).is_err());
    }

    #[test]
    fn zero_disables_a_counter() {
        let l = Lockout::new(LockoutConfig {
            address_max_failures: 0,
            user_max_failures: 0,
            ..LockoutConfig::default()
        });
        for i in 0..100 {
            l.failure(Some(&format!("sip:u{i}@example.com")), NAT, T0);
        }
        assert_eq!(l.check(Some(ALICE), NAT, T0), Ok(()));
        assert_eq!(l.check(None, NAT, T0), Ok(()));
    }

    #[test]
    fn known_pairs_are_bounded() {
        let mut k = KnownPairs {
            max_entries: 3,
            ..KnownPairs::default()
        };
        for i in 0..10u64 {
            k.insert(format!("p{i}"), T0 + i);
        }
        assert_eq!(k.last_success.len(), 3);
        assert_eq!(k.by_time.len(), 3);
        assert!(k.is_known("p9", T0 + 10, 100));
        assert!(!k.is_known("p0", T0 + 10, 100));
        k.insert("p8".into(), T0 + 20);
        assert_eq!(k.last_success.len(), 3);
        assert_eq!(k.by_time.len(), 3);
    }
}
