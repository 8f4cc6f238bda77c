//! The seam between HTTP and the appliance: one trait per domain of the box
//! (accounts, uploads, videos, origin, feed, engagement, analytics, ops,
//! idempotency keys, live channels), each implemented by that domain in `appliance`, and
//! `Service`, which only says where each domain's implementation is.
//! Handlers do HTTP (parsing, auth headers, status codes, caching headers);
//! the implementations do the work and report failures as `ApiError`s.

use std::future::Future;
use std::ops::Range;
use std::time::SystemTime;

use bytes::Bytes;
use futures::stream::BoxStream;

use crate::error::ApiResult;
use crate::wire::*;

/// A file of a published ladder, as the origin needs to describe it before
/// deciding between 200, 206, 304 and 416.
#[derive(Debug, Clone)]
pub struct OriginMeta {
    pub size: u64,
    pub last_modified: SystemTime,
    /// Opaque, changes whenever the bytes do (without quotes).
    pub etag: String,
    /// The whole file, when the lookup read it already: a file replaced in
    /// place (a live playlist) must be served from the same read its size
    /// and validator came from, not from a second read that may see the
    /// next version.
    pub body: Option<Bytes>,
    /// The file will be replaced soon (the master playlist of a ladder that
    /// is still growing): shared caches keep it a second at most.
    pub changing: bool,
}

/// What the origin finds at a path.
#[derive(Debug, Clone)]
pub enum OriginLookup {
    Found(OriginMeta),
    /// No such video or file (or not published yet): a cacheable 404.
    Missing,
    /// The video exists but must not be served to anyone through the origin
    /// (private): a 404 that no cache may keep.
    Private,
    /// A live channel that exists but has not published this file yet
    /// (connecting, or a segment not yet cut): a 404 a cache keeps for a
    /// second at most, so the stream shows up as soon as it is there.
    NotYet,
}

/// Idempotency-key bookkeeping: the first request with a key runs, later
/// ones replay its stored response.
#[derive(Debug, Clone)]
pub enum IdempotencyBegin {
    /// First time: run the request, then `idempotency_finish`.
    Proceed,
    /// Done before: send this response again.
    Replay { status: u16, body: Bytes },
}

/// Users and bearer tokens.
pub trait Accounts: Send + Sync + 'static {
    fn register(
        &self,
        req: RegisterRequest,
    ) -> impl Future<Output = ApiResult<AuthResponse>> + Send;
    fn login(&self, req: LoginRequest) -> impl Future<Output = ApiResult<AuthResponse>> + Send;
    fn authenticate(&self, token: &str) -> impl Future<Output = ApiResult<Principal>> + Send;
    /// Checks a username and password without issuing a token (HTTP Basic
    /// on the status page, which a browser resends on every load).
    fn verify_password(
        &self,
        req: LoginRequest,
    ) -> impl Future<Output = ApiResult<Principal>> + Send;
    fn get_user(&self, id: &str) -> impl Future<Output = ApiResult<User>> + Send;
}

