//! Basic authentication against the web configuration's bcrypt hashes, so that a failed
//! attempt costs the attacker, not the server:
//!
//! - each distinct credential is verified with bcrypt once: the outcome is remembered under
//!   a keyed digest (HMAC-SHA-256 with a key drawn at start, never the password) of the
//!   user, the configured hash and the password, as the toolkit's cache key holds the hash
//!   too (CVE-2022-46146). Successes and failures are kept apart, both bounded, so that a
//!   flood of wrong passwords cannot evict the scrapers' verified credentials;
//! - remembered digests are compared in constant time; an unknown user is checked against a
//!   configured user's hash (same cost, so the same time) and always fails;
//! - bcrypt runs one at a time on a blocking thread, within a CPU budget (a token bucket
//!   filled at `BCRYPT_CPU_SHARE` of one core, holding at most `BCRYPT_BURST`): ordinary use
//!   never waits, a flood of distinct passwords gets at most a quarter of one core whatever
//!   arrives. A request whose credential would wait more than `AUTH_WAIT` for its turn is
//!   answered 429 without any bcrypt.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine as _;
use ring::hmac;
use subtle::ConstantTimeEq;

use crate::bounded::BoundedMap;
use crate::defaults;

/// What a request's credentials are worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A configured user with its password.
    Allowed,
    /// Missing, malformed, unknown or wrong credentials (401).
    Denied,
    /// New credentials that could not be verified in time (429).
    Busy,
}

type Tag = [u8; 32];

/// Remembered outcomes: the first 8 bytes of a digest → the whole digest, compared in
/// constant time.
struct Remembered(Mutex<BoundedMap<u64, Tag>>);

impl Remembered {
    fn new(capacity: usize) -> Remembered {
        Remembered(Mutex::new(BoundedMap::with_budget(capacity, usize::MAX)))
    }
    fn contains(&self, tag: &Tag) -> bool {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&prefix(tag))
            .is_some_and(|t| bool::from(t.as_slice().ct_eq(tag.as_slice())))
    }
    fn insert(&self, tag: Tag) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let key = prefix(&tag);
        let hash = m.hash(&key);
        m.insert_hashed(hash, key, tag, 0);
    }
}

fn prefix(tag: &Tag) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&tag[..8]);
    u64::from_le_bytes(b)
}

struct Inner {
    key: hmac::Key,
    ok: Remembered,
    failed: Remembered,
    /// One bcrypt at a time.
    turn: Arc<tokio::sync::Semaphore>,
    budget: Mutex<Budget>,
}

/// bcrypt's CPU budget, a token bucket in seconds of CPU: it fills at
/// `BCRYPT_CPU_SHARE` seconds per second up to `BCRYPT_BURST`, each verification takes
/// what it used. Ordinary use never waits; a flood is held to that share of one core.
struct Budget {
    seconds: f64,
    at: Instant,
}

impl Budget {
    fn full() -> Budget {
        Budget {
            seconds: defaults::BCRYPT_BURST.as_secs_f64(),
            at: Instant::now(),
        }
    }

    /// How long until the budget is positive again.
    fn wait(&mut self) -> std::time::Duration {
        let now = Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * defaults::BCRYPT_CPU_SHARE;
        self.seconds = (self.seconds + refill).min(defaults::BCRYPT_BURST.as_secs_f64());
        self.at = now;
        if self.seconds > 0.0 {
            std::time::Duration::ZERO
        } else {
            std::time::Duration::from_secs_f64(-self.seconds / defaults::BCRYPT_CPU_SHARE)
        }
    }

    fn spend(&mut self, took: std::time::Duration) {
        self.wait();
        self.seconds -= took.as_secs_f64();
    }
}

/// Checks `Authorization` headers; shared by every connection, across web configuration
/// reloads (a changed hash changes the digests, so nothing stale is trusted).
#[derive(Clone)]
pub(crate) struct Verifier(Arc<Inner>);

impl Verifier {
    pub(crate) fn new() -> Verifier {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
            .expect("the system's random generator works");
        Verifier(Arc::new(Inner {
            key,
            ok: Remembered::new(defaults::AUTH_CACHE_OK),
            failed: Remembered::new(defaults::AUTH_CACHE_FAILED),
            turn: Arc::new(tokio::sync::Semaphore::new(1)),
            budget: Mutex::new(Budget::full()),
        }))
    }

    /// The verdict on an `Authorization` header value, for `users` (name → bcrypt hash,
    /// not empty).
    pub(crate) async fn check(
        &self,
        users: &BTreeMap<String, String>,
        authorization: Option<&[u8]>,
    ) -> Verdict {
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return Verdict::Denied;
        };
        let known = std::str::from_utf8(&user).ok().and_then(|u| users.get(u));
        let Some(hash) = known.or_else(|| users.values().next()) else {
            return Verdict::Denied;
        };
        let known = known.is_some();
        let tag = self.tag(&user, hash, &password);
        if self.0.ok.contains(&tag) {
            return Verdict::Allowed;
        }
        if self.0.failed.contains(&tag) {
            return Verdict::Denied;
        }
        let by = tokio::time::Instant::now() + defaults::AUTH_WAIT;
        let Ok(Ok(permit)) = tokio::time::timeout_at(by, self.0.turn.clone().acquire_owned()).await
        else {
            return Verdict::Busy;
        };
        let wait = self
            .0
            .budget
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .wait();
        if tokio::time::Instant::now() + wait > by {
            return Verdict::Busy;
        }
        tokio::time::sleep(wait).await;
        // The permit goes with the work: a request dropped meanwhile does not let a second
        // bcrypt start before this one is over.
        let inner = self.0.clone();
        let hash = hash.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::task::spawn_blocking(move || {
            // Another request may have verified the same credential while this one waited.
            let ok = if inner.ok.contains(&tag) {
                true
            } else if inner.failed.contains(&tag) {
                false
            } else {
                let start = Instant::now();
                let ok = bcrypt::verify(&password, &hash).unwrap_or(false) && known;
                let took = start.elapsed();
                inner
                    .budget
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .spend(took);
                if ok {
                    inner.ok.insert(tag);
                } else {
                    inner.failed.insert(tag);
                }
                ok
            };
            drop(permit);
            let _ = tx.send(ok);
        });
        match rx.await {
            Ok(true) => Verdict::Allowed,
            _ => Verdict::Denied,
        }
    }

    fn tag(&self, user: &[u8], hash: &str, password: &[u8]) -> Tag {
        let mut ctx = hmac::Context::with_key(&self.0.key);
        ctx.update(&(user.len() as u64).to_le_bytes());
        ctx.update(user);
        ctx.update(&(hash.len() as u64).to_le_bytes());
        ctx.update(hash.as_bytes());
        ctx.update(password);
        let mut tag = [0u8; 32];
        tag.copy_from_slice(ctx.sign().as_ref());
        tag
    }
}

