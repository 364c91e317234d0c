//! Failed sign-ins and the lockouts they start. Three counters, kept in the
//! store so every node of a cluster sees the same ones:
//!
//! - **pair** (username and address): a misconfigured client, or a guesser
//!   at one account from one place. Locks that pair only: the same account
//!   from elsewhere and every other account from that address keep working.
//! - **username** (across addresses): guesses at one account spread over
//!   many addresses. Locks the account, except from the networks its own
//!   allowlist names (a `/0` names none), so the application itself goes on.
//! - **address** (across usernames): password spraying. Its failures are
//!   answered more and more slowly past `slow_after`, and the address is
//!   refused at connect once it reaches its (much higher) limit.
//!
//! Each counter counts within a fixed window that starts at its first
//! failure; reaching the limit locks for one window's length. The embedded
//! store applies [`FailureCount::fail`]; the Redis store's `fail.lua` is
//! the same rule, and the conformance suite holds both to it.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::Application;

/// Usernames are counted by at most this many bytes: a client may send a
/// 12 KB "username", and the store keeps one key per name it saw.
pub const MAX_USERNAME_BYTES: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockoutKind {
    Pair,
    Username,
    Address,
}

impl LockoutKind {
    pub const ALL: [LockoutKind; 3] = [LockoutKind::Pair, LockoutKind::Username, LockoutKind::Address];

    /// The metric label and the API's name.
    pub fn name(self) -> &'static str {
        match self {
            LockoutKind::Pair => "pair",
            LockoutKind::Username => "username",
            LockoutKind::Address => "address",
        }
    }
}

/// A limit: `failures` within `window_ms` lock for `window_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub failures: u32,
    pub window_ms: u64,
}

/// The three rules, from `auth.*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutRules {
    pub pair: Rule,
    pub username: Rule,
    pub address: Rule,
    /// An address's failures past this many are answered after a delay.
    pub address_slow_after: u32,
}

impl LockoutRules {
    pub fn rule(&self, kind: LockoutKind) -> Rule {
        match kind {
            LockoutKind::Pair => self.pair,
            LockoutKind::Username => self.username,
            LockoutKind::Address => self.address,
        }
    }
}

/// One counter as stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureCount {
    pub failures: u32,
    pub window_start_ms: u64,
    pub locked_until_ms: u64,
}

impl FailureCount {
    pub fn locked(&self, now_ms: u64) -> bool {
        now_ms < self.locked_until_ms
    }

    /// Failures in the window still open at `now_ms`.
    pub fn current(&self, rule: Rule, now_ms: u64) -> u32 {
        if now_ms < self.window_start_ms.saturating_add(rule.window_ms) {
            self.failures
        } else {
            0
        }
    }

    /// Counts one failure; true when it starts a lockout.
    pub fn fail(&mut self, rule: Rule, now_ms: u64) -> bool {
        if self.current(rule, now_ms) == 0 {
            self.failures = 0;
            self.window_start_ms = now_ms;
        }
        self.failures += 1;
        if self.failures >= rule.failures && !self.locked(now_ms) {
            self.locked_until_ms = now_ms + rule.window_ms;
            return true;
        }
        false
    }

    /// When the record may be forgotten.
    pub fn expires_ms(&self, rule: Rule) -> u64 {
        self.window_start_ms
            .saturating_add(rule.window_ms)
            .max(self.locked_until_ms)
    }
}

/// A sign-in attempt's three counters, read before the password is checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SignInState {
    pub pair: FailureCount,
    pub username: FailureCount,
    pub address: FailureCount,
}

impl SignInState {
    pub fn get(&self, kind: LockoutKind) -> FailureCount {
        match kind {
            LockoutKind::Pair => self.pair,
            LockoutKind::Username => self.username,
            LockoutKind::Address => self.address,
        }
    }
}

/// What one counter is about: its key in either store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subject {
    pub kind: LockoutKind,
    pub username: Option<String>,
    pub address: Option<IpAddr>,
}

impl Subject {
    /// The three counters one attempt touches.
    pub fn of_attempt(username: &str, address: IpAddr) -> [Subject; 3] {
        let username = bounded(username).to_string();
        let address = crate::policy::canonical_ip(address);
        [
            Subject {
                kind: LockoutKind::Pair,
                username: Some(username.clone()),
                address: Some(address),
            },
            Subject {
                kind: LockoutKind::Username,
                username: Some(username),
                address: None,
            },
            Subject {
                kind: LockoutKind::Address,
                username: None,
                address: Some(address),
            },
        ]
    }