/// Resumable (chunked) and single-shot uploads.
pub trait Uploads: Send + Sync + 'static {
    fn init_upload(
        &self,
        caller: &Principal,
        req: UploadInit,
    ) -> impl Future<Output = ApiResult<UploadSession>> + Send;
    fn put_chunk(
        &self,
        caller: &Principal,
        upload_id: &str,
        chunk: u32,
        body: Bytes,
        sha256: Option<String>,
    ) -> impl Future<Output = ApiResult<ChunkReceipt>> + Send;
    fn get_upload(
        &self,
        caller: &Principal,
        upload_id: &str,
    ) -> impl Future<Output = ApiResult<UploadSession>> + Send;
    fn complete_upload(
        &self,
        caller: &Principal,
        upload_id: &str,
        meta: VideoMeta,
    ) -> impl Future<Output = ApiResult<Accepted>> + Send;
    fn cancel_upload(
        &self,
        caller: &Principal,
        upload_id: &str,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    fn create_video(
        &self,
        caller: &Principal,
        filename: String,
        meta: VideoMeta,
        body: Bytes,
    ) -> impl Future<Output = ApiResult<Accepted>> + Send;

    // tus 1.0 (`routes::tus`) on the same upload sessions: the protocol's
    // parsing is `crate::tus`, the storage and completion the implementor's.
    /// The largest `Upload-Length` taken (`Tus-Max-Size`).
    fn tus_max_size(&self) -> u64;
    fn tus_create(
        &self,
        caller: &Principal,
        req: crate::tus::Creation,
    ) -> impl Future<Output = ApiResult<crate::tus::TusUpload>> + Send;
    fn tus_state(
        &self,
        caller: &Principal,
        upload_id: &str,
    ) -> impl Future<Output = ApiResult<crate::tus::TusUpload>> + Send;
    /// Appends `body` at `offset` (which must be the stored offset). What
    /// arrives is kept, durably, before this returns, even when the body
    /// breaks off; with `checksum` (SHA-256 of the whole body) nothing is
    /// kept unless it matches. A `declared` size (Content-Length) past the
    /// upload's length is refused before anything is read. The last byte
    /// completes the upload as `complete_upload` does, once.
    fn tus_write(
        &self,
        caller: &Principal,
        upload_id: &str,
        offset: u64,
        declared: Option<u64>,
        checksum: Option<crate::tus::Checksum>,
        body: crate::tus::Body,
    ) -> impl Future<Output = ApiResult<crate::tus::TusUpload>> + Send;
    fn tus_terminate(
        &self,
        caller: &Principal,
        upload_id: &str,
    ) -> impl Future<Output = ApiResult<()>> + Send;
}

/// Published and in-flight videos: metadata, status, deletion, a creator's list.
pub trait Videos: Send + Sync + 'static {
    fn get_video(
        &self,
        caller: Option<&Principal>,
        id: &str,
    ) -> impl Future<Output = ApiResult<Video>> + Send;
    fn video_status(
        &self,
        caller: Option<&Principal>,
        id: &str,
    ) -> impl Future<Output = ApiResult<VideoStatus>> + Send;
    fn video_events(
        &self,
        caller: Option<&Principal>,
        id: &str,
    ) -> impl Future<Output = ApiResult<BoxStream<'static, StatusEvent>>> + Send;
    fn delete_video(
        &self,
        caller: &Principal,
        id: &str,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    fn user_videos(
        &self,
        caller: Option<&Principal>,
        user_id: &str,
        page: PageQuery,
    ) -> impl Future<Output = ApiResult<Page<Video>>> + Send;
}

/// What the HLS origin serves (and, through [`Stills`], a frame at any time).
pub trait Origin: Stills + Playback + Send + Sync + 'static {
    fn origin_lookup(
        &self,
        video_id: &str,
        path: &str,
    ) -> impl Future<Output = ApiResult<OriginLookup>> + Send;
    fn origin_read(
        &self,
        video_id: &str,
        path: &str,
        range: Range<u64>,
    ) -> impl Future<Output = ApiResult<Bytes>> + Send;
}

/// Stills at any time (`/thumbs/{id}/still.jpg?t=`), served with the
/// origin's semantics. Its own trait, a supertrait of [`Origin`], so its
/// implementation lives in its own module beside the origin's.
pub trait Stills: Send + Sync + 'static {
    /// The picture shown at `t_ms` milliseconds as a JPEG, in `body`:
    /// rendered on first request and cached. Missing and private videos as
    /// in `origin_lookup`; a `t_ms` past the end is a validation error
    /// naming `t`.
    fn still(
        &self,
        video_id: &str,
        t_ms: u64,
    ) -> impl Future<Output = ApiResult<OriginLookup>> + Send;
}

