//! Voice samples and the cloned voice (contract §6). Samples are stored per account on
//! disk, outside the media directory (never reachable by URL), with their count in the
//! database; at the configured count the voice is cloned once.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::Domain;
use super::accounts::User;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::events::Event;
use crate::providers::voice::Sample;
use crate::store::models::VoiceSampleRow;
use crate::store::schema::{users, voice_samples};
use crate::store::{self, to_db};
use crate::{with_conn, with_locked_tx};

/// Whether a sample found room under the account's caps.
enum Admission {
    /// Stored as the account's n-th sample.
    Admitted(i64),
    Full,
}

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

impl Domain {
    fn samples_dir(&self, owner: Uuid) -> std::path::PathBuf {
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
        let id = Uuid::new_v4();
        let row = VoiceSampleRow {
            id: id.to_string(),
            owner_id: owner.id.to_string(),
            path: format!("{id}.{ext}"),
            format: ext.to_string(),
            size_bytes: bytes.len() as i64,
            created_at: to_db(store::now()),
        };
        // The row first, admitted under the account's caps in one transaction (so two
        // sockets cannot both take the last place); the file after. A refused sample
        // stores nothing.
        let count = match self.admit_sample(&row).await? {
            Admission::Admitted(count) => count,
            Admission::Full => {
                let config = self.config();
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
            let _ = with_conn!(&mut conn, |c| {
                diesel::delete(voice_samples::table.find(&row.id))
                    .execute(c)
                    .await
            });
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

    /// Inserts the sample's row unless that takes the account over its caps; returns the
    /// count. The row is written first (so on SQLite the transaction holds the write lock
    /// from its first statement), then the account's samples are counted with it, and
    /// the transaction is rolled back if they are too many; on PostgreSQL an advisory lock
    /// per account serialises concurrent samples of one account.
    async fn admit_sample(&self, row: &VoiceSampleRow) -> AppResult<Admission> {
        enum Refused {
            Db(diesel::result::Error),
            Full,
        }
        impl From<diesel::result::Error> for Refused {
            fn from(e: diesel::result::Error) -> Refused {
                Refused::Db(e)
            }
        }
        let max_samples = i64::from(self.config().voice_max_samples);
        let max_bytes = self.config().voice_max_sample_bytes as i64;
        macro_rules! admit {
            ($c:ident) => {{
                diesel::insert_into(voice_samples::table)
                    .values(row)
                    .execute($c)
                    .await?;
                // A few rows at most (the cap), so summed here, not as SQL NUMERIC.
                let sizes: Vec<i64> = voice_samples::table
                    .filter(voice_samples::owner_id.eq(&row.owner_id))
                    .select(voice_samples::size_bytes)
                    .load($c)
                    .await?;
                let count = sizes.len() as i64;
                if count > max_samples || sizes.iter().sum::<i64>() > max_bytes {
                    return Err(Refused::Full);
                }
                Ok(count)
            }};
        }
        let mut conn = self.pool().get().await?;
        let key = format!("voice:{}", row.owner_id);
        let admitted: Result<i64, Refused> = with_locked_tx!(&mut conn, &key, |c| admit!(c));
        match admitted {
            Ok(count) => Ok(Admission::Admitted(count)),
            Err(Refused::Full) => Ok(Admission::Full),
            Err(Refused::Db(e)) => Err(e.into()),
        }
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
        let oid = owner.id.to_string();
        let mut conn = self.pool().get().await?;
        let claimed = with_conn!(&mut conn, |c| {
            diesel::update(
                users::table
                    .find(&oid)
                    .filter(users::voice_status.eq("none")),
            )
            .set(users::voice_status.eq("cloning"))
            .execute(c)
            .await
        })?;
        drop(conn);
        if claimed == 0 {
            return Ok(());
        }
        let rows: Vec<VoiceSampleRow> = {
            let mut conn = self.pool().get().await?;
            with_conn!(&mut conn, |c| {
                voice_samples::table
                    .filter(voice_samples::owner_id.eq(&oid))
                    .order_by(voice_samples::created_at.desc())
                    .limit(i64::from(self.config().voice_clone_samples))
                    .select(VoiceSampleRow::as_select())
                    .load(c)
                    .await
            })?
        };
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
                "cloned",
                Some(voice_id.clone()),
                Event::VoiceCloned {
                    user: owner.id,
                    voice_id,
                },
            ),
            Err(e) => {
                tracing::warn!(user_id = %owner.id, error = %e, "voice cloning failed");
                (
                    "none",
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
        with_conn!(&mut conn, |c| {
            diesel::update(users::table.find(&oid))
                .set((
                    users::voice_status.eq(status),
                    users::voice_id.eq(voice_id.as_deref()),
                ))
                .execute(c)
                .await
        })?;
        drop(conn);
        self.events().publish(event).await;
        Ok(())
    }

    /// Removes the samples, the stored voice id and the voice at the provider.
    pub(crate) async fn delete_voice(&self, owner: &User) -> AppResult<()> {
        let oid = owner.id.to_string();
        let mut conn = self.pool().get().await?;
        let voice_id: Option<String> = with_conn!(&mut conn, |c| {
            users::table
                .find(&oid)
                .select(users::voice_id)
                .first(c)
                .await
        })?;
        drop(conn);
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
        with_conn!(&mut conn, |c| {
            diesel::delete(voice_samples::table.filter(voice_samples::owner_id.eq(&oid)))
                .execute(c)
                .await?;
            diesel::update(users::table.find(&oid))
                .set((
                    users::voice_status.eq("none"),
                    users::voice_id.eq(None::<String>),
                ))
                .execute(c)
                .await
        })?;
        drop(conn);
        match tokio::fs::remove_dir_all(self.samples_dir(owner.id)).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::error!(error = %e, "removing voice samples"),
        }
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
