//! Requests waiting on an order's saga (`GET /orders/{id}?wait=`, a cancellation waiting on
//! the shipment), woken when this instance moves that saga.
//!
//! Each waited-on order has a channel of its own, kept while somebody waits on it, so a move
//! wakes the requests waiting on its order and nobody else. (One channel for every move made
//! each waiter look at every other order's moves too: with a few hundred checkouts in flight
//! that was hundreds of thousands of wake-ups a second, and it grew with the square of the
//! load.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use crate::saga::{Status, Step};

/// When a waiter first looks again anyway: another instance may be running the saga, and its
/// moves are not announced here. Each later look waits twice as long as the one before, up to
/// [`LOOK_AGAIN_AT_MOST`].
///
/// Every look is a read of the saga. Looking four times a second for as long as a wait lasts
/// made an overload feed itself: with a backlog of checkouts, thousands of waiters' looks took
/// half of orders' CPU (docs/decisions.md, 2026-12-07), and the sagas they waited on fell
/// further behind.
pub const LOOK_AGAIN: Duration = Duration::from_millis(250);

/// The longest a waiter goes without looking again: a saga another instance runs is seen
/// settled at most this long after it settled.
pub const LOOK_AGAIN_AT_MOST: Duration = Duration::from_secs(2);

/// A saga's new place, as announced to waiters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The order.
    pub order_id: String,
    /// The saga's status now.
    pub status: Status,
    /// The step it runs next.
    pub step: Option<Step>,
}

/// The orders somebody waits on; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Waiters {
    /// By order id, the latest move announced while somebody waited.
    orders: Arc<Mutex<HashMap<String, watch::Sender<Option<Move>>>>>,
}

impl Waiters {
    /// A watch on the moves of `order_id`'s saga. Take it before reading the order, then
    /// [`Moves::next`] cannot miss a move made after the read.
    pub fn watch(&self, order_id: &str) -> Moves {
        let mut orders = self.orders.lock().unwrap_or_else(PoisonError::into_inner);
        let receiver = match orders.get(order_id) {
            Some(sender) => sender.subscribe(),
            None => {
                let (sender, receiver) = watch::channel(None);
                orders.insert(order_id.to_owned(), sender);
                receiver
            }
        };
        Moves {
            order_id: order_id.to_owned(),
            looks: 0,
            receiver,
            waiters: self.clone(),
        }
    }

    /// Wakes whoever waits on `change`'s order; nobody waiting is not an error.
    pub fn announce(&self, change: Move) {
        let orders = self.orders.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sender) = orders.get(&change.order_id) {
            sender.send_replace(Some(change));
        }
    }

    /// How many orders are waited on (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.orders.lock().map_or(0, |orders| orders.len())
    }
}

/// Moves of one order's saga, as seen by this instance.
#[derive(Debug)]
pub struct Moves {
    order_id: String,
    /// Looks again taken so far: the next waits `LOOK_AGAIN` times two to this power.
    looks: u32,
    receiver: watch::Receiver<Option<Move>>,
    waiters: Waiters,
}

impl Moves {
    /// Returns when the saga may have made a move the waiter wants: this instance made one
    /// (`wanted` says which count; between two looks only the latest move is seen), or it is
    /// time to look again ([`LOOK_AGAIN`], then twice as long each time).
    pub async fn next(&mut self, wanted: impl Fn(&Move) -> bool) {
        let wait = async {
            // The sender lives while this receiver does (it is removed only when its last
            // receiver goes), so `changed` fails only if that ever changes: then wait out
            // the look-again.
            while self.receiver.changed().await.is_ok() {
                if self
                    .receiver
                    .borrow_and_update()
                    .as_ref()
                    .is_some_and(&wanted)
                {
                    return;
                }
            }
            std::future::pending::<()>().await;
        };
        let pause = LOOK_AGAIN
            .saturating_mul(1 << self.looks.min(4))
            .min(LOOK_AGAIN_AT_MOST);
        if tokio::time::timeout(pause, wait).await.is_err() {
            self.looks = self.looks.saturating_add(1);
        }
    }
}