/// Feed pages and what steers them, plus search.
pub trait Feed: Send + Sync + 'static {
    fn feed(
        &self,
        caller: Option<&Principal>,
        kind: FeedKind,
        query: FeedQuery,
    ) -> impl Future<Output = ApiResult<crate::wire::Feed>> + Send;
    fn set_interests(
        &self,
        caller: &Principal,
        req: Interests,
    ) -> impl Future<Output = ApiResult<InterestsSet>> + Send;
    fn search_videos(
        &self,
        query: SearchQuery,
    ) -> impl Future<Output = ApiResult<Page<Video>>> + Send;
    fn hashtag_videos(
        &self,
        tag: &str,
        page: PageQuery,
    ) -> impl Future<Output = ApiResult<Page<Video>>> + Send;
}

/// Watches, likes, saves, shares, comments, follows, trending hashtags.
pub trait Engagement: Send + Sync + 'static {
    fn watch_batch(
        &self,
        caller: &Principal,
        req: WatchBatch,
    ) -> impl Future<Output = ApiResult<WatchAccepted>> + Send;
    fn follow(
        &self,
        caller: &Principal,
        user_id: &str,
        on: bool,
    ) -> impl Future<Output = ApiResult<FollowState>> + Send;
    fn follows(
        &self,
        user_id: &str,
        followers: bool,
        page: PageQuery,
    ) -> impl Future<Output = ApiResult<Page<FollowEntry>>> + Send;
    fn like(
        &self,
        caller: &Principal,
        video_id: &str,
        on: bool,
    ) -> impl Future<Output = ApiResult<LikeState>> + Send;
    fn save(
        &self,
        caller: &Principal,
        video_id: &str,
        on: bool,
    ) -> impl Future<Output = ApiResult<SaveState>> + Send;
    fn share(
        &self,
        caller: &Principal,
        video_id: &str,
        req: ShareRequest,
    ) -> impl Future<Output = ApiResult<ShareAccepted>> + Send;
    fn add_comment(
        &self,
        caller: &Principal,
        video_id: &str,
        req: CommentCreate,
    ) -> impl Future<Output = ApiResult<Comment>> + Send;
    fn comments(
        &self,
        caller: Option<&Principal>,
        video_id: &str,
        page: PageQuery,
    ) -> impl Future<Output = ApiResult<Page<Comment>>> + Send;
    fn replies(
        &self,
        caller: Option<&Principal>,
        comment_id: &str,
        page: PageQuery,
    ) -> impl Future<Output = ApiResult<Page<Comment>>> + Send;
    fn trending_hashtags(
        &self,
        limit: u32,
    ) -> impl Future<Output = ApiResult<Vec<TrendingHashtag>>> + Send;
}

/// Per-video and per-creator analytics.
pub trait Analytics: Send + Sync + 'static {
    fn video_analytics(
        &self,
        caller: &Principal,
        video_id: &str,
        query: PeriodQuery,
    ) -> impl Future<Output = ApiResult<VideoAnalytics>> + Send;
    fn creator_overview(
        &self,
        caller: &Principal,
        creator_id: &str,
        query: PeriodQuery,
    ) -> impl Future<Output = ApiResult<CreatorOverview>> + Send;
}

