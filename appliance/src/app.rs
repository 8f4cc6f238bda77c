//! The composition root: builds each domain's state once from the config
//! and the stores, wires the domains together (the feed listens to
//! engagement), starts their background work, and tells the HTTP layer
//! which domain implements each `api` trait. It holds no logic of its own.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::accounts::Accounts;
use crate::engagement::{Engagement, Listener, Social};
use crate::error::Result;
use crate::feed::{FeedService, Recommender};
use crate::live::Live;
use crate::notifications::Notifications;
use crate::ops::Ops;
use crate::search::Search;
use crate::store::{Catalog, Objects};
use crate::videos::Videos;
use crate::webhooks::Webhooks;
use settings::Config;

pub struct App {
    pub config: Arc<Config>,
    pub catalog: Catalog,
    pub accounts: Arc<Accounts>,
    pub videos: Arc<Videos>,
    pub recommender: Arc<Recommender>,
    pub feed: FeedService,
    pub engagement: Arc<Engagement>,
    pub social: Social,
    pub ops: Ops,
    pub live: Arc<Live>,
    pub notifications: Arc<Notifications>,
    pub webhooks: Arc<Webhooks>,
    /// Search over users, sounds and hashtags.
    pub search: Arc<Search>,
    /// What the HTTP listener did with connections (for `/metrics`).
    pub conn_stats: Arc<api::ConnStats>,
}

impl App {
    pub fn new(
        config: Config,
        catalog: Catalog,
        objects: Objects,
        inventory: hardware::Inventory,
    ) -> Result<Self> {
        let config = Arc::new(config);
        let inventory = Arc::new(inventory);
        let recommender = Arc::new(Recommender::new(&config));
        let engagement = Arc::new(Engagement::new(&config, catalog.clone())?);
        let accounts = Arc::new(Accounts::new(config.clone(), catalog.clone()));
        let notifications = Arc::new(Notifications::new(catalog.clone(), engagement.clone()));
        let videos = Arc::new(Videos::new(
            config.clone(),
            catalog.clone(),
            objects,
            inventory,
            accounts.clone(),
            recommender.clone(),
            engagement.clone(),
            notifications.clone(),
        ));
        // Playback keys that cannot be used stop the box here, not at the
        // first token.
        videos.playback.usable()?;
        let feed = FeedService::new(
            config.clone(),
            catalog.clone(),
            recommender.clone(),
            engagement.clone(),
        );
        let listener: Arc<dyn Listener> = recommender.clone();
        let notifier: Arc<dyn crate::engagement::Notifier> = notifications.clone();
        let social = Social::new(catalog.clone(), engagement.clone(), listener, notifier);
        let conn_stats = Arc::new(api::ConnStats::default());
        let live = Arc::new(Live::new(config.clone(), catalog.clone(), videos.clone()));
        let webhooks = Arc::new(Webhooks::new(config.clone(), catalog.clone())?);
        let search = Arc::new(Search::new(&config, catalog.clone(), engagement.clone()));
        let ops = Ops::new(
            videos.clone(),
            recommender.clone(),
            engagement.clone(),
            conn_stats.clone(),
            live.clone(),
        );
        Ok(Self {
            config,
            catalog,
            accounts,
            videos,
            recommender,
            feed,
            engagement,
            social,
            ops,
            live,
            webhooks,
            search,
            notifications,
            conn_stats,
        })
    }

    /// Every domain's background work (transcode workers and janitor, the
    /// embed loop and ranker reload, the shipper/flusher/trending, status
    /// and notification fan-out, live channels, webhook deliveries); the
    /// tasks end when `shutdown` turns true.
    pub fn spawn(&self, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let mut tasks = crate::videos::spawn(self.videos.clone(), shutdown.clone());
        tasks.push(self.videos.sounds.spawn());
        tasks.extend(
            self.recommender
                .spawn(self.catalog.clone(), shutdown.clone()),
        );
        let listener: Arc<dyn Listener> = self.recommender.clone();
        tasks.extend(self.engagement.spawn(listener, shutdown.clone()));
        tasks.extend(self.live.spawn(shutdown.clone()));
        tasks.extend(self.webhooks.spawn(shutdown.clone()));
        tasks.extend(self.notifications.spawn(shutdown.clone()));
        tasks.extend(self.search.spawn(shutdown.clone()));
        tasks.extend(crate::videos::spawn_fanout(self.videos.clone(), shutdown));
        tasks
    }
}

/// The handle the HTTP layer holds: it says which domain implements each
/// `api` trait.
#[derive(Clone)]
pub struct Handle(pub Arc<App>);

impl std::ops::Deref for Handle {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}

