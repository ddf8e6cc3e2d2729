//! Failed-authentication throttling (issue #3; supports HT-03 and AP-02 by making password
//! guessing slow). Pure core (layer L0): time comes in as unix seconds.
//!
//! Each key (e.g. `ip:192.0.2.1`, `user:alice@example.com`) counts failures in a fixed window.
//! Reaching `max_failures` locks the key for `lockout_secs`; each further lockout before the key
//! has been quiet for `max_lockout_secs` doubles the duration, up to `max_lockout_secs`. Memory is
//! bounded: idle entries are purged and, past `max_entries`, the least recently failed key is
//! forgotten (which unlocks it, the price of a bound).

use std::collections::{BTreeMap, HashMap};

use parking_lot::Mutex;

/// Throttling settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Failures within one window that trigger a lockout; 0 disables throttling.
    pub max_failures: u32,
    /// Length of the failure-counting window.
    pub window_secs: u64,
    /// First lockout duration.
    pub lockout_secs: u64,
    /// Longest lockout; also the quiet time after which repeated lockouts are forgiven.
    pub max_lockout_secs: u64,
    /// Most keys remembered at once.
    pub max_entries: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            max_failures: 5,
            window_secs: 60,
            lockout_secs: 30,
            max_lockout_secs: 900,
            max_entries: 100_000,
        }
    }
}

/// A refused attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ThrottleError {
    /// Locked out; the value (seconds, at least 1) suits a `Retry-After` header.
    #[error("too many failed authentication attempts; retry after {0} s")]
    RetryAfter(u64),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    window_start: u64,
    failures: u32,
    locked_until: u64,
    /// Lockouts since the key was last quiet; drives the doubling.
    strikes: u32,
    /// Position in `Table::by_touch`.
    touched: (u64, u64),
}

#[derive(Debug, Default)]
struct Table {
    entries: HashMap<String, Entry>,
    /// (last failure time, sequence) → key: oldest first, for purging and eviction.
    by_touch: BTreeMap<(u64, u64), String>,
    seq: u64,
}

