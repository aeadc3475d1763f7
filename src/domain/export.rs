//! The guardian's export (issue 33; the right of access and portability): one archive of
//! everything the service holds about the family — the account, the consents, every
//! conversation with its messages and spoken replies, every story with its pictures and
//! narration, the voice samples' list and the clone's status.
//!
//! The archive is a ustar file made as it is sent ([`crate::media::tar`]): each JSON
//! document is made and sent on its own, each media file is read from disk in 64 KiB
//! pieces, and the pieces go through a channel of a few entries, so memory is bounded by
//! the largest single document (one conversation with its messages, one story), not by
//! the library. Only the owner's data goes in: every read is by the owner's
//! id. An export is recorded (`data_exports`), and one may start per
//! `JJONGAL_EXPORT_INTERVAL_SECS` per account, on every process.
//!
//! Archive layout (documented in docs/privacy.md):
//! `README.txt`, `account.json`, `consents.json`, `voice.json`,
//! `conversations/{id}.json` (+ `conversations/{id}/{seq}.{ext}` spoken replies),
//! `stories/{id}.json` (+ `stories/{id}/{chapter}-image.{ext}`, `-audio.{ext}`).

use std::path::PathBuf;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::Domain;
use super::accounts::User;
use super::stories::{ListStories, SortKey, SortOrder, Story};
use crate::domain::Exports;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::media::tar;
use crate::store::{self, from_db, to_db};
use crate::vocabulary::{ExportId, UserId};

/// A piece of the archive, or the error that cut it short.
pub type Piece = Result<Bytes, std::io::Error>;

/// Pieces waiting to be sent (each at most 64 KiB): the archive's memory bound.
const QUEUE: usize = 4;
const CHUNK: usize = 64 * 1024;

/// What an export ticket (the GraphQL `prepareExport` URL) carries.
#[derive(Serialize, Deserialize)]
struct Ticket {
    u: UserId,
    e: i64,
}

/// A signed URL that downloads the viewer's export without a bearer token.
#[derive(Clone, Debug)]
pub struct PreparedExport {
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

const TICKET_SCOPE: &str = "export";
/// How long a prepared export's URL works.
const TICKET_TTL: chrono::Duration = chrono::Duration::minutes(10);

impl Exports<'_> {
    /// A URL that downloads `owner`'s export for the next ten minutes (for browsers and
    /// apps that cannot send the bearer header on a download).
    pub(crate) fn prepare(&self, owner: &User) -> PreparedExport {
        let expires_at = store::now() + TICKET_TTL;
        let ticket = self.cursors().encode(
            TICKET_SCOPE,
            &Ticket {
                u: owner.id,
                e: expires_at.timestamp(),
            },
        );
        PreparedExport {
            url: format!(
                "{}/api/v1/users/me/export?ticket={ticket}",
                self.config().public_url.trim_end_matches('/')
            ),
            expires_at,
        }
    }

    /// The account a ticket is for, if it is genuine and not expired.
    pub(crate) fn ticket_owner(&self, ticket: &str) -> AppResult<UserId> {
        let t: Ticket = self
            .cursors()
            .decode(TICKET_SCOPE, ticket)
            .map_err(|_| AppError::invalid_token())?;
        if t.e < store::now().timestamp() {
            return Err(AppError::invalid_token());
        }
        Ok(t.u)
    }

    /// Records an export of `owner` unless one started within the interval
    /// (`RATE_LIMIT_EXCEEDED` with the seconds to wait).
    pub(crate) async fn begin(&self, owner: &User) -> AppResult<()> {
        let interval = self.config().export_interval;
        let now = store::now();
        // (The interval is at most a week: `JJONGAL_EXPORT_INTERVAL_SECS`.)
        let since = now - chrono::Duration::from_std(interval).unwrap_or_default();
        let earlier = store::exports::start(
            &mut self.pool().get().await?.db(),
            ExportId::random(),
            owner.id,
            to_db(now),
            to_db(since),
        )
        .await?;
        if let Some(earlier) = earlier {
            let next = from_db(earlier) + chrono::Duration::from_std(interval).unwrap_or_default();
            let wait = (next - now).num_seconds().max(1) as u64;
            return Err(AppError::Limited {
                message: format!(
                    "내보내기는 {}분에 한 번 할 수 있어요. {wait}초 뒤에 다시 시도해 주세요.",
                    interval.as_secs().div_ceil(60)
                ),
                retry_after: wait,
            });
        }
        tracing::info!(user_id = %owner.id, "family export started");
        Ok(())
    }

