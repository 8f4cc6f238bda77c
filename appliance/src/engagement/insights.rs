//! Analytics for creators: a video's or a creator's metrics over a period,
//! from the analytics store's hourly rollups and unique viewers.

use std::collections::BTreeMap;

use api::wire::*;
use api::{ApiError, ApiResult};

use super::analytics::{HourRow, Scope, Totals};
use super::Social;
use crate::error::Result;
use crate::store::catalog::{self as cat, now_ms, rfc3339};

/// `24h` | `7d` | `30d` → (label, seconds).
fn period(q: &PeriodQuery) -> Result<(String, i64)> {
    let p = q.period.as_deref().unwrap_or("24h");
    let secs = match p {
        "24h" => 86_400,
        "7d" => 7 * 86_400,
        "30d" => 30 * 86_400,
        other => {
            return Err(ApiError::invalid(
                "period",
                format!("must be 24h, 7d or 30d, got {other:?}"),
            )
            .into())
        }
    };
    Ok((p.to_owned(), secs))
}

fn ratio(a: f64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a / b as f64
    }
}

/// Metrics over rollup rows (any number of sources per hour).
pub fn metrics(label: String, rows: &[HourRow], unique_viewers: u64) -> Metrics {
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

impl Social {
    pub async fn analytics_of_video(
        &self,
        caller: &Principal,
        id: &str,
        q: PeriodQuery,
    ) -> Result<VideoAnalytics> {
        let (label, secs) = period(&q)?;
        let v = crate::store::visible_video(&self.catalog, Some(caller), id).await?;
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
}

impl api::Analytics for Social {
    async fn video_analytics(
        &self,
        caller: &Principal,
        video_id: &str,
        query: PeriodQuery,
    ) -> ApiResult<VideoAnalytics> {
        Ok(self.analytics_of_video(caller, video_id, query).await?)
    }

    async fn creator_overview(
        &self,
        caller: &Principal,
        creator_id: &str,
        query: PeriodQuery,
    ) -> ApiResult<CreatorOverview> {
        Ok(self.creator_summary(caller, creator_id, query).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn periods_are_validated() {
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
    }
}
