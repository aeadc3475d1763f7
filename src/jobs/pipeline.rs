//! The generation pipeline for one claimed story: moderate the inputs → write the title
//! and chapters → moderate the text → illustrate and narrate every chapter concurrently
//! (bounded per provider). Image and audio failures leave `null`; only a text failure
//! fails the story (contract §5). Every provider attempt is recorded.

use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, watch};

use super::claim::{self, Claimed};
use crate::domain::Domain;
use crate::domain::stories::{Chapter, MediaKind, Story, StoryStatus};
use crate::error::{AppError, AppResult};
use crate::providers::retry::{Attempt, with_retry};
use crate::providers::{
    GeneratedChapter, IllustrationRequest, Media, ProviderError, Providers, StoryPiece,
    StoryRequest, StorySink, Verdict,
};
use crate::store::models::GenerationStepRow;
use crate::store::{self, to_db};
use crate::vocabulary::{ChapterId, MessageRole, StepId, StepOutcome, StoryId};

/// Step attempts gathered during a step and written after it.
struct Steps<'p> {
    rows: Mutex<Vec<GenerationStepRow>>,
    providers: &'p Providers,
}

impl<'p> Steps<'p> {
    fn new(providers: &'p Providers) -> Steps<'p> {
        Steps {
            rows: Mutex::new(Vec::new()),
            providers,
        }
    }

    fn observer<'a>(
        &'a self,
        metrics: &'a crate::metrics::Metrics,
        story: StoryId,
        step: &'a str,
        chapter: Option<i32>,
        provider: &'a str,
    ) -> impl FnMut(Attempt<'_>) + 'a {
        let mut count = metrics.observer(step, provider);
        let made_by = self.providers.made_by(provider);
        move |a: Attempt<'_>| {
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
                made_by: a.error.is_none().then(|| made_by.clone()),
            };
            self.rows.lock().expect("steps lock").push(row);
            count(a);
        }
    }

    /// Records, in the story's history, that a whole step came to nothing (`step` is the
    /// summary's name, e.g. `illustrate_all`).
    fn note(&self, story: StoryId, step: &str, kind: &str, message: &str) {
        self.rows
            .lock()
            .expect("steps lock")
            .push(GenerationStepRow {
                id: StepId::random(),
                story_id: story,
                step: step.to_string(),
                chapter_number: None,
                provider: "-".to_string(),
                attempt: 0,
                started_at: to_db(store::now()),
                duration_ms: 0,
                outcome: StepOutcome::Errored,
                error_kind: Some(kind.to_string()),
                error_message: Some(message.chars().take(500).collect()),
                made_by: None,
            });
    }

    /// Marks the last recorded attempt of a moderation step as having flagged content.
    fn mark_flagged(&self) {
        if let Some(last) = self.rows.lock().expect("steps lock").last_mut() {
            last.outcome = StepOutcome::Flagged;
        }
    }

    async fn flush(&self, domain: &Domain) {
        let rows: Vec<GenerationStepRow> =
            std::mem::take(&mut *self.rows.lock().expect("steps lock"));
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
    let steps = Steps::new(providers);
    let result = generate(domain, providers, owner, job, &lost, &steps).await;
    steps.flush(domain).await;
    let (status, reason) = match result? {
        Generated::Completed(note) => (StoryStatus::Completed, note),
        Generated::Failed(reason) => (StoryStatus::Failed, Some(reason)),
        // Another worker has the story (or will: its lease ran out); it goes on.
        Generated::Lost => return Ok(()),
    };
    if *lost.borrow() {
        return Ok(());
    }
    if claim::finish(domain, owner, job.id, status, reason.as_deref()).await? {
        tracing::info!(story_id = %job.id, status = status.as_str(), reason = reason.as_deref().unwrap_or(""), "generation finished");
    }
    Ok(())
}

/// How generating a story ended (`Err` from [`generate`]: internal).
enum Generated {
    /// With a note when a kind of media could not be made at all.
    Completed(Option<String>),
    Failed(String),
    /// This worker no longer holds the story: nothing more is written.
    Lost,
}

