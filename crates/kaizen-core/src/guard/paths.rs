//! `blocked_paths`: every edit stays inside the repository and off blocked paths.
//!
//! A path is checked in three steps:
//! 1. lexically ([`normalize_repo_path`]): no empty, absolute, NUL/control/invisible-character or
//!    backslash paths; `.` and empty segments dropped; `..` resolved, and refused if it climbs
//!    above the root (`a/../b` is `b`; `../x` is refused);
//! 2. against the file tree: every existing prefix of the path that is a symlink must resolve
//!    inside the canonical repository root, and a `..` may not follow a symlink (the OS would
//!    resolve it against the link's target, not lexically);
//! 3. against the globs: the normalised path and the symlink-resolved repo-relative path, and
//!    each of their parent directories, are matched against
//!    [`GuardPolicy::blocked_paths`](super::GuardPolicy::blocked_paths) (`literal_separator`, so
//!    `*` stays within one segment; case-insensitive, so `.GIT/config` cannot slip through on a
//!    case-insensitive file system). A pattern that matches a directory blocks everything below
//!    it (`.kaizen` blocks `.kaizen/ledger.sqlite`). Any `.git` segment, at any depth, is always
//!    blocked.

use super::text::verdict;
use super::{Decision, Guard, GuardContext, GuardError, GuardVerdict};
use crate::intervention::Candidate;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Why a path, read lexically, cannot name a file inside the repository.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathProblem {
    /// Nothing (or only whitespace) was given.
    #[error("the path is empty")]
    Empty,
    /// A NUL byte (would truncate the path at the OS boundary).
    #[error("the path contains a NUL byte")]
    Nul,
    /// A control character or an invisible code point (HFS+ ignores some: `.g\u{200c}it` is `.git`).
    #[error("the path contains control or invisible character U+{0:04X}")]
    Invisible(u32),
    /// A backslash (a separator on Windows, so `..\x` would escape there).
    #[error("the path contains a backslash (use `/` as the separator)")]
    Backslash,
    /// An absolute path (`/etc/passwd`, `C:/x`).
    #[error("the path is absolute; paths must be relative to the repository root")]
    Absolute,
    /// `..` climbs above the repository root.
    #[error("`..` leaves the repository root")]
    Escapes,
    /// The path normalises to the root itself (`.`, `a/..`).
    #[error("the path names the repository root itself, not a file")]
    Root,
}

/// Code points that are invisible or ignored by some file systems (git's own list for HFS+/NTFS
/// `.git` spoofing, plus the BOM).
fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c as u32,
            0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x206F | 0xFEFF | 0x00AD | 0x034F)
}

/// Normalises a repo-relative path lexically: `./config//a/../app.yaml` → `config/app.yaml`.
///
/// Pure string work (no file system); see the module docs for what is refused. Appliers should
/// write to the normalised path, which is what the guard checked.
pub fn normalize_repo_path(raw: &str) -> Result<String, PathProblem> {
    normalize_segments(raw).map(|segs| segs.join("/"))
}

fn normalize_segments(raw: &str) -> Result<Vec<&str>, PathProblem> {
    if raw.trim().is_empty() {
        return Err(PathProblem::Empty);
    }
    if raw.contains('\0') {
        return Err(PathProblem::Nul);
    }
    if let Some(c) = raw.chars().find(|c| is_invisible(*c)) {
        return Err(PathProblem::Invisible(c as u32));
    }
    if raw.contains('\\') {
        return Err(PathProblem::Backslash);
    }
    let b = raw.as_bytes();
    if raw.starts_with('/') || (b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':') {
        return Err(PathProblem::Absolute);
    }
    let mut out: Vec<&str> = Vec::new();
    for seg in raw.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if out.pop().is_none() {
                    return Err(PathProblem::Escapes);
                }
            }
            s => out.push(s),
        }
    }
    if out.is_empty() {
        return Err(PathProblem::Root);
    }
    Ok(out)
}

/// Whether any segment is `.git` (any case): git internals at any depth (submodules too).
fn has_git_segment<S: AsRef<str>>(segs: &[S]) -> bool {
    segs.iter().any(|s| s.as_ref().eq_ignore_ascii_case(".git"))
}

/// Compiles the blocked globs; a bad one is an error (fail closed).
fn compile(patterns: &[String], guard: &str) -> Result<GlobSet, GuardError> {
    let mut b = GlobSetBuilder::new();
    for (i, p) in patterns.iter().enumerate() {
        let glob = GlobBuilder::new(p)
            .literal_separator(true)
            .case_insensitive(true)
            .build()
            .map_err(|e| GuardError {
                guard: guard.to_string(),
                message: format!("guards.blocked_paths[{i}] {p:?} is not a valid glob: {e}"),
            })?;
        b.add(glob);
    }
    b.build().map_err(|e| GuardError {
        guard: guard.to_string(),
        message: format!("cannot build the blocked_paths glob set: {e}"),
    })
}

