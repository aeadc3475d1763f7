//! A completed story as an EPUB 3 picture book (issue 34, point 3): a cover, a page per
//! chapter with its illustration, and the narration synchronised with the text through
//! Media Overlays ([`crate::media::epub`]). Only the owner gets it.
//!
//! The book is a ZIP made as it is sent ([`crate::media::zip`]): the media files are read
//! from disk twice in 64 KiB pieces — first for their sizes, CRC-32s and (MP3) playing
//! times, which the archive's headers and the overlays need before the bytes, then to
//! send them — and the pieces go through a channel of a few entries, so memory is bounded
//! by the book's documents (its pages, overlays and package, made before the first
//! byte), not by the story's pictures and sound. A file is kept open between its two
//! reads, so one replaced or deleted meanwhile still goes in whole, as it was.

use std::path::PathBuf;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::accounts::User;
use super::stories::{MediaFile, Story, StoryStatus};
use crate::domain::{Books, Domain};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::media::epub::{self, BookChapter, BookFile, Mp3Clock};
use crate::media::zip::Zip;
use crate::store;
use crate::vocabulary::{StoryId, UserId};

/// A piece of the book, or the error that cut it short.
pub type Piece = Result<Bytes, std::io::Error>;

/// Pieces waiting to be sent (each at most 64 KiB): the book's memory bound.
const QUEUE: usize = 4;
const CHUNK: usize = 64 * 1024;

/// What a book ticket (the GraphQL `prepareBook` URL) carries: whose and which story,
/// until when.
#[derive(Serialize, Deserialize)]
struct Ticket {
    u: UserId,
    s: StoryId,
    e: i64,
}

const TICKET_SCOPE: &str = "book";
const TICKET_TTL: chrono::Duration = chrono::Duration::minutes(10);

/// A signed URL that downloads one story's book without a bearer token.
#[derive(Clone, Debug)]
pub struct PreparedBook {
    pub url: String,
    pub expires_at: DateTime<Utc>,
}

impl Books<'_> {
    /// The story `id` of `viewer`, ready to be a book: theirs (else
    /// `INSUFFICIENT_PERMISSION`) and completed (else `CONFLICT`).
    pub(crate) async fn story(&self, viewer: &User, id: StoryId) -> AppResult<Story> {
        let story = self.stories().story(viewer, id).await?;
        if story.status != StoryStatus::Completed {
            return Err(AppError::new(
                ErrorCode::Conflict,
                "완성된(completed) 이야기만 책으로 받을 수 있습니다.",
            ));
        }
        Ok(story)
    }

    /// A URL that downloads the book of `viewer`'s story `id` for the next ten minutes
    /// (for browsers and reading apps that cannot send the bearer header).
    pub(crate) async fn prepare(&self, viewer: &User, id: StoryId) -> AppResult<PreparedBook> {
        let story = self.story(viewer, id).await?;
        let expires_at = store::now() + TICKET_TTL;
        let ticket = self.cursors().encode(
            TICKET_SCOPE,
            &Ticket {
                u: viewer.id,
                s: story.id,
                e: expires_at.timestamp(),
            },
        );
        Ok(PreparedBook {
            url: format!(
                "{}/api/v1/stories/{}/book.epub?ticket={ticket}",
                self.config().public_url.trim_end_matches('/'),
                story.id
            ),
            expires_at,
        })
    }

    /// The account a ticket is for, if it is genuine, not expired and for story `id`.
    pub(crate) fn ticket_owner(&self, ticket: &str, id: StoryId) -> AppResult<UserId> {
        let t: Ticket = self
            .cursors()
            .decode(TICKET_SCOPE, ticket)
            .map_err(|_| AppError::invalid_token())?;
        if t.e < store::now().timestamp() || t.s != id {
            return Err(AppError::invalid_token());
        }
        Ok(t.u)
    }

    /// The book of `story` (from [`Self::story`]) as a stream.
    pub(crate) fn book(&self, story: Story) -> impl Stream<Item = Piece> + Send + 'static {
        let (tx, rx) = mpsc::channel::<Piece>(QUEUE);
        let domain: Domain = (**self).clone();
        tokio::spawn(async move {
            if let Err(e) = write_book(&domain, &story, &tx).await {
                match e {
                    Stop::Gone => {}
                    Stop::Failed(e) => {
                        tracing::error!(story_id = %story.id, error = ?e, "the book was cut short");
                        let _ = tx
                            .send(Err(std::io::Error::other(
                                "the book could not be completed",
                            )))
                            .await;
                    }
                }
            }
        });
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|p| (p, rx)) })
    }
}

/// Why writing the book stopped.
enum Stop {
    /// The client went away.
    Gone,
    Failed(AppError),
}

impl<E: Into<anyhow::Error>> From<E> for Stop {
    fn from(e: E) -> Stop {
        Stop::Failed(AppError::Internal(e.into()))
    }
}

async fn send(tx: &mpsc::Sender<Piece>, bytes: Vec<u8>) -> Result<(), Stop> {
    tx.send(Ok(Bytes::from(bytes)))
        .await
        .map_err(|_| Stop::Gone)
}

/// A media file as scanned: open (a file replaced or deleted meanwhile stays readable
/// through it), what it is, and what the archive needs.
struct Scanned {
    file: tokio::fs::File,
    path: PathBuf,
    href: String,
    media_type: String,
    size: u64,
    crc: u32,
    /// MP3 narrations: the playing time.
    seconds: Option<f64>,
}

