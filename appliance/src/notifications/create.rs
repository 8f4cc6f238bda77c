//! Making notifications: what each action tells whom, stored in the
//! catalog first and pushed to the recipient's streams only once it is
//! committed. Nobody is told about their own action, and a dedupe key
//! makes each follower, reply, milestone and outcome one notification
//! however often the action repeats.

use std::sync::Arc;

use api::wire::{NotificationKind, Principal, Role};
use serde::{Deserialize, Serialize};

use super::hub::Push;
use super::{wire, Notifications};
use crate::engagement::Notifier;
use crate::store::catalog::{self as cat, now_ms, CommentRow, NewNotification, VideoRow};

/// What a notification needs shown once its video or comment is gone
/// (the `body` column).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Body {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excerpt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub milestone: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// How much of a reply a notification quotes.
const EXCERPT_CHARS: usize = 100;

/// The like counts worth telling a creator about: 1, 10, 100, 1000, …
/// The milestone `likes` has reached, if any (the largest one not above
/// it, so a count that jumped past one still reaches it).
pub(super) fn milestone(likes: u64) -> Option<u64> {
    if likes == 0 {
        return None;
    }
    let mut m = 1u64;
    while let Some(next) = m.checked_mul(10).filter(|n| *n <= likes) {
        m = next;
    }
    Some(m)
}

fn excerpt(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(EXCERPT_CHARS).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}

/// A condition checked in the same transaction as the insert.
enum Gate {
    Always,
    /// The video really has `at_least` like rows: the hot counter's
    /// estimate can be off while a flush moves counts to the catalog.
    Likes {
        video: String,
        at_least: u64,
    },
}

impl Notifications {
    /// Stores `n` (unless its dedupe key was used or `gate` says no) and
    /// pushes it to the recipient's streams. Failures are logged: the
    /// action that caused them has happened, and stands.
    async fn notify(&self, n: NewNotification, gate: Gate) {
        let hub = self.hub.clone();
        let kind = n.kind;
        let stored = self
            .catalog
            .call(move |c| {
                let repeat = n
                    .dedupe
                    .as_deref()
                    .map(|key| cat::notification_exists(c, &n.user_id, key))
                    .transpose()?
                    .unwrap_or(false);
                let open = match &gate {
                    Gate::Always => true,
                    Gate::Likes { video, at_least } => {
                        cat::likes_up_to(c, video, *at_least)? >= *at_least
                    }
                };
                if repeat || !open {
                    return Ok(None);
                }
                let Some(id) = cat::insert_notification(c, &n)? else {
                    return Ok(None);
                };
                // Read back through the same joins a list uses, so a
                // pushed notification looks exactly like a listed one. It
                // is pushed while the writer is still held, so this
                // process pushes in id order, the order streams replay in.
                let recipient = Principal {
                    user_id: n.user_id.clone(),
                    role: Role::Viewer,
                };
                if let Some(item) =
                    cat::notification(c, &n.user_id, id)?.and_then(|row| wire(row, &recipient))
                {
                    hub.publish(
                        &n.user_id,
                        Push::Notification {
                            id,
                            item: Arc::new(item),
                        },
                    );
                }
                Ok(Some(id))
            })
            .await;
        match stored {
            Ok(Some(id)) => tracing::debug!(id, kind, "notification stored"),
            Ok(None) => {}
            Err(e) => tracing::warn!(kind, error = %e, "a notification was not stored"),
        }
    }