/// The story's generation.
///
/// The text is streamed: each chapter is moderated, stored and announced the moment the
/// writer completes it, and its illustration and narration start then, while the
/// writer goes on with the next. A resumed job keeps the chapters already stored (the
/// writer continues after them) and makes only the media still missing.
async fn generate(
    domain: &Domain,
    providers: &Providers,
    owner: &str,
    job: &Claimed,
    lost: &watch::Receiver<bool>,
    steps: &Steps<'_>,
) -> AppResult<Generated> {
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
        rewrite: None,
    };
    let narrating = story.chapters.len() < story.chapter_count as usize
        || story.chapters.iter().any(|c| c.audio.is_none());
    let plan = MediaPlan::of(run, &story, &request, narrating).await?;
    // The media tasks run beside the text, driven apart from it: a task waits on the
    // database or a provider while the text is being moderated or stored.
    let (mut media, tasks) = tokio::sync::mpsc::unbounded_channel();
    let text = async {
        for chapter in &story.chapters {
            start_media(run, &plan, chapter, &mut media);
        }
        let written = match story.chapters.len() < story.chapter_count as usize {
            true => write_text(run, &story, &request, &plan, &mut media).await,
            false => Ok(Written::Stored),
        };
        // No more tasks: the driver ends when those started have.
        drop(media);
        written
    };
    let (written, made) = tokio::join!(text, drive_media(tasks));
    let made = made?;
    match written? {
        Written::Stored if made.lost => Ok(Generated::Lost),
        Written::Stored => Ok(Generated::Completed(made.notes(run, story.id))),
        // The chapters stored so far stay (moderated, readable, kept for a retry, which
        // continues after them), with the media made for them meanwhile.
        Written::Refused(reason) => Ok(Generated::Failed(reason)),
        Written::Lost => Ok(Generated::Lost),
    }
}

/// How making a chapter again ended (`Err`: internal).
pub(crate) enum Redone {
    Done,
    /// It could not be done: the reason is the request's.
    Failed(String),
    /// This worker no longer holds the story: the new holder goes on.
    Lost,
}

/// Writes chapter `regen.chapter_number` of a completed story again — its words (then
/// its narration too: the old one reads other words), its picture, its narration, as
/// asked — keeping the rest. The new words are moderated before anyone can read them;
/// each new file replaces the old, which is then deleted. Every write is made only while
/// this worker holds the story's lease.
pub(crate) async fn regenerate(
    domain: &Domain,
    providers: &Providers,
    owner: &str,
    job: &Claimed,
    regen: &crate::store::models::RegenerationRow,
    lost: watch::Receiver<bool>,
) -> AppResult<Redone> {
    let steps = Steps::new(providers);
    let run = Run {
        domain,
        providers,
        owner,
        job,
        lost: &lost,
        steps: &steps,
    };
    let result = redo(run, regen).await;
    steps.flush(domain).await;
    result
}

/// Whether this worker still holds the story it works on.
async fn holding(run: Run<'_>) -> AppResult<bool> {
    Ok(!*run.lost.borrow() && claim::holds(run.domain, run.owner, run.job).await?)
}