/// The glob set compiled last, with the patterns it was compiled from.
static COMPILED: Mutex<Option<(Vec<String>, Arc<GlobSet>)>> = Mutex::new(None);

/// [`compile`], remembering the last set: every candidate of every cycle is checked against the
/// same `guards.blocked_paths`, and building their regex set each time was 6% of a 90-day
/// `kaizen sim` (issue 12, bench 4). Keyed by the patterns themselves, so a reloaded config with
/// other patterns compiles anew; a glob that does not compile is an error every time.
fn compiled(patterns: &[String], guard: &str) -> Result<Arc<GlobSet>, GuardError> {
    if let Ok(last) = COMPILED.lock()
        && let Some((p, set)) = last.as_ref()
        && p.as_slice() == patterns
    {
        return Ok(Arc::clone(set));
    }
    let set = Arc::new(compile(patterns, guard)?);
    if let Ok(mut last) = COMPILED.lock() {
        *last = Some((patterns.to_vec(), Arc::clone(&set)));
    }
    Ok(set)
}

/// The patterns matching `segs` or any of its parent directories.
fn matching<'p, S: AsRef<str>>(set: &GlobSet, patterns: &'p [String], segs: &[S]) -> Vec<&'p str> {
    let mut hits: Vec<usize> = Vec::new();
    for i in 1..=segs.len() {
        let prefix = segs[..i]
            .iter()
            .map(AsRef::as_ref)
            .collect::<Vec<_>>()
            .join("/");
        hits.extend(set.matches(prefix.as_str()));
    }
    hits.sort_unstable();
    hits.dedup();
    hits.into_iter()
        .filter_map(|i| patterns.get(i).map(String::as_str))
        .collect()
}

/// How one path fared.
enum Outcome {
    Ok { shown: String },
    Blocked(String),
}

/// Blocks any edit whose path leaves the repository (lexically or through a symlink) or touches
/// a blocked path. See the [module docs](self). A glob that does not compile, or a repository
/// root that cannot be resolved, is an error (and so a block).
#[derive(Debug, Clone, Copy, Default)]
pub struct BlockedPaths;

impl BlockedPaths {
    fn check_one(
        &self,
        raw: &str,
        root: &Path,
        set: &GlobSet,
        patterns: &[String],
    ) -> Result<Outcome, GuardError> {
        let io_err = |what: &Path, e: std::io::Error| GuardError {
            guard: self.name().to_string(),
            message: format!("cannot inspect {} for `{raw}`: {e}", what.display()),
        };
        let segs = match normalize_segments(raw) {
            Ok(s) => s,
            Err(p) => return Ok(Outcome::Blocked(format!("`{raw}`: {p}"))),
        };
        let norm = segs.join("/");
        let named = if norm == raw {
            format!("`{raw}`")
        } else {
            format!("`{raw}` (normalised `{norm}`)")
        };
        if has_git_segment(&segs) {
            return Ok(Outcome::Blocked(format!(
                "{named} is inside a `.git` directory (git internals)"
            )));
        }

        // A `..` right after a symlink means the parent of the link's target to the OS.
        let mut stack: Vec<&str> = Vec::new();
        for seg in raw.split('/') {
            match seg {
                "" | "." => {}
                ".." => {
                    if !stack.is_empty() {
                        let p = root.join(stack.join("/"));
                        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
                            return Ok(Outcome::Blocked(format!(
                                "`{raw}`: `..` follows the symlink `{}`, which the OS resolves against the link's target",
                                stack.join("/")
                            )));
                        }
                        stack.pop();
                    }
                }
                s => stack.push(s),
            }
        }

