//! The upstreams' bounded submit queue (`Upstream`'s and `Sv1Upstream`'s): from the proxy's
//! threads to the upstream's task.
//!
//! A `VecDeque` under a short lock and a `Notify`, in place of `tokio::sync::mpsc`: tokio's
//! channel allocates its first block of 32 slots and a cache-padded channel (about 1 KB with
//! 16-byte commands) when it is made, and an upstream's queue is used only while no
//! plain-TCP session takes submits directly (connecting, TLS, a daemon). In simple mode
//! there is an upstream per miner, so this queue allocates nothing until a command waits, and
//! gives its memory back once drained.
//!
//! Semantics as the `mpsc` channel it replaces: at most `capacity` commands wait (a full
//! queue refuses, never blocks, never grows); [`Receiver::recv`] returns `None` once the
//! queue is closed ([`Receiver::close`], or every [`Sender`] dropped) and drained; a
//! [`Sender`] learns of the close on its next [`Sender::try_send`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// A queue that held more than this many commands is freed once drained.
const KEEP: usize = 16;

#[derive(Debug)]
struct Shared<T> {
    state: Mutex<State<T>>,
    /// Wakes the receiver: a command came, or the queue closed.
    wake: Notify,
    senders: AtomicUsize,
    capacity: usize,
}

#[derive(Debug)]
struct State<T> {
    queue: VecDeque<T>,
    closed: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }
}

/// Why [`Sender::try_send`] refused a command (it is handed back).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TrySendError<T> {
    /// `capacity` commands wait already.
    Full(T),
    /// The receiver closed the queue, or is gone.
    Closed(T),
}

/// The sending side; clones share the queue. The last one dropped closes it.
#[derive(Debug)]
pub(crate) struct Sender<T>(Arc<Shared<T>>);

/// The receiving side (the upstream's task). Dropping it closes the queue.
#[derive(Debug)]
pub(crate) struct Receiver<T>(Arc<Shared<T>>);

/// A queue of at most `capacity` commands (at least 1).
pub(crate) fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            closed: false,
        }),
        wake: Notify::new(),
        senders: AtomicUsize::new(1),
        capacity: capacity.max(1),
    });
    (Sender(shared.clone()), Receiver(shared))
}

impl<T> Sender<T> {
    /// Queues `value` unless the queue is full or closed. Never blocks.
    pub(crate) fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        let mut st = self.0.lock();
        if st.closed {
            return Err(TrySendError::Closed(value));
        }
        if st.queue.len() >= self.0.capacity {
            return Err(TrySendError::Full(value));
        }
        st.queue.push_back(value);
        drop(st);
        self.0.wake.notify_one();
        Ok(())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.0.senders.fetch_add(1, Ordering::Relaxed);
        Self(self.0.clone())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.0.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.close();
        }
    }
}

impl<T> Receiver<T> {
    /// The next command without waiting: `Err(true)` when the queue is empty and closed,
    /// `Err(false)` when it is empty and open.
    pub(crate) fn try_recv(&mut self) -> Result<T, bool> {
        let mut st = self.0.lock();
        match st.queue.pop_front() {
            Some(value) => {
                if st.queue.is_empty() && st.queue.capacity() > KEEP {
                    // A burst is over: do not keep its memory.
                    st.queue = VecDeque::new();
                }
                Ok(value)
            }
            None => Err(st.closed),
        }
    }

