//! One turn of a conversation: the child's words moderated and stored, the guide's
//! answer asked for, moderated, spoken and stored, and announced. Also speech-to-text for
//! spoken turns.

use uuid::Uuid;

use super::{Conversation, MessageRole, Reply};
use crate::domain::accounts::User;
use crate::domain::{Conversations, internal};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::events::Event;
use crate::providers::Verdict;
use crate::providers::guide::{Guide, GuideRequest, RuleGuide};
use crate::providers::retry::with_retry;
use crate::store::types::ConversationId;

impl Conversations<'_> {
    /// The words of one spoken utterance (a WAV file), by the configured speech-to-text
    /// provider. Without one, or when it fails, `AI_UNAVAILABLE` (the cause is logged).
    pub(crate) async fn transcribe(&self, wav: &[u8]) -> AppResult<String> {
        let providers = self.providers();
        let Some(transcriber) = &providers.transcriber else {
            return Err(AppError::new(
                ErrorCode::AiUnavailable,
                "이 서버에는 음성 인식이 설정되어 있지 않아요. 음성은 목소리 샘플로만 저장되니, 말은 글(user_message)로 보내 주세요.",
            ));
        };
        let _slot = providers
            .stt_slots
            .acquire()
            .await
            .map_err(|e| AppError::Internal(e.into()))?;
        match with_retry(providers.retry, || transcriber.transcribe(wav), |_| {}).await {
            Ok(text) => Ok(text),
            Err(e) => {
                tracing::warn!(provider = transcriber.name(), error = %e, "speech-to-text failed");
                Err(AppError::new(
                    ErrorCode::AiUnavailable,
                    "지금은 음성을 알아들을 수 없어요. 잠시 후 다시 말하거나 글로 보내 주세요.",
                ))
            }
        }
    }

    /// One turn: store the child's words (flagged or not), ask the guide, check and speak
    /// the answer, store it, announce it.
    pub(super) async fn guide_turn(
        &self,
        owner: &User,
        conversation: &Conversation,
        child_text: Option<&str>,
    ) -> AppResult<Reply> {
        let flagged = match child_text {
            None => false,
            // Unverifiable input is treated like flagged input: the guide changes the
            // subject instead of building on it.
            Some(text) => !self.allowed(text.to_string()).await,
        };
        if let Some(text) = child_text {
            self.append_message(conversation.id, MessageRole::Child, text, flagged, None)
                .await?;
        }
        let history: Vec<(MessageRole, String)> = self
            .messages(conversation.id)
            .await?
            .into_iter()
            .filter(|m| !m.flagged)
            .map(|m| (m.role, m.text))
            .collect();
        let request = GuideRequest {
            child_name: conversation.child_name.clone(),
            child_age: conversation.child_age,
            interests: conversation.interests.clone(),
            history,
            redirect: flagged,
        };
        let answer = self.answer(conversation.id, &request).await?;
        let audio_path = self.speak(owner, conversation.id, &answer).await;
        let seq = self
            .append_message(
                conversation.id,
                MessageRole::Assistant,
                &answer,
                false,
                audio_path.clone(),
            )
            .await?;
        self.events()
            .publish(Event::ConversationReply {
                id: conversation.id,
                seq,
            })
            .await;
        Ok(Reply {
            conversation_id: conversation.id,
            seq,
            text: answer,
            user_text: child_text.map(str::to_string),
            audio_path,
        })
    }

    /// Whether the moderator lets `text` through (an unanswered check does not).
    async fn allowed(&self, text: String) -> bool {
        let providers = self.providers();
        let texts = [text];
        let verdict = with_retry(
            providers.retry,
            || providers.moderator.check(&texts),
            |_| {},
        )
        .await;
        matches!(verdict, Ok(Verdict::Allowed))
    }

    /// The guide's answer to `request`, checked by the moderator: a flagged answer is
    /// replaced by a safe one. When the guide cannot answer, the conversation's
    /// subscribers hear of it and the turn fails with `AI_UNAVAILABLE`.
    async fn answer(
        &self,
        conversation: ConversationId,
        request: &GuideRequest,
    ) -> AppResult<String> {
        let providers = self.providers();
        let answer = with_retry(providers.retry, || providers.guide.reply(request), |_| {}).await;
        let answer = match answer {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(conversation_id = %conversation, error = %e, "guide unavailable");
                self.events()
                    .publish(Event::ConversationError {
                        id: conversation,
                        code: ErrorCode::AiUnavailable.as_str().into(),
                    })
                    .await;
                return Err(AppError::code_only(ErrorCode::AiUnavailable));
            }
        };
        if self.allowed(answer.clone()).await {
            return Ok(answer);
        }
        tracing::warn!(conversation_id = %conversation, "guide answer flagged; replaced");
        RuleGuide
            .reply(&GuideRequest {
                redirect: true,
                ..request.clone()
            })
            .await
            .map_err(|e| internal("offline guide", e))
    }

    /// Narrates `text` (in the account's cloned voice when there is one) into the media
    /// directory; `None` when no narrator can.
    async fn speak(
        &self,
        owner: &User,
        conversation: ConversationId,
        text: &str,
    ) -> Option<String> {
        let providers = self.providers();
        let (narrator, voice) = match (&providers.voice_narrator, &owner.voice_id) {
            (Some(n), Some(v)) => (n.clone(), Some(v.clone())),
            _ => (providers.narrator.clone(), None),
        };
        let media = {
            let _slot = providers.speech_slots.acquire().await.ok()?;
            with_retry(
                providers.retry,
                || narrator.narrate(text, voice.as_deref()),
                |_| {},
            )
            .await
        };
        let media = match media {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, "reply not spoken");
                return None;
            }
        };
        let relative = format!(
            "{}/conversations/{conversation}/{}.{}",
            owner.id,
            Uuid::new_v4(),
            media.extension
        );
        match self.media().write(&relative, &media.bytes).await {
            Ok(_) => Some(relative),
            Err(e) => {
                tracing::error!(error = %e, "storing a spoken reply failed");
                None
            }
        }
    }
}
