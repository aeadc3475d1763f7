//! Offline providers, the default when nothing is configured. They are honest about
//! what they are: a storyteller that writes the conversation's plan (`plan.rs`) completed
//! from the theme and the characters; each chapter's scene drawn as a picture
//! (`pictures.rs`); `espeak-ng` narration when the binary is installed (otherwise
//! narration is unavailable).

use std::path::PathBuf;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;

use super::korean::{a_ya, eul_reul, eun_neun, euro_ro, i_ga, wa_gwa};
use super::plan::{Plan, Setting, setting};
use super::{
    ErrorKind, GeneratedChapter, GeneratedStory, IllustrationRequest, Illustrator, Media, Narrator,
    ProviderError, StoryRequest, StorySink, StoryWriter,
};

/// A small deterministic generator (SplitMix64), so one story always reads the same.
pub(super) struct Dice(pub(super) u64);

impl Dice {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

/// The offline storyteller: the story the conversation planned ([`Plan`]: hero, place,
/// problem, helper, resolution), in that order; what the conversation left open comes
/// from the theme (its setting: sea, space, forest…) and the characters asked for.
#[derive(Default)]
pub(crate) struct TemplateWriter {
    /// How long one chapter takes to type (`JJONGAL_OFFLINE_TYPING_MS`; zero: at once).
    pub(crate) typing: std::time::Duration,
}

/// `text` cut at spaces into at most `most` pieces of about equal length, which join
/// back into `text`.
fn typed_pieces(text: &str, most: usize) -> Vec<String> {
    let size = text.chars().count().div_ceil(most.max(1)).max(1);
    let mut pieces = Vec::new();
    let mut piece = String::new();
    let mut n = 0;
    for c in text.chars() {
        piece.push(c);
        n += 1;
        if n >= size && c == ' ' {
            pieces.push(std::mem::take(&mut piece));
            n = 0;
        }
    }
    if !piece.is_empty() {
        pieces.push(piece);
    }
    pieces
}

/// Settings to draw from when neither the conversation nor the theme names a place.
const SETTINGS: &[Setting] = &[
    Setting::Meadow,
    Setting::Forest,
    Setting::Sky,
    Setting::Sea,
    Setting::Village,
];
/// Friends when no character was asked for.
const FRIENDS: &[&str] = &["다정한 다람쥐", "수줍은 아기 곰", "노래하는 파랑새"];

/// What a setting looks like and what happens there, for the chapters the conversation
/// did not tell.
struct Scenery {
    /// A place of this setting, when only the theme names it.
    place: &'static str,
    /// Two sentences of scenery.
    looks: [&'static str; 2],
    /// What the hero does there every day ("…했어요" form, without the subject).
    daily: &'static str,
    /// A sight on the way.
    sight: &'static str,
    /// A trouble of this setting (a whole sentence) and how it is mended.
    problem: &'static str,
    mend: &'static str,
    /// Who helps, when nobody was named.
    helper: &'static str,
}

fn scenery(setting: Setting) -> Scenery {
    match setting {
        Setting::Sea => Scenery {
            place: "푸른 바닷속 마을",
            looks: [
                "알록달록한 산호 사이로 작은 물고기들이 헤엄쳤어요.",
                "물결 위로 햇살이 반짝반짝 내려왔어요.",
            ],
            daily: "해초 숲 사이를 헤엄치며 놀았어요",
            sight: "반짝이는 진주조개들이 길을 따라 입을 열고 인사했어요",
            problem: "바닷속을 밝히던 진주 등대의 불이 꺼져 버렸어요.",
            mend: "모두 함께 반딧불 오징어들을 불러 등대에 다시 불을 밝혔어요",
            helper: "친절한 고래",
        },
        Setting::Space => Scenery {
            place: "반짝이는 별나라",
            looks: [
                "까만 하늘에는 별들이 보석처럼 반짝였어요.",
                "멀리 고리가 있는 행성이 천천히 돌고 있었어요.",
            ],
            daily: "작은 로켓을 타고 별과 별 사이를 날아다녔어요",
            sight: "꼬리가 긴 혜성이 반짝이는 먼지를 뿌리며 지나갔어요",
            problem: "로켓의 별빛 연료가 똑 떨어져 버렸어요.",
            mend: "모두 함께 별가루를 모아 로켓에 별빛 연료를 가득 채웠어요",
            helper: "친절한 별똥별",
        },
        Setting::Forest => Scenery {
            place: "깊은 숲속 마을",
            looks: [
                "키 큰 나무들 사이로 햇살이 조각조각 떨어졌어요.",
                "어디선가 시냇물이 졸졸 노래했어요.",
            ],
            daily: "도토리를 줍고 친구들과 숨바꼭질을 했어요",
            sight: "커다란 버섯들이 우산처럼 줄지어 서 있었어요",
            problem: "숲속 샘물이 말라 버렸어요.",
            mend: "모두 함께 바위를 치워 샘물이 다시 흐르게 했어요",
            helper: "지혜로운 부엉이",
        },
        Setting::Sky => Scenery {
            place: "구름 위 마을",
            looks: [
                "솜사탕 같은 구름이 몽글몽글 떠 있었어요.",
                "바람이 불 때마다 구름 집들이 살랑살랑 흔들렸어요.",
            ],
            daily: "구름 미끄럼틀을 타고 신나게 놀았어요",
            sight: "일곱 빛깔 무지개 다리가 길게 놓여 있었어요",
            problem: "하늘의 무지개가 사라져 버렸어요.",
            mend: "모두 함께 햇살과 빗방울을 모아 무지개를 다시 걸었어요",
            helper: "노래하는 바람",
        },
        Setting::Castle => Scenery {
            place: "언덕 위의 하얀 성",
            looks: [
                "뾰족한 탑 위에서 깃발이 펄럭였어요.",
                "성 안 정원에는 장미꽃이 가득 피어 있었어요.",
            ],
            daily: "성 안 정원을 돌보며 노래를 불렀어요",
            sight: "반짝이는 계단이 높은 탑까지 이어져 있었어요",
            problem: "성의 커다란 종이 울리지 않게 되었어요.",
            mend: "모두 함께 종을 닦고 줄을 다시 매어 종이 울리게 했어요",
            helper: "마음씨 고운 요정",
        },
        Setting::Mountain => Scenery {
            place: "높은 산 아래 마을",
            looks: [
                "뾰족한 산봉우리 위로 흰 구름이 걸려 있었어요.",
                "바위 틈마다 작은 꽃들이 피어 있었어요.",
            ],
            daily: "산길을 오르며 예쁜 돌멩이를 모았어요",
            sight: "바위 사이로 시원한 폭포가 쏟아졌어요",
            problem: "산으로 가는 다리가 무너져 버렸어요.",
            mend: "모두 함께 통나무를 날라 튼튼한 다리를 새로 놓았어요",
            helper: "힘센 산양",
        },
        Setting::Snow => Scenery {
            place: "하얀 눈의 나라",
            looks: [
                "온 세상이 하얀 눈으로 덮여 있었어요.",
                "얼음 위로 햇빛이 반짝반짝 빛났어요.",
            ],
            daily: "눈썰매를 타고 눈사람을 만들었어요",
            sight: "하늘에 초록빛 오로라가 커튼처럼 흔들렸어요",
            problem: "얼음 마을의 난로가 모두 꺼져 버렸어요.",
            mend: "모두 함께 햇살을 모아 난로에 다시 불을 붙였어요",
            helper: "포근한 북극곰",
        },
        Setting::Desert => Scenery {
            place: "모래 언덕 마을",
            looks: [
                "금빛 모래 언덕이 끝없이 이어져 있었어요.",
                "선인장에 빨간 꽃이 피어 있었어요.",
            ],
            daily: "모래 위에 그림을 그리며 놀았어요",
            sight: "야자나무 아래 맑은 오아시스가 반짝였어요",
            problem: "오아시스의 물이 줄어들고 있었어요.",
            mend: "모두 함께 구름을 불러 시원한 비를 내리게 했어요",
            helper: "지혜로운 낙타",
        },
        Setting::Meadow => Scenery {
            place: "꽃이 가득한 들판",
            looks: [
                "들판에는 노랑, 분홍 꽃들이 가득 피어 있었어요.",
                "나비들이 꽃 사이를 팔랑팔랑 날아다녔어요.",
            ],
            daily: "꽃향기를 맡으며 들판을 뛰어다녔어요",
            sight: "민들레 씨앗들이 길을 알려 주듯 한쪽으로 날아갔어요",
            problem: "들판의 꽃들이 색깔을 잃어버렸어요.",
            mend: "모두 함께 무지개 물감을 뿌려 꽃들에게 색깔을 돌려주었어요",
            helper: "노래하는 파랑새",
        },
        Setting::Village => Scenery {
            place: "작은 마을",
            looks: [
                "빨간 지붕 집들이 옹기종기 모여 있었어요.",
                "골목마다 맛있는 빵 냄새가 솔솔 풍겼어요.",
            ],
            daily: "친구들과 골목에서 술래잡기를 했어요",
            sight: "광장의 분수에서 물줄기가 높이 솟아올랐어요",
            problem: "마을의 커다란 시계탑이 멈춰 버렸어요.",
            mend: "모두 함께 톱니바퀴를 닦아 시계탑이 다시 움직이게 했어요",
            helper: "손재주 좋은 할아버지",
        },
    }
}

/// One story's outline: the plan, completed from the theme, the characters and the seed.
struct Outline<'a> {
    child: &'a str,
    age: i32,
    young: bool,
    theme: &'a str,
    /// Told by the child in the conversation (not only asked for by a guardian).
    told: bool,
    hero: String,
    place: String,
    scenery: Scenery,
    /// The characters asked for, other than the hero.
    friends: Vec<String>,
    /// The trouble, a whole sentence.
    problem: String,
    lost: Option<String>,
    helper: String,
    /// How it is solved, a whole sentence.
    resolution: String,
    interest: Option<&'a str>,
}

impl<'a> Outline<'a> {
    fn of(req: &'a StoryRequest) -> Outline<'a> {
        let plan = Plan::of(&req.transcript);
        let mut dice = Dice(req.seed);
        let child = req.child_name.trim();
        let theme = req.theme.trim();
        let asked: Vec<String> = req
            .characters
            .iter()
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect();
        let hero = match &plan.hero {
            Some(h) => h.name.clone(),
            None => asked.first().cloned().unwrap_or_else(|| child.to_string()),
        };
        let friends: Vec<String> = asked.into_iter().filter(|c| *c != hero).collect();
        let setting = plan
            .place
            .as_deref()
            .and_then(setting)
            .or_else(|| setting(theme))
            .or_else(|| req.interests.iter().find_map(|i| setting(i)));
        let drawn = SETTINGS[dice.below(SETTINGS.len() as u64) as usize];
        let scenery = scenery(setting.unwrap_or(drawn));
        let place = match &plan.place {
            Some(place) => place.clone(),
            None => scenery.place.to_string(),
        };
        let problem = match &plan.problem {
            Some(p) => format!("{} {p}.", eun_neun(&hero)),
            None => scenery.problem.to_string(),
        };
        let helper = match (&plan.helper, friends.last()) {
            (Some(h), _) => h.name.clone(),
            (None, Some(f)) => f.clone(),
            // The setting's own helper where the story has a setting (space: a shooting star).
            (None, None) if plan.hero.is_some() || setting.is_some() => scenery.helper.to_string(),
            (None, None) => dice.pick(FRIENDS).to_string(),
        };
        let resolution = match &plan.resolution {
            // Said without a subject ("별똥별을 타고 집에 갔어"): the hero did it.
            Some(r) if plan.helper.is_none() && !starts_with_subject(r) => {
                format!("{} {r}.", eun_neun(&hero))
            }
            Some(r) => format!("{r}."),
            None => format!(
                "{} {} 힘을 모았어요. {}.",
                wa_gwa(&hero),
                eun_neun(&helper),
                scenery.mend
            ),
        };
        Outline {
            child,
            age: req.child_age,
            young: req.child_age <= 6,
            theme,
            told: plan.hero.is_some() || plan.problem.is_some(),
            hero,
            place,
            scenery,
            friends,
            problem,
            lost: plan.lost.clone(),
            helper,
            resolution,
            interest: req.interests.first().map(String::as_str),
        }
    }

    /// The hero, called by the last word of its name ("뚜뚜야", "토끼야").
    fn call(&self) -> String {
        a_ya(self.hero.rsplit(' ').next().unwrap_or(&self.hero))
    }

    fn opening(&self) -> GeneratedChapter {
        let (hero, place) = (&self.hero, &self.place);
        let liking = self
            .interest
            .map(|i| format!("{} 좋아하는 ", eul_reul(i)))
            .unwrap_or_default();
        let mut text = if self.told {
            format!(
                "{liking}{}살 {} 들려준 이야기예요. ",
                self.age,
                i_ga(self.child)
            )
        } else {
            format!(
                "{liking}{}살 {} 위한 {} 이야기예요. ",
                self.age,
                eul_reul(self.child),
                self.theme
            )
        };
        text.push_str(&format!(
            "옛날 옛적, {} {}에 살았어요. {}",
            eun_neun(hero),
            place,
            self.scenery.looks[0]
        ));
        if !self.friends.is_empty() {
            text.push_str(&format!(
                " {}의 곁에는 늘 {} 있었어요.",
                hero,
                i_ga(&self.friends.join(", "))
            ));
        }
        if !self.young {
            text.push_str(&format!(" {}", self.scenery.looks[1]));
        }
        GeneratedChapter {
            title: format!("{}에 사는 {}", place, hero),
            content: text,
        }
    }

    fn daily_life(&self) -> GeneratedChapter {
        GeneratedChapter {
            title: format!("{}의 하루", self.place),
            content: format!(
                "{} 날마다 {}. {} {}의 하루는 언제나 즐거웠어요.",
                eun_neun(&self.hero),
                self.scenery.daily,
                self.scenery.looks[1],
                self.hero
            ),
        }
    }

    fn journey(&self) -> GeneratedChapter {
        let with = match self.friends.first() {
            Some(f) => format!("{} 함께 ", wa_gwa(f)),
            None => String::new(),
        };
        GeneratedChapter {
            title: format!("{} 떠나요", euro_ro(&format!("{} 밖", self.place))),
            content: format!(
                "어느 날 {} {with}조금 먼 곳까지 나가 보았어요. {}. 처음 보는 풍경에 가슴이 두근두근 뛰었어요.",
                eun_neun(&self.hero),
                self.scenery.sight
            ),
        }
    }

    fn trouble(&self) -> GeneratedChapter {
        let mut text = format!("그런데 어느 날, 큰일이 생겼어요. {}", self.problem);
        match &self.lost {
            Some(lost) => text.push_str(&format!(
                " {} {} 여기저기를 찾아다녔지만 {} 보이지 않았어요.",
                eun_neun(&self.hero),
                self.place,
                eun_neun(lost)
            )),
            None => text.push_str(&format!(
                " {} 너무 놀라서 어쩔 줄 몰랐어요.",
                eun_neun(&self.hero)
            )),
        }
        GeneratedChapter {
            title: "큰일이 났어요".to_string(),
            content: text,
        }
    }

    fn first_try(&self) -> GeneratedChapter {
        GeneratedChapter {
            title: "다시 한 번 힘을 내요".to_string(),
            content: format!(
                "{} 혼자서 해결해 보려고 애썼어요. 하지만 잘 되지 않았어요. \"어떡하지?\" {} 작은 목소리로 말했어요. 그래도 {} 포기하지 않았어요.",
                eun_neun(&self.hero),
                i_ga(&self.hero),
                eun_neun(&self.hero)
            ),
        }
    }

    fn help(&self) -> GeneratedChapter {
        GeneratedChapter {
            title: format!("{} 도와줘요", i_ga(&self.helper)),
            content: format!(
                "그때 {} 다가왔어요. \"{}, 무슨 일이니? 내가 도와줄게.\" {}",
                i_ga(&self.helper),
                self.call(),
                self.resolution
            ),
        }
    }

    fn ending(&self) -> GeneratedChapter {
        let mut text = String::new();
        if let Some(lost) = &self.lost {
            text.push_str(&format!(
                "{} 마침내 {} 다시 만났어요. ",
                eun_neun(&self.hero),
                wa_gwa(lost)
            ));
        }
        text.push_str(&format!(
            "{} {}에게 \"고마워요!\" 하고 인사했어요. 그날 밤 {}에는 행복한 웃음소리가 가득했답니다. 끝.",
            eun_neun(&self.hero),
            self.helper,
            self.place
        ));
        GeneratedChapter {
            title: "다시 찾은 웃음".to_string(),
            content: text,
        }
    }
}

/// Whether a sentence opens with its subject (a word marked 이/가/은/는).
fn starts_with_subject(sentence: &str) -> bool {
    sentence.split(' ').next().is_some_and(|w| {
        w.chars().count() > 1 && ["이", "가", "은", "는"].iter().any(|p| w.ends_with(p))
    })
}

impl TemplateWriter {
    /// The plan's order: where the hero lives, (its days, a journey,) the trouble, (a
    /// first try,) the help, the ending — 3, 5 or 7 chapters.
    fn compose(&self, req: &StoryRequest) -> GeneratedStory {
        let outline = Outline::of(req);
        let title = if outline.helper != outline.hero {
            format!("{} {}", wa_gwa(&outline.hero), outline.helper)
        } else {
            format!("{}의 {}", outline.hero, outline.theme)
        };
        let chapters = match req.chapters {
            0..=1 => {
                let mut one = outline.opening();
                one.content = format!(
                    "{} {} {}",
                    one.content,
                    outline.trouble().content,
                    outline.help().content
                );
                vec![one]
            }
            2..=3 => {
                let mut last = outline.help();
                last.content = format!("{} {}", last.content, outline.ending().content);
                vec![outline.opening(), outline.trouble(), last]
            }
            4..=5 => vec![
                outline.opening(),
                outline.daily_life(),
                outline.trouble(),
                outline.help(),
                outline.ending(),
            ],
            _ => vec![
                outline.opening(),
                outline.daily_life(),
                outline.journey(),
                outline.trouble(),
                outline.first_try(),
                outline.help(),
                outline.ending(),
            ],
        };
        let mut chapters = chapters;
        // Longer requests than seven chapters repeat the journey before the trouble.
        while chapters.len() < req.chapters {
            chapters.insert(3, outline.journey());
        }
        GeneratedStory { title, chapters }
    }
}

#[async_trait]
impl StoryWriter for TemplateWriter {
    fn name(&self) -> &'static str {
        "offline-template"
    }
    /// Writes the story at once and types each chapter into the sink over `typing`
    /// (in ten pieces at most, at word boundaries), so the story appears as it is written
    /// here too.
    async fn write(&self, request: &StoryRequest, sink: &StorySink) -> Result<(), ProviderError> {
        // A chapter written again comes from the same plan of the whole story, told
        // another way (the request's seed differs).
        let whole = StoryRequest {
            chapters: request
                .rewrite
                .as_ref()
                .map_or(request.chapters, |r| r.total),
            ..request.clone()
        };
        let story = self.compose(&whole);
        sink.put_restart();
        sink.put_title(story.title);
        let wanted = request.chapters.saturating_sub(sink.count());
        for chapter in story.chapters.into_iter().skip(sink.count()).take(wanted) {
            let pieces = typed_pieces(&chapter.content, 10);
            let pause = self.typing / pieces.len().max(1) as u32;
            for piece in pieces {
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
                sink.put_text(piece);
            }
            sink.put_chapter(chapter);
        }
        Ok(())
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

/// The offline illustrator: each chapter's scene ([`super::pictures`]) drawn as SVG and
/// served as PNG (rasterised by resvg, the caption in the font that ships with the
/// service): mobile image views cannot draw SVG.
pub(crate) struct SvgIllustrator;

/// The fonts the pictures may use: only the caption font compiled into the binary (no
/// system font is read, so a picture is the same on every machine).
fn fonts() -> std::sync::Arc<resvg::usvg::fontdb::Database> {
    static FONTS: std::sync::OnceLock<std::sync::Arc<resvg::usvg::fontdb::Database>> =
        std::sync::OnceLock::new();
    FONTS
        .get_or_init(|| {
            let mut db = resvg::usvg::fontdb::Database::new();
            db.load_font_data(super::pictures::CAPTION_FONT.to_vec());
            std::sync::Arc::new(db)
        })
        .clone()
}

/// An SVG document as PNG, at its own size.
pub(crate) fn rasterise(svg: &str) -> Result<Vec<u8>, String> {
    use resvg::{tiny_skia, usvg};
    let options = usvg::Options {
        font_family: super::pictures::CAPTION_FAMILY.to_string(),
        fontdb: fonts(),
        ..usvg::Options::default()
    };
    let tree = usvg::Tree::from_str(svg, &options).map_err(|e| e.to_string())?;
    let size = tree.size().to_int_size();
    let mut pixmap =
        tiny_skia::Pixmap::new(size.width(), size.height()).ok_or("the picture has no area")?;
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap.encode_png().map_err(|e| e.to_string())
}

impl SvgIllustrator {
    pub(crate) fn draw(&self, req: &IllustrationRequest) -> String {
        super::pictures::draw(req)
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
            made_by: self.name(),
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
            made_by: self.name(),
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
    use crate::vocabulary::MessageRole;

    fn request(chapters: usize) -> StoryRequest {
        StoryRequest {
            seed: 7,
            theme: "우주 여행".into(),
            characters: vec!["용감한 토끼".into(), "지혜로운 거북이".into()],
            child_name: "민준".into(),
            child_age: 7,
            chapters,
            interests: vec!["공룡".into()],
            transcript: Vec::new(),
            rewrite: None,
        }
    }

    /// A story asked for without a conversation: the theme's setting shapes it (space:
    /// stars, a rocket), the characters and the child are in it, no chapter repeats.
    #[test]
    fn the_theme_and_characters_shape_the_story() {
        for n in [3, 5, 7] {
            let story = TemplateWriter::default().compose(&request(n));
            assert_eq!(story.chapters.len(), n);
            assert_eq!(story.title, "용감한 토끼와 지혜로운 거북이");
            let all: String = story.chapters.iter().map(|c| c.content.clone()).collect();
            for needle in [
                "민준",
                "7살",
                "공룡",
                "용감한 토끼",
                "지혜로운 거북이",
                "별",
                "로켓",
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
        let sea = TemplateWriter::default().compose(&StoryRequest {
            theme: "바다 모험".into(),
            ..request(5)
        });
        let all: String = sea.chapters.iter().map(|c| c.content.clone()).collect();
        assert!(all.contains("바닷속") && !all.contains("로켓"), "{all}");
    }

    /// The conversation of issue 31 becomes its story: the child's hero, place, problem
    /// and helper, in that order, and nothing random in their place.
    #[test]
    fn the_conversation_is_the_story() {
        let transcript: Vec<(MessageRole, String)> = [
            "아기 공룡 뚜뚜",
            "바닷속 산호 마을에 살아",
            "엄마를 잃어버렸어",
            "고래 아저씨가 도와줘",
        ]
        .iter()
        .flat_map(|line| {
            [
                (MessageRole::Assistant, "…".to_string()),
                (MessageRole::Child, line.to_string()),
            ]
        })
        .collect();
        for n in [3, 5, 7] {
            let story = TemplateWriter::default().compose(&StoryRequest {
                theme: "공룡, 바다".into(),
                characters: Vec::new(),
                child_name: "지우".into(),
                child_age: 5,
                transcript: transcript.clone(),
                ..request(n)
            });
            assert_eq!(story.chapters.len(), n);
            assert_eq!(story.title, "아기 공룡 뚜뚜와 고래 아저씨");
            let all: String = story.chapters.iter().map(|c| c.content.clone()).collect();
            let at = |needle: &str| {
                all.find(needle)
                    .unwrap_or_else(|| panic!("{needle} missing in {all}"))
            };
            assert!(at("아기 공룡 뚜뚜") < at("바닷속 산호 마을"));
            assert!(at("바닷속 산호 마을") < at("엄마를 잃어버렸어요"));
            assert!(at("엄마를 잃어버렸어요") < at("고래 아저씨가 아기 공룡 뚜뚜를 도와주었어요"));
            assert!(all.contains("5살 지우가 들려준 이야기"), "{all}");
            for random in [
                "다람쥐",
                "아기 곰",
                "파랑새",
                "아기 별",
                "\"바닷속 산호 마을에 살아",
            ] {
                assert!(!all.contains(random), "{random} in {all}");
            }
            // The chapters follow the plan: the trouble after the place, the help after it.
            let chapter_of = |needle: &str| {
                story
                    .chapters
                    .iter()
                    .position(|c| c.content.contains(needle))
                    .unwrap()
            };
            assert_eq!(chapter_of("바닷속 산호 마을에 살았어요"), 0);
            assert!(chapter_of("엄마를 잃어버렸어요") < chapter_of("고래 아저씨가 다가왔어요"));
            assert!(all.contains("엄마와 다시 만났어요"), "{all}");
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

    fn picture(
        chapter_number: usize,
        title: &str,
        scene: &str,
        place: &str,
    ) -> IllustrationRequest {
        IllustrationRequest {
            seed: 7,
            chapter_number,
            chapter_title: title.into(),
            scene: scene.into(),
            place: place.into(),
            character_sheet: String::new(),
            characters: vec!["아기 공룡 뚜뚜".into(), "고래 아저씨".into()],
        }
    }

    #[test]
    fn svgs_escape_text_and_differ_per_chapter() {
        let base = picture(1, "<script>alert(1)</script> & \"quotes\"", "", "바다");
        let one = SvgIllustrator.draw(&base);
        assert!(!one.contains("<script>"));
        assert!(one.contains("&lt;script&gt;"));
        let two = SvgIllustrator.draw(&IllustrationRequest {
            chapter_number: 2,
            ..base.clone()
        });
        assert_ne!(one, two);
        // The hero keeps its colour across chapters.
        let colour = crate::providers::pictures::colour_of("아기 공룡 뚜뚜");
        assert!(one.contains(&colour) && two.contains(&colour));
    }

    #[tokio::test]
    async fn pictures_are_png_seeded_and_keep_their_characters() {
        use resvg::tiny_skia::Pixmap;
        let draw = |r: IllustrationRequest| async move {
            let media = SvgIllustrator.illustrate(&r).await.unwrap();
            assert_eq!(
                (media.content_type.as_str(), media.extension),
                ("image/png", "png")
            );
            assert_eq!(&media.bytes[..8], b"\x89PNG\r\n\x1a\n");
            Pixmap::decode_png(&media.bytes).unwrap()
        };
        let scene = "아기 공룡 뚜뚜는 바닷속 산호 마을에 살았어요.";
        let one = draw(picture(
            1,
            "바닷속 산호 마을에 사는 아기 공룡 뚜뚜",
            scene,
            "바닷속 산호 마을",
        ))
        .await;
        assert_eq!((one.width(), one.height()), (800, 600));
        // The same request draws the same picture; another chapter another scene.
        let again = draw(picture(
            1,
            "바닷속 산호 마을에 사는 아기 공룡 뚜뚜",
            scene,
            "바닷속 산호 마을",
        ))
        .await;
        assert_eq!(one.data(), again.data());
        let two = draw(picture(2, "큰일이 났어요", scene, "바닷속 산호 마을")).await;
        assert_ne!(one.data(), two.data());
        // The character's body is drawn in its own colour, in every chapter: some pixel
        // of each picture has exactly the colour of the SVG's `hsl(h,60%,60%)`.
        let hue = (crate::providers::pictures::hash("아기 공룡 뚜뚜") % 360) as f32;
        let (r, g, b) = hsl_rgb(hue, 0.6, 0.6);
        let has_colour = |p: &Pixmap| {
            p.pixels().iter().any(|px| {
                let near = |a: u8, b: u8| a.abs_diff(b) <= 2;
                near(px.red(), r) && near(px.green(), g) && near(px.blue(), b)
            })
        };
        assert!(has_colour(&one) && has_colour(&two));
        // Without characters there is no such body.
        let empty = IllustrationRequest {
            characters: Vec::new(),
            ..picture(1, "바다", scene, "바다")
        };
        assert!(!has_colour(&draw(empty).await));
    }

    /// The caption is drawn with the font that ships with the service: the band under the
    /// picture holds dark text pixels, and another title draws other pixels.
    #[tokio::test]
    async fn captions_are_drawn_in_korean() {
        use resvg::tiny_skia::Pixmap;
        let band = |title: &str| {
            let svg = SvgIllustrator.draw(&picture(1, title, "", "숲"));
            let png = rasterise(&svg).unwrap();
            let pixmap = Pixmap::decode_png(&png).unwrap();
            let w = pixmap.width() as usize;
            pixmap.pixels()[540 * w..590 * w]
                .iter()
                .map(|p| (p.red(), p.green(), p.blue()))
                .collect::<Vec<_>>()
        };
        let dark = |pixels: &[(u8, u8, u8)]| {
            pixels
                .iter()
                .filter(|(r, g, b)| *r < 90 && *g < 90 && *b < 90)
                .count()
        };
        let korean = band("아기 공룡 뚜뚜의 하루");
        assert!(
            dark(&korean) > 500,
            "the caption is drawn: {} dark pixels",
            dark(&korean)
        );
        assert_ne!(korean, band("고래 아저씨가 도와줘요"));
        // Glyphs, not one placeholder box per syllable: titles of the same length differ.
        assert_ne!(band("가나다라"), band("마바사아"));
        assert_eq!(dark(&band("")), 0, "no title, no text");
    }

    /// Each setting and kind has its own look: the sea's gradient and the dinosaur's
    /// spikes; space's ringed planet and rocket; a whale's spout where the whale is named.
    #[test]
    fn the_scene_follows_the_story() {
        let sea = SvgIllustrator.draw(&picture(
            1,
            "t",
            "아기 공룡 뚜뚜는 헤엄쳤어요.",
            "바닷속 산호 마을",
        ));
        assert!(sea.contains("url(#sea)"));
        assert!(sea.contains("#2a9d8f"), "the dinosaur's spikes");
        assert!(!sea.contains("#b3e5fc"), "no whale in this chapter");
        let help = SvgIllustrator.draw(&picture(
            4,
            "t",
            "그때 고래 아저씨가 다가왔어요. 아기 공룡 뚜뚜를 도와주었어요.",
            "바닷속 산호 마을",
        ));
        assert!(
            help.contains("#b3e5fc"),
            "the whale's spout where the whale helps"
        );
        let space = SvgIllustrator.draw(&IllustrationRequest {
            characters: vec!["용감한 토끼".into()],
            ..picture(1, "t", "용감한 토끼는 날아다녔어요.", "우주 여행")
        });
        assert!(
            space.contains("#0d1033") && space.contains("#e9c46a"),
            "space: night sky, ringed planet"
        );
        assert!(!space.contains("url(#sea)"));
        let trouble =
            SvgIllustrator.draw(&picture(3, "t", "그런데 어느 날, 큰일이 생겼어요.", "바다"));
        assert!(
            trouble.contains("#6b6f80"),
            "a storm cloud over the trouble"
        );
    }

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
