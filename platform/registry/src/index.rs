//! The registry's index: one counter that moves on every change, instances and keys alike.
//!
//! Blocking queries park in [`Index::wait_until`] and re-check what they watch each time it moves.
//! The index starts from the highest index stored in the KV table, so it never goes back across
//! restarts for keys; instance indexes restart with the process, which is why clients treat any
//! different index, not only a higher one, as a change.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;

/// The change counter.
#[derive(Debug)]
pub struct Index {
    value: AtomicU64,
    changes: watch::Sender<u64>,
}

impl Index {
    /// Starts at `start`.
    pub fn new(start: u64) -> Self {
        Self {
            value: AtomicU64::new(start),
            changes: watch::Sender::new(start),
        }
    }

    /// The current value.
    pub fn current(&self) -> u64 {
        self.value.load(Ordering::Acquire)
    }

    /// Allocates the next value and wakes every waiter.
    pub fn bump(&self) -> u64 {
        let next = self.value.fetch_add(1, Ordering::AcqRel) + 1;
        self.changes.send_replace(next);
        next
    }

    /// Waits until `moved()` is true, re-checking after every change, for at most `wait`.
    /// Returns whether it moved.
    pub async fn wait_until(&self, wait: Duration, mut moved: impl FnMut() -> bool) -> bool {
        let mut changes = self.changes.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Mark the current value seen before checking, so no change slips in between.
            changes.borrow_and_update();
            if moved() {
                return true;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => continue,
                _ => return moved(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn waiters_wake_on_the_change_they_wait_for() {
        let index = Arc::new(Index::new(7));
        assert_eq!(index.bump(), 8);
        let waiter = {
            let index = Arc::clone(&index);
            tokio::spawn(async move {
                index
                    .wait_until(Duration::from_secs(5), || index.current() >= 10)
                    .await
            })
        };
        index.bump();
        index.bump();
        assert!(waiter.await.expect("joins"));
    }

    #[tokio::test(start_paused = true)]
    async fn wait_gives_up_after_its_time() {
        let index = Index::new(0);
        assert!(!index.wait_until(Duration::from_secs(30), || false).await);
    }
}
