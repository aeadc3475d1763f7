//! In-process operations counters, and the Prometheus text exposition served on its own
//! listener (`JJONGAL_METRICS_BIND`, never the public port). Figures that live in the
//! database (stories by status, queue depth) are read from it at scrape time. Label sets
//! are small and fixed: step, provider, kind, outcome — never anything per user.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

/// Upper bounds (seconds) of the step-duration histogram buckets.
pub(crate) const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
pub(crate) struct Metrics {
    /// (step, provider, outcome) → attempts.
    attempts: Mutex<BTreeMap<(String, String, String), u64>>,
    /// (provider, kind) → failed attempts.
    errors: Mutex<BTreeMap<(String, String), u64>>,
    /// step → durations.
    durations: Mutex<BTreeMap<String, Histogram>>,
    /// (step, from, to) → times a provider failed and the next one was tried.
    fallbacks: Mutex<BTreeMap<(String, String, String), u64>>,
    open_sockets: AtomicI64,
    /// Conversations a socket of this process follows now.
    open_conversations: AtomicI64,
}

/// Database figures included in a scrape.
pub(crate) struct DbFigures {
    pub stories_by_status: Vec<(String, i64)>,
    pub queue_depth: i64,
    pub oldest_pending_seconds: f64,
    /// Conversations not ended (open, or waiting to be resumed until their idle end).
    pub active_conversations: i64,
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    /// Records every attempt of a provider call (of `provider`, at `step`) it is given:
    /// the observer `with_retry` takes.
    pub(crate) fn observer<'a>(
        &'a self,
        step: &'a str,
        provider: &'a str,
    ) -> impl FnMut(crate::providers::retry::Attempt<'_>) + 'a {
        move |a| {
            self.record_attempt(
                step,
                provider,
                a.duration.as_secs_f64(),
                a.error.map(|e| e.kind.as_str()),
            )
        }
    }

    /// Records that `from` failed at `step` and `to` was tried instead.
    pub(crate) fn record_fallback(&self, step: &str, from: &str, to: &str) {
        *self
            .fallbacks
            .lock()
            .expect("metrics lock")
            .entry((step.into(), from.into(), to.into()))
            .or_default() += 1;
    }

    /// Records one provider attempt of a step (story generation or a conversation turn).
    pub(crate) fn record_attempt(
        &self,
        step: &str,
        provider: &str,
        seconds: f64,
        error_kind: Option<&str>,
    ) {
        let outcome = if error_kind.is_some() { "error" } else { "ok" };
        *self
            .attempts
            .lock()
            .expect("metrics lock")
            .entry((step.into(), provider.into(), outcome.into()))
            .or_default() += 1;
        if let Some(kind) = error_kind {
            *self
                .errors
                .lock()
                .expect("metrics lock")
                .entry((provider.into(), kind.into()))
                .or_default() += 1;
        }
        let mut durations = self.durations.lock().expect("metrics lock");
        let h = durations.entry(step.into()).or_default();
        h.count += 1;
        h.sum += seconds;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.counts[i] += 1;
            }
        }
    }

    pub(crate) fn socket_opened(&self) {
        self.open_sockets.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn socket_closed(&self) {
        self.open_sockets.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn conversation_followed(&self) {
        self.open_conversations.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn conversation_left(&self) {
        self.open_conversations.fetch_sub(1, Ordering::Relaxed);
    }

    /// Conversations followed by an open socket of this process.
    pub(crate) fn open_conversations(&self) -> i64 {
        self.open_conversations.load(Ordering::Relaxed)
    }

    pub(crate) fn open_sockets(&self) -> i64 {
        self.open_sockets.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition (version 0.0.4).
    pub(crate) fn render(&self, db: &DbFigures) -> String {
        let mut out = String::new();
        self.render_gauges(&mut out, db);
        self.render_attempts(&mut out);
        self.render_durations(&mut out);
        out
    }

    /// The database's figures and the open sockets.
    fn render_gauges(&self, out: &mut String, db: &DbFigures) {
        let _ = writeln!(
            out,
            "# HELP jjongal_stories Stories by status.\n# TYPE jjongal_stories gauge"
        );
        for (status, n) in &db.stories_by_status {
            let _ = writeln!(out, "jjongal_stories{{status=\"{}\"}} {n}", escape(status));
        }
        let _ = writeln!(
            out,
            "# HELP jjongal_story_queue_depth Stories waiting to be generated.\n# TYPE jjongal_story_queue_depth gauge\njjongal_story_queue_depth {}",
            db.queue_depth
        );
        let _ = writeln!(
            out,
            "# HELP jjongal_story_queue_oldest_seconds Age of the oldest pending story.\n# TYPE jjongal_story_queue_oldest_seconds gauge\njjongal_story_queue_oldest_seconds {:.3}",
            db.oldest_pending_seconds
        );
        let _ = writeln!(
            out,
            "# HELP jjongal_open_conversations Conversations followed by an open socket of this process.\n# TYPE jjongal_open_conversations gauge\njjongal_open_conversations {}",
            self.open_conversations()
        );
        let _ = writeln!(
            out,
            "# HELP jjongal_active_conversations Conversations not ended (open, or resumable until their idle end).\n# TYPE jjongal_active_conversations gauge\njjongal_active_conversations {}",
            db.active_conversations
        );
        let _ = writeln!(
            out,
            "# HELP jjongal_sql_statements_total SQL statements run by this process.\n# TYPE jjongal_sql_statements_total counter\njjongal_sql_statements_total {}",
            crate::store::statements()
        );
        let _ = writeln!(
            out,
            "# HELP jjongal_open_sockets Conversation sockets open on this process.\n# TYPE jjongal_open_sockets gauge\njjongal_open_sockets {}",
            self.open_sockets()
        );
    }

    /// Provider attempts by step, provider and outcome, and errors by kind.
    fn render_attempts(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP jjongal_provider_attempts_total Provider calls (story generation and conversations) by step.\n# TYPE jjongal_provider_attempts_total counter"
        );
        for ((step, provider, outcome), n) in self.attempts.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "jjongal_provider_attempts_total{{step=\"{}\",provider=\"{}\",outcome=\"{}\"}} {n}",
                escape(step),
                escape(provider),
                escape(outcome)
            );
        }
        let _ = writeln!(
            out,
            "# HELP jjongal_provider_errors_total Failed provider calls by kind.\n# TYPE jjongal_provider_errors_total counter"
        );
        for ((provider, kind), n) in self.errors.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "jjongal_provider_errors_total{{provider=\"{}\",kind=\"{}\"}} {n}",
                escape(provider),
                escape(kind)
            );
        }
        let _ = writeln!(
            out,
            "# HELP jjongal_provider_fallbacks_total Times a provider failed and the next one in line was used.\n# TYPE jjongal_provider_fallbacks_total counter"
        );
        for ((step, from, to), n) in self.fallbacks.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "jjongal_provider_fallbacks_total{{step=\"{}\",from=\"{}\",to=\"{}\"}} {n}",
                escape(step),
                escape(from),
                escape(to)
            );
        }
    }

    /// The generation steps' duration histograms.
    fn render_durations(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HELP jjongal_generation_step_duration_seconds Duration of generation step attempts.\n# TYPE jjongal_generation_step_duration_seconds histogram"
        );
        for (step, h) in self.durations.lock().expect("metrics lock").iter() {
            let step = escape(step);
            for (i, bound) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "jjongal_generation_step_duration_seconds_bucket{{step=\"{step}\",le=\"{bound}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "jjongal_generation_step_duration_seconds_bucket{{step=\"{step}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "jjongal_generation_step_duration_seconds_sum{{step=\"{step}\"}} {:.6}",
                h.sum
            );
            let _ = writeln!(
                out,
                "jjongal_generation_step_duration_seconds_count{{step=\"{step}\"}} {}",
                h.count
            );
        }
    }
}
