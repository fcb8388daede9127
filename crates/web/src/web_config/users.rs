//! `basic_auth_users`: bcrypt hashes by user, checked off the serving thread.
//!
//! bcrypt comparisons cost tens of milliseconds each by design: a success is cached under the
//! user and the SHA-256 of the password presented, never under the user alone, so a cached
//! success cannot let another password in (CVE-2022-46146, where exporter-toolkit's cache key
//! let it). Failures are not cached, so that a client guessing passwords cannot flush the
//! scraper's success out. Requests that present the same credentials while they are being
//! compared wait for that one comparison (its answer is for that user and password alone, as
//! the cache's). The cache lives with one loaded file: a reload starts an empty one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine;
use hyper::header::HeaderValue;
use sha2::{Digest, Sha256};

/// Verified (user, password digest) pairs kept; the cache is emptied when it is full (only
/// right passwords get in, so it fills only when the users do).
const CACHE_LIMIT: usize = 1024;
/// bcrypt comparisons run at once; more wait. A bound on the CPU a client guessing passwords
/// can take (connections bound it too, at `--web.max-connections`).
const CONCURRENT_CHECKS: usize = 4;
/// A bcrypt hash at cost 10 (the cost a `htpasswd -B` hash has by default) of a password no user
/// has, compared for an unknown user so that the answer takes as long as for a known one; a
/// unit test checks that it is a valid hash.
const UNKNOWN_USER_HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

/// Checks a `basic_auth_users` hash at load, as exporter-toolkit's `bcrypt.Cost` does at
/// start: a hash whose cost is outside 4-31 would otherwise start and then answer 401 to
/// everyone.
pub(super) fn check_hash(hash: &str) -> Result<(), String> {
    let parts: bcrypt::HashParts = hash
        .parse()
        .map_err(|e| format!("not a bcrypt hash: {e}"))?;
    let cost = parts.get_cost();
    if !(4..=31).contains(&cost) {
        return Err(format!("not a bcrypt hash: cost {cost} is outside 4-31"));
    }
    Ok(())
}

/// A user and the SHA-256 of the password presented: what the cache and the comparisons under
/// way are keyed by, never the user alone.
type Credentials = (String, [u8; 32]);

/// One comparison's answer, shared by the requests that wait for it.
type Comparison = Arc<tokio::sync::OnceCell<bool>>;

/// `basic_auth_users`: bcrypt hashes by user, and the verified successes.
pub struct Users {
    pub(super) hashes: BTreeMap<String, String>,
    /// Credentials that matched.
    verified: Mutex<HashSet<Credentials>>,
    /// Comparisons under way, each with the requests waiting for it: an entry lives while a
    /// request holds it, so there are never more than requests being answered (one a
    /// connection, within `--web.max-connections`).
    comparing: Mutex<HashMap<Credentials, Comparison>>,
    /// Turns for a bcrypt comparison, [`CONCURRENT_CHECKS`] of them.
    checks: tokio::sync::Semaphore,
    /// bcrypt comparisons done, for the tests.
    compared: AtomicU64,
}

impl Users {
    pub(super) fn new(hashes: BTreeMap<String, String>) -> Users {
        Users {
            hashes,
            verified: Mutex::new(HashSet::new()),
            comparing: Mutex::new(HashMap::new()),
            checks: tokio::sync::Semaphore::new(CONCURRENT_CHECKS),
            compared: AtomicU64::new(0),
        }
    }

    /// Whether an `Authorization` header value names a user and their password. A bcrypt
    /// comparison that is not cached runs on tokio's blocking pool: it takes tens of
    /// milliseconds by design, and the runtime's one thread serves every connection.
    /// Scrapers that connect at once all miss the cache: they wait for one comparison of their
    /// credentials, not one each, as several at once share the cores and each takes longer
    /// (docs/performance.md, "The scrape endpoint under load").
    pub async fn allow(self: &Arc<Self>, authorization: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = authorization.and_then(basic_credentials) else {
            return false;
        };
        let key = (user, Sha256::digest(password.as_bytes()).into());
        if self.cache().contains(&key) {
            return true;
        }
        let waiting = Waiting::join(self, key);
        let comparison = waiting.comparison.as_ref().expect("held until dropped");
        *comparison
            .get_or_init(|| self.compare(&waiting.key, password))
            .await
    }