/// Live channels (RTSP cameras into live HLS ladders) and what the origin
/// serves of them under `/live/{channelId}/`.
pub trait Live: Send + Sync + 'static {
    fn create_channel(
        &self,
        caller: &Principal,
        req: LiveChannelCreate,
    ) -> impl Future<Output = ApiResult<LiveChannel>> + Send;
    /// The caller's channels (every channel for an admin), newest first.
    fn channels(
        &self,
        caller: &Principal,
        page: PageQuery,
    ) -> impl Future<Output = ApiResult<Page<LiveChannel>>> + Send;
    fn channel(
        &self,
        caller: &Principal,
        id: &str,
    ) -> impl Future<Output = ApiResult<LiveChannel>> + Send;
    /// Stops pulling, ends the playlists; a recording channel becomes a video.
    fn stop_channel(
        &self,
        caller: &Principal,
        id: &str,
    ) -> impl Future<Output = ApiResult<LiveChannel>> + Send;
    fn clip(
        &self,
        caller: &Principal,
        id: &str,
        req: LiveClip,
    ) -> impl Future<Output = ApiResult<Accepted>> + Send;
    fn live_lookup(
        &self,
        channel_id: &str,
        path: &str,
    ) -> impl Future<Output = ApiResult<OriginLookup>> + Send;
    fn live_read(
        &self,
        channel_id: &str,
        path: &str,
        range: Range<u64>,
    ) -> impl Future<Output = ApiResult<Bytes>> + Send;
}

/// Operations: hardware, jobs, experiments, readiness, metrics.
pub trait Ops: Send + Sync + 'static {
    fn inventory(&self) -> impl Future<Output = ApiResult<serde_json::Value>> + Send;
    /// Jobs newest first, a page at a time.
    fn jobs(&self, query: JobsQuery) -> impl Future<Output = ApiResult<Page<Job>>> + Send;
    fn reprocess(&self, video_id: &str) -> impl Future<Output = ApiResult<Accepted>> + Send;
    /// The running A/B experiment of rankers, per variant, recounted from
    /// the analytics store.
    fn experiments(&self) -> impl Future<Output = ApiResult<ExperimentReport>> + Send;
    fn readiness(&self) -> impl Future<Output = Health> + Send;
    fn metrics(&self) -> impl Future<Output = String> + Send;
    /// The status page's content; `admin` adds failed jobs and recent
    /// errors.
    fn status(&self, admin: bool) -> impl Future<Output = StatusReport> + Send;
}

/// Idempotency-key bookkeeping (scope = caller + route).
pub trait Idempotency: Send + Sync + 'static {
    fn idempotency_begin(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
    ) -> impl Future<Output = ApiResult<IdempotencyBegin>> + Send;
    fn idempotency_finish(
        &self,
        scope: &str,
        key: &str,
        status: u16,
        body: Bytes,
    ) -> impl Future<Output = ()> + Send;
    fn idempotency_abort(&self, scope: &str, key: &str) -> impl Future<Output = ()> + Send;
}

/// Where each domain's implementation lives: the router asks the service
/// for the domain a route belongs to, so each domain is implemented (and
/// can be replaced in tests) on its own.
pub trait Service: Send + Sync + 'static {
    type Accounts: Accounts;
    type Uploads: Uploads;
    type Videos: Videos;
    type Origin: Origin;
    type Feed: Feed;
    type Engagement: Engagement;
    type Analytics: Analytics;
    type Ops: Ops;
    type Idempotency: Idempotency;
    type Live: Live;

    fn accounts(&self) -> &Self::Accounts;
    fn uploads(&self) -> &Self::Uploads;
    fn videos(&self) -> &Self::Videos;
    fn origin(&self) -> &Self::Origin;
    fn feed(&self) -> &Self::Feed;
    fn engagement(&self) -> &Self::Engagement;
    fn analytics(&self) -> &Self::Analytics;
    fn ops(&self) -> &Self::Ops;
    fn idempotency(&self) -> &Self::Idempotency;
    fn live(&self) -> &Self::Live;
    type Webhooks: Webhooks;
    fn webhooks(&self) -> &Self::Webhooks;
    type Notifications: Notifications;
    fn notifications(&self) -> &Self::Notifications;
    type Search: Search;
    fn search(&self) -> &Self::Search;
    type Sounds: Sounds;
    fn sounds(&self) -> &Self::Sounds;
    type Copyright: Copyright;
    fn copyright(&self) -> &Self::Copyright;
    type Remixes: Remixes;
    fn remixes(&self) -> &Self::Remixes;
}

