//! The audit chain: each event in the ledger stores the hash of the one before it, over a
//! canonical encoding, so an edit of the log is evident.
//!
//! Each row holds `prev_hash` (the previous row's `hash`, empty for the first) and `hash` =
//! SHA-256 over [`encode`]: a version tag, `prev_hash`, and the row's time, intervention, stage,
//! kind, text and typed data, each length-prefixed (no two rows encode alike). The row id is
//! not hashed: the links order the rows, so a swap shows as a broken link, not as an alteration.
//!
//! The ledger alone cannot prove its tail was not cut (drop the last rows and the rest still
//! chains). So every kaizen commit (apply, revert, lesson) carries the chain head at that moment
//! in a `Kaizen-Audit: <hash>` trailer: git is the witness the ledger cannot rewrite, and
//! [`verify`] checks each witnessed head is still in the chain.

use sha2::{Digest, Sha256};
use std::fmt;

/// The trailer naming the chain head in every kaizen commit.
pub const TRAILER_AUDIT: &str = "Kaizen-Audit";

/// The version tag at the start of every encoding (a change of encoding gets a new tag).
const TAG: &[u8] = b"kaizen-audit-v1";

/// One event row as stored (the fields the chain covers, and the chain's own columns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainRow {
    /// Its position in the log (not hashed).
    pub seq: i64,
    /// When, in milliseconds since the epoch.
    pub at_ms: i64,
    /// The intervention id, if any.
    pub intervention: Option<i64>,
    /// The stage name.
    pub stage: String,
    /// The kind name.
    pub kind: String,
    /// The human line.
    pub detail: String,
    /// The typed event as JSON.
    pub data: Option<String>,
    /// The stored hash of the row before (`None`: never chained).
    pub prev_hash: Option<String>,
    /// The stored hash of this row (`None`: never chained).
    pub hash: Option<String>,
}

fn field(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(bytes);
    out.push(b';');
}

/// The canonical encoding of `row` chained after `prev` (the bytes that are hashed).
pub fn encode(prev: &str, row: &ChainRow) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(128 + row.detail.len() + row.data.as_ref().map_or(0, String::len));
    field(&mut out, TAG);
    field(&mut out, prev.as_bytes());
    field(&mut out, row.at_ms.to_string().as_bytes());
    match row.intervention {
        Some(i) => field(&mut out, i.to_string().as_bytes()),
        None => field(&mut out, b"-"),
    }
    field(&mut out, row.stage.as_bytes());
    field(&mut out, row.kind.as_bytes());
    field(&mut out, row.detail.as_bytes());
    match &row.data {
        Some(d) => {
            out.push(b'+');
            field(&mut out, d.as_bytes());
        }
        None => out.push(b'-'),
    }
    out
}

/// The hash of `row` chained after `prev` (lowercase hex SHA-256).
pub fn hash(prev: &str, row: &ChainRow) -> String {
    let digest = Sha256::digest(encode(prev, row));
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// A commit naming a chain head (its `Kaizen-Audit` trailer).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Witness {
    /// The commit (full hex id).
    pub commit: String,
    /// The chain head it names.
    pub head: String,
}

/// The first place the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Tamper {
    /// The row's content no longer matches its hash.
    Altered {
        /// The row.
        seq: i64,
    },
    /// Rows before this one are missing (its link names a hash no row holds).
    Removed {
        /// The row after the gap.
        seq: i64,
        /// The last intact row before the gap (`None`: the gap is at the start).
        after: Option<i64>,
    },
    /// A row that was never chained (no hash), or whose link names a row that is not the one
    /// before it and exists nowhere.
    Inserted {
        /// The row.
        seq: i64,
    },
    /// A row out of its place: its link names another row than the one before it.
    Reordered {
        /// The row.
        seq: i64,
        /// The row it belongs after.
        belongs_after: i64,
    },
    /// A commit names a chain head no row holds: the ledger's tail was cut (or rewritten) after
    /// that commit.
    TailCut {
        /// The commit.
        commit: String,
        /// The head it names.
        head: String,
        /// The last row the ledger holds (`None`: none).
        last: Option<i64>,
    },
}

impl fmt::Display for Tamper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tamper::Altered { seq } => write!(
                f,
                "event #{seq} was altered (its content no longer matches its hash)"
            ),
            Tamper::Removed {
                seq,
                after: Some(a),
            } => {
                write!(f, "event(s) were removed between #{a} and #{seq}")
            }
            Tamper::Removed { seq, after: None } => {
                write!(f, "event(s) were removed before #{seq}")
            }
            Tamper::Inserted { seq } => {
                write!(f, "event #{seq} was inserted (it is not part of the chain)")
            }
            Tamper::Reordered { seq, belongs_after } => write!(
                f,
                "event #{seq} was reordered (it belongs after #{belongs_after})"
            ),
            Tamper::TailCut { commit, head, last } => write!(
                f,
                "the ledger's tail was cut: commit {} names audit head {head}, which no event holds (last event {})",
                commit.get(..10).unwrap_or(commit),
                last.map(|l| format!("#{l}"))
                    .unwrap_or_else(|| "none".into())
            ),
        }
    }
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditReport {
    /// Events checked.
    pub events: usize,
    /// The chain head (the last event's hash).
    pub head: Option<String>,
    /// Commits witnessing a head, checked.
    pub witnesses: usize,
    /// The first problem, if any.
    pub problem: Option<Tamper>,
}