    /// The archive of `owner`'s data as a stream (started after [`Self::begin`]).
    pub(crate) fn archive(&self, owner: User) -> impl Stream<Item = Piece> + Send + 'static {
        let (tx, rx) = mpsc::channel::<Piece>(QUEUE);
        let domain: Domain = (**self).clone();
        tokio::spawn(async move {
            let mut sink = Sink { tx };
            if let Err(e) = write_archive(&domain, &owner, &mut sink).await {
                match e {
                    Stop::Gone => {}
                    Stop::Failed(e) => {
                        tracing::error!(user_id = %owner.id, error = ?e, "family export cut short");
                        let _ = sink
                            .tx
                            .send(Err(std::io::Error::other(
                                "the export could not be completed",
                            )))
                            .await;
                    }
                }
            }
        });
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|p| (p, rx)) })
    }
}

/// Why writing stopped early.
enum Stop {
    /// The client went away.
    Gone,
    Failed(AppError),
}

impl From<AppError> for Stop {
    fn from(e: AppError) -> Stop {
        Stop::Failed(e)
    }
}

impl From<store::DbError> for Stop {
    fn from(e: store::DbError) -> Stop {
        Stop::Failed(e.into())
    }
}

struct Sink {
    tx: mpsc::Sender<Piece>,
}

impl Sink {
    async fn send(&mut self, bytes: impl Into<Bytes>) -> Result<(), Stop> {
        self.tx.send(Ok(bytes.into())).await.map_err(|_| Stop::Gone)
    }

    async fn entry(&mut self, name: &str, size: u64, mtime: i64) -> Result<(), Stop> {
        let header = tar::header(name, size, mtime).ok_or_else(|| {
            Stop::Failed(AppError::Internal(anyhow::anyhow!(
                "an export entry name does not fit: {name}"
            )))
        })?;
        self.send(header.to_vec()).await
    }

    async fn pad(&mut self, size: u64) -> Result<(), Stop> {
        let n = tar::padding(size);
        if n > 0 {
            self.send(vec![0u8; n]).await?;
        }
        Ok(())
    }

    /// A file made here (a JSON document or the README).
    async fn file(&mut self, name: &str, bytes: Vec<u8>, mtime: i64) -> Result<(), Stop> {
        let size = bytes.len() as u64;
        self.entry(name, size, mtime).await?;
        self.send(bytes).await?;
        self.pad(size).await
    }

    async fn json(&mut self, name: &str, value: &Value, mtime: i64) -> Result<(), Stop> {
        let bytes = serde_json::to_vec_pretty(value)
            .map_err(|e| Stop::Failed(AppError::Internal(e.into())))?;
        self.file(name, bytes, mtime).await
    }

    /// A file on disk, in pieces; `false` when it is no longer there (deleted since it
    /// was listed: left out).
    async fn disk_file(&mut self, name: &str, path: PathBuf, mtime: i64) -> Result<bool, Stop> {
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Stop::Failed(AppError::Internal(e.into()))),
        };
        let size = file
            .metadata()
            .await
            .map_err(|e| Stop::Failed(AppError::Internal(e.into())))?
            .len();
        self.entry(name, size, mtime).await?;
        let mut left = size;
        while left > 0 {
            let mut buf = vec![0u8; (left as usize).min(CHUNK)];
            let n = file
                .read(&mut buf)
                .await
                .map_err(|e| Stop::Failed(AppError::Internal(e.into())))?;
            if n == 0 {
                // Shorter than it was a moment ago: the archive cannot be kept whole.
                return Err(Stop::Failed(AppError::Internal(anyhow::anyhow!(
                    "{} shrank while it was exported",
                    path.display()
                ))));
            }
            buf.truncate(n);
            left -= n as u64;
            self.send(buf).await?;
        }
        self.pad(size).await?;
        Ok(true)
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

