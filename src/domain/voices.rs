//! Voice samples and the cloned voice (contract §6). Samples are stored per account on
//! disk, outside the media directory (never reachable by URL), with their count in the
//! database; at the configured count the voice is cloned once.

use super::Voices;
use super::accounts::User;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::events::Event;
use crate::providers::voice::Sample;
use crate::store::models::VoiceSampleRow;
use crate::store::types::{UserId, VoiceSampleId, VoiceStatus};
use crate::store::voices::SampleCaps;
use crate::store::{self, to_db};

/// The audio format of a sample, from its bytes (never from anything the client says).
pub(crate) fn sniff_audio(bytes: &[u8]) -> Option<(&'static str, &'static str)> {
    let at = |i: usize, s: &[u8]| bytes.len() >= i + s.len() && &bytes[i..i + s.len()] == s;
    if at(0, b"RIFF") && at(8, b"WAVE") {
        Some(("wav", "audio/wav"))
    } else if at(0, b"OggS") {
        Some(("ogg", "audio/ogg"))
    } else if at(0, &[0x1A, 0x45, 0xDF, 0xA3]) {
        Some(("webm", "audio/webm"))
    } else if at(4, b"ftyp")
        && (at(8, b"M4A ") || at(8, b"mp42") || at(8, b"isom") || at(8, b"M4B "))
    {
        Some(("m4a", "audio/mp4"))
    } else if at(0, b"ID3")
        || (bytes.len() > 3 && bytes[0] == 0xFF && bytes[1] & 0xE0 == 0xE0 && bytes[1] & 0x06 != 0)
    {
        Some(("mp3", "audio/mpeg"))
    } else {
        None
    }
}

