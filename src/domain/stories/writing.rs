//! Writing stories: what the generation worker (and the tests' seeding) writes: status,
//! generated title, chapters and their media. Each write is announced as a change.

use super::{MediaFile, MediaKind, StoryStatus};
use crate::domain::Stories;
use crate::error::AppResult;
use crate::store::models::{ChapterRow, MediaFileRow};
use crate::store::{self, to_db};
use crate::vocabulary::{ChapterId, MediaFileId, StoryId};

impl Stories<'_> {
    /// Moves a story to `status`, recording `reason` for failures.
    pub async fn set_story_status(
        &self,
        story_id: StoryId,
        status: StoryStatus,
        reason: Option<&str>,
    ) -> AppResult<()> {
        let now = to_db(store::now());
        let mut conn = self.pool().get().await?;
        store::stories::set_status(&mut conn.db(), story_id, status, reason, now).await?;
        drop(conn);
        self.story_changed(story_id).await;
        Ok(())
    }

    /// Writes a generated title unless the guardian already chose one.
    pub async fn set_generated_title(&self, story_id: StoryId, title: &str) -> AppResult<()> {
        let now = to_db(store::now());
        let mut conn = self.pool().get().await?;
        store::stories::set_generated_title(&mut conn.db(), story_id, title, now).await?;
        drop(conn);
        self.story_changed(story_id).await;
        Ok(())
    }

    /// Adds (or replaces) chapters `(number, title, content)` of a story in one
    /// transaction, announced as one change; returns their ids in order.
    pub async fn put_chapters(
        &self,
        story_id: StoryId,
        chapters_in: &[(i32, String, String)],
    ) -> AppResult<Vec<ChapterId>> {
        let now = to_db(store::now());
        let rows: Vec<ChapterRow> = chapters_in
            .iter()
            .map(|(number, title, content)| ChapterRow {
                id: ChapterId::random(),
                story_id,
                chapter_number: *number,
                title: title.clone(),
                content: content.clone(),
                created_at: now,
                files: Default::default(),
            })
            .collect();
        let mut conn = self.pool().get().await?;
        store::stories::put_chapters(&mut conn.db(), story_id, &rows, now).await?;
        drop(conn);
        self.story_changed(story_id).await;
        Ok(rows.iter().map(|r| r.id).collect())
    }

    /// Stores `bytes` as a chapter's illustration or narration and links it.
    pub async fn put_chapter_media(
        &self,
        story_id: StoryId,
        chapter_id: ChapterId,
        kind: MediaKind,
        bytes: &[u8],
        content_type: &str,
        extension: &str,
    ) -> AppResult<Result<MediaFile, std::io::Error>> {
        let owner = store::stories::owner_of(&mut self.pool().get().await?.db(), story_id).await?;
        let file_id = MediaFileId::random();
        let relative = format!("{owner}/{story_id}/{file_id}.{extension}");
        let path = match self.media().write(&relative, bytes).await {
            Ok(path) => path,
            Err(e) => return Ok(Err(e)),
        };
        let row = MediaFileRow {
            id: file_id,
            owner_id: owner,
            story_id: Some(story_id),
            path: relative,
            content_type: content_type.to_string(),
            size_bytes: bytes.len() as i64,
            created_at: to_db(store::now()),
        };
        let mut conn = self.pool().get().await?;
        let linked = store::stories::link_media(&mut conn.db(), &row, chapter_id, kind).await;
        drop(conn);
        if let Err(e) = linked {
            // The story (or account) was deleted meanwhile: leave no orphan file behind.
            let _ = tokio::fs::remove_file(&path).await;
            return Err(e.into());
        }
        self.story_changed(story_id).await;
        Ok(Ok(MediaFile {
            id: file_id,
            path: row.path,
            content_type: row.content_type,
        }))
    }
}
