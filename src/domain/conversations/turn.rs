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
        let providers = self.providers();
        let flagged = match child_text {
            None => false,
            Some(text) => {
                let texts = [text.to_string()];
                let verdict = with_retry(
                    providers.retry,
                    || providers.moderator.check(&texts),
                    |_| {},
                )
                .await;
                // Unverifiable input is treated like flagged input: the guide changes the
                // subject instead of building on it.
                !matches!(verdict, Ok(Verdict::Allowed))
            }
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
        let answer = with_retry(providers.retry, || providers.guide.reply(&request), |_| {}).await;
        let mut answer = match answer {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(conversation_id = %conversation.id, error = %e, "guide unavailable");
                self.events()
                    .publish(Event::ConversationError {
                        id: conversation.id,
                        code: ErrorCode::AiUnavailable.as_str().into(),
                    })
                    .await;
                return Err(AppError::code_only(ErrorCode::AiUnavailable));
            }
        };
        // The guide's words are checked too; a flagged answer is replaced by a safe one.
        let verdict = with_retry(
            providers.retry,
            || providers.moderator.check(std::slice::from_ref(&answer)),
            |_| {},
        )
        .await;
        if !matches!(verdict, Ok(Verdict::Allowed)) {
            tracing::warn!(conversation_id = %conversation.id, "guide answer flagged; replaced");
            answer = RuleGuide
                .reply(&GuideRequest {
                    redirect: true,
                    ..request.clone()
                })
                .await
                .map_err(|e| internal("offline guide", e))?;
        }
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
