//! Reading notifications: the list (newest first, with the unread count),
//! marking them read, and a user's live stream with its replay of what a
//! reconnecting client missed. Every read goes through the catalog's read
//! pool; what a stream replays and what it hears live meet at one id read
//! in the same snapshot as the unread count, so nothing is sent twice or
//! skipped.

use std::sync::Arc;

use api::wire::*;
use futures::stream::{self, BoxStream, StreamExt};

use super::create::Body;
use super::hub::Push;
use super::Notifications;
use crate::error::Result;
use crate::store::catalog::{self as cat, now_ms, rfc3339, Catalog, NotificationRow};
use crate::store::may_see;

/// Notifications read per catalog round trip when a stream replays.
const REPLAY_PAGE: u32 = 200;

/// A stored notification as `viewer` sees it now: the video and the reply
/// link only while the viewer may still see the video (its title stays,
/// as it was when the notification was made). `None` for a kind this
/// binary does not know (a row from a newer release).
pub(super) fn wire(row: NotificationRow, viewer: &Principal) -> Option<Notification> {
    let kind = NotificationKind::parse(&row.kind)?;
    let body: Body = serde_json::from_str(&row.body).unwrap_or_default();
    let seen = row
        .video
        .as_ref()
        .filter(|v| may_see(&v.state, &v.visibility, &v.owner_id, Some(viewer)));
    let video = row.video_id.map(|id| NotificationVideo {
        id: seen.map(|_| id),
        title: match seen {
            Some(v) => v.title.clone(),
            None => body.title.clone().unwrap_or_default(),
        },
    });
    let comment = (kind == NotificationKind::Reply).then(|| NotificationComment {
        id: row.comment_id.filter(|_| seen.is_some()),
        excerpt: body.excerpt.clone().unwrap_or_default(),
    });
    Some(Notification {
        id: row.id.to_string(),
        kind,
        created_at: rfc3339(row.created_at),
        read: row.read,
        actor: row.actor_id.map(|id| NotificationActor {
            id,
            username: row.actor_username.unwrap_or_default(),
        }),
        video,
        comment,
        milestone: body.milestone,
        reason: body.reason,
    })
}

impl Notifications {
    pub async fn list(
        &self,
        caller: &Principal,
        q: NotificationsQuery,
    ) -> Result<NotificationPage> {
        let limit = q.limit.unwrap_or(20);
        let before = q
            .cursor
            .as_deref()
            .map(|c| parse_notification_id("cursor", c))
            .transpose()?;
        let user = caller.user_id.clone();
        let (rows, unread) = self
            .catalog
            .read(move |c| {
                Ok((
                    cat::notifications_page(c, &user, before, limit + 1)?,
                    cat::unread_notifications(c, &user)?,
                ))
            })
            .await?;
        let next_cursor = (rows.len() > limit as usize)
            .then(|| rows.get(limit as usize - 1).map(|r| api::cursor::seq(r.id)))
            .flatten();
        let items = rows
            .into_iter()
            .take(limit as usize)
            .filter_map(|r| wire(r, caller))
            .collect();
        Ok(NotificationPage {
            items,
            next_cursor,
            unread_count: unread,
        })
    }

    pub async fn mark_read(&self, caller: &Principal, req: MarkRead) -> Result<UnreadCount> {
        let (ids, up_to) = match req.scope()? {
            ReadScope::All => (Vec::new(), None),
            ReadScope::Some { ids, up_to } => (ids, up_to),
        };
        let (user, hub) = (caller.user_id.clone(), self.hub.clone());
        let left = self
            .catalog
            .call(move |c| {
                let left = cat::mark_notifications_read(c, &user, &ids, up_to, now_ms())?;
                // Inside the writer, like a new notification's push, so
                // the user's other streams hear counts in commit order.
                hub.publish(&user, Push::Unread(left));
                Ok(left)
            })
            .await?;
        Ok(UnreadCount { unread_count: left })
    }

