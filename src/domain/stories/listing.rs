//! Listing stories: keyset pagination over (sort key, id), its cursors and their scope.

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

use super::rows::stories_from_rows;
use super::{ListStories, StoryPage, StoryStatus, TimeRange};
use crate::domain::accounts::User;
use crate::domain::cursor::{invalid_cursor, micros_to_db};
use crate::domain::{Stories, page_limit};
use crate::error::AppResult;
use crate::store::models::StoryRow;
use crate::store::stories::{Resume, SortKey, SortOrder};
use crate::store::{self, to_db};
use crate::vocabulary::{StoryId, UserId};

impl Resume {
    /// Where a page resumes, in the sort key's terms. A time-keyed cursor without its
    /// time cannot come from us.
    fn from(after: Position, sort: SortKey) -> AppResult<Resume> {
        let time = after.t.map(micros_to_db).transpose()?;
        match (sort, time) {
            (SortKey::CreatedAt, Some(t)) => Ok(Resume::CreatedAt(t, after.id)),
            (SortKey::UpdatedAt, Some(t)) => Ok(Resume::UpdatedAt(t, after.id)),
            (SortKey::Title, _) => Ok(Resume::Title(after.title, after.id)),
            (SortKey::CreatedAt | SortKey::UpdatedAt, None) => Err(invalid_cursor()),
        }
    }
}

/// What a cursor is valid for: the listing's sort, order, filters and owner. A cursor
/// from another listing is refused.
fn cursor_scope(query: &ListStories, owner: Option<UserId>, range: TimeRange) -> String {
    let (created_after, created_before) = range;
    format!(
        "stories:{}:{}:{}:{}:{}:{}",
        query.sort.as_str(),
        match query.order {
            SortOrder::Asc => "asc",
            SortOrder::Desc => "desc",
        },
        query.status.map(StoryStatus::as_str).unwrap_or("*"),
        owner.map(|o| o.to_string()).unwrap_or_else(|| "*".into()),
        created_after
            .map(|t| t.timestamp_micros())
            .unwrap_or(i64::MIN),
        created_before
            .map(|t| t.timestamp_micros())
            .unwrap_or(i64::MAX),
    )
}

/// Where a page ending at `row` ended, in the sort key's terms.
fn position_of(row: &StoryRow, sort: SortKey) -> Position {
    let (t, title) = match sort {
        SortKey::CreatedAt => (Some(micros(row.created_at)), None),
        SortKey::UpdatedAt => (Some(micros(row.updated_at)), None),
        SortKey::Title => (None, row.title.clone()),
    };
    Position {
        t,
        title,
        id: row.id,
    }
}

/// Where a page ended, in the sort key's terms: a timestamp in microseconds, or a title
/// (`None` for a story without one), plus the id that breaks ties.
#[derive(Serialize, Deserialize)]
struct Position {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    t: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    title: Option<String>,
    id: StoryId,
}

fn micros(t: NaiveDateTime) -> i64 {
    t.and_utc().timestamp_micros()
}

impl Stories<'_> {
    /// One page of the viewer's stories, keyset-paginated over (sort key, id).
    pub(crate) async fn list_stories(
        &self,
        viewer: &User,
        query: ListStories,
    ) -> AppResult<StoryPage> {
        self.query_stories(Some(viewer.id), None, query).await
    }

    /// One page of stories of `owner` (every account's when `None`), optionally created
    /// within `range`. Callers decide who may see what: members get only their own.
    pub(crate) async fn query_stories(
        &self,
        owner: Option<UserId>,
        range: Option<TimeRange>,
        query: ListStories,
    ) -> AppResult<StoryPage> {
        let first = page_limit(query.first)? as usize;
        let (created_after, created_before) = range.unwrap_or((None, None));
        let scope = cursor_scope(&query, owner, (created_after, created_before));
        let created_after = created_after.map(to_db);
        let created_before = created_before.map(to_db);
        let after: Option<Position> = query
            .after
            .as_deref()
            .map(|c| self.cursors().decode(&scope, c))
            .transpose()?;
        let resume = after.map(|p| Resume::from(p, query.sort)).transpose()?;
        let page = store::stories::PageQuery {
            owner,
            status: query.status,
            created_after,
            created_before,
            sort: query.sort,
            order: query.order,
            resume,
            first,
        };
        let (page, joined) = store::read!(self.pool(), |db| store::stories::page(
            db,
            self.pool().chapters(),
            page.clone()
        )
        .await)?;
        let cursors: Vec<String> = page
            .rows
            .iter()
            .map(|r| self.cursors().encode(&scope, &position_of(r, query.sort)))
            .collect();
        let stories = stories_from_rows(page.rows, joined)?;
        Ok(StoryPage {
            items: cursors.into_iter().zip(stories).collect(),
            has_more: page.has_more,
        })
    }
}
