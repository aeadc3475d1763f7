//! What a child's story is about, read from the conversation by the offline guide and the
//! offline storyteller: the hero, the place, the problem, the helper and how it is solved.
//! No model: small Korean lexicons and rules, enough to answer what a child *means*
//! ("아기 공룡 뚜뚜" is a hero, "바닷속 산호 마을에 살아" a place) rather than quote the
//! sentence back, and to write the story in the order the child told it.

use super::korean::{eul_reul, i_ga};
use crate::vocabulary::MessageRole;

/// What kind of being a character is: it picks how the character is drawn (the same in
/// every chapter) and keeps non-characters from being called heroes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Dinosaur,
    Whale,
    Dolphin,
    Fish,
    Turtle,
    Rabbit,
    Bear,
    Cat,
    Dog,
    Fox,
    Squirrel,
    Penguin,
    Lion,
    Tiger,
    Elephant,
    Monkey,
    Frog,
    Bird,
    Butterfly,
    Dragon,
    Unicorn,
    Robot,
    Princess,
    Prince,
    Fairy,
    Wizard,
    Person,
}

/// Words naming a kind of character. One-syllable words count only as a whole word (with
/// a particle at most), so 용 is not found in 용감한; longer ones anywhere in a word
/// (파랑새, 아기곰돌이).
const CHARACTERS: &[(&str, Kind)] = &[
    ("공룡", Kind::Dinosaur),
    ("티라노", Kind::Dinosaur),
    ("돌고래", Kind::Dolphin),
    ("고래", Kind::Whale),
    ("물고기", Kind::Fish),
    ("금붕어", Kind::Fish),
    ("상어", Kind::Fish),
    ("거북", Kind::Turtle),
    ("토끼", Kind::Rabbit),
    ("곰돌이", Kind::Bear),
    ("곰", Kind::Bear),
    ("고양이", Kind::Cat),
    ("야옹이", Kind::Cat),
    ("강아지", Kind::Dog),
    ("멍멍이", Kind::Dog),
    ("여우", Kind::Fox),
    ("다람쥐", Kind::Squirrel),
    ("펭귄", Kind::Penguin),
    ("사자", Kind::Lion),
    ("호랑이", Kind::Tiger),
    ("코끼리", Kind::Elephant),
    ("원숭이", Kind::Monkey),
    ("개구리", Kind::Frog),
    ("부엉이", Kind::Bird),
    ("파랑새", Kind::Bird),
    ("참새", Kind::Bird),
    ("앵무새", Kind::Bird),
    ("새", Kind::Bird),
    ("나비", Kind::Butterfly),
    ("드래곤", Kind::Dragon),
    ("용", Kind::Dragon),
    ("유니콘", Kind::Unicorn),
    ("로봇", Kind::Robot),
    ("공주", Kind::Princess),
    ("왕자", Kind::Prince),
    ("요정", Kind::Fairy),
    ("마법사", Kind::Wizard),
    ("아저씨", Kind::Person),
    ("아줌마", Kind::Person),
    ("할머니", Kind::Person),
    ("할아버지", Kind::Person),
    ("엄마", Kind::Person),
    ("아빠", Kind::Person),
    ("친구", Kind::Person),
    ("언니", Kind::Person),
    ("오빠", Kind::Person),
    ("누나", Kind::Person),
    ("동생", Kind::Person),
    ("선생님", Kind::Person),
    ("소년", Kind::Person),
    ("소녀", Kind::Person),
];

/// The kind of a place, which picks its scenery in text and pictures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Setting {
    Sea,
    Forest,
    Space,
    Sky,
    Castle,
    Mountain,
    Snow,
    Desert,
    Meadow,
    Village,
}

