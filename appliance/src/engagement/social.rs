//! Engagement actions: likes, saves, shares, threaded comments, follows
//! and follower lists, trending hashtags. Rows in the catalog are the
//! truth; every change also becomes an event (spool → analytics) and a hot
//! counter delta, and what the feed learns from (watches, follows) goes to
//! the `Listener`.

use std::sync::Arc;

use api::wire::*;
use api::{ApiError, ApiResult};

use super::events::{Event, Kind};
use super::{Engagement, Listener, Notifier};
use crate::error::Result;
use crate::store::catalog::{self as cat, now_ms, rfc3339, Catalog, Flag, VideoRow};

const SHARE_CHANNELS: &[&str] = &[
    "copy_link",
    "sms",
    "whatsapp",
    "messenger",
    "email",
    "twitter",
    "facebook",
    "instagram",
    "telegram",
    "other",
];

fn page_limit(limit: Option<u32>, max: u32) -> Result<u32> {
    let l = limit.unwrap_or(20);
    if !(1..=max).contains(&l) {
        return Err(ApiError::invalid("limit", format!("must be 1–{max}, got {l}")).into());
    }
    Ok(l)
}

fn comment_wire(c: cat::CommentRow) -> Comment {
    Comment {
        id: c.id,
        video_id: c.video_id,
        user_id: c.user_id,
        username: c.username,
        parent_id: c.parent_id,
        body: c.body,
        reply_count: c.reply_count,
        created_at: rfc3339(c.created_at),
    }
}

/// The engagement domain's service: what `api::Engagement` and
/// `api::Analytics` run on.
pub struct Social {
    pub(super) catalog: Catalog,
    pub(super) engagement: Arc<Engagement>,
    pub(super) listener: Arc<dyn Listener>,
    notifier: Arc<dyn Notifier>,
}

impl Social {
    pub fn new(
        catalog: Catalog,
        engagement: Arc<Engagement>,
        listener: Arc<dyn Listener>,
        notifier: Arc<dyn Notifier>,
    ) -> Self {
        Self {
            catalog,
            engagement,
            listener,
            notifier,
        }
    }

    /// A video the caller may engage with (visible to them and ready).
    async fn engageable(&self, caller: &Principal, id: &str) -> Result<VideoRow> {
        let v = crate::store::visible_video(&self.catalog, Some(caller), id).await?;
        if v.state != "ready" {
            return Err(ApiError::conflict("this video is not published yet").into());
        }
        Ok(v)
    }

    /// Records an engagement action: the event (spool, counters) after the
    /// catalog row that it describes.
    async fn action(&self, kind: Kind, v: &VideoRow, user: &str) -> Result<()> {
        let id = format!("{}:{}", kind.as_str(), uuid::Uuid::new_v4().simple());
        let e = Event::action(kind, id, &v.id, &v.owner_id, user);
        self.engagement.accept(vec![e]).await?;
        Ok(())
    }

    pub async fn set_like(&self, caller: &Principal, id: &str, on: bool) -> Result<LikeState> {
        let v = self.engageable(caller, id).await?;
        let changed = self.set_flag(Flag::Like, &v, caller, on).await?;
        if changed {
            self.action(
                if on { Kind::Like } else { Kind::Unlike },
                &v,
                &caller.user_id,
            )
            .await?;
        }
        // After the hot counter moved: the count includes this like.
        let likes = self.engagement.video_counts(&v.id).await?.likes;
        if changed && on {
            self.notifier.liked(&v, &caller.user_id, likes).await;
        }
        Ok(LikeState {
            video_id: v.id.clone(),
            liked: on,
            likes,
        })
    }

    pub async fn set_save(&self, caller: &Principal, id: &str, on: bool) -> Result<SaveState> {
        let v = self.engageable(caller, id).await?;
        let changed = self.set_flag(Flag::Save, &v, caller, on).await?;
        if changed {
            self.action(
                if on { Kind::Save } else { Kind::Unsave },
                &v,
                &caller.user_id,
            )
            .await?;
        }
        Ok(SaveState {
            video_id: v.id.clone(),
            saved: on,
            saves: self.engagement.video_counts(&v.id).await?.saves,
        })
    }

    async fn set_flag(
        &self,
        flag: Flag,
        v: &VideoRow,
        caller: &Principal,
        on: bool,
    ) -> Result<bool> {
        let (vid, uid) = (v.id.clone(), caller.user_id.clone());
        self.catalog
            .call(move |c| cat::set_flag(c, flag, &vid, &uid, on))
            .await
    }

