//! git's index file (`.git/index`, versions 2 and 3), read and edited the way git itself does:
//! the file is read without verifying its trailing checksum (git checks it only in `fsck`),
//! only the entries an operation touches are decoded and rewritten, every other entry is copied
//! byte for byte, and the new file gets a fresh SHA-1 trailer.
//!
//! Why not libgit2's index: libgit2 1.9 verifies the SHA-1 of the whole file on every read and
//! copies and validates every entry — for a 10k-file repository, most of what a kaizen apply or
//! revert cost (BENCHMARKS.md, findings 1 and 6). What this module does not understand it does
//! not touch: a version-4 index (prefix-compressed paths), a split index (`link`), a sparse index
//! (`sdir`) or any other extension git marks as required make [`IndexFile::parse`] decline, and
//! the caller uses libgit2 instead.
//!
//! What a rewrite keeps and drops, as git does when it rewrites an index:
//! - the cache tree (`TREE`) is kept with the directories of every touched path invalidated
//!   (git's `cache_tree_invalidate_path`), so a later `git commit` rebuilds only those;
//! - resolve-undo (`REUC`) is kept as is;
//! - the other optional extensions (`UNTR` untracked cache, `FSMN` fsmonitor, `EOIE`/`IEOT`
//!   entry offsets, any unknown upper-case one) describe the old file's layout or the working
//!   tree's state; they are dropped and git rebuilds them when it wants them;
//! - "racily clean" entries — modified in the same second as the old index was written, so their
//!   stat data cannot tell a later edit — are smudged (size set to 0) when their content differs
//!   from what the entry names, exactly git's rule (`ce_smudge_racily_clean_entry`).

use git2::{IndexEntry, ObjectType, Oid};
use sha1::{Digest, Sha1};
use std::fs;
use std::io::Write;
use std::path::Path;

/// Bytes of an entry before its path: ctime, mtime, dev, ino, mode, uid, gid, size (4 each),
/// the object id (20) and the flags (2).
const ENTRY_FIXED: usize = 62;
/// The flag bit saying a version-3 entry carries 2 more bytes of extended flags.
const FLAG_EXTENDED: u16 = 0x4000;
const NAME_MASK: u16 = 0x0fff;
const OID_LEN: usize = 20;
const HASH_LEN: usize = 20;
/// Deepest cache tree decoded; a deeper one is dropped (it is only a cache).
const MAX_TREE_DEPTH: usize = 512;

/// Why an index is left to libgit2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unsupported(pub String);

/// One entry: either a byte range of the file as read, or an entry written by this operation.
/// Kept small (16 bytes): an index of 10k files has 10k of them, and their vector's pages are
/// faulted in by every operation.
#[derive(Debug, Clone)]
enum Entry {
    Kept { start: u32, end: u32, name_len: u32 },
    New(Box<NewEntry>),
}

const _: () = assert!(std::mem::size_of::<Entry>() <= 16);

/// An entry written by this operation: its path and its encoded bytes.
#[derive(Debug, Clone)]
struct NewEntry {
    name: Vec<u8>,
    bytes: Vec<u8>,
}

/// A parsed index (see the module docs).
pub(crate) struct IndexFile {
    bytes: Bytes,
    version: u32,
    entries: Vec<Entry>,
    /// Byte ranges (header included) of the extensions kept verbatim (`REUC`).
    kept_extensions: Vec<(usize, usize)>,
    tree: Option<TreeNode>,
    /// Whole seconds of the file's mtime as read (0 when there was no file): an entry modified
    /// in that second or later is racily clean.
    timestamp: i64,
}

/// A cache-tree node (`TREE` extension).
#[derive(Debug, Clone)]
struct TreeNode {
    name: Vec<u8>,
    /// Entries covered; -1 when invalidated (then no id).
    entry_count: i64,
    oid: Option<[u8; OID_LEN]>,
    children: Vec<TreeNode>,
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

/// From this size on an index file is mapped rather than read (a large index: no copy, and
/// no fresh pages to fault in; a small one is cheaper to read).
const MAP_FROM: u64 = 64 * 1024;

/// An index file's bytes: read into memory, or mapped.
enum Bytes {
    Owned(Vec<u8>),
    Mapped(memmap2::Mmap),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Owned(v) => v,
            Bytes::Mapped(m) => m,
        }
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bytes", self.len())
    }
}