const PLACES: &[(&str, Setting)] = &[
    ("바닷속", Setting::Sea),
    ("바다", Setting::Sea),
    ("바닷가", Setting::Sea),
    ("산호", Setting::Sea),
    ("물속", Setting::Sea),
    ("해변", Setting::Sea),
    ("섬", Setting::Sea),
    ("호수", Setting::Sea),
    ("숲", Setting::Forest),
    ("정글", Setting::Forest),
    ("나무", Setting::Forest),
    ("우주", Setting::Space),
    ("별나라", Setting::Space),
    ("달나라", Setting::Space),
    ("행성", Setting::Space),
    ("은하", Setting::Space),
    ("로켓", Setting::Space),
    ("별", Setting::Space),
    ("달", Setting::Space),
    ("하늘", Setting::Sky),
    ("구름", Setting::Sky),
    ("무지개", Setting::Sky),
    ("궁전", Setting::Castle),
    ("왕국", Setting::Castle),
    ("성", Setting::Castle),
    ("화산", Setting::Mountain),
    ("동굴", Setting::Mountain),
    ("산", Setting::Mountain),
    ("남극", Setting::Snow),
    ("북극", Setting::Snow),
    ("얼음", Setting::Snow),
    ("눈나라", Setting::Snow),
    ("사막", Setting::Desert),
    ("꽃밭", Setting::Meadow),
    ("들판", Setting::Meadow),
    ("공원", Setting::Meadow),
    ("놀이터", Setting::Meadow),
    ("농장", Setting::Meadow),
    ("마을", Setting::Village),
    ("집", Setting::Village),
    ("도시", Setting::Village),
    ("학교", Setting::Village),
    ("나라", Setting::Village),
];

/// Particles and copulas that may end a word, the longer ones first. (Not moderation's
/// list: that one strips 다 too, to test every possible stem; here 바다 must stay 바다.)
const ENDINGS: &[&str] = &[
    "이에요",
    "이랑",
    "에서는",
    "에서",
    "한테",
    "에게",
    "이야",
    "으로",
    "하고",
    "예요",
    "랑",
    "은",
    "는",
    "이",
    "가",
    "을",
    "를",
    "와",
    "과",
    "의",
    "에",
    "로",
    "도",
    "만",
    "야",
    "아",
];

/// Words that begin an answer without being part of it.
const FILLERS: &[&str] = &[
    "음",
    "음..",
    "어",
    "응",
    "그",
    "그럼",
    "나는",
    "난",
    "주인공은",
    "주인공",
    "이름은",
];

/// A character: the words naming it and its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Character {
    pub name: String,
    pub kind: Kind,
}

/// What the story is about, as far as the conversation told it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Plan {
    pub hero: Option<Character>,
    pub place: Option<String>,
    /// The trouble, as a narrative sentence without its subject ("엄마를 잃어버렸어요").
    pub problem: Option<String>,
    /// Who (or what) was lost, when the trouble is a loss.
    pub lost: Option<String>,
    pub helper: Option<Character>,
    /// How it is solved, as a narrative sentence.
    pub resolution: Option<String>,
    /// Answers to "who is the hero?" that named no character.
    pub hero_misses: usize,
}

/// Which element the guide asks for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    Hero,
    Place,
    Problem,
    Help,
    Done,
}

impl Plan {
    /// The plan of a conversation: each of the child's lines read as the answer to what
    /// was missing when it was said (and for anything else it plainly names).
    pub(crate) fn of(transcript: &[(MessageRole, String)]) -> Plan {
        let mut plan = Plan::default();
        for (role, text) in transcript {
            if *role == MessageRole::Child {
                plan.hear(text);
            }
        }
        plan
    }

    /// What to ask for next.
    pub(crate) fn next(&self) -> Slot {
        if self.hero.is_none() && self.hero_misses < 2 {
            Slot::Hero
        } else if self.place.is_none() {
            Slot::Place
        } else if self.problem.is_none() {
            Slot::Problem
        } else if self.resolution.is_none() {
            Slot::Help
        } else {
            Slot::Done
        }
    }