    /// The caller's stream: the unread count, the notifications after
    /// `last_event_id` (read a page at a time), then live pushes. The
    /// subscription comes first, so nothing made while the snapshot is
    /// read is missed; what the snapshot covers (ids up to its newest) is
    /// not sent again live. A catalog failure mid-replay ends the stream:
    /// the client reconnects from the last id it got.
    pub async fn events(
        &self,
        caller: &Principal,
        last_event_id: Option<i64>,
    ) -> Result<BoxStream<'static, NotificationEvent>> {
        let live = self.hub.subscribe(&caller.user_id);
        let user = caller.user_id.clone();
        let (unread, newest) = self
            .catalog
            .read(move |c| {
                Ok((
                    cat::unread_notifications(c, &user)?,
                    cat::newest_notification(c, &user)?,
                ))
            })
            .await?;
        let first = stream::iter([Ok(NotificationEvent::Unread(UnreadCount {
            unread_count: unread,
        }))]);
        let replay = match last_event_id {
            Some(after) if after < newest => {
                replay(self.catalog.clone(), caller.clone(), after, newest).boxed()
            }
            Some(_) | None => stream::empty().boxed(),
        };
        let live = live.filter_map(move |push| {
            futures::future::ready(match push {
                Push::Notification { id, .. } if id <= newest => None,
                Push::Notification { item, .. } => Some(Ok(NotificationEvent::Notification(
                    Box::new(Arc::unwrap_or_clone(item)),
                ))),
                Push::Unread(n) => Some(Ok(NotificationEvent::Unread(UnreadCount {
                    unread_count: n,
                }))),
            })
        });
        Ok(first
            .chain(replay)
            .chain(live)
            .take_while(|e: &std::result::Result<_, ()>| futures::future::ready(e.is_ok()))
            .filter_map(|e| futures::future::ready(e.ok()))
            .boxed())
    }
}

/// The viewer's notifications after `after` up to `upto`, oldest first,
/// `REPLAY_PAGE` at a time; an `Err` (logged) when the catalog fails.
fn replay(
    catalog: Catalog,
    viewer: Principal,
    after: i64,
    upto: i64,
) -> impl futures::Stream<Item = std::result::Result<NotificationEvent, ()>> {
    stream::unfold(Some(after), move |from| {
        let (catalog, viewer) = (catalog.clone(), viewer.clone());
        async move {
            let from = from?;
            let user = viewer.user_id.clone();
            let rows = catalog
                .read(move |c| cat::notifications_between(c, &user, from, upto, REPLAY_PAGE))
                .await;
            let rows = match rows {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "replaying notifications");
                    return Some((vec![Err(())], None));
                }
            };
            let next = (rows.len() == REPLAY_PAGE as usize)
                .then(|| rows.last().map(|r| r.id))
                .flatten();
            let events = rows
                .into_iter()
                .filter_map(|r| wire(r, &viewer))
                .map(|n| Ok(NotificationEvent::Notification(Box::new(n))))
                .collect::<Vec<_>>();
            Some((events, next))
        }
    })
    .flat_map(stream::iter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::catalog::NotifiedVideo;

    fn row(video: Option<NotifiedVideo>) -> NotificationRow {
        NotificationRow {
            id: 9,
            kind: "reply".into(),
            actor_id: Some("a".into()),
            actor_username: Some("alice".into()),
            video_id: Some("v".into()),
            video,
            comment_id: Some("c".into()),
            body: r#"{"title":"then","excerpt":"nice"}"#.into(),
            created_at: 0,
            read: false,
        }
    }

    fn viewer(id: &str) -> Principal {
        Principal {
            user_id: id.into(),
            role: Role::Viewer,
        }
    }

    #[test]
    fn a_video_the_viewer_can_no_longer_see_lists_without_a_link() {
        let live = NotifiedVideo {
            owner_id: "o".into(),
            title: "now".into(),
            state: "ready".into(),
            visibility: "public".into(),
        };
        let n = wire(row(Some(live.clone())), &viewer("u")).unwrap();
        assert_eq!(n.video.unwrap().id.as_deref(), Some("v"));
        assert_eq!(n.comment.unwrap().id.as_deref(), Some("c"));
        assert_eq!(n.actor.unwrap().username, "alice");

        // Deleted: no row. Made private by its owner: not this viewer's.
        let private = NotifiedVideo {
            visibility: "private".into(),
            ..live
        };
        for gone in [None, Some(private.clone())] {
            let n = wire(row(gone), &viewer("u")).unwrap();
            let video = n.video.unwrap();
            assert_eq!((video.id, video.title.as_str()), (None, "then"));
            let comment = n.comment.unwrap();
            assert_eq!((comment.id, comment.excerpt.as_str()), (None, "nice"));
        }
        // Its owner still may.
        let n = wire(row(Some(private)), &viewer("o")).unwrap();
        assert_eq!(n.video.unwrap().id.as_deref(), Some("v"));
    }

    #[test]
    fn an_unknown_kind_is_left_out() {
        let mut r = row(None);
        r.kind = "from_the_future".into();
        assert!(wire(r, &viewer("u")).is_none());
    }
}