async fn redo(run: Run<'_>, regen: &crate::store::models::RegenerationRow) -> AppResult<Redone> {
    let Run { domain, steps, .. } = run;
    let story = domain.stories().story_for_job(run.job.id).await?;
    let n = regen.chapter_number;
    let Some(old) = story.chapters.iter().find(|c| c.number == n).cloned() else {
        return Ok(Redone::Failed(format!(
            "이 이야기에는 이제 {n}장이 없습니다."
        )));
    };
    let (interests, transcript) = domain
        .stories()
        .conversation_material(story.conversation_id)
        .await?;
    let words = |c: &Chapter| GeneratedChapter {
        title: c.title.clone(),
        content: c.content.clone(),
    };
    let request = StoryRequest {
        // Another telling than the story's own (the offline writer and illustrator
        // follow their seed).
        seed: seed_of(story.id) ^ seed_of(StoryId::from(regen.id.uuid())),
        theme: story.theme.clone(),
        characters: story.characters.clone(),
        child_name: story.child_name.clone(),
        child_age: story.child_age,
        chapters: n as usize,
        interests,
        transcript,
        rewrite: Some(crate::providers::Rewrite {
            old: words(&old),
            next: story.chapters.iter().find(|c| c.number == n + 1).map(words),
            total: story.chapter_count as usize,
        }),
    };
    let redo_audio = regen.redo_audio || regen.redo_text;
    let plan = MediaPlan::of(run, &story, &request, redo_audio).await?;
    let mut chapter = old.clone();
    if regen.redo_text {
        let before: Vec<GeneratedChapter> = story
            .chapters
            .iter()
            .filter(|c| c.number < n)
            .map(words)
            .collect();
        let title = story.title.clone().or_else(|| Some(story.theme.clone()));
        let (sink, mut pieces) = StorySink::new(title, before);
        if let Err(e) = write(run, &story, &request, &sink).await? {
            return Ok(Redone::Failed(format!(
                "{n}장을 다시 쓰지 못했습니다 ({}): {}",
                e.kind.as_str(),
                public_detail(e.kind)
            )));
        }
        let mut new = None;
        while let Ok(piece) = pieces.try_recv() {
            if let StoryPiece::Chapter { number, chapter } = piece
                && number == n as usize
            {
                new = Some(chapter);
            }
        }
        let Some(new) = new else {
            return Ok(Redone::Failed(format!("{n}장을 다시 쓰지 못했습니다.")));
        };
        let texts = [new.title.clone(), new.content.clone()];
        if let Some(reason) = moderate(run, story.id, ("moderate_text", Some(n)), &texts).await {
            return Ok(Redone::Failed(reason));
        }
        if !holding(run).await? {
            return Ok(Redone::Lost);
        }
        let now = to_db(store::now());
        let mut conn = domain.pool().get().await?;
        store::regenerations::rewrite_chapter(
            &mut conn.db(),
            (story.id, old.id),
            &new.title,
            &new.content,
            now,
        )
        .await?;
        drop(conn);
        domain.story_changed(story.id).await;
        steps.flush(domain).await;
        chapter.title = new.title;
        chapter.content = new.content;
    }
    // The files asked for (and the narration of new words), made as generation makes
    // them; the others stay.
    if regen.redo_image {
        chapter.image = None;
    }
    if redo_audio {
        chapter.audio = None;
    }
    let (mut queue, tasks) = tokio::sync::mpsc::unbounded_channel();
    start_media(run, &plan, &chapter, &mut queue);
    drop(queue);
    let made = drive_media(tasks).await?;
    if made.lost || !holding(run).await? {
        return Ok(Redone::Lost);
    }
    // What replaced what: the old file goes once a new one is linked; new words never
    // keep the old narration.
    let now = domain.stories().story_for_job(story.id).await?;
    let current = now.chapters.iter().find(|c| c.number == n);
    let mut stale = Vec::new();
    if regen.redo_image
        && let Some(before) = &old.image
        && current
            .and_then(|c| c.image.as_ref())
            .is_some_and(|after| after.id != before.id)
    {
        stale.push(before.id);
    }
    if redo_audio && let Some(before) = &old.audio {
        let replaced = current
            .and_then(|c| c.audio.as_ref())
            .is_some_and(|after| after.id != before.id);
        if !replaced && regen.redo_text {
            let mut conn = domain.pool().get().await?;
            store::regenerations::unlink_audio(&mut conn.db(), (regen.story_id, old.id), before.id)
                .await?;
        }
        if replaced || regen.redo_text {
            stale.push(before.id);
        }
    }
    for file in stale {
        let path =
            store::regenerations::drop_file(&mut domain.pool().get().await?.db(), file).await?;
        if let Some(path) = path.and_then(|p| domain.media().resolve(&p))
            && let Err(e) = tokio::fs::remove_file(&path).await
        {
            tracing::warn!(error = %e, path = %path.display(), "a replaced media file could not be removed");
        }
    }
    domain.story_changed(story.id).await;
    let failed: Vec<String> = [(made.images, "삽화"), (made.narrations, "낭독")]
        .into_iter()
        .filter_map(|(results, what)| {
            results.iter().find_map(|m| match m {
                Made::Failed(why) => Some(format!("{n}장의 {what}: {}", why.public(what))),
                _ => None,
            })
        })
        .collect();
    match failed.is_empty() {
        true => Ok(Redone::Done),
        false => Ok(Redone::Failed(format!(
            "다시 만들지 못했습니다 — {}.",
            failed.join(" / ")
        ))),
    }
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
    steps: &'a Steps<'a>,
}

