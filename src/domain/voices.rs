//! Voice samples and the cloned voice (contract §6). Samples are stored per account on
//! disk, outside the media directory (never reachable by URL), with their count in the
//! database; at the configured count the voice is cloned once.

use super::Voices;
use super::accounts::User;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::events::Event;
use crate::providers::audio::sniff;
use crate::providers::data_map::Destination;
use crate::providers::retry::{with_retry, with_retry_if};
use crate::providers::voice::Sample;
use crate::providers::{ErrorKind, ProviderError};
use crate::store::models::{VoiceConsentRow, VoiceDeletionRow, VoiceSampleRow};
use crate::store::voices::{NotAdmitted, SampleCaps};
use crate::store::{self, to_db};
use crate::vocabulary::{
    DeletionStatus, UserId, VoiceConsentId, VoiceDeletionId, VoiceSampleId, VoiceStatus,
};
use chrono::{DateTime, Utc};

/// The version of the voice-cloning consent text ([`consent_text`]). A new wording gets a
/// new version; a guardian agrees to the version they were shown.
pub(crate) const CONSENT_VERSION: &str = "2026-12-05";

/// Whose voice the samples are. Only the guardian's: a child's voice is never cloned.
pub(crate) const VOICE_OF_GUARDIAN: &str = "guardian";

/// The provider of a consent when no voice provider is configured (samples stay here).
pub(crate) const NO_PROVIDER: &str = "none";

/// What a guardian agrees to for voice cloning in this configuration.
#[derive(Clone, Debug)]
pub(crate) struct ConsentTerms {
    /// The voice provider's address the samples go to, or [`NO_PROVIDER`].
    pub provider: String,
    pub text_version: &'static str,
    pub text: String,
}

/// The consent text of [`CONSENT_VERSION`] for `provider` (its address, or
/// [`NO_PROVIDER`]).
pub(crate) fn consent_text(provider: &str) -> String {
    let goes = if provider == NO_PROVIDER {
        "이 서버에는 목소리 복제 서비스가 설정되어 있지 않아, 샘플은 이 서버에만 보관되고 어디로도 보내지지 않습니다. 나중에 서비스가 설정되면 그 서비스에 대해 다시 동의를 받습니다.".to_string()
    } else {
        format!(
            "샘플(완성된 오디오 파일)은 목소리 복제를 위해 목소리 복제 서비스 {provider} 에 한 번 보내지고, 그곳에 만들어진 복제 목소리는 이 계정의 이야기와 쫑이의 대답을 읽어 주는 데 쓰입니다. 다른 서비스로 보내려면 다시 동의를 받습니다."
        )
    };
    format!(
        "목소리 복제 동의 (버전 {CONSENT_VERSION})\n\
         1. 이 계정으로 녹음해 보내는 음성 샘플은 보호자인 저 자신의 목소리이며, 아이의 목소리가 아닙니다. 아이가 대화에서 한 말은 복제에 쓰이지 않습니다.\n\
         2. {goes}\n\
         3. 어떤 데이터가 어느 서비스로 가는지는 이 서버의 /privacy 페이지에 있습니다.\n\
         4. 이 동의는 언제든 철회할 수 있고, 철회하면 보관된 샘플과 복제된 목소리(서비스에 있는 것까지)가 삭제됩니다."
    )
}

/// The account's voice-cloning consent: the standing one, if any, and the terms in force.
#[derive(Clone, Debug)]
pub(crate) struct VoiceConsent {
    pub standing: Option<GivenConsent>,
    pub terms: ConsentTerms,
}

/// A consent as recorded.
#[derive(Clone, Debug)]
pub(crate) struct GivenConsent {
    pub voice_of: String,
    pub provider: String,
    pub text_version: String,
    pub text: String,
    pub given_at: DateTime<Utc>,
    pub withdrawn_at: Option<DateTime<Utc>>,
}

impl From<VoiceConsentRow> for GivenConsent {
    fn from(row: VoiceConsentRow) -> GivenConsent {
        GivenConsent {
            voice_of: row.voice_of,
            provider: row.provider,
            text_version: row.text_version,
            text: row.text,
            given_at: store::from_db(row.given_at),
            withdrawn_at: row.withdrawn_at.map(store::from_db),
        }
    }
}

