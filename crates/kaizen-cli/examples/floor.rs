//! Lower bounds for benchmark 1 (apply + revert, BENCHMARKS.md): the least a process must do to
//! make one of kaizen's commits or record one of its decisions, with the libraries kaizen uses
//! and nothing of kaizen around them — no config, rules, lessons, guards or ledger schema.
//!
//! ```sh
//! cargo build --release -p kaizen-cli --example floor
//! floor commit REPO FILE FROM TO   # one libgit2 commit of one edited file, index and file updated
//! floor sqlite DB                  # open a WAL database (synchronous=FULL) and commit one row
//! floor ledger DB                  # open kaizen's ledger (schema check and pragmas), nothing else
//! ```
//!
//! `commit` does what any committing operation of kaizen's must: read the index (libgit2 reads
//! and checksums the whole file), store the new blob, build the tree along the one path, write
//! the commit on HEAD's branch, write the file and its index entry, and write the whole index
//! back (checksummed again). It checks nothing — no clean check, no lock journal, no
//! `.git/index.lock` — so it is a floor, not a product path. Measured as whole processes with
//! `perf stat -e task-clock`, beside `kaizen cycle` / `kaizen revert` on the same repository.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::Path;
use std::process::ExitCode;

fn commit(repo: &Path, file: &str, from: &str, to: &str) -> Result<(), Box<dyn std::error::Error>> {
    let repo = git2::Repository::open(repo)?;
    let mut index = repo.index()?;
    let head = repo.head()?;
    let refname = head.name()?.to_string();
    let parent = head.peel_to_commit()?;
    let base = parent.tree()?;
    let entry = base.get_path(Path::new(file))?;
    let old = repo.find_blob(entry.id())?;
    let text = std::str::from_utf8(old.content())?.replacen(from, to, 1);
    let blob = repo.blob(text.as_bytes())?;
    let mut update = git2::build::TreeUpdateBuilder::new();
    update.upsert(file, blob, git2::FileMode::Blob);
    let tree = repo.find_tree(update.create_updated(&repo, &base)?)?;
    let sig = git2::Signature::now("floor", "floor@example.invalid")?;
    repo.commit(
        Some(&refname),
        &sig,
        &sig,
        &format!("floor: {from} -> {to}"),
        &tree,
        &[&parent],
    )?;
    let root = repo.workdir().ok_or("bare repository")?;
    std::fs::write(root.join(file), text.as_bytes())?;
    index.add_path(Path::new(file))?;
    index.write()?;
    Ok(())
}

fn sqlite(db: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let mut conn = rusqlite::Connection::open(db)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, at INTEGER, v TEXT)")?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO t(at, v) VALUES (?1, ?2)",
        rusqlite::params![0i64, "one decision"],
    )?;
    tx.commit()?;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["commit", repo, file, from, to] => commit(Path::new(repo), file, from, to),
        ["sqlite", db] => sqlite(Path::new(db)),
        ["ledger", db] => kaizen_core::ledger::Ledger::open(Path::new(db))
            .map(drop)
            .map_err(Into::into),
        _ => {
            eprintln!("usage: floor commit REPO FILE FROM TO | floor sqlite DB | floor ledger DB");
            return ExitCode::from(2);
        }
    };
    match out {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floor: {e}");
            ExitCode::from(1)
        }
    }
}
