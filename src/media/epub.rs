//! The documents of a story's EPUB 3 picture book: the container, the package (with the
//! narration's durations), the table of contents, a cover, one XHTML page per chapter
//! (its illustration, then its text, each sentence its own element) and, for chapters
//! with an MP3 narration, an EPUB 3 Media Overlay (SMIL) that says which stretch of the
//! narration reads which sentence, so reading apps read aloud and highlight as they go.
//! The narration has no word timings: each sentence gets a stretch in proportion to its
//! length (the chapter's title first, as the narration reads it).

use std::fmt::Write;

use crate::providers::offline::xml_escape as esc;

/// The class reading apps put on the sentence being read.
pub const ACTIVE_CLASS: &str = "-epub-media-overlay-active";

/// A media file as it goes into the book.
#[derive(Clone, Debug)]
pub struct BookFile {
    /// Its path in the book, from the package document (`images/chapter-1.png`).
    pub href: String,
    pub media_type: String,
}

/// A chapter as it goes into the book.
#[derive(Clone, Debug)]
pub struct BookChapter {
    pub number: i32,
    pub title: String,
    pub content: String,
    pub image: Option<BookFile>,
    /// The narration and its length in seconds (only core audio types: MP3).
    pub audio: Option<(BookFile, f64)>,
}

/// What the book is made of.
#[derive(Clone, Debug)]
pub struct Book {
    /// The story's id (the book's identifier, `urn:uuid:…`).
    pub id: String,
    pub title: String,
    /// When the story last changed (`dcterms:modified`).
    pub modified: chrono::DateTime<chrono::Utc>,
    /// The AI label (docs/privacy.md), on the cover and in the metadata.
    pub label: String,
    pub chapters: Vec<BookChapter>,
    /// Narrations left out because the book cannot carry their format.
    pub narrations_left_out: usize,
}

/// The stretches a chapter's narration is cut into: the title, then each sentence.
fn parts(chapter: &BookChapter) -> Vec<(String, String)> {
    let n = chapter.number;
    let mut parts = vec![(format!("c{n}-title"), chapter.title.clone())];
    for (i, sentence) in sentences(&chapter.content).into_iter().enumerate() {
        parts.push((format!("c{n}-s{}", i + 1), sentence.to_string()));
    }
    parts
}

/// `text` cut after each sentence's end (`.`, `!`, `?`, `…` and their closing quotes)
/// and at line breaks; the pieces join back into the text (less the spaces between).
pub fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for (i, &(at, c)) in chars.iter().enumerate() {
        let next = chars.get(i + 1).map(|&(_, c)| c);
        let ends = match c {
            '\n' => true,
            '.' | '!' | '?' | '…' | '。' | '"' | '\'' | '”' | '’' | ')' => {
                let closes_sentence = match c {
                    '"' | '\'' | '”' | '’' | ')' => {
                        i > 0 && matches!(chars[i - 1].1, '.' | '!' | '?' | '…' | '。')
                    }
                    _ => !matches!(
                        next,
                        Some('.' | '!' | '?' | '…' | '"' | '\'' | '”' | '’' | ')')
                    ),
                };
                closes_sentence && next.is_none_or(char::is_whitespace)
            }
            _ => false,
        };
        if ends {
            let end = at + c.len_utf8();
            let piece = text[start..end].trim();
            if !piece.is_empty() {
                out.push(piece);
            }
            start = end;
        }
    }
    let rest = text[start..].trim();
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// Seconds as a SMIL clock value (`12.345s`).
fn clock(seconds: f64) -> String {
    format!("{seconds:.3}s")
}

/// Seconds as a full clock value (`0:00:12.345`), for `media:duration`.
fn full_clock(seconds: f64) -> String {
    let ms = (seconds * 1000.0).round() as u64;
    format!(
        "{}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// A duration rounded to the millisecond, as the documents write it.
fn ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

pub fn container_xml() -> &'static str {
    r#"<?xml version="1.0" encoding="UTF-8"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
  <rootfiles>
    <rootfile full-path="OEBPS/package.opf" media-type="application/oebps-package+xml"/>
  </rootfiles>
</container>
"#
}

pub fn style_css() -> &'static str {
    "body { font-family: sans-serif; line-height: 1.7; margin: 1em; }\n\
     h1 { font-size: 1.4em; text-align: center; }\n\
     figure { margin: 0 0 1em 0; text-align: center; }\n\
     img { max-width: 100%; height: auto; }\n\
     .label { font-size: 0.8em; color: #555; text-align: center; }\n\
     .-epub-media-overlay-active { background-color: #ffe98a; }\n"
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE html>\n\
         <html xmlns=\"http://www.w3.org/1999/xhtml\" xmlns:epub=\"http://www.idpf.org/2007/ops\" xml:lang=\"ko\" lang=\"ko\">\n\
         <head>\n<meta charset=\"UTF-8\"/>\n<title>{}</title>\n<link rel=\"stylesheet\" type=\"text/css\" href=\"style.css\"/>\n</head>\n\
         <body>\n{body}</body>\n</html>\n",
        esc(title)
    )
}