/// Reads a media file once through: size, CRC-32 and, for MP3, the playing time.
/// `None` when it is gone from disk (left out of the book).
async fn scan(path: PathBuf, href: String, media_type: &str) -> Result<Option<Scanned>, Stop> {
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut crc = crc32fast::Hasher::new();
    let mut clock = (media_type == "audio/mpeg").then(Mp3Clock::default);
    let mut size = 0u64;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        crc.update(&buf[..n]);
        if let Some(clock) = clock.as_mut() {
            clock.push(&buf[..n]);
        }
        size += n as u64;
    }
    Ok(Some(Scanned {
        file,
        path,
        href,
        media_type: media_type.to_string(),
        size,
        crc: crc.finalize(),
        seconds: clock.map(|c| c.seconds()),
    }))
}

/// The book's name for a chapter's file of `kind` (`images`, `audio`).
fn href(kind: &str, number: i32, file: &MediaFile) -> String {
    let ext = file.path.rsplit('.').next().unwrap_or("bin");
    format!("{kind}/chapter-{number}.{ext}")
}

/// Image formats every EPUB 3 reading system shows.
const CORE_IMAGES: [&str; 4] = ["image/png", "image/jpeg", "image/gif", "image/webp"];

async fn write_book(domain: &Domain, story: &Story, tx: &mpsc::Sender<Piece>) -> Result<(), Stop> {
    // First pass: what each file is.
    let mut chapters = Vec::new();
    let mut files = Vec::new();
    let mut left_out = 0;
    for c in &story.chapters {
        let mut image = None;
        if let Some(f) = &c.image
            && CORE_IMAGES.contains(&f.content_type.as_str())
            && let Some(path) = domain.media().resolve(&f.path)
            && let Some(s) = scan(path, href("images", c.number, f), &f.content_type).await?
        {
            image = Some(BookFile {
                href: s.href.clone(),
                media_type: s.media_type.clone(),
            });
            files.push(s);
        }
        let mut audio = None;
        if let Some(f) = &c.audio {
            // Media Overlays play core audio only: MP3 here (a WAV from the offline
            // narrator is left out, and the cover says so).
            let scanned = match (f.content_type.as_str(), domain.media().resolve(&f.path)) {
                ("audio/mpeg", Some(path)) => {
                    scan(path, href("audio", c.number, f), &f.content_type).await?
                }
                _ => None,
            };
            match scanned {
                Some(s) if s.seconds.is_some_and(|t| t > 0.0) => {
                    audio = Some((
                        BookFile {
                            href: s.href.clone(),
                            media_type: s.media_type.clone(),
                        },
                        s.seconds.unwrap_or_default(),
                    ));
                    files.push(s);
                }
                _ => left_out += 1,
            }
        }
        chapters.push(BookChapter {
            number: c.number,
            title: c.title.clone(),
            content: c.content.clone(),
            image,
            audio,
        });
    }
    let book = epub::Book {
        id: story.id.to_string(),
        title: story.title.clone().unwrap_or_else(|| story.theme.clone()),
        modified: story.updated_at,
        label: super::stories::provenance::AI_LABEL.to_string(),
        chapters,
        narrations_left_out: left_out,
    };
    // The documents, then the files.
    let mut zip = Zip::default();
    let mut documents: Vec<(String, String)> = vec![
        ("mimetype".into(), "application/epub+zip".into()),
        (
            "META-INF/container.xml".into(),
            epub::container_xml().into(),
        ),
        ("OEBPS/package.opf".into(), epub::package_opf(&book)),
        ("OEBPS/nav.xhtml".into(), epub::nav_xhtml(&book)),
        ("OEBPS/style.css".into(), epub::style_css().into()),
        ("OEBPS/cover.xhtml".into(), epub::cover_xhtml(&book)),
    ];
    for c in &book.chapters {
        documents.push((
            format!("OEBPS/chapter-{}.xhtml", c.number),
            epub::chapter_xhtml(c),
        ));
        if let Some(smil) = epub::chapter_smil(c) {
            documents.push((format!("OEBPS/chapter-{}.smil", c.number), smil));
        }
    }
    for (name, text) in documents {
        send(
            tx,
            zip.file(&name, text.as_bytes()).map_err(|_| too_large())?,
        )
        .await?;
    }
    for mut f in files {
        send(
            tx,
            zip.entry(&format!("OEBPS/{}", f.href), f.crc, f.size)
                .map_err(|_| too_large())?,
        )
        .await?;
        // The same open file, read again from its start; its bytes must be the ones
        // counted, or the book is cut short rather than sent corrupt.
        use tokio::io::AsyncSeekExt;
        f.file.seek(std::io::SeekFrom::Start(0)).await?;
        let file = &mut f.file;
        let mut crc = crc32fast::Hasher::new();
        let mut left = f.size;
        while left > 0 {
            let mut buf = vec![0u8; (left as usize).min(CHUNK)];
            let n = file.read(&mut buf).await?;
            if n == 0 {
                return Err(Stop::Failed(AppError::Internal(anyhow::anyhow!(
                    "{} shrank while the book was made",
                    f.path.display()
                ))));
            }
            buf.truncate(n);
            left -= n as u64;
            crc.update(&buf);
            send(tx, buf).await?;
        }
        if crc.finalize() != f.crc {
            return Err(Stop::Failed(AppError::Internal(anyhow::anyhow!(
                "{} changed while the book was made",
                f.path.display()
            ))));
        }
    }
    send(tx, zip.finish().map_err(|_| too_large())?).await
}

fn too_large() -> Stop {
    Stop::Failed(AppError::Internal(anyhow::anyhow!(
        "the book is larger than a ZIP without ZIP64 holds"
    )))
}