    /// One bcrypt comparison of `password` with `key`'s user's hash, in turn; a success is
    /// cached. A request whose wait is cut short (its connection closed) leaves the comparison
    /// to the next request waiting for it.
    async fn compare(self: &Arc<Self>, key: &Credentials, password: String) -> bool {
        let Ok(_turn) = self.checks.acquire().await else {
            return false;
        };
        // A comparison of the same credentials may have finished, and left, since this
        // request looked.
        if self.cache().contains(key) {
            return true;
        }
        let users = Arc::clone(self);
        let user = key.0.clone();
        let ok = tokio::task::spawn_blocking(move || {
            users.compared.fetch_add(1, Ordering::Relaxed);
            let (hash, known) = match users.hashes.get(&user) {
                Some(h) => (h.as_str(), true),
                None => (UNKNOWN_USER_HASH, false),
            };
            let matched = bcrypt::verify(&password, hash).unwrap_or(false);
            known && matched
        })
        .await
        .unwrap_or(false);
        if ok {
            let mut cache = self.cache();
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(key.clone());
        }
        ok
    }

    fn cache(&self) -> MutexGuard<'_, HashSet<Credentials>> {
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn comparing(&self) -> MutexGuard<'_, HashMap<Credentials, Comparison>> {
        self.comparing.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A request's hold on the comparison of its credentials; the last one to let go removes it.
struct Waiting<'a> {
    users: &'a Users,
    key: Credentials,
    comparison: Option<Comparison>,
}

impl Waiting<'_> {
    fn join(users: &Users, key: Credentials) -> Waiting<'_> {
        let comparison = Arc::clone(users.comparing().entry(key.clone()).or_default());
        Waiting {
            users,
            key,
            comparison: Some(comparison),
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut comparing = self.users.comparing();
        // Every clone is made and dropped under the lock, so the count read under it is exact.
        drop(self.comparison.take());
        if comparing
            .get(&self.key)
            .is_some_and(|c| Arc::strong_count(c) == 1)
        {
            comparing.remove(&self.key);
        }
    }
}