/// Least time between two releases of a chapter's growing text (each is moderated
/// first): the typing subscription's rate bound.
const TYPING_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Longest text one typing event carries (a notification's payload is capped).
const TYPING_EVENT_CHARS: usize = 1000;

/// A chapter's text as it is being written: what has been released to the typing
/// subscription and what waits for moderation.
struct Typing {
    chapter: usize,
    /// The text released (moderated), from the chapter's first non-blank character.
    released: String,
    pending: String,
    last: std::time::Instant,
    /// A piece failed moderation, could not be checked, or the writer started the
    /// chapter over: nothing more of it is released before the whole chapter passes.
    withheld: bool,
}

impl Typing {
    fn new(chapter: usize) -> Typing {
        Typing {
            chapter,
            released: String::new(),
            pending: String::new(),
            last: std::time::Instant::now(),
            withheld: false,
        }
    }
}

/// Steps 1–3 as the writer streams: the inputs moderated, then each chapter as it is
/// complete moderated (with the title, for the first), stored and announced, and its
/// media started; its growing text is released in moderated pieces meanwhile.
async fn write_text<'a>(
    run: Run<'a>,
    story: &Story,
    request: &StoryRequest,
    plan: &MediaPlan,
    media: &mut MediaQueue<'a>,
) -> AppResult<Written> {
    let Run { domain, steps, .. } = run;
    // 1. The inputs must be fit for a child before anything is written.
    let inputs = inputs_of(request);
    if let Some(reason) = moderate(run, story.id, ("moderate_input", None), &inputs).await {
        return Ok(Written::Refused(reason));
    }
    // 2. The text, streamed into the sink; a resumed story's chapters are already there.
    let stored: Vec<GeneratedChapter> = story
        .chapters
        .iter()
        .map(|c| GeneratedChapter {
            title: c.title.clone(),
            content: c.content.clone(),
        })
        .collect();
    let title = (!stored.is_empty()).then(|| story.title.clone()).flatten();
    let title_stored = title.is_some();
    let (sink, mut pieces) = StorySink::new(title, stored);
    let writing = write(run, story, request, &sink);
    tokio::pin!(writing);
    let mut written: Option<Result<(), ProviderError>> = None;
    let mut pending_title: Option<String> = None;
    let mut title_stored = title_stored;
    let mut typing: Option<Typing> = None;
    loop {
        let piece = if written.is_some() {
            match pieces.try_recv() {
                Ok(piece) => piece,
                Err(_) => break,
            }
        } else {
            tokio::select! {
                result = &mut writing => {
                    written = Some(result?);
                    continue;
                }
                Some(piece) = pieces.recv() => piece,
            }
        };
        match piece {
            StoryPiece::Title(title) => pending_title = Some(title),
            StoryPiece::Text { number, delta } => {
                let t = typing.get_or_insert_with(|| Typing::new(number));
                if t.chapter != number {
                    *t = Typing::new(number);
                }
                t.pending.push_str(&delta);
                if t.last.elapsed() >= TYPING_EVERY {
                    release_typing(run, t, None).await;
                }
            }
            // The writer starts over (a retry or a continuation): what it wrote of the
            // unfinished chapter goes; the chapter's words come out when it is stored.
            StoryPiece::Restart => {
                if let Some(t) = typing.as_mut() {
                    t.pending.clear();
                    t.withheld = true;
                }
            }
            StoryPiece::Chapter { number, chapter } => {
                // 3. Each chapter must be fit for a child before anyone can read it.
                let mut texts = Vec::with_capacity(3);
                if !title_stored && let Some(title) = &pending_title {
                    texts.push(title.clone());
                }
                texts.push(chapter.title.clone());
                texts.push(chapter.content.clone());
                let at = Some(number as i32);
                if let Some(reason) = moderate(run, story.id, ("moderate_text", at), &texts).await {
                    return Ok(Written::Refused(reason));
                }
                if *run.lost.borrow() || !claim::holds(domain, run.owner, run.job).await? {
                    return Ok(Written::Lost);
                }
                if !title_stored && let Some(title) = pending_title.take() {
                    domain
                        .stories()
                        .set_generated_title(story.id, &title)
                        .await?;
                    title_stored = true;
                }
                let row = (
                    number as i32,
                    chapter.title.clone(),
                    chapter.content.clone(),
                );
                let ids = domain.stories().put_chapters(story.id, &[row]).await?;
                let t = typing.get_or_insert_with(|| Typing::new(number));
                if t.chapter != number {
                    *t = Typing::new(number);
                }
                release_typing(run, t, Some(&chapter.content)).await;
                typing = None;
                steps.flush(domain).await;
                let stored = crate::domain::stories::Chapter {
                    id: ids[0],
                    number: number as i32,
                    title: chapter.title,
                    content: chapter.content,
                    image: None,
                    audio: None,
                };
                start_media(run, plan, &stored, media);
            }
        }
    }
    // A title the model wrote after its chapters is checked and stored on its own.
    if !title_stored && let Some(title) = pending_title {
        if let Some(reason) = moderate(
            run,
            story.id,
            ("moderate_text", None),
            std::slice::from_ref(&title),
        )
        .await
        {
            return Ok(Written::Refused(reason));
        }
        if *run.lost.borrow() || !claim::holds(domain, run.owner, run.job).await? {
            return Ok(Written::Lost);
        }
        domain
            .stories()
            .set_generated_title(story.id, &title)
            .await?;
    }
    match written.expect("the loop ends once the writer has") {
        Ok(()) => Ok(Written::Stored),
        Err(e) => Ok(Written::Refused(format!(
            "이야기 본문을 만들지 못했습니다 ({}): {}",
            e.kind.as_str(),
            public_detail(e.kind)
        ))),
    }
}

