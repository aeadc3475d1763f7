//! "쫑이", the conversation guide: a warm, age-adapted companion that gathers a story's
//! elements — main character, place, problem, resolution — one short question at a time.
//! Through the LLM provider when configured; offline, a rule-based guide in natural
//! Korean that walks the same stages and reflects what the child said.

use async_trait::async_trait;
use reqwest::Client;
use serde_json::json;

use super::korean::{a_ya, eul_reul};
use super::{HttpSettings, ProviderError};
use crate::store::types::MessageRole;

/// What the guide knows when it answers.
#[derive(Clone, Debug)]
pub struct GuideRequest {
    pub child_name: String,
    pub child_age: i32,
    pub interests: Vec<String>,
    /// The conversation so far, oldest first: (`child` | `assistant`, text); the child's
    /// last message is the one to answer. Empty for the greeting.
    pub history: Vec<(MessageRole, String)>,
    /// Set when the child's last message was flagged: change the subject gently, never
    /// repeating it (it is not in `history`).
    pub redirect: bool,
}

impl GuideRequest {
    /// How many story elements the child has given so far.
    pub(crate) fn stage(&self) -> usize {
        self.history
            .iter()
            .filter(|(r, _)| *r == MessageRole::Child)
            .count()
    }
}

#[async_trait]
pub trait Guide: Send + Sync {
    fn name(&self) -> &'static str;
    async fn reply(&self, request: &GuideRequest) -> Result<String, ProviderError>;
}

const QUESTIONS: [&str; 4] = [
    "우리 이야기의 주인공은 누가 좋을까?",
    "그 주인공은 어디에 살고 있을까?",
    "그곳에서 주인공에게 어떤 일이 생기면 좋을까?",
    "주인공은 그 일을 어떻게 해결할까?",
];

fn question(stage: usize) -> &'static str {
    QUESTIONS[stage.min(QUESTIONS.len() - 1)]
}

/// A short echo of what the child said, safe to put in quotes.
fn echo(text: &str) -> String {
    let t: String = text.trim().chars().take(30).collect();
    t.trim_end_matches(['.', '!', '?', '~', ' ']).to_string()
}

/// The offline guide.
pub(crate) struct RuleGuide;

#[async_trait]
impl Guide for RuleGuide {
    fn name(&self) -> &'static str {
        "offline-guide"
    }

    async fn reply(&self, req: &GuideRequest) -> Result<String, ProviderError> {
        let name = a_ya(req.child_name.trim());
        let stage = req.stage();
        if req.redirect {
            return Ok(format!(
                "음, 그건 조금 다른 이야기로 바꿔 볼까? {name}, {}",
                question(stage)
            ));
        }
        if req.history.is_empty() {
            let liking = req
                .interests
                .first()
                .map(|i| format!("{} 좋아한다고 들었어! ", eul_reul(i)))
                .unwrap_or_default();
            return Ok(format!(
                "안녕, {name}! 나는 쫑이야. {liking}오늘은 우리 같이 멋진 이야기를 만들어 볼까? {}",
                question(0)
            ));
        }
        let said = req
            .history
            .iter()
            .rev()
            .find(|(r, _)| *r == MessageRole::Child)
            .map(|(_, t)| echo(t))
            .unwrap_or_default();
        let young = req.child_age <= 6;
        Ok(match stage {
            1 => format!("\"{said}\"! 정말 멋진 주인공이야. {}", question(1)),
            2 => format!("와, \"{said}\"! 상상만 해도 신나. {}", question(2)),
            3 => format!(
                "저런, \"{said}\"… 그럼 큰일이네! {}",
                if young {
                    "어떻게 하면 도와줄 수 있을까?"
                } else {
                    question(3)
                }
            ),
            4 => format!(
                "\"{said}\"! 정말 좋은 생각이야. {name}, 네 이야기로 동화를 만들 준비가 다 됐어. '이야기 만들기'를 눌러 봐!"
            ),
            _ => format!(
                "\"{said}\"! 그것도 재미있겠다. 더 넣고 싶은 게 있으면 말해 줘. 다 되면 '이야기 만들기'를 눌러 봐!"
            ),
        })
    }
}