impl AuditReport {
    /// Whether the chain holds.
    pub fn is_intact(&self) -> bool {
        self.problem.is_none()
    }
}

/// Recomputes the chain over `rows` (in log order) and checks each witnessed head is in it.
pub fn verify(rows: &[ChainRow], witnesses: &[Witness]) -> AuditReport {
    let problem = first_break(rows).or_else(|| {
        let heads: std::collections::BTreeSet<&str> =
            rows.iter().filter_map(|r| r.hash.as_deref()).collect();
        witnesses
            .iter()
            .find(|w| !heads.contains(w.head.as_str()))
            .map(|w| Tamper::TailCut {
                commit: w.commit.clone(),
                head: w.head.clone(),
                last: rows.last().map(|r| r.seq),
            })
    });
    AuditReport {
        events: rows.len(),
        head: rows.last().and_then(|r| r.hash.clone()),
        witnesses: witnesses.len(),
        problem,
    }
}

fn first_break(rows: &[ChainRow]) -> Option<Tamper> {
    let mut last: Option<&ChainRow> = None;
    for row in rows {
        let (Some(prev), Some(h)) = (row.prev_hash.as_deref(), row.hash.as_deref()) else {
            return Some(Tamper::Inserted { seq: row.seq });
        };
        if hash(prev, row) != h {
            return Some(Tamper::Altered { seq: row.seq });
        }
        let expected = last.and_then(|l| l.hash.as_deref()).unwrap_or("");
        if prev != expected {
            // Where does its link point?
            if let Some(owner) = rows.iter().find(|r| r.hash.as_deref() == Some(prev)) {
                return Some(Tamper::Reordered {
                    seq: row.seq,
                    belongs_after: owner.seq,
                });
            }
            // A link to nothing: the row(s) it chained after were removed.
            return Some(Tamper::Removed {
                seq: row.seq,
                after: last.map(|l| l.seq),
            });
        }
        last = Some(row);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: i64) -> Vec<ChainRow> {
        let mut prev = String::new();
        (1..=n)
            .map(|seq| {
                let mut r = ChainRow {
                    seq,
                    at_ms: 1_000 * seq,
                    intervention: (seq % 2 == 0).then_some(seq),
                    stage: "observe".into(),
                    kind: "sample_error".into(),
                    detail: format!("event {seq}"),
                    data: Some(format!("{{\"n\":{seq}}}")),
                    prev_hash: Some(prev.clone()),
                    hash: None,
                };
                let h = hash(&prev, &r);
                r.hash = Some(h.clone());
                prev = h;
                r
            })
            .collect()
    }

    #[test]
    fn an_untouched_chain_is_intact_and_each_edit_is_named() {
        let rows = chain(6);
        let r = verify(&rows, &[]);
        assert!(r.is_intact(), "{r:?}");
        assert_eq!(r.head, rows[5].hash);

        let mut altered = rows.clone();
        altered[2].detail.push('!');
        assert_eq!(
            verify(&altered, &[]).problem,
            Some(Tamper::Altered { seq: 3 })
        );

        let mut removed = rows.clone();
        removed.remove(3);
        assert_eq!(
            verify(&removed, &[]).problem,
            Some(Tamper::Removed {
                seq: 5,
                after: Some(3)
            })
        );

        let mut inserted = rows.clone();
        let mut extra = rows[1].clone();
        extra.seq = 7;
        extra.prev_hash = None;
        extra.hash = None;
        inserted.push(extra);
        assert_eq!(
            verify(&inserted, &[]).problem,
            Some(Tamper::Inserted { seq: 7 })
        );

        let mut swapped = rows.clone();
        swapped.swap(1, 2);
        let (a, b) = (swapped[1].seq, swapped[2].seq);
        swapped[1].seq = b;
        swapped[2].seq = a;
        assert_eq!(
            verify(&swapped, &[]).problem,
            Some(Tamper::Reordered {
                seq: 2,
                belongs_after: 3
            })
        );

        let witness = Witness {
            commit: "c0ffee".into(),
            head: rows[4].hash.clone().unwrap(),
        };
        assert!(verify(&rows, std::slice::from_ref(&witness)).is_intact());
        let cut = &rows[..4];
        assert!(matches!(
            verify(cut, &[witness]).problem,
            Some(Tamper::TailCut { last: Some(4), .. })
        ));
    }

    #[test]
    fn encoding_is_unambiguous() {
        let mut a = chain(1).remove(0);
        let mut b = a.clone();
        a.stage = "ab".into();
        a.kind = "c".into();
        b.stage = "a".into();
        b.kind = "bc".into();
        assert_ne!(hash("", &a), hash("", &b));
        b = a.clone();
        b.data = None;
        a.data = Some(String::new());
        assert_ne!(hash("", &a), hash("", &b));
    }
}