/// Releases what waits of a chapter's growing text to the typing subscription once
/// moderation has passed the chapter's text so far (released and waiting together, so
/// each piece is read in its context). Moderation is asked only when one of its slots
/// is free at once: typing never queues before a chapter's own check or a child's turn.
/// `done` (the chapter passed as a whole and is stored) publishes the stored content
/// from where the released text stops agreeing with it, so the subscriber ends with
/// exactly the stored words.
async fn release_typing(run: Run<'_>, typing: &mut Typing, stored: Option<&str>) {
    typing.last = std::time::Instant::now();
    let (offset, delta) = match stored {
        Some(content) => {
            // Where the released text and the stored content part (normally its end).
            let agree = typing
                .released
                .chars()
                .zip(content.chars())
                .take_while(|(a, b)| a == b)
                .count();
            (agree, content.chars().skip(agree).collect::<String>())
        }
        None => {
            if typing.withheld {
                return;
            }
            let mut so_far = typing.released.clone();
            so_far.push_str(&typing.pending);
            let so_far = so_far.trim_start().to_string();
            if so_far.chars().count() <= typing.released.chars().count() {
                return;
            }
            let Ok(_slot) = run.providers.moderation_slots.try_acquire() else {
                return; // busy: the text waits for the next turn
            };
            match run
                .providers
                .moderator
                .check(std::slice::from_ref(&so_far))
                .await
            {
                Ok(Verdict::Allowed) => {}
                _ => {
                    typing.withheld = true;
                    return;
                }
            }
            let offset = typing.released.chars().count();
            let delta: String = so_far.chars().skip(offset).collect();
            typing.pending.clear();
            (offset, delta)
        }
    };
    let done = stored.is_some();
    let chars: Vec<char> = delta.chars().collect();
    let mut parts: Vec<String> = chars
        .chunks(TYPING_EVENT_CHARS)
        .map(|c| c.iter().collect())
        .collect();
    if parts.is_empty() {
        parts.push(String::new());
    }
    let last = parts.len() - 1;
    let mut at = offset;
    for (i, delta) in parts.into_iter().enumerate() {
        let n = delta.chars().count();
        run.domain
            .events()
            .publish(crate::events::Event::StoryText {
                id: run.job.id,
                chapter: typing.chapter as i32,
                offset: at as i32,
                delta,
                done: done && i == last,
            })
            .await;
        at += n;
    }
    if let Some(content) = stored {
        typing.released = content.to_string();
    } else {
        typing.released = typing.released.chars().take(offset).collect::<String>();
        typing.released.extend(chars);
    }
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

/// The writer's text for `request` into `sink`, in one of the writer's slots, every
/// attempt recorded. An attempt that fails after some chapters leaves them in the sink:
/// the next continues after them.
async fn write(
    run: Run<'_>,
    story: &Story,
    request: &StoryRequest,
    sink: &StorySink,
) -> AppResult<Result<(), ProviderError>> {
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
        || providers.writer.write(request, sink),
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

/// How one chapter's illustration or narration ended.
enum Made {
    Stored,
    /// Another worker holds the story now.
    Lost,
    Failed(Why),
}

/// Why a chapter file was not made.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Why {
    /// The provider failed.
    Provider(crate::providers::ErrorKind),
    /// The file could not be written (the media disk full, say).
    Storage,
}

impl Why {
    fn kind(self) -> &'static str {
        match self {
            Why::Provider(kind) => kind.as_str(),
            Why::Storage => "storage",
        }
    }

    /// What of it a guardian may read, for `what` (삽화, 낭독).
    fn public(self, what: &str) -> String {
        match self {
            Why::Provider(kind) => {
                public_detail(kind).replace("이야기 서비스", &format!("{what} 서비스"))
            }
            Why::Storage => "서버에 파일을 저장하지 못했습니다".to_string(),
        }
    }
}