impl Table {
    fn remove(&mut self, key: &str) {
        if let Some(e) = self.entries.remove(key) {
            self.by_touch.remove(&e.touched);
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((_, key)) = self.by_touch.pop_first() {
            self.entries.remove(&key);
        }
    }
}

/// Per-key failure counter with lockouts. `Send + Sync`.
#[derive(Debug)]
pub struct Throttle {
    cfg: ThrottleConfig,
    table: Mutex<Table>,
}

impl Throttle {
    pub fn new(cfg: ThrottleConfig) -> Self {
        Throttle {
            cfg,
            table: Mutex::new(Table::default()),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &ThrottleConfig {
        &self.cfg
    }

    /// Whether `key` may attempt authentication now.
    pub fn check(&self, key: &str, now: u64) -> Result<(), ThrottleError> {
        let table = self.table.lock();
        match table.entries.get(key) {
            Some(e) if e.locked_until > now => Err(ThrottleError::RetryAfter(e.locked_until - now)),
            _ => Ok(()),
        }
    }

    /// Counts a failed authentication for `key`.
    pub fn record_failure(&self, key: &str, now: u64) {
        let cfg = &self.cfg;
        if cfg.max_failures == 0 || cfg.max_entries == 0 {
            return;
        }
        let cap = cfg.max_lockout_secs.max(cfg.lockout_secs);
        let mut table = self.table.lock();
        // An entry last touched at t is locked at most until t + cap and forgives strikes at
        // t + 2·cap; its window ends by t + window. After both it has no effect.
        let horizon = cap.saturating_mul(2).max(cfg.window_secs);
        while let Some((&(t, _), _)) = table.by_touch.first_key_value() {
            if t.saturating_add(horizon) > now {
                break;
            }
            table.pop_oldest();
        }

        let mut e = match table.entries.get(key) {
            Some(e) => *e,
            None => {
                while table.entries.len() >= cfg.max_entries {
                    table.pop_oldest();
                }
                Entry {
                    window_start: now,
                    failures: 0,
                    locked_until: 0,
                    strikes: 0,
                    touched: (now, 0),
                }
            }
        };
        // Failures while locked are not counted: the caller should have refused the attempt,
        // and counting them would let concurrent requests extend the lockout without bound.
        if e.locked_until <= now {
            if now >= e.window_start.saturating_add(cfg.window_secs) {
                e.window_start = now;
                e.failures = 0;
            }
            if e.strikes > 0 && now >= e.locked_until.saturating_add(cap) {
                e.strikes = 0;
            }
            e.failures = e.failures.saturating_add(1);
            if e.failures >= cfg.max_failures {
                e.strikes = e.strikes.saturating_add(1);
                let factor = 1u64.checked_shl(e.strikes - 1).unwrap_or(u64::MAX);
                let lockout = cfg.lockout_secs.saturating_mul(factor).min(cap);
                e.locked_until = now.saturating_add(lockout);
                e.failures = 0;
                e.window_start = now;
            }
        }
        // Re-index by this failure's time.
        table.by_touch.remove(&e.touched);
        table.seq = table.seq.wrapping_add(1);
        e.touched = (now, table.seq);
        table.by_touch.insert(e.touched, key.to_string());
        table.entries.insert(key.to_string(), e);
    }

    /// Forgets `key`'s failures and lockout history (call after a successful authentication;
    /// whether to do so for shared keys such as a NAT address is the caller's choice).
    pub fn record_success(&self, key: &str) {
        self.table.lock().remove(key);
    }

    /// Number of keys currently remembered.
    pub fn len(&self) -> usize {
        self.table.lock().entries.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: u64 = 1_700_000_000;
    const IP: &str = "ip:192.0.2.1";
    const USER: &str = "user:alice@example.com";

    fn fail_n(t: &Throttle, key: &str, n: u32, now: u64) {
        for _ in 0..n {
            t.record_failure(key, now);
        }
    }

    #[test]
    fn lockout_after_max_failures_then_released() {
        let t = Throttle::new(ThrottleConfig::default());
        fail_n(&t, IP, 4, T0);
        assert_eq!(t.check(IP, T0), Ok(()));
        t.record_failure(IP, T0 + 1);
        assert_eq!(t.check(IP, T0 + 1), Err(ThrottleError::RetryAfter(30)));
        assert_eq!(t.check(IP, T0 + 30), Err(ThrottleError::RetryAfter(1)));
        assert_eq!(t.check(IP, T0 + 31), Ok(()));
    }

    #[test]
    fn failures_outside_window_do_not_accumulate() {
        let t = Throttle::new(ThrottleConfig::default());
        fail_n(&t, IP, 4, T0);
        fail_n(&t, IP, 4, T0 + 60); // new window
        assert_eq!(t.check(IP, T0 + 60), Ok(()));
        t.record_failure(IP, T0 + 61);
        assert!(t.check(IP, T0 + 61).is_err());
    }

    #[test]
    fn repeated_lockouts_double_up_to_cap_and_are_forgiven_after_quiet() {
        let t = Throttle::new(ThrottleConfig {
            max_lockout_secs: 100,
            ..ThrottleConfig::default()
        });
        let mut now = T0;
        for expected in [30, 60, 100, 100] {
            fail_n(&t, USER, 5, now);
            assert_eq!(t.check(USER, now), Err(ThrottleError::RetryAfter(expected)));
            now += expected;
            assert_eq!(t.check(USER, now), Ok(()));
        }
        // Quiet for max_lockout_secs after the last lockout: back to the first duration.
        now += 100;
        fail_n(&t, USER, 5, now);
        assert_eq!(t.check(USER, now), Err(ThrottleError::RetryAfter(30)));
    }

    #[test]
    fn failures_during_lockout_do_not_extend_it() {
        let t = Throttle::new(ThrottleConfig::default());
        fail_n(&t, IP, 5, T0);
        fail_n(&t, IP, 50, T0 + 10);
        assert_eq!(t.check(IP, T0 + 10), Err(ThrottleError::RetryAfter(20)));
        assert_eq!(t.check(IP, T0 + 30), Ok(()));
    }

    #[test]
    fn success_resets_and_keys_are_independent() {
        let t = Throttle::new(ThrottleConfig::default());
        fail_n(&t, USER, 5, T0);
        assert!(t.check(USER, T0).is_err());
        assert_eq!(t.check(IP, T0), Ok(()));
        assert_eq!(t.check("user:bob@example.com", T0), Ok(()));
        t.record_success(USER);
        assert_eq!(t.check(USER, T0), Ok(()));
        fail_n(&t, USER, 4, T0);
        assert_eq!(t.check(USER, T0), Ok(()), "counter restarted from zero");
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn max_failures_zero_disables() {
        let t = Throttle::new(ThrottleConfig {
            max_failures: 0,
            ..ThrottleConfig::default()
        });
        fail_n(&t, IP, 100, T0);
        assert_eq!(t.check(IP, T0), Ok(()));
        assert!(t.is_empty());
    }

    #[test]
    fn bounded_memory_evicts_least_recently_failed() {
        let t = Throttle::new(ThrottleConfig {
            max_entries: 3,
            ..ThrottleConfig::default()
        });
        fail_n(&t, "ip:a", 5, T0); // locked, but oldest
        for (i, k) in ["ip:b", "ip:c", "ip:d"].iter().enumerate() {
            t.record_failure(k, T0 + 1 + i as u64);
        }
        assert_eq!(t.len(), 3);
        assert_eq!(t.check("ip:a", T0 + 5), Ok(()), "evicted, so forgotten");
        // "ip:b" is the oldest now; refreshing it protects it and evicts "ip:c".
        fail_n(&t, "ip:b", 4, T0 + 6);
        t.record_failure("ip:e", T0 + 7);
        assert_eq!(t.len(), 3);
        assert!(t.check("ip:b", T0 + 7).is_err(), "five failures kept");
    }

    #[test]
    fn idle_entries_are_purged() {
        let t = Throttle::new(ThrottleConfig::default());
        fail_n(&t, "ip:a", 5, T0);
        fail_n(&t, "ip:b", 1, T0);
        // Horizon: 2 × max_lockout (1800 s).
        t.record_failure("ip:c", T0 + 1799);
        assert_eq!(t.len(), 3);
        t.record_failure("ip:c", T0 + 1800);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn brute_force_rate_is_bounded() {
        // An attacker retrying every second for an hour, honouring lockouts: 5 tries per
        // lockout, lockouts 30, 60, …, 900 s. Without throttling this would be 3600 tries.
        let t = Throttle::new(ThrottleConfig::default());
        let mut attempts = 0;
        for now in T0..T0 + 3600 {
            if t.check(IP, now).is_ok() {
                attempts += 1;
                t.record_failure(IP, now);
            }
        }
        assert!(attempts <= 5 * 9, "{attempts} attempts in an hour");
        assert!(attempts >= 5, "throttle must not refuse the first attempts");
    }

    #[test]
    fn throttle_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<Throttle>();
    }

    proptest! {
        #[test]
        fn never_exceeds_bound_and_index_consistent(
            ops in proptest::collection::vec((0u8..12, 0u64..200, any::<bool>()), 0..300),
        ) {
            let t = Throttle::new(ThrottleConfig { max_entries: 5, ..ThrottleConfig::default() });
            let mut now = T0;
            for (k, dt, success) in ops {
                now += dt;
                let key = format!("ip:{k}");
                if success { t.record_success(&key) } else { t.record_failure(&key, now) }
                let table = t.table.lock();
                prop_assert!(table.entries.len() <= 5);
                prop_assert_eq!(table.entries.len(), table.by_touch.len());
                for (touch, key) in &table.by_touch {
                    prop_assert_eq!(table.entries.get(key).map(|e| e.touched), Some(*touch));
                }
            }
        }

        #[test]
        fn locked_only_after_max_failures(n in 0u32..10, spacing in 0u64..20) {
            let t = Throttle::new(ThrottleConfig::default());
            for i in 0..n {
                t.record_failure(IP, T0 + u64::from(i) * spacing);
            }
            let end = T0 + u64::from(n.saturating_sub(1)) * spacing;
            // Within one 60 s window, locked exactly when five failures happened.
            if u64::from(n.saturating_sub(1)) * spacing < 60 {
                prop_assert_eq!(t.check(IP, end).is_err(), n >= 5);
            }
        }
    }
}
