//! Bounded verification cache.
//!
//! Signature checks cost 0.2–1.5 ms inside Envoy's V8, so a session's
//! repeated requests must not repeat them. The cache maps a token string to
//! its [`VerifiedToken`].
//!
//! - **Key.** The token itself, hashed with std's randomly keyed SipHash and
//!   compared byte for byte on a hit, so no hash collision can ever return
//!   another caller's identity. (A SHA-256 key was measured at 2–5 µs per
//!   lookup in V8 for ordinary token sizes, against ~0.5 µs for this; the
//!   price is the token's bytes per entry, and only tokens that verified are
//!   stored, so a flood of forged tokens cannot fill memory.)
//! - **Scope.** One cache per worker VM and per policy: the host clears it
//!   (or builds a new one) whenever the policy changes, because issuers,
//!   audiences and keys may have changed. Revocation is *not* cached: the
//!   host runs `check_revoked` on every request, hits included.
//! - **Expiry.** An entry is returned only while `now < exp`, i.e. without
//!   the issuer's leeway. The verifier accepts up to `exp + leeway`, so a
//!   cached token never outlives what verification would accept (during the
//!   leeway window it is simply re-verified). `nbf`/`iat` need no care: time
//!   only moves forward, so a token that was valid stays valid until `exp`.
//! - **Bound.** At most `capacity` entries. When full, expired entries are
//!   swept first (at most once per second of `now`, so a stream of distinct
//!   tokens cannot make every insert scan the whole map), then the oldest
//!   insertion is evicted. Every operation is O(1) amortised.
//! - **Failures are not cached.** A forger can change one byte of the token
//!   per request, so a negative cache would not save work against an attack;
//!   it would only keep a briefly-invalid token (clock skew, a JWKS rotation
//!   in flight) invalid for longer.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use super::VerifiedToken;

struct Entry {
    token: Rc<VerifiedToken>,
    /// Insertion sequence number; matches the queue entry that owns it.
    seq: u64,
}

/// See the module documentation.
pub struct TokenCache {
    capacity: usize,
    map: HashMap<Rc<str>, Entry>,
    /// Insertion order (oldest first). May hold stale pairs whose key was
    /// since replaced or swept; those are skipped and compacted.
    order: VecDeque<(Rc<str>, u64)>,
    next_seq: u64,
    /// `now` of the last expiry sweep.
    last_sweep: Option<u64>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("capacity", &self.capacity)
            .field("len", &self.map.len())
            .finish()
    }
}