/// A boxed media task (the futures differ in type).
type MediaTask<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = AppResult<(MediaKind, Made)>> + Send + 'a>>;

/// Who and where the pictures show, and whose voice narrates: the same for every
/// chapter of a story.
struct MediaPlan {
    seed: u64,
    figures: Vec<String>,
    place: String,
    sheet: String,
    voice: Option<String>,
}

impl MediaPlan {
    /// The conversation's hero, place and helper with the characters asked for (read
    /// again from the stored conversation, so a resumed job draws the same), and the
    /// account's cloned voice when it has one.
    async fn of(
        run: Run<'_>,
        story: &Story,
        request: &StoryRequest,
        narrating: bool,
    ) -> AppResult<MediaPlan> {
        let (figures, place) = crate::providers::plan::cast_and_place(
            &story.child_name,
            &story.characters,
            &story.theme,
            &request.transcript,
        );
        let sheet = character_sheet(story, &figures);
        let voice = match narrating {
            true => run
                .domain
                .accounts()
                .find_user(story.owner_id)
                .await?
                .and_then(|u| u.voice_id),
            false => None,
        };
        Ok(MediaPlan {
            // The request's: a chapter made again is drawn anew, not the same picture.
            seed: request.seed,
            figures,
            place,
            sheet,
            voice,
        })
    }
}

/// Where media tasks go to be run ([`drive_media`]).
type MediaQueue<'a> = tokio::sync::mpsc::UnboundedSender<MediaTask<'a>>;

/// Runs the queued media tasks all at once (each bounded by its provider's slots) until
/// the queue is closed and every task has ended; a failure leaves that file `null`.
async fn drive_media<'a>(
    mut queue: tokio::sync::mpsc::UnboundedReceiver<MediaTask<'a>>,
) -> AppResult<MediaMade> {
    use futures_util::StreamExt;
    let mut running = futures_util::stream::FuturesUnordered::new();
    let mut made = MediaMade::default();
    loop {
        tokio::select! {
            Some(task) = queue.recv() => running.push(task),
            Some(done) = running.next(), if !running.is_empty() => {
                let (kind, result) = done?;
                made.lost |= matches!(result, Made::Lost);
                match kind {
                    MediaKind::Image => made.images.push(result),
                    MediaKind::Audio => made.narrations.push(result),
                }
            }
            else => return Ok(made),
        }
    }
}