const README: &str = "\
쫑알쫑알(Jjongal) — 가족 데이터 내보내기 / family data export

이 파일에는 서비스가 이 가족에 대해 가진 모든 것이 들어 있습니다.
This archive holds everything the service keeps about this family:

  account.json               the account: login id, the child's name and age, consent time
  consents.json              sign-up consent and every voice-cloning consent (with its text)
  voice.json                 the voice samples kept (a list) and the cloned voice's status
  conversations/<id>.json    each conversation with its messages (what the child wrote or
                             said, as text, and what the guide answered)
  conversations/<id>/        the guide's spoken replies still kept
  stories/<id>.json          each story: title, chapters, status, and who made what
  stories/<id>/              its pictures and narration

The child's spoken utterances are not kept, so they are not here. Pictures and sounds
carry the AI label (IPTC trainedAlgorithmicMedia) in their metadata.
";

async fn write_archive(domain: &Domain, owner: &User, sink: &mut Sink) -> Result<(), Stop> {
    let now = store::now().timestamp();
    sink.file("README.txt", README.as_bytes().to_vec(), now)
        .await?;
    let row = store::accounts::user(&mut domain.pool().get().await?.db(), owner.id)
        .await?
        .ok_or_else(|| AppError::code_only(ErrorCode::InvalidToken))?;
    let exports = store::exports::of(&mut domain.pool().get().await?.db(), owner.id).await?;
    sink.json(
        "account.json",
        &json!({
            "id": row.id.to_string(),
            "login_id": row.login_id,
            "child": {"name": row.name, "age": row.age},
            "role": row.role.as_str(),
            "created_at": ts(from_db(row.created_at)),
            "voice_status": row.voice_status.as_str(),
            "exported_at": ts(store::now()),
            "exports_started_at": exports.into_iter().map(|t| ts(from_db(t))).collect::<Vec<_>>(),
        }),
        now,
    )
    .await?;
    let consents = domain.voices().consent_history(owner.id).await?;
    sink.json(
        "consents.json",
        &json!({
            "sign_up": {
                "text": "the guardian agrees to the processing of the child's conversations by the configured AI providers",
                "given_at": ts(from_db(row.guardian_consent_at)),
            },
            "voice_cloning": consents.iter().map(|c| json!({
                "voice_of": c.voice_of,
                "provider": c.provider,
                "text_version": c.text_version,
                "text": c.text,
                "given_at": ts(c.given_at),
                "withdrawn_at": c.withdrawn_at.map(ts),
            })).collect::<Vec<_>>(),
        }),
        now,
    )
    .await?;
    let samples = store::voices::samples_of(&mut domain.pool().get().await?.db(), owner.id).await?;
    sink.json(
        "voice.json",
        &json!({
            "clone": {
                "status": row.voice_status.as_str(),
                "cloned": row.voice_id.is_some(),
            },
            "samples": samples.iter().map(|s| json!({
                "id": s.id.to_string(),
                "format": s.format,
                "size_bytes": s.size_bytes,
                "created_at": ts(from_db(s.created_at)),
            })).collect::<Vec<_>>(),
        }),
        now,
    )
    .await?;
    write_conversations(domain, owner, sink).await?;
    write_stories(domain, owner, sink).await?;
    sink.send(tar::END.to_vec()).await
}