impl api::Service for Handle {
    type Accounts = Accounts;
    type Uploads = Videos;
    type Videos = Videos;
    type Origin = Videos;
    type Feed = FeedService;
    type Engagement = Social;
    type Analytics = Social;
    type Ops = Ops;
    type Idempotency = Engagement;
    type Live = Live;
    type Webhooks = Webhooks;
    type Notifications = Notifications;
    type Search = Search;
    type Sounds = crate::sounds::Sounds;
    type Copyright = crate::sounds::Sounds;
    type Remixes = Videos;

    fn accounts(&self) -> &Accounts {
        &self.0.accounts
    }

    fn uploads(&self) -> &Videos {
        &self.0.videos
    }

    fn videos(&self) -> &Videos {
        &self.0.videos
    }

    fn origin(&self) -> &Videos {
        &self.0.videos
    }

    fn feed(&self) -> &FeedService {
        &self.0.feed
    }

    fn engagement(&self) -> &Social {
        &self.0.social
    }

    fn analytics(&self) -> &Social {
        &self.0.social
    }

    fn ops(&self) -> &Ops {
        &self.0.ops
    }

    fn idempotency(&self) -> &Engagement {
        &self.0.engagement
    }

    fn live(&self) -> &Live {
        &self.0.live
    }

    fn webhooks(&self) -> &Webhooks {
        &self.0.webhooks
    }

    fn notifications(&self) -> &Notifications {
        &self.0.notifications
    }

    fn search(&self) -> &Search {
        &self.0.search
    }

    fn sounds(&self) -> &crate::sounds::Sounds {
        &self.0.videos.sounds
    }

    fn copyright(&self) -> &crate::sounds::Sounds {
        &self.0.videos.sounds
    }

    fn remixes(&self) -> &Videos {
        &self.0.videos
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    use super::*;
    use crate::store::catalog as cat;
    use crate::store::objects;

    /// The origin reads the catalog through the read pool: a write
    /// transaction held open (a long publish, a slow migration) does not
    /// hold up a CDN fill.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn origin_answers_while_a_write_transaction_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.storage.data_dir = dir.path().to_path_buf();
        let catalog = Catalog::open(&dir.path().join("catalog.db")).unwrap();
        let objects = Objects::from_config(&config).unwrap();
        let app = Arc::new(
            App::new(
                config,
                catalog.clone(),
                objects.clone(),
                hardware::Inventory::discover(),
            )
            .unwrap(),
        );
        let owner = cat::UserRow {
            id: "u1".into(),
            username: "creator".into(),
            password_hash: String::new(),
            role: "creator".into(),
            created_at: 0,
        };
        let video = cat::VideoRow::bench("v1", "u1");
        catalog
            .call(move |c| {
                cat::insert_user(c, &owner)?;
                cat::insert_video(c, &video)
            })
            .await
            .unwrap();
        let playlist = "#EXTM3U\n#EXT-X-VERSION:7\n";
        objects
            .put(
                &format!("{}/master.m3u8", objects::ladder_prefix("v1")),
                bytes::Bytes::from(playlist),
            )
            .await
            .unwrap();

        // A writer that holds its transaction until told to commit.
        let (began_tx, began_rx) = tokio::sync::oneshot::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let held = catalog.clone();
        let writer = async move {
            held.call(move |c| {
                let tx = c.transaction().unwrap();
                tx.execute("UPDATE videos SET title = 'renamed' WHERE id = 'v1'", [])
                    .unwrap();
                let _ = began_tx.send(());
                let _ = release_rx.recv_timeout(Duration::from_secs(30));
                tx.commit()
                    .map_err(crate::error::Error::catalog("committing"))
            })
            .await
        };
        let writer = tokio::spawn(writer);
        began_rx.await.unwrap();

        let router = api::router(
            Handle(app),
            api::RouterConfig {
                origin: api::OriginPolicy::default(),
                limits: api::BodyLimits {
                    json: 1 << 16,
                    chunk: 1 << 16,
                    single_shot: 1 << 16,
                },
                hls_js: None,
            },
        );
        let request = Request::get("/hls/v1/master.m3u8")
            .header("host", "origin.example")
            .body(Body::empty())
            .unwrap();
        // Through the writer's connection this would wait for the commit,
        // which waits for this answer: the timeout is the failure.
        let response = tokio::time::timeout(Duration::from_secs(10), router.oneshot(request))
            .await
            .expect("the origin answered while the write transaction was open")
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        assert_eq!(body, playlist.as_bytes());

        release_tx.send(()).unwrap();
        writer.await.unwrap().unwrap();
    }
}