/// The cover image: the first chapter's picture.
fn cover_image(book: &Book) -> Option<&BookFile> {
    book.chapters.iter().find_map(|c| c.image.as_ref())
}

pub fn cover_xhtml(book: &Book) -> String {
    let mut body = String::from("<section epub:type=\"cover\">\n");
    if let Some(image) = cover_image(book) {
        let _ = writeln!(
            body,
            "<figure><img src=\"{}\" alt=\"{}\"/></figure>",
            esc(&image.href),
            esc(&book.title)
        );
    }
    let _ = writeln!(body, "<h1>{}</h1>", esc(&book.title));
    let _ = writeln!(body, "<p class=\"label\">{}</p>", esc(&book.label));
    if book.narrations_left_out > 0 {
        let _ = writeln!(
            body,
            "<p class=\"label\">낭독 {}개는 이 책 형식에 담을 수 없는 파일이라 빠졌어요. 앱에서 들을 수 있어요.</p>",
            book.narrations_left_out
        );
    }
    body.push_str("</section>\n");
    page(&book.title, &body)
}

pub fn nav_xhtml(book: &Book) -> String {
    let mut body = String::from("<nav epub:type=\"toc\" id=\"toc\">\n<h1>차례</h1>\n<ol>\n");
    for c in &book.chapters {
        let _ = writeln!(
            body,
            "<li><a href=\"chapter-{n}.xhtml\">{n}. {}</a></li>",
            esc(&c.title),
            n = c.number
        );
    }
    body.push_str("</ol>\n</nav>\n");
    page("차례", &body)
}

pub fn chapter_xhtml(chapter: &BookChapter) -> String {
    let n = chapter.number;
    let mut body = format!("<section epub:type=\"chapter\" id=\"chapter-{n}\">\n");
    let parts = parts(chapter);
    let _ = writeln!(body, "<h1 id=\"{}\">{}</h1>", parts[0].0, esc(&parts[0].1));
    if let Some(image) = &chapter.image {
        let _ = writeln!(
            body,
            "<figure><img src=\"{}\" alt=\"{n}장 삽화: {}\"/></figure>",
            esc(&image.href),
            esc(&chapter.title)
        );
    }
    body.push_str("<p>");
    for (i, (id, text)) in parts[1..].iter().enumerate() {
        if i > 0 {
            body.push(' ');
        }
        let _ = write!(body, "<span id=\"{id}\">{}</span>", esc(text));
    }
    body.push_str("</p>\n</section>\n");
    page(&chapter.title, &body)
}

/// The chapter's media overlay, when it has a narration.
pub fn chapter_smil(chapter: &BookChapter) -> Option<String> {
    let (audio, duration) = chapter.audio.as_ref()?;
    let n = chapter.number;
    let parts = parts(chapter);
    let total_chars: usize = parts.iter().map(|(_, t)| t.chars().count().max(1)).sum();
    let duration = ms(*duration);
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <smil xmlns=\"http://www.w3.org/ns/SMIL\" xmlns:epub=\"http://www.idpf.org/2007/ops\" version=\"3.0\">\n\
         <body>\n<seq id=\"c{n}-seq\" epub:textref=\"chapter-{n}.xhtml#chapter-{n}\" epub:type=\"chapter\">\n"
    );
    let mut chars = 0usize;
    let mut begin = 0.0;
    for (i, (id, text)) in parts.iter().enumerate() {
        chars += text.chars().count().max(1);
        let end = if i + 1 == parts.len() {
            duration
        } else {
            ms(duration * chars as f64 / total_chars as f64)
        };
        let _ = writeln!(
            out,
            "<par id=\"{id}-par\"><text src=\"chapter-{n}.xhtml#{id}\"/><audio src=\"{}\" clipBegin=\"{}\" clipEnd=\"{}\"/></par>",
            esc(&audio.href),
            clock(begin),
            clock(end)
        );
        begin = end;
    }
    out.push_str("</seq>\n</body>\n</smil>\n");
    Some(out)
}

