//! The generation pipeline for one claimed story: moderate the inputs → write the title
//! and chapters → moderate the text → illustrate and narrate every chapter concurrently
//! (bounded per provider). Image and audio failures leave `null`; only a text failure
//! fails the story (contract §5). Every provider attempt is recorded.

use std::sync::{Arc, Mutex};

use futures_util::future::join_all;
use tokio::sync::{Semaphore, watch};

use super::claim::{self, Claimed};
use crate::domain::Domain;
use crate::domain::stories::{MediaKind, Story, StoryStatus};
use crate::error::{AppError, AppResult};
use crate::providers::retry::{Attempt, with_retry};
use crate::providers::{
    GeneratedStory, IllustrationRequest, Media, ProviderError, Providers, StoryRequest, Verdict,
};
use crate::store::models::GenerationStepRow;
use crate::store::types::{ChapterId, MessageRole, StepId, StepOutcome, StoryId};
use crate::store::{self, to_db};

/// Step attempts gathered during a step and written after it.
#[derive(Default)]
struct Steps(Mutex<Vec<GenerationStepRow>>);

impl Steps {
    fn observer<'a>(
        &'a self,
        metrics: &'a crate::metrics::Metrics,
        story: StoryId,
        step: &'a str,
        chapter: Option<i32>,
        provider: &'a str,
    ) -> impl FnMut(Attempt<'_>) + 'a {
        move |a: Attempt<'_>| {
            metrics.record_attempt(
                step,
                provider,
                a.duration.as_secs_f64(),
                a.error.map(|e| e.kind.as_str()),
            );
            let row = GenerationStepRow {
                id: StepId::random(),
                story_id: story,
                step: step.to_string(),
                chapter_number: chapter,
                provider: provider.to_string(),
                attempt: a.number as i32,
                started_at: to_db(a.started),
                duration_ms: a.duration.as_millis() as i64,
                outcome: if a.error.is_some() {
                    StepOutcome::Errored
                } else {
                    StepOutcome::Succeeded
                },
                error_kind: a.error.map(|e| e.kind.as_str().to_string()),
                error_message: a.error.map(|e| e.message.chars().take(500).collect()),
            };
            self.0.lock().expect("steps lock").push(row);
        }
    }

    /// Marks the last recorded attempt of a moderation step as having flagged content.
    fn mark_flagged(&self) {
        if let Some(last) = self.0.lock().expect("steps lock").last_mut() {
            last.outcome = StepOutcome::Flagged;
        }
    }

    async fn flush(&self, domain: &Domain) {
        let rows: Vec<GenerationStepRow> = std::mem::take(&mut *self.0.lock().expect("steps lock"));
        if rows.is_empty() {
            return;
        }
        let written = async {
            let mut conn = domain.pool().get().await?;
            Ok::<_, AppError>(store::jobs::insert_steps(&mut conn.db(), &rows).await?)
        }
        .await;
        if let Err(e) = written {
            tracing::warn!(error = ?e, "recording generation steps failed");
        }
    }
}

