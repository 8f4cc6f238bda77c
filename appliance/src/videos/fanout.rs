//! Status fan-out between server processes sharing one Redis: every status
//! event published in this process goes to a Redis channel, and events
//! from the others come back into this process's hub, so an SSE client
//! sees a job's progress whichever process runs the job. Without Redis (or
//! while it is away) each process's subscribers hear only that process.

use std::sync::Arc;

use api::wire::{StatusEvent, VideoStatus};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::Videos;
use crate::engagement::STATUS_CHANNEL;

#[derive(Serialize, Deserialize)]
struct Envelope {
    origin: String,
    name: String,
    status: VideoStatus,
}

pub fn spawn(
    app: Arc<Videos>,
    shutdown: watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let Some(redis) = app.engagement.hot.redis() else {
        return Vec::new();
    };
    let client = redis.client().clone();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<StatusEvent>();
    app.hub.relay_to(tx);

    let out = {
        let app = app.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    ev = rx.recv() => ev,
                    _ = stop.changed() => None,
                };
                let Some(ev) = ev else { break };
                let env = Envelope {
                    origin: app.engagement.instance.clone(),
                    name: ev.name.to_owned(),
                    status: ev.status,
                };
                match serde_json::to_string(&env) {
                    Ok(json) => app.engagement.hot.publish(&json).await,
                    Err(e) => tracing::warn!(error = %e, "status event not relayed"),
                }
            }
        })
    };

    let inbound = crate::engagement::follow_channel(
        client,
        STATUS_CHANNEL,
        "status",
        shutdown,
        move |payload| {
            let Ok(env) = serde_json::from_str::<Envelope>(&payload) else {
                tracing::debug!("ignoring a malformed status message");
                return;
            };
            if env.origin == app.engagement.instance {
                return;
            }
            if let Some(name) = StatusEvent::name_of(&env.name) {
                app.hub.deliver_remote(StatusEvent {
                    name,
                    status: env.status,
                });
            }
        },
    );
    vec![out, inbound]
}
