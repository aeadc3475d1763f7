//! "쫑이", the conversation guide: a warm, age-adapted companion that gathers a story's
//! elements — main character, place, problem, resolution — one short question at a time.
//! Through the LLM provider when configured; offline, a rule-based guide in natural
//! Korean that walks the same stages and reflects what the child said.

use async_trait::async_trait;
use reqwest::Client;
use serde_json::json;

use super::korean::{a_ya, eul_reul, eun_neun, i_ga};
use super::plan::{Plan, Slot};
use super::{HttpSettings, ProviderError};
use crate::vocabulary::MessageRole;

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

#[async_trait]
pub trait Guide: Send + Sync {
    fn name(&self) -> &'static str;
    async fn reply(&self, request: &GuideRequest) -> Result<String, ProviderError>;
}

/// The offline guide: it reads what the child has told so far as a story plan
/// ([`Plan`]), answers what the last line *says* (who the hero is, where, what went wrong,
/// who helps), and asks for the first element still missing.
pub(crate) struct RuleGuide;

/// The question for `slot`, about the story so far.
fn question(slot: Slot, plan: &Plan, young: bool) -> String {
    let hero = plan.hero.as_ref().map(|h| h.name.as_str());
    match (slot, hero) {
        (Slot::Hero, _) => "우리 이야기의 주인공은 누가 좋을까?".to_string(),
        (Slot::Place, Some(hero)) => format!("{} 어디에 살고 있을까?", eun_neun(hero)),
        (Slot::Place, None) => "이야기는 어디에서 일어날까?".to_string(),
        (Slot::Problem, Some(hero)) => format!("그런데 어느 날, {}에게 무슨 일이 생겼을까?", hero),
        (Slot::Problem, None) => "그런데 어느 날, 무슨 일이 생겼을까?".to_string(),
        (Slot::Help, Some(hero)) if young => format!("누가 {} 도와줄 수 있을까?", eul_reul(hero)),
        (Slot::Help, Some(hero)) => format!(
            "{} 그 일을 어떻게 해결할까? 누가 도와주면 좋을까?",
            eun_neun(hero)
        ),
        (Slot::Help, None) => "그 일은 어떻게 해결될까? 누가 도와주면 좋을까?".to_string(),
        (Slot::Done, _) => String::new(),
    }
}

#[async_trait]
impl Guide for RuleGuide {
    fn name(&self) -> &'static str {
        "offline-guide"
    }

    async fn reply(&self, req: &GuideRequest) -> Result<String, ProviderError> {
        let name = a_ya(req.child_name.trim());
        let young = req.child_age <= 6;
        let plan = Plan::of(&req.history);
        if req.redirect {
            return Ok(format!(
                "음, 그건 조금 다른 이야기로 바꿔 볼까? {name}, {}",
                question(plan.next(), &plan, young)
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
                question(Slot::Hero, &plan, young)
            ));
        }
        // What the last line added: the plan before it against the plan with it.
        let last_child = req
            .history
            .iter()
            .rposition(|(r, _)| *r == MessageRole::Child)
            .unwrap_or(0);
        let before = Plan::of(&req.history[..last_child]);
        let answer = acknowledge(&before, &plan, req.child_name.trim());
        let next = plan.next();
        if next == Slot::Done {
            if before.next() == Slot::Done {
                return Ok(
                    "그것도 이야기에 넣어 볼게! 더 하고 싶은 말이 있으면 해 줘. 다 되면 '이야기 만들기'를 눌러 봐!"
                        .to_string(),
                );
            }
            return Ok(format!(
                "{answer} {name}, 네 이야기로 동화를 만들 준비가 다 됐어. '이야기 만들기'를 눌러 봐!"
            ));
        }
        Ok(format!("{answer} {}", question(next, &plan, young)))
    }
}

