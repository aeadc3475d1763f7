//! From stored rows to stories: a story row with its joined chapter and media rows.

use std::collections::HashMap;

use super::{Chapter, MediaFile, Story};
use crate::domain::internal;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::store::models::{ChapterText, StoryRow};
use crate::store::stories::{Joined, MediaColumns};
use crate::store::{self, from_db};
use crate::vocabulary::{StoryId, UserId};

/// Story rows with their chapters and media, read on a connection the caller holds (one
/// query for any number of stories).
pub(super) async fn with_chapters_on(
    conn: &mut crate::store::Conn,
    rows: Vec<StoryRow>,
) -> AppResult<Vec<Story>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let joined = store::stories::chapters(&mut conn.db(), &rows).await?;
    stories_from_rows(rows, joined)
}

/// The stored story `row` if it exists (404) and `viewer_id` owns it (403).
pub(super) fn owned_by(row: Option<StoryRow>, viewer_id: UserId) -> AppResult<StoryRow> {
    let row = row.ok_or_else(AppError::not_found)?;
    if row.owner_id != viewer_id {
        return Err(AppError::code_only(ErrorCode::InsufficientPermission));
    }
    Ok(row)
}

/// Story rows and their joined chapter rows (in any order of stories) → stories, in the
/// order of `rows`.
pub(super) fn stories_from_rows(rows: Vec<StoryRow>, joined: Vec<Joined>) -> AppResult<Vec<Story>> {
    let mut by_story: HashMap<StoryId, Vec<ChapterWithMedia>> = HashMap::new();
    for (chapter, image, audio) in joined {
        by_story
            .entry(chapter.story_id)
            .or_default()
            .push(ChapterWithMedia {
                chapter,
                image,
                audio,
            });
    }
    rows.into_iter()
        .map(|row| {
            let chapters = by_story.remove(&row.id).unwrap_or_default();
            story_from_rows(row, chapters)
        })
        .collect()
}

/// A chapter row with the media files it points at (`None`: none, or the file is gone).
struct ChapterWithMedia {
    chapter: ChapterText,
    image: Option<MediaColumns>,
    audio: Option<MediaColumns>,
}

/// A story that has no chapters yet (just created).
pub(super) fn story_without_chapters(row: StoryRow) -> AppResult<Story> {
    story_from_rows(row, Vec::new())
}

fn story_from_rows(row: StoryRow, chapters: Vec<ChapterWithMedia>) -> AppResult<Story> {
    let file = |columns: Option<MediaColumns>| {
        columns.map(|(id, path, content_type)| MediaFile {
            id,
            path,
            content_type,
        })
    };
    let chapters = chapters
        .into_iter()
        .map(
            |ChapterWithMedia {
                 chapter: c,
                 image,
                 audio,
             }| Chapter {
                id: c.id,
                number: c.chapter_number,
                image: file(image),
                audio: file(audio),
                title: c.title,
                content: c.content,
            },
        )
        .collect();
    Ok(Story {
        id: row.id,
        owner_id: row.owner_id,
        conversation_id: row.conversation_id,
        title: row.title,
        status: row.status,
        theme: row.theme,
        characters: serde_json::from_str(&row.characters)
            .map_err(|e| internal("stored characters", e))?,
        length: row.length,
        chapter_count: row.chapter_count,
        child_name: row.child_name,
        child_age: row.child_age,
        failure_reason: row.failure_reason,
        created_at: from_db(row.created_at),
        updated_at: from_db(row.updated_at),
        chapters,
    })
}