/// A guardian's agreement, as sent: whose voice, and the version and provider they were
/// shown (both must be the ones in force).
pub(crate) struct GiveConsent {
    pub voice_of: String,
    pub text_version: String,
    pub provider: String,
    /// The guardian's password: only the guardian holds it (the child's app holds the
    /// same token).
    pub password: String,
}

/// A mono 16-bit little-endian PCM recording as a WAV file (the 44-byte RIFF header, then
/// the samples as they are).
/// What became of a voice sample.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SampleAdded {
    /// Stored: the account now has `count` samples (`ready` for cloning); `clone_due`
    /// when this sample is the one to clone at ([`Voices::clone_when_due`]).
    Stored {
        count: i64,
        ready: bool,
        clone_due: bool,
    },
    /// Not stored: the account's samples are at their caps (the message says which).
    Full(String),
}

pub(crate) fn pcm_wav(sample_rate: u32, pcm: &[u8]) -> Vec<u8> {
    let data_len = pcm.len() as u32;
    let mut wav = Vec::with_capacity(44 + pcm.len());
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&sample_rate.to_le_bytes());
    wav.extend_from_slice(&(sample_rate * 2).to_le_bytes()); // bytes per second
    wav.extend_from_slice(&2u16.to_le_bytes()); // bytes per frame
    wav.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    wav.extend_from_slice(pcm);
    wav
}