/// `Basic base64(user:password)` → (user, password).
fn basic_credentials(value: &HeaderValue) -> Option<(String, String)> {
    let text = value.to_str().ok()?;
    let (scheme, encoded) = text.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unknown_user_hash_is_a_valid_bcrypt_hash_at_cost_10() {
        assert_eq!(
            bcrypt::verify("change-me", UNKNOWN_USER_HASH).ok(),
            Some(false)
        );
        assert!(UNKNOWN_USER_HASH.starts_with("$2y$10$"));
    }

    #[test]
    fn a_hash_is_refused_at_load_when_bcrypt_would_refuse_it_at_each_request() {
        let at = |cost: u32| {
            let h = bcrypt::hash("x", 4).unwrap();
            format!("{}{cost:02}{}", &h[..4], &h[6..])
        };
        assert_eq!(check_hash(&at(4)), Ok(()));
        assert_eq!(check_hash(&at(31)), Ok(()));
        for cost in [0, 3, 32, 99] {
            let e = check_hash(&at(cost)).unwrap_err();
            assert!(e.ends_with(&format!("cost {cost} is outside 4-31")), "{e}");
            // bcrypt itself refuses it: without the check, every request would be a 401.
            assert!(bcrypt::verify("x", &at(cost)).is_err());
        }
        assert!(
            check_hash("doe")
                .unwrap_err()
                .starts_with("not a bcrypt hash: ")
        );
    }

    #[test]
    fn basic_credentials_are_parsed() {
        let v = |s: &str| HeaderValue::from_str(s).unwrap();
        // "alice:pa:ss"
        assert_eq!(
            basic_credentials(&v("Basic YWxpY2U6cGE6c3M=")),
            Some(("alice".into(), "pa:ss".into()))
        );
        assert_eq!(basic_credentials(&v("Bearer YWxpY2U6cGE6c3M=")), None);
        assert_eq!(basic_credentials(&v("Basic !!!")), None);
    }

    fn auth(user: &str, pw: &str) -> HeaderValue {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
        HeaderValue::from_str(&format!("Basic {token}")).unwrap()
    }

    #[tokio::test]
    async fn a_cached_success_never_lets_another_password_in() {
        let hash = bcrypt::hash("right", 4).unwrap();
        let users = Arc::new(Users::new(BTreeMap::from([("alice".into(), hash)])));
        for _ in 0..2 {
            assert!(users.allow(Some(&auth("alice", "right"))).await);
            assert!(!users.allow(Some(&auth("alice", "wrong"))).await);
            assert!(!users.allow(Some(&auth("alice", "righ"))).await);
            assert!(!users.allow(Some(&auth("bob", "right"))).await);
            assert!(!users.allow(None).await);
        }
        assert_eq!(users.cache().len(), 1, "only the success is cached");
    }

    /// The answers of `allow` for each of `passwords` as alice, all asked at once.
    async fn at_once(users: &Arc<Users>, passwords: &[String]) -> Vec<bool> {
        let mut asked = tokio::task::JoinSet::new();
        for pw in passwords {
            let (users, header) = (Arc::clone(users), auth("alice", pw));
            asked.spawn(async move { users.allow(Some(&header)).await });
        }
        asked.join_all().await
    }

    #[tokio::test]
    async fn requests_with_the_same_credentials_at_once_share_one_comparison() {
        let hash = bcrypt::hash("right", 6).unwrap();
        let users = Arc::new(Users::new(BTreeMap::from([("alice".into(), hash)])));
        let compared = || users.compared.load(Ordering::Relaxed);
        let right = vec!["right".to_owned(); 50];
        assert!(at_once(&users, &right).await.iter().all(|&ok| ok));
        assert_eq!(compared(), 1, "50 scrapers starting at once");
        assert!(at_once(&users, &right).await.iter().all(|&ok| ok));
        assert_eq!(compared(), 1, "cached");

        // Guesses: one comparison each distinct password, none cached, all refused.
        let mut guesses: Vec<String> = (0..20).map(|i| format!("guess {i}")).collect();
        guesses.extend(std::iter::repeat_n("wrong".to_owned(), 20));
        assert!(at_once(&users, &guesses).await.iter().all(|&ok| !ok));
        assert_eq!(compared(), 1 + 20 + 1);
        assert_eq!(users.cache().len(), 1);
        assert!(users.comparing().is_empty(), "entries left behind");
        assert!(!users.allow(Some(&auth("alice", "wrong"))).await);
        assert_eq!(
            compared(),
            23,
            "a failure is not kept once its requests are answered"
        );
    }

    #[tokio::test]
    async fn a_request_that_stops_waiting_leaves_nothing_behind() {
        let hash = bcrypt::hash("right", 8).unwrap();
        let users = Arc::new(Users::new(BTreeMap::from([("alice".into(), hash)])));
        let header = auth("alice", "right");
        let cut = tokio::time::timeout(
            std::time::Duration::from_millis(1),
            users.allow(Some(&header)),
        );
        assert!(
            cut.await.is_err(),
            "a cost-8 comparison within a millisecond?"
        );
        assert!(users.comparing().is_empty());
        // Two waiters, the first (which compares) cut short: the second compares for itself.
        let first = tokio::time::timeout(
            std::time::Duration::from_millis(1),
            users.allow(Some(&header)),
        );
        let second = users.allow(Some(&header));
        let (first, second) = tokio::join!(first, second);
        assert!(first.is_err());
        assert!(second);
        assert!(users.comparing().is_empty());
    }
}
