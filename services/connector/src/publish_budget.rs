//! The worker-wide bound on event bytes read from relays and not yet acked by the events
//! stream. Each session bounds its own publishes in flight, but a worker that owns hundreds of
//! relays syncing at once would still hold hundreds of sessions' worth of events in memory (a
//! connector reached 486 MiB on a 20,000-event cold sync of 50 relays). With the budget spent,
//! sessions stop reading their sockets until acks free some of it: back-pressure reaches the
//! relays through TCP instead of the worker's memory. Each budgeted byte costs about four in
//! the process (the frame, the encoded message, the client's buffer): in the bench's
//! 20,000-event world a 64 MiB budget let the connector reach 325 MiB, 16 MiB kept it at
//! 131 MiB, and 8 MiB at 87 MiB, with the same sync time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

#[derive(Debug)]
pub struct PublishBudget {
    limit: usize,
    in_flight: AtomicUsize,
    freed: Notify,
}

/// Bytes taken from the budget; dropping it (the publish was acked or given up) returns them.
#[derive(Debug)]
pub struct BudgetGuard {
    budget: Arc<PublishBudget>,
    bytes: usize,
}

impl PublishBudget {
    pub fn new(limit_bytes: usize) -> Arc<PublishBudget> {
        Arc::new(PublishBudget {
            limit: limit_bytes,
            in_flight: AtomicUsize::new(0),
            freed: Notify::new(),
        })
    }

    /// Whether a session may read another frame.
    pub fn has_room(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) < self.limit
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Takes `bytes` for an event already read. Never refuses: the frame is in memory anyway;
    /// a session overshoots the limit by at most the one frame it read while there was room.
    pub fn take(self: &Arc<Self>, bytes: usize) -> BudgetGuard {
        self.in_flight.fetch_add(bytes, Ordering::AcqRel);
        BudgetGuard {
            budget: Arc::clone(self),
            bytes,
        }
    }

    /// Resolves once there is room (at once if there is).
    pub async fn room(&self) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a release between the check and the await is
            // not missed.
            freed.as_mut().enable();
            if self.has_room() {
                return;
            }
            freed.await;
        }
    }
}

impl Drop for BudgetGuard {
    fn drop(&mut self) {
        let before = self
            .budget
            .in_flight
            .fetch_sub(self.bytes, Ordering::AcqRel);
        if before >= self.budget.limit && before - self.bytes < self.budget.limit {
            self.budget.freed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn taking_past_the_limit_leaves_no_room_until_released() {
        let b = PublishBudget::new(100);
        let first = b.take(60);
        assert!(b.has_room());
        let second = b.take(60);
        assert!(!b.has_room(), "120 of 100 taken");
        assert_eq!(b.in_flight(), 120);
        drop(first);
        assert!(b.has_room());
        drop(second);
        assert_eq!(b.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_waiter_wakes_when_a_release_makes_room() {
        let b = PublishBudget::new(10);
        let held = b.take(10);
        let waiter = tokio::spawn({
            let b = Arc::clone(&b);
            async move { b.room().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "no room yet");
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken within 5 s")
            .unwrap();
        // With room, it resolves at once.
        tokio::time::timeout(Duration::from_secs(1), b.room())
            .await
            .unwrap();
    }
}
