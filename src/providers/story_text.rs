//! The story writer's words: the prompts a chat model gets and the check of the JSON
//! story it answers with (the shape, exactly the chapters asked for, the lengths).

use serde_json::Value;

use super::{GeneratedChapter, GeneratedStory, StoryRequest};
use crate::vocabulary::MessageRole;

/// Longest chapter text accepted from a model (the API's text-field limit).
const MAX_CHAPTER_CHARS: usize = 10_000;

/// The system prompt: a storyteller for the child's age band.
pub(crate) fn system_prompt(age: i32) -> String {
    let band = match age {
        ..=4 => "아주 어린 아이(3~4세): 아주 짧은 문장, 쉬운 낱말, 의성어·의태어와 반복",
        5..=7 => "유아(5~7세): 짧은 문장, 쉬운 낱말, 따뜻하고 밝은 분위기",
        8..=10 => "초등 저학년(8~10세): 조금 더 긴 문장과 모험, 간단한 교훈",
        _ => "초등 고학년 이상: 풍부한 묘사와 인물의 감정, 생각할 거리",
    };
    format!(
        "너는 아이를 위한 한국어 동화 작가야. 대상: {band}. 폭력, 공포, 위험한 행동, 차별, \
         어른용 주제는 절대 쓰지 마. 반드시 JSON 객체 하나만 답해: \
         {{\"title\": string, \"chapters\": [{{\"title\": string, \"content\": string}}]}}"
    )
}

pub(crate) fn user_prompt(req: &StoryRequest) -> String {
    let transcript: String = req
        .transcript
        .iter()
        .rev()
        .take(40)
        .rev()
        .map(|(role, text)| {
            format!(
                "{}: {}\n",
                match role {
                    MessageRole::Child => "아이",
                    MessageRole::Assistant => "쫑이",
                },
                text
            )
        })
        .collect();
    format!(
        "주인공 아이: {name} ({age}살)\n주제: {theme}\n등장인물: {chars}\n좋아하는 것: {likes}\n\
         장 수: 정확히 {n}장\n각 장은 3~6문장, 아이의 이름과 등장인물을 이야기 속에 자연스럽게 넣어 줘.\n\
         아이와 나눈 대화(이야기 재료로 써 줘):\n{transcript}",
        name = req.child_name,
        age = req.child_age,
        theme = req.theme,
        chars = if req.characters.is_empty() {
            "자유".to_string()
        } else {
            req.characters.join(", ")
        },
        likes = if req.interests.is_empty() {
            "-".to_string()
        } else {
            req.interests.join(", ")
        },
        n = req.chapters,
    )
}

/// Parses and checks the model's JSON against the expected shape.
pub(crate) fn parse_story(text: &str, chapters: usize) -> Result<GeneratedStory, String> {
    let trimmed = text.trim();
    let trimmed = trimmed
        .strip_prefix("```json")
        .or_else(|| trimmed.strip_prefix("```"))
        .map(|t| t.trim_end().trim_end_matches("```"))
        .unwrap_or(trimmed);
    let value: Value = serde_json::from_str(trimmed).map_err(|e| format!("invalid JSON: {e}"))?;
    let title = value["title"]
        .as_str()
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.chars().count() <= 200)
        .ok_or("`title` must be a non-empty string of at most 200 characters")?;
    let list = value["chapters"]
        .as_array()
        .ok_or("`chapters` must be an array")?;
    if list.len() != chapters {
        return Err(format!(
            "expected exactly {chapters} chapters, got {}",
            list.len()
        ));
    }
    let mut out = Vec::with_capacity(chapters);
    for (i, ch) in list.iter().enumerate() {
        let title = ch["title"]
            .as_str()
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let content = ch["content"]
            .as_str()
            .map(str::trim)
            .filter(|t| !t.is_empty());
        match (title, content) {
            (Some(t), Some(c))
                if c.chars().count() <= MAX_CHAPTER_CHARS && t.chars().count() <= 200 =>
            {
                out.push(GeneratedChapter {
                    title: t.to_string(),
                    content: c.to_string(),
                })
            }
            _ => {
                return Err(format!(
                    "chapter {} needs a non-empty `title` and `content`",
                    i + 1
                ));
            }
        }
    }
    Ok(GeneratedStory {
        title: title.to_string(),
        chapters: out,
    })
}

/// What the model is told when its first answer did not have the right shape.
pub(crate) fn repair_prompt(problem: &str, chapters: usize) -> String {
    format!(
        "그 답은 형식이 잘못되었어: {problem}. 같은 이야기를 정확히 {chapters}장으로, 설명 없이 JSON 객체 하나로만 다시 보내 줘."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_the_expected_shape() {
        let ok = r#"{"title": "별", "chapters": [{"title": "1", "content": "가"}, {"title": "2", "content": "나"}]}"#;
        assert_eq!(parse_story(ok, 2).unwrap().chapters.len(), 2);
        assert!(parse_story(&format!("```json\n{ok}\n```"), 2).is_ok());
        assert!(parse_story(ok, 3).is_err());
        assert!(parse_story("{\"title\": \"별\"}", 1).is_err());
        assert!(parse_story("not json", 1).is_err());
        assert!(parse_story(r#"{"title": "", "chapters": []}"#, 0).is_err());
        assert!(
            parse_story(
                r#"{"title": "t", "chapters": [{"title": "a", "content": ""}]}"#,
                1
            )
            .is_err()
        );
    }
}
