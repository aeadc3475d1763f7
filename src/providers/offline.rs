//! Offline providers, the default when nothing is configured. They are honest about
//! what they are: a template storyteller that uses the child's name and age, the theme,
//! the characters and what the child said; seeded SVG illustrations; `espeak-ng`
//! narration when the binary is installed (otherwise narration is unavailable).

use std::path::PathBuf;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

use crate::store::types::MessageRole;

use super::korean::{a_ya, eul_reul, eun_neun, euro_ro, i_ga, wa_gwa};
use super::{
    ErrorKind, GeneratedChapter, GeneratedStory, IllustrationRequest, Illustrator, Media, Narrator,
    ProviderError, StoryRequest, StoryWriter,
};

/// A small deterministic generator (SplitMix64), so one story always reads the same.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

/// The template storyteller.
pub(crate) struct TemplateWriter;

const PLACES: &[&str] = &[
    "반짝이는 숲",
    "무지개 언덕",
    "조용한 바닷가",
    "구름 위 마을",
    "별빛 정원",
];
const FRIENDS: &[&str] = &["다정한 다람쥐", "수줍은 아기 곰", "노래하는 파랑새"];
const PROBLEMS: &[&str] = &[
    "길을 잃은 아기 별",
    "멈춰 버린 시계탑",
    "색깔을 잃은 꽃밭",
    "잠이 오지 않는 달님",
];
const GIFTS: &[&str] = &[
    "따뜻한 용기",
    "서로 돕는 마음",
    "포기하지 않는 마음",
    "다정한 말 한마디",
];

/// What the child said, as whole utterances (oldest first), trimmed to a sentence each.
fn child_lines(transcript: &[(MessageRole, String)]) -> Vec<String> {
    transcript
        .iter()
        .filter(|(role, text)| *role == MessageRole::Child && !text.trim().is_empty())
        .map(|(_, text)| {
            let line: String = text.trim().chars().take(60).collect();
            line.trim_end_matches(['.', '!', '?', ' ']).to_string()
        })
        .collect()
}

/// Sights on the way, one per journey chapter (never repeated within a story).
const SIGHTS: &[&str] = &[
    "무지개 다리를 건너자 발밑에서 구름이 몽글몽글 피어올랐어요",
    "노래하는 시냇물을 따라 걷다가 반짝이는 조약돌을 주웠어요",
    "커다란 버섯 아래에서 도토리 빵을 나눠 먹으며 쉬었어요",
    "바람이 불자 민들레 씨앗들이 길을 알려 주듯 한쪽으로 날아갔어요",
    "나무 위의 부엉이 할아버지가 지름길을 알려 주었어요",
];

/// The middle of the trouble, in order: it is found, a first try fails, a clue appears.
const TROUBLES: &[&str] = &[
    "{child_topic} 잠시 생각했어요. \"괜찮아, 우리가 도와줄게!\" 모두 힘을 모아 방법을 찾기 시작했어요.",
    "첫 번째 방법은 잘 되지 않았어요. {friend_subj} 시무룩해졌지만 {child_subj} 씩씩하게 말했어요. \"다시 해 보자!\"",
    "그때 {helper_subj} 작은 실마리를 발견했어요. \"여기 좀 봐! 이걸 이용하면 될 것 같아.\"",
];

/// Who and what one story is about: drawn once from the request and its seed.
struct Cast<'a> {
    name: &'a str,
    theme: &'a str,
    friend: String,
    /// A second character, when the child named two.
    second: Option<String>,
    /// Who finds the clue: the second character, else the friend.
    helper: String,
    place: &'static str,
    problem: &'static str,
    gift: &'static str,
    young: bool,
    age: i32,
    /// What the child said in the conversation.
    said: Vec<String>,
    interest: Option<String>,
    /// Sights in a story-specific order.
    sights: Vec<&'static str>,
}

