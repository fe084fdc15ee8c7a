//! The progress display: an `indicatif` bar on a terminal, a plain line every 10 s
//! otherwise (logs and CI keep a readable trace without control characters).

use crate::recorder::Recorder;
use crate::scenario::Plan;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Redraw period of the bar: smooth enough to read, cheap for the bench's CPU.
const BAR_REFRESH: Duration = Duration::from_millis(250);

/// Period of the plain progress line when stderr is not a terminal.
const PLAIN_PERIOD: Duration = Duration::from_secs(10);

pub struct Progress {
    label: String,
    plan: Plan,
}

impl Progress {
    pub fn new(label: &str, plan: &Plan) -> Progress {
        Progress {
            label: label.to_string(),
            plan: plan.clone(),
        }
    }

    fn line(&self, elapsed: Duration, rec: &Recorder, inconsistent: u64) -> String {
        format!(
            "VUs {:>3} | req {:>6} | ok {:>6} fail {:>4} | p99 {:>6.2} ms | inconsist. {}",
            self.plan.vus_at(elapsed),
            rec.requests.load(Ordering::Relaxed),
            rec.payments_ok.load(Ordering::Relaxed),
            rec.payments_failed.load(Ordering::Relaxed),
            rec.live_p99_ms(),
            inconsistent,
        )
    }

    /// Runs until `stop` is cancelled.
    pub async fn run(
        self,
        t0: Instant,
        rec: Arc<Recorder>,
        inconsistent: Arc<AtomicU64>,
        stop: CancellationToken,
    ) {
        let total = self.plan.duration.as_secs().max(1);
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{prefix} {elapsed_precise} [{bar:25.cyan/blue}] {pos:>3}/{len}s {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(self.label.clone());
            let mut tick = tokio::time::interval(BAR_REFRESH);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let e = t0.elapsed();
                bar.set_position(e.as_secs().min(total));
                let mut msg = self.line(e, &rec, inconsistent.load(Ordering::Relaxed));
                if e >= self.plan.duration {
                    msg.push_str(" | finishing");
                }
                bar.set_message(msg);
            }
            bar.finish_and_clear();
        } else {
            let mut tick = tokio::time::interval(PLAIN_PERIOD);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let e = t0.elapsed();
                eprintln!(
                    "{} {:>4}s/{}s {}",
                    self.label,
                    e.as_secs(),
                    total,
                    self.line(e, &rec, inconsistent.load(Ordering::Relaxed))
                );
            }
        }
    }
}