/// Queues what `chapter` is still missing: its illustration and its narration, in the
/// account's cloned voice when there is one, falling back to the stock narrator, then
/// the offline one.
fn start_media<'a>(run: Run<'a>, plan: &MediaPlan, chapter: &Chapter, queue: &mut MediaQueue<'a>) {
    let providers = run.providers;
    if chapter.image.is_none() {
        let req = IllustrationRequest {
            seed: plan.seed,
            chapter_number: chapter.number as usize,
            chapter_title: chapter.title.clone(),
            scene: chapter.content.chars().take(400).collect(),
            place: plan.place.clone(),
            character_sheet: plan.sheet.clone(),
            characters: plan.figures.clone(),
        };
        let slot = MediaSlot {
            step: "illustrate",
            kind: MediaKind::Image,
            chapter_id: chapter.id,
            number: chapter.number,
        };
        let _ = queue.send(Box::pin(async move {
            let illustrator = providers.illustrator.clone();
            let made = attempt(
                run,
                &slot,
                illustrator.name(),
                &providers.image_slots,
                || {
                    let illustrator = illustrator.clone();
                    let req = req.clone();
                    async move { illustrator.illustrate(&req).await }
                },
            )
            .await?;
            Ok((slot.kind, store_media(run, &slot, made).await?))
        }));
    }
    if chapter.audio.is_none() {
        let text = format!("{}. {}", chapter.title, chapter.content);
        let slot = MediaSlot {
            step: "narrate",
            kind: MediaKind::Audio,
            chapter_id: chapter.id,
            number: chapter.number,
        };
        let voice = plan.voice.clone();
        let _ = queue.send(Box::pin(async move {
            let made = narrate(run, &slot, &text, voice.as_deref()).await;
            Ok((slot.kind, store_media(run, &slot, made).await?))
        }));
    }
}

/// How each illustration and narration of a story ended.
#[derive(Default)]
struct MediaMade {
    images: Vec<Made>,
    narrations: Vec<Made>,
    /// A file was made but not stored: this worker no longer held the story.
    lost: bool,
}

impl MediaMade {
    /// Step 4's summary: when every illustration (or narration) of the story failed,
    /// the note says so: the story is complete but not as promised.
    fn notes(self, run: Run<'_>, story: StoryId) -> Option<String> {
        let mut notes = Vec::new();
        for (results, what, step) in [
            (self.images, "삽화", "illustrate_all"),
            (self.narrations, "낭독", "narrate_all"),
        ] {
            let mut failed = None;
            let mut any_made = false;
            let unavailable = Why::Provider(crate::providers::ErrorKind::Unavailable);
            for result in results {
                match result {
                    Made::Stored | Made::Lost => any_made = true,
                    // The failure that says most: a real one over "not available here".
                    Made::Failed(why) if failed.is_none() || failed == Some(unavailable) => {
                        failed = Some(why)
                    }
                    Made::Failed(_) => {}
                }
            }
            // A server with no narrator at all (no speech provider, no espeak-ng) is
            // configuration, said at start-up, not a failure of this story.
            let missing = step == "narrate_all" && failed == Some(unavailable);
            if let (false, Some(why), false) = (any_made, failed, missing) {
                let note = format!(
                    "{what}을(를) 하나도 만들지 못했습니다: {}",
                    why.public(what)
                );
                run.steps.note(story, step, why.kind(), &note);
                notes.push(note);
            }
        }
        (!notes.is_empty()).then(|| notes.join(" / "))
    }
}

/// Which chapter file a media task makes.
struct MediaSlot {
    step: &'static str,
    kind: MediaKind,
    chapter_id: ChapterId,
    number: i32,
}

/// One provider's attempts at one chapter file, in one of its capability's slots, every
/// attempt recorded.
async fn attempt<F, Fut>(
    run: Run<'_>,
    slot: &MediaSlot,
    provider: &str,
    slots: &Arc<Semaphore>,
    call: F,
) -> AppResult<Result<Media, ProviderError>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Media, ProviderError>>,
{
    let _slot = slots
        .acquire()
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
    Ok(with_retry(
        run.providers.retry,
        call,
        run.steps.observer(
            run.domain.metrics(),
            run.job.id,
            slot.step,
            Some(slot.number),
            provider,
        ),
    )
    .await)
}