impl<'a> Cast<'a> {
    fn of(req: &'a StoryRequest) -> Cast<'a> {
        let mut dice = Dice(req.seed);
        let friend = req
            .characters
            .first()
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| dice.pick(FRIENDS).to_string());
        let second = req.characters.get(1).map(|s| s.trim().to_string());
        let place = dice.pick(PLACES);
        let problem = dice.pick(PROBLEMS);
        let gift = dice.pick(GIFTS);
        let mut sights: Vec<&'static str> = SIGHTS.to_vec();
        for i in (1..sights.len()).rev() {
            let j = (dice.next() % (i as u64 + 1)) as usize;
            sights.swap(i, j);
        }
        Cast {
            name: req.child_name.trim(),
            theme: req.theme.trim(),
            helper: second.clone().unwrap_or_else(|| friend.clone()),
            friend,
            second,
            place,
            problem,
            gift,
            young: req.child_age <= 6,
            age: req.child_age,
            said: child_lines(&req.transcript),
            interest: req.interests.first().cloned(),
            sights,
        }
    }

    fn opening(&self, journeys: usize) -> GeneratedChapter {
        let (name, friend, place) = (self.name, &self.friend, self.place);
        let mut opening = format!(
            "옛날 옛적, {place}에 {age}살 {child} 살았어요. \
             어느 맑은 아침, {child_topic} {friend_obj} 만났어요. \
             \"{call}, 우리 함께 {theme_obj} 떠나 볼래?\" {friend_subj} 반짝이는 눈으로 물었어요.",
            age = self.age,
            child = i_ga(name),
            child_topic = eun_neun(name),
            friend_obj = eul_reul(friend),
            call = a_ya(name),
            theme_obj = euro_ro(self.theme),
            friend_subj = i_ga(friend),
        );
        if let (Some(s), 0) = (&self.second, journeys) {
            opening.push_str(&format!(" {}의 단짝 {}도 함께였어요.", friend, s));
        }
        if let Some(line) = self.said.first() {
            opening.push_str(&format!(" {} 신이 나서 말했어요. \"{line}!\"", i_ga(name)));
        }
        if let Some(like) = &self.interest {
            opening.push_str(&format!(
                " 가방 속에는 {} 정말 좋아하는 {} 그림책도 들어 있었어요.",
                i_ga(name),
                like
            ));
        }
        GeneratedChapter {
            title: format!("{}, {}에서 만나다", friend, place),
            content: opening,
        }
    }

    /// Journey chapter `j` (from 0).
    fn journey(&self, j: usize) -> GeneratedChapter {
        let (name, friend) = (self.name, &self.friend);
        let sight = self.sights[j % self.sights.len()];
        let mut body = if j == 0 {
            format!(
                "{} {} 손을 꼭 잡고 길을 나섰어요. {sight}.",
                wa_gwa(name),
                eun_neun(friend)
            )
        } else {
            let who = if self.second.is_some() {
                "셋은"
            } else {
                "둘은"
            };
            format!("{who} 계속 걸었어요. {sight}.")
        };
        if j == 0
            && let Some(s) = &self.second
        {
            body.push_str(&format!(
                " 그때 {} 나타나 말했어요. \"나도 같이 갈래!\" 이제 셋이 되었어요.",
                i_ga(s)
            ));
        }
        if j == 0 && !self.young {
            body.push_str(" 처음 보는 풍경에 가슴이 두근두근 뛰었어요.");
        }
        GeneratedChapter {
            title: format!("{}의 길 ({}번째 걸음)", self.theme, j + 1),
            content: body,
        }
    }

    /// Trouble chapter `k` of `troubles` (from 0).
    fn trouble(&self, k: usize, troubles: usize) -> GeneratedChapter {
        let name = self.name;
        let mut body = if k == 0 {
            format!("한참을 가다 보니 {} 만났어요. ", eul_reul(self.problem))
        } else {
            String::new()
        };
        let template = TROUBLES[k.min(TROUBLES.len() - 1)];
        body.push_str(
            &template
                .replace("{child_topic}", &eun_neun(name))
                .replace("{child_subj}", &i_ga(name))
                .replace("{friend_subj}", &i_ga(&self.friend))
                .replace("{helper_subj}", &i_ga(&self.helper)),
        );
        let last = k + 1 == troubles;
        if last && let Some(line) = self.said.get(1).or(self.said.first()) {
            body.push_str(&format!(
                " 그때 {} 했던 말이 떠올랐어요. \"{line}.\" 그 말이 큰 힘이 되었어요.",
                i_ga(name)
            ));
        }
        if last && !self.young {
            body.push_str(&format!(
                " {} 마음속으로 다짐했어요. 어려울 때일수록 서로를 믿어야 한다고요.",
                eun_neun(name)
            ));
        }
        let heading = match k {
            0 => format!("{}의 비밀", self.problem),
            1 => "다시 한 번 힘을 내요".to_string(),
            _ => format!("{}의 실마리", self.helper),
        };
        GeneratedChapter {
            title: heading,
            content: body,
        }
    }

