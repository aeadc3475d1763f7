//! The operations figures: stories by status, the queue, open conversations and sockets,
//! and each generation step's and provider's attempts over a window.

use crate::domain::Ops;
use crate::domain::accounts::User;
use crate::domain::stories::StoryStatus;
use crate::error::{AppError, AppResult};
use crate::store::{self, from_db, to_db};

/// Duration percentiles of one generation step over a window.
#[derive(Clone, Debug)]
pub(crate) struct StepFigures {
    pub step: String,
    pub attempts: i64,
    pub p50_ms: i64,
    pub p95_ms: i64,
    pub p99_ms: i64,
}

/// Attempts and failures of one provider over a window, by error kind.
#[derive(Clone, Debug)]
pub(crate) struct ProviderFigures {
    pub provider: String,
    pub attempts: i64,
    pub errors: i64,
    /// (kind, count), most frequent first.
    pub errors_by_kind: Vec<(String, i64)>,
}

#[derive(Clone, Debug)]
pub(crate) struct Figures {
    pub stories_by_status: Vec<(String, i64)>,
    pub queue_depth: i64,
    pub oldest_pending_seconds: f64,
    /// Conversations followed by an open socket (of the process answering).
    pub open_conversations: i64,
    /// Conversations not ended (open, or resumable until their idle end).
    pub active_conversations: i64,
    pub open_sockets: i64,
    pub steps: Vec<StepFigures>,
    pub providers: Vec<ProviderFigures>,
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

impl Ops<'_> {
    /// Figures kept in the database (also exported on `/metrics`).
    pub(crate) async fn db_figures(&self) -> AppResult<crate::metrics::DbFigures> {
        let mut conn = self.pool().get().await?;
        let mut db = conn.db();
        let by_status = store::ops::stories_by_status(&mut db).await?;
        let oldest = store::ops::oldest_pending(&mut db).await?;
        let open = store::conversations::open_count(&mut db).await?;
        drop(conn);
        let count = |status: StoryStatus| {
            by_status
                .iter()
                .find(|(s, _)| *s == status)
                .map_or(0, |(_, n)| *n)
        };
        let mut stories_by_status: Vec<(String, i64)> = StoryStatus::ALL
            .iter()
            .map(|&s| (s.as_str().to_string(), count(s)))
            .collect();
        stories_by_status.sort_by_key(|(s, _)| s.clone());
        let queue_depth = count(StoryStatus::Pending);
        Ok(crate::metrics::DbFigures {
            stories_by_status,
            queue_depth,
            oldest_pending_seconds: oldest
                .map(|t| (store::now() - from_db(t)).num_milliseconds().max(0) as f64 / 1000.0)
                .unwrap_or(0.0),
            active_conversations: open,
        })
    }

    /// The operations figures for dashboards, over the last `window_minutes`.
    pub(crate) async fn ops_figures(
        &self,
        viewer: &User,
        window_minutes: i32,
    ) -> AppResult<Figures> {
        self.require_operator(viewer).await?;
        if !(1..=10_080).contains(&window_minutes) {
            return Err(AppError::validation(
                "windowMinutes는 1~10080 사이여야 합니다.",
            ));
        }
        let db_figures = self.db_figures().await?;
        let since = to_db(store::now() - chrono::Duration::minutes(i64::from(window_minutes)));
        let rows = store::ops::steps_since(&mut self.pool().get().await?.db(), since).await?;
        let mut by_step: std::collections::BTreeMap<String, Vec<i64>> = Default::default();
        let mut by_provider: std::collections::BTreeMap<
            String,
            (i64, std::collections::BTreeMap<String, i64>),
        > = Default::default();
        for sample in rows {
            by_step
                .entry(sample.step)
                .or_default()
                .push(sample.duration_ms);
            let entry = by_provider.entry(sample.provider).or_default();
            entry.0 += 1;
            if let Some(kind) = sample.error_kind {
                *entry.1.entry(kind).or_default() += 1;
            }
        }
        Ok(Figures {
            stories_by_status: db_figures.stories_by_status,
            queue_depth: db_figures.queue_depth,
            oldest_pending_seconds: db_figures.oldest_pending_seconds,
            open_conversations: self.metrics().open_conversations(),
            active_conversations: db_figures.active_conversations,
            open_sockets: self.metrics().open_sockets(),
            steps: by_step
                .into_iter()
                .map(|(step, mut ms)| {
                    ms.sort_unstable();
                    StepFigures {
                        attempts: ms.len() as i64,
                        p50_ms: percentile(&ms, 0.5),
                        p95_ms: percentile(&ms, 0.95),
                        p99_ms: percentile(&ms, 0.99),
                        step,
                    }
                })
                .collect(),
            providers: by_provider
                .into_iter()
                .map(|(provider, (attempts, kinds))| {
                    let mut errors_by_kind: Vec<(String, i64)> = kinds.into_iter().collect();
                    errors_by_kind.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                    ProviderFigures {
                        errors: errors_by_kind.iter().map(|(_, n)| n).sum(),
                        attempts,
                        errors_by_kind,
                        provider,
                    }
                })
                .collect(),
        })
    }
}