impl Drop for Moves {
    fn drop(&mut self) {
        let mut orders = self
            .waiters
            .orders
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Receivers are taken and dropped under the lock, so the count is exact: 1 is this one.
        if orders
            .get(&self.order_id)
            .is_some_and(|sender| sender.receiver_count() == 1)
        {
            orders.remove(&self.order_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moved(order_id: &str, status: Status) -> Move {
        Move {
            order_id: order_id.to_owned(),
            status,
            step: None,
        }
    }

    /// Whether `next` returned before the look-again.
    async fn woken(moves: &mut Moves, wanted: impl Fn(&Move) -> bool) -> bool {
        let start = tokio::time::Instant::now();
        moves.next(wanted).await;
        start.elapsed() < LOOK_AGAIN
    }

    #[tokio::test(start_paused = true)]
    async fn a_move_wakes_the_waiters_on_its_order_only() {
        let waiters = Waiters::default();
        let mut first = waiters.watch("o-1");
        let mut second = waiters.watch("o-1");
        let mut other = waiters.watch("o-2");
        waiters.announce(moved("o-1", Status::Confirmed));
        assert!(woken(&mut first, |_| true).await);
        assert!(woken(&mut second, |m| m.status == Status::Confirmed).await);
        assert!(
            !woken(&mut other, |_| true).await,
            "o-2 did not move: its waiter waits out the look-again"
        );
        // Seen once: the same move does not wake again.
        assert!(!woken(&mut first, |_| true).await);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unwanted_move_does_not_wake_but_a_later_wanted_one_does() {
        let waiters = Waiters::default();
        let mut moves = waiters.watch("o-1");
        waiters.announce(moved("o-1", Status::Running));
        assert!(!woken(&mut moves, |m| !m.status.is_active()).await);
        let announcer = waiters.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            announcer.announce(moved("o-1", Status::Running));
            tokio::time::sleep(Duration::from_millis(10)).await;
            announcer.announce(moved("o-1", Status::Cancelled));
        });
        let start = tokio::time::Instant::now();
        moves.next(|m| !m.status.is_active()).await;
        assert_eq!(start.elapsed(), Duration::from_millis(20));
    }

    #[tokio::test(start_paused = true)]
    async fn a_move_before_the_watch_is_not_seen_and_one_after_it_is() {
        let waiters = Waiters::default();
        waiters.announce(moved("o-1", Status::Confirmed));
        let mut moves = waiters.watch("o-1");
        assert!(
            !woken(&mut moves, |_| true).await,
            "nobody waited: nothing kept"
        );
        let early = waiters.watch("o-2");
        waiters.announce(moved("o-2", Status::Confirmed));
        let mut late = waiters.watch("o-2");
        drop(early);
        assert!(
            !woken(&mut late, |_| true).await,
            "a watch taken after a move starts from it"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_looks_again_less_and_less_often_up_to_a_bound() {
        let waiters = Waiters::default();
        let mut moves = waiters.watch("o-1");
        let mut pauses = Vec::new();
        for _ in 0..6 {
            let start = tokio::time::Instant::now();
            moves.next(|_| true).await;
            pauses.push(start.elapsed().as_millis());
        }
        assert_eq!(pauses, [250, 500, 1000, 2000, 2000, 2000]);
        assert_eq!(
            LOOK_AGAIN_AT_MOST.as_millis(),
            2000,
            "the bound the pauses stop at"
        );
        // A wanted move still wakes it at once, however long it would have waited.
        let announcer = waiters.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            announcer.announce(moved("o-1", Status::Confirmed));
        });
        let start = tokio::time::Instant::now();
        moves.next(|_| true).await;
        assert_eq!(start.elapsed(), Duration::from_millis(30));
    }

    #[test]
    fn an_order_is_forgotten_when_its_last_waiter_goes() {
        let waiters = Waiters::default();
        let first = waiters.watch("o-1");
        let second = waiters.watch("o-1");
        let other = waiters.watch("o-2");
        assert_eq!(waiters.len(), 2);
        drop(first);
        assert_eq!(waiters.len(), 2, "o-1 still has a waiter");
        drop(second);
        assert_eq!(waiters.len(), 1);
        drop(other);
        assert_eq!(waiters.len(), 0);
        waiters.announce(moved("o-1", Status::Confirmed));
        assert_eq!(waiters.len(), 0, "announcing keeps nothing");
    }
}
