//! Reading a story while the model writes it: server-sent events into their `data`
//! payloads ([`SseLines`]), and the story's JSON (`{"title", "chapters": [{"title",
//! "content"}]}`) into pieces as each completes ([`StoryScanner`]): the title, the
//! growing text of a chapter, and each whole chapter the moment its object closes.
//! Each byte is scanned once as it arrives (a chapter's object is parsed once more
//! when it closes, to check it).

use serde_json::Value;

use super::GeneratedChapter;
use super::story_text::checked_chapter;

/// The `data` payloads of a `text/event-stream` body, as its bytes arrive in any cuts.
/// Comments, `event:`/`id:`/`retry:` fields and blank keep-alives are skipped; a
/// multi-line `data` is joined with `\n` (the SSE rules).
#[derive(Default)]
pub(crate) struct SseLines {
    pending: Vec<u8>,
    /// How much of `pending` is known to hold no line end (searched already).
    searched: usize,
    data: Option<String>,
}

impl SseLines {
    /// The events completed by `bytes`.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(at) = self.pending[self.searched..]
            .iter()
            .position(|&b| b == b'\n')
        {
            let end = self.searched + at;
            self.searched = 0;
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]);
            let line = line.strip_suffix('\r').unwrap_or(&line);
            if line.is_empty() {
                if let Some(data) = self.data.take() {
                    events.push(data);
                }
                continue;
            }
            if let Some(value) = line.strip_prefix("data:") {
                let value = value.strip_prefix(' ').unwrap_or(value);
                match &mut self.data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                    None => self.data = Some(value.to_string()),
                }
            }
        }
        self.searched = self.pending.len();
        events
    }

    /// The last event when the body ended without its blank line.
    pub(crate) fn finish(&mut self) -> Option<String> {
        self.searched = 0;
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            let line = String::from_utf8_lossy(&rest).into_owned();
            if let Some(value) = line.trim_end_matches('\r').strip_prefix("data:") {
                let value = value.strip_prefix(' ').unwrap_or(value);
                match &mut self.data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                    None => self.data = Some(value.to_string()),
                }
            }
        }
        self.data.take()
    }
}

/// What the scanner found complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Scanned {
    /// The story's title (checked: 1–200 characters).
    Title(String),
    /// More of the content of the answer's chapter `index` (0-based in this answer).
    Text { index: usize, delta: String },
    /// The answer's next whole chapter, checked.
    Chapter(GeneratedChapter),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Object,
    Array,
}

struct Frame {
    kind: Kind,
    /// The key this container is the value of, in its parent object.
    key: Option<String>,
    /// In an object: the key whose value comes next.
    pending_key: Option<String>,
    /// In an object: the next string is a key.
    expecting_key: bool,
}

/// The string being read.
struct Str {
    is_key: bool,
    decoded: String,
    /// A backslash was read; `Some(n)` while reading `\u`'s hex digits (n read).
    escape: Escape,
    hex: u32,
    high_surrogate: Option<u32>,
    /// The chapter (0-based) whose content this string is.
    content_of: Option<usize>,
    /// Whether this is the root object's `title`.
    root_title: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Escape {
    None,
    Backslash,
    Hex(u8),
}

/// The story's JSON, read as it grows. Text before the root object (a code fence, a
/// sentence) and after it is ignored; a chapter that closes without a valid title and
/// content stops the scan with the problem.
pub(crate) struct StoryScanner {
    /// The answer from its root `{` on (a chapter is parsed from it when it closes).
    raw: String,
    started: bool,
    done: bool,
    stack: Vec<Frame>,
    string: Option<Str>,
    /// Where the open chapter object starts in `raw`.
    chapter_start: Option<usize>,
    chapters: usize,
    problem: Option<String>,
}

impl StoryScanner {
    pub(crate) fn new() -> StoryScanner {
        StoryScanner {
            raw: String::new(),
            started: false,
            done: false,
            stack: Vec::new(),
            string: None,
            chapter_start: None,
            chapters: 0,
            problem: None,
        }
    }

    /// The problem that stopped the scan, if one did.
    pub(crate) fn problem(&self) -> Option<&str> {
        self.problem.as_deref()
    }

    /// Whether the root object has closed.
    #[cfg(test)]
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Whether the root object opened at all.
    pub(crate) fn started(&self) -> bool {
        self.started
    }