    fn ending(&self) -> GeneratedChapter {
        GeneratedChapter {
            title: format!("{}의 선물", self.gift),
            content: format!(
                "마침내 {} 다시 웃음을 되찾았어요. {} 활짝 웃으며 말했어요. \
                 \"{}, 네 덕분이야. 너는 {} 가졌구나!\" \
                 그날 밤, {} 포근한 꿈을 꾸었답니다. 끝.",
                i_ga(self.problem),
                i_ga(&self.friend),
                a_ya(self.name),
                eul_reul(self.gift),
                eun_neun(self.name),
            ),
        }
    }
}

impl TemplateWriter {
    /// Opening, journey chapters, trouble chapters, ending.
    fn compose(&self, req: &StoryRequest) -> GeneratedStory {
        let cast = Cast::of(req);
        let title = format!("{} {}의 {}", wa_gwa(cast.name), cast.friend, cast.theme);
        let n = req.chapters.max(1);
        let middle = n.saturating_sub(2);
        let journeys = middle / 2;
        let troubles = middle - journeys;
        let mut chapters = Vec::with_capacity(n);
        chapters.push(cast.opening(journeys));
        chapters.extend((0..journeys).map(|j| cast.journey(j)));
        chapters.extend((0..troubles).map(|k| cast.trouble(k, troubles)));
        if n > 1 {
            chapters.push(cast.ending());
        }
        GeneratedStory { title, chapters }
    }
}

#[async_trait]
impl StoryWriter for TemplateWriter {
    fn name(&self) -> &'static str {
        "offline-template"
    }
    async fn write(&self, request: &StoryRequest) -> Result<GeneratedStory, ProviderError> {
        Ok(self.compose(request))
    }
}

/// Escapes text for SVG/XML content and attributes.
pub(crate) fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

