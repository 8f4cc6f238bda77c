//! The seam between HTTP and the appliance: everything a handler needs from
//! the box, as one trait the composition root (`appliance`) implements.
//! Handlers do HTTP (parsing, auth headers, status codes, caching headers);
//! the implementation does the work and reports failures as `ApiError`s.

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

pub trait Service: Send + Sync + 'static {
    // --- users and auth ---
    fn register(
        &self,
        req: RegisterRequest,
    ) -> impl Future<Output = ApiResult<AuthResponse>> + Send;
    fn login(&self, req: LoginRequest) -> impl Future<Output = ApiResult<AuthResponse>> + Send;
    /// The principal a bearer token stands for; `UNAUTHORIZED` if unknown or expired.
    fn authenticate(&self, token: &str) -> impl Future<Output = ApiResult<Principal>> + Send;
    fn get_user(&self, id: &str) -> impl Future<Output = ApiResult<User>> + Send;
    fn user_videos(
        &self,
        caller: Option<&Principal>,
        user_id: &str,
        page: PageQuery,
    ) -> impl Future<Output = ApiResult<Page<Video>>> + Send;

    // --- uploads ---
    fn init_upload(
        &self,
        caller: &Principal,
        req: UploadInit,
    ) -> impl Future<Output = ApiResult<UploadSession>> + Send;
    /// `sha256` is the client's hex digest of `body`, checked when present.
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
    /// Single-shot upload of a small file.
    fn create_video(
        &self,
        caller: &Principal,
        filename: String,
        meta: VideoMeta,
        body: Bytes,
    ) -> impl Future<Output = ApiResult<Accepted>> + Send;

    // --- videos ---
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
    /// The current state first, then every change until a final state.
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

    // --- HLS origin ---
    /// `path` has been validated: `master.m3u8`, `poster.jpg` or
    /// `<rendition>/<file>` with safe names only.
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

    // --- idempotency keys (scope = caller + route) ---
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
    /// The request failed in a way worth retrying (5xx): forget the key.
    fn idempotency_abort(&self, scope: &str, key: &str) -> impl Future<Output = ()> + Send;

    // --- operations ---
    fn feed(
        &self,
        caller: Option<&Principal>,
        kind: FeedKind,
        query: FeedQuery,
    ) -> impl Future<Output = ApiResult<Feed>> + Send;
    fn set_interests(
        &self,
        caller: &Principal,
        req: Interests,
    ) -> impl Future<Output = ApiResult<InterestsSet>> + Send;
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
    fn search_videos(
        &self,
        query: SearchQuery,
    ) -> impl Future<Output = ApiResult<Page<Video>>> + Send;
    fn hashtag_videos(
        &self,
        tag: &str,
        page: PageQuery,
    ) -> impl Future<Output = ApiResult<Page<Video>>> + Send;

    // --- engagement ---
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
    /// Followers (`followers = true`) or followees of a user.
    fn follows(
        &self,
        user_id: &str,
        followers: bool,
        page: PageQuery,
    ) -> impl Future<Output = ApiResult<Page<FollowEntry>>> + Send;
    fn trending_hashtags(
        &self,
        limit: u32,
    ) -> impl Future<Output = ApiResult<Vec<TrendingHashtag>>> + Send;
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

    fn inventory(&self) -> impl Future<Output = ApiResult<serde_json::Value>> + Send;
    fn jobs(&self, limit: u32) -> impl Future<Output = ApiResult<Vec<Job>>> + Send;
    fn reprocess(&self, video_id: &str) -> impl Future<Output = ApiResult<Accepted>> + Send;
    fn readiness(&self) -> impl Future<Output = Health> + Send;
    /// Prometheus text exposition.
    fn metrics(&self) -> impl Future<Output = String> + Send;
}
