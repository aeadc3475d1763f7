//! Writing one chapter of a completed story again (issue 34, point 2): its text, its
//! picture, its narration — any of them — keeping the rest. Asked for by the owner,
//! counted in the story quota, one at a time per story; the story worker does it as a
//! durable job (`jobs`), and every change is announced like generation's.

use chrono::{DateTime, Utc};

use super::{Stories, StoryStatus};
use crate::domain::accounts::User;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::store::models::RegenerationRow;
use crate::store::regenerations::Requested;
use crate::store::{self, from_db, to_db};
use crate::vocabulary::{RegenerationId, StoryId, StoryRequestId};

/// What to make again.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Redo {
    pub text: bool,
    pub image: bool,
    pub audio: bool,
}

/// A request to write a chapter again, and how it went.
#[derive(Clone, Debug)]
pub struct Regeneration {
    pub id: RegenerationId,
    pub story_id: StoryId,
    pub chapter_number: i32,
    pub text: bool,
    pub image: bool,
    pub audio: bool,
    /// `pending`, `in_progress`, `completed` or `failed`.
    pub status: StoryStatus,
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<RegenerationRow> for Regeneration {
    fn from(r: RegenerationRow) -> Regeneration {
        Regeneration {
            id: r.id,
            story_id: r.story_id,
            chapter_number: r.chapter_number,
            text: r.redo_text,
            image: r.redo_image,
            audio: r.redo_audio,
            status: r.status,
            failure_reason: r.failure_reason,
            created_at: from_db(r.created_at),
            updated_at: from_db(r.updated_at),
        }
    }
}

/// How many of a story's regenerations its readers see (newest first).
const SHOWN: i64 = 20;

impl Stories<'_> {
    /// Asks for chapter `number` of `viewer`'s story `id` to be made again (`what`): the
    /// story must be theirs and completed, the chapter must exist, no other regeneration
    /// of the story may be open, and the account's story quota counts it.
    pub(crate) async fn regenerate_chapter(
        &self,
        viewer: &User,
        id: StoryId,
        number: i32,
        what: Redo,
    ) -> AppResult<Regeneration> {
        if !(what.text || what.image || what.audio) {
            return Err(AppError::validation(
                "다시 만들 것을 하나 이상 골라 주세요 (text, image, audio 중 true).",
            ));
        }
        let story = self.story(viewer, id).await?;
        if story.status != StoryStatus::Completed {
            return Err(AppError::new(
                ErrorCode::Conflict,
                "완성된(completed) 이야기의 장만 다시 만들 수 있습니다.",
            ));
        }
        if !story.chapters.iter().any(|c| c.number == number) {
            return Err(AppError::new(
                ErrorCode::ResourceNotFound,
                format!("이 이야기에는 {number}장이 없습니다."),
            ));
        }
        let now = to_db(store::now());
        let row = RegenerationRow {
            id: RegenerationId::random(),
            story_id: story.id,
            owner_id: viewer.id,
            chapter_number: number,
            redo_text: what.text,
            redo_image: what.image,
            redo_audio: what.audio,
            status: StoryStatus::Pending,
            failure_reason: None,
            attempts: 0,
            created_at: now,
            updated_at: now,
        };
        let quota = i64::from(self.config().story_quota);
        let window = chrono::Duration::from_std(self.config().story_quota_window)
            .map_err(|e| AppError::Internal(e.into()))?;
        let requested = store::regenerations::request(
            &mut self.pool().get().await?.db(),
            &row,
            StoryRequestId::random(),
            now - window,
            quota,
        )
        .await?;
        match requested {
            Requested::Inserted => {}
            Requested::Busy => {
                return Err(AppError::new(
                    ErrorCode::Conflict,
                    "이 이야기의 장을 이미 다시 만들고 있습니다. 끝난 뒤에 다시 요청해 주세요.",
                ));
            }
            Requested::Exceeded { oldest } => {
                let wait = (oldest + window - now).num_seconds().max(1) as u64;
                return Err(AppError::Limited {
                    message: format!(
                        "이야기 생성 한도({quota}개/{}초)를 초과했습니다. {wait}초 후에 다시 시도해 주세요.",
                        window.num_seconds()
                    ),
                    retry_after: wait,
                });
            }
        }
        tracing::info!(story_id = %story.id, chapter = number, text = what.text, image = what.image, audio = what.audio, "chapter regeneration asked");
        self.story_changed(story.id).await;
        self.signal_work();
        Ok(row.into())
    }

    /// A story's regenerations, newest first (the caller has read the story as its
    /// owner).
    pub(crate) async fn regenerations(&self, story: StoryId) -> AppResult<Vec<Regeneration>> {
        let rows = store::regenerations::of_story(&mut self.pool().get().await?.db(), story, SHOWN)
            .await?;
        Ok(rows.into_iter().map(Regeneration::from).collect())
    }

    /// Whether one of the story's regenerations is still open.
    pub(crate) async fn regenerating(&self, story: StoryId) -> AppResult<bool> {
        Ok(self
            .regenerations(story)
            .await?
            .iter()
            .any(|r| matches!(r.status, StoryStatus::Pending | StoryStatus::InProgress)))
    }
}