/// The package document: metadata (with each overlay's duration and their total), the
/// manifest of every file, the reading order.
pub fn package_opf(book: &Book) -> String {
    let mut meta = String::new();
    let mut manifest = String::new();
    let mut spine = String::from("<itemref idref=\"cover\"/>\n");
    let mut total = 0.0;
    let cover = cover_image(book).map(|f| f.href.clone());
    manifest.push_str(
        "<item id=\"nav\" href=\"nav.xhtml\" media-type=\"application/xhtml+xml\" properties=\"nav\"/>\n\
         <item id=\"css\" href=\"style.css\" media-type=\"text/css\"/>\n\
         <item id=\"cover\" href=\"cover.xhtml\" media-type=\"application/xhtml+xml\"/>\n",
    );
    for c in &book.chapters {
        let n = c.number;
        let overlay = match &c.audio {
            Some((audio, duration)) => {
                let duration = ms(*duration);
                total += duration;
                let _ = writeln!(
                    meta,
                    "<meta property=\"media:duration\" refines=\"#smil-{n}\">{}</meta>",
                    full_clock(duration)
                );
                let _ = writeln!(
                    manifest,
                    "<item id=\"smil-{n}\" href=\"chapter-{n}.smil\" media-type=\"application/smil+xml\"/>\n\
                     <item id=\"audio-{n}\" href=\"{}\" media-type=\"{}\"/>",
                    esc(&audio.href),
                    esc(&audio.media_type)
                );
                format!(" media-overlay=\"smil-{n}\"")
            }
            None => String::new(),
        };
        let _ = writeln!(
            manifest,
            "<item id=\"chapter-{n}\" href=\"chapter-{n}.xhtml\" media-type=\"application/xhtml+xml\"{overlay}/>"
        );
        if let Some(image) = &c.image {
            let property = match cover.as_deref() == Some(image.href.as_str()) {
                true => " properties=\"cover-image\"",
                false => "",
            };
            let _ = writeln!(
                manifest,
                "<item id=\"image-{n}\" href=\"{}\" media-type=\"{}\"{property}/>",
                esc(&image.href),
                esc(&image.media_type)
            );
        }
        let _ = writeln!(spine, "<itemref idref=\"chapter-{n}\"/>");
    }
    if total > 0.0 {
        let _ = writeln!(
            meta,
            "<meta property=\"media:duration\">{}</meta>\n<meta property=\"media:active-class\">{ACTIVE_CLASS}</meta>",
            full_clock(total)
        );
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <package xmlns=\"http://www.idpf.org/2007/opf\" version=\"3.0\" unique-identifier=\"book-id\" xml:lang=\"ko\">\n\
         <metadata xmlns:dc=\"http://purl.org/dc/elements/1.1/\">\n\
         <dc:identifier id=\"book-id\">urn:uuid:{id}</dc:identifier>\n\
         <dc:title>{title}</dc:title>\n<dc:language>ko</dc:language>\n\
         <dc:creator>쫑알쫑알 (AI)</dc:creator>\n<dc:description>{label}</dc:description>\n\
         <meta property=\"dcterms:modified\">{modified}</meta>\n{meta}</metadata>\n\
         <manifest>\n{manifest}</manifest>\n<spine>\n{spine}</spine>\n</package>\n",
        id = esc(&book.id),
        title = esc(&book.title),
        label = esc(&book.label),
        modified = book.modified.format("%Y-%m-%dT%H:%M:%SZ"),
    )
}

/// Counts an MP3's playing time from its frame headers as its bytes go by. ID3v2 tags
/// are skipped wherever they are (a narration made in pieces and joined carries one per
/// piece); the count stops at the first byte that is neither a frame nor a tag, such as
/// an ID3v1 tag at the end.
#[derive(Default)]
pub struct Mp3Clock {
    seconds: f64,
    /// Bytes still to skip: the rest of a tag or a frame.
    skip: u64,
    /// The bytes of a header read so far (a header may straddle two pieces).
    head: Vec<u8>,
    stopped: bool,
}

impl Mp3Clock {
    /// The playing time counted so far, in seconds.
    pub fn seconds(&self) -> f64 {
        self.seconds
    }

