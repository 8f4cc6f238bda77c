//! The per-user fan-out in this process: a broadcast channel per user with
//! an open stream, and a relay of everything published here to the other
//! processes (`fanout`). Nothing here is durable: the catalog is, and a
//! stream that falls behind or reconnects catches up from it.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use api::wire::Notification;
use futures::Stream;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::BroadcastStream;

/// Buffered per user before a slow stream is cut off (it reconnects with
/// `Last-Event-ID` and replays from the catalog).
const BACKLOG: usize = 64;

/// What a user's streams are sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Push {
    /// A stored notification: its id (the order streams replay in) and
    /// its wire form.
    Notification { id: i64, item: Arc<Notification> },
    /// The unread count after some were marked read.
    Unread(u64),
}

#[derive(Default)]
pub struct Hub {
    users: Mutex<HashMap<String, broadcast::Sender<Push>>>,
    /// Pushes for the other processes (`fanout`), when there are any.
    outbox: Mutex<Option<mpsc::UnboundedSender<(String, Push)>>>,
}

impl Hub {
    /// From now on, every push published here is also sent to `tx`.
    pub fn relay_to(&self, tx: mpsc::UnboundedSender<(String, Push)>) {
        *self.outbox.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
    }

    /// Sends `push` to `user`'s streams here and, through the relay, to
    /// those of the other processes.
    pub fn publish(&self, user: &str, push: Push) {
        if let Some(tx) = self
            .outbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            let _ = tx.send((user.to_owned(), push.clone()));
        }
        self.deliver(user, push);
    }

    /// A push from another process: for this process's streams only.
    pub fn deliver_remote(&self, user: &str, push: Push) {
        self.deliver(user, push);
    }

    fn deliver(&self, user: &str, push: Push) {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let gone = users
            .get(user)
            .is_some_and(|tx| tx.send(push).is_err() && tx.receiver_count() == 0);
        if gone {
            users.remove(user);
        }
    }

    /// A stream of what is published for `user` from now on. It ends when
    /// it falls more than `BACKLOG` pushes behind.
    pub fn subscribe(self: &Arc<Self>, user: &str) -> Subscription {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let rx = users
            .entry(user.to_owned())
            .or_insert_with(|| broadcast::channel(BACKLOG).0)
            .subscribe();
        Subscription {
            inner: Some(BroadcastStream::new(rx)),
            hub: self.clone(),
            user: user.to_owned(),
        }
    }

    #[cfg(test)]
    fn users(&self) -> usize {
        self.users.lock().unwrap().len()
    }
}

/// One stream's receiver; the user's channel goes when its last stream
/// does, so a user who once connected costs nothing afterwards.
pub struct Subscription {
    inner: Option<BroadcastStream<Push>>,
    hub: Arc<Hub>,
    user: String,
}

impl Stream for Subscription {
    type Item = Push;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Push>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_next(cx) {
            Poll::Ready(Some(Ok(push))) => Poll::Ready(Some(push)),
            Poll::Ready(Some(Err(lagged))) => {
                // Skipping would lose notifications for good; ending makes
                // the client reconnect and replay them from the catalog.
                tracing::debug!(user = %self.user, "notification stream fell behind ({lagged}); closing it");
                self.inner = None;
                Poll::Ready(None)
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // The receiver first, so the count below no longer includes it.
        self.inner = None;
        let mut users = self.hub.users.lock().unwrap_or_else(|p| p.into_inner());
        if users
            .get(&self.user)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            users.remove(&self.user);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn item(id: i64) -> Push {
        Push::Notification {
            id,
            item: Arc::new(Notification {
                id: id.to_string(),
                kind: api::wire::NotificationKind::Follower,
                created_at: String::new(),
                read: false,
                actor: None,
                video: None,
                comment: None,
                milestone: None,
                reason: None,
            }),
        }
    }

    #[tokio::test]
    async fn each_user_hears_only_their_own_and_every_stream_of_theirs_hears_it() {
        let hub = Arc::new(Hub::default());
        let mut a1 = hub.subscribe("a");
        let mut a2 = hub.subscribe("a");
        let mut b = hub.subscribe("b");
        hub.publish("a", item(1));
        hub.publish("b", Push::Unread(3));
        hub.deliver_remote("a", item(2));
        for s in [&mut a1, &mut a2] {
            assert_eq!(s.next().await, Some(item(1)));
            assert_eq!(s.next().await, Some(item(2)));
        }
        assert_eq!(b.next().await, Some(Push::Unread(3)));
        // Nothing for nobody: no channel is made for a user without streams.
        hub.publish("c", item(4));
        assert_eq!(hub.users(), 2);
    }

    #[tokio::test]
    async fn local_pushes_are_relayed_and_remote_ones_are_not() {
        let hub = Arc::new(Hub::default());
        let (tx, mut relayed) = mpsc::unbounded_channel();
        hub.relay_to(tx);
        hub.deliver_remote("a", item(1));
        assert!(relayed.try_recv().is_err());
        hub.publish("a", item(2));
        assert_eq!(relayed.try_recv().unwrap(), ("a".to_owned(), item(2)));
    }

    #[tokio::test]
    async fn the_last_stream_to_go_takes_the_channel_and_a_laggard_is_cut_off() {
        let hub = Arc::new(Hub::default());
        let first = hub.subscribe("a");
        let mut second = hub.subscribe("a");
        drop(first);
        assert_eq!(hub.users(), 1);
        for i in 0..(BACKLOG as i64 + 5) {
            hub.publish("a", item(i));
        }
        // Behind by more than the backlog: the stream ends rather than
        // skipping what it missed.
        assert_eq!(second.next().await, None);
        drop(second);
        assert_eq!(hub.users(), 0);
    }
}
