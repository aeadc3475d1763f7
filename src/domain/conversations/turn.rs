//! One turn of a conversation: the child's words moderated and stored, the guide's
//! answer asked for, moderated, spoken and stored, and announced. Also speech-to-text for
//! spoken turns.

use uuid::Uuid;

use super::{AudioStatus, Conversation, Message, MessageRole, Reply, message_row};
use crate::domain::accounts::User;
use crate::domain::{Conversations, internal};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::events::Event;
use crate::providers::Verdict;
use crate::providers::guide::{Guide, GuideRequest, RuleGuide};
use crate::providers::retry::{Attempt, with_retry};
use crate::store::models::MessageRow;
use crate::store::{self, to_db};
use crate::vocabulary::ConversationId;

impl Conversations<'_> {
    /// The words of one spoken utterance (a WAV file), by the configured speech-to-text
    /// provider. Without one, or when it fails, `AI_UNAVAILABLE` (the cause is logged).
    pub(crate) async fn transcribe(&self, wav: &[u8]) -> AppResult<String> {
        let providers = self.providers();
        let Some(transcriber) = &providers.transcriber else {
            return Err(AppError::new(
                ErrorCode::AiUnavailable,
                "이 서버에는 음성 인식이 설정되어 있지 않아 음성은 듣지도 저장하지도 않아요. 말은 글(user_message)로 보내 주세요.",
            ));
        };
        let _slot = providers
            .stt_slots
            .acquire()
            .await
            .map_err(|e| AppError::Internal(e.into()))?;
        let observe = self.observer("transcribe", transcriber.name());
        match with_retry(providers.retry, || transcriber.transcribe(wav), observe).await {
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

    /// One turn: check the child's words, ask the guide, check and speak the answer,
    /// then store both (the child's words flagged or not) and announce the answer. A turn
    /// that fails (a provider unreachable) stores nothing: the client hears
    /// `AI_UNAVAILABLE` and may send the same words again. `origin` names the socket that
    /// asked (it has the reply in hand; its own subscription skips the announcement).
    ///
    /// `messages` is the conversation so far (read with it by the caller, in one trip).
    /// SQL: both messages in one insert (the conversation's `updated_at` follows by a
    /// trigger).
    pub(super) async fn guide_turn(
        &self,
        owner: &User,
        conversation: &Conversation,
        messages: Vec<Message>,
        child_text: Option<&str>,
        origin: Option<u64>,
    ) -> AppResult<Reply> {
        let flagged = match child_text {
            None => false,
            Some(text) => match self.allowed(text.to_string()).await {
                Ok(allowed) => !allowed,
                Err(e) => return Err(self.unavailable(conversation.id, "moderation", e).await),
            },
        };
        let last_seq = messages.last().map_or(0, |m| m.seq);
        let mut history: Vec<(MessageRole, String)> = messages
            .into_iter()
            .filter(|m| !m.flagged)
            .map(|m| (m.role, m.text))
            .collect();
        if let Some(text) = child_text.filter(|_| !flagged) {
            history.push((MessageRole::Child, text.to_string()));
        }
        let request = GuideRequest {
            child_name: conversation.child_name.clone(),
            child_age: conversation.child_age,
            interests: conversation.interests.clone(),
            history,
            redirect: flagged,
        };
        let answer = self.answer(conversation.id, &request).await?;
        let (audio_path, audio_status) = self.speak_in_time(owner, conversation.id, &answer).await;
        let now = to_db(store::now());
        let mut rows = Vec::with_capacity(2);
        if let Some(text) = child_text {
            rows.push(message_row(
                conversation.id,
                MessageRole::Child,
                text,
                flagged,
                None,
                now,
            ));
        }
        rows.push(message_row(
            conversation.id,
            MessageRole::Assistant,
            &answer,
            false,
            audio_path.clone(),
            now,
        ));
        let seq = self
            .store_turn(conversation.id, &mut rows, last_seq)
            .await?;
        let reply = Reply {
            conversation_id: conversation.id,
            seq,
            text: answer,
            user_text: child_text.map(str::to_string),
            audio_path,
            audio_status,
        };
        self.events()
            .publish(Event::ConversationReply {
                id: conversation.id,
                seq,
                origin,
                reply: Some(std::sync::Arc::new(reply.clone())),
            })
            .await;
        Ok(reply)
    }

    /// Stores a turn's messages numbered after `last_seq` (renumbered when another turn
    /// of the conversation took those numbers meanwhile); returns the answer's number.
    async fn store_turn(
        &self,
        conversation: ConversationId,
        rows: &mut [MessageRow],
        mut last_seq: i32,
    ) -> AppResult<i32> {
        let mut conn = self.pool().get().await?;
        let mut attempts = 0;
        loop {
            for (i, row) in rows.iter_mut().enumerate() {
                row.seq = last_seq + 1 + i as i32;
            }
            match store::conversations::insert_messages(&mut conn.db(), rows).await {
                Ok(()) => break,
                Err(e) if e.is_unique_violation() && attempts < 5 => {
                    attempts += 1;
                    last_seq = store::conversations::last_seq(&mut conn.db(), conversation).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        // (The conversation's `updated_at` follows by a trigger: migration 000008.)
        Ok(rows.last().map_or(last_seq, |r| r.seq))
    }

    /// Records every provider attempt of a conversation step in the provider metrics.
    fn observer<'a>(&'a self, step: &'a str, provider: &'a str) -> impl FnMut(Attempt<'_>) + 'a {
        self.metrics().observer(step, provider)
    }

    /// A provider the turn needs did not answer: the conversation's subscribers hear
    /// of it, the cause is logged, and the turn fails with `AI_UNAVAILABLE`.
    async fn unavailable(
        &self,
        conversation: ConversationId,
        what: &str,
        e: crate::providers::ProviderError,
    ) -> AppError {
        tracing::warn!(conversation_id = %conversation, provider = what, error = %e, "conversation turn: provider unavailable");
        self.events()
            .publish(Event::ConversationError {
                id: conversation,
                code: ErrorCode::AiUnavailable.as_str().into(),
            })
            .await;
        AppError::new(
            ErrorCode::AiUnavailable,
            "지금은 쫑이가 대답할 수 없어요. 잠시 후 같은 말을 다시 보내 주세요.",
        )
    }

    /// Whether the moderator lets `text` through; `Err` when it cannot say.
    async fn allowed(&self, text: String) -> Result<bool, crate::providers::ProviderError> {
        let providers = self.providers();
        let texts = [text];
        let _slot = providers.moderation_slots.acquire().await.map_err(|_| {
            crate::providers::ProviderError::new(crate::providers::ErrorKind::Unavailable, "closed")
        })?;
        let verdict = with_retry(
            providers.retry,
            || providers.moderator.check(&texts),
            self.observer("moderate_message", providers.moderator.name()),
        )
        .await?;
        Ok(matches!(verdict, Verdict::Allowed))
    }

    /// The guide's answer to `request`, checked by the moderator: a flagged answer is
    /// replaced by a safe one. When the guide or the moderator cannot answer, the turn
    /// fails with `AI_UNAVAILABLE` (an unchecked answer is never sent to a child).
    async fn answer(
        &self,
        conversation: ConversationId,
        request: &GuideRequest,
    ) -> AppResult<String> {
        let providers = self.providers();
        let answer = {
            let _slot = providers
                .writer_slots
                .acquire()
                .await
                .map_err(|e| AppError::Internal(e.into()))?;
            with_retry(
                providers.retry,
                || providers.guide.reply(request),
                self.observer("guide", providers.guide.name()),
            )
            .await
        };
        let answer = match answer {
            Ok(a) => a,
            Err(e) => return Err(self.unavailable(conversation, "guide", e).await),
        };
        match self.allowed(answer.clone()).await {
            Ok(true) => return Ok(answer),
            Ok(false) => {}
            Err(e) => return Err(self.unavailable(conversation, "moderation", e).await),
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

    /// [`Self::speak`] within the reply's narration deadline
    /// (`JJONGAL_REPLY_NARRATION_DEADLINE_MS`): the reply does not wait longer for its
    /// voice; past it, it goes without one and says so.
    async fn speak_in_time(
        &self,
        owner: &User,
        conversation: ConversationId,
        text: &str,
    ) -> (Option<String>, AudioStatus) {
        let deadline = self.config().ws.reply_narration_deadline;
        match tokio::time::timeout(deadline, self.speak(owner, conversation, text)).await {
            Ok(Some(path)) => (Some(path), AudioStatus::Ready),
            Ok(None) => (None, AudioStatus::Unavailable),
            Err(_) => {
                tracing::info!(conversation_id = %conversation, deadline_ms = deadline.as_millis() as u64, "reply narration missed its deadline; the reply goes without audio");
                self.metrics()
                    .record_fallback("narrate_reply", "deadline", "no_audio");
                (None, AudioStatus::TimedOut)
            }
        }
    }

    /// Narrates `text` (in the account's cloned voice when there is one) into the media
    /// directory; `None` when no narrator can.
    async fn speak(
        &self,
        owner: &User,
        conversation: ConversationId,
        text: &str,
    ) -> Option<String> {
        let context = format!("conversation {conversation}");
        let spoken = self
            .providers()
            .narrate(
                text,
                owner.voice_id.as_deref(),
                "narrate_reply",
                &context,
                self.metrics(),
                |provider, a| self.observer("narrate_reply", provider)(a),
            )
            .await;
        let media = match spoken {
            Ok(media) => media,
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
        // Labelled as AI-made, with the provider and model, in its own metadata.
        let bytes = media.labelled(&self.providers().made_by(media.made_by));
        match self.media().write(&relative, &bytes).await {
            Ok(_) => Some(relative),
            Err(e) => {
                tracing::error!(error = %e, "storing a spoken reply failed");
                None
            }
        }
    }
}