    pub fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.stopped {
            if self.skip > 0 {
                let n = (self.skip as usize).min(bytes.len());
                self.skip -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            // A frame header is 4 bytes; a tag's, 10.
            let tag = self.head.len() >= 3 && &self.head[..3] == b"ID3";
            let need = if tag { 10 } else { 4 };
            let take = (need - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.head.len() < need || (!tag && &self.head[..3] == b"ID3") {
                continue;
            }
            let head = std::mem::take(&mut self.head);
            if tag {
                let size = head[6..10]
                    .iter()
                    .fold(0u64, |acc, b| (acc << 7) | u64::from(b & 0x7f));
                self.skip = size + if head[5] & 0x10 != 0 { 10 } else { 0 };
                continue;
            }
            self.frame(&head);
        }
    }

    /// Reads one frame header; counts its time and skips its body.
    fn frame(&mut self, h: &[u8]) {
        if h[0] != 0xFF || h[1] & 0xE0 != 0xE0 {
            self.stopped = true;
            return;
        }
        let version = (h[1] >> 3) & 3; // 0: MPEG 2.5, 2: MPEG 2, 3: MPEG 1
        let layer = (h[1] >> 1) & 3; // 1: layer III
        let bitrate_index = (h[2] >> 4) as usize;
        let rate_index = ((h[2] >> 2) & 3) as usize;
        let padding = u64::from((h[2] >> 1) & 1);
        if version == 1
            || layer != 1
            || bitrate_index == 0
            || bitrate_index == 15
            || rate_index == 3
        {
            self.stopped = true;
            return;
        }
        const V1: [u64; 15] = [
            0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
        ];
        const V2: [u64; 15] = [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160];
        let (bitrate, rate, samples) = match version {
            3 => (
                V1[bitrate_index],
                [44_100, 48_000, 32_000][rate_index],
                1152u64,
            ),
            2 => (V2[bitrate_index], [22_050, 24_000, 16_000][rate_index], 576),
            _ => (V2[bitrate_index], [11_025, 12_000, 8_000][rate_index], 576),
        };
        let length = samples / 8 * bitrate * 1000 / rate + padding;
        self.seconds += samples as f64 / rate as f64;
        self.skip = length.saturating_sub(4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_keep_their_ends_and_quotes() {
        assert_eq!(
            sentences("옛날 옛적에. \"도와줘!\" 하고 외쳤어요… 그래서?\n끝"),
            vec![
                "옛날 옛적에.",
                "\"도와줘!\"",
                "하고 외쳤어요…",
                "그래서?",
                "끝"
            ]
        );
        assert_eq!(sentences("3.5미터를 걸었어요"), vec!["3.5미터를 걸었어요"]);
        assert!(sentences("  ").is_empty());
    }

    #[test]
    fn an_overlay_covers_the_narration_in_order() {
        let chapter = BookChapter {
            number: 2,
            title: "숲".into(),
            content: "하나. 둘셋넷다섯!".into(),
            image: None,
            audio: Some((
                BookFile {
                    href: "audio/chapter-2.mp3".into(),
                    media_type: "audio/mpeg".into(),
                },
                10.0,
            )),
        };
        let smil = chapter_smil(&chapter).unwrap();
        assert!(smil.contains("<text src=\"chapter-2.xhtml#c2-title\"/><audio src=\"audio/chapter-2.mp3\" clipBegin=\"0.000s\" clipEnd=\"1.000s\"/>"), "{smil}");
        // By length: the title 1 character, "하나." 3, "둘셋넷다섯!" 6.
        assert!(
            smil.contains("clipBegin=\"1.000s\" clipEnd=\"4.000s\""),
            "{smil}"
        );
        assert!(
            smil.contains("clipBegin=\"4.000s\" clipEnd=\"10.000s\""),
            "{smil}"
        );
        let page = chapter_xhtml(&chapter);
        for id in ["c2-title", "c2-s1", "c2-s2"] {
            assert!(page.contains(&format!("id=\"{id}\"")), "{page}");
        }
        assert_eq!(full_clock(3725.5), "1:02:05.500");
    }

    #[test]
    fn mp3_time_is_counted_from_frame_headers_in_any_cuts() {
        // An ID3v2 tag of 5 bytes, then three MPEG-1 layer III frames at 128 kbit/s,
        // 44.1 kHz (417 bytes each, no padding), then an ID3v1 tag.
        let mut mp3 = b"ID3\x04\x00\x00\x00\x00\x00\x05tagxx".to_vec();
        for _ in 0..3 {
            let mut frame = vec![0xFF, 0xFB, 0x90, 0x00];
            frame.resize(417, 0x55);
            mp3.extend(frame);
        }
        mp3.extend(b"TAG");
        mp3.resize(mp3.len() + 125, 0);
        for cut in [1, 3, 100, 5000] {
            let mut clock = Mp3Clock::default();
            for piece in mp3.chunks(cut) {
                clock.push(piece);
            }
            let expected = 3.0 * 1152.0 / 44_100.0;
            assert!(
                (clock.seconds() - expected).abs() < 1e-9,
                "cut {cut}: {}",
                clock.seconds()
            );
        }
        // Two pieces joined, each with its own tag: both counted.
        let mut joined = mp3[..15 + 417 * 3].to_vec();
        joined.extend_from_slice(&mp3[..15 + 417 * 3]);
        let mut clock = Mp3Clock::default();
        for piece in joined.chunks(7) {
            clock.push(piece);
        }
        assert!((clock.seconds() - 6.0 * 1152.0 / 44_100.0).abs() < 1e-9);
        // No tag: the first frame starts at once.
        let mut clock = Mp3Clock::default();
        clock.push(&mp3[15..15 + 417 * 2]);
        assert!((clock.seconds() - 2.0 * 1152.0 / 44_100.0).abs() < 1e-9);
    }
}
