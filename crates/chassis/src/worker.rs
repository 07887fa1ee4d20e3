//! Background work that repeats on a period and stops with the process: token key refreshes,
//! key rotation, health sweeps.
//!
//! A round that has started is finished before the worker stops (the stop is only looked at
//! between rounds), so a worker never leaves half a unit of work behind.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Runs `round` now and then every `period` until `stop` is cancelled.
pub fn every<F, Fut>(period: Duration, stop: CancellationToken, mut round: F) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        loop {
            if stop.is_cancelled() {
                return;
            }
            round().await;
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(period) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(start_paused = true)]
    async fn runs_at_once_then_on_every_period_until_stopped() {
        let rounds = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let counter = Arc::clone(&rounds);
        let worker = every(Duration::from_secs(10), stop.clone(), move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async {}
        });
        tokio::time::sleep(Duration::from_secs(25)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 3, "at 0 s, 10 s and 20 s");
        stop.cancel();
        worker.await.expect("stops");
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(rounds.load(Ordering::SeqCst), 3);
    }
}
