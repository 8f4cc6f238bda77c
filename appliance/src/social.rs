//! The engagement endpoints: likes, saves, shares, threaded comments,
//! follower lists, trending hashtags and creator analytics, plus the counts
//! and the caller's flags on a video. Rows in the catalog are the truth;
//! every change also becomes an event (spool → analytics) and a hot
//! counter delta.

use std::collections::BTreeMap;

use api::wire::*;
use api::ApiError;

use crate::analytics::{Scope, Totals};
use crate::app::App;
use crate::catalog::{self as cat, now_ms, rfc3339, Flag, VideoRow};
use crate::error::Result;
use crate::events::{Event, Kind};

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
        return Err(ApiError::validation(format!("limit must be 1–{max}, got {l}")).into());
    }
    Ok(l)
}

fn cursor_of(at: i64, id: &str) -> String {
    format!("{at}.{id}")
}

fn parse_cursor(c: Option<&str>) -> Result<Option<(i64, String)>> {
    let Some(c) = c else { return Ok(None) };
    let bad = || ApiError::validation("malformed cursor");
    let (at, id) = c.split_once('.').ok_or_else(bad)?;
    let at: i64 = at.parse().map_err(|_| bad())?;
    if id.is_empty() || !id.chars().all(|ch| ch.is_ascii_alphanumeric()) {
        return Err(bad().into());
    }
    Ok(Some((at, id.to_owned())))
}

/// `24h` | `7d` | `30d` → (label, seconds).
fn period(q: &PeriodQuery) -> Result<(String, i64)> {
    let p = q.period.as_deref().unwrap_or("24h");
    let secs = match p {
        "24h" => 86_400,
        "7d" => 7 * 86_400,
        "30d" => 30 * 86_400,
        other => {
            return Err(ApiError::validation(format!(
                "period must be 24h, 7d or 30d, got {other:?}"
            ))
            .into())
        }
    };
    Ok((p.to_owned(), secs))
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

fn ratio(a: f64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a / b as f64
    }
}

/// Metrics over rollup rows (any number of sources per hour).
pub fn metrics(label: String, rows: &[crate::analytics::HourRow], unique_viewers: u64) -> Metrics {
    let t = Totals::of(rows);
    let mut sources = BTreeMap::new();
    let mut hours: BTreeMap<i64, HourPoint> = BTreeMap::new();
    for r in rows {
        if !r.source.is_empty() && r.views > 0 {
            *sources.entry(r.source.clone()).or_insert(0) += r.views;
        }
        let h = hours.entry(r.hour).or_insert_with(|| HourPoint {
            hour: rfc3339(r.hour * 1000),
            ..HourPoint::default()
        });
        h.views += r.views;
        h.watch_ms += r.watch_ms;
        h.completions += r.completions;
        h.likes += r.likes;
        h.comments += r.comments;
        h.shares += r.shares;
        h.saves += r.saves;
    }
    let engaged = (t.likes + t.comments + t.shares + t.saves).max(0) as f64;
    Metrics {
        period: label,
        views: t.views,
        unique_viewers,
        total_watch_ms: t.watch_ms,
        avg_watch_ms: ratio(t.watch_ms as f64, t.views),
        completion_rate: ratio(t.completions as f64, t.views),
        engagement_rate: ratio(engaged, t.views),
        likes: t.likes,
        comments: t.comments,
        shares: t.shares,
        saves: t.saves,
        traffic_sources: sources,
        hourly: hours.into_values().collect(),
    }
}