/// A warm answer to what the child's last line told (`before` → `now`).
fn acknowledge(before: &Plan, now: &Plan, child: &str) -> String {
    if let (None, Some(hero)) = (&before.hero, &now.hero) {
        return format!("{} 주인공이구나! 정말 멋지다.", i_ga(&hero.name));
    }
    if now.hero.is_none() && now.hero_misses > before.hero_misses {
        if now.hero_misses >= 2 {
            return format!("좋아, 그럼 {} 주인공이 되자!", i_ga(child));
        }
        return match (&before.place, &now.place) {
            (None, Some(place)) => format!(
                "{place}, 정말 좋은 곳이다! 그런데 그곳에 누가 살까? 동물이나 친구, 공주님처럼 주인공이 될 누군가를 말해 줘."
            ),
            _ => "음, 그럼 누가 주인공이면 좋을까? 토끼나 공룡, 공주님처럼 말이야!".to_string(),
        };
    }
    if let (None, Some(place)) = (&before.place, &now.place) {
        return match &now.hero {
            Some(hero) => format!(
                "와, {} {place}에 사는구나! 상상만 해도 신나.",
                eun_neun(&hero.name)
            ),
            None => format!("와, {place}! 상상만 해도 신나."),
        };
    }
    if before.problem.is_none() && now.problem.is_some() {
        let hero = now.hero.as_ref().map(|h| h.name.as_str());
        return match (hero, &now.lost) {
            (Some(hero), Some(lost)) => format!(
                "저런, 큰일이네! {} {} 꼭 다시 만나고 싶을 거야.",
                eun_neun(hero),
                eul_reul(lost)
            ),
            (Some(hero), None) => format!("저런, 큰일이네! {} 얼마나 놀랐을까.", i_ga(hero)),
            (None, _) => "저런, 큰일이네!".to_string(),
        };
    }
    if before.resolution.is_none() && now.resolution.is_some() {
        return match &now.helper {
            Some(helper) => format!("{} 도와주다니, 정말 좋은 생각이야!", i_ga(&helper.name)),
            None => "정말 좋은 생각이야!".to_string(),
        };
    }
    "그렇구나!".to_string()
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

    fn child(lines: &[&str]) -> Vec<(&'static str, String)> {
        let mut history = Vec::new();
        for line in lines {
            history.push(("assistant", "…".to_string()));
            history.push(("child", line.to_string()));
        }
        history
    }

    async fn answer(lines: &[&str]) -> String {
        let history = child(lines);
        let history: Vec<(&str, &str)> = history.iter().map(|(r, t)| (*r, t.as_str())).collect();
        RuleGuide.reply(&req(&history, false)).await.unwrap()
    }

    /// The guide answers what the child means, not the sentence: the conversation of
    /// issue 31, line by line.
    #[tokio::test]
    async fn answers_the_content_and_asks_what_is_missing() {
        let hello = RuleGuide.reply(&req(&[], false)).await.unwrap();
        assert!(hello.contains("민준아") && hello.contains("공룡을") && hello.contains("주인공"));
        let lines = [
            "아기 공룡 뚜뚜",
            "바닷속 산호 마을에 살아",
            "엄마를 잃어버렸어",
            "고래 아저씨가 도와줘",
        ];
        let one = answer(&lines[..1]).await;
        assert_eq!(
            one,
            "아기 공룡 뚜뚜가 주인공이구나! 정말 멋지다. 아기 공룡 뚜뚜는 어디에 살고 있을까?"
        );
        let two = answer(&lines[..2]).await;
        assert!(
            two.contains("뚜뚜는 바닷속 산호 마을에 사는구나") && two.contains("무슨 일이"),
            "{two}"
        );
        assert!(
            !two.contains('"'),
            "no quoting of the child's sentence: {two}"
        );
        let three = answer(&lines[..3]).await;
        assert!(
            three.contains("엄마를 꼭 다시 만나고 싶을") && three.contains("도와"),
            "{three}"
        );
        let four = answer(&lines).await;
        assert!(
            four.contains("고래 아저씨가 도와주다니") && four.contains("이야기 만들기"),
            "{four}"
        );
    }

    #[tokio::test]
    async fn never_calls_a_non_character_a_hero() {
        let place_only = answer(&["공룡 말고 바다에 가고 싶어"]).await;
        // (공룡 is named: it is the hero; a line with no character asks again.)
        assert!(place_only.contains("주인공이구나"), "{place_only}");
        let sea = answer(&["바다에 가고 싶어"]).await;
        assert!(
            sea.contains("바다, 정말 좋은 곳이다") && sea.contains("주인공이 될 누군가"),
            "{sea}"
        );
        assert!(!sea.contains("주인공이구나"), "{sea}");
        let twice = answer(&["바다에 가고 싶어", "몰라"]).await;
        assert!(twice.contains("민준이 주인공이 되자"), "{twice}");
        assert!(
            twice.contains("무슨 일이"),
            "the place is known, so the trouble is next: {twice}"
        );
    }

    #[tokio::test]
    async fn redirects_without_repeating() {
        let redirect = RuleGuide
            .reply(&req(&[("child", "공주")], true))
            .await
            .unwrap();
        assert!(redirect.contains("다른 이야기"));
    }
}
