//! `rate_limit`: exporter-toolkit's limit on requests, a token bucket shared by every client.
//!
//! exporter-toolkit builds `rate.NewLimiter(rate.Every(interval), burst)` (golang.org/x/time)
//! and answers `429 Too Many Requests` to a request for which `Allow()` finds no token. The
//! bucket holds at most `burst` tokens and starts full; a token comes back every `interval`;
//! each request takes one. So `burst: 0` refuses every request, an `interval` of 0 turns the
//! limit off, and a negative one (`rate.Every` of it is `rate.Inf`) lets everything through.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The bucket: `burst` tokens at most, one more every `interval`.
#[derive(Debug)]
pub struct RateLimit {
    interval: Duration,
    burst: i64,
    /// Tokens (fractional, as Go's) and when they were counted.
    bucket: Mutex<(f64, Instant)>,
}

impl RateLimit {
    /// `rate_limit` as written (`interval` in nanoseconds); None where it limits nothing.
    pub fn new(interval_ns: i64, burst: i64) -> Option<RateLimit> {
        let interval = u64::try_from(interval_ns).ok().filter(|&n| n > 0)?;
        Some(RateLimit {
            interval: Duration::from_nanos(interval),
            burst,
            bucket: Mutex::new((burst.max(0) as f64, Instant::now())),
        })
    }

    /// The settings, to keep a bucket across a reload that did not change them.
    pub fn settings(&self) -> (Duration, i64) {
        (self.interval, self.burst)
    }

    /// Takes a token if there is one (Go's `Limiter.Allow`).
    pub fn allow(&self) -> bool {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> bool {
        let mut bucket = self.bucket.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = *bucket;
        // A clock read before another thread's later one counts no time, as in Go.
        let elapsed = now.saturating_duration_since(last);
        let burst = self.burst as f64;
        let tokens = (tokens + elapsed.as_secs_f64() / self.interval.as_secs_f64()).min(burst);
        // As Go's `reserveN`: a refused request changes nothing.
        if tokens >= 1.0 {
            *bucket = (tokens - 1.0, now.max(last));
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_of_burst_tokens_refilled_one_an_interval() {
        let limit = RateLimit::new(1_000_000_000, 3).unwrap();
        let start = limit.bucket.lock().unwrap().1;
        let at = |ms: u64| limit.allow_at(start + Duration::from_millis(ms));
        assert!(at(0) && at(0) && at(0), "starts full");
        assert!(!at(0), "then empty");
        assert!(!at(999));
        assert!(at(1000), "one token a second");
        assert!(!at(1000));
        assert!(
            at(10_000) && at(10_000) && at(10_000),
            "refilled to the burst"
        );
        assert!(!at(10_000), "never past it");
    }

    #[test]
    fn burst_zero_refuses_everything_and_interval_zero_or_negative_limits_nothing() {
        let limit = RateLimit::new(1_000_000_000, 0).unwrap();
        let start = Instant::now();
        for s in [0, 1, 10, 1000] {
            assert!(!limit.allow_at(start + Duration::from_secs(s)));
        }
        let negative = RateLimit::new(1_000_000_000, -5).unwrap();
        assert!(!negative.allow_at(start + Duration::from_secs(60)));
        assert!(RateLimit::new(0, 0).is_none());
        assert!(RateLimit::new(-1, 0).is_none());
    }
}