    /// Reads one line of the child's as the answer to the next question.
    pub(crate) fn hear(&mut self, text: &str) {
        let words = words(text);
        if words.is_empty() {
            return;
        }
        match self.next() {
            Slot::Hero => match character_in(&words) {
                Some(hero) => {
                    self.hero = Some(hero);
                    if self.place.is_none() {
                        self.place = place_in(&words, false);
                    }
                }
                None => {
                    self.hero_misses += 1;
                    if self.place.is_none() {
                        self.place = place_in(&words, false);
                    }
                }
            },
            Slot::Place => self.place = place_in(&words, true),
            Slot::Problem => {
                let sentence = narrative(&without_subject(&words, self.hero.as_ref()));
                self.lost = lost_in(&words);
                self.problem = Some(sentence);
            }
            Slot::Help => {
                let helper = character_in(&words).filter(|c| Some(c) != self.hero.as_ref());
                self.resolution = Some(match &helper {
                    Some(h) if text.contains("도와") || text.contains("구해") => {
                        let hero = self.hero.as_ref().map(|h| h.name.as_str()).unwrap_or("");
                        format!("{} {} 도와주었어요", i_ga(&h.name), eul_reul(hero))
                            .replace("  ", " ")
                    }
                    _ => narrative(&words),
                });
                self.helper = helper;
            }
            Slot::Done => {}
        }
    }
}

/// The words of a line, without its final punctuation.
fn words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| w.trim_matches(|c: char| !is_hangul(c) && !c.is_alphanumeric()))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

fn is_hangul(c: char) -> bool {
    ('\u{AC00}'..='\u{D7A3}').contains(&c)
}

/// `word` without one particle or copula at its end (never down to nothing).
fn stem(word: &str) -> &str {
    for ending in ENDINGS {
        if let Some(s) = word.strip_suffix(ending)
            && s.chars().count() >= 1
        {
            return s;
        }
    }
    word
}

/// Whether `word` names `key`: whole (with a particle at most) for one syllable,
/// anywhere in it for longer keys.
fn names(word: &str, key: &str) -> bool {
    if key.chars().count() == 1 {
        word == key || stem(word) == key
    } else {
        word.contains(key)
    }
}

fn kind_of(word: &str) -> Option<Kind> {
    CHARACTERS
        .iter()
        .find(|(key, _)| names(word, key))
        .map(|(_, k)| *k)
}

fn setting_of(word: &str) -> Option<Setting> {
    PLACES
        .iter()
        .find(|(key, _)| names(word, key))
        .map(|(_, s)| *s)
}

/// The kind of the character `name` names ("고래 아저씨" → a whale: an animal word wins
/// over a person word).
pub(crate) fn kind_in(name: &str) -> Option<Kind> {
    let kinds: Vec<Kind> = words(name).iter().filter_map(|w| kind_of(w)).collect();
    kinds
        .iter()
        .find(|k| **k != Kind::Person)
        .or(kinds.first())
        .copied()
}

/// Who is in the story and where it happens, for its pictures: the hero (the child when
/// the conversation named none), the characters asked for and the helper; and the place
/// (the conversation's, else the theme, whose setting the pictures draw).
pub(crate) fn cast_and_place(
    child: &str,
    characters: &[String],
    theme: &str,
    transcript: &[(MessageRole, String)],
) -> (Vec<String>, String) {
    let plan = Plan::of(transcript);
    let mut cast: Vec<String> = Vec::new();
    let mut add = |name: &str| {
        let name = name.trim();
        if !name.is_empty() && !cast.iter().any(|c| c == name) {
            cast.push(name.to_string());
        }
    };
    match &plan.hero {
        Some(hero) => add(&hero.name),
        None if characters.is_empty() => add(child),
        None => {}
    }
    characters.iter().for_each(|c| add(c));
    if let Some(helper) = &plan.helper {
        add(&helper.name);
    }
    if plan.hero.is_none() && !characters.is_empty() {
        add(child);
    }
    (cast, plan.place.unwrap_or_else(|| theme.to_string()))
}