        // Existing prefixes: symlinks must stay inside the repository.
        let mut existing = 0usize;
        let mut links: Vec<String> = Vec::new();
        for i in 1..=segs.len() {
            let rel = segs[..i].join("/");
            let p = root.join(&rel);
            match std::fs::symlink_metadata(&p) {
                Ok(m) => {
                    existing = i;
                    if !m.file_type().is_symlink() {
                        continue;
                    }
                    match std::fs::canonicalize(&p) {
                        Ok(target) if target.starts_with(root) => {
                            links.push(format!("`{rel}` → `{}`", rel_display(&target, root)));
                        }
                        Ok(target) => {
                            return Ok(Outcome::Blocked(format!(
                                "{named}: `{rel}` is a symlink to {}, outside the repository",
                                target.display()
                            )));
                        }
                        Err(e) => {
                            return Ok(Outcome::Blocked(format!(
                                "{named}: `{rel}` is a symlink that cannot be resolved ({e}); refusing to write through it"
                            )));
                        }
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                    break;
                }
                Err(e) => return Err(io_err(&p, e)),
            }
        }

        // The path as the OS would resolve it, relative to the root.
        let mut resolved: Option<Vec<String>> = None;
        if !links.is_empty() {
            let prefix = root.join(segs[..existing].join("/"));
            let canon = std::fs::canonicalize(&prefix).map_err(|e| io_err(&prefix, e))?;
            let Ok(inside) = canon.strip_prefix(root) else {
                return Ok(Outcome::Blocked(format!(
                    "{named} resolves to {}, outside the repository",
                    canon.display()
                )));
            };
            let mut r: Vec<String> = Vec::new();
            for c in inside.components() {
                match c.as_os_str().to_str() {
                    Some(s) => r.push(s.to_string()),
                    None => {
                        return Ok(Outcome::Blocked(format!(
                            "{named} resolves to a non-UTF-8 path {}",
                            canon.display()
                        )));
                    }
                }
            }
            r.extend(segs[existing..].iter().map(|s| s.to_string()));
            if r.is_empty() {
                return Ok(Outcome::Blocked(format!(
                    "{named} resolves to the repository root itself"
                )));
            }
            if has_git_segment(&r) {
                return Ok(Outcome::Blocked(format!(
                    "{named} resolves through {} to `{}`, inside a `.git` directory (git internals)",
                    links.join(", "),
                    r.join("/")
                )));
            }
            resolved = Some(r);
        }

        let hits = matching(set, patterns, &segs);
        if !hits.is_empty() {
            return Ok(Outcome::Blocked(format!(
                "{named} matches blocked pattern {}",
                quote(&hits)
            )));
        }
        if let Some(r) = &resolved {
            let hits = matching(set, patterns, r);
            if !hits.is_empty() {
                return Ok(Outcome::Blocked(format!(
                    "{named} resolves through {} to `{}`, which matches blocked pattern {}",
                    links.join(", "),
                    r.join("/"),
                    quote(&hits)
                )));
            }
            return Ok(Outcome::Ok {
                shown: format!("{norm} (via {})", links.join(", ")),
            });
        }
        Ok(Outcome::Ok { shown: norm })
    }
}