fn read_all(file: &mut fs::File, len: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The buffer [`IndexFile::serialize_to`] writes through.
const WRITE_BUFFER: usize = 64 * 1024;

/// Passes writes on and hashes what was written (the index's trailing SHA-1).
struct HashingWriter<W> {
    inner: W,
    hash: Sha1,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(buf.get(..n).unwrap_or(buf));
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn unsupported(why: impl Into<String>) -> Unsupported {
    Unsupported(why.into())
}

impl IndexFile {
    /// An index with no entries (the repository has none yet).
    pub(crate) fn empty() -> IndexFile {
        IndexFile {
            bytes: Bytes::Owned(Vec::new()),
            version: 2,
            entries: Vec::new(),
            kept_extensions: Vec::new(),
            tree: None,
            timestamp: 0,
        }
    }

    /// Reads `path`: `Ok(None)` when there is no index file yet.
    pub(crate) fn read(path: &Path) -> Result<Option<IndexFile>, ReadError> {
        let mut file = match fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(ReadError::Io(e)),
        };
        // The file's mtime in whole seconds, as git compares it without USE_NSEC (the wider
        // window: more entries count as racy, none is missed); unknown, every entry is racy.
        let meta = file.metadata().map_err(ReadError::Io)?;
        let timestamp = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(1);
        let bytes = if meta.len() >= MAP_FROM {
            // SAFETY: a mapping is undefined behaviour if the file changes under it. An index
            // is never changed in place: git, libgit2 and kaizen each write a new file and
            // rename it over `.git/index` (the old inode, and so this mapping, stays as read),
            // and every read that leads to a write happens under `.git/index.lock`. Only a
            // tool truncating the file in place could bite: the process would then die of
            // SIGBUS like a kill, which start-up recovery repairs (git maps its index the same
            // way). The content is untrusted either way: parsing is bounds-checked throughout.
            match unsafe { memmap2::Mmap::map(&file) } {
                Ok(map) => Bytes::Mapped(map),
                Err(_) => Bytes::Owned(read_all(&mut file, meta.len()).map_err(ReadError::Io)?),
            }
        } else {
            Bytes::Owned(read_all(&mut file, meta.len()).map_err(ReadError::Io)?)
        };
        IndexFile::parse_bytes(bytes, timestamp)
            .map(Some)
            .map_err(ReadError::Unsupported)
    }

    /// Parses an index file's bytes; `timestamp`: the file's mtime in seconds.
    #[cfg(test)]
    pub(crate) fn parse(bytes: Vec<u8>, timestamp: i64) -> Result<IndexFile, Unsupported> {
        IndexFile::parse_bytes(Bytes::Owned(bytes), timestamp)
    }

    fn parse_bytes(bytes: Bytes, timestamp: i64) -> Result<IndexFile, Unsupported> {
        if bytes.len() < 12 + HASH_LEN || bytes.get(0..4) != Some(b"DIRC".as_slice()) {
            return Err(unsupported("not an index file (no DIRC header)"));
        }
        let version = be32(&bytes, 4).ok_or_else(|| unsupported("truncated header"))?;
        if version != 2 && version != 3 {
            return Err(unsupported(format!("index version {version}")));
        }
        let count = be32(&bytes, 8).ok_or_else(|| unsupported("truncated header"))?;
        let body_end = bytes.len() - HASH_LEN;
        let mut entries = Vec::with_capacity(usize::try_from(count).unwrap_or(0).min(1 << 20));
        let mut at = 12usize;
        let mut prev: Option<(usize, usize, u16)> = None;
        for _ in 0..count {
            let flags = be16(&bytes, at + 60).ok_or_else(|| unsupported("truncated entry"))?;
            let fixed = if flags & FLAG_EXTENDED != 0 {
                if version < 3 {
                    return Err(unsupported("extended flags in a version-2 index"));
                }
                ENTRY_FIXED + 2
            } else {
                ENTRY_FIXED
            };
            let name_start = at + fixed;
            let rest = bytes
                .get(name_start..body_end)
                .ok_or_else(|| unsupported("truncated entry"))?;
            let name_len = match flags & NAME_MASK {
                NAME_MASK => rest
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or_else(|| unsupported("unterminated path"))?,
                n => usize::from(n),
            };
            if rest.get(name_len) != Some(&0) || rest[..name_len].contains(&0) {
                return Err(unsupported("malformed path"));
            }
            // git pads each entry with 1 to 8 NULs to a multiple of 8 bytes.
            let len = (fixed + name_len + 8) & !7;
            let end = at + len;
            if end > body_end {
                return Err(unsupported("truncated entry"));
            }
            let stage = (flags >> 12) & 3;
            if let Some((ps, pl, pstage)) = prev {
                let here = (&bytes[name_start..name_start + name_len], stage);
                if (&bytes[ps..ps + pl], pstage) >= here {
                    return Err(unsupported("entries out of order"));
                }
            }
            prev = Some((name_start, name_len, stage));
            // Offsets past 4 GiB: no such index in practice; libgit2's then.
            let small = |v: usize| u32::try_from(v).map_err(|_| unsupported("index over 4 GiB"));
            entries.push(Entry::Kept {
                start: small(at)?,
                end: small(end)?,
                name_len: small(name_len)?,
            });
            at = end;
        }
        let mut kept_extensions = Vec::new();
        let mut tree = None;
        while at < body_end {
            let sig = bytes
                .get(at..at + 4)
                .ok_or_else(|| unsupported("truncated extension"))?;
            let size = be32(&bytes, at + 4).ok_or_else(|| unsupported("truncated extension"))?;
            let data_start = at + 8;
            let data_end = usize::try_from(size)
                .ok()
                .and_then(|s| data_start.checked_add(s))
                .filter(|&e| e <= body_end)
                .ok_or_else(|| unsupported("truncated extension"))?;
            if !sig[0].is_ascii_uppercase() {
                // git's rule: an extension whose name starts with a lower-case letter must be
                // understood (a split or sparse index); leave those to libgit2.
                return Err(unsupported(format!(
                    "required index extension {:?}",
                    String::from_utf8_lossy(sig)
                )));
            }
            match sig {
                b"TREE" => tree = parse_tree(&bytes[data_start..data_end]),
                b"REUC" => kept_extensions.push((at, data_end)),
                _ => {}
            }
            at = data_end;
        }
        Ok(IndexFile {
            bytes,
            version,
            entries,
            kept_extensions,
            tree,
            timestamp,
        })
    }

    fn name<'a>(&'a self, e: &'a Entry) -> &'a [u8] {
        match e {
            Entry::Kept {
                start, name_len, ..
            } => {
                let fixed = if self.flags_of(e) & FLAG_EXTENDED != 0 {
                    ENTRY_FIXED + 2
                } else {
                    ENTRY_FIXED
                };
                let from = *start as usize + fixed;
                &self.bytes[from..from + *name_len as usize]
            }
            Entry::New(n) => &n.name,
        }
    }

    fn raw<'a>(&'a self, e: &'a Entry) -> &'a [u8] {
        match e {
            Entry::Kept { start, end, .. } => &self.bytes[*start as usize..*end as usize],
            Entry::New(n) => &n.bytes,
        }
    }

    fn flags_of(&self, e: &Entry) -> u16 {
        let raw = self.raw(e);
        u16::from_be_bytes([raw[60], raw[61]])
    }

    fn stage_of(&self, e: &Entry) -> u16 {
        (self.flags_of(e) >> 12) & 3
    }

    /// First position whose (name, stage) is not below `(name, stage)`.
    fn lower_bound(&self, name: &[u8], stage: u16) -> usize {
        self.entries
            .partition_point(|e| (self.name(e), self.stage_of(e)) < (name, stage))
    }

    /// The stage-0 blob of `path`: `Some(None)` absent, `None` conflicted (libgit2's
    /// `get_path` per stage, as the caller used it).
    pub(crate) fn stage_blob(&self, path: &str) -> Option<Option<Oid>> {
        let name = path.as_bytes();
        let mut i = self.lower_bound(name, 0);
        let mut found = None;
        while let Some(e) = self.entries.get(i) {
            if self.name(e) != name {
                break;
            }
            if self.stage_of(e) != 0 {
                return None;
            }
            found = Oid::from_bytes(&self.raw(e)[40..60]).ok();
            i += 1;
        }
        Some(found)
    }

    /// Sets (`Some`) or removes (`None`) the stage-0 entry of each path; any conflict stages of
    /// the path go too (git's `add` does the same). Refuses a file where the index has a
    /// directory of that name, or under a name the index has as a file.
    pub(crate) fn edit(
        &mut self,
        updates: &[(String, Option<IndexEntry>)],
    ) -> Result<(), EditError> {
        for (path, entry) in updates {
            let name = path.as_bytes().to_vec();
            let from = self.lower_bound(&name, 0);
            let mut to = from;
            while self.entries.get(to).is_some_and(|e| self.name(e) == name) {
                to += 1;
            }
            let Some(entry) = entry else {
                self.entries.drain(from..to);
                self.invalidate(&name);
                continue;
            };
            if from == to {
                self.check_no_collision(&name).map_err(|what| EditError {
                    path: path.clone(),
                    what,
                })?;
            }
            let bytes = encode(entry, &name);
            self.entries.splice(
                from..to,
                std::iter::once(Entry::New(Box::new(NewEntry {
                    name: name.clone(),
                    bytes,
                }))),
            );
            self.invalidate(&name);
        }
        Ok(())
    }

    /// A new path must not be a directory of the index, nor lie under a file of it.
    fn check_no_collision(&self, name: &[u8]) -> Result<(), &'static str> {
        // Entries under `name/` sort together, after `name/` itself (but not right after `name`:
        // `a.txt` sorts between `a` and `a/b`).
        let mut dir = name.to_vec();
        dir.push(b'/');
        let k = self.lower_bound(&dir, 0);
        if self
            .entries
            .get(k)
            .is_some_and(|e| self.name(e).starts_with(&dir))
        {
            return Err("the index has a directory of that name");
        }
        for (i, b) in name.iter().enumerate() {
            if *b == b'/' {
                let parent = &name[..i];
                let k = self.lower_bound(parent, 0);
                if self.entries.get(k).is_some_and(|e| self.name(e) == parent) {
                    return Err("a parent directory is a file in the index");
                }
            }
        }
        Ok(())
    }

    /// Invalidates the cache-tree nodes on `name`'s way from the root.
    fn invalidate(&mut self, name: &[u8]) {
        let Some(mut node) = self.tree.as_mut() else {
            return;
        };
        let mut rest = name;
        loop {
            node.entry_count = -1;
            node.oid = None;
            let Some(slash) = rest.iter().position(|&b| b == b'/') else {
                return;
            };
            let (dir, tail) = (&rest[..slash], &rest[slash + 1..]);
            match node.children.iter_mut().find(|c| c.name == dir) {
                Some(child) => node = child,
                None => return,
            }
            rest = tail;
        }
    }

    /// The new file: header, entries (racily clean ones smudged, judged against `root`'s
    /// working tree), the kept extensions, and the SHA-1 of all of it.
    #[cfg(test)]
    pub(crate) fn serialize(&self, root: &Path) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.bytes.len() + 256);
        // Writing to a Vec cannot fail.
        let _ = self.serialize_to(root, &mut out);
        out
    }

    /// [`IndexFile::serialize`] streamed to `w` through a small buffer, hashed on the way: no
    /// second copy of a large index in memory (at 10k files, the ≈ 200 fresh pages such a copy
    /// faults in were a tenth of a cron `kaizen revert`'s CPU).
    pub(crate) fn serialize_to(&self, root: &Path, w: &mut impl Write) -> std::io::Result<()> {
        let mut out = std::io::BufWriter::with_capacity(
            WRITE_BUFFER,
            HashingWriter {
                inner: w,
                hash: Sha1::new(),
            },
        );
        out.write_all(b"DIRC")?;
        out.write_all(&self.version.to_be_bytes())?;
        let count = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
        out.write_all(&count.to_be_bytes())?;
        for e in &self.entries {
            let raw = self.raw(e);
            if raw.len() >= 40 && self.is_racily_clean(raw) && self.differs_on_disk(root, e) {
                // git's smudge: the size in the entry's stat data becomes 0.
                out.write_all(&raw[..36])?;
                out.write_all(&0u32.to_be_bytes())?;
                out.write_all(&raw[40..])?;
            } else {
                out.write_all(raw)?;
            }
        }
        if let Some(tree) = &self.tree {
            let mut data = Vec::new();
            write_tree(tree, &mut data);
            out.write_all(b"TREE")?;
            out.write_all(&u32::try_from(data.len()).unwrap_or(u32::MAX).to_be_bytes())?;
            out.write_all(&data)?;
        }
        for (s, e) in &self.kept_extensions {
            out.write_all(&self.bytes[*s..*e])?;
        }
        let HashingWriter { inner, hash } = out.into_inner().map_err(|e| e.into_error())?;
        inner.write_all(&hash.finalize())
    }

    fn is_racily_clean(&self, raw: &[u8]) -> bool {
        let mode = be32(raw, 24).unwrap_or(0);
        let mtime = i64::from(be32(raw, 8).unwrap_or(0));
        // Submodules (gitlinks) are never racy: their content is a commit, not a file.
        self.timestamp != 0 && mode & 0o170000 != 0o160000 && self.timestamp <= mtime
    }

    /// git's `ce_smudge_racily_clean_entry`: the file's stat data still match the entry, and
    /// its content is not the entry's blob. A file that cannot be read is left as is (its stat
    /// data already show a change, or git will read it then).
    fn differs_on_disk(&self, root: &Path, e: &Entry) -> bool {
        let raw = self.raw(e);
        let Ok(path) = std::str::from_utf8(self.name(e)) else {
            return true;
        };
        let full = root.join(path);
        let Ok(meta) = fs::symlink_metadata(&full) else {
            return false;
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let size = be32(raw, 36).unwrap_or(0);
            let mtime = be32(raw, 8).unwrap_or(0);
            if (meta.size() & 0xffff_ffff) as u32 != size || (meta.mtime() as u32) != mtime {
                return false;
            }
        }
        let content = if meta.file_type().is_symlink() {
            fs::read_link(&full).map(|t| t.into_os_string().into_encoded_bytes())
        } else {
            fs::read(&full)
        };
        let Ok(content) = content else {
            return false;
        };
        match Oid::hash_object(ObjectType::Blob, &content) {
            Ok(oid) => oid.as_bytes() != &raw[40..60],
            Err(_) => true,
        }
    }
}

