//! Retention (issue 33; COPPA asks for a written retention policy): what the service
//! keeps, for how long, and the purge that deletes the rest. The policy is configured
//! (`JJONGAL_RETAIN_*`) and written in docs/privacy.md:
//!
//! - ended conversations (messages, spoken replies) unchanged for
//!   `JJONGAL_RETAIN_CONVERSATIONS_DAYS` are deleted;
//! - spoken replies of ended conversations lose their audio after
//!   `JJONGAL_RETAIN_REPLY_AUDIO_DAYS` (the text stays);
//! - voice samples go once the voice is cloned (`JJONGAL_RETAIN_VOICE_SAMPLES`
//!   `until-cloned`, the default) — at the clone itself, and any sent later at the next
//!   purge;
//! - the child's spoken utterances are never kept (transcribed, then dropped);
//! - sample files without a row (from versions before the consent) are swept.
//!
//! The purge runs every `JJONGAL_PURGE_INTERVAL_SECS` in every process, but only the
//! process that takes the interval's slot in `purge_runs` purges, so one purge runs per
//! interval across processes; each run is recorded there with what it deleted (the
//! audit operators read in `ops.purges`).

use crate::config::SampleRetention;
use crate::domain::Retention;
use crate::error::AppResult;
use crate::store::models::PurgeRunRow;
use crate::store::{self, to_db};
use crate::vocabulary::PurgeRunId;

/// What one purge deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    pub conversations: usize,
    pub reply_audio: usize,
    pub voice_samples: usize,
}

/// A purge run as recorded.
#[derive(Clone, Debug)]
pub struct PurgeRun {
    pub trigger: String,
    pub process: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
    pub purged: Purged,
    pub error: Option<String>,
}

/// Spoken replies forgotten per statement.
const AUDIO_BATCH: i64 = 500;

impl Retention<'_> {
    /// The scheduled purge: runs if this interval's slot is free (no other process took
    /// it); `None` when another did.
    pub async fn purge_if_due(&self, process: &str) -> AppResult<Option<Purged>> {
        let interval = self.config().retention.purge_interval.as_secs().max(1) as i64;
        let slot = store::now().timestamp().div_euclid(interval);
        self.purge(Some(slot), "scheduled", process).await
    }

    /// A purge now, whatever the schedule (`jjongal purge`).
    pub async fn purge_now(&self, process: &str) -> AppResult<Purged> {
        Ok(self
            .purge(None, "command", process)
            .await?
            .unwrap_or_default())
    }

    async fn purge(
        &self,
        slot: Option<i64>,
        trigger: &str,
        process: &str,
    ) -> AppResult<Option<Purged>> {
        let row = PurgeRunRow {
            id: PurgeRunId::random(),
            slot,
            trigger: trigger.to_string(),
            process: process.to_string(),
            started_at: to_db(store::now()),
            finished_at: None,
            conversations: 0,
            reply_audio: 0,
            voice_samples: 0,
            error: None,
        };
        if !store::retention::start_run(&mut self.pool().get().await?.db(), &row).await? {
            return Ok(None);
        }
        let mut purged = Purged::default();
        let outcome = self.delete_expired(&mut purged).await;
        let counts = (
            purged.conversations as i32,
            purged.reply_audio as i32,
            purged.voice_samples as i32,
        );
        store::retention::finish_run(
            &mut self.pool().get().await?.db(),
            row.id,
            counts,
            // The cause goes to the log (by the caller), never into the record.
            outcome
                .is_err()
                .then_some("the purge stopped short; see the log"),
            to_db(store::now()),
        )
        .await?;
        tracing::info!(
            trigger,
            conversations = purged.conversations,
            reply_audio = purged.reply_audio,
            voice_samples = purged.voice_samples,
            "retention purge"
        );
        outcome?;
        Ok(Some(purged))
    }

    /// Deletes what the policy no longer keeps, counting into `purged` as it goes (so a
    /// failure part-way still records what was done).
    async fn delete_expired(&self, purged: &mut Purged) -> AppResult<()> {
        let retention = &self.config().retention;
        let now = store::now();
        // The instant `d` before now (the earliest there is, for a span too long).
        let age = |d: std::time::Duration| {
            let back = chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
            to_db(
                now.checked_sub_signed(back)
                    .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC),
            )
        };
        // Ended conversations, with their spoken replies' files.
        let gone = store::retention::delete_conversations_before(
            &mut self.pool().get().await?.db(),
            age(retention.conversations),
        )
        .await?;
        for (id, owner) in &gone {
            self.media()
                .remove_dir(&format!("{owner}/conversations/{id}"))
                .await;
        }
        purged.conversations = gone.len();
        // Spoken replies' audio: the rows first (never a URL to a missing file), then
        // the files.
        loop {
            let batch = store::retention::reply_audio_before(
                &mut self.pool().get().await?.db(),
                age(retention.reply_audio),
                AUDIO_BATCH,
            )
            .await?;
            if batch.is_empty() {
                break;
            }
            let ids: Vec<_> = batch.iter().map(|(id, _)| *id).collect();
            store::retention::clear_reply_audio(&mut self.pool().get().await?.db(), &ids).await?;
            for (_, path) in &batch {
                self.media().remove_file(path).await;
            }
            purged.reply_audio += batch.len();
            if (batch.len() as i64) < AUDIO_BATCH {
                break;
            }
        }
        // Voice samples of cloned voices.
        if retention.voice_samples == SampleRetention::UntilCloned {
            let samples =
                store::retention::delete_samples_of_cloned(&mut self.pool().get().await?.db())
                    .await?;
            for (owner, file) in &samples {
                self.voices().remove_sample_file(*owner, file).await;
            }
            purged.voice_samples = samples.len();
        }
        // Sample files without a row (older versions', or a write that lost a race with
        // a deletion).
        purged.voice_samples += self.voices().sweep_orphan_files().await?;
        Ok(())
    }

    /// The newest `n` purge runs (the audit).
    pub async fn runs(&self, n: i64) -> AppResult<Vec<PurgeRun>> {
        let rows = store::retention::runs(&mut self.pool().get().await?.db(), n).await?;
        Ok(rows
            .into_iter()
            .map(|r| PurgeRun {
                trigger: r.trigger,
                process: r.process,
                started_at: store::from_db(r.started_at),
                finished_at: r.finished_at.map(store::from_db),
                purged: Purged {
                    conversations: r.conversations as usize,
                    reply_audio: r.reply_audio as usize,
                    voice_samples: r.voice_samples as usize,
                },
                error: r.error,
            })
            .collect())
    }
}