    pub async fn share_video(
        &self,
        caller: &Principal,
        id: &str,
        req: ShareRequest,
    ) -> Result<ShareAccepted> {
        // Exactly one of the listed names, as the API schema's enum says.
        let channel = req.channel.clone();
        if !SHARE_CHANNELS.contains(&channel.as_str()) {
            return Err(ApiError::invalid(
                "channel",
                format!("{:?} is not one of {SHARE_CHANNELS:?}", req.channel),
            )
            .into());
        }
        let v = self.engageable(caller, id).await?;
        let (vid, uid, ch) = (v.id.clone(), caller.user_id.clone(), channel.clone());
        let by_channel = self
            .catalog
            .call(move |c| {
                cat::insert_share(c, &vid, &uid, &ch)?;
                cat::share_channels(c, &vid)
            })
            .await?;
        let id = format!("share:{}", uuid::Uuid::new_v4().simple());
        let mut e = Event::action(Kind::Share, id, &v.id, &v.owner_id, &caller.user_id);
        e.channel = channel.clone();
        self.engagement.accept(vec![e]).await?;
        Ok(ShareAccepted {
            video_id: v.id,
            channel,
            by_channel: by_channel.into_iter().collect(),
        })
    }

    pub async fn comment(
        &self,
        caller: &Principal,
        id: &str,
        req: CommentCreate,
    ) -> Result<Comment> {
        // The length as sent (what the API schema states); blankness after
        // trimming.
        let long = req.body.chars().count() > 2000;
        let body = req.body.trim().to_owned();
        if body.is_empty() || long {
            return Err(ApiError::invalid("body", "a comment is 1–2000 characters").into());
        }
        let v = self.engageable(caller, id).await?;
        // The thread the reply joins, and who wrote the comment it answers.
        let parent = match req.parent_id {
            None => None,
            Some(p) => {
                let pid = p.clone();
                let found = self.catalog.call(move |c| cat::comment(c, &pid)).await?;
                match found {
                    Some(pc) if pc.video_id == v.id => {
                        Some((pc.parent_id.unwrap_or(pc.id), pc.user_id))
                    }
                    Some(_) | None => {
                        return Err(ApiError::invalid(
                            "parentId",
                            format!("{p:?} is not a comment on this video"),
                        )
                        .into())
                    }
                }
            }
        };
        let row = cat::CommentRow {
            id: uuid::Uuid::new_v4().simple().to_string(),
            video_id: v.id.clone(),
            user_id: caller.user_id.clone(),
            username: String::new(),
            parent_id: parent.as_ref().map(|(thread, _)| thread.clone()),
            body,
            reply_count: 0,
            created_at: now_ms(),
            seq: 0,
        };
        let r = row.clone();
        self.catalog
            .call(move |c| cat::insert_comment(c, &r))
            .await?;
        self.action(Kind::Comment, &v, &caller.user_id).await?;
        if let Some((_, to)) = &parent {
            self.notifier.replied(&v, to, &row).await;
        }
        let cid = row.id.clone();
        let stored = self
            .catalog
            .call(move |c| cat::comment(c, &cid))
            .await?
            .unwrap_or(row);
        Ok(comment_wire(stored))
    }

    pub async fn list_comments(
        &self,
        caller: Option<&Principal>,
        video: Option<&str>,
        parent: Option<&str>,
        page: PageQuery,
    ) -> Result<Page<Comment>> {
        let limit = page_limit(page.limit, 100)?;
        let after = page
            .cursor
            .as_deref()
            .map(api::cursor::parse_seq)
            .transpose()?;
        let video_id = match (video, parent) {
            (Some(v), _) => v.to_owned(),
            (None, Some(p)) => {
                let pid = p.to_owned();
                self.catalog
                    .call(move |c| cat::comment(c, &pid))
                    .await?
                    .ok_or_else(|| ApiError::not_found("comment"))?
                    .video_id
            }
            (None, None) => return Err(ApiError::not_found("comment").into()),
        };
        crate::store::visible_video(&self.catalog, caller, &video_id).await?;
        let p = parent.map(str::to_owned);
        let rows = self
            .catalog
            .call(move |c| cat::comments_page(c, &video_id, p.as_deref(), after, limit + 1))
            .await?;
        Ok(Page::from_overfetch(
            rows,
            limit,
            |c| api::cursor::seq(c.seq),
            comment_wire,
        ))
    }