    /// The next command; `None` once the queue is closed and empty. Cancel-safe: a command
    /// is taken out only by the poll that returns it.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        loop {
            match self.try_recv() {
                Ok(value) => return Some(value),
                Err(true) => return None,
                // `notify_one` keeps a permit when nobody waits, so a command queued
                // between the check and the wait is not missed.
                Err(false) => self.0.wake.notified().await,
            }
        }
    }

    /// The receiver's wake-ups, for a loop that keeps one `Notified` across its turns and
    /// takes the commands with [`Receiver::try_recv`] when it fires.
    pub(crate) fn wakes(&self) -> Wakes<T> {
        Wakes(self.0.clone())
    }

    /// Waits `pause`, handing every command that arrives meanwhile to `refuse` (an upstream
    /// between pools answers them). True when the pause ran out; false when `cancel` fired or
    /// the queue closed first.
    pub(crate) async fn pause(
        &mut self,
        cancel: &CancellationToken,
        pause: Duration,
        mut refuse: impl FnMut(T),
    ) -> bool {
        let sleep = tokio::time::sleep(pause);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return false,
                () = &mut sleep => return true,
                cmd = self.recv() => match cmd {
                    Some(cmd) => refuse(cmd),
                    None => return false,
                },
            }
        }
    }

    /// Refuses further commands; those queued can still be received.
    pub(crate) fn close(&mut self) {
        self.0.lock().closed = true;
    }
}

/// A handle on a [`Receiver`]'s wake-ups (see [`Receiver::wakes`]).
#[derive(Debug)]
pub(crate) struct Wakes<T>(Arc<Shared<T>>);

impl<T> Wakes<T> {
    /// Completes when a command was queued or the queue closed since the last one completed
    /// (`notify_one` keeps a permit while no `Notified` waits, so none is missed); made once
    /// and polled at every turn, it registers with the `Notify` once, not at every turn.
    pub(crate) fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.0.wake.notified()
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        // Closed, and what still waits goes with the receiver (as with tokio's channel);
        // dropped outside the lock.
        let left = {
            let mut st = self.0.lock();
            st.closed = true;
            std::mem::take(&mut st.queue)
        };
        drop(left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_queue_allocates_no_slots_and_a_drained_burst_gives_them_back() {
        let (tx, mut rx) = channel::<u64>(1024);
        assert_eq!(rx.0.lock().queue.capacity(), 0);
        for i in 0..100 {
            tx.try_send(i).unwrap();
        }
        for i in 0..100 {
            assert_eq!(rx.try_recv(), Ok(i), "in order");
        }
        assert_eq!(rx.try_recv(), Err(false), "empty, open");
        assert_eq!(rx.0.lock().queue.capacity(), 0, "freed once drained");
    }

    #[test]
    fn a_full_queue_refuses_and_hands_the_command_back() {
        let (tx, mut rx) = channel::<u64>(2);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
        assert_eq!(rx.try_recv(), Ok(1));
        tx.try_send(3).unwrap();
    }

    #[tokio::test]
    async fn closing_refuses_new_commands_and_the_queued_ones_still_come_out() {
        let (tx, mut rx) = channel::<u64>(8);
        tx.try_send(1).unwrap();
        rx.close();
        assert_eq!(tx.try_send(2), Err(TrySendError::Closed(2)));
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn the_last_sender_dropped_ends_the_receiver_once_drained() {
        let (tx, mut rx) = channel::<u64>(8);
        let tx2 = tx.clone();
        tx.try_send(1).unwrap();
        drop(tx);
        tx2.try_send(2).unwrap();
        let waiter = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(v) = rx.recv().await {
                got.push(v);
            }
            got
        });
        tokio::task::yield_now().await;
        drop(tx2);
        assert_eq!(waiter.await.unwrap(), vec![1, 2]);
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_a_command_from_another_thread() {
        let (tx, mut rx) = channel::<u64>(8);
        let sender = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tx.try_send(7).unwrap();
            tx
        });
        assert_eq!(rx.recv().await, Some(7));
        drop(sender.join().unwrap());
        assert_eq!(rx.recv().await, None);
    }

    #[test]
    fn a_dropped_receiver_closes_the_queue_and_drops_what_waited() {
        let (tx, rx) = channel::<Arc<()>>(8);
        let waiting = Arc::new(());
        tx.try_send(waiting.clone()).unwrap();
        drop(rx);
        assert_eq!(Arc::strong_count(&waiting), 1, "dropped with the receiver");
        assert!(matches!(tx.try_send(waiting), Err(TrySendError::Closed(_))));
    }
}