fn hash(s: &str) -> u64 {
    // FNV-1a: stable across runs and platforms (std's hasher is not).
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Seeded pictures: the scene changes per chapter, each character keeps its colour and
/// shape in every chapter (derived from its name alone). Drawn as SVG and served as PNG
/// (rasterised by resvg): mobile image views cannot draw SVG. No font ships with the
/// service, so the PNG shows the picture without the SVG's labels (the chapter title and
/// the names stand beside it in every client).
pub(crate) struct SvgIllustrator;

/// An SVG document as PNG, at its own size.
pub(crate) fn rasterise(svg: &str) -> Result<Vec<u8>, String> {
    use resvg::{tiny_skia, usvg};
    let tree = usvg::Tree::from_str(svg, &usvg::Options::default()).map_err(|e| e.to_string())?;
    let size = tree.size().to_int_size();
    let mut pixmap =
        tiny_skia::Pixmap::new(size.width(), size.height()).ok_or("the picture has no area")?;
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap.encode_png().map_err(|e| e.to_string())
}

impl SvgIllustrator {
    pub(crate) fn draw(&self, req: &IllustrationRequest) -> String {
        let mut dice = Dice(req.seed ^ (req.chapter_number as u64).wrapping_mul(0x9E37));
        let sky_hue = dice.next() % 360;
        let ground_hue = (sky_hue + 90 + dice.next() % 90) % 360;
        let night = dice.next().is_multiple_of(4);
        let (sky, light) = if night {
            (format!("hsl({sky_hue},45%,22%)"), "#fdf6c3")
        } else {
            (format!("hsl({sky_hue},70%,82%)"), "#ffd54f")
        };
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"800\" height=\"600\" viewBox=\"0 0 800 600\">\
             <rect width=\"800\" height=\"600\" fill=\"{sky}\"/>\
             <circle cx=\"{}\" cy=\"{}\" r=\"48\" fill=\"{light}\"/>\
             <path d=\"M0 {} Q 200 {} 400 {} T 800 {} V600 H0 Z\" fill=\"hsl({ground_hue},45%,55%)\"/>",
            100 + dice.next() % 600,
            80 + dice.next() % 60,
            380 + dice.next() % 60,
            320 + dice.next() % 80,
            390 + dice.next() % 40,
            370 + dice.next() % 60,
        );
        for _ in 0..(3 + dice.next() % 4) {
            svg.push_str(&format!(
                "<circle cx=\"{}\" cy=\"{}\" r=\"{}\" fill=\"#ffffff\" opacity=\"0.7\"/>",
                dice.next() % 800,
                30 + dice.next() % 150,
                10 + dice.next() % 25
            ));
        }
        let count = req.characters.len().max(1);
        for (i, name) in req.characters.iter().enumerate() {
            let h = hash(name);
            let hue = h % 360;
            let x = 120 + (i * 560 / count) as u64 + dice.next() % 40;
            let y = 430 + dice.next() % 30;
            let ears = if h & 1 == 0 {
                format!(
                    "<ellipse cx=\"{}\" cy=\"{}\" rx=\"12\" ry=\"34\" fill=\"hsl({hue},60%,60%)\"/>\
                     <ellipse cx=\"{}\" cy=\"{}\" rx=\"12\" ry=\"34\" fill=\"hsl({hue},60%,60%)\"/>",
                    x - 22,
                    y - 80,
                    x + 22,
                    y - 80
                )
            } else {
                format!(
                    "<circle cx=\"{}\" cy=\"{}\" r=\"16\" fill=\"hsl({hue},60%,60%)\"/>\
                     <circle cx=\"{}\" cy=\"{}\" r=\"16\" fill=\"hsl({hue},60%,60%)\"/>",
                    x - 30,
                    y - 62,
                    x + 30,
                    y - 62
                )
            };
            svg.push_str(&format!(
                "<g>{ears}<ellipse cx=\"{x}\" cy=\"{y}\" rx=\"46\" ry=\"54\" fill=\"hsl({hue},60%,60%)\"/>\
                 <circle cx=\"{}\" cy=\"{}\" r=\"6\" fill=\"#222\"/><circle cx=\"{}\" cy=\"{}\" r=\"6\" fill=\"#222\"/>\
                 <path d=\"M{} {} q 12 10 24 0\" stroke=\"#222\" stroke-width=\"3\" fill=\"none\"/>\
                 <text x=\"{x}\" y=\"{}\" font-size=\"18\" text-anchor=\"middle\" fill=\"#222\">{}</text></g>",
                x - 16,
                y - 20,
                x + 16,
                y - 20,
                x - 12,
                y,
                y + 78,
                xml_escape(name)
            ));
        }
        svg.push_str(&format!(
            "<rect x=\"0\" y=\"540\" width=\"800\" height=\"60\" fill=\"#ffffff\" opacity=\"0.85\"/>\
             <text x=\"400\" y=\"578\" font-size=\"26\" text-anchor=\"middle\" fill=\"#333\">{}</text></svg>",
            xml_escape(&req.chapter_title)
        ));
        svg
    }
}

#[async_trait]
impl Illustrator for SvgIllustrator {
    fn name(&self) -> &'static str {
        "offline-png"
    }
    async fn illustrate(&self, request: &IllustrationRequest) -> Result<Media, ProviderError> {
        let svg = self.draw(request);
        // Rasterising is CPU work (tens of milliseconds): off the async threads.
        let png = tokio::task::spawn_blocking(move || rasterise(&svg))
            .await
            .map_err(|e| ProviderError::new(ErrorKind::Unavailable, e.to_string()))?
            .map_err(|e| ProviderError::new(ErrorKind::Unavailable, e))?;
        Ok(Media {
            bytes: png,
            content_type: "image/png".into(),
            extension: "png",
        })
    }
}

