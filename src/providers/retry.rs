//! Retries with exponential backoff and full jitter, honouring `Retry-After`; no retry
//! for errors that cannot succeed (bad key, quota, refused content, malformed answers).

use std::future::Future;
use std::time::{Duration, Instant};

use rand::Rng;

use super::{ProviderError, RetryPolicy};

/// One finished attempt, for the step history.
pub(crate) struct Attempt<'a> {
    pub number: u32,
    pub started: chrono::DateTime<chrono::Utc>,
    pub duration: Duration,
    pub error: Option<&'a ProviderError>,
}

/// Longest `Retry-After` we wait for; a longer one fails the call instead.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// Runs `call` until it succeeds, fails permanently, or runs out of attempts. Every
/// attempt is reported to `observe`.
pub(crate) async fn with_retry<T, F, Fut>(
    policy: RetryPolicy,
    call: F,
    observe: impl FnMut(Attempt<'_>),
) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    with_retry_if(policy, call, observe, |e| e.kind.retryable()).await
}

/// [`with_retry`], retrying only the errors `retryable` accepts (a call that creates
/// something at the provider is not repeated after a timeout: the first may have
/// succeeded).
pub(crate) async fn with_retry_if<T, F, Fut>(
    policy: RetryPolicy,
    mut call: F,
    mut observe: impl FnMut(Attempt<'_>),
    retryable: impl Fn(&ProviderError) -> bool,
) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ProviderError>>,
{
    let mut attempt = 1;
    loop {
        let started = chrono::Utc::now();
        let clock = Instant::now();
        let result = call().await;
        observe(Attempt {
            number: attempt,
            started,
            duration: clock.elapsed(),
            error: result.as_ref().err(),
        });
        let err = match result {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if !retryable(&err) || attempt >= policy.max_attempts {
            return Err(err);
        }
        let delay = match err.retry_after {
            Some(after) if after > MAX_RETRY_AFTER => return Err(err),
            Some(after) => after,
            None => backoff(policy, attempt),
        };
        tracing::warn!(attempt, error = %err, delay_ms = delay.as_millis() as u64, "provider call failed; retrying");
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

/// Full jitter: a random delay up to `base × 2^(attempt-1)`, capped.
fn backoff(policy: RetryPolicy, attempt: u32) -> Duration {
    let exp = policy
        .base_delay
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(policy.max_delay);
    let millis = exp.as_millis().max(1) as u64;
    Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ErrorKind;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        }
    }

    #[tokio::test]
    async fn retries_transient_errors_only() {
        let calls = AtomicU32::new(0);
        let mut seen = 0;
        let result: Result<u32, _> = with_retry(
            policy(),
            || async {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                if n < 3 {
                    Err(ProviderError::new(ErrorKind::Server, "500"))
                } else {
                    Ok(n)
                }
            },
            |_| seen += 1,
        )
        .await;
        assert_eq!(result.unwrap(), 3);
        assert_eq!(seen, 3);

        let calls = AtomicU32::new(0);
        let result: Result<u32, _> = with_retry(
            policy(),
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(ProviderError::new(ErrorKind::Unauthorized, "401"))
            },
            |_| {},
        )
        .await;
        assert_eq!(result.unwrap_err().kind, ErrorKind::Unauthorized);
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicU32::new(0);
        let result: Result<u32, _> = with_retry(
            policy(),
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(ProviderError::new(ErrorKind::Timeout, "slow"))
            },
            |_| {},
        )
        .await;
        assert_eq!(result.unwrap_err().kind, ErrorKind::Timeout);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
        };
        assert!(backoff(p, 1) <= Duration::from_millis(100));
        assert!(backoff(p, 3) >= Duration::from_millis(200));
        assert!(backoff(p, 9) <= Duration::from_millis(1000));
    }
}