/// The setting a place (or a theme) is in, if its words say.
pub(crate) fn setting(text: &str) -> Option<Setting> {
    words(text).iter().find_map(|w| setting_of(w))
}

/// Whether a word modifies the next one ("아기", "용감한", "반짝이는").
fn modifier(word: &str) -> bool {
    const NOUNS: &[&str] = &["아기", "꼬마", "마법", "작은", "큰"];
    // An adnominal ending: a final ㄴ (용감한, 작은, 반짝이는).
    NOUNS.contains(&word)
        || word
            .chars()
            .last()
            .is_some_and(|c| is_hangul(c) && (c as u32 - 0xAC00) % 28 == 4)
}

/// A character word without its particles, as long as it still names the same kind:
/// "공룡이랑" → 공룡, "고양이가" → 고양이 (not 고양), "토끼야" → 토끼.
fn character_stem(word: &str) -> &str {
    let kind = kind_of(word);
    let mut current = word;
    'strip: loop {
        // ENDINGS lists every longer ending before the one-syllable ones: reversed, the
        // shortest go first.
        for ending in ENDINGS.iter().rev() {
            if let Some(s) = current.strip_suffix(ending)
                && !s.is_empty()
                && kind_of(s) == kind
            {
                current = s;
                continue 'strip;
            }
        }
        return current;
    }
}

/// The first character named in `words`, with the words that modify it before and a name
/// after ("아기 공룡 뚜뚜", "고래 아저씨").
fn character_in(words: &[String]) -> Option<Character> {
    let at = words.iter().position(|w| kind_of(w).is_some())?;
    let kind = kind_of(&words[at])?;
    let mut start = at;
    while start > 0 && modifier(&words[start - 1]) && !FILLERS.contains(&words[start - 1].as_str())
    {
        start -= 1;
    }
    let mut end = at;
    // Consecutive character words are one character ("엄마 고래", "고래 아저씨").
    while end + 1 < words.len() && character_stem(&words[end]) == words[end] {
        let next = &words[end + 1];
        if kind_of(next).is_some() || is_name(next) {
            end += 1;
        } else {
            break;
        }
    }
    let mut parts: Vec<&str> = words[start..end].iter().map(String::as_str).collect();
    let last = &words[end];
    parts.push(if kind_of(last).is_some() {
        character_stem(last)
    } else {
        stem(last)
    });
    let kind = if kind == Kind::Person {
        // "고래 아저씨" is drawn as a whale.
        words[start..=end]
            .iter()
            .filter_map(|w| kind_of(w))
            .find(|k| *k != Kind::Person)
            .unwrap_or(kind)
    } else {
        kind
    };
    Some(Character {
        name: parts.join(" "),
        kind,
    })
}

/// A short word that reads as a given name ("뚜뚜가", "콩이는"): one to three syllables
/// before its particle, and not a verb.
fn is_name(word: &str) -> bool {
    const NOT_NAMES: &[&str] = &[
        "두", "세", "네", "한", "마리", "같이", "함께", "정말", "너무",
    ];
    let s = stem(word);
    let n = s.chars().count();
    (1..=3).contains(&n)
        && s.chars().all(is_hangul)
        && !NOT_NAMES.contains(&s)
        && !looks_like_verb(word)
}

/// Informal verb endings a child's sentence ends with.
fn looks_like_verb(word: &str) -> bool {
    const VERB_ENDINGS: &[&str] = &[
        "어", "아", "해", "워", "줘", "봐", "와", "져", "요", "다", "지", "래", "게", "고", "서",
        "니", "까",
    ];
    let exceptions = ["아", "야"];
    VERB_ENDINGS.iter().any(|e| word.ends_with(e))
        && !exceptions.contains(&word)
        && kind_of(word).is_none()
}