/// `Basic <base64 user:password>` (the scheme case-insensitive, as Go's `BasicAuth`): the
/// user and the password, split at the first colon.
fn parse_basic(header: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let text = std::str::from_utf8(header).ok()?.trim();
    let (scheme, b64) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    Some((decoded[..colon].to_vec(), decoded[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// bcrypt("secret", cost 4) by libxcrypt (Python's `crypt`), another implementation.
    const SECRET: &str = "$2b$04$Y1gv0YPLTxQ63bjVTzi85ev7J/eF2mqRNO70DEimuzLnpMF5IWHXa";

    fn basic(user: &str, password: &str) -> Vec<u8> {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {b}").into_bytes()
    }

    fn users() -> BTreeMap<String, String> {
        BTreeMap::from([("alice".to_string(), SECRET.to_string())])
    }

    #[tokio::test]
    async fn right_wrong_unknown_and_malformed() {
        let v = Verifier::new();
        let u = users();
        assert_eq!(
            v.check(&u, Some(&basic("alice", "secret"))).await,
            Verdict::Allowed
        );
        assert_eq!(
            v.check(&u, Some(b"bAsIc YWxpY2U6c2VjcmV0")).await,
            Verdict::Allowed
        );
        assert_eq!(
            v.check(&u, Some(&basic("alice", "wrong"))).await,
            Verdict::Denied
        );
        // The right password of another user is no password for an unknown one.
        assert_eq!(
            v.check(&u, Some(&basic("bob", "secret"))).await,
            Verdict::Denied
        );
        assert_eq!(v.check(&u, None).await, Verdict::Denied);
        for bad in [&b"Bearer x"[..], b"Basic !!!", b"Basic YWxpY2U=", b"\xff"] {
            assert_eq!(v.check(&u, Some(bad)).await, Verdict::Denied);
        }
    }

    #[tokio::test]
    async fn each_distinct_credential_costs_one_bcrypt() {
        let v = Verifier::new();
        let u = users();
        assert_eq!(
            v.check(&u, Some(&basic("alice", "wrong"))).await,
            Verdict::Denied
        );
        assert_eq!(
            v.check(&u, Some(&basic("alice", "secret"))).await,
            Verdict::Allowed
        );
        // Remembered: no bcrypt, so no wait for the rest of the previous one either.
        let start = Instant::now();
        for _ in 0..1000 {
            assert_eq!(
                v.check(&u, Some(&basic("alice", "secret"))).await,
                Verdict::Allowed
            );
            assert_eq!(
                v.check(&u, Some(&basic("alice", "wrong"))).await,
                Verdict::Denied
            );
        }
        assert!(start.elapsed().as_millis() < 500, "{:?}", start.elapsed());
    }

    #[tokio::test]
    async fn a_changed_hash_is_not_trusted_from_memory() {
        let v = Verifier::new();
        assert_eq!(
            v.check(&users(), Some(&basic("alice", "secret"))).await,
            Verdict::Allowed
        );
        // The same password under another hash (alice's password changed): verified again.
        let other = BTreeMap::from([(
            "alice".to_string(),
            bcrypt::hash_with_salt("other", 4, [7; 16])
                .unwrap()
                .to_string(),
        )]);
        assert_eq!(
            v.check(&other, Some(&basic("alice", "secret"))).await,
            Verdict::Denied
        );
    }

    #[tokio::test]
    async fn a_flood_of_new_passwords_waits_its_turn_then_gets_429() {
        let v = Verifier::new();
        // Cost 10: tens of milliseconds per verification (more in a debug build).
        let u = BTreeMap::from([(
            "alice".to_string(),
            bcrypt::hash_with_salt("secret", 10, [3; 16])
                .unwrap()
                .to_string(),
        )]);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..200 {
            let (v, u) = (v.clone(), u.clone());
            tasks.push(tokio::spawn(async move {
                v.check(&u, Some(&basic("alice", &format!("guess{i}"))))
                    .await
            }));
        }
        let mut verdicts = Vec::new();
        for t in tasks {
            verdicts.push(t.await.unwrap());
        }
        let busy = verdicts.iter().filter(|v| **v == Verdict::Busy).count();
        let denied = verdicts.iter().filter(|v| **v == Verdict::Denied).count();
        assert_eq!(busy + denied, 200);
        // Within AUTH_WAIT (2 s), one bcrypt at a time within the budget: far fewer than 200.
        assert!(denied < 100, "{denied} verified");
        assert!(busy > 100, "{busy} busy");
        assert!(
            start.elapsed() < defaults::AUTH_WAIT * 3,
            "{:?}",
            start.elapsed()
        );
    }
}