/// Narration with the `espeak-ng` binary, when it is installed.
#[derive(Clone)]
pub(crate) struct EspeakNarrator {
    binary: Option<PathBuf>,
}

impl EspeakNarrator {
    /// Looks for `espeak-ng` on `PATH` once.
    pub(crate) fn detect() -> EspeakNarrator {
        let binary = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("espeak-ng"))
                .find(|p| p.is_file())
        });
        EspeakNarrator { binary }
    }

    /// Whether `espeak-ng` was found (without it this narrator answers `Unavailable`).
    pub(crate) fn is_installed(&self) -> bool {
        self.binary.is_some()
    }
}

#[async_trait]
impl Narrator for EspeakNarrator {
    fn name(&self) -> &'static str {
        "offline-espeak-ng"
    }

    async fn narrate(&self, text: &str, _voice_id: Option<&str>) -> Result<Media, ProviderError> {
        let Some(binary) = &self.binary else {
            return Err(ProviderError::new(
                ErrorKind::Unavailable,
                "espeak-ng is not installed; offline narration is off",
            ));
        };
        // The text goes through stdin, never the command line.
        let mut child = tokio::process::Command::new(binary)
            .args(["-v", "ko", "-s", "140", "--stdin", "--stdout"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ProviderError::new(ErrorKind::Unavailable, format!("espeak-ng: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(speakable(text).as_bytes())
                .await
                .map_err(|e| {
                    ProviderError::new(ErrorKind::BadResponse, format!("espeak-ng: {e}"))
                })?;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| ProviderError::new(ErrorKind::BadResponse, format!("espeak-ng: {e}")))?;
        if !out.status.success() || out.stdout.len() < 44 || &out.stdout[..4] != b"RIFF" {
            return Err(ProviderError::new(
                ErrorKind::BadResponse,
                format!("espeak-ng failed ({})", out.status),
            ));
        }
        let mut bytes = out.stdout;
        settle_wav_sizes(&mut bytes);
        Ok(Media {
            bytes,
            content_type: "audio/wav".into(),
            extension: "wav",
        })
    }
}

/// espeak-ng writes its WAV to a pipe before it knows the length, so its RIFF and `data`
/// sizes claim about 2 GiB (players and `soxi` then read the duration wrong); this writes
/// the real ones.
fn settle_wav_sizes(wav: &mut [u8]) {
    if wav.len() < 12 || &wav[..4] != b"RIFF" || &wav[8..12] != b"WAVE" {
        return;
    }
    let put = |wav: &mut [u8], at: usize, size: usize| {
        let size = u32::try_from(size).unwrap_or(u32::MAX);
        wav[at..at + 4].copy_from_slice(&size.to_le_bytes());
    };
    put(wav, 4, wav.len() - 8);
    let mut at = 12;
    while at + 8 <= wav.len() {
        let size = u32::from_le_bytes(wav[at + 4..at + 8].try_into().unwrap()) as usize;
        if &wav[at..at + 4] == b"data" {
            put(wav, at + 4, wav.len() - at - 8);
            return;
        }
        at += 8 + size + (size & 1);
    }
}

/// Korean text as a native speaker reads it aloud: a number before a counter that takes
/// the native numerals reads as them ("5살" → "다섯 살", "20마리" → "스무 마리"), which
/// espeak-ng would read as Sino-Korean ("오 살"). Other numbers are left to espeak-ng.
pub(crate) fn speakable(text: &str) -> String {
    const COUNTERS: [&str; 16] = [
        "살", "명", "마리", "개", "번째", "번", "시간", "시", "권", "그루", "송이", "채", "잔",
        "켤레", "벌", "대",
    ];
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(start) = rest.find(|c: char| c.is_ascii_digit()) {
        out.push_str(&rest[..start]);
        let digits_end = rest[start..]
            .find(|c: char| !c.is_ascii_digit())
            .map_or(rest.len(), |e| start + e);
        let digits = &rest[start..digits_end];
        let after = rest[digits_end..].trim_start_matches(' ');
        let counter = COUNTERS.iter().find(|c| after.starts_with(**c));
        // A digit glued to a letter or digit before it (e.g. "A5") is not a count.
        let glued = out
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '.');
        match (
            counter,
            digits.parse::<u32>().ok().and_then(native_number),
            glued,
        ) {
            (Some(counter), Some(native), false) => {
                out.push_str(&native);
                out.push(' ');
                out.push_str(counter);
                rest = &after[counter.len()..];
            }
            _ => {
                out.push_str(digits);
                rest = &rest[digits_end..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// 1–99 in native Korean numerals, in the form used before a counter ("한", "스무").
fn native_number(n: u32) -> Option<String> {
    const ONES: [&str; 10] = [
        "", "한", "두", "세", "네", "다섯", "여섯", "일곱", "여덟", "아홉",
    ];
    const TENS: [&str; 10] = [
        "", "열", "스물", "서른", "마흔", "쉰", "예순", "일흔", "여든", "아흔",
    ];
    if !(1..=99).contains(&n) {
        return None;
    }
    let (tens, ones) = ((n / 10) as usize, (n % 10) as usize);
    Some(match (tens, ones) {
        (2, 0) => "스무".to_string(),
        _ => format!("{}{}", TENS[tens], ONES[ones]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(chapters: usize) -> StoryRequest {
        StoryRequest {
            seed: 7,
            theme: "모험".into(),
            characters: vec!["용감한 토끼".into(), "지혜로운 거북이".into()],
            child_name: "민준".into(),
            child_age: 7,
            chapters,
            interests: vec!["공룡".into()],
            transcript: vec![(MessageRole::Child, "공주님이 나오는 이야기 해줘".into())],
        }
    }

    #[test]
    fn the_template_uses_everything_it_is_given() {
        for n in [3, 5, 7] {
            let story = TemplateWriter.compose(&request(n));
            assert_eq!(story.chapters.len(), n);
            assert_eq!(story.title, "민준과 용감한 토끼의 모험");
            let all: String = story.chapters.iter().map(|c| c.content.clone()).collect();
            for needle in [
                "민준이",
                "용감한 토끼",
                "지혜로운 거북이",
                "7살",
                "공룡",
                "공주님이 나오는 이야기 해줘",
            ] {
                assert!(all.contains(needle), "{needle} missing in {all}");
            }
            let titles: std::collections::HashSet<_> =
                story.chapters.iter().map(|c| &c.title).collect();
            assert_eq!(titles.len(), n, "chapter titles repeat");
            let bodies: std::collections::HashSet<_> =
                story.chapters.iter().map(|c| &c.content).collect();
            assert_eq!(bodies.len(), n, "chapter texts repeat");
        }
    }

    #[test]
    fn numbers_before_counters_read_as_native_numerals() {
        for (written, spoken) in [
            ("민준이는 5살이에요.", "민준이는 다섯 살이에요."),
            ("20살", "스무 살"),
            ("물고기 23마리와 1명", "물고기 스물세 마리와 한 명"),
            ("11번째 생일, 3 시간", "열한 번째 생일, 세 시간"),
            ("4 개", "네 개"),
            // Not a native count: left as written (espeak-ng reads them in Sino-Korean).
            ("1장. 2026년 100명 A5살", "1장. 2026년 100명 A5살"),
            ("숫자 없이", "숫자 없이"),
        ] {
            assert_eq!(speakable(written), spoken, "{written}");
        }
    }

    #[test]
    fn wav_sizes_are_the_real_ones() {
        // A header as espeak-ng writes it to a pipe: RIFF and data sizes of ~2 GiB.
        let mut wav = Vec::new();
        wav.extend_from_slice(b"RIFF");
        wav.extend_from_slice(&0x7fff_ffffu32.to_le_bytes());
        wav.extend_from_slice(b"WAVEfmt ");
        wav.extend_from_slice(&16u32.to_le_bytes());
        wav.extend_from_slice(&[1, 0, 1, 0, 0x22, 0x56, 0, 0, 0x44, 0xac, 0, 0, 2, 0, 16, 0]);
        wav.extend_from_slice(b"data");
        wav.extend_from_slice(&0x7fff_ffdbu32.to_le_bytes());
        wav.extend_from_slice(&[0u8; 100]);
        settle_wav_sizes(&mut wav);
        let size = |at: usize| u32::from_le_bytes(wav[at..at + 4].try_into().unwrap());
        assert_eq!(size(4) as usize, wav.len() - 8);
        assert_eq!(size(40), 100);
        // Not a WAV: untouched.
        let mut other = b"RIFX1234".to_vec();
        settle_wav_sizes(&mut other);
        assert_eq!(other, b"RIFX1234");
    }

    #[test]
    fn svgs_escape_text_and_differ_per_chapter() {
        let base = IllustrationRequest {
            seed: 1,
            chapter_number: 1,
            chapter_title: "<script>alert(1)</script> & \"quotes\"".into(),
            scene: String::new(),
            character_sheet: String::new(),
            characters: vec!["토끼 <b>".into()],
        };
        let one = SvgIllustrator.draw(&base);
        assert!(!one.contains("<script>"));
        assert!(one.contains("&lt;script&gt;"));
        assert!(one.contains("토끼 &lt;b&gt;"));
        let two = SvgIllustrator.draw(&IllustrationRequest {
            chapter_number: 2,
            ..base.clone()
        });
        assert_ne!(one, two);
        // The character keeps its colour across chapters.
        let colour = format!("hsl({},60%,60%)", hash("토끼 <b>") % 360);
        assert!(one.contains(&colour) && two.contains(&colour));
    }

    #[tokio::test]
    async fn pictures_are_png_seeded_and_keep_their_characters() {
        use resvg::tiny_skia::Pixmap;
        let request = |chapter_number: usize, characters: &[&str]| IllustrationRequest {
            seed: 7,
            chapter_number,
            chapter_title: "용감한 토끼".into(),
            scene: String::new(),
            character_sheet: String::new(),
            characters: characters.iter().map(|c| c.to_string()).collect(),
        };
        let draw = |r: IllustrationRequest| async move {
            let media = SvgIllustrator.illustrate(&r).await.unwrap();
            assert_eq!(
                (media.content_type.as_str(), media.extension),
                ("image/png", "png")
            );
            assert_eq!(&media.bytes[..8], b"\x89PNG\r\n\x1a\n");
            Pixmap::decode_png(&media.bytes).unwrap()
        };
        let one = draw(request(1, &["토끼"])).await;
        assert_eq!((one.width(), one.height()), (800, 600));
        // The same request draws the same picture; another chapter another scene.
        assert_eq!(one.data(), draw(request(1, &["토끼"])).await.data());
        let two = draw(request(2, &["토끼"])).await;
        assert_ne!(one.data(), two.data());
        // The character's body is drawn in its own colour, in every chapter: some pixel
        // of each picture has exactly the colour of the SVG's `hsl(h,60%,60%)`.
        let hue = (hash("토끼") % 360) as f32;
        let (r, g, b) = hsl_rgb(hue, 0.6, 0.6);
        let has_colour = |p: &Pixmap| {
            p.pixels().iter().any(|px| {
                let near = |a: u8, b: u8| a.abs_diff(b) <= 2;
                near(px.red(), r) && near(px.green(), g) && near(px.blue(), b)
            })
        };
        assert!(has_colour(&one) && has_colour(&two));
        // Without characters there is no such body.
        assert!(!has_colour(&draw(request(1, &[])).await));
    }

    /// CSS `hsl()` to 8-bit RGB.
    fn hsl_rgb(h: f32, s: f32, l: f32) -> (u8, u8, u8) {
        let c = (1.0 - (2.0 * l - 1.0).abs()) * s;
        let x = c * (1.0 - ((h / 60.0) % 2.0 - 1.0).abs());
        let m = l - c / 2.0;
        let (r, g, b) = match (h / 60.0) as u32 {
            0 => (c, x, 0.0),
            1 => (x, c, 0.0),
            2 => (0.0, c, x),
            3 => (0.0, x, c),
            4 => (x, 0.0, c),
            _ => (c, 0.0, x),
        };
        let byte = |v: f32| ((v + m) * 255.0).round() as u8;
        (byte(r), byte(g), byte(b))
    }
}
