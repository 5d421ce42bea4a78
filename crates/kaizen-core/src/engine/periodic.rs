//! The periodic meta-review: on the schedule's `review_every` the runtime has the engine write
//! the review of the last period as Markdown and HTML into `state_dir/reviews/`, record it, and
//! notify with its path. Whether one is due is read from the ledger, so a restarted daemon does
//! not write it twice.

use super::{Engine, EngineError};
use crate::clock::Clock;
use crate::event::EngineEvent;
use crate::notify::{Notification, NotificationKind};
use crate::review::{Format, MetaReview, ReviewInputs, summary_json};
use crate::span::Span;
use std::path::{Path, PathBuf};

/// The event kind of a written meta-review.
pub const META_REVIEW: &str = "meta_review";

/// A periodic review written to disk.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenReview {
    /// The Markdown file.
    pub markdown: PathBuf,
    /// The HTML file.
    pub html: PathBuf,
    /// Its next moves, counted.
    pub next_moves: usize,
}

/// Writes `text` to `path` through a temporary file and a rename, so a reader (or a crash)
/// never sees half a review.
fn write_atomically(path: &Path, text: &str) -> Result<(), EngineError> {
    let err = |source| EngineError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

impl Engine {
    /// Writes the meta-review of the `every` ending now into `state_dir/reviews/`, unless the
    /// ledger records a scheduled one written less than `every` ago (or the engine has no state
    /// dir). Records a `meta_review` event and notifies (`review`) with the file's path.
    pub async fn periodic_review(
        &mut self,
        every: Span,
    ) -> Result<Option<WrittenReview>, EngineError> {
        let now = self.clock.now();
        let Some(dir) = self.state_dir.clone() else {
            return Ok(None);
        };
        let recent = self
            .ledger
            // One written exactly `every` ago is not recent: the schedule fires on that mark.
            .events_between(every.before(now) + chrono::Duration::milliseconds(1), now)?
            .into_iter()
            .any(|e| match &e.event {
                EngineEvent::MetaReview { review, .. } => {
                    review.get("scheduled").and_then(serde_json::Value::as_bool) == Some(true)
                }
                _ => false,
            });
        if recent {
            return Ok(None);
        }
        let review = MetaReview::compute(
            &self.ledger,
            ReviewInputs {
                signals: &self.settings.signals,
                policy: &self.settings.policy,
                confidence_threshold: self.settings.confidence_threshold,
            },
            now,
            every,
        )?;
        let folder = dir.join("reviews");
        std::fs::create_dir_all(&folder).map_err(|source| EngineError::Write {
            path: folder.clone(),
            source,
        })?;
        let stem = format!("review-{}", now.format("%Y-%m-%dT%H%MZ"));
        let markdown = folder.join(format!("{stem}.md"));
        let html = folder.join(format!("{stem}.html"));
        write_atomically(&markdown, &review.render_as(Format::Markdown))?;
        write_atomically(&html, &review.render_as(Format::Html))?;
        let mut data = summary_json(&review, Some(&html.display().to_string()));
        if let Some(obj) = data.as_object_mut() {
            obj.insert("scheduled".into(), true.into());
            obj.insert("markdown".into(), markdown.display().to_string().into());
        }
        let first = review
            .next_moves
            .first()
            .map(|m| {
                format!(
                    "; first next move: {} {}",
                    m.action.replace('_', " "),
                    m.subject
                )
            })
            .unwrap_or_default();
        let text = format!(
            "meta-review of the last {every} written to {} ({} next move(s){first})",
            html.display(),
            review.next_moves.len()
        );
        self.record(&EngineEvent::MetaReview {
            period: every.to_string(),
            next_moves: review.next_moves.len(),
            review: data,
        })?;
        let note = Notification {
            kind: NotificationKind::Review,
            intervention: None,
            text,
            at: now,
        };
        let mut failures = Vec::new();
        for notifier in self.notifiers.iter().filter(|n| n.wants(note.kind)) {
            if let Err(e) = notifier.notify(&note).await {
                failures.push(e.to_string());
            }
        }
        for message in failures {
            self.record(&EngineEvent::NotifyFailed {
                intervention: None,
                message,
            })?;
        }
        Ok(Some(WrittenReview {
            markdown,
            html,
            next_moves: review.next_moves.len(),
        }))
    }
}