fn quote(pats: &[&str]) -> String {
    pats.iter()
        .map(|p| format!("`{p}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn rel_display(target: &Path, root: &Path) -> String {
    target
        .strip_prefix(root)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| target.display().to_string())
}

impl Guard for BlockedPaths {
    fn name(&self) -> &'static str {
        "blocked_paths"
    }

    fn check(
        &self,
        candidate: &Candidate,
        ctx: &GuardContext<'_>,
    ) -> Result<GuardVerdict, GuardError> {
        let patterns = &ctx.policy.blocked_paths;
        let set = compiled(patterns, self.name())?;
        let root: PathBuf = ctx.repo_root.canonicalize().map_err(|e| GuardError {
            guard: self.name().to_string(),
            message: format!(
                "cannot resolve the repository root {}: {e}",
                ctx.repo_root.display()
            ),
        })?;
        let paths = candidate.paths();
        let mut ok = Vec::new();
        let mut blocked = Vec::new();
        for raw in &paths {
            match self.check_one(raw, &root, &set, patterns)? {
                Outcome::Ok { shown } => ok.push(shown),
                Outcome::Blocked(why) => blocked.push(why),
            }
        }
        if blocked.is_empty() {
            ok.dedup();
            Ok(verdict(
                self.name(),
                Decision::Pass,
                format!(
                    "{} path(s) inside the repository, none under `.git` or matching the {} blocked pattern(s): {}",
                    paths.len(),
                    patterns.len(),
                    ok.join(", ")
                ),
            ))
        } else {
            Ok(verdict(
                self.name(),
                Decision::Block,
                format!(
                    "{} of {} path(s) blocked: {}",
                    blocked.len(),
                    paths.len(),
                    blocked.join("; ")
                ),
            ))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::testutil::*;
    use super::super::{GuardPolicy, LedgerView};
    use super::*;

    #[test]
    fn normalises_lexically() {
        assert_eq!(
            normalize_repo_path("config/app.yaml").unwrap(),
            "config/app.yaml"
        );
        assert_eq!(
            normalize_repo_path("./config//x/../app.yaml").unwrap(),
            "config/app.yaml"
        );
        assert_eq!(normalize_repo_path("a/../b").unwrap(), "b");
        for (raw, want) in [
            ("", PathProblem::Empty),
            ("  ", PathProblem::Empty),
            ("a\0b", PathProblem::Nul),
            ("a\nb", PathProblem::Invisible(0x0A)),
            (".g\u{200c}it/config", PathProblem::Invisible(0x200C)),
            ("..\\x", PathProblem::Backslash),
            ("/etc/passwd", PathProblem::Absolute),
            ("C:/x", PathProblem::Absolute),
            ("../outside", PathProblem::Escapes),
            ("a/../../b", PathProblem::Escapes),
            (".", PathProblem::Root),
            ("a/..", PathProblem::Root),
        ] {
            assert_eq!(normalize_repo_path(raw), Err(want), "{raw:?}");
        }
    }

    /// A repo in a tempdir with `config/app.yaml`, `.git/HEAD`, and symlinks
    /// `link -> /tmp`, `link2 -> .git`, `conf -> config`, `dang -> /nonexistent/...`.
    fn repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir_all(r.join("config")).unwrap();
        std::fs::write(r.join("config/app.yaml"), "a: 1\n").unwrap();
        std::fs::create_dir_all(r.join(".git")).unwrap();
        std::fs::write(r.join(".git/HEAD"), "ref: refs/heads/main\n").unwrap();
        std::os::unix::fs::symlink("/tmp", r.join("link")).unwrap();
        std::os::unix::fs::symlink(".git", r.join("link2")).unwrap();
        std::os::unix::fs::symlink("config", r.join("conf")).unwrap();
        std::os::unix::fs::symlink("/nonexistent-kaizen/target", r.join("dang")).unwrap();
        std::os::unix::fs::symlink(".", r.join("self")).unwrap();
        dir
    }

    fn policy() -> GuardPolicy {
        let mut p = GuardPolicy::default();
        // What config.rs adds for the state dir.
        p.blocked_paths.push(".kaizen".into());
        p.blocked_paths.push(".kaizen/**".into());
        p
    }

    fn check_paths(
        root: &Path,
        policy: &GuardPolicy,
        paths: &[&str],
    ) -> Result<GuardVerdict, GuardError> {
        let view = LedgerView::default();
        let c = cand_with("cache", paths.iter().map(|p| set(p, "a")).collect());
        let ctx = GuardContext {
            view: &view,
            policy,
            now: t0(),
            repo_root: root,
        };
        BlockedPaths.check(&c, &ctx)
    }

    fn run(root: &Path, path: &str) -> GuardVerdict {
        check_paths(root, &policy(), &[path]).unwrap()
    }

    #[test]
    fn ordinary_paths_pass() {
        let dir = repo();
        for p in [
            "config/app.yaml",
            "config/../config/app.yaml",
            "./config/new.yaml",
            "docs/new/x.md",
            "keys.md",
        ] {
            let v = run(dir.path(), p);
            assert_eq!(v.decision, Decision::Pass, "{p}: {}", v.reason);
        }
        let v = run(dir.path(), "config/app.yaml");
        assert_eq!(
            v.reason,
            "1 path(s) inside the repository, none under `.git` or matching the 10 blocked pattern(s): config/app.yaml"
        );
    }

    #[test]
    fn each_bad_path_is_blocked_with_its_reason() {
        let dir = repo();
        let cases = [
            (".git/config", "inside a `.git` directory"),
            (".GIT/config", "inside a `.git` directory"),
            (
                "vendor/lib/.git/hooks/pre-commit",
                "inside a `.git` directory",
            ),
            ("../outside", "`..` leaves the repository root"),
            ("/etc/passwd", "absolute"),
            (
                "config/../.git/HEAD",
                "`config/../.git/HEAD` (normalised `.git/HEAD`) is inside a `.git` directory",
            ),
            (
                ".kaizen/ledger.sqlite",
                "matches blocked pattern `.kaizen`, `.kaizen/**`",
            ),
            ("secrets/db.yaml", "matches blocked pattern `**/secrets/**`"),
            (
                "app/secrets/db.yaml",
                "matches blocked pattern `**/secrets/**`",
            ),
            ("deploy/tls.pem", "matches blocked pattern `**/*.pem`"),
            ("deploy/TLS.PEM", "matches blocked pattern `**/*.pem`"),
            ("server.key", "matches blocked pattern `**/*.key`"),
            (".gitmodules", "matches blocked pattern `.gitmodules`"),
            (
                "vendor/.gitattributes",
                "matches blocked pattern `**/.gitattributes`",
            ),
            (".env.local", "matches blocked pattern `**/.env*`"),
            (
                "link/x.yaml",
                "`link` is a symlink to /tmp, outside the repository",
            ),
            (
                "link",
                "`link` is a symlink to /tmp, outside the repository",
            ),
            (
                "link2/config",
                "resolves through `link2` → `.git` to `.git/config`, inside a `.git` directory",
            ),
            ("link2", "to `.git`, inside a `.git` directory"),
            ("dang/x.yaml", "`dang` is a symlink that cannot be resolved"),
            ("conf/../x.yaml", "`..` follows the symlink `conf`"),
            ("self", "resolves to the repository root itself"),
            ("self/.git/config", "inside a `.git` directory"),
            ("", "the path is empty"),
            ("a\0b", "NUL"),
        ];
        for (p, want) in cases {
            let v = run(dir.path(), p);
            assert_eq!(v.decision, Decision::Block, "{p}: {}", v.reason);
            assert!(v.reason.contains(want), "{p}: {}", v.reason);
            assert!(
                v.reason.starts_with("1 of 1 path(s) blocked: "),
                "{p}: {}",
                v.reason
            );
        }
    }

    #[test]
    fn symlink_inside_the_repo_is_resolved_and_checked() {
        let dir = repo();
        let v = run(dir.path(), "conf/app.yaml");
        assert_eq!(v.decision, Decision::Pass, "{}", v.reason);
        assert!(
            v.reason.contains("conf/app.yaml (via `conf` → `config`)"),
            "{}",
            v.reason
        );
        // The resolved path is matched against the globs too.
        let mut p = policy();
        p.blocked_paths.push("config/**".into());
        let v = check_paths(dir.path(), &p, &["conf/app.yaml"]).unwrap();
        assert_eq!(v.decision, Decision::Block);
        assert!(
            v.reason
                .contains("to `config/app.yaml`, which matches blocked pattern `config/**`"),
            "{}",
            v.reason
        );
    }

    #[test]
    fn a_directory_pattern_blocks_everything_below_it() {
        let dir = repo();
        let p = GuardPolicy {
            blocked_paths: vec!["infra".into(), "*.lock".into()],
            ..GuardPolicy::default()
        };
        let v = check_paths(dir.path(), &p, &["infra/prod/db.yaml"]).unwrap();
        assert_eq!(v.decision, Decision::Block);
        assert!(
            v.reason.contains("matches blocked pattern `infra`"),
            "{}",
            v.reason
        );
        // literal_separator: `*.lock` is top-level only.
        assert_eq!(
            check_paths(dir.path(), &p, &["Cargo.lock"])
                .unwrap()
                .decision,
            Decision::Block
        );
        assert_eq!(
            check_paths(dir.path(), &p, &["sub/Cargo.lock"])
                .unwrap()
                .decision,
            Decision::Pass
        );
        assert_eq!(
            check_paths(dir.path(), &p, &["infrastructure.yaml"])
                .unwrap()
                .decision,
            Decision::Pass
        );
    }

    #[test]
    fn every_path_is_checked_and_all_problems_listed() {
        let dir = repo();
        let v = check_paths(
            dir.path(),
            &policy(),
            &["config/app.yaml", ".git/config", "secrets/x.yaml"],
        )
        .unwrap();
        assert_eq!(v.decision, Decision::Block);
        assert!(
            v.reason
                .starts_with("2 of 3 path(s) blocked: `.git/config`"),
            "{}",
            v.reason
        );
        assert!(
            v.reason.contains("`secrets/x.yaml` matches"),
            "{}",
            v.reason
        );
    }

    #[test]
    fn bad_glob_or_missing_root_is_an_error() {
        let dir = repo();
        let p = GuardPolicy {
            blocked_paths: vec![".git/**".into(), "a/{b".into()],
            ..GuardPolicy::default()
        };
        let e = check_paths(dir.path(), &p, &["config/app.yaml"]).unwrap_err();
        assert_eq!(e.guard, "blocked_paths");
        assert!(
            e.message.contains("guards.blocked_paths[1] \"a/{b\""),
            "{}",
            e.message
        );
        let e = check_paths(
            Path::new("/nonexistent-kaizen-repo"),
            &policy(),
            &["config/app.yaml"],
        )
        .unwrap_err();
        assert!(
            e.message.contains("cannot resolve the repository root"),
            "{}",
            e.message
        );
    }
}