/// A mono 16-bit little-endian PCM recording as a WAV file (the 44-byte RIFF header, then
/// the samples as they are).
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
    fn samples_dir(&self, owner: UserId) -> std::path::PathBuf {
        self.config()
            .data_dir
            .join("voice-samples")
            .join(owner.to_string())
    }

    /// Stores one voice sample (a binary frame of the conversation socket) and clones the
    /// voice at the threshold. Progress, success and cloning failures are announced on the
    /// account's voice events (`voiceEvents`); an unusable sample is an error here.
    pub(crate) async fn add_voice_sample(&self, owner: &User, bytes: &[u8]) -> AppResult<()> {
        let Some((ext, _)) = sniff_audio(bytes) else {
            return Err(AppError::code_only(ErrorCode::InvalidAudio));
        };
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
        let mut conn = self.pool().get().await?;
        let admitted = store::voices::admit_sample(&mut conn.db(), &row, caps).await?;
        drop(conn);
        let count = match admitted {
            Some(count) => count,
            None => {
                return Err(AppError::validation(format!(
                    "목소리 샘플은 {}개, 모두 {}MB까지 보관할 수 있어요. 목소리를 지운 뒤 다시 녹음해 주세요.",
                    config.voice_max_samples,
                    config.voice_max_sample_bytes / (1024 * 1024)
                )));
            }
        };
        let dir = self.samples_dir(owner.id);
        let stored = async {
            tokio::fs::create_dir_all(&dir).await?;
            tokio::fs::write(dir.join(&row.path), bytes).await
        }
        .await;
        if let Err(e) = stored {
            let mut conn = self.pool().get().await?;
            let _ = store::voices::delete_sample(&mut conn.db(), row.id).await;
            return Err(AppError::Internal(anyhow::anyhow!(
                "storing a voice sample: {e}"
            )));
        }
        let threshold = i64::from(self.config().voice_clone_samples);
        self.events()
            .publish(Event::VoiceProgress {
                user: owner.id,
                count,
                ready: count >= threshold,
            })
            .await;
        // At the threshold, and after a failed attempt only once `threshold` more samples
        // have come (not on every new one: each attempt reads samples and calls out).
        if count >= threshold && (count - threshold) % threshold == 0 {
            self.clone_once(owner).await?;
        }
        Ok(())
    }

    /// Clones the voice if it has not been (exactly one caller wins the claim).
    async fn clone_once(&self, owner: &User) -> AppResult<()> {
        let Some(cloner) = self.providers().cloner.clone() else {
            self.events()
                .publish(Event::VoiceCloneFailed {
                    user: owner.id,
                    message: "목소리 복제 서비스가 설정되지 않았습니다. 샘플은 보관되어 있어요."
                        .into(),
                })
                .await;
            return Ok(());
        };
        let oid = owner.id;
        let mut conn = self.pool().get().await?;
        if !store::voices::claim_cloning(&mut conn.db(), oid).await? {
            return Ok(());
        }
        let n = i64::from(self.config().voice_clone_samples);
        let rows = store::voices::newest_samples(&mut conn.db(), oid, n).await?;
        drop(conn);
        let dir = self.samples_dir(owner.id);
        let mut samples = Vec::new();
        for row in &rows {
            if let Ok(bytes) = tokio::fs::read(dir.join(&row.path)).await {
                let content_type = sniff_audio(&bytes)
                    .map(|(_, t)| t)
                    .unwrap_or("application/octet-stream");
                samples.push(Sample {
                    bytes,
                    file_name: row.path.clone(),
                    content_type,
                });
            }
        }
        let result = cloner
            .clone_voice(&format!("jjongal-{}", owner.id), samples)
            .await;
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
                tracing::warn!(user_id = %owner.id, error = %e, "voice cloning failed");
                (
                    VoiceStatus::NotCloned,
                    None,
                    Event::VoiceCloneFailed {
                        user: owner.id,
                        message: format!(
                            "목소리 복제에 실패했어요. 샘플은 보관되어 있으니 샘플이 {}개 더 모이면 다시 시도할게요.",
                            self.config().voice_clone_samples
                        ),
                    },
                )
            }
        };
        let mut conn = self.pool().get().await?;
        store::voices::set_voice(&mut conn.db(), oid, status, voice_id.as_deref()).await?;
        drop(conn);
        self.events().publish(event).await;
        Ok(())
    }

    /// Removes the samples, the stored voice id and the voice at the provider.
    pub(crate) async fn delete_voice(&self, owner: &User) -> AppResult<()> {
        let oid = owner.id;
        let voice_id = store::voices::voice_id(&mut self.pool().get().await?.db(), oid).await?;
        if let (Some(id), Some(cloner)) = (&voice_id, &self.providers().cloner) {
            cloner.delete_voice(id).await.map_err(|e| {
                tracing::warn!(error = %e, "deleting the voice at the provider failed");
                AppError::new(
                    ErrorCode::ServiceUnavailable,
                    "목소리 복제 서비스에서 삭제하지 못했습니다. 잠시 후 다시 시도해 주세요.",
                )
            })?;
        }
        let mut conn = self.pool().get().await?;
        let mut db = conn.db();
        store::voices::delete_samples(&mut db, oid).await?;
        store::voices::set_voice(&mut db, oid, VoiceStatus::NotCloned, None).await?;
        drop(conn);
        crate::media::remove_tree(&self.samples_dir(owner.id), "removing voice samples").await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_come_from_the_bytes() {
        assert_eq!(sniff_audio(b"RIFF\0\0\0\0WAVEfmt ").unwrap().0, "wav");
        assert_eq!(sniff_audio(b"OggS\0\x02").unwrap().0, "ogg");
        assert_eq!(sniff_audio(&[0x1A, 0x45, 0xDF, 0xA3, 1]).unwrap().0, "webm");
        assert_eq!(sniff_audio(b"\0\0\0\x20ftypM4A \0").unwrap().0, "m4a");
        assert_eq!(sniff_audio(b"ID3\x04\0\0").unwrap().0, "mp3");
        assert_eq!(sniff_audio(&[0xFF, 0xFB, 0x90, 0x00]).unwrap().0, "mp3");
        assert!(sniff_audio(b"\x89PNG\r\n\x1a\n").is_none());
        assert!(sniff_audio(b"hello").is_none());
        assert!(sniff_audio(b"").is_none());
    }
}

#[cfg(test)]
mod properties {
    use super::sniff_audio;
    use proptest::prelude::*;

    proptest! {
        /// Any bytes: a known format or none, never a panic (short inputs included).
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = sniff_audio(&bytes);
        }

        /// Each container's magic decides, whatever follows it.
        #[test]
        fn magic_numbers_decide(size in any::<[u8; 4]>(), rest in prop::collection::vec(any::<u8>(), 0..64)) {
            let with = |head: &[u8]| [head, &rest].concat();
            let wav = [b"RIFF".as_slice(), &size, b"WAVE"].concat();
            prop_assert_eq!(sniff_audio(&with(&wav)).map(|f| f.0), Some("wav"));
            prop_assert_eq!(sniff_audio(&with(b"OggS")).map(|f| f.0), Some("ogg"));
            prop_assert_eq!(sniff_audio(&with(&[0x1A, 0x45, 0xDF, 0xA3])).map(|f| f.0), Some("webm"));
            let m4a = [size.as_slice(), b"ftypM4A "].concat();
            prop_assert_eq!(sniff_audio(&with(&m4a)).map(|f| f.0), Some("m4a"));
            prop_assert_eq!(sniff_audio(&with(b"ID3")).map(|f| f.0), Some("mp3"));
        }

        /// JSON or SVG text is never taken for audio (unless it spells an MP4 box
        /// header, which is how MP4 is recognised).
        #[test]
        fn text_is_not_audio(text in "[{<][ -~]{0,63}") {
            prop_assume!(!text.contains("ftyp"));
            prop_assert_eq!(sniff_audio(text.as_bytes()), None);
        }
    }
}
