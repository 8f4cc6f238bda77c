//! Notification fan-out between server processes sharing one Redis (the
//! hot store): every push published in this process goes out on
//! `NOTIFICATIONS_CHANNEL`, and pushes from the others come back into this
//! process's hub, so a user's stream hears of a notification whichever
//! process made it. Pub/sub is best effort: a push lost on the way (Redis
//! away) is still in the catalog, and the stream's next reconnect replays
//! it. Without Redis each process's streams hear only that process.

use std::sync::Arc;

use api::wire::Notification;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::hub::Push;
use super::Notifications;
use crate::engagement::NOTIFICATIONS_CHANNEL;

#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    /// The process that published it (which ignores its own).
    origin: String,
    user: String,
    push: Wire,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
enum Wire {
    Notification { id: i64, item: Box<Notification> },
    Unread { count: u64 },
}

impl From<Push> for Wire {
    fn from(p: Push) -> Self {
        match p {
            Push::Notification { id, item } => Self::Notification {
                id,
                item: Box::new(Arc::unwrap_or_clone(item)),
            },
            Push::Unread(count) => Self::Unread { count },
        }
    }
}

impl From<Wire> for Push {
    fn from(w: Wire) -> Self {
        match w {
            Wire::Notification { id, item } => Self::Notification {
                id,
                item: Arc::from(item),
            },
            Wire::Unread { count } => Self::Unread(count),
        }
    }
}

pub fn spawn(
    notes: Arc<Notifications>,
    shutdown: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let Some(redis) = notes.engagement.hot.redis() else {
        return Vec::new();
    };
    let client = redis.client().clone();
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, Push)>();
    notes.hub.relay_to(tx);

    let out = {
        let notes = notes.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    next = rx.recv() => next,
                    _ = stop.changed() => None,
                };
                let Some((user, push)) = next else { break };
                let env = Envelope {
                    origin: notes.engagement.instance.clone(),
                    user,
                    push: push.into(),
                };
                match serde_json::to_string(&env) {
                    Ok(json) => {
                        notes
                            .engagement
                            .hot
                            .publish_to(NOTIFICATIONS_CHANNEL, &json)
                            .await
                    }
                    Err(e) => tracing::warn!(error = %e, "notification not relayed"),
                }
            }
        })
    };

    let inbound = crate::engagement::follow_channel(
        client,
        NOTIFICATIONS_CHANNEL,
        "notification",
        shutdown,
        move |payload| {
            let Ok(env) = serde_json::from_str::<Envelope>(&payload) else {
                tracing::debug!("ignoring a malformed notification message");
                return;
            };
            if env.origin != notes.engagement.instance {
                notes.hub.deliver_remote(&env.user, env.push.into());
            }
        },
    );
    vec![out, inbound]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_cross_the_wire_unchanged() {
        let item = Notification {
            id: "7".into(),
            kind: api::wire::NotificationKind::Likes,
            created_at: "2024-01-01T00:00:00Z".into(),
            read: false,
            actor: None,
            video: Some(api::wire::NotificationVideo {
                id: Some("v".into()),
                title: "t".into(),
            }),
            comment: None,
            milestone: Some(10),
            reason: None,
        };
        for push in [
            Push::Notification {
                id: 7,
                item: Arc::new(item),
            },
            Push::Unread(4),
        ] {
            let env = Envelope {
                origin: "a".into(),
                user: "u".into(),
                push: push.clone().into(),
            };
            let back: Envelope =
                serde_json::from_str(&serde_json::to_string(&env).unwrap()).unwrap();
            assert_eq!(Push::from(back.push), push);
        }
    }
}