async fn write_conversations(domain: &Domain, owner: &User, sink: &mut Sink) -> Result<(), Stop> {
    let mut after = None;
    loop {
        let page = store::conversations::newest_first(
            &mut domain.pool().get().await?.db(),
            Some(owner.id),
            after,
            50,
        )
        .await?;
        for c in &page.rows {
            let messages =
                store::conversations::messages(&mut domain.pool().get().await?.db(), c.id, None)
                    .await?;
            let mtime = from_db(c.updated_at).timestamp();
            let mut listed = Vec::with_capacity(messages.len());
            let mut files = Vec::new();
            for m in &messages {
                let audio = m.audio_path.as_ref().map(|p| {
                    let ext = p.rsplit('.').next().unwrap_or("bin");
                    let name = format!("conversations/{}/{}.{ext}", c.id, m.seq);
                    files.push((name.clone(), p.clone()));
                    name
                });
                listed.push(json!({
                    "seq": m.seq,
                    "role": m.role.as_str(),
                    "text": m.text,
                    "flagged_by_moderation": m.flagged,
                    "audio_file": audio,
                    "created_at": ts(from_db(m.created_at)),
                }));
            }
            sink.json(
                &format!("conversations/{}.json", c.id),
                &json!({
                    "id": c.id.to_string(),
                    "child_name": c.child_name,
                    "child_age": c.child_age,
                    "interests": c.interests,
                    "status": c.status.as_str(),
                    "created_at": ts(from_db(c.created_at)),
                    "updated_at": ts(from_db(c.updated_at)),
                    "ended_at": c.ended_at.map(|t| ts(from_db(t))),
                    "messages": listed,
                }),
                mtime,
            )
            .await?;
            for (name, relative) in files {
                if let Some(path) = domain.media().resolve(&relative) {
                    sink.disk_file(&name, path, mtime).await?;
                }
            }
        }
        if !page.has_more {
            return Ok(());
        }
        after = page.rows.last().map(|c| (c.created_at, c.id));
    }
}

async fn write_stories(domain: &Domain, owner: &User, sink: &mut Sink) -> Result<(), Stop> {
    let mut after: Option<String> = None;
    loop {
        let page = domain
            .stories()
            .list_stories(
                owner,
                ListStories {
                    status: None,
                    sort: SortKey::CreatedAt,
                    order: SortOrder::Asc,
                    first: 50,
                    after: after.clone(),
                },
            )
            .await?;
        for (_, story) in &page.items {
            write_story(domain, story, sink).await?;
        }
        if !page.has_more {
            return Ok(());
        }
        after = page.end_cursor().map(str::to_string);
    }
}

async fn write_story(domain: &Domain, story: &Story, sink: &mut Sink) -> Result<(), Stop> {
    let mtime = story.updated_at.timestamp();
    let provenance = domain.stories().provenance(story).await?;
    let mut files = Vec::new();
    let mut file_of = |number: i32, kind: &str, media: &Option<super::stories::MediaFile>| {
        media.as_ref().map(|m| {
            let ext = m.path.rsplit('.').next().unwrap_or("bin");
            let name = format!("stories/{}/{number}-{kind}.{ext}", story.id);
            files.push((name.clone(), m.path.clone()));
            name
        })
    };
    let chapters: Vec<Value> = story
        .chapters
        .iter()
        .map(|c| {
            json!({
                "chapter_number": c.number,
                "title": c.title,
                "content": c.content,
                "image_file": file_of(c.number, "image", &c.image),
                "audio_file": file_of(c.number, "audio", &c.audio),
            })
        })
        .collect();
    sink.json(
        &format!("stories/{}.json", story.id),
        &json!({
            "id": story.id.to_string(),
            "title": story.title,
            "status": story.status.as_str(),
            "theme": story.theme,
            "characters": story.characters,
            "length": story.length.as_str(),
            "child": {"name": story.child_name, "age": story.child_age},
            "conversation_id": story.conversation_id.map(|c| c.to_string()),
            "created_at": ts(story.created_at),
            "updated_at": ts(story.updated_at),
            "chapters": chapters,
            "provenance": {
                "ai_generated": provenance.ai_generated,
                "digital_source_type": provenance.digital_source_type,
                "parts": provenance.parts.iter().map(|p| json!({
                    "capability": p.capability,
                    "made_by": p.made_by,
                    "offline": p.offline,
                    "chapters": p.chapters,
                })).collect::<Vec<_>>(),
            },
        }),
        mtime,
    )
    .await?;
    for (name, relative) in files {
        if let Some(path) = domain.media().resolve(&relative) {
            sink.disk_file(&name, path, mtime).await?;
        }
    }
    Ok(())
}