impl Voices<'_> {
    /// The voice provider's address a consent is for in this configuration (from the
    /// data map made at start-up), or [`NO_PROVIDER`].
    fn consent_provider(&self) -> String {
        self.providers()
            .data_map
            .iter()
            .find(|flow| flow.capability == "voice")
            .and_then(|flow| match &flow.destination {
                Destination::Provider { url, .. } => Some(url.clone()),
                _ => None,
            })
            .unwrap_or_else(|| NO_PROVIDER.to_string())
    }

    /// The terms a guardian agrees to in this configuration.
    pub(crate) fn consent_terms(&self) -> ConsentTerms {
        let provider = self.consent_provider();
        let text = consent_text(&provider);
        ConsentTerms {
            provider,
            text_version: CONSENT_VERSION,
            text,
        }
    }

    /// The account's standing consent (for the provider in force) and the terms.
    pub(crate) async fn voice_consent(&self, owner: UserId) -> AppResult<VoiceConsent> {
        let terms = self.consent_terms();
        let row = store::voices::current_consent(
            &mut self.pool().get().await?.db(),
            owner,
            &terms.provider,
        )
        .await?;
        Ok(VoiceConsent {
            standing: row.map(GivenConsent::from),
            terms,
        })
    }

    /// Every consent the account gave, newest first (for the guardian's export).
    pub(crate) async fn consent_history(&self, owner: UserId) -> AppResult<Vec<GivenConsent>> {
        let rows = store::voices::consents(&mut self.pool().get().await?.db(), owner).await?;
        Ok(rows.into_iter().map(GivenConsent::from).collect())
    }

    /// Records the guardian's voice-cloning consent (idempotent: a standing one is
    /// answered as it is). Refused unless it is for the guardian's own voice, on the
    /// text version and for the provider in force, confirmed with the guardian's
    /// password.
    pub(crate) async fn give_voice_consent(
        &self,
        owner: UserId,
        given: GiveConsent,
    ) -> AppResult<VoiceConsent> {
        let terms = self.consent_terms();
        if given.voice_of != VOICE_OF_GUARDIAN {
            return Err(AppError::validation(
                "목소리 복제는 보호자 본인의 목소리만 할 수 있어요 (voice_of: \"guardian\"). 아이의 목소리는 복제하지 않아요.",
            ));
        }
        if given.text_version != terms.text_version {
            return Err(AppError::new(
                ErrorCode::Conflict,
                format!(
                    "동의 문구가 바뀌었어요 (지금 버전 {}). 새 문구를 보여 드린 뒤 다시 동의를 받아 주세요.",
                    terms.text_version
                ),
            ));
        }
        if given.provider != terms.provider {
            return Err(AppError::new(
                ErrorCode::Conflict,
                format!(
                    "샘플을 받을 목소리 복제 서비스가 바뀌었어요 (지금: {}). 새 문구를 보여 드린 뒤 다시 동의를 받아 주세요.",
                    terms.provider
                ),
            ));
        }
        if !self
            .accounts()
            .confirm_password(owner, &given.password)
            .await?
        {
            return Err(AppError::new(
                ErrorCode::InsufficientPermission,
                "보호자 비밀번호가 맞지 않아요. 목소리 복제 동의는 보호자만 할 수 있어요.",
            ));
        }
        let row = VoiceConsentRow {
            id: VoiceConsentId::random(),
            owner_id: owner,
            voice_of: VOICE_OF_GUARDIAN.to_string(),
            provider: terms.provider.clone(),
            text_version: terms.text_version.to_string(),
            text: terms.text.clone(),
            given_at: to_db(store::now()),
            withdrawn_at: None,
        };
        let standing =
            store::voices::give_consent(&mut self.pool().get().await?.db(), &row).await?;
        if standing.id == row.id {
            tracing::info!(user_id = %owner, provider = %terms.provider, version = terms.text_version, "voice-cloning consent given");
        }
        Ok(VoiceConsent {
            standing: Some(standing.into()),
            terms,
        })
    }

    /// Withdraws the guardian's voice-cloning consent: no sample is admitted after it,
    /// and the samples and the cloned voice (at the provider too) are deleted as by
    /// [`Self::delete_voice`]. Without a standing consent, the voice is deleted all the
    /// same (there is nothing it may keep).
    pub(crate) async fn withdraw_voice_consent(&self, owner: &User) -> AppResult<()> {
        let withdrawn = store::voices::withdraw_consents(
            &mut self.pool().get().await?.db(),
            owner.id,
            to_db(store::now()),
        )
        .await?;
        if withdrawn {
            tracing::info!(user_id = %owner.id, "voice-cloning consent withdrawn");
        }
        self.delete_voice(owner).await
    }

    fn samples_dir(&self, owner: UserId) -> std::path::PathBuf {
        self.config()
            .data_dir
            .join("voice-samples")
            .join(owner.to_string())
    }

    /// Stores one voice sample (a binary frame of the conversation socket) and clones the
    /// voice at the threshold. Progress, success and cloning failures are announced on the
    /// account's voice events (`voiceEvents`); an unusable sample is an error here.
    pub(crate) async fn add_voice_sample(
        &self,
        owner: &User,
        bytes: &[u8],
        origin: Option<u64>,
    ) -> AppResult<SampleAdded> {
        let Some(format) = sniff(bytes) else {
            return Err(AppError::code_only(ErrorCode::InvalidAudio));
        };
        let ext = format.extension;
        let id = VoiceSampleId::random();
        let row = VoiceSampleRow {
            id,
            owner_id: owner.id,
            path: format!("{id}.{ext}"),
            format: ext.to_string(),
            size_bytes: bytes.len() as i64,
            created_at: to_db(store::now()),
        };
        // The row first, admitted under the account's caps in one transaction (so two
        // sockets cannot both take the last place); the file after. A refused sample
        // stores nothing.
        let config = self.config();
        let caps = SampleCaps {
            count: i64::from(config.voice_max_samples),
            bytes: config.voice_max_sample_bytes as i64,
        };
        let provider = self.consent_provider();
        let mut conn = self.pool().get().await?;
        let admitted = store::voices::admit_sample(&mut conn.db(), &row, caps, &provider).await?;
        drop(conn);
        let count = match admitted {
            Ok(count) => count,
            Err(NotAdmitted::NoConsent) => {
                return Err(AppError::code_only(ErrorCode::VoiceConsentRequired));
            }
            Err(NotAdmitted::Full) => {
                return Ok(SampleAdded::Full(format!(
                    "목소리 샘플은 {}개, 모두 {}MB까지 보관할 수 있어요. 목소리를 지운 뒤 다시 녹음해 주세요.",
                    config.voice_max_samples,
                    config.voice_max_sample_bytes / (1024 * 1024)
                )));
            }
        };
        // Whole or not at all: the clone reads the samples, and a full disk must not
        // leave a truncated one counted.
        let path = self.samples_dir(owner.id).join(&row.path);
        let stored = crate::media::write_file_whole(path.clone(), bytes.to_vec()).await;
        if let Err(e) = stored {
            let mut conn = self.pool().get().await?;
            let _ = store::voices::delete_sample(&mut conn.db(), row.id).await;
            return Err(AppError::Internal(anyhow::anyhow!(
                "storing a voice sample: {e}"
            )));
        }
        // A withdrawal (or the clone, or the purge) that deleted the row while the file
        // was being written removed the folder before the file came: the file goes too.
        let kept = store::voices::sample_exists(&mut self.pool().get().await?.db(), row.id).await?;
        if !kept {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(AppError::validation(
                "이 샘플은 보관하지 않았어요: 그사이 목소리 동의가 철회되었거나 목소리가 복제되었어요.",
            ));
        }
        let threshold = i64::from(self.config().voice_clone_samples);
        self.events()
            .publish(Event::VoiceProgress {
                user: owner.id,
                count,
                ready: count >= threshold,
                origin,
            })
            .await;
        // At the threshold, and after a failed attempt only once `threshold` more samples
        // have come (not on every new one: each attempt reads samples and calls out).
        Ok(SampleAdded::Stored {
            count,
            ready: count >= threshold,
            clone_due: count >= threshold && (count - threshold) % threshold == 0,
        })
    }

    /// Removes sample files that have no row (left by versions before the consent, or by
    /// a deletion that raced a write); how many. The files are listed before the rows are
    /// read, and a sample's row is written before its file, so a sample being stored is
    /// never taken for an orphan; files still being written (`.part`) are left alone.
    pub(crate) async fn sweep_orphan_files(&self) -> AppResult<usize> {
        let root = self.config().data_dir.join("voice-samples");
        let mut owners = match tokio::fs::read_dir(&root).await {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(AppError::Internal(e.into())),
        };
        let mut removed = 0;
        while let Some(dir) = owners
            .next_entry()
            .await
            .map_err(|e| AppError::Internal(e.into()))?
        {
            let Some(owner) = dir
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<UserId>().ok())
            else {
                continue;
            };
            let mut files = Vec::new();
            if let Ok(mut entries) = tokio::fs::read_dir(dir.path()).await {
                while let Ok(Some(f)) = entries.next_entry().await {
                    if let Some(name) = f.file_name().to_str()
                        && !name.ends_with(".part")
                    {
                        files.push(name.to_string());
                    }
                }
            }
            if files.is_empty() {
                continue;
            }
            let rows = store::voices::samples_of(&mut self.pool().get().await?.db(), owner).await?;
            for file in files {
                if !rows.iter().any(|r| r.path == file) {
                    self.remove_sample_file(owner, &file).await;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Removes one stored sample's file (its row is gone already).
    pub(crate) async fn remove_sample_file(&self, owner: UserId, file: &str) {
        // A file name as stored (`{id}.{ext}`), never a path.
        if file.contains(['/', '\\']) || file.starts_with('.') {
            return;
        }
        let path = self.samples_dir(owner).join(file);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "removing a voice sample")
            }
        }
    }

    /// How many samples `owner` has stored.
    pub async fn sample_count(&self, owner: UserId) -> AppResult<i64> {
        Ok(store::voices::sample_count(&mut self.pool().get().await?.db(), owner).await?)
    }

    /// Clones `owner`'s voice if it has not been (after a sample said `clone_due`; the
    /// caller tells its client of the sample first; exactly one caller wins the claim).
    /// Success or failure is announced on the account's voice events.
    pub(crate) async fn clone_when_due(&self, owner: &User) -> AppResult<()> {
        // Without a voice provider there is nothing to try: the samples wait (the
        // guardian sees them in the voice status; the child's socket was told once).
        let Some(cloner) = self.providers().cloner.clone() else {
            return Ok(());
        };
        let oid = owner.id;
        let mut conn = self.pool().get().await?;
        // Only under the guardian's consent for this provider (a withdrawal from here on
        // deletes the voice, and `end_cloning` then deletes the new clone).
        let provider = self.consent_provider();
        let Some(consent) = store::voices::current_consent(&mut conn.db(), oid, &provider).await?
        else {
            return Ok(());
        };
        if !store::voices::claim_cloning(&mut conn.db(), oid).await? {
            return Ok(());
        }
        // Only samples admitted under this consent (not one given for another provider).
        let n = i64::from(self.config().voice_clone_samples);
        let rows = store::voices::newest_samples(&mut conn.db(), oid, consent.given_at, n).await?;
        drop(conn);
        let dir = self.samples_dir(owner.id);
        let mut samples = Vec::new();
        for row in &rows {
            if let Ok(bytes) = tokio::fs::read(dir.join(&row.path)).await {
                let content_type = sniff(&bytes)
                    .map(|f| f.content_type)
                    .unwrap_or("application/octet-stream");
                samples.push(Sample {
                    bytes,
                    file_name: row.path.clone(),
                    content_type,
                });
            }
        }
        let name = format!("jjongal-{}", owner.id);
        let providers = self.providers();
        let result = match providers.voice_slots.acquire().await {
            Ok(_slot) => {
                // Busy (429), failing (5xx) or unreachable: tried again. Not after a
                // timeout: that clone may have been made, and a second would be a voice
                // nobody knows of.
                with_retry_if(
                    providers.retry,
                    || cloner.clone_voice(&name, &samples),
                    self.metrics().observer("clone_voice", "elevenlabs-voices"),
                    |e| e.kind.retryable() && e.kind != ErrorKind::Timeout,
                )
                .await
            }
            Err(_) => Err(ProviderError::new(ErrorKind::Unavailable, "shutting down")),
        };
        let (status, voice_id, event) = match result {
            Ok(voice_id) => (
                VoiceStatus::Cloned,
                Some(voice_id.clone()),
                Event::VoiceCloned {
                    user: owner.id,
                    voice_id,
                },
            ),
            Err(e) => {
                let failure = clone_failure(&e, self.config().voice_clone_samples);
                tracing::warn!(
                    user_id = %owner.id,
                    error = %e,
                    provider_status = e.status,
                    provider_code = e.code.as_deref().unwrap_or(""),
                    retryable = failure.retryable,
                    "voice cloning failed"
                );
                (
                    VoiceStatus::NotCloned,
                    None,
                    Event::VoiceCloneFailed {
                        user: owner.id,
                        message: failure.message,
                        retryable: failure.retryable,
                    },
                )
            }
        };
        let mut conn = self.pool().get().await?;
        let kept =
            store::voices::end_cloning(&mut conn.db(), oid, status, voice_id.as_deref()).await?;
        // Cloned: the samples are of no further use and, by default, not kept
        // (docs/privacy.md, *Retention*).
        let delete_samples = kept
            && status == VoiceStatus::Cloned
            && self.config().retention.voice_samples == crate::config::SampleRetention::UntilCloned;
        if delete_samples {
            store::voices::delete_samples(&mut conn.db(), oid).await?;
        }
        drop(conn);
        if delete_samples {
            crate::media::remove_tree(&self.samples_dir(oid), "removing cloned voice samples")
                .await;
            tracing::info!(user_id = %oid, "voice cloned; its samples deleted (JJONGAL_RETAIN_VOICE_SAMPLES=until-cloned)");
        }
        if !kept {
            // The voice (or the account) was deleted while it was being cloned: the new
            // voice must not outlive that.
            if let Some(id) = voice_id {
                tracing::info!(user_id = %oid, "voice deleted while cloning; deleting the new clone");
                self.delete_at_provider(oid, &id).await?;
            }
            return Ok(());
        }
        self.announce(event).await;
        Ok(())
    }

    /// Removes the samples, the stored voice id and the voice at the provider. The
    /// family's erasure never waits on the provider: the deletion is recorded first
    /// (`voice_deletions`), the local data goes, then the provider is asked within a
    /// short deadline; what it did not confirm stays recorded for the operator
    /// (`jjongal voices retry-deletions`).
    pub(crate) async fn delete_voice(&self, owner: &User) -> AppResult<()> {
        let oid = owner.id;
        let voice_id = store::voices::voice_id(&mut self.pool().get().await?.db(), oid).await?;
        // The record before anything is removed: a request cut short from here on still
        // leaves the voice known to the operator.
        let record = match &voice_id {
            Some(id) => Some(self.record_deletion(oid, id).await?),
            None => None,
        };
        let mut conn = self.pool().get().await?;
        let mut db = conn.db();
        store::voices::delete_samples(&mut db, oid).await?;
        store::voices::set_voice(&mut db, oid, VoiceStatus::NotCloned, None).await?;
        drop(conn);
        // The account's voice is gone: no copy of the account keeps it.
        self.announce(Event::AccountUpdated { user: oid }).await;
        crate::media::remove_tree(&self.samples_dir(owner.id), "removing voice samples").await;
        if let (Some(id), Some(record)) = (voice_id, record) {
            self.settle_at_provider(oid, &id, record).await?;
        }
        Ok(())
    }

    /// Deletes voice `id` (of account `owner`) at the provider: recorded as pending
    /// first, so that nothing — a provider that cannot delete, a deadline, a cancelled
    /// request — forgets it.
    async fn delete_at_provider(&self, owner: UserId, id: &str) -> AppResult<()> {
        let record = self.record_deletion(owner, id).await?;
        self.settle_at_provider(owner, id, record).await
    }

    /// Records voice `id` as pending deletion at the provider; returns the record.
    async fn record_deletion(&self, owner: UserId, id: &str) -> AppResult<VoiceDeletionId> {
        let now = to_db(store::now());
        let row = VoiceDeletionRow {
            id: VoiceDeletionId::random(),
            voice_id: id.to_string(),
            owner_id: owner,
            status: DeletionStatus::Pending,
            last_error: "not yet confirmed by the provider".into(),
            attempts: 0,
            created_at: now,
            updated_at: now,
        };
        store::voices::insert_deletion(&mut self.pool().get().await?.db(), &row).await?;
        Ok(row.id)
    }

    /// Asks the provider to delete voice `id` within a short deadline (a few attempts,
    /// half the request timeout at most) and settles `record` as deleted when it
    /// confirms; otherwise the record stays pending with the provider's answer.
    async fn settle_at_provider(
        &self,
        owner: UserId,
        id: &str,
        record: VoiceDeletionId,
    ) -> AppResult<()> {
        let deadline = (self.config().request_timeout / 2).min(std::time::Duration::from_secs(15));
        let outcome = match tokio::time::timeout(deadline, self.ask_provider_to_delete(id)).await {
            Ok(result) => result,
            Err(_) => Err(ProviderError::new(
                ErrorKind::Timeout,
                format!("no confirmation within {} s", deadline.as_secs()),
            )),
        };
        let (status, error) = match &outcome {
            Ok(()) => (DeletionStatus::Deleted, String::new()),
            Err(e) => {
                tracing::error!(
                    user_id = %owner,
                    error = %e,
                    provider_code = e.code.as_deref().unwrap_or(""),
                    "the voice provider did not delete the cloned voice; recorded for the operator"
                );
                (DeletionStatus::Pending, e.to_string())
            }
        };
        store::voices::settle_deletion(
            &mut self.pool().get().await?.db(),
            record,
            status,
            &error,
            to_db(store::now()),
        )
        .await?;
        Ok(())
    }

    /// One deletion at the voice provider, in a voice slot, with the retry policy.
    async fn ask_provider_to_delete(&self, id: &str) -> Result<(), ProviderError> {
        let providers = self.providers();
        // Cloned with a provider no longer configured: it is still there.
        let Some(cloner) = &providers.cloner else {
            return Err(ProviderError::new(
                ErrorKind::Unavailable,
                "no voice provider is configured (JJONGAL_VOICE_BASE_URL)",
            ));
        };
        let _slot = providers
            .voice_slots
            .acquire()
            .await
            .map_err(|_| ProviderError::new(ErrorKind::Unavailable, "shutting down"))?;
        with_retry(
            providers.retry,
            || cloner.delete_voice(id),
            self.metrics().observer("delete_voice", "elevenlabs-voices"),
        )
        .await
    }

    /// Tries again every voice deletion still pending at the provider (the operator's
    /// `jjongal voices retry-deletions`); with `force`, one the provider still does not
    /// confirm is settled as `forced` (the operator deleted it by other means, or it
    /// cannot be). Returns each row's outcome.
    pub async fn retry_voice_deletions(&self, force: bool) -> AppResult<Vec<DeletionOutcome>> {
        let pending = store::voices::pending_deletions(&mut self.pool().get().await?.db()).await?;
        let mut outcomes = Vec::with_capacity(pending.len());
        for row in pending {
            let attempt = self.ask_provider_to_delete(&row.voice_id).await;
            let (status, error) = match attempt {
                Ok(()) => (DeletionStatus::Deleted, String::new()),
                Err(e) if force => (DeletionStatus::Forced, e.to_string()),
                Err(e) => (DeletionStatus::Pending, e.to_string()),
            };
            let kept_error = if error.is_empty() {
                row.last_error.clone()
            } else {
                error.clone()
            };
            store::voices::settle_deletion(
                &mut self.pool().get().await?.db(),
                row.id,
                status,
                &kept_error,
                to_db(store::now()),
            )
            .await?;
            tracing::info!(voice_id = %row.voice_id, owner = %row.owner_id, status = status.as_str(), "voice deletion retried");
            outcomes.push(DeletionOutcome {
                voice_id: row.voice_id,
                owner_id: row.owner_id.to_string(),
                status: status.as_str(),
                error: (!error.is_empty()).then_some(error),
            });
        }
        Ok(outcomes)
    }
}

