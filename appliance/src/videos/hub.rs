//! Live job status, in process: the latest progress of every running job
//! and a broadcast channel per video for SSE subscribers. The catalog holds
//! the durable state (processing/ready/failed); the hub adds what is too
//! chatty to persist (per-rung percentages).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use api::wire::{StatusEvent, VideoStatus};
use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

#[derive(Debug, Clone, Default)]
pub struct Live {
    pub stage: String,
    pub rungs: BTreeMap<String, u8>,
    /// The rungs published so far while a playable video's ladder grows.
    pub live_rungs: Vec<String>,
}

impl Live {
    pub fn percent(&self) -> f32 {
        if self.rungs.is_empty() {
            return 0.0;
        }
        let sum: u32 = self.rungs.values().map(|&p| u32::from(p)).sum();
        sum as f32 / self.rungs.len() as f32
    }
}

struct Entry {
    live: Live,
    tx: broadcast::Sender<StatusEvent>,
}

#[derive(Default)]
pub struct Hub {
    videos: Mutex<HashMap<String, Entry>>,
    /// Events for other processes (`fanout`), when there are any.
    outbox: Mutex<Option<tokio::sync::mpsc::UnboundedSender<StatusEvent>>>,
}

impl Hub {
    fn with_entry<T>(&self, video_id: &str, f: impl FnOnce(&mut Entry) -> T) -> T {
        let mut map = self.videos.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(video_id.to_owned()).or_insert_with(|| Entry {
            live: Live::default(),
            tx: broadcast::channel(64).0,
        });
        f(entry)
    }

    /// Live progress of a running job, if any.
    pub fn live(&self, video_id: &str) -> Option<Live> {
        let map = self.videos.lock().unwrap_or_else(|p| p.into_inner());
        map.get(video_id).map(|e| e.live.clone())
    }

    pub fn update(&self, video_id: &str, f: impl FnOnce(&mut Live)) -> Live {
        self.with_entry(video_id, |e| {
            f(&mut e.live);
            e.live.clone()
        })
    }

    /// From now on, every event published here is also sent to `tx`.
    pub fn relay_to(&self, tx: tokio::sync::mpsc::UnboundedSender<StatusEvent>) {
        *self.outbox.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
    }

    /// Sends an event to this process's subscribers and, through the
    /// relay, to the other processes'.
    pub fn publish(&self, event: StatusEvent) {
        if let Some(tx) = self
            .outbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            let _ = tx.send(event.clone());
        }
        self.deliver(event);
    }

    /// An event from another process: its progress becomes this process's
    /// live view too, and local subscribers get it.
    pub fn deliver_remote(&self, event: StatusEvent) {
        if !event.status.is_final() {
            self.update(&event.status.video_id, |l| {
                l.stage = event.status.stage.clone();
                l.rungs = event.status.rungs.clone();
            });
        }
        self.deliver(event);
    }

    /// Sends an event to the video's subscribers here. A final event also
    /// drops the live entry: later readers get the final state from the
    /// catalog.
    fn deliver(&self, event: StatusEvent) {
        let video_id = event.status.video_id.clone();
        let last = event.status.is_final();
        let mut map = self.videos.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = map.get(&video_id) {
            // No receivers is fine: nobody is watching.
            let _ = e.tx.send(event);
        }
        if last {
            map.remove(&video_id);
        }
    }

    /// A subscription that starts before `snapshot` is read, so nothing
    /// between the snapshot and the first live event is missed.
    pub fn subscribe(&self, video_id: &str) -> broadcast::Receiver<StatusEvent> {
        self.with_entry(video_id, |e| e.tx.subscribe())
    }

    /// `snapshot` first, then live events, ending after a final state.
    pub fn stream(
        &self,
        rx: broadcast::Receiver<StatusEvent>,
        snapshot: VideoStatus,
    ) -> BoxStream<'static, StatusEvent> {
        let first = StatusEvent::snapshot(snapshot);
        if first.status.is_final() {
            // Nothing more will come: drop the entry `subscribe` made,
            // unless a job or another subscriber still uses it.
            drop(rx);
            let mut map = self.videos.lock().unwrap_or_else(|p| p.into_inner());
            let idle = map
                .get(&first.status.video_id)
                .is_some_and(|e| e.tx.receiver_count() == 0 && e.live.stage.is_empty());
            if idle {
                map.remove(&first.status.video_id);
            }
            return stream::iter([first]).boxed();
        }
        // A slow client that lags skips events; each carries the full state.
        let live = BroadcastStream::new(rx).filter_map(|r| async move { r.ok() });
        stream::iter([first])
            .chain(live)
            .scan(false, |ended, ev| {
                if *ended {
                    return futures::future::ready(None);
                }
                *ended = ev.status.is_final();
                futures::future::ready(Some(ev))
            })
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::wire::VideoState;

    fn status(id: &str, state: VideoState) -> VideoStatus {
        VideoStatus {
            video_id: id.into(),
            status: state,
            stage: String::new(),
            percent: 0.0,
            rungs: Default::default(),
            live_rungs: Vec::new(),
            attempts: 1,
            error: None,
            updated_at: String::new(),
        }
    }

    #[tokio::test]
    async fn a_finished_video_leaves_no_entry_and_a_live_one_streams_to_its_end() {
        let hub = Hub::default();
        let rx = hub.subscribe("done");
        let events: Vec<_> = hub
            .stream(rx, status("done", VideoState::Ready))
            .collect()
            .await;
        assert_eq!(events.len(), 1);
        assert!(hub.videos.lock().unwrap().is_empty());

        hub.update("live", |l| l.stage = "transcoding".into());
        let rx = hub.subscribe("live");
        let stream = hub.stream(rx, status("live", VideoState::Processing));
        hub.publish(StatusEvent::snapshot(status(
            "live",
            VideoState::Processing,
        )));
        hub.publish(StatusEvent::snapshot(status("live", VideoState::Ready)));
        let names: Vec<_> = stream.map(|e| e.name).collect().await;
        assert_eq!(
            names,
            [
                "transcode.progress",
                "transcode.progress",
                "transcode.completed"
            ]
        );
        assert!(hub.videos.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn events_from_other_processes_reach_local_subscribers_and_live_state() {
        let hub = Hub::default();
        let (tx, mut relayed) = tokio::sync::mpsc::unbounded_channel();
        hub.relay_to(tx);
        let rx = hub.subscribe("v");
        let stream = hub.stream(rx, status("v", VideoState::Processing));
        let mut remote = status("v", VideoState::Processing);
        remote.stage = "transcoding".into();
        remote.rungs.insert("360p".into(), 40);
        hub.deliver_remote(StatusEvent::snapshot(remote));
        assert_eq!(hub.live("v").unwrap().rungs["360p"], 40);
        hub.deliver_remote(StatusEvent::snapshot(status("v", VideoState::Ready)));
        let names: Vec<_> = stream.map(|e| e.name).collect().await;
        assert_eq!(names.last(), Some(&"transcode.completed"));
        // Remote events are not relayed back out; local ones are.
        assert!(relayed.try_recv().is_err());
        hub.publish(StatusEvent::snapshot(status("w", VideoState::Ready)));
        assert_eq!(relayed.try_recv().unwrap().status.video_id, "w");
    }
}