    /// `pair\tuser\taddress`, `username\tuser\t`, `address\t\taddress`:
    /// tabs, because neither usernames nor addresses hold one that matters
    /// (a username with a tab is counted under a name no app has).
    pub fn key(&self) -> String {
        format!(
            "{}\t{}\t{}",
            self.kind.name(),
            self.username.as_deref().unwrap_or(""),
            self.address.map(|a| a.to_string()).unwrap_or_default()
        )
    }

    pub fn from_key(key: &str) -> Option<Subject> {
        let mut parts = key.splitn(3, '\t');
        let kind = match parts.next()? {
            "pair" => LockoutKind::Pair,
            "username" => LockoutKind::Username,
            "address" => LockoutKind::Address,
            _ => return None,
        };
        let username = parts.next().filter(|u| !u.is_empty()).map(str::to_string);
        let address = parts.next().filter(|a| !a.is_empty()).and_then(|a| a.parse().ok());
        Some(Subject {
            kind,
            username,
            address,
        })
    }
}

/// A lockout in force, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lockout {
    pub kind: LockoutKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<IpAddr>,
    pub failures: u32,
    pub until_ms: u64,
}

impl Lockout {
    pub fn new(subject: Subject, count: FailureCount) -> Lockout {
        Lockout {
            kind: subject.kind,
            username: subject.username,
            address: subject.address,
            failures: count.failures,
            until_ms: count.locked_until_ms,
        }
    }
}

/// The username a counter is kept under.
pub fn bounded(username: &str) -> &str {
    if username.len() <= MAX_USERNAME_BYTES {
        return username;
    }
    let mut end = MAX_USERNAME_BYTES;
    while !username.is_char_boundary(end) {
        end -= 1;
    }
    &username[..end]
}

/// Whether `address` is one of the networks the application names for
/// itself: a username lockout does not stop it there. "Anywhere" (`/0`)
/// names no network of its own.
pub fn own_address(app: &Application, address: IpAddr) -> bool {
    let address = crate::policy::canonical_ip(address);
    app.allowed_networks
        .iter()
        .any(|n| n.prefix_len() > 0 && n.contains(&address))
}

/// How long to hold back the answer to a failure from an address that has
/// failed `failures` times: a second per failure past `slow_after`, at most
/// ten (Postfix's `smtpd_error_sleep_time` grows the same way per session).
pub fn delay_ms(failures: u32, slow_after: u32) -> u64 {
    u64::from(failures.saturating_sub(slow_after)).min(10) * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: Rule = Rule {
        failures: 3,
        window_ms: 1000,
    };

    #[test]
    fn the_third_failure_in_a_window_locks_for_a_window() {
        let mut c = FailureCount::default();
        assert!(!c.fail(RULE, 100));
        assert!(!c.fail(RULE, 200));
        assert!(c.fail(RULE, 300));
        assert!(c.locked(1299) && !c.locked(1300));
        assert!(!c.fail(RULE, 400), "already locked: no second start");
        assert_eq!(c.expires_ms(RULE), 1300);
    }

    #[test]
    fn a_window_that_ran_out_starts_again() {
        let mut c = FailureCount::default();
        c.fail(RULE, 0);
        c.fail(RULE, 10);
        assert_eq!(c.current(RULE, 999), 2);
        assert_eq!(c.current(RULE, 1000), 0);
        assert!(!c.fail(RULE, 1000));
        assert_eq!((c.failures, c.window_start_ms), (1, 1000));
    }

    #[test]
    fn keys_round_trip_and_long_names_are_bounded() {
        for s in Subject::of_attempt("app", "::ffff:127.0.0.5".parse().unwrap()) {
            assert_eq!(Subject::from_key(&s.key()), Some(s.clone()));
            if let Some(a) = s.address {
                assert_eq!(a, "127.0.0.5".parse::<IpAddr>().unwrap());
            }
        }
        let long = "é".repeat(300);
        let [pair, ..] = Subject::of_attempt(&long, "127.0.0.1".parse().unwrap());
        assert!(pair.username.unwrap().len() <= MAX_USERNAME_BYTES);
    }

    #[test]
    fn the_delay_grows_past_the_slow_mark_and_is_bounded() {
        assert_eq!(delay_ms(10, 10), 0);
        assert_eq!(delay_ms(12, 10), 2000);
        assert_eq!(delay_ms(500, 10), 10_000);
    }
}