/// The guide through an OpenAI-compatible chat model.
pub(crate) struct ChatGuide {
    settings: HttpSettings,
    client: Client,
}

impl ChatGuide {
    pub(crate) fn new(settings: HttpSettings) -> ChatGuide {
        ChatGuide {
            client: super::http::client_for(&settings),
            settings,
        }
    }
}

fn system_prompt(req: &GuideRequest) -> String {
    let band = match req.child_age {
        ..=4 => "아주 어린 아이: 한 문장씩, 아주 쉬운 낱말",
        5..=7 => "유아: 짧고 쉬운 문장",
        8..=10 => "초등 저학년: 친근하고 쉬운 문장",
        _ => "초등 고학년 이상: 친근한 대화체",
    };
    format!(
        "너는 아이와 함께 동화를 만드는 다정한 친구 '쫑이'야. 아이 이름은 {}, {}살이고 좋아하는 것은 {}. \
         대상: {band}. 한 번에 질문은 하나만, 두세 문장으로 답해. 이야기 재료를 순서대로 모아: \
         주인공 → 장소 → 생긴 일(문제) → 해결. 아이가 한 말을 짧게 되짚어 줘. 무섭거나 위험하거나 \
         어른스러운 이야기는 하지 말고, 그런 말이 나오면 부드럽게 다른 이야기로 바꿔.{}",
        req.child_name,
        req.child_age,
        if req.interests.is_empty() {
            "아직 몰라".to_string()
        } else {
            req.interests.join(", ")
        },
        if req.redirect {
            " 방금 아이의 말은 부적절해서 전하지 않았어: 그 말을 되풀이하지 말고 다음 질문으로 부드럽게 넘어가."
        } else {
            ""
        }
    )
}

#[async_trait]
impl Guide for ChatGuide {
    fn name(&self) -> &'static str {
        "openai-chat-guide"
    }

    async fn reply(&self, req: &GuideRequest) -> Result<String, ProviderError> {
        let mut messages = vec![json!({"role": "system", "content": system_prompt(req)})];
        for (role, text) in req.history.iter().rev().take(30).rev() {
            messages.push(json!({
                "role": match role {
                    MessageRole::Child => "user",
                    MessageRole::Assistant => "assistant",
                },
                "content": text,
            }));
        }
        if req.history.is_empty() {
            messages.push(json!({"role": "user", "content": "(대화 시작: 아이에게 인사하고 첫 질문을 해 줘)"}));
        }
        let call = super::openai::ChatCall {
            messages: &messages,
            temperature: 0.7,
            max_tokens: Some(300),
            json: false,
        };
        let text = super::openai::chat(&self.client, &self.settings, &call).await?;
        Ok(text.chars().take(2000).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(history: &[(&str, &str)], redirect: bool) -> GuideRequest {
        GuideRequest {
            child_name: "민준".into(),
            child_age: 7,
            interests: vec!["공룡".into()],
            history: history
                .iter()
                .map(|(r, t)| (MessageRole::parse(r).expect("a role"), t.to_string()))
                .collect(),
            redirect,
        }
    }

    #[tokio::test]
    async fn walks_the_stages_and_reflects_the_child() {
        let hello = RuleGuide.reply(&req(&[], false)).await.unwrap();
        assert!(hello.contains("민준아") && hello.contains("공룡을") && hello.contains("주인공"));
        let one = RuleGuide
            .reply(&req(
                &[("assistant", "…"), ("child", "용감한 공주님!")],
                false,
            ))
            .await
            .unwrap();
        assert!(one.contains("\"용감한 공주님\"") && one.contains("어디에"));
        let two = RuleGuide
            .reply(&req(
                &[
                    ("child", "공주"),
                    ("assistant", "…"),
                    ("child", "바닷속 궁전"),
                ],
                false,
            ))
            .await
            .unwrap();
        assert!(two.contains("바닷속 궁전") && two.contains("어떤 일"));
        let redirect = RuleGuide
            .reply(&req(&[("child", "공주")], true))
            .await
            .unwrap();
        assert!(redirect.contains("다른 이야기"));
    }
}
