//! The optional LLM distiller step: reword a lesson's `because` and `retired_when` for humans.
//!
//! The deterministic distiller decides *what* is learned; the model only rewrites prose. Its
//! answer goes through `kaizen_core::learn::apply_rewrite`, which accepts only those two fields,
//! validates them like any lesson, and never touches id, scope, evidence, calibration, status or
//! a machine-checkable `retired_when` turned into free text. Any failure keeps the deterministic
//! lesson and is reported.

use super::client::{ChatClient, Message};
use kaizen_core::learn::{LessonChange, apply_rewrite};
use kaizen_core::lesson::Lesson;
use serde_json::{Value, json};

/// Longest `because` the model may write.
pub const MAX_BECAUSE: usize = 600;
/// Longest `retired_when` the model may write.
pub const MAX_RETIRED_WHEN: usize = 300;

fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "because": {"type": "string", "maxLength": MAX_BECAUSE},
            "retired_when": {"type": "string", "maxLength": MAX_RETIRED_WHEN}
        },
        "required": ["because", "retired_when"],
        "additionalProperties": false
    })
}

fn prompt(lesson: &Lesson) -> Vec<Message> {
    let evidence: Vec<String> = lesson
        .evidence
        .iter()
        .map(|e| format!("{} {}", e.intervention, e.outcome))
        .collect();
    let user = format!(
        "Reword two fields of this lesson so an operator understands them. Keep every number and \
         signal name. If `retired_when` is a condition like `latency_ms median_24h outside [100, 400]`, \
         return it unchanged.\n\n\
         id: {}\narea: {}\nwhen: {}\nprefer: {}\nbecause: {}\nfalsifiable: {}\nretired_when: {}\n\
         calibrated_for: {}\nevidence: {}\n\n\
         Answer with a JSON object {{\"because\": \"...\", \"retired_when\": \"...\"}} \
         (because at most {MAX_BECAUSE} characters, retired_when at most {MAX_RETIRED_WHEN}).",
        lesson.id,
        lesson.scope.area,
        lesson.when,
        lesson.prefer,
        lesson.because,
        lesson.falsifiable,
        lesson.retired_when,
        lesson.calibrated_for,
        if evidence.is_empty() {
            "none".to_string()
        } else {
            evidence.join(", ")
        },
    );
    vec![
        Message::system(
            "You edit short engineering notes. You change wording, never facts. Output JSON only.",
        ),
        Message::user(user),
    ]
}

/// Rewrites the prose of created/updated lessons in `changes`. Returns the changes (rewritten
/// where the model's answer was valid) and one note per lesson left as the distiller wrote it.
pub async fn rewrite_lessons(
    client: &ChatClient,
    changes: Vec<LessonChange>,
) -> (Vec<LessonChange>, Vec<String>) {
    let mut out = Vec::with_capacity(changes.len());
    let mut notes = Vec::new();
    for change in changes {
        let (lesson, rebuild): (&Lesson, fn(Lesson) -> LessonChange) = match &change {
            LessonChange::Create(l) => (l, LessonChange::Create),
            LessonChange::Update(l) => (l, LessonChange::Update),
            LessonChange::Retire(_) => {
                out.push(change);
                continue;
            }
        };
        let result = match client
            .ask(&prompt(lesson), "lesson_rewrite", &schema())
            .await
        {
            Ok(answer) => {
                apply_rewrite(lesson, &answer.value.to_string()).map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(rewritten) => out.push(rebuild(rewritten)),
            Err(why) => {
                notes.push(format!(
                    "{}: kept the distiller's wording ({why})",
                    lesson.id
                ));
                out.push(change);
            }
        }
    }
    (out, notes)
}