    /// A transcode ended: its owner hears that the upload plays, or why it
    /// failed. Called after the outcome is committed; anything else (still
    /// processing, deleted meanwhile) tells nobody anything.
    pub async fn video_settled(&self, video_id: &str) {
        let vid = video_id.to_owned();
        let video = match self.catalog.read(move |c| cat::video(c, &vid)).await {
            Ok(Some(v)) => v,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(video = %video_id, error = %e, "no upload notification");
                return;
            }
        };
        let (kind, body) = match video.state.as_str() {
            // A ladder that stopped growing on a failure still plays:
            // that is the news.
            "ready" if video.stage != api::wire::GROWING => (
                NotificationKind::VideoReady,
                Body {
                    title: Some(video.title.clone()),
                    ..Body::default()
                },
            ),
            "failed" => (
                NotificationKind::VideoFailed,
                Body {
                    title: Some(video.title.clone()),
                    reason: Some(
                        video
                            .failure
                            .clone()
                            .unwrap_or_else(|| "the transcode failed".into()),
                    ),
                    ..Body::default()
                },
            ),
            _ => return,
        };
        let n = NewNotification {
            user_id: video.owner_id.clone(),
            kind: kind.as_str(),
            actor_id: None,
            video_id: Some(video.id.clone()),
            comment_id: None,
            body: body_json(&body),
            dedupe: Some(format!("{}:{}", kind.as_str(), video.id)),
            created_at: now_ms(),
        };
        self.notify(n, Gate::Always).await;
    }
}

fn body_json(b: &Body) -> String {
    serde_json::to_string(b).unwrap_or_else(|_| "{}".into())
}

#[async_trait::async_trait]
impl Notifier for Notifications {
    async fn followed(&self, follower: &str, followee: &str) {
        if follower == followee {
            return;
        }
        // Once per follower: unfollowing and following again is not news.
        let n = NewNotification {
            user_id: followee.to_owned(),
            kind: NotificationKind::Follower.as_str(),
            actor_id: Some(follower.to_owned()),
            video_id: None,
            comment_id: None,
            body: body_json(&Body::default()),
            dedupe: Some(format!("follower:{follower}")),
            created_at: now_ms(),
        };
        self.notify(n, Gate::Always).await;
    }

    async fn replied(&self, video: &VideoRow, to: &str, reply: &CommentRow) {
        if reply.user_id == to {
            return;
        }
        let n = NewNotification {
            user_id: to.to_owned(),
            kind: NotificationKind::Reply.as_str(),
            actor_id: Some(reply.user_id.clone()),
            video_id: Some(video.id.clone()),
            comment_id: Some(reply.id.clone()),
            body: body_json(&Body {
                title: Some(video.title.clone()),
                excerpt: Some(excerpt(&reply.body)),
                ..Body::default()
            }),
            dedupe: Some(format!("reply:{}", reply.id)),
            created_at: now_ms(),
        };
        self.notify(n, Gate::Always).await;
    }

    async fn liked(&self, video: &VideoRow, liker: &str, likes: u64) {
        if liker == video.owner_id {
            return;
        }
        let Some(at) = milestone(likes) else { return };
        // Keyed by video and milestone: unliking and liking again, or a
        // count that wobbles around it, tells the creator once.
        let n = NewNotification {
            user_id: video.owner_id.clone(),
            kind: NotificationKind::Likes.as_str(),
            actor_id: None,
            video_id: Some(video.id.clone()),
            comment_id: None,
            body: body_json(&Body {
                title: Some(video.title.clone()),
                milestone: Some(at),
                ..Body::default()
            }),
            dedupe: Some(format!("likes:{}:{at}", video.id)),
            created_at: now_ms(),
        };
        let gate = Gate::Likes {
            video: video.id.clone(),
            at_least: at,
        };
        self.notify(n, gate).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milestones_are_powers_of_ten_reached() {
        let cases = [
            (0, None),
            (1, Some(1)),
            (9, Some(1)),
            (10, Some(10)),
            (11, Some(10)),
            (99, Some(10)),
            (100, Some(100)),
            (999_999, Some(100_000)),
            (1_000_000, Some(1_000_000)),
            (u64::MAX, Some(10_000_000_000_000_000_000)),
        ];
        for (likes, want) in cases {
            assert_eq!(milestone(likes), want, "{likes}");
        }
    }

    #[test]
    fn excerpts_stop_at_a_hundred_characters_not_bytes() {
        assert_eq!(excerpt("short"), "short");
        let long = "é".repeat(150);
        let e = excerpt(&long);
        assert_eq!(e.chars().count(), EXCERPT_CHARS + 1);
        assert!(e.ends_with('…'));
        assert_eq!(excerpt(&"x".repeat(100)), "x".repeat(100));
    }
}
