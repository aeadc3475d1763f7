//! The story writer's words: the prompts a chat model gets and the check of the JSON
//! story it answers with (the shape, exactly the chapters asked for, the lengths).

use serde_json::{Value, json};

use super::{GeneratedChapter, StoryRequest};
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
        // A chapter written again belongs to a story of `total` chapters.
        n = req.rewrite.as_ref().map_or(req.chapters, |r| r.total),
    )
}

/// One chapter object of the model's answer, checked (`index` is 0-based, for the
/// problem's wording).
pub(crate) fn checked_chapter(ch: &Value, index: usize) -> Result<GeneratedChapter, String> {
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
            Ok(GeneratedChapter {
                title: t.to_string(),
                content: c.to_string(),
            })
        }
        _ => Err(format!(
            "chapter {} needs a non-empty `title` (at most 200 characters) and `content` (at most {MAX_CHAPTER_CHARS})",
            index + 1
        )),
    }
}

/// The conversation that asks for the chapters still missing: the first request, then
/// (when some were written, by an earlier answer that broke off or went wrong) the
/// story so far as the model's own answer and a request for the rest. `problem` says
/// what was wrong with the last answer.
pub(crate) fn messages(
    req: &StoryRequest,
    title: Option<&str>,
    written: &[GeneratedChapter],
    problem: Option<&str>,
) -> Vec<Value> {
    let mut messages = vec![
        json!({"role": "system", "content": system_prompt(req.child_age)}),
        json!({"role": "user", "content": user_prompt(req)}),
    ];
    if written.is_empty() && problem.is_none() && req.rewrite.is_none() {
        return messages;
    }
    let so_far = json!({
        "title": title.unwrap_or(""),
        "chapters": written.iter().map(|c| json!({"title": c.title, "content": c.content})).collect::<Vec<_>>(),
    });
    messages.push(json!({"role": "assistant", "content": so_far.to_string()}));
    let left = req.chapters.saturating_sub(written.len());
    let mut why = problem
        .map(|p| format!("앞의 답은 형식이 잘못되었거나 중간에 끊겼어: {p}. "))
        .unwrap_or_default();
    if let Some(rewrite) = &req.rewrite {
        why.push_str(&format!(
            "{n}장을 새로 써 줘: 지금의 {n}장(제목 \"{}\": {})과는 다른 장면과 표현으로.",
            rewrite.old.title,
            rewrite.old.content,
            n = req.chapters
        ));
        if let Some(next) = &rewrite.next {
            why.push_str(&format!(
                " 다음 장은 이렇게 이어지니, 자연스럽게 이어지게 해 줘: {}",
                next.content
            ));
        }
        why.push(' ');
    }
    messages.push(json!({"role": "user", "content": format!(
        "{why}이야기를 이어서 써 줘: {from}장부터 {to}장까지 남은 {left}개 장만, 이미 쓴 장은 다시 쓰지 말고, \
         설명 없이 같은 형식의 JSON 객체 하나로 보내 줘 (title은 같은 제목).",
        from = written.len() + 1,
        to = req.chapters,
    )}));
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chapter_is_checked() {
        let ok = json!({"title": " 별 ", "content": "가"});
        assert_eq!(checked_chapter(&ok, 0).unwrap().title, "별");
        for bad in [
            json!({"title": "", "content": "가"}),
            json!({"title": "t"}),
            json!({"title": "t", "content": "가".repeat(MAX_CHAPTER_CHARS + 1)}),
            json!({"title": "t".repeat(201), "content": "가"}),
        ] {
            assert!(checked_chapter(&bad, 2).unwrap_err().contains("chapter 3"));
        }
    }

    #[test]
    fn a_continuation_shows_the_story_so_far_and_asks_for_the_rest() {
        let req = StoryRequest {
            seed: 1,
            theme: "바다".into(),
            characters: vec![],
            child_name: "민준".into(),
            child_age: 6,
            chapters: 5,
            interests: vec![],
            transcript: vec![],
            rewrite: None,
        };
        assert_eq!(messages(&req, None, &[], None).len(), 2);
        let written = vec![GeneratedChapter {
            title: "하나".into(),
            content: "첫 장".into(),
        }];
        let m = messages(&req, Some("별"), &written, Some("cut off"));
        assert_eq!(m.len(), 4);
        assert!(m[2]["content"].as_str().unwrap().contains("첫 장"));
        let ask = m[3]["content"].as_str().unwrap();
        assert!(ask.contains("2장부터 5장까지 남은 4개 장") && ask.contains("cut off"));
    }
}