/// Duets and stitches (FR6): the caller's finished upload session composed
/// with a ready video they can see (side by side, or a clip of it first),
/// queued as an ordinary video linked to its original. Refused with 403
/// when the original's creator turned that remix off.
pub trait Remixes: Send + Sync + 'static {
    fn duet(
        &self,
        caller: &Principal,
        original_id: &str,
        req: DuetRequest,
    ) -> impl Future<Output = ApiResult<Accepted>> + Send;
    fn stitch(
        &self,
        caller: &Principal,
        original_id: &str,
        req: StitchRequest,
    ) -> impl Future<Output = ApiResult<Accepted>> + Send;
    /// The original's ready, public remixes, newest first.
    fn remixes(
        &self,
        caller: Option<&Principal>,
        original_id: &str,
        page: PageQuery,
    ) -> impl Future<Output = ApiResult<Page<Video>>> + Send;
}

/// Search over users, sounds and hashtags (videos are the feed's, see
/// [`Feed::search_videos`]): each a page of typed hits for `q`, from an
/// index kept current in the background (never a scan per query). A blank
/// `q` or a bad `limit`/`cursor` is a 400 naming it; 503 while the index
/// is first being opened.
pub trait Search: Send + Sync + 'static {
    /// Users whose username starts with `q` (case-insensitive), the most
    /// followed first (then in registration order).
    fn search_users(
        &self,
        query: SearchQuery,
    ) -> impl Future<Output = ApiResult<Page<UserHit>>> + Send;
    /// Sounds whose titles have `q`'s words, its last word as a prefix,
    /// ranked by text relevance and by how many videos use them.
    fn search_sounds(
        &self,
        query: SearchQuery,
    ) -> impl Future<Output = ApiResult<Page<SoundHit>>> + Send;
    /// Hashtags starting with `q`, trending first, then by videos.
    fn search_hashtags(
        &self,
        query: SearchQuery,
    ) -> impl Future<Output = ApiResult<Page<HashtagHit>>> + Send;
}

/// The sounds library: a video's original audio becomes a sound that
/// other videos reuse (by `soundId`, or because their audio matches it).
pub trait Sounds: Send + Sync + 'static {
    /// A sound with its usage (ready public videos); 404 when unknown.
    fn sound(&self, id: &str) -> impl Future<Output = ApiResult<Sound>> + Send;
    /// The ready public videos using a sound, newest first.
    fn sound_videos(
        &self,
        id: &str,
        page: PageQuery,
    ) -> impl Future<Output = ApiResult<Page<Video>>> + Send;
    /// Sounds by how many videos published lately use them, most first.
    fn trending_sounds(
        &self,
        page: PageQuery,
    ) -> impl Future<Output = ApiResult<Page<Sound>>> + Send;
}

/// The copyright check's reference library and what it found (admins
/// only; the handlers check the role).
pub trait Copyright: Send + Sync + 'static {
    /// Fingerprints `file` (any audio or video FFmpeg decodes, as an
    /// upload's audio is) and adds it with its policy; a file with no
    /// decodable audio is a 400 naming `file`.
    fn add_reference(
        &self,
        caller: &Principal,
        meta: ReferenceAudioMeta,
        file: Bytes,
    ) -> impl Future<Output = ApiResult<ReferenceAudio>> + Send;
    /// The library, newest first.
    fn references(
        &self,
        page: PageQuery,
    ) -> impl Future<Output = ApiResult<Page<ReferenceAudio>>> + Send;
    /// Removes a track (and the matches recorded against it).
    fn delete_reference(&self, id: &str) -> impl Future<Output = ApiResult<()>> + Send;
    /// Uploads whose audio matched a `flag` or `block` reference, newest
    /// first.
    fn flags(&self, page: PageQuery) -> impl Future<Output = ApiResult<Page<AudioFlag>>> + Send;
}