fn seed_of(id: StoryId) -> u64 {
    let b = *id.uuid().as_bytes();
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Runs the pipeline. `Err` only for internal failures (the lease then expires and
/// another attempt resumes); provider problems end in `completed` or `failed`.
pub(crate) async fn run(
    domain: &Domain,
    providers: &Providers,
    owner: &str,
    job: &Claimed,
    lost: watch::Receiver<bool>,
) -> AppResult<()> {
    let steps = Steps::default();
    let result = generate(domain, providers, owner, job, &lost, &steps).await;
    steps.flush(domain).await;
    let (status, reason) = match result? {
        Ok(()) => (StoryStatus::Completed, None),
        Err(reason) => (StoryStatus::Failed, Some(reason)),
    };
    if *lost.borrow() {
        return Ok(());
    }
    if claim::finish(domain, owner, job.id, status, reason.as_deref()).await? {
        tracing::info!(story_id = %job.id, status = status.as_str(), reason = reason.as_deref().unwrap_or(""), "generation finished");
    }
    Ok(())
}

/// `Ok(Ok(()))` completed, `Ok(Err(reason))` failed, `Err` internal.
async fn generate(
    domain: &Domain,
    providers: &Providers,
    owner: &str,
    job: &Claimed,
    lost: &watch::Receiver<bool>,
    steps: &Steps,
) -> AppResult<Result<(), String>> {
    let run = Run {
        domain,
        providers,
        owner,
        job,
        lost,
        steps,
    };
    let story = domain.stories().story_for_job(job.id).await?;
    let (interests, transcript) = domain
        .stories()
        .conversation_material(story.conversation_id)
        .await?;
    let request = StoryRequest {
        seed: seed_of(story.id),
        theme: story.theme.clone(),
        characters: story.characters.clone(),
        child_name: story.child_name.clone(),
        child_age: story.child_age,
        chapters: story.chapter_count as usize,
        interests,
        transcript,
    };

    let complete = story.chapters.len() == story.chapter_count as usize;
    let story = if complete {
        // A resumed job: the text is already stored; only media may be missing.
        story
    } else {
        match write_text(run, &story, &request).await? {
            Written::Stored => domain.stories().story_for_job(job.id).await?,
            Written::Refused(reason) => return Ok(Err(reason)),
            Written::Lost => return Ok(Ok(())),
        }
    };
    make_media(run, &story).await?;
    Ok(Ok(()))
}

/// How writing the text ended.
enum Written {
    /// Title and chapters are stored.
    Stored,
    /// The story cannot be written (a refusal or a provider failure): the reason is the
    /// story's.
    Refused(String),
    /// Another worker holds the story now: this one stops.
    Lost,
}

/// What every step of one story's generation works with.
#[derive(Clone, Copy)]
struct Run<'a> {
    domain: &'a Domain,
    providers: &'a Providers,
    /// This worker (the lease owner).
    owner: &'a str,
    job: &'a Claimed,
    /// Turns true when the lease is lost.
    lost: &'a watch::Receiver<bool>,
    steps: &'a Steps,
}

/// Steps 1–3: the inputs moderated, the text written and moderated, then title and
/// chapters stored in one change.
async fn write_text(run: Run<'_>, story: &Story, request: &StoryRequest) -> AppResult<Written> {
    let Run {
        domain,
        providers,
        owner,
        job,
        lost,
        steps,
    } = run;
    // 1. The inputs must be fit for a child before anything is written.
    let inputs = inputs_of(request);
    if let Some(reason) = moderate(
        domain,
        providers,
        steps,
        story.id,
        "moderate_input",
        &inputs,
    )
    .await
    {
        return Ok(Written::Refused(reason));
    }
    // 2. The text.
    let generated = match write(run, story, request).await? {
        Ok(g) => g,
        Err(e) => {
            return Ok(Written::Refused(format!(
                "이야기 본문을 만들지 못했습니다 ({}): {}",
                e.kind.as_str(),
                public_detail(&e)
            )));
        }
    };
    // 3. The text must be fit for a child too.
    let mut texts = vec![generated.title.clone()];
    for c in &generated.chapters {
        texts.push(c.title.clone());
        texts.push(c.content.clone());
    }
    if let Some(reason) =
        moderate(domain, providers, steps, story.id, "moderate_text", &texts).await
    {
        return Ok(Written::Refused(reason));
    }
    if *lost.borrow() || !claim::holds(domain, owner, job.id).await? {
        return Ok(Written::Lost);
    }
    domain
        .stories()
        .set_generated_title(story.id, &generated.title)
        .await?;
    let chapters: Vec<(i32, String, String)> = generated
        .chapters
        .iter()
        .enumerate()
        .map(|(i, c)| (i as i32 + 1, c.title.clone(), c.content.clone()))
        .collect();
    domain.stories().put_chapters(story.id, &chapters).await?;
    steps.flush(domain).await;
    Ok(Written::Stored)
}

/// What the story is made from, as moderation reads it: the theme, the characters, the
/// child's interests and what the child said.
fn inputs_of(request: &StoryRequest) -> Vec<String> {
    let mut inputs = vec![request.theme.clone()];
    inputs.extend(request.characters.iter().cloned());
    inputs.extend(request.interests.iter().cloned());
    inputs.extend(
        request
            .transcript
            .iter()
            .filter(|(r, _)| *r == MessageRole::Child)
            .map(|(_, t)| t.clone()),
    );
    inputs
}

/// The writer's text for `request`, in one of the writer's slots, every attempt
/// recorded.
async fn write(
    run: Run<'_>,
    story: &Story,
    request: &StoryRequest,
) -> AppResult<Result<GeneratedStory, ProviderError>> {
    let Run {
        domain,
        providers,
        steps,
        ..
    } = run;
    let _slot = providers
        .writer_slots
        .acquire()
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
    Ok(with_retry(
        providers.retry,
        || providers.writer.write(request),
        steps.observer(
            domain.metrics(),
            story.id,
            "write_text",
            None,
            providers.writer.name(),
        ),
    )
    .await)
}

/// Step 4: illustrations and narrations of the chapters still without them, all at
/// once, bounded per provider; a failure leaves that file `null`.
async fn make_media(run: Run<'_>, story: &Story) -> AppResult<()> {
    let Run {
        domain,
        providers,
        owner,
        job,
        lost,
        steps,
    } = run;
    let sheet = character_sheet(story);
    let mut figures = vec![story.child_name.clone()];
    figures.extend(story.characters.iter().cloned());
    let mut tasks = Vec::new();
    for chapter in &story.chapters {
        if chapter.image.is_none() {
            let req = IllustrationRequest {
                seed: seed_of(story.id),
                chapter_number: chapter.number as usize,
                chapter_title: chapter.title.clone(),
                scene: chapter.content.chars().take(400).collect(),
                character_sheet: sheet.clone(),
                characters: figures.clone(),
            };
            let (chapter_id, number) = (chapter.id, chapter.number);
            tasks.push(Box::pin(media_task(
                domain,
                owner,
                job.id,
                steps,
                "illustrate",
                number,
                providers.illustrator.name(),
                providers.image_slots.clone(),
                providers.retry,
                MediaKind::Image,
                chapter_id,
                lost,
                move || {
                    let illustrator = providers.illustrator.clone();
                    let req = req.clone();
                    async move { illustrator.illustrate(&req).await }
                },
            ))
                as std::pin::Pin<
                    Box<dyn std::future::Future<Output = AppResult<()>> + Send + '_>,
                >);
        }
        if chapter.audio.is_none() {
            let text = format!("{}. {}", chapter.title, chapter.content);
            let narrator = providers.narrator.clone();
            let (chapter_id, number) = (chapter.id, chapter.number);
            tasks.push(Box::pin(media_task(
                domain,
                owner,
                job.id,
                steps,
                "narrate",
                number,
                narrator.name(),
                providers.speech_slots.clone(),
                providers.retry,
                MediaKind::Audio,
                chapter_id,
                lost,
                move || {
                    let narrator = narrator.clone();
                    let text = text.clone();
                    async move { narrator.narrate(&text, None).await }
                },
            )));
        }
    }
    for result in join_all(tasks).await {
        result?;
    }
    Ok(())
}

/// One illustration or narration: a failure leaves the chapter's file `null`.
#[allow(clippy::too_many_arguments)]
async fn media_task<'a, F, Fut>(
    domain: &'a Domain,
    owner: &'a str,
    story_id: StoryId,
    steps: &'a Steps,
    step: &'a str,
    chapter_number: i32,
    provider: &'a str,
    slots: Arc<Semaphore>,
    retry: crate::providers::RetryPolicy,
    kind: MediaKind,
    chapter_id: ChapterId,
    lost: &'a watch::Receiver<bool>,
    call: F,
) -> AppResult<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Media, ProviderError>>,
{
    let result = {
        let _slot = slots
            .acquire_owned()
            .await
            .map_err(|e| AppError::Internal(e.into()))?;
        with_retry(
            retry,
            call,
            steps.observer(
                domain.metrics(),
                story_id,
                step,
                Some(chapter_number),
                provider,
            ),
        )
        .await
    };
    match result {
        Ok(media) => {
            if *lost.borrow() || !claim::holds(domain, owner, story_id).await? {
                return Ok(());
            }
            domain
                .stories()
                .put_chapter_media(
                    story_id,
                    chapter_id,
                    kind,
                    &media.bytes,
                    &media.content_type,
                    media.extension,
                )
                .await?;
        }
        Err(e) => {
            tracing::warn!(story_id = %story_id, chapter = chapter_number, step, error = %e, "media left empty");
        }
    }
    Ok(())
}

