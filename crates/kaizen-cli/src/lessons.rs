//! `kaizen lessons …` and `kaizen learn`.

use crate::context::{Failure, engine, lessons_and_errors, load_config, lock, rt, usage};
use anyhow::{Context, anyhow};
use clap::Subcommand;
use kaizen_core::clock::Clock;
use kaizen_core::lesson::{self, Evidence, Lesson, LessonStatus};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `kaizen lessons` subcommands.
#[derive(Debug, Subcommand)]
pub enum LessonsCommand {
    /// List lessons (active ones; --all for retired too).
    List {
        /// Include retired lessons.
        #[arg(long)]
        all: bool,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Show one lesson.
    Show {
        /// Lesson id (L-…).
        id: String,
    },
    /// Add a hand-written lesson from a YAML file (validated, then committed).
    Add {
        /// The lesson YAML.
        file: PathBuf,
        /// Replace an existing lesson with the same id (its version is bumped).
        #[arg(long)]
        force: bool,
    },
    /// Retire a lesson (committed; it stops being offered to proposers).
    Retire {
        /// Lesson id.
        id: String,
        /// Why it no longer applies.
        #[arg(long)]
        reason: String,
    },
}

type Result<T> = std::result::Result<T, Failure>;

/// Lessons in `dir`; bad files are reported on stderr and skipped.
pub fn lessons_in(dir: &Path) -> Vec<Lesson> {
    lessons_and_errors(dir).0
}

fn find(dir: &Path, id: &str) -> Result<Lesson> {
    lessons_in(dir)
        .into_iter()
        .find(|l| l.id == id)
        .ok_or_else(|| usage(format!("no lesson {id:?} in {}", dir.display())))
}

/// Runs a `kaizen lessons` subcommand.
pub async fn run(cmd: LessonsCommand, config_path: &Path, clock: Arc<dyn Clock>) -> Result<()> {
    let config = load_config(config_path)?;
    match cmd {
        LessonsCommand::List { all, json } => {
            let mut lessons = lessons_in(&config.lessons);
            if !all {
                lessons.retain(|l| l.status == LessonStatus::Active);
            }
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&lessons).context("serialising")?
                );
            } else if lessons.is_empty() {
                println!("no lessons in {}", config.lessons.display());
            } else {
                for l in &lessons {
                    println!("{}", lesson::summary_line(l));
                }
            }
            Ok(())
        }
        LessonsCommand::Show { id } => {
            let l = find(&config.lessons, &id)?;
            println!("{}", lesson::describe(&l));
            Ok(())
        }
        LessonsCommand::Add { file, force } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| usage(format!("{}: cannot read: {e}", file.display())))?;
            let mut new =
                lesson::new_lesson_from_yaml(&text, &file).map_err(|e| usage(e.to_string()))?;
            let existing = lessons_in(&config.lessons)
                .into_iter()
                .find(|l| l.id == new.id);
            if let Some(old) = &existing {
                if !force {
                    return Err(usage(format!(
                        "lesson {} already exists (v{}); use --force to replace it",
                        old.id, old.version
                    )));
                }
                new.version = old.version + 1;
            }
            let _lock = lock(&config)?;
            let mut engine = engine(&config, clock)?;
            let rel = kaizen_core::config::relative_to(&config.lessons, &config.repo).ok_or_else(
                || {
                    usage(format!(
                        "lessons dir {} is not inside the repository",
                        config.lessons.display()
                    ))
                },
            )?;
            let path = format!("{rel}/{}", lesson::store::file_name(&new.id));
            let verb = if existing.is_some() { "replace" } else { "add" };
            let msg = format!(
                "kaizen: {verb} lesson {}\n\nHand-written lesson, scope {}.\n\nKaizen-Lesson: {}",
                new.id, new.scope.area, new.id
            );
            let commit = engine
                .commit_lesson(
                    &[(path.clone(), Some(lesson::store::render(&new)))],
                    &msg,
                    kaizen_core::event::EngineEvent::LessonCreated {
                        lesson: new.id.clone(),
                        version: new.version,
                        prefer: new.prefer.clone(),
                    },
                )
                .map_err(|e| Failure::Runtime(anyhow!("lesson not added: {e}")))?;
            println!(
                "{verb}ed {} as {path}{}",
                new.id,
                commit
                    .map(|c| format!(" (commit {})", &c.sha[..10.min(c.sha.len())]))
                    .unwrap_or_default()
            );
            Ok(())
        }
        LessonsCommand::Retire { id, reason } => {
            let old = find(&config.lessons, &id)?;
            if old.status == LessonStatus::Retired {
                return Err(usage(format!("lesson {id} is already retired")));
            }
            let _lock = lock(&config)?;
            let mut engine = engine(&config, clock.clone())?;
            let retired = lesson::retire(
                &old,
                &format!("retired by operator: {reason}"),
                &[] as &[Evidence],
                clock.now(),
            );
            let rel = kaizen_core::config::relative_to(&config.lessons, &config.repo).ok_or_else(
                || {
                    usage(format!(
                        "lessons dir {} is not inside the repository",
                        config.lessons.display()
                    ))
                },
            )?;
            let path = format!("{rel}/{}", lesson::store::file_name(&id));
            let msg = format!("kaizen: retire lesson {id}\n\n{reason}\n\nKaizen-Lesson: {id}");
            engine
                .commit_lesson(
                    &[(path, Some(lesson::store::render(&retired)))],
                    &msg,
                    kaizen_core::event::EngineEvent::LessonRetired {
                        lesson: id.clone(),
                        reason: format!("retired by operator: {reason}"),
                    },
                )
                .map_err(|e| Failure::Runtime(anyhow!("lesson not retired: {e}")))?;
            println!("retired {id} (v{})", retired.version);
            Ok(())
        }
    }
}

/// `kaizen learn`: one distiller run now (with `--llm`, the model rewords the new lessons).
pub async fn learn(config_path: &Path, clock: Arc<dyn Clock>, json: bool, llm: bool) -> Result<()> {
    let config = load_config(config_path)?;
    let _lock = lock(&config)?;
    let mut engine = engine(&config, clock)?;
    let (report, notes) = kaizen_adapters::assemble::learn_now(&mut engine, &config, llm)
        .await
        .map_err(|e| {
            if e.is_config() {
                usage(e.to_string())
            } else {
                rt(e)
            }
        })?;
    for n in &notes {
        eprintln!("kaizen: {n}");
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("serialising")?
        );
        return Ok(());
    }
    for e in &report.load_errors {
        eprintln!("kaizen: skipped lesson file: {e}");
    }
    if report.changes.is_empty() {
        println!("no lesson changes");
    }
    for c in &report.changes {
        println!("{c}");
    }
    if let Some(c) = &report.commit {
        println!("committed lesson changes as {c}");
    }
    Ok(())
}
