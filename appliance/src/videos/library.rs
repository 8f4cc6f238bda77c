//! The video endpoints: a video (with its counts and the caller's flags),
//! its status and status stream (SSE), deletion, and a creator's page.

use api::wire::*;
use api::{ApiError, ApiResult};
use futures::stream::BoxStream;

use super::Videos;
use crate::store::catalog as cat;
use crate::store::{video_wire, visible_video};

impl api::Videos for Videos {
    async fn get_video(&self, caller: Option<&Principal>, id: &str) -> ApiResult<Video> {
        let v = visible_video(&self.catalog, caller, id).await?;
        Ok(self.engagement.video_with_engagement(caller, &v).await?)
    }

    async fn video_status(&self, caller: Option<&Principal>, id: &str) -> ApiResult<VideoStatus> {
        let v = visible_video(&self.catalog, caller, id).await?;
        Ok(self.status_of(&v).await?)
    }

    async fn video_events(
        &self,
        caller: Option<&Principal>,
        id: &str,
    ) -> ApiResult<BoxStream<'static, StatusEvent>> {
        visible_video(&self.catalog, caller, id).await?;
        let rx = self.hub.subscribe(id);
        // Re-read after subscribing: the snapshot is at least as new as
        // anything the subscription could have missed.
        let v = visible_video(&self.catalog, caller, id).await?;
        let snapshot = self.status_of(&v).await?;
        Ok(self.hub.stream(rx, snapshot))
    }

    async fn delete_video(&self, caller: &Principal, id: &str) -> ApiResult<()> {
        let vid = id.to_owned();
        let row = self.catalog.call(move |c| cat::video(c, &vid)).await?;
        match row {
            Some(v) if v.state != "deleting" && caller.may_manage(&v.owner_id) => {
                Ok(self.delete_now(id).await?)
            }
            Some(v) if v.state == "ready" && v.visibility != "private" => Err(ApiError::forbidden(
                "only the owner or an admin may delete a video",
            )),
            Some(_) | None => Err(ApiError::not_found("video")),
        }
    }

    async fn user_videos(
        &self,
        caller: Option<&Principal>,
        user_id: &str,
        page: PageQuery,
    ) -> ApiResult<Page<Video>> {
        let (limit, after) = page.by_created()?;
        api::Accounts::get_user(self.accounts.as_ref(), user_id).await?;
        let public_only = !caller.is_some_and(|p| p.may_manage(user_id));
        let owner = user_id.to_owned();
        let rows = self
            .catalog
            .call(move |c| cat::videos_of(c, &owner, public_only, after, limit + 1))
            .await?;
        Ok(Page::from_overfetch(
            rows,
            limit,
            |v| api::cursor::created(v.created_at, &v.id),
            |v| video_wire(&v),
        ))
    }
}