/// `Some(reason)` when the texts are not fit for a child, or cannot be checked.
async fn moderate(
    domain: &Domain,
    providers: &Providers,
    steps: &Steps,
    story: StoryId,
    step: &str,
    texts: &[String],
) -> Option<String> {
    let verdict = with_retry(
        providers.retry,
        || providers.moderator.check(texts),
        steps.observer(
            domain.metrics(),
            story,
            step,
            None,
            providers.moderator.name(),
        ),
    )
    .await;
    match verdict {
        Ok(Verdict::Allowed) => None,
        Ok(Verdict::Flagged { categories }) => {
            steps.mark_flagged();
            let what = if step == "moderate_input" {
                "요청 내용"
            } else {
                "만들어진 이야기"
            };
            Some(format!(
                "{what}이(가) 아이에게 적합하지 않아 이야기를 완성하지 않았습니다 (분류: {}).",
                categories.join(", ")
            ))
        }
        // Fail closed: text for children is never published unchecked.
        Err(e) => Some(format!(
            "안전 검사를 할 수 없어 이야기를 완성하지 않았습니다 ({}).",
            e.kind.as_str()
        )),
    }
}

/// What of a provider error a guardian may read.
fn public_detail(e: &ProviderError) -> &'static str {
    use crate::providers::ErrorKind::*;
    match e.kind {
        Timeout => "이야기 서비스가 제때 응답하지 않았습니다",
        RateLimited | Quota => "이야기 서비스의 사용 한도에 도달했습니다",
        Server | Network => "이야기 서비스에 연결할 수 없습니다",
        Unauthorized => "이야기 서비스 설정에 문제가 있습니다",
        Refused => "이야기 서비스가 요청을 거절했습니다",
        BadResponse => "이야기 서비스의 응답을 이해할 수 없습니다",
        Unavailable => "이야기 서비스를 사용할 수 없습니다",
    }
}

/// The same description of the cast in every illustration prompt.
fn character_sheet(story: &Story) -> String {
    let mut parts = vec![format!(
        "{} ({}살 아이, 주인공)",
        story.child_name, story.child_age
    )];
    parts.extend(story.characters.iter().cloned());
    parts.join(", ")
}
