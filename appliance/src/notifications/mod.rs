//! Notifications for users: a new follower, a reply to their comment, a
//! like milestone on their video (1, 10, 100, … likes), their upload
//! ready or failed. Owns making them (`create`: who is told what, once),
//! reading them (`read`: the list with its unread count, marking read,
//! a user's stream with its `Last-Event-ID` replay), the per-user fan-out
//! in this process (`hub`) and between processes through the hot store's
//! Redis (`fanout`). `api::service::Notifications`.
//!
//! May call: `store` (the `notifications` table, and the likes, videos
//! and users it joins), `engagement` (the hot store's pub/sub). Engagement
//! reaches it through `engagement::Notifier`, which the composition root
//! wires to it (so engagement never imports it); `videos` calls
//! `video_settled` when a transcode's outcome is committed.
//!
//! Invariants: a notification is in the catalog (committed) before any
//! stream hears of it, and a stream hears of it at most once per
//! connection; nobody is notified of their own action; one notification
//! per dedupe key (a follower, a reply, a video's milestone, an upload's
//! outcome), so repeats — unlike and like again — tell nobody twice; a
//! notification about a video the recipient may no longer see still lists,
//! without its link (`store::may_see`, the one visibility rule).

mod create;
mod fanout;
mod hub;
mod read;

use std::sync::Arc;

use api::wire::*;
use api::ApiResult;
use futures::stream::BoxStream;
use tokio::sync::watch;

use crate::engagement::Engagement;
use crate::store::Catalog;
use hub::Hub;
use read::wire;

pub struct Notifications {
    catalog: Catalog,
    engagement: Arc<Engagement>,
    hub: Arc<Hub>,
}

impl Notifications {
    pub fn new(catalog: Catalog, engagement: Arc<Engagement>) -> Self {
        Self {
            catalog,
            engagement,
            hub: Arc::new(Hub::default()),
        }
    }

    /// The fan-out between processes (nothing without Redis); the tasks
    /// end when `shutdown` turns true.
    pub fn spawn(
        self: &Arc<Self>,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        fanout::spawn(self.clone(), shutdown)
    }
}

impl api::service::Notifications for Notifications {
    async fn notifications(
        &self,
        caller: &Principal,
        query: NotificationsQuery,
    ) -> ApiResult<NotificationPage> {
        Ok(self.list(caller, query).await?)
    }

    async fn mark_read(&self, caller: &Principal, req: MarkRead) -> ApiResult<UnreadCount> {
        Ok(Notifications::mark_read(self, caller, req).await?)
    }

    async fn notification_events(
        &self,
        caller: &Principal,
        last_event_id: Option<i64>,
    ) -> ApiResult<BoxStream<'static, NotificationEvent>> {
        Ok(self.events(caller, last_event_id).await?)
    }
}

#[cfg(test)]
mod tests;