    /// Reads `text`, the answer's next part; returns what it completed, in order.
    pub(crate) fn push(&mut self, text: &str) -> Vec<Scanned> {
        let mut out = Vec::new();
        for c in text.chars() {
            if self.done || self.problem.is_some() {
                break;
            }
            if !self.started {
                if c == '{' {
                    self.started = true;
                    self.raw.push(c);
                    self.stack.push(Frame {
                        kind: Kind::Object,
                        key: None,
                        pending_key: None,
                        expecting_key: true,
                    });
                }
                continue;
            }
            let at = self.raw.len();
            self.raw.push(c);
            if self.string.is_some() {
                self.string_char(c, &mut out);
                continue;
            }
            match c {
                '"' => self.open_string(),
                '{' | '[' => self.open(c, at),
                '}' | ']' => self.close(at, &mut out),
                ',' => {
                    if let Some(top) = self.stack.last_mut()
                        && top.kind == Kind::Object
                    {
                        top.expecting_key = true;
                        top.pending_key = None;
                    }
                }
                _ => {}
            }
        }
        merge_text(out)
    }

    fn in_chapter_object(&self) -> Option<usize> {
        // root { chapters: [ {here} ] }
        (self.stack.len() == 3
            && self.stack[1].kind == Kind::Array
            && self.stack[1].key.as_deref() == Some("chapters")
            && self.stack[2].kind == Kind::Object)
            .then_some(self.chapters)
    }

    fn open_string(&mut self) {
        let top = self.stack.last().expect("inside the root object");
        let is_key = top.kind == Kind::Object && top.expecting_key;
        let key = top.pending_key.as_deref();
        let content_of = match (is_key, key) {
            (false, Some("content")) => self.in_chapter_object(),
            _ => None,
        };
        let root_title = !is_key && self.stack.len() == 1 && key == Some("title");
        self.string = Some(Str {
            is_key,
            decoded: String::new(),
            escape: Escape::None,
            hex: 0,
            high_surrogate: None,
            content_of,
            root_title,
        });
    }

    fn string_char(&mut self, c: char, out: &mut Vec<Scanned>) {
        let s = self.string.as_mut().expect("in a string");
        let decoded = match s.escape {
            Escape::None => match c {
                '\\' => {
                    s.escape = Escape::Backslash;
                    None
                }
                '"' => {
                    self.end_string(out);
                    return;
                }
                c => Some(c),
            },
            Escape::Backslash => {
                s.escape = Escape::None;
                match c {
                    'n' => Some('\n'),
                    't' => Some('\t'),
                    'r' => Some('\r'),
                    'b' => Some('\u{8}'),
                    'f' => Some('\u{c}'),
                    'u' => {
                        s.escape = Escape::Hex(0);
                        s.hex = 0;
                        None
                    }
                    other => Some(other),
                }
            }
            Escape::Hex(n) => {
                s.hex = s.hex * 16 + c.to_digit(16).unwrap_or(0);
                if n < 3 {
                    s.escape = Escape::Hex(n + 1);
                    None
                } else {
                    s.escape = Escape::None;
                    let unit = s.hex;
                    match (s.high_surrogate.take(), unit) {
                        (None, 0xD800..=0xDBFF) => {
                            s.high_surrogate = Some(unit);
                            None
                        }
                        (Some(high), 0xDC00..=0xDFFF) => {
                            char::from_u32(0x10000 + ((high - 0xD800) << 10) + (unit - 0xDC00))
                        }
                        (_, unit) => char::from_u32(unit).or(Some('\u{FFFD}')),
                    }
                }
            }
        };
        if let Some(d) = decoded {
            s.decoded.push(d);
            if let Some(index) = s.content_of {
                out.push(Scanned::Text {
                    index,
                    delta: d.to_string(),
                });
            }
        }
    }

    fn end_string(&mut self, out: &mut Vec<Scanned>) {
        let s = self.string.take().expect("in a string");
        let top = self.stack.last_mut().expect("inside the root object");
        if s.is_key {
            top.pending_key = Some(s.decoded);
            top.expecting_key = false;
            return;
        }
        if s.root_title {
            let title = s.decoded.trim();
            if !title.is_empty() && title.chars().count() <= 200 {
                out.push(Scanned::Title(title.to_string()));
            }
        }
    }

    fn open(&mut self, c: char, at: usize) {
        let top = self.stack.last_mut().expect("inside the root object");
        let key = match top.kind {
            Kind::Object => top.pending_key.clone(),
            Kind::Array => None,
        };
        let kind = if c == '{' { Kind::Object } else { Kind::Array };
        self.stack.push(Frame {
            kind,
            key,
            pending_key: None,
            expecting_key: kind == Kind::Object,
        });
        if self.in_chapter_object().is_some() {
            self.chapter_start = Some(at);
        }
    }