impl App {
    /// A video the caller may engage with (visible to them and ready).
    async fn engageable(&self, caller: &Principal, id: &str) -> Result<VideoRow> {
        let v = self.visible_video(Some(caller), id).await?;
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

    /// Flushed counters plus what the hot store holds.
    pub async fn video_counts(&self, id: &str) -> Result<VideoStats> {
        let vid = id.to_owned();
        let mut c = self
            .catalog
            .call(move |c| cat::video_stats(c, &vid))
            .await?;
        c.add(&self.engagement.hot.pending(id).await);
        let n = |v: i64| v.max(0) as u64;
        Ok(VideoStats {
            views: n(c.views),
            likes: n(c.likes),
            comments: n(c.comments),
            shares: n(c.shares),
            saves: n(c.saves),
        })
    }

    pub async fn video_with_engagement(
        &self,
        caller: Option<&Principal>,
        v: &VideoRow,
    ) -> Result<Video> {
        let mut wire = App::video_wire(v);
        wire.stats = self.video_counts(&v.id).await?;
        if let Some(p) = caller {
            let (vid, uid) = (v.id.clone(), p.user_id.clone());
            let (liked, saved) = self
                .catalog
                .call(move |c| cat::viewer_flags(c, &vid, &uid))
                .await?;
            wire.viewer = ViewerEngagement { liked, saved };
        }
        Ok(wire)
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
        Ok(LikeState {
            video_id: v.id.clone(),
            liked: on,
            likes: self.video_counts(&v.id).await?.likes,
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
            saves: self.video_counts(&v.id).await?.saves,
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
        let channel = req.channel.trim().to_lowercase();
        if !SHARE_CHANNELS.contains(&channel.as_str()) {
            return Err(ApiError::validation(format!(
                "channel {:?} is not one of {SHARE_CHANNELS:?}",
                req.channel
            ))
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
        let body = req.body.trim().to_owned();
        if body.is_empty() || body.chars().count() > 2000 {
            return Err(ApiError::validation("a comment is 1–2000 characters").into());
        }
        let v = self.engageable(caller, id).await?;
        let parent = match req.parent_id {
            None => None,
            Some(p) => {
                let pid = p.clone();
                let found = self.catalog.call(move |c| cat::comment(c, &pid)).await?;
                match found {
                    Some(pc) if pc.video_id == v.id => Some(pc.parent_id.unwrap_or(pc.id)),
                    Some(_) | None => {
                        return Err(ApiError::validation(format!(
                            "parentId {p:?} is not a comment on this video"
                        ))
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
            parent_id: parent,
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
        let after = match page.cursor.as_deref() {
            None => None,
            Some(c) => Some(
                c.parse::<i64>()
                    .map_err(|_| ApiError::validation("malformed cursor"))?,
            ),
        };
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
        self.visible_video(caller, &video_id).await?;
        let p = parent.map(str::to_owned);
        let rows = self
            .catalog
            .call(move |c| cat::comments_page(c, &video_id, p.as_deref(), after, limit + 1))
            .await?;
        let more = rows.len() > limit as usize;
        let next_cursor = more
            .then(|| rows.get(limit as usize - 1).map(|c| c.seq.to_string()))
            .flatten();
        let items = rows
            .into_iter()
            .take(limit as usize)
            .map(comment_wire)
            .collect();
        Ok(Page { items, next_cursor })
    }

    pub async fn follow_list(
        &self,
        user: &str,
        followers: bool,
        page: PageQuery,
    ) -> Result<Page<FollowEntry>> {
        let limit = page_limit(page.limit, 100)?;
        let after = parse_cursor(page.cursor.as_deref())?;
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
        let more = rows.len() > limit as usize;
        let next_cursor = more
            .then(|| {
                rows.get(limit as usize - 1)
                    .map(|(id, _, at)| cursor_of(*at, id))
            })
            .flatten();
        Ok(Page {
            items: rows
                .into_iter()
                .take(limit as usize)
                .map(|(user_id, username, at)| FollowEntry {
                    user_id,
                    username,
                    since: rfc3339(at),
                })
                .collect(),
            next_cursor,
        })
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

    pub async fn analytics_of_video(
        &self,
        caller: &Principal,
        id: &str,
        q: PeriodQuery,
    ) -> Result<VideoAnalytics> {
        let (label, secs) = period(&q)?;
        let v = self.visible_video(Some(caller), id).await?;
        if !caller.may_manage(&v.owner_id) {
            return Err(ApiError::forbidden("only the video's creator sees its analytics").into());
        }
        let scope = Scope::Video(v.id.clone());
        let since = now_ms() / 1000 - secs;
        let a = &self.engagement.analytics;
        let (rows, viewers) =
            futures::try_join!(a.rollups(&scope, since), a.unique_viewers(&scope, since))?;
        Ok(VideoAnalytics {
            video_id: v.id,
            metrics: metrics(label, &rows, viewers),
        })
    }

    pub async fn creator_summary(
        &self,
        caller: &Principal,
        creator: &str,
        q: PeriodQuery,
    ) -> Result<CreatorOverview> {
        let (label, secs) = period(&q)?;
        let cid = creator.to_owned();
        let found = self
            .catalog
            .call(move |c| {
                let Some(u) = cat::user_by_id(c, &cid)? else {
                    return Ok(None);
                };
                let counts = cat::follow_counts(c, &u.id)?;
                let videos = cat::ready_video_count(c, &u.id)?;
                Ok(Some((counts, videos)))
            })
            .await?;
        let Some(((followers, following), videos)) = found else {
            return Err(ApiError::not_found("user").into());
        };
        if !caller.may_manage(creator) {
            return Err(ApiError::forbidden("only the creator sees their analytics").into());
        }
        let scope = Scope::Creator(creator.to_owned());
        let since = now_ms() / 1000 - secs;
        let a = &self.engagement.analytics;
        let (rows, viewers) =
            futures::try_join!(a.rollups(&scope, since), a.unique_viewers(&scope, since))?;
        Ok(CreatorOverview {
            creator_id: creator.to_owned(),
            followers,
            following,
            videos,
            metrics: metrics(label, &rows, viewers),
        })
    }

    /// Sliding-window rate limit on `key`; a 429 with `Retry-After` when
    /// over. The hot store decides (per process while Redis is away).
    pub async fn limit(
        &self,
        what: &str,
        key: &str,
        limit: u32,
        window: std::time::Duration,
    ) -> Result<()> {
        if limit == 0 {
            return Ok(());
        }
        let wait = self
            .engagement
            .hot
            .rate(&format!("{what}:{key}"), limit, window)
            .await?;
        match wait {
            None => Ok(()),
            Some(ms) => {
                let secs = (ms as u64).div_ceil(1000).max(1);
                let mut e = ApiError::new(
                    api::ErrorCode::RateLimited,
                    format!(
                        "too many {what}: at most {limit} per {} s; retry in {secs} s",
                        window.as_secs()
                    ),
                );
                e.retry_after = Some(secs);
                Err(e.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::HourRow;

    #[test]
    fn metrics_merge_sources_per_hour_and_rates_are_per_view() {
        let rows = vec![
            HourRow {
                hour: 3600,
                source: "fyp".into(),
                views: 3,
                watch_ms: 3000,
                completions: 1,
                ..Default::default()
            },
            HourRow {
                hour: 3600,
                source: "search".into(),
                views: 1,
                watch_ms: 1000,
                completions: 1,
                ..Default::default()
            },
            HourRow {
                hour: 7200,
                source: String::new(),
                likes: 2,
                shares: 1,
                ..Default::default()
            },
        ];
        let m = metrics("24h".into(), &rows, 3);
        assert_eq!((m.views, m.unique_viewers, m.total_watch_ms), (4, 3, 4000));
        assert_eq!(m.avg_watch_ms, 1000.0);
        assert_eq!(m.completion_rate, 0.5);
        assert_eq!(m.engagement_rate, 0.75);
        assert_eq!(m.traffic_sources.get("fyp"), Some(&3));
        assert!(!m.traffic_sources.contains_key(""));
        assert_eq!(m.hourly.len(), 2);
        assert_eq!(m.hourly[0].views, 4);
    }

    #[test]
    fn periods_and_cursors_are_validated() {
        assert_eq!(period(&PeriodQuery { period: None }).unwrap().1, 86_400);
        assert_eq!(
            period(&PeriodQuery {
                period: Some("30d".into())
            })
            .unwrap()
            .1,
            30 * 86_400
        );
        assert!(period(&PeriodQuery {
            period: Some("1y".into())
        })
        .is_err());
        assert_eq!(
            parse_cursor(Some("12.abc")).unwrap(),
            Some((12, "abc".into()))
        );
        for bad in ["", "x.y", "12.", "12.a'b", "12"] {
            assert!(parse_cursor(Some(bad)).is_err(), "{bad}");
        }
    }
}