    pub async fn follow_list(
        &self,
        user: &str,
        followers: bool,
        page: PageQuery,
    ) -> Result<Page<FollowEntry>> {
        let limit = page_limit(page.limit, 100)?;
        let after = page
            .cursor
            .as_deref()
            .map(api::cursor::parse_since)
            .transpose()?;
        let uid = user.to_owned();
        let rows = self
            .catalog
            .call(move |c| {
                if cat::user_by_id(c, &uid)?.is_none() {
                    return Ok(None);
                }
                cat::follows_page(c, &uid, followers, after, limit + 1).map(Some)
            })
            .await?
            .ok_or_else(|| ApiError::not_found("user"))?;
        Ok(Page::from_overfetch(
            rows,
            limit,
            |(id, _, at)| api::cursor::since(*at, id),
            |(user_id, username, at)| FollowEntry {
                user_id,
                username,
                since: rfc3339(at),
            },
        ))
    }

    pub fn trending_tags(&self, limit: u32) -> Result<Vec<TrendingHashtag>> {
        let limit = page_limit(Some(limit), 100)?;
        Ok(self
            .engagement
            .trending_tags()
            .into_iter()
            .take(limit as usize)
            .map(|(tag, score, videos)| TrendingHashtag { tag, score, videos })
            .collect())
    }

    pub async fn follow(&self, caller: &Principal, user_id: &str, on: bool) -> Result<FollowState> {
        if user_id == caller.user_id {
            return Err(ApiError::validation("you cannot follow yourself").into());
        }
        let id = user_id.to_string();
        if self
            .catalog
            .call(move |c| cat::user_by_id(c, &id))
            .await?
            .is_none()
        {
            return Err(ApiError::not_found("user").into());
        }
        let (a, b) = (caller.user_id.clone(), user_id.to_string());
        let changed = self
            .catalog
            .call(move |c| cat::set_follow(c, &a, &b, on))
            .await?;
        self.listener.followed(&caller.user_id, user_id, on);
        if changed && on {
            self.notifier.followed(&caller.user_id, user_id).await;
        }
        Ok(FollowState {
            user_id: user_id.to_string(),
            following: on,
        })
    }
}

impl api::Engagement for Social {
    async fn watch_batch(&self, caller: &Principal, req: WatchBatch) -> ApiResult<WatchAccepted> {
        Ok(self.watch_batch(caller, req).await?)
    }

    async fn follow(&self, caller: &Principal, user_id: &str, on: bool) -> ApiResult<FollowState> {
        Ok(self.follow(caller, user_id, on).await?)
    }

    async fn like(&self, caller: &Principal, video_id: &str, on: bool) -> ApiResult<LikeState> {
        Ok(self.set_like(caller, video_id, on).await?)
    }

    async fn save(&self, caller: &Principal, video_id: &str, on: bool) -> ApiResult<SaveState> {
        Ok(self.set_save(caller, video_id, on).await?)
    }

    async fn share(
        &self,
        caller: &Principal,
        video_id: &str,
        req: ShareRequest,
    ) -> ApiResult<ShareAccepted> {
        Ok(self.share_video(caller, video_id, req).await?)
    }

    async fn add_comment(
        &self,
        caller: &Principal,
        video_id: &str,
        req: CommentCreate,
    ) -> ApiResult<Comment> {
        Ok(self.comment(caller, video_id, req).await?)
    }

    async fn comments(
        &self,
        caller: Option<&Principal>,
        video_id: &str,
        page: PageQuery,
    ) -> ApiResult<Page<Comment>> {
        Ok(self
            .list_comments(caller, Some(video_id), None, page)
            .await?)
    }

    async fn replies(
        &self,
        caller: Option<&Principal>,
        comment_id: &str,
        page: PageQuery,
    ) -> ApiResult<Page<Comment>> {
        Ok(self
            .list_comments(caller, None, Some(comment_id), page)
            .await?)
    }

    async fn follows(
        &self,
        user_id: &str,
        followers: bool,
        page: PageQuery,
    ) -> ApiResult<Page<FollowEntry>> {
        Ok(self.follow_list(user_id, followers, page).await?)
    }

    async fn trending_hashtags(&self, limit: u32) -> ApiResult<Vec<TrendingHashtag>> {
        Ok(self.trending_tags(limit)?)
    }
}