/// The place named in `words`: the words up to the one marked as a place (에, 에서), or
/// the one naming a known place; with `answer`, the whole line when it is just a place.
fn place_in(words: &[String], answer: bool) -> Option<String> {
    let start = words
        .iter()
        .position(|w| !FILLERS.contains(&w.as_str()))
        .unwrap_or(0);
    let words = &words[start..];
    let locative = words
        .iter()
        .position(|w| ["에서", "에", "으로", "로"].iter().any(|p| w.ends_with(p)) && w.len() > 3);
    if let Some(at) = locative
        && (answer || setting_of(&words[at]).is_some())
    {
        let mut parts: Vec<&str> = words[..at].iter().map(String::as_str).collect();
        let last = &words[at];
        let last = ["에서", "에", "으로", "로"]
            .iter()
            .find_map(|p| last.strip_suffix(p))
            .unwrap_or(last);
        parts.push(last);
        // Characters in front belong to someone else ("공룡이랑 바다에" → 바다).
        let from = parts
            .iter()
            .rposition(|w| kind_of(w).is_some() || w.ends_with("랑") || w.ends_with("하고"))
            .map_or(0, |i| i + 1);
        let place = parts[from..].join(" ");
        if !place.is_empty() {
            return Some(place);
        }
    }
    if answer && !words.iter().any(|w| looks_like_verb(w)) {
        let mut parts: Vec<&str> = words.iter().map(String::as_str).collect();
        if let Some(last) = parts.pop() {
            parts.push(stem(last));
        }
        return Some(parts.join(" "));
    }
    words
        .iter()
        .find(|w| setting_of(w).is_some())
        .map(|w| stem(w).to_string())
}

/// The sentence without the hero as its subject, which the story says itself.
fn without_subject(words: &[String], hero: Option<&Character>) -> Vec<String> {
    let Some(hero) = hero else {
        return words.to_vec();
    };
    let hero_words: Vec<&str> = hero.name.split(' ').collect();
    let mut out = words.to_vec();
    if let Some(first) = out.first()
        && (hero_words.contains(&stem(first)) || ["주인공이", "주인공은"].contains(&first.as_str()))
        && ["이", "가", "은", "는"].iter().any(|p| first.ends_with(p))
    {
        out.remove(0);
    }
    out
}

/// What was lost, when the trouble is a loss ("엄마를 잃어버렸어" → 엄마).
fn lost_in(words: &[String]) -> Option<String> {
    let at = words
        .iter()
        .position(|w| w.starts_with("잃어") || w.starts_with("잃었") || w.starts_with("없어"))?;
    let object = words[..at]
        .iter()
        .rev()
        .find(|w| w.ends_with('을') || w.ends_with('를'))?;
    Some(object[..object.len() - 3].to_string()).filter(|o| !o.is_empty() && o != "길")
}

/// A child's informal sentence as a storybook sentence: "잃어버렸어" → "잃어버렸어요",
/// "용이야" → "용이에요".
pub(crate) fn narrative(words: &[String]) -> String {
    let sentence = words.join(" ");
    if let Some(s) = sentence.strip_suffix("이야") {
        return format!("{s}이에요");
    }
    if let Some(s) = sentence.strip_suffix('야') {
        return format!("{s}예요");
    }
    let Some(last) = sentence.chars().last() else {
        return sentence;
    };
    if last == '요' || last == '다' {
        return sentence;
    }
    if is_hangul(last) {
        let index = last as u32 - 0xAC00;
        let (vowel, final_consonant) = ((index % 588) / 28, index % 28);
        // ㅏ ㅐ ㅓ ㅕ ㅘ ㅙ ㅝ ㅞ ㅣ(지) with no final consonant: an informal ending.
        if final_consonant == 0 && [0, 1, 4, 6, 9, 10, 14, 15, 20].contains(&vowel) {
            return format!("{sentence}요");
        }
    }
    sentence
}

#[cfg(test)]
mod tests {
    use super::*;

    fn talk(lines: &[&str]) -> Plan {
        let transcript: Vec<_> = lines
            .iter()
            .map(|l| (MessageRole::Child, l.to_string()))
            .collect();
        Plan::of(&transcript)
    }