/// An entry in the on-disk format (versions 2 and 3 without extended flags).
fn encode(e: &IndexEntry, name: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity((ENTRY_FIXED + name.len() + 8) & !7);
    for v in [
        e.ctime.seconds() as u32,
        e.ctime.nanoseconds(),
        e.mtime.seconds() as u32,
        e.mtime.nanoseconds(),
        e.dev,
        e.ino,
        e.mode,
        e.uid,
        e.gid,
        e.file_size,
    ] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend_from_slice(e.id.as_bytes());
    let len = u16::try_from(name.len())
        .unwrap_or(NAME_MASK)
        .min(NAME_MASK);
    b.extend_from_slice(&len.to_be_bytes());
    b.extend_from_slice(name);
    let total = (ENTRY_FIXED + name.len() + 8) & !7;
    b.resize(total, 0);
    b
}

/// Decodes a `TREE` extension; `None` (drop it: it is only a cache) when malformed.
fn parse_tree(data: &[u8]) -> Option<TreeNode> {
    let mut at = 0;
    let node = parse_node(data, &mut at, 0)?;
    (at == data.len()).then_some(node)
}

fn parse_node(data: &[u8], at: &mut usize, depth: usize) -> Option<TreeNode> {
    if depth > MAX_TREE_DEPTH {
        return None;
    }
    let rest = data.get(*at..)?;
    let nul = rest.iter().position(|&b| b == 0)?;
    let name = rest[..nul].to_vec();
    let rest = &rest[nul + 1..];
    let nl = rest.iter().position(|&b| b == b'\n')?;
    let line = std::str::from_utf8(&rest[..nl]).ok()?;
    let (count, subtrees) = line.split_once(' ')?;
    let entry_count: i64 = count.parse().ok()?;
    let subtrees: usize = subtrees.parse().ok()?;
    *at += nul + 1 + nl + 1;
    let oid = if entry_count >= 0 {
        let raw = data.get(*at..*at + OID_LEN)?;
        *at += OID_LEN;
        let mut o = [0u8; OID_LEN];
        o.copy_from_slice(raw);
        Some(o)
    } else {
        None
    };
    let mut children = Vec::with_capacity(subtrees.min(1024));
    for _ in 0..subtrees {
        children.push(parse_node(data, at, depth + 1)?);
    }
    Some(TreeNode {
        name,
        entry_count,
        oid,
        children,
    })
}

