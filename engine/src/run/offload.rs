//! Blocking work (git, the disk) and the async runtime's workers.
//!
//! Handing work to the blocking pool and taking its result back costs two thread switches
//! each time, a tenth of a millisecond or more on a small machine: for a step that does
//! little (a `true`, a cached result) that was most of what it cost. So blocking work whose
//! recent runs were short ([`SHORT`]) runs on the worker at once, and longer work (a status
//! of a big worktree, a checkout, a merge of big trees) goes to the pool, where it never
//! holds up the runtime. Each kind of work is known by where it is called from, and keeps a
//! moving average of how long it took; work never seen before goes to the pool.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::{AssertUnwindSafe, Location};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Work whose recent runs averaged less than this runs on the worker.
const SHORT: Duration = Duration::from_micros(1000);

/// How long each kind of work has been taking, in microseconds (a moving average, weighting
/// the newest run a quarter).
static RECENT: Mutex<BTreeMap<&'static Location<'static>, u64>> = Mutex::new(BTreeMap::new());

fn is_short(site: &'static Location<'static>) -> bool {
    let micros = RECENT.lock().ok().and_then(|r| r.get(site).copied());
    micros.is_some_and(|m| u128::from(m) < SHORT.as_micros())
}

fn took(site: &'static Location<'static>, elapsed: Duration) {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    if let Ok(mut recent) = RECENT.lock() {
        let average = recent.entry(site).or_insert(micros);
        *average = (*average / 4).saturating_mul(3).saturating_add(micros / 4);
    }
}

/// Runs blocking work: on this worker at once when work from this call site has been short,
/// else on the blocking pool. A panic in it is an error, not the caller's panic.
#[track_caller]
pub(crate) fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> impl Future<Output = Result<T, String>> {
    let site = Location::caller();
    async move {
        let timed = move || {
            let start = Instant::now();
            let out = f();
            took(site, start.elapsed());
            out
        };
        if is_short(site) {
            return std::panic::catch_unwind(AssertUnwindSafe(timed))
                .map_err(|_| "the blocking work panicked".to_owned());
        }
        tokio::task::spawn_blocking(timed)
            .await
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::thread::ThreadId;

    use super::*;

    fn here() -> ThreadId {
        std::thread::current().id()
    }

    async fn at_one_site(f: impl FnOnce() -> ThreadId + Send + 'static) -> ThreadId {
        blocking(f).await.unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn short_work_runs_on_the_worker_once_it_is_known_to_be_short() {
        // Never seen: the pool.
        let worker = here();
        assert_ne!(at_one_site(here).await, worker);
        // Seen, and short: here, at once.
        let worker = here();
        assert_eq!(at_one_site(here).await, worker);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn long_work_goes_to_the_pool_again() {
        async fn site(sleep: Duration) -> bool {
            let worker = here();
            blocking(move || {
                std::thread::sleep(sleep);
                here()
            })
            .await
            .unwrap()
                == worker
        }
        assert!(!site(Duration::ZERO).await, "never seen: the pool");
        assert!(site(Duration::ZERO).await, "short: the worker");
        // A long run on the worker tips the average: the next goes to the pool, and stays
        // there until the average is short again.
        assert!(site(SHORT * 8).await);
        assert!(!site(Duration::ZERO).await);
        let mut runs = 1;
        while !site(Duration::ZERO).await {
            runs += 1;
            assert!(runs < 20, "short runs bring the average down");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_in_blocking_work_is_an_error_on_the_pool_and_on_the_worker() {
        async fn site(fail: bool) -> Result<u8, String> {
            blocking(move || if fail { panic!("broken") } else { 1 }).await
        }
        assert_eq!(site(false).await, Ok(1), "never seen: the pool");
        assert!(site(true).await.is_err(), "short: the worker");
        let never_seen = blocking(|| -> u8 { panic!("broken") }).await;
        assert!(never_seen.is_err(), "the pool");
    }
}