    fn close(&mut self, at: usize, out: &mut Vec<Scanned>) {
        let chapter = self.in_chapter_object();
        self.stack.pop();
        if self.stack.is_empty() {
            self.done = true;
            return;
        }
        if let Some(index) = chapter
            && let Some(start) = self.chapter_start.take()
        {
            let object: Result<Value, _> = serde_json::from_str(&self.raw[start..=at]);
            match object
                .map_err(|e| e.to_string())
                .and_then(|v| checked_chapter(&v, index))
            {
                Ok(c) => {
                    self.chapters += 1;
                    out.push(Scanned::Chapter(c));
                }
                Err(problem) => self.problem = Some(problem),
            }
        }
    }
}

/// Joins neighbouring text pieces of the same chapter (one per character as scanned).
fn merge_text(pieces: Vec<Scanned>) -> Vec<Scanned> {
    let mut out: Vec<Scanned> = Vec::with_capacity(pieces.len().min(8));
    for piece in pieces {
        if let (Some(Scanned::Text { index, delta }), Scanned::Text { index: i, delta: d }) =
            (out.last_mut(), &piece)
            && index == i
        {
            delta.push_str(d);
            continue;
        }
        out.push(piece);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_in_cuts(answer: &str, cut: usize) -> (Vec<Scanned>, StoryScanner) {
        let mut scanner = StoryScanner::new();
        let mut out = Vec::new();
        let chars: Vec<char> = answer.chars().collect();
        for part in chars.chunks(cut) {
            out.extend(scanner.push(&part.iter().collect::<String>()));
        }
        (merge_text(out), scanner)
    }

    #[test]
    fn a_story_is_read_piece_by_piece_in_any_cuts() {
        let answer = "```json\n{\"title\": \"별 \\\"바다\\\"\", \"chapters\": [\
            {\"title\": \"하나\", \"content\": \"첫 줄\\n둘째 \\ud83d\\ude00 \\u00e9\"},\
            {\"content\": \"끝 {괄호} [와] \\\\\", \"title\": \"둘\", \"extra\": [1, {\"a\": \"}\"}]}\
            ]}\n```";
        for cut in [1, 2, 3, 7, 1000] {
            let (pieces, scanner) = scan_in_cuts(answer, cut);
            assert!(
                scanner.is_done() && scanner.problem().is_none(),
                "cut {cut}"
            );
            assert_eq!(
                pieces,
                vec![
                    Scanned::Title("별 \"바다\"".into()),
                    Scanned::Text {
                        index: 0,
                        delta: "첫 줄\n둘째 😀 é".into()
                    },
                    Scanned::Chapter(GeneratedChapter {
                        title: "하나".into(),
                        content: "첫 줄\n둘째 😀 é".into()
                    }),
                    Scanned::Text {
                        index: 1,
                        delta: "끝 {괄호} [와] \\".into()
                    },
                    Scanned::Chapter(GeneratedChapter {
                        title: "둘".into(),
                        content: "끝 {괄호} [와] \\".into()
                    }),
                ],
                "cut {cut}"
            );
        }
    }

    #[test]
    fn a_bad_chapter_stops_the_scan_with_its_problem() {
        let (pieces, scanner) = scan_in_cuts(
            r#"{"title": "t", "chapters": [{"title": "a", "content": "b"}, {"title": "", "content": "c"}, {"title": "x", "content": "y"}]}"#,
            5,
        );
        assert_eq!(
            pieces
                .iter()
                .filter(|p| matches!(p, Scanned::Chapter(_)))
                .count(),
            1
        );
        assert!(scanner.problem().unwrap().contains("chapter 2"));
        let (pieces, scanner) = scan_in_cuts("no json here", 3);
        assert!(pieces.is_empty() && !scanner.started());
    }

    #[test]
    fn server_sent_events_in_any_cuts() {
        let body = ": keep-alive\n\ndata: {\"a\":1}\r\n\r\nevent: x\ndata: one\ndata: two\n\ndata: [DONE]\n\n";
        for cut in [1, 4, 1000] {
            let mut sse = SseLines::default();
            let mut events = Vec::new();
            for part in body.as_bytes().chunks(cut) {
                events.extend(sse.push(part));
            }
            assert_eq!(events, vec!["{\"a\":1}", "one\ntwo", "[DONE]"], "cut {cut}");
            assert_eq!(sse.finish(), None);
        }
        let mut sse = SseLines::default();
        assert!(sse.push(b"data: tail").is_empty());
        assert_eq!(sse.finish().as_deref(), Some("tail"));
    }
}
