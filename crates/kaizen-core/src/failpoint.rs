//! Named failpoints: places where a crash could split state, so tests can kill the process there.
//!
//! A failpoint is one call, `failpoint::hit("apply.after_status")`, placed right after a durable
//! step (a ledger write, a file write, a commit). It does nothing unless both hold:
//!
//! - the crate is built with the cargo feature `failpoints` (forwarded by `kaizen-adapters` and
//!   `kaizen-cli` under the same name; the CLI's tests turn it on through a dev-dependency, so
//!   `cargo test` binaries have it and `cargo build --release` does not — without the feature
//!   [`hit`] is an empty inline function), and
//! - the environment variable [`ENV`] (`KAIZEN_FAILPOINT`) names it when the process reaches it.
//!
//! ```text
//! KAIZEN_FAILPOINT=apply.after_status            # exit at the first hit
//! KAIZEN_FAILPOINT=apply.after_status:2          # exit at the second hit in this process
//! KAIZEN_FAILPOINT=git.after_commit=abort        # abort (SIGABRT) instead of exiting
//! KAIZEN_FAILPOINT=a,b:3                         # several, comma-separated
//! ```
//!
//! Grammar of one entry: `name[:N][=action]`; `N` ≥ 1 is the hit that fires (default 1); `action`
//! is `exit` (default: print `kaizen failpoint NAME hit` on stderr and exit with
//! [`EXIT_CODE`] without running destructors — to the ledger and git exactly like a kill, and
//! distinguishable from a crash) or `abort` (`std::process::abort`, a signal). A malformed entry
//! never fires (a test that expects the exit code then fails loudly).
//!
//! Naming: `stage.after_what` in lower case (`apply.after_status`, `revert.before_commit`,
//! `learn.after_commit`). Adding one: call [`hit`] at the point, list the name in [`NAMES`] (the
//! kill harness iterates that list), and say in a comment what state is split there.

/// The environment variable that arms failpoints.
pub const ENV: &str = "KAIZEN_FAILPOINT";

/// The exit code of a fired failpoint (action `exit`).
pub const EXIT_CODE: i32 = 86;

/// Every failpoint in the code base, for harnesses that kill at each one in turn.
pub const NAMES: &[&str] = &[
    // Ledger: `mark_applied` wrote the status; commit sha and `pending` not yet (if written apart).
    "ledger.mark_applied.after_status",
    // Ledger: `mark_reverted` wrote the status; revert sha and `pending` not yet (if written apart).
    "ledger.mark_reverted.after_status",
    // Guard: the proposal recorded with its sizing and verdicts (one transaction), the decision
    // not yet acted on (status still `proposed`).
    "guard.after_verdicts",
    // Apply: `pending = 'apply'` and the branch recorded; no commit yet.
    "apply.after_pending",
    // Git: kaizen holds `.git/index.lock` (with its journal); nothing else done.
    "git.after_lock",
    // Git: the journal names the planned change; the commit is not made yet.
    "git.before_commit",
    // Git: the commit is on the branch; working tree and index still at the old content.
    "git.after_commit",
    // Git: one file written to the working tree; the index (and other files) not yet.
    "git.after_write_file",
    // Git: the new index is written beside `.git/index`, not yet renamed over it.
    "git.before_index_rename",
    // Apply: the commit is made and the tree updated; the ledger still says `proposed`.
    "apply.after_commit",
    // Revert: `pending = 'revert'`; no revert commit yet.
    "revert.after_pending",
    // Git: the revert is planned (conflict-free), its commit not made.
    "git.before_revert",
    // Revert: the revert commit is made; the ledger still says `applied`.
    "revert.after_commit",
    // Validate: the verdict is stored; the status not yet moved.
    "validate.after_verdict",
    // Validate: an inconclusive window was extended; its event not yet written.
    "validate.after_extend",
    // Validate: a failing verdict is stored; the revert not yet begun.
    "validate.before_revert",
    // Learn: the lesson commit is made; events and the lesson index not yet written.
    "learn.after_commit",
    // Notify: about to run a notifier (a hook command or webhook).
    "notify.before_send",
    // Retention: one fold's hourly aggregates written, its raw rows not yet deleted (one
    // transaction: a kill leaves neither).
    "ledger.fold.after_aggregate",
    // Switchback: a flip's block and intent recorded (`pending`); its commit not made yet.
    "switchback.after_pending",
    // Switchback: the flip is committed; the ledger does not name its commit yet.
    "switchback.after_commit",
    // Switchback: the permutation test's verdict is stored; the intervention not yet completed.
    "switchback.after_finish",
];