/// What `retry_voice_deletions` did with one pending deletion.
#[derive(Debug)]
pub struct DeletionOutcome {
    pub voice_id: String,
    pub owner_id: String,
    /// `deleted`, `forced` or (still) `pending`.
    pub status: &'static str,
    /// The provider's answer when it did not confirm.
    pub error: Option<String>,
}

/// What the guardian is told when cloning failed.
struct CloneFailure {
    message: String,
    /// Whether the service tries again by itself (once more samples come).
    retryable: bool,
}

/// Tells a passing failure (the provider busy or unreachable: it will be tried again)
/// from one that needs the operator (voice slots full, quota, key or URL wrong).
fn clone_failure(e: &ProviderError, threshold: u32) -> CloneFailure {
    let code = e.code.as_deref().unwrap_or_default();
    let permanent = |message: &str| CloneFailure {
        message: message.to_string(),
        retryable: false,
    };
    if code.contains("voice_limit") || code.contains("voice_slots") {
        return permanent(
            "목소리 복제 서비스에 목소리를 더 저장할 자리가 없어요. 운영자에게 알려 주세요. 샘플은 보관되어 있어요.",
        );
    }
    match e.kind {
        ErrorKind::Quota => permanent(
            "목소리 복제 서비스의 사용 한도에 도달했어요. 운영자에게 알려 주세요. 샘플은 보관되어 있어요.",
        ),
        ErrorKind::Unauthorized => permanent(
            "목소리 복제 서비스 설정(키)에 문제가 있어요. 운영자에게 알려 주세요. 샘플은 보관되어 있어요.",
        ),
        ErrorKind::Refused => permanent(
            "목소리 복제 서비스가 이 녹음으로는 목소리를 만들 수 없다고 했어요. 목소리를 지우고 다시 녹음해 주세요.",
        ),
        kind if kind.retryable() => CloneFailure {
            message: format!(
                "목소리 복제 서비스가 지금 응답하지 않아요. 샘플은 보관되어 있으니 샘플이 {threshold}개 더 모이면 다시 시도할게요."
            ),
            retryable: true,
        },
        _ => permanent(
            "목소리 복제 서비스 설정(주소나 요청)에 문제가 있어요. 운영자에게 알려 주세요. 샘플은 보관되어 있어요.",
        ),
    }
}