/// Webhook endpoints (admins only; the handlers check the role): each
/// endpoint gets the events it subscribed to, signed, retried for a day,
/// with a log of every attempt.
pub trait Webhooks: Send + Sync + 'static {
    /// Registers an endpoint; the answer carries its secret, the only time
    /// it is shown.
    fn create_webhook(&self, req: WebhookCreate)
        -> impl Future<Output = ApiResult<Webhook>> + Send;
    /// Endpoints, newest first.
    fn list_webhooks(
        &self,
        page: PageQuery,
    ) -> impl Future<Output = ApiResult<Page<Webhook>>> + Send;
    fn webhook(&self, id: &str) -> impl Future<Output = ApiResult<Webhook>> + Send;
    /// Deletes an endpoint (and its secret); its pending deliveries are
    /// cancelled.
    fn delete_webhook(&self, id: &str) -> impl Future<Output = ApiResult<()>> + Send;
    /// An endpoint's deliveries, newest first, each with its attempts.
    fn webhook_deliveries(
        &self,
        id: &str,
        page: PageQuery,
    ) -> impl Future<Output = ApiResult<Page<WebhookDelivery>>> + Send;
    /// Sends a delivery again now (same event id), with a fresh retry window.
    fn redeliver(
        &self,
        id: &str,
        delivery_id: i64,
    ) -> impl Future<Output = ApiResult<WebhookDelivery>> + Send;
}

/// Signed playback of private videos: playback tokens for a video's owner
/// (or an admin), checked by the origin on every request that carries one
/// (`routes::playback`). A supertrait of [`Origin`], so it is implemented
/// beside the origin's lookups, on the same gate and cache.
pub trait Playback: Send + Sync + 'static {
    /// A token for `video_id`: its owner or an admin only (anyone else gets
    /// the 404 the video's page gives them); 503 when signed playback is
    /// not configured; a bad `ttlSecs`, `referrer` or `ipPrefix` is a 400
    /// naming it.
    fn playback_token(
        &self,
        caller: &Principal,
        video_id: &str,
        req: PlaybackTokenRequest,
    ) -> impl Future<Output = ApiResult<IssuedToken>> + Send;
    /// Checks a token presented for `video_id` by `client` (signature, key
    /// id, expiry, video, IP prefix, referrer); a refusal is a 403 whose
    /// details name the reason.
    fn check_playback(
        &self,
        token: &str,
        video_id: &str,
        client: &PlaybackClient,
    ) -> ApiResult<PlaybackGrant>;
    /// `Origin::origin_lookup` for a request whose token checked out: a
    /// private video's files are found too.
    fn signed_lookup(
        &self,
        video_id: &str,
        path: &str,
    ) -> impl Future<Output = ApiResult<OriginLookup>> + Send;
    /// The video a checked token names, whatever its visibility (for the
    /// player page's title); 404 when it is gone.
    fn signed_video(&self, video_id: &str) -> impl Future<Output = ApiResult<Video>> + Send;
}

/// A user's notifications (new followers, replies to their comments, like
/// milestones, their uploads ready or failed): always the caller's own.
pub trait Notifications: Send + Sync + 'static {
    /// Newest first, a page at a time, with the unread count.
    fn notifications(
        &self,
        caller: &Principal,
        query: NotificationsQuery,
    ) -> impl Future<Output = ApiResult<NotificationPage>> + Send;
    /// Marks notifications read; answers the unread count left.
    fn mark_read(
        &self,
        caller: &Principal,
        req: MarkRead,
    ) -> impl Future<Output = ApiResult<UnreadCount>> + Send;
    /// The caller's live stream: the unread count, then what was made
    /// after `last_event_id` (when the client reconnects with one), then
    /// every new notification and unread count as it happens.
    fn notification_events(
        &self,
        caller: &Principal,
        last_event_id: Option<i64>,
    ) -> impl Future<Output = ApiResult<BoxStream<'static, NotificationEvent>>> + Send;
}