fn write_tree(node: &TreeNode, out: &mut Vec<u8>) {
    out.extend_from_slice(&node.name);
    out.push(0);
    let count = if node.oid.is_some() {
        node.entry_count
    } else {
        -1
    };
    out.extend_from_slice(format!("{count} {}\n", node.children.len()).as_bytes());
    if let Some(oid) = &node.oid {
        out.extend_from_slice(oid);
    }
    for c in &node.children {
        write_tree(c, out);
    }
}

/// Why reading an index failed.
#[derive(Debug)]
pub(crate) enum ReadError {
    Io(std::io::Error),
    Unsupported(Unsupported),
}

/// An edit the index cannot take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EditError {
    pub path: String,
    pub what: &'static str,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use git2::IndexTime;
    use proptest::prelude::*;

    fn entry(path: &str, byte: u8) -> IndexEntry {
        IndexEntry {
            ctime: IndexTime::new(1, 0),
            mtime: IndexTime::new(1, 0),
            dev: 0,
            ino: 0,
            mode: 0o100644,
            uid: 0,
            gid: 0,
            file_size: 1,
            id: Oid::from_bytes(&[byte; 20]).unwrap(),
            flags: 0,
            flags_extended: 0,
            path: path.as_bytes().to_vec(),
        }
    }

    fn index_of(paths: &[&str]) -> Vec<u8> {
        let mut f = IndexFile::empty();
        let updates: Vec<_> = paths
            .iter()
            .enumerate()
            .map(|(i, p)| (p.to_string(), Some(entry(p, i as u8 + 1))))
            .collect();
        f.edit(&updates).unwrap();
        f.serialize(Path::new("/nonexistent-kaizen-root"))
    }

    #[test]
    fn round_trip_sorted_with_lookup_and_checksum() {
        let bytes = index_of(&["b/x", "a", "b/a", "c.yaml", "a.b"]);
        let (body, hash) = bytes.split_at(bytes.len() - 20);
        assert_eq!(Sha1::digest(body).as_slice(), hash);
        let f = IndexFile::parse(bytes.clone(), 0).unwrap();
        let names: Vec<_> = f.entries.iter().map(|e| f.name(e).to_vec()).collect();
        let want: Vec<&[u8]> = vec![b"a", b"a.b", b"b/a", b"b/x", b"c.yaml"];
        assert_eq!(names, want);
        assert_eq!(
            f.stage_blob("b/x"),
            Some(Some(Oid::from_bytes(&[1; 20]).unwrap()))
        );
        assert_eq!(f.stage_blob("b"), Some(None));
        // Unchanged entries are copied byte for byte.
        assert_eq!(f.serialize(Path::new("/nonexistent-kaizen-root")), bytes);
    }

    #[test]
    fn collisions_between_files_and_directories_are_refused() {
        // `a.txt` sorts between `a` and `a/b`: the directory is found all the same.
        let mut f = IndexFile::parse(index_of(&["a/b", "a.txt", "c"]), 0).unwrap();
        let e = f.edit(&[("a".into(), Some(entry("a", 9)))]).unwrap_err();
        assert_eq!(e.path, "a");
        let e = f
            .edit(&[("c/d".into(), Some(entry("c/d", 9)))])
            .unwrap_err();
        assert_eq!(e.path, "c/d");
        // Replacing or removing is fine, and so is a sibling sharing a prefix.
        f.edit(&[
            ("a/b".into(), Some(entry("a/b", 7))),
            ("c".into(), None),
            ("a.txt".into(), Some(entry("a.txt", 8))),
            ("a-b".into(), Some(entry("a-b", 9))),
        ])
        .unwrap();
        assert_eq!(f.stage_blob("c"), Some(None));
        assert_eq!(f.entries.len(), 3);
    }

    #[test]
    fn cache_tree_invalidated_along_the_touched_path_only() {
        let mut data = Vec::new();
        let node = |name: &str, count: i64, children: Vec<TreeNode>| TreeNode {
            name: name.as_bytes().to_vec(),
            entry_count: count,
            oid: Some([count as u8; 20]),
            children,
        };
        let tree = node(
            "",
            3,
            vec![
                node("a", 2, vec![node("b", 1, vec![])]),
                node("z", 1, vec![]),
            ],
        );
        write_tree(&tree, &mut data);
        let mut f = IndexFile::empty();
        f.tree = parse_tree(&data);
        f.invalidate(b"a/b/new.txt");
        let t = f.tree.as_ref().unwrap();
        assert_eq!((t.entry_count, t.oid), (-1, None));
        assert_eq!(t.children[0].entry_count, -1);
        assert_eq!(t.children[0].children[0].entry_count, -1);
        assert_eq!(t.children[1].entry_count, 1, "z is untouched");
        let mut again = Vec::new();
        write_tree(t, &mut again);
        assert_eq!(parse_tree(&again).unwrap().children.len(), 2);
    }

    #[test]
    fn other_versions_and_required_extensions_are_declined() {
        let mut v4 = index_of(&["a"]);
        v4[7] = 4;
        assert!(IndexFile::parse(v4, 0).is_err());
        let mut bytes = index_of(&["a"]);
        let at = bytes.len() - 20;
        bytes.splice(at..at, b"link\0\0\0\0".iter().copied());
        assert!(IndexFile::parse(bytes, 0).is_err());
    }

    /// (path, id, mode, stage) of every entry, as libgit2 reads the file (it verifies the
    /// checksum kaizen wrote).
    fn libgit2_entries(path: &Path) -> Vec<(Vec<u8>, Oid, u32, i32)> {
        let index = git2::Index::open(path).unwrap();
        index
            .iter()
            .map(|e| (e.path.clone(), e.id, e.mode, i32::from((e.flags >> 12) & 3)))
            .collect()
    }

    fn path_strategy() -> impl Strategy<Value = String> {
        // Directories `d*`, files `f*`: no file ever collides with a directory.
        (0..4usize, 0..3usize, 0..6usize).prop_map(|(depth, d, f)| {
            let mut p = String::new();
            for k in 0..depth {
                p.push_str(&format!("d{}/", (d + k) % 3));
            }
            p.push_str(&format!("f{f}.yaml"));
            p
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The same edits through kaizen's writer and through libgit2 give the same entries, and
        /// libgit2 reads kaizen's file (checksum included).
        #[test]
        fn edits_agree_with_libgit2(
            initial in proptest::collection::btree_set(path_strategy(), 0..12),
            edits in proptest::collection::vec((path_strategy(), any::<bool>(), 1u8..200), 0..10),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let theirs = dir.path().join("theirs");
            {
                let mut index = git2::Index::open(&theirs).unwrap();
                for (i, p) in initial.iter().enumerate() {
                    index.add(&entry(p, i as u8 + 1)).unwrap();
                }
                index.write().unwrap();
            }
            let mut ours = IndexFile::parse(std::fs::read(&theirs).unwrap(), 0).unwrap();
            let mut index = git2::Index::open(&theirs).unwrap();
            let mut updates = Vec::new();
            for (p, keep, b) in &edits {
                if *keep {
                    index.add(&entry(p, *b)).unwrap();
                    updates.push((p.clone(), Some(entry(p, *b))));
                } else {
                    let _ = index.remove_path(Path::new(p));
                    updates.push((p.clone(), None));
                }
            }
            index.write().unwrap();
            ours.edit(&updates).unwrap();
            let mine = dir.path().join("mine");
            std::fs::write(&mine, ours.serialize(Path::new("/nonexistent-kaizen-root"))).unwrap();
            prop_assert_eq!(libgit2_entries(&mine), libgit2_entries(&theirs));
        }

        /// Whatever the bytes, reading, looking up, editing and writing never panics.
        #[test]
        fn never_panics_on_any_bytes(
            garbage in proptest::collection::vec(any::<u8>(), 0..400),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
            cut in any::<usize>(),
        ) {
            let mut inputs = vec![garbage];
            let mut valid = index_of(&["a/b", "a/c", "d"]);
            for (at, b) in flips {
                let n = valid.len();
                valid[at % n] = b;
            }
            let n = valid.len();
            inputs.push(valid[..cut % (n + 1)].to_vec());
            inputs.push(valid);
            for bytes in inputs {
                if let Ok(mut f) = IndexFile::parse(bytes, 1) {
                    let _ = f.stage_blob("a/b");
                    let _ = f.edit(&[("a/b".into(), Some(entry("a/b", 3))), ("d".into(), None)]);
                    let _ = f.serialize(Path::new("/nonexistent-kaizen-root"));
                }
            }
        }
    }
}
