//! Following a Redis pub/sub channel for as long as the box runs: the
//! status and notification fan-outs both need it. A lost subscription is
//! taken up again after a pause that doubles from 200 ms to 5 s (reset
//! once subscribed), so Redis going away costs a reconnect, not the task.

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Calls `on_message` with each payload published on `channel` until
/// `stop` changes; `what` names the channel in the debug log.
pub fn follow(
    client: redis::Client,
    channel: &'static str,
    what: &'static str,
    mut stop: watch::Receiver<bool>,
    mut on_message: impl FnMut(String) + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            let session = async {
                let mut ps = client.get_async_pubsub().await?;
                ps.subscribe(channel).await?;
                backoff = Duration::from_millis(200);
                let mut msgs = ps.on_message();
                while let Some(m) = msgs.next().await {
                    if let Ok(payload) = m.get_payload::<String>() {
                        on_message(payload);
                    }
                }
                Ok::<_, redis::RedisError>(())
            };
            tokio::select! {
                r = session => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "{what} subscription lost; reconnecting");
                    }
                }
                _ = stop.changed() => break,
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.changed() => break,
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    })
}
