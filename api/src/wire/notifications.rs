//! Notifications for users: a new follower, a reply to their comment, a
//! like milestone on their video, their upload ready or failed. Listed
//! newest first with the unread count, marked read, and pushed over a
//! per-user event stream (`notification` and `unread` events).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::lists::{check_limit, Params};
use crate::error::{ApiError, ApiResult};

/// A notification id, as the box hands it out: decimal digits, in the
/// order the notifications were made.
pub const NOTIFICATION_ID_PATTERN: &str = "^[0-9]{1,18}$";

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// `actor` started following the user.
    Follower,
    /// `actor` replied to the user's comment on `video` (`comment`).
    Reply,
    /// The user's `video` reached `milestone` likes.
    Likes,
    /// The user's upload `video` finished transcoding and plays.
    VideoReady,
    /// The user's upload `video` could not be transcoded (`reason`).
    VideoFailed,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Follower => "follower",
            Self::Reply => "reply",
            Self::Likes => "likes",
            Self::VideoReady => "video_ready",
            Self::VideoFailed => "video_failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Follower,
            Self::Reply,
            Self::Likes,
            Self::VideoReady,
            Self::VideoFailed,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// Who did it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationActor {
    pub id: String,
    pub username: String,
}

/// The video it is about. `id` is absent when the user may no longer see
/// the video (deleted, or made private by someone else): the notification
/// still lists, with the title it had, but links nowhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationVideo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub title: String,
}

/// The reply a `reply` notification is about: its first 100 characters,
/// and its id while its video can still be seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationComment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub excerpt: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    /// Also the event id on the stream (`Last-Event-ID`).
    #[schema(pattern = "^[0-9]{1,18}$")]
    pub id: String,
    pub kind: NotificationKind,
    pub created_at: String,
    pub read: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<NotificationActor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<NotificationVideo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<NotificationComment>,
    /// `likes`: the like count reached (1, 10, 100, 1000, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub milestone: Option<u64>,
    /// `video_failed`: why, in the words the video's status gives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /notifications`: newest first, with the unread count of all of
/// the user's notifications (not only this page's).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationPage {
    pub items: Vec<Notification>,
    /// Opaque: pass it as `cursor` for the next (older) page; `null` when
    /// this page is the last.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
    pub unread_count: u64,
}

/// The user's unread notifications: the answer of `POST
/// /notifications/read`, and the data of the stream's `unread` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnreadCount {
    pub unread_count: u64,
}

/// `POST /notifications/read`: these `ids`, and every notification up to
/// and including `upTo`; with neither, all of them. Ids that are not the
/// caller's are passed over.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MarkRead {
    /// At most 1000.
    #[serde(default)]
    #[schema(max_items = 1000, value_type = Option<Vec<String>>, pattern = "^[0-9]{1,18}$")]
    pub ids: Option<Vec<String>>,
    #[serde(default)]
    #[schema(pattern = "^[0-9]{1,18}$")]
    pub up_to: Option<String>,
}

/// What `MarkRead` asks for, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadScope {
    All,
    Some { ids: Vec<i64>, up_to: Option<i64> },
}

/// A notification id as the box issues them; anything else is a 400
/// naming `field`.
pub fn parse_notification_id(field: &str, s: &str) -> ApiResult<i64> {
    let digits = !s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit());
    digits
        .then(|| s.parse().ok())
        .flatten()
        .ok_or_else(|| ApiError::invalid(field, "must be a notification id (1–18 digits)"))
}

impl MarkRead {
    pub fn scope(&self) -> ApiResult<ReadScope> {
        let ids = self.ids.as_deref().unwrap_or_default();
        if ids.len() > 1000 {
            return Err(ApiError::invalid("ids", "at most 1000 at a time"));
        }
        let ids = ids
            .iter()
            .enumerate()
            .map(|(i, s)| parse_notification_id(&format!("ids[{i}]"), s))
            .collect::<ApiResult<Vec<_>>>()?;
        let up_to = self
            .up_to
            .as_deref()
            .map(|s| parse_notification_id("upTo", s))
            .transpose()?;
        Ok(if ids.is_empty() && up_to.is_none() {
            ReadScope::All
        } else {
            ReadScope::Some { ids, up_to }
        })
    }
}

/// `GET /notifications`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NotificationsQuery {
    /// 1–100, default 20.
    #[serde(default)]
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// From the previous page's `nextCursor`.
    #[serde(default)]
    #[param(pattern = "^[0-9]{1,18}$")]
    pub cursor: Option<String>,
}

impl Params for NotificationsQuery {
    fn check(&self) -> ApiResult<()> {
        check_limit(self.limit, 100)?;
        if let Some(c) = &self.cursor {
            parse_notification_id("cursor", c)?;
        }
        Ok(())
    }
}

/// One event of a user's notification stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationEvent {
    /// The unread count: first on every connection, then whenever
    /// notifications are marked read.
    Unread(UnreadCount),
    /// A new notification (or one missed since `Last-Event-ID`).
    Notification(Box<Notification>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_read_scopes_and_refusals_name_the_field() {
        let all = MarkRead::default().scope().unwrap();
        assert_eq!(all, ReadScope::All);
        let empty = MarkRead {
            ids: Some(Vec::new()),
            up_to: None,
        };
        assert_eq!(empty.scope().unwrap(), ReadScope::All);
        let some = MarkRead {
            ids: Some(vec!["3".into(), "7".into()]),
            up_to: Some("12".into()),
        };
        assert_eq!(
            some.scope().unwrap(),
            ReadScope::Some {
                ids: vec![3, 7],
                up_to: Some(12)
            }
        );
        for (bad, field) in [
            (
                MarkRead {
                    ids: Some(vec!["1".into(), "x".into()]),
                    up_to: None,
                },
                "ids[1]",
            ),
            (
                MarkRead {
                    ids: None,
                    up_to: Some("-1".into()),
                },
                "upTo",
            ),
            (
                MarkRead {
                    ids: None,
                    up_to: Some("1".repeat(19)),
                },
                "upTo",
            ),
        ] {
            assert_eq!(bad.scope().unwrap_err().field(), Some(field));
        }
    }

    #[test]
    fn kinds_round_trip_and_the_query_checks_its_cursor() {
        for k in ["follower", "reply", "likes", "video_ready", "video_failed"] {
            let kind = NotificationKind::parse(k).unwrap();
            assert_eq!(kind.as_str(), k);
            assert_eq!(serde_json::to_value(kind).unwrap(), k);
        }
        let q = |cursor: &str| NotificationsQuery {
            limit: None,
            cursor: Some(cursor.into()),
        };
        assert!(q("42").check().is_ok());
        assert_eq!(q("abc").check().unwrap_err().field(), Some("cursor"));
    }
}
