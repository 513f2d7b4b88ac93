//! A wrapper that polls a seldom-ready future only after it woke.
//!
//! A `select!` loop polls every branch at every turn. The session loop of a plain-TCP pool
//! connection turns once per pool answer (once per share), and four of its branches are
//! wake-ups that fire seldom (two cancellation tokens, the direct path's flush request, the
//! submit queue); polling one of them takes its `Notify`'s lock even when nothing happened.
//! [`Rare`] gives its future a waker of its own (shared by the loop's `Rare`s, see [`Wakes`]):
//! the future is polled again only when that waker was woken, and a turn costs an atomic load
//! and a waker registration.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// The waker handed to the inner futures of one [`Wakes`]: counts the wakes and wakes the
/// task.
#[derive(Debug, Default)]
struct Flag {
    /// Wakes so far.
    count: AtomicU64,
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.count.fetch_add(1, Ordering::AcqRel);
        self.task.wake();
    }
}

/// The one waker the [`Rare`] futures of a loop share (one allocation for all of them).
/// Any wake makes every one of them poll its future at its next poll: they are rare.
#[derive(Debug, Default)]
pub(crate) struct Wakes(Arc<Flag>);

/// [`Rare::seen`] of a future not polled yet (the count never gets there).
const UNSEEN: u64 = u64::MAX;

/// `inner`, polled only on the first poll, after [`Rare::set`], and after the [`Wakes`] it
/// shares was woken since it was last polled.
pub(crate) struct Rare<'a, F> {
    inner: Pin<&'a mut F>,
    wakes: &'a Wakes,
    /// The wake count when `inner` was last polled; [`UNSEEN`]: poll it at the next poll.
    seen: u64,
}

impl<'a, F: Future> Rare<'a, F> {
    /// Wraps `inner`, woken through `wakes`; it is polled at the first poll.
    pub(crate) fn new(inner: Pin<&'a mut F>, wakes: &'a Wakes) -> Self {
        Self {
            inner,
            wakes,
            seen: UNSEEN,
        }
    }

    /// Replaces the inner future (after it completed); the new one is polled at the next
    /// poll.
    pub(crate) fn set(&mut self, inner: F) {
        self.inner.set(inner);
        self.seen = UNSEEN;
    }
}

impl<F: Future> Future for Rare<'_, F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let flag = &this.wakes.0;
        // Registered before the count is read: a wake between the two wakes this task again.
        flag.task.register(cx.waker());
        let count = flag.count.load(Ordering::Acquire);
        if this.seen == count {
            return Poll::Pending;
        }
        this.seen = count;
        // The same waker at every poll, so the inner future keeps its registration.
        let waker = Waker::from(flag.clone());
        this.inner.as_mut().poll(&mut Context::from_waker(&waker))
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::sync::atomic::AtomicUsize;

    use tokio::sync::Notify;

    use super::*;

    /// A `Notified` that counts its polls.
    struct Counted<'a> {
        notified: Pin<Box<tokio::sync::futures::Notified<'a>>>,
        polls: &'a AtomicUsize,
    }

    impl Future for Counted<'_> {
        type Output = ();

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let this = self.get_mut();
            this.polls.fetch_add(1, Ordering::SeqCst);
            this.notified.as_mut().poll(cx)
        }
    }

    #[tokio::test]
    async fn the_inner_future_is_polled_again_only_after_it_woke_and_then_completes() {
        let notify = Notify::new();
        let polls = AtomicUsize::new(0);
        let mut counted = pin!(Counted {
            notified: Box::pin(notify.notified()),
            polls: &polls,
        });
        let wakes = Wakes::default();
        let mut rare = Rare::new(counted.as_mut(), &wakes);
        for _ in 0..5 {
            assert!(futures_util::poll!(&mut rare).is_pending());
        }
        assert_eq!(
            polls.load(Ordering::SeqCst),
            1,
            "polled once, then left alone"
        );
        notify.notify_one();
        assert!(
            futures_util::poll!(&mut rare).is_ready(),
            "woken: polled and done"
        );
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_wake_reaches_the_task_awaiting_it_and_set_renews_the_future() {
        let notify = Arc::new(Notify::new());
        let fut = pin!(notify.notified());
        let wakes = Wakes::default();
        let mut rare = Rare::new(fut, &wakes);
        let n = notify.clone();
        let waker = tokio::spawn(async move {
            tokio::task::yield_now().await;
            n.notify_one();
        });
        tokio::time::timeout(std::time::Duration::from_secs(10), &mut rare)
            .await
            .expect("woken");
        waker.await.unwrap();
        rare.set(notify.notified());
        assert!(futures_util::poll!(&mut rare).is_pending());
        notify.notify_one();
        assert!(futures_util::poll!(&mut rare).is_ready());
    }
}
