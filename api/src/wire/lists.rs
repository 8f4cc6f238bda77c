//! Lists and the query parameters routes take. Every list the API answers
//! is a `Page` (`{items, nextCursor}`; the feeds add their own members
//! beside them), and every query a route takes is checked here against
//! the rules the OpenAPI document states, each failure naming its
//! parameter (`routes::extract::Query` runs `Params::check`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};

/// A page of a list: `items` in the list's order, and the cursor of the
/// next page, `null` on the last one.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Opaque: pass it as `cursor` for the next page; `null` when this
    /// page is the last.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page from `rows` read with one more than `limit` (how a list
    /// knows whether another page follows): the first `limit` become the
    /// items, and when more follow, the cursor is `cursor` of the last kept.
    pub fn from_overfetch<R>(
        mut rows: Vec<R>,
        limit: u32,
        cursor: impl FnOnce(&R) -> String,
        item: impl FnMut(R) -> T,
    ) -> Self {
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if more { rows.last().map(cursor) } else { None };
        Self {
            items: rows.into_iter().map(item).collect(),
            next_cursor,
        }
    }

    /// A list that is whole in one page.
    pub fn all(items: Vec<T>) -> Self {
        Self {
            items,
            next_cursor: None,
        }
    }
}

#[cfg(test)]
mod overfetch_tests {
    use super::Page;

    #[test]
    fn one_row_past_the_limit_makes_a_cursor_from_the_last_kept() {
        let p = Page::from_overfetch(vec![1, 2, 3], 2, |r| format!("c{r}"), |r| r * 10);
        assert_eq!((p.items, p.next_cursor), (vec![10, 20], Some("c2".into())));
        let p = Page::from_overfetch(vec![1, 2], 2, |r| format!("c{r}"), |r| r * 10);
        assert_eq!((p.items, p.next_cursor), (vec![10, 20], None));
        let p = Page::<i32>::from_overfetch(Vec::<i32>::new(), 2, |_| unreachable!(), |r| r);
        assert!(p.items.is_empty() && p.next_cursor.is_none());
    }
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1–100, default 20.
    #[serde(default)]
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Opaque; from the previous page's `nextCursor`.
    #[serde(default)]
    #[param(min_length = 1, max_length = 512)]
    pub cursor: Option<String>,
}

/// `GET /ops/jobs`: the newest jobs first.
#[derive(Debug, Clone, Default, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobsQuery {
    /// 1–1000, default 100.
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Opaque; from the previous page's `nextCursor`.
    #[serde(default)]
    #[param(min_length = 1, max_length = 512)]
    pub cursor: Option<String>,
}

/// Query parameters as a route takes them: once decoded, `check` holds
/// them to the rules the OpenAPI document states (ranges, lengths); a
/// failure is a `VALIDATION_ERROR` naming the parameter.
pub trait Params {
    fn check(&self) -> ApiResult<()> {
        Ok(())
    }
}

/// `limit`, when given, within `1..=max`.
pub fn check_limit(limit: Option<u32>, max: u32) -> ApiResult<()> {
    match limit {
        Some(l) if !(1..=max).contains(&l) => Err(ApiError::invalid(
            "limit",
            format!("must be 1–{max}, got {l}"),
        )),
        Some(_) | None => Ok(()),
    }
}

/// `cursor`, when given, 1–512 characters (what it means is the list's
/// business: see `crate::cursor`).
pub fn check_cursor(cursor: Option<&str>) -> ApiResult<()> {
    match cursor {
        Some(c) if c.is_empty() || c.chars().count() > 512 => Err(ApiError::invalid(
            "cursor",
            "must be 1–512 characters: the previous page's `nextCursor`",
        )),
        Some(_) | None => Ok(()),
    }
}

impl PageQuery {
    /// Checked, with the default limit (20), for a list paged by creation
    /// time (`crate::cursor::created`): the limit and where to start after.
    pub fn by_created(&self) -> ApiResult<(u32, Option<(i64, String)>)> {
        self.check()?;
        let after = self
            .cursor
            .as_deref()
            .map(crate::cursor::parse_created)
            .transpose()?;
        Ok((self.limit.unwrap_or(20), after))
    }
}

impl Params for PageQuery {
    fn check(&self) -> ApiResult<()> {
        check_limit(self.limit, 100)?;
        check_cursor(self.cursor.as_deref())
    }
}

impl Params for JobsQuery {
    fn check(&self) -> ApiResult<()> {
        check_limit(self.limit, 1000)?;
        check_cursor(self.cursor.as_deref())
    }
}

impl Params for super::FeedQuery {
    fn check(&self) -> ApiResult<()> {
        check_limit(self.limit, 50)?;
        check_cursor(self.cursor.as_deref())
    }
}

impl Params for super::SearchQuery {
    fn check(&self) -> ApiResult<()> {
        if self.q.trim().is_empty() || self.q.chars().count() > 200 {
            return Err(ApiError::invalid(
                "q",
                "must be 1–200 characters, not all blank",
            ));
        }
        check_limit(self.limit, 50)?;
        check_cursor(self.cursor.as_deref())
    }
}

impl Params for super::LimitQuery {
    fn check(&self) -> ApiResult<()> {
        check_limit(self.limit, 100)
    }
}

impl Params for super::PeriodQuery {
    fn check(&self) -> ApiResult<()> {
        match self.period.as_deref() {
            None | Some("24h" | "7d" | "30d") => Ok(()),
            Some(other) => Err(ApiError::invalid(
                "period",
                format!("must be 24h, 7d or 30d, got {other:?}"),
            )
            .with_details(serde_json::json!({
                "field": "period",
                "accepted": ["24h", "7d", "30d"],
            }))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_always_says_whether_there_is_more() {
        let last = serde_json::to_value(Page::all(vec![1, 2])).unwrap();
        assert_eq!(
            last,
            serde_json::json!({"items": [1, 2], "nextCursor": null})
        );
    }

    #[test]
    fn limits_and_cursors_are_checked_naming_the_parameter() {
        let page = |limit, cursor: Option<&str>| PageQuery {
            limit,
            cursor: cursor.map(str::to_owned),
        };
        assert!(page(None, None).check().is_ok());
        assert!(page(Some(100), Some("x")).check().is_ok());
        for (bad, field) in [
            (page(Some(0), None), "limit"),
            (page(Some(101), None), "limit"),
            (page(None, Some("")), "cursor"),
            (page(None, Some(&"c".repeat(513))), "cursor"),
        ] {
            let e = bad.check().unwrap_err();
            assert_eq!(e.field(), Some(field), "{e}");
            assert!(e.message.starts_with(&format!("{field}: ")), "{e}");
        }
        let q = |q: &str| super::super::SearchQuery {
            q: q.to_owned(),
            limit: None,
            cursor: None,
        };
        assert!(q("cats").check().is_ok());
        assert_eq!(q("  ").check().unwrap_err().field(), Some("q"));
        let p = super::super::PeriodQuery {
            period: Some("1y".into()),
        };
        assert_eq!(p.check().unwrap_err().field(), Some("period"));
    }
}