/// Reached failpoint `name`: if armed by [`ENV`] (and the `failpoints` feature is on), the
/// process ends here.
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) {
    let Ok(spec) = std::env::var(ENV) else {
        return;
    };
    let Some(entry) = parse(&spec).into_iter().find(|e| e.name == name) else {
        return;
    };
    let count = {
        let mut hits = match HITS.lock() {
            Ok(h) => h,
            Err(poisoned) => poisoned.into_inner(),
        };
        let n = hits.entry(name.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    if count != entry.nth {
        return;
    }
    eprintln!("kaizen failpoint {name} hit");
    match entry.action {
        Action::Exit => std::process::exit(EXIT_CODE),
        Action::Abort => std::process::abort(),
    }
}

/// Reached failpoint `name` (built without the `failpoints` feature: nothing happens).
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) {}

/// Whether failpoints are compiled in.
pub const fn enabled() -> bool {
    cfg!(feature = "failpoints")
}

#[cfg(feature = "failpoints")]
static HITS: std::sync::Mutex<std::collections::BTreeMap<String, u32>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

/// What a fired failpoint does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Exit,
    Abort,
}

/// One armed failpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    nth: u32,
    action: Action,
}

/// Parses `name[:N][=action],…`; malformed entries are dropped.
#[cfg_attr(not(any(feature = "failpoints", test)), allow(dead_code))]
fn parse(spec: &str) -> Vec<Entry> {
    spec.split(',')
        .filter_map(|raw| {
            let raw = raw.trim();
            let (rest, action) = match raw.split_once('=') {
                None => (raw, Action::Exit),
                Some((r, "exit")) => (r, Action::Exit),
                Some((r, "abort")) => (r, Action::Abort),
                Some(_) => return None,
            };
            let (name, nth) = match rest.split_once(':') {
                None => (rest, 1),
                Some((n, k)) => (n, k.parse::<u32>().ok().filter(|k| *k >= 1)?),
            };
            if name.is_empty() {
                return None;
            }
            Some(Entry {
                name: name.to_string(),
                nth,
                action,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_counts_and_actions_and_drops_malformed_entries() {
        let got = parse("a, b:3 ,c=abort,d:2=exit,e=boom,f:0,:1,g:x");
        let want = [
            ("a", 1, Action::Exit),
            ("b", 3, Action::Exit),
            ("c", 1, Action::Abort),
            ("d", 2, Action::Exit),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (e, (n, k, a)) in got.iter().zip(want) {
            assert_eq!((e.name.as_str(), e.nth, e.action), (n, k, a));
        }
    }

    #[test]
    fn names_are_unique_and_well_formed() {
        let mut seen = std::collections::BTreeSet::new();
        for n in NAMES {
            assert!(seen.insert(*n), "duplicate failpoint {n}");
            assert!(
                n.contains('.') && !n.contains([',', ':', '=', ' ']),
                "bad failpoint name {n}"
            );
        }
    }

    #[test]
    fn an_unarmed_failpoint_does_nothing() {
        // No test sets KAIZEN_FAILPOINT in this process; reaching a point must be harmless.
        hit("ledger.mark_applied.after_status");
    }
}