    /// The conversation of issue 31: hero, place, problem and helper, each understood.
    #[test]
    fn the_childs_elements_are_understood() {
        let plan = talk(&[
            "아기 공룡 뚜뚜",
            "바닷속 산호 마을에 살아",
            "엄마를 잃어버렸어",
            "고래 아저씨가 도와줘",
        ]);
        let hero = plan.hero.clone().unwrap();
        assert_eq!(hero.name, "아기 공룡 뚜뚜");
        assert_eq!(hero.kind, Kind::Dinosaur);
        assert_eq!(plan.place.as_deref(), Some("바닷속 산호 마을"));
        assert_eq!(plan.problem.as_deref(), Some("엄마를 잃어버렸어요"));
        assert_eq!(plan.lost.as_deref(), Some("엄마"));
        let helper = plan.helper.clone().unwrap();
        assert_eq!(helper.name, "고래 아저씨");
        assert_eq!(helper.kind, Kind::Whale);
        assert_eq!(
            plan.resolution.as_deref(),
            Some("고래 아저씨가 아기 공룡 뚜뚜를 도와주었어요")
        );
        assert_eq!(plan.next(), Slot::Done);
    }

    #[test]
    fn a_place_is_not_a_hero() {
        // "공룡이랑 바다에 가고 싶어": a dinosaur is the hero, the sea the place.
        let plan = talk(&["공룡이랑 바다에 가고 싶어"]);
        assert_eq!(plan.hero.as_ref().unwrap().name, "공룡");
        assert_eq!(plan.place.as_deref(), Some("바다"));
        assert_eq!(plan.next(), Slot::Problem);

        // Only a place: no hero yet, and the guide asks again.
        let plan = talk(&["우주에 가고 싶어"]);
        assert_eq!(plan.hero, None);
        assert_eq!(plan.place.as_deref(), Some("우주"));
        assert_eq!(plan.next(), Slot::Hero);
        // Answered with a character the second time.
        let plan = talk(&["우주에 가고 싶어", "용감한 토끼야"]);
        assert_eq!(plan.hero.as_ref().unwrap().name, "용감한 토끼");
        assert_eq!(plan.hero.as_ref().unwrap().kind, Kind::Rabbit);
        assert_eq!(plan.next(), Slot::Problem);
        // Two answers without a character: the guide moves on (the child is the hero).
        let plan = talk(&["몰라", "음 글쎄"]);
        assert_eq!(plan.hero, None);
        assert_eq!(plan.next(), Slot::Place);
    }

    #[test]
    fn one_syllable_words_are_whole_words() {
        assert_eq!(kind_of("용감한"), None);
        assert_eq!(kind_of("용이"), Some(Kind::Dragon));
        assert_eq!(kind_of("곰은"), Some(Kind::Bear));
        assert_eq!(setting_of("별빛"), None);
        assert_eq!(setting_of("별나라"), Some(Setting::Space));
        assert_eq!(setting("우주 여행"), Some(Setting::Space));
        assert_eq!(character_stem("공룡이랑"), "공룡");
        assert_eq!(character_stem("고양이가"), "고양이");
        assert_eq!(character_stem("고양이"), "고양이");
        assert_eq!(character_stem("토끼야"), "토끼");
        assert_eq!(
            character_in(&words("내 친구 고양이가 좋아")).unwrap().name,
            "친구 고양이"
        );
    }

    #[test]
    fn informal_sentences_become_storybook_sentences() {
        for (said, story) in [
            ("잃어버렸어", "잃어버렸어요"),
            ("무서운 용이야", "무서운 용이에요"),
            ("멋진 친구야", "멋진 친구예요"),
            ("별똥별을 타고 집에 갔어", "별똥별을 타고 집에 갔어요"),
            ("배가 고파", "배가 고파요"),
            ("집에 갔어요", "집에 갔어요"),
        ] {
            let words: Vec<String> = said.split(' ').map(str::to_string).collect();
            assert_eq!(narrative(&words), story);
        }
    }
}
