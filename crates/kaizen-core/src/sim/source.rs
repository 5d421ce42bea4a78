//! [`SimSource`]: the simulated host as a [`Source`], reading its config from a working tree.

use super::model::{ConfigSnapshot, Evaluator, HostModel, SignalState};
use crate::observe::{Source, SourceError};
use crate::signal::Sample;
use crate::span::Span;
use async_trait::async_trait;
use chrono::{DateTime, Datelike, Timelike, Utc};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

struct Inner {
    states: HashMap<String, SignalState>,
    /// The last snapshot and the contents it was built from (reused while nothing changed, so
    /// config files are parsed only when their content changes).
    snapshot: Option<Arc<ConfigSnapshot>>,
    contents: HashMap<String, Option<String>>,
}

/// Samples every signal of a [`HostModel`] at the engine clock's now, reading the config values the
/// model depends on from the working tree under `root` on every sample.
pub struct SimSource {
    name: String,
    model: Arc<HostModel>,
    root: PathBuf,
    seed: u64,
    start: DateTime<Utc>,
    step: Span,
    files: BTreeSet<String>,
    inner: Mutex<Inner>,
}

impl SimSource {
    /// A source for `model`, whose repository working tree is `root`. `start` is time zero for
    /// the model (fault offsets, trend); `step` is the noise step (the sample interval).
    pub fn new(model: HostModel, root: &Path, seed: u64, start: DateTime<Utc>, step: Span) -> Self {
        let mut files = BTreeSet::new();
        for s in model.signals.values() {
            for e in &s.effects {
                files.insert(e.file.clone());
            }
            for f in &s.faults {
                for c in [&f.when, &f.unless].into_iter().flatten() {
                    files.insert(c.file.clone());
                }
            }
        }
        Self {
            name: "sim".to_string(),
            model: Arc::new(model),
            root: root.to_path_buf(),
            seed,
            start,
            step,
            files,
            inner: Mutex::new(Inner {
                states: HashMap::new(),
                snapshot: None,
                contents: HashMap::new(),
            }),
        }
    }

    /// The model.
    pub fn model(&self) -> &HostModel {
        &self.model
    }

    fn read_config(&self, inner: &mut Inner) -> Result<Arc<ConfigSnapshot>, SourceError> {
        let mut contents = HashMap::with_capacity(self.files.len());
        for f in &self.files {
            let path = self.root.join(f);
            let c = match std::fs::read_to_string(&path) {
                Ok(c) => Some(c),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => {
                    return Err(SourceError::new(
                        &self.name,
                        format!("cannot read {}: {e}", path.display()),
                    ));
                }
            };
            contents.insert(f.clone(), c);
        }
        if let Some(s) = &inner.snapshot
            && inner.contents == contents
        {
            return Ok(Arc::clone(s));
        }
        let snap = Arc::new(ConfigSnapshot::new(contents.clone()));
        inner.contents = contents;
        inner.snapshot = Some(Arc::clone(&snap));
        Ok(snap)
    }

    /// Samples every signal at `now` (what [`Source::observe`] returns), synchronously.
    pub fn sample(&self, now: DateTime<Utc>) -> Result<Vec<Sample>, SourceError> {
        let mut inner = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let config = self.read_config(&mut inner)?;
        let t = (now - self.start).num_seconds();
        let day_offset = i64::from(self.start.num_seconds_from_midnight());
        let week_offset =
            i64::from(self.start.weekday().num_days_from_monday()) * 86_400 + day_offset;
        let mut out = Vec::with_capacity(self.model.signals.len());
        for (name, model) in &self.model.signals {
            let ev = Evaluator {
                seed: self.seed,
                name,
                model,
                step: self.step.seconds().max(1) as i64,
                week_offset,
                day_offset,
            };
            // Found without copying the name (every tick, every signal); added on first use.
            if !inner.states.contains_key(name) {
                inner.states.insert(name.clone(), SignalState::default());
            }
            let Some(state) = inner.states.get_mut(name) else {
                continue;
            };
            let v = ev.value(state, t, &config);
            if !v.is_finite() {
                return Err(SourceError::new(
                    &self.name,
                    format!("signal {name}: the model produced {v} at {now}"),
                ));
            }
            out.push(Sample::new(name.clone(), now, v));
        }
        Ok(out)
    }
}

#[async_trait]
impl Source for SimSource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn observe(&self, now: DateTime<Utc>) -> Result<Vec<Sample>, SourceError> {
        self.sample(now)
    }
}
