//! The built-in moderator: a word-aware Korean/English blocklist. It compares whole
//! words (after taking common particles off Korean words), so innocent words that merely
//! contain a blocked one ("피아노", "skill") pass, while the word itself ("피가") does not.

use async_trait::async_trait;

use super::{Moderator, ProviderError, Verdict};

/// Words never fit for a children's story, by category.
const BLOCKLIST: &[(&str, &[&str])] = &[
    (
        "violence",
        &[
            "피",
            "죽여",
            "죽일",
            "죽이다",
            "죽였어",
            "살인",
            "살해",
            "칼부림",
            "총",
            "총알",
            "폭탄",
            "kill",
            "killing",
            "murder",
            "blood",
            "bloody",
            "gun",
            "guns",
            "bomb",
        ],
    ),
    ("self-harm", &["자살", "자해", "suicide", "selfharm"]),
    (
        "sexual",
        &[
            "섹스",
            "야동",
            "포르노",
            "성관계",
            "sex",
            "porn",
            "porno",
            "nude",
        ],
    ),
    (
        "drugs",
        &["마약", "필로폰", "대마초", "drugs", "cocaine", "heroin"],
    ),
    (
        "profanity",
        &[
            "씨발",
            "시발",
            "개새끼",
            "병신",
            "좆",
            "존나",
            "fuck",
            "fucking",
            "shit",
            "bitch",
        ],
    ),
];

/// Particles and endings taken off a Korean word before comparing (longest first).
const PARTICLES: &[&str] = &[
    "에서는",
    "으로는",
    "이라고",
    "에게서",
    "한테서",
    "에서",
    "에게",
    "한테",
    "으로",
    "까지",
    "부터",
    "처럼",
    "보다",
    "이랑",
    "이야",
    "이다",
    "이가",
    "은",
    "는",
    "이",
    "가",
    "을",
    "를",
    "의",
    "에",
    "로",
    "와",
    "과",
    "도",
    "만",
    "랑",
    "야",
    "다",
];

/// Splits `text` into lower-cased words.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
}

/// The categories `text` hits, if any.
pub(crate) fn flagged_categories(text: &str) -> Vec<&'static str> {
    let mut hits = Vec::new();
    for word in words(text) {
        let mut candidates = vec![word.clone()];
        for p in PARTICLES {
            if let Some(stem) = word.strip_suffix(p)
                && !stem.is_empty()
            {
                candidates.push(stem.to_string());
            }
        }
        for (category, list) in BLOCKLIST {
            if candidates.iter().any(|c| list.contains(&c.as_str())) && !hits.contains(category) {
                hits.push(*category);
            }
        }
    }
    hits
}

/// The blocklist as a [`Moderator`].
pub(crate) struct Blocklist;

#[async_trait]
impl Moderator for Blocklist {
    fn name(&self) -> &'static str {
        "offline-blocklist"
    }

    async fn check(&self, texts: &[String]) -> Result<Verdict, ProviderError> {
        let mut categories: Vec<String> = Vec::new();
        for text in texts {
            for c in flagged_categories(text) {
                if !categories.iter().any(|x| x == c) {
                    categories.push(c.to_string());
                }
            }
        }
        Ok(if categories.is_empty() {
            Verdict::Allowed
        } else {
            Verdict::Flagged { categories }
        })
    }
}

/// The HTTP moderation API with the blocklist in front: text the blocklist catches is
/// flagged without a call; everything else is asked of the API.
pub(crate) struct Layered {
    pub api: super::openai::ModerationApi,
}

#[async_trait]
impl Moderator for Layered {
    fn name(&self) -> &'static str {
        "openai-moderation+blocklist"
    }

    async fn check(&self, texts: &[String]) -> Result<Verdict, ProviderError> {
        match Blocklist.check(texts).await? {
            Verdict::Allowed => self.api.check(texts).await,
            flagged => Ok(flagged),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_words_only() {
        assert!(flagged_categories("피아노를 치는 토끼").is_empty());
        assert!(flagged_categories("피자가 좋아요").is_empty());
        assert!(flagged_categories("a skill and a gunny sack").is_empty());
        assert!(flagged_categories("총총 걸어갔어요").is_empty());
        assert_eq!(flagged_categories("무릎에서 피가 났어"), ["violence"]);
        assert_eq!(flagged_categories("피"), ["violence"]);
        assert_eq!(flagged_categories("He had a GUN."), ["violence"]);
        assert_eq!(flagged_categories("마약을 먹었어"), ["drugs"]);
        assert_eq!(flagged_categories("씨발"), ["profanity"]);
    }
}