/// A chapter's narration down the narration chain (`Providers::narrate`), every
/// attempt recorded in the story's history.
async fn narrate(
    run: Run<'_>,
    slot: &MediaSlot,
    text: &str,
    voice: Option<&str>,
) -> Result<Media, ProviderError> {
    let context = format!("story {} chapter {}", run.job.id, slot.number);
    let metrics = run.domain.metrics();
    run.providers
        .narrate(text, voice, "narrate", &context, metrics, |provider, a| {
            run.steps
                .observer(metrics, run.job.id, slot.step, Some(slot.number), provider)(a)
        })
        .await
}

/// Stores what a media task made (unless the lease is lost); a failure leaves the
/// chapter's file `null`.
async fn store_media(
    run: Run<'_>,
    slot: &MediaSlot,
    made: Result<Media, ProviderError>,
) -> AppResult<Made> {
    let Run {
        domain,
        owner,
        job,
        lost,
        ..
    } = run;
    match made {
        Ok(media) => {
            if *lost.borrow() || !claim::holds(domain, owner, job).await? {
                return Ok(Made::Lost);
            }
            // Labelled as AI-made, with the provider and model, in its own metadata.
            let bytes = media.labelled(&run.providers.made_by(media.made_by));
            let stored = domain
                .stories()
                .put_chapter_media(
                    job.id,
                    slot.chapter_id,
                    slot.kind,
                    &bytes,
                    &media.content_type,
                    media.extension,
                )
                .await?;
            match stored {
                Ok(_) => Ok(Made::Stored),
                // The media disk is full (or failing): the chapter keeps `null` and the
                // story goes on, as for a provider's failure; nothing half-written stays.
                Err(e) => {
                    tracing::error!(story_id = %job.id, chapter = slot.number, step = slot.step, error = %e, "media could not be stored; left empty");
                    Ok(Made::Failed(Why::Storage))
                }
            }
        }
        Err(e) => {
            tracing::warn!(story_id = %job.id, chapter = slot.number, step = slot.step, error = %e, "media left empty");
            Ok(Made::Failed(Why::Provider(e.kind)))
        }
    }
}

/// `Some(reason)` when the texts are not fit for a child, or cannot be checked.
async fn moderate(
    run: Run<'_>,
    story: StoryId,
    (step, chapter): (&str, Option<i32>),
    texts: &[String],
) -> Option<String> {
    let Run {
        domain,
        providers,
        steps,
        ..
    } = run;
    let Ok(_slot) = providers.moderation_slots.acquire().await else {
        return Some("안전 검사를 할 수 없어 이야기를 완성하지 않았습니다 (unavailable).".into());
    };
    let verdict = with_retry(
        providers.retry,
        || providers.moderator.check(texts),
        steps.observer(
            domain.metrics(),
            story,
            step,
            chapter,
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
fn public_detail(kind: crate::providers::ErrorKind) -> &'static str {
    use crate::providers::ErrorKind::*;
    match kind {
        Timeout => "이야기 서비스가 제때 응답하지 않았습니다",
        RateLimited | Quota => "이야기 서비스의 사용 한도에 도달했습니다",
        Server | Network => "이야기 서비스에 연결할 수 없습니다",
        Unauthorized => "이야기 서비스 설정에 문제가 있습니다",
        Refused => "이야기 서비스가 내용을 이유로 요청을 거절했습니다",
        BadResponse => "이야기 서비스의 응답을 이해할 수 없습니다",
        Unavailable => "이야기 서비스를 사용할 수 없습니다",
    }
}

/// The same description of the cast in every illustration prompt (the child with their
/// age when the child is in the story).
fn character_sheet(story: &Story, figures: &[String]) -> String {
    figures
        .iter()
        .map(|f| match *f == story.child_name {
            true => format!("{f} ({}살 아이)", story.child_age),
            false => f.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