impl TokenCache {
    /// A cache holding at most `capacity` tokens (0 disables caching).
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            capacity,
            map: HashMap::with_capacity(capacity.min(4096)),
            order: VecDeque::new(),
            next_seq: 0,
            last_sweep: None,
        }
    }

    /// The verified token for `token`, if cached and not expired at `now`.
    /// An expired entry found here is removed.
    pub fn get(&mut self, token: &str, now: u64) -> Option<VerifiedToken> {
        let expired = now >= self.map.get(token)?.token.exp;
        if expired {
            self.map.remove(token);
            return None;
        }
        self.lookup(token, now).cloned()
    }

    /// Like [`TokenCache::get`], without cloning. (Expired entries are not
    /// returned; they are removed by the next sweep or eviction.)
    ///
    /// Cloning a `VerifiedToken` (every claim) costs a few µs in V8, more
    /// than the lookup itself: prefer this or [`TokenCache::get_shared`] on
    /// the request path.
    pub fn lookup(&self, token: &str, now: u64) -> Option<&VerifiedToken> {
        self.map
            .get(token)
            .filter(|e| now < e.token.exp)
            .map(|e| &*e.token)
    }

    /// Like [`TokenCache::get`], sharing the cached token instead of
    /// cloning it.
    pub fn get_shared(&self, token: &str, now: u64) -> Option<Rc<VerifiedToken>> {
        self.map
            .get(token)
            .filter(|e| now < e.token.exp)
            .map(|e| Rc::clone(&e.token))
    }

    /// Remember a token that just verified at `now`. Ignored when it is
    /// already expired (by `exp` alone), longer than
    /// [`super::jwt::MAX_TOKEN_LEN`], or the capacity is 0.
    pub fn insert(&mut self, token: &str, verified: VerifiedToken, now: u64) {
        self.insert_shared(token, Rc::new(verified), now);
    }

    /// [`TokenCache::insert`] for a token already shared with the caller.
    pub fn insert_shared(&mut self, token: &str, verified: Rc<VerifiedToken>, now: u64) {
        if self.capacity == 0 || now >= verified.exp || token.len() > super::jwt::MAX_TOKEN_LEN {
            return;
        }
        if !self.map.contains_key(token) {
            while self.map.len() >= self.capacity {
                if !self.make_room(now) {
                    return;
                }
            }
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let key: Rc<str> = Rc::from(token);
        self.map.insert(
            Rc::clone(&key),
            Entry {
                token: verified,
                seq,
            },
        );
        self.order.push_back((key, seq));
        // Stale queue entries (replaced or swept keys) are dropped once they
        // outnumber the live ones, keeping the queue within 2 × capacity.
        if self.order.len() > self.capacity.saturating_mul(2) {
            self.compact_order();
        }
    }

    fn compact_order(&mut self) {
        let map = &self.map;
        self.order
            .retain(|(k, s)| map.get(k).is_some_and(|e| e.seq == *s));
    }

    /// Free at least one slot: sweep expired entries (once per `now`
    /// second), else evict the oldest live entry. False if nothing could be
    /// freed (cannot happen while the map is non-empty).
    fn make_room(&mut self, now: u64) -> bool {
        if self.last_sweep != Some(now) {
            self.last_sweep = Some(now);
            let before = self.map.len();
            self.map.retain(|_, e| now < e.token.exp);
            if self.map.len() < before {
                self.compact_order();
                return true;
            }
        }
        while let Some((k, s)) = self.order.pop_front() {
            if self.map.get(&k).is_some_and(|e| e.seq == s) {
                self.map.remove(&k);
                return true;
            }
        }
        false
    }

    /// Forget everything (the policy changed).
    pub fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
        self.last_sweep = None;
    }

    /// Number of cached tokens (expired ones not yet removed included).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn vt(sub: &str, exp: u64) -> VerifiedToken {
        VerifiedToken {
            issuer_name: "corp".into(),
            iss: "https://corp".into(),
            sub: sub.into(),
            exp,
            jti: None,
            groups: vec![],
            claims: Map::new(),
        }
    }

    #[test]
    fn hit_miss_and_expiry() {
        let mut c = TokenCache::new(8);
        assert!(c.get("a", 100).is_none());
        c.insert("a", vt("alice", 200), 100);
        assert_eq!(c.get("a", 100).unwrap().sub, "alice");
        assert_eq!(c.get("a", 199).unwrap().sub, "alice");
        assert!(c.lookup("b", 100).is_none());
        assert_eq!(c.get_shared("a", 100).unwrap().sub, "alice");
        assert!(c.get_shared("a", 200).is_none());
        // Expires exactly at exp (no leeway); `get` removes it.
        assert!(c.lookup("a", 200).is_none());
        assert_eq!(c.len(), 1);
        assert!(c.get("a", 200).is_none());
        assert_eq!(c.len(), 0);
        // Already expired tokens are not stored.
        c.insert("x", vt("x", 50), 100);
        assert!(c.get("x", 40).is_none());
        assert!(c.is_empty());
    }

    #[test]
    fn replacing_a_key_keeps_one_entry() {
        let mut c = TokenCache::new(2);
        for i in 0..100 {
            c.insert("same", vt(&format!("s{i}"), 1000), 10);
        }
        assert_eq!(c.len(), 1);
        assert_eq!(c.get("same", 10).unwrap().sub, "s99");
        assert!(c.order.len() <= 4);
    }

    #[test]
    fn bounded_under_flood() {
        let mut c = TokenCache::new(16);
        for i in 0..10_000u64 {
            c.insert(&format!("tok-{i}"), vt("x", 1_000_000), 10 + i / 100);
            assert!(c.len() <= 16);
            assert!(c.order.len() <= 32);
        }
        // The newest ones survive; the oldest were evicted.
        assert!(c.get("tok-9999", 200).is_some());
        assert!(c.get("tok-9984", 200).is_some());
        assert!(c.get("tok-9983", 200).is_none());
        assert!(c.get("tok-0", 200).is_none());
    }

    #[test]
    fn expired_entries_are_evicted_first() {
        let mut c = TokenCache::new(3);
        c.insert("old-long", vt("a", 10_000), 100);
        c.insert("short", vt("b", 150), 100);
        c.insert("long", vt("c", 10_000), 100);
        // At 200 "short" has expired: it goes, not the oldest.
        c.insert("new", vt("d", 10_000), 200);
        assert_eq!(c.len(), 3);
        assert!(c.get("old-long", 200).is_some());
        assert!(c.get("long", 200).is_some());
        assert!(c.get("new", 200).is_some());
        // Nothing expired: the oldest goes.
        c.insert("newer", vt("e", 10_000), 300);
        assert!(c.get("old-long", 300).is_none());
        assert!(c.get("long", 300).is_some());
        assert!(c.get("newer", 300).is_some());
    }

    #[test]
    fn clear_and_zero_capacity() {
        let mut c = TokenCache::new(4);
        c.insert("a", vt("a", 1000), 1);
        c.clear();
        assert!(c.get("a", 1).is_none());
        c.insert("a", vt("a", 1000), 1);
        assert!(c.get("a", 1).is_some());
        let mut c = TokenCache::new(4);
        let huge = "x".repeat(super::super::jwt::MAX_TOKEN_LEN + 1);
        c.insert(&huge, vt("a", 1000), 1);
        assert!(c.is_empty());
        let mut z = TokenCache::new(0);
        z.insert("a", vt("a", 1000), 1);
        assert!(z.get("a", 1).is_none());
        assert_eq!(z.capacity(), 0);
    }

    #[test]
    fn distinct_tokens_distinct_entries() {
        let mut c = TokenCache::new(4);
        c.insert("a.b.c", vt("one", 1000), 1);
        assert!(c.get("a.b.", 1).is_none());
        assert!(c.get("a.b.cc", 1).is_none());
        c.insert("a.b.d", vt("two", 1000), 1);
        assert_eq!(c.get("a.b.c", 1).unwrap().sub, "one");
        assert_eq!(c.get("a.b.d", 1).unwrap().sub, "two");
    }
}
