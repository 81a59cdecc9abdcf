//! Reading the feed: format sniffing, whole-file loading ([`load_path`]), one line at a
//! time ([`ingest_line`], for a live follower) and tailing a growing, rotating file
//! ([`follow`]).
//!
//! A bad line is never fatal: it is counted in [`EdrStats`] under a [`RejectReason`]
//! (the label of `portent_edr_events_rejected_total{reason=...}`), and the first line
//! number and a detail are kept per reason so the caller can print one warning each.
//! Only a file that cannot be opened or read is an [`EdrError`].

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::event::{is_unspecified, EdrEvent};
use super::index::EdrIndex;
use super::{canonical, esxi, osquery, sysmon};

/// Longest line read. osquery snapshot lines of big tables (`processes` on a build host)
/// reach a few MiB; anything longer is not a feed line and is skipped unread.
pub const MAX_LINE_LEN: usize = 16 << 20;

/// Non-empty lines looked at to decide a file's format: enough to get past a few
/// malformed or unrelated lines (syslog noise before the first Sysmon event).
pub const SNIFF_LINES: usize = 64;

/// Input formats, detected per file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    /// The canonical ECS JSON Lines of the contract.
    Canonical,
    /// osquery filesystem-logger result lines (event, batched and snapshot forms).
    Osquery,
    /// Sysmon for Linux XML events in syslog.
    Sysmon,
    /// ESXi hostd and vmx (vmware.log) lines.
    Esxi,
}

impl Format {
    pub const ALL: [Format; 4] = [
        Format::Canonical,
        Format::Osquery,
        Format::Sysmon,
        Format::Esxi,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Format::Canonical => "canonical",
            Format::Osquery => "osquery",
            Format::Sysmon => "sysmon",
            Format::Esxi => "esxi",
        }
    }

    /// The format one line is unmistakably in, if any.
    pub fn of_line(line: &str) -> Option<Format> {
        let t = line.trim_start();
        if t.starts_with('{') {
            // Cheap textual test first; only a real JSON object decides.
            let v: serde_json::Value = serde_json::from_str(t).ok()?;
            let o = v.as_object()?;
            if o.contains_key("@timestamp") || o.contains_key("event") {
                return Some(Format::Canonical);
            }
            if o.contains_key("columns")
                || o.contains_key("diffResults")
                || o.contains_key("snapshot")
                || o.contains_key("hostIdentifier")
            {
                return Some(Format::Osquery);
            }
            return None;
        }
        if sysmon::looks_like(line) {
            return Some(Format::Sysmon);
        }
        if esxi::looks_like(line) {
            return Some(Format::Esxi);
        }
        None
    }

    /// The format of the first of `lines` that decides one.
    pub fn sniff<'a>(lines: impl IntoIterator<Item = &'a str>) -> Option<Format> {
        lines
            .into_iter()
            .filter(|l| !l.trim().is_empty())
            .take(SNIFF_LINES)
            .find_map(Format::of_line)
    }
}

/// Why a line (or one row of a batched osquery line) was skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// Not UTF-8.
    NotUtf8,
    /// Longer than [`MAX_LINE_LEN`].
    TooLong,
    /// The file's format could not be decided from its first lines.
    UnknownFormat,
    /// A JSON format line that does not parse, or is not an object.
    InvalidJson,
    /// A Sysmon line whose XML is cut or broken.
    MalformedXml,
    /// A field the event kind needs is absent.
    MissingField,
    /// A field has the wrong type or an impossible value.
    BadField,
    /// `@timestamp` / `time` / `UtcTime` / log time stamp does not parse.
    BadTimestamp,
    /// An IP address does not parse.
    BadAddress,
    /// A MAC address does not parse.
    BadMac,
    /// A port is not a number in 0..=65535.
    BadPort,
    /// The transport is neither TCP nor UDP.
    UnknownTransport,
    /// `event.category` is none of network, host, process.
    UnknownCategory,
    /// A connection without local address whose host has no known address either.
    NoSourceAddress,
}

impl RejectReason {
    /// The metric label value.
    pub fn label(self) -> &'static str {
        match self {
            RejectReason::NotUtf8 => "not_utf8",
            RejectReason::TooLong => "too_long",
            RejectReason::UnknownFormat => "unknown_format",
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::MalformedXml => "malformed_xml",
            RejectReason::MissingField => "missing_field",
            RejectReason::BadField => "bad_field",
            RejectReason::BadTimestamp => "bad_timestamp",
            RejectReason::BadAddress => "bad_address",
            RejectReason::BadMac => "bad_mac",
            RejectReason::BadPort => "bad_port",
            RejectReason::UnknownTransport => "unknown_transport",
            RejectReason::UnknownCategory => "unknown_category",
            RejectReason::NoSourceAddress => "no_source_address",
        }
    }
}

/// One skipped line or row: a reason and a short detail for the warning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    pub reason: RejectReason,
    pub detail: String,
}

impl Reject {
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Reject {
        Reject {
            reason,
            detail: detail.into(),
        }
    }
    pub fn missing(field: &str) -> Reject {
        Reject::new(RejectReason::MissingField, format!("missing {field}"))
    }
}

/// What an adapter made of one line: events, rejected rows, and rows that were valid
/// but carry nothing portent uses (a `bind`, an unrelated log line).
#[derive(Debug, Default)]
pub struct Sink {
    pub events: Vec<EdrEvent>,
    pub rejects: Vec<Reject>,
    pub ignored: u64,
}

impl Sink {
    pub fn reject(&mut self, r: Reject) {
        self.rejects.push(r);
    }
}

/// The first line that hit a reason, and what was wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirstReject {
    pub line: u64,
    pub detail: String,
}

/// Counters of one feed. Plain integers, owned by the reading thread; published as
/// metrics by [`EdrStats::publish`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EdrStats {
    /// Lines read (non-empty).
    pub lines: u64,
    /// Events produced, per format.
    pub events: BTreeMap<Format, u64>,
    /// Lines (or batched rows) rejected, per reason.
    pub rejected: BTreeMap<RejectReason, u64>,
    /// First rejected line per reason: the caller warns once per reason.
    pub first_rejected: BTreeMap<RejectReason, FirstReject>,
    /// Valid lines or rows with nothing to index.
    pub ignored: u64,
}

impl EdrStats {
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
    pub fn events_total(&self) -> u64 {
        self.events.values().sum()
    }
    fn reject(&mut self, line_no: u64, r: Reject) {
        *self.rejected.entry(r.reason).or_default() += 1;
        self.first_rejected.entry(r.reason).or_insert(FirstReject {
            line: line_no,
            detail: r.detail,
        });
    }
    /// Publishes the counters (absolute values) to the metrics registry. Call it
    /// periodically from the reading thread, never per line.
    pub fn publish(&self) {
        for (reason, n) in &self.rejected {
            metrics::counter!("portent_edr_events_rejected_total", "reason" => reason.label())
                .absolute(*n);
        }
        for (format, n) in &self.events {
            metrics::counter!("portent_edr_events_total", "format" => format.name()).absolute(*n);
        }
    }
}

/// Why a feed file could not be read. Bad lines are not errors (see [`EdrStats`]).
#[derive(Debug)]
pub enum EdrError {
    Open {
        path: PathBuf,
        source: io::Error,
    },
    Read {
        path: PathBuf,
        line: u64,
        source: io::Error,
    },
}

impl fmt::Display for EdrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EdrError::Open { path, source } => {
                write!(f, "EDR feed {}: cannot open: {source}", path.display())
            }
            EdrError::Read { path, line, source } => write!(
                f,
                "EDR feed {}: read error after line {line}: {source}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for EdrError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EdrError::Open { source, .. } | EdrError::Read { source, .. } => Some(source),
        }
    }
}

/// Per-file reading state: the format (decided by sniffing, or by the first line that
/// decides it when following) and the joins that need memory across lines of one file
/// (ESXi vmware.log names its VM once and its MACs on other lines).
#[derive(Debug, Default)]
pub struct Adapter {
    format: Option<Format>,
    esxi: esxi::State,
}

impl Adapter {
    pub fn new(format: Format) -> Adapter {
        Adapter {
            format: Some(format),
            esxi: esxi::State::default(),
        }
    }
    /// An adapter that takes its format from the first line that decides one (lines
    /// before it are rejected as [`RejectReason::UnknownFormat`]).
    pub fn detecting() -> Adapter {
        Adapter::default()
    }
    pub fn format(&self) -> Option<Format> {
        self.format
    }
}

/// Reads one line and feeds its events to `index`. `line_no` is 1-based and only used
/// for the first-reject report. Never fails and never panics: bad input is counted.
pub fn ingest_line(
    adapter: &mut Adapter,
    line_no: u64,
    line: &str,
    index: &EdrIndex,
    stats: &mut EdrStats,
) {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return;
    }
    stats.lines += 1;
    if line.len() > MAX_LINE_LEN {
        stats.reject(
            line_no,
            Reject::new(RejectReason::TooLong, format!("{} bytes", line.len())),
        );
        return;
    }
    let format = match adapter.format {
        Some(f) => f,
        None => match Format::of_line(line) {
            Some(f) => {
                adapter.format = Some(f);
                f
            }
            None => {
                stats.reject(
                    line_no,
                    Reject::new(RejectReason::UnknownFormat, "format not recognised"),
                );
                return;
            }
        },
    };
    let mut sink = Sink::default();
    match format {
        Format::Canonical => canonical::parse_line(line, &mut sink),
        Format::Osquery => osquery::parse_line(line, &mut sink),
        Format::Sysmon => sysmon::parse_line(line, &mut sink),
        Format::Esxi => esxi::parse_line(&mut adapter.esxi, line, &mut sink),
    }
    stats.ignored += sink.ignored;
    for r in sink.rejects {
        stats.reject(line_no, r);
    }
    for ev in sink.events {
        let ev = match resolve_source(ev, index) {
            Ok(ev) => ev,
            Err(r) => {
                stats.reject(line_no, r);
                continue;
            }
        };
        index.insert(ev);
        *stats.events.entry(format).or_default() += 1;
    }
}

/// Like [`ingest_line`] for raw bytes (a line that is not UTF-8 is counted).
pub fn ingest_bytes(
    adapter: &mut Adapter,
    line_no: u64,
    line: &[u8],
    index: &EdrIndex,
    stats: &mut EdrStats,
) {
    match std::str::from_utf8(line) {
        Ok(s) => ingest_line(adapter, line_no, s, index, stats),
        Err(e) => {
            stats.lines += 1;
            stats.reject(line_no, Reject::new(RejectReason::NotUtf8, e.to_string()));
        }
    }
}

/// A connection without its local address (osquery on Linux) takes the host's address
/// of the same family from the inventory, when the inventory knows exactly one.
fn resolve_source(ev: EdrEvent, index: &EdrIndex) -> Result<EdrEvent, Reject> {
    let EdrEvent::Network(mut n) = ev else {
        return Ok(ev);
    };
    if n.src.is_some_and(|s| !is_unspecified(&s)) {
        return Ok(EdrEvent::Network(n));
    }
    let host = n.attribution.host.as_ref().and_then(|h| h.name.as_deref());
    let candidates: Vec<_> = host
        .map(|h| index.host_ips(h))
        .unwrap_or_default()
        .into_iter()
        .filter(|ip| ip.is_ipv4() == n.dst.is_ipv4())
        .collect();
    match candidates.as_slice() {
        [one] => {
            n.src = Some(*one);
            Ok(EdrEvent::Network(n))
        }
        _ => Err(Reject::new(
            RejectReason::NoSourceAddress,
            format!(
                "connection to {} has no local address and host {} has no single known address",
                n.dst,
                host.unwrap_or("?")
            ),
        )),
    }
}

/// Reads a whole feed file into `index`: sniffs its format, then ingests every line.
/// A missing or unreadable file is an error naming the path; bad lines are counted.
pub fn load_path(path: &Path, index: &EdrIndex, stats: &mut EdrStats) -> Result<(), EdrError> {
    let open = || {
        File::open(path).map_err(|source| EdrError::Open {
            path: path.to_owned(),
            source,
        })
    };
    // Sniff on the first lines, then read the file again from the start.
    let mut sniffed = Vec::new();
    {
        let mut r = BufReader::new(open()?);
        let mut buf = Vec::new();
        let mut line_no = 0;
        while sniffed.len() < SNIFF_LINES {
            match read_line_bounded(&mut r, &mut buf) {
                Ok(None) => break,
                Ok(Some(_)) => {
                    line_no += 1;
                    if let Ok(s) = std::str::from_utf8(&buf) {
                        if !s.trim().is_empty() {
                            sniffed.push(s.to_owned());
                        }
                    }
                }
                Err(source) => {
                    return Err(EdrError::Read {
                        path: path.to_owned(),
                        line: line_no,
                        source,
                    })
                }
            }
        }
    }
    let mut adapter = match Format::sniff(sniffed.iter().map(String::as_str)) {
        Some(f) => Adapter::new(f),
        None => Adapter::detecting(),
    };
    let mut r = BufReader::new(open()?);
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        match read_line_bounded(&mut r, &mut buf) {
            Ok(None) => return Ok(()),
            Ok(Some(complete)) => {
                line_no += 1;
                if complete {
                    ingest_bytes(&mut adapter, line_no, &buf, index, stats);
                } else {
                    stats.lines += 1;
                    stats.reject(
                        line_no,
                        Reject::new(RejectReason::TooLong, format!("over {MAX_LINE_LEN} bytes")),
                    );
                }
            }
            Err(source) => {
                return Err(EdrError::Read {
                    path: path.to_owned(),
                    line: line_no,
                    source,
                })
            }
        }
    }
}

/// Reads one line (without its `\n`) into `buf`, keeping at most [`MAX_LINE_LEN`] bytes
/// in memory. `None` at end of file; `Some(false)` when the line was too long (its
/// rest was consumed and dropped).
fn read_line_bounded<R: BufRead>(r: &mut R, buf: &mut Vec<u8>) -> io::Result<Option<bool>> {
    buf.clear();
    let n = r
        .by_ref()
        .take(MAX_LINE_LEN as u64 + 1)
        .read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        return Ok(Some(true));
    }
    if buf.len() <= MAX_LINE_LEN {
        return Ok(Some(true)); // last line without newline
    }
    // Too long: drop the rest of the line.
    buf.clear();
    loop {
        let (done, used) = {
            let avail = r.fill_buf()?;
            if avail.is_empty() {
                (true, 0)
            } else if let Some(i) = avail.iter().position(|&b| b == b'\n') {
                (true, i + 1)
            } else {
                (false, avail.len())
            }
        };
        r.consume(used);
        if done {
            return Ok(Some(false));
        }
    }
}

/// One line handed out by [`follow`].
#[derive(Debug)]
pub struct FollowedLine<'a> {
    /// 0 for the file first opened, +1 at each reopen after rotation or truncation (the
    /// caller starts a new [`Adapter`], as the new file may be in another format).
    pub generation: u64,
    /// 1-based line number within this generation.
    pub line_no: u64,
    pub bytes: &'a [u8],
    /// The line was longer than [`MAX_LINE_LEN`] and dropped (`bytes` is empty).
    pub too_long: bool,
}

/// Feeds one line from [`follow`] to the index (an overlong one is counted).
pub fn ingest_followed(
    adapter: &mut Adapter,
    line: &FollowedLine<'_>,
    index: &EdrIndex,
    stats: &mut EdrStats,
) {
    if line.too_long {
        stats.lines += 1;
        stats.reject(
            line.line_no,
            Reject::new(RejectReason::TooLong, format!("over {MAX_LINE_LEN} bytes")),
        );
    } else {
        ingest_bytes(adapter, line.line_no, line.bytes, index, stats);
    }
}

/// Tails `path` like `tail -F`: hands out each complete line as it is appended, and
/// reopens the file from its start when it is replaced (inode change: rotation by
/// rename) or truncated (copytruncate). Polls every `poll` until `stop` is set. Lines
/// written before the call are read too (the whole file is the feed). A partial last
/// line waits for its newline. A path that does not exist yet is waited for.
///
/// Errors only when an open file can no longer be read.
pub fn follow(
    path: &Path,
    poll: Duration,
    stop: &AtomicBool,
    mut on_line: impl FnMut(FollowedLine<'_>),
) -> Result<(), EdrError> {
    let read_err = |line, source| EdrError::Read {
        path: path.to_owned(),
        line,
        source,
    };
    let mut generation = 0u64;
    let mut cur: Option<Tail> = None;
    let mut chunk = vec![0u8; 64 << 10];
    while !stop.load(Ordering::Relaxed) {
        if cur.is_none() {
            if let Ok(file) = File::open(path) {
                cur = Some(Tail::new(file).map_err(|e| read_err(0, e))?);
            }
        }
        if let Some(t) = cur.as_mut() {
            t.drain(&mut chunk, generation, &mut on_line)
                .map_err(|e| read_err(t.line_no, e))?;
            match t.check(path) {
                Change::None => {}
                Change::Truncated => {
                    t.file
                        .seek(SeekFrom::Start(0))
                        .map_err(|e| read_err(t.line_no, e))?;
                    t.reset();
                    generation += 1;
                    continue; // read the new content at once
                }
                Change::Replaced => {
                    // Lines the writer appended to the old file after our last read.
                    t.drain(&mut chunk, generation, &mut on_line)
                        .map_err(|e| read_err(t.line_no, e))?;
                    cur = None;
                    generation += 1;
                    continue;
                }
            }
        }
        std::thread::sleep(poll);
    }
    Ok(())
}

/// The open file [`follow`] reads.
struct Tail {
    file: File,
    id: (u64, u64),
    pos: u64,
    line_no: u64,
    partial: Vec<u8>,
    /// Inside a line longer than [`MAX_LINE_LEN`]: drop bytes up to its newline.
    skipping: bool,
}

enum Change {
    None,
    Truncated,
    Replaced,
}

impl Tail {
    fn new(file: File) -> io::Result<Tail> {
        use std::os::unix::fs::MetadataExt;
        let md = file.metadata()?;
        Ok(Tail {
            file,
            id: (md.dev(), md.ino()),
            pos: 0,
            line_no: 0,
            partial: Vec::new(),
            skipping: false,
        })
    }

    fn reset(&mut self) {
        self.pos = 0;
        self.line_no = 0;
        self.partial.clear();
        self.skipping = false;
    }

    /// Hands out every complete line appended since the last call.
    fn drain(
        &mut self,
        chunk: &mut [u8],
        generation: u64,
        on_line: &mut impl FnMut(FollowedLine<'_>),
    ) -> io::Result<()> {
        loop {
            let n = self.file.read(chunk)?;
            if n == 0 {
                return Ok(());
            }
            self.pos += n as u64;
            let mut data = chunk.get(..n).unwrap_or_default();
            while let Some(i) = data.iter().position(|&b| b == b'\n') {
                let (head, tail) = data.split_at(i);
                data = tail.get(1..).unwrap_or_default();
                self.line_no += 1;
                if std::mem::take(&mut self.skipping) {
                    self.partial.clear();
                    on_line(FollowedLine {
                        generation,
                        line_no: self.line_no,
                        bytes: &[],
                        too_long: true,
                    });
                    continue;
                }
                let line: &[u8] = if self.partial.is_empty() {
                    head
                } else {
                    self.partial.extend_from_slice(head);
                    &self.partial
                };
                on_line(FollowedLine {
                    generation,
                    line_no: self.line_no,
                    bytes: line,
                    too_long: false,
                });
                self.partial.clear();
            }
            if !self.skipping && self.partial.len() + data.len() <= MAX_LINE_LEN {
                self.partial.extend_from_slice(data);
            } else {
                self.partial.clear();
                self.skipping = true;
            }
        }
    }

    /// Rotated (another file at the path) or truncated (shorter than what we read)?
    fn check(&self, path: &Path) -> Change {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(path) {
            Ok(md) if (md.dev(), md.ino()) != self.id => Change::Replaced,
            Ok(md) if md.len() < self.pos => Change::Truncated,
            // Renamed away and the new file not there yet: keep reading the old one.
            _ => Change::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[test]
    fn missing_file_is_an_error_naming_the_path() {
        let idx = EdrIndex::default();
        let mut st = EdrStats::default();
        let err = load_path(Path::new("/nonexistent/edr.jsonl"), &idx, &mut st).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/edr.jsonl"), "{err}");
    }

    #[test]
    fn overlong_and_non_utf8_lines_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("feed.jsonl");
        let mut f = File::create(&p).unwrap();
        f.write_all(b"\xff\xfe not utf8\n").unwrap();
        f.write_all(&vec![b'x'; MAX_LINE_LEN + 10]).unwrap();
        f.write_all(b"\n{\"@timestamp\":\"2026-11-20T00:00:00Z\",\"event\":{\"category\":\"host\"},\"host\":{\"name\":\"h\",\"ip\":\"10.0.0.1\"}}\n").unwrap();
        drop(f);
        let idx = EdrIndex::default();
        let mut st = EdrStats::default();
        load_path(&p, &idx, &mut st).unwrap();
        assert_eq!(st.rejected[&RejectReason::NotUtf8], 1);
        assert_eq!(st.rejected[&RejectReason::TooLong], 1);
        assert_eq!(st.first_rejected[&RejectReason::TooLong].line, 2);
        assert_eq!(st.events[&Format::Canonical], 1);
    }

    /// Runs `follow` on a thread; returns what it saw once `until` holds.
    fn follow_until(
        p: &Path,
        writer: impl FnOnce(&Path),
        until: impl Fn(&[(u64, u64, String)]) -> bool,
    ) -> Vec<(u64, u64, String)> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p2, seen2, stop2) = (p.to_owned(), seen.clone(), stop.clone());
        let h = std::thread::spawn(move || {
            follow(&p2, Duration::from_millis(5), &stop2, |l| {
                seen2.lock().unwrap().push((
                    l.generation,
                    l.line_no,
                    String::from_utf8_lossy(l.bytes).into_owned(),
                ))
            })
        });
        writer(p);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !until(&seen.lock().unwrap()) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap().unwrap();
        let v = seen.lock().unwrap().clone();
        v
    }

    #[test]
    fn follow_tails_partial_lines_rotation_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("edr.jsonl");
        let wait = || std::thread::sleep(Duration::from_millis(60));
        let seen = follow_until(
            &p,
            |p| {
                wait(); // file does not exist yet: follow waits for it
                let mut f = File::create(p).unwrap();
                f.write_all(b"a1\na2\npart").unwrap();
                f.flush().unwrap();
                wait();
                f.write_all(b"ial\n").unwrap();
                wait();
                // Rotation: rename away, a new file at the path.
                std::fs::rename(p, p.with_extension("1")).unwrap();
                let mut g = File::create(p).unwrap();
                g.write_all(b"b1\n").unwrap();
                wait();
                // copytruncate: same inode, shorter.
                let g2 = std::fs::OpenOptions::new().write(true).open(p).unwrap();
                g2.set_len(0).unwrap();
                drop(g);
                let mut g = std::fs::OpenOptions::new().append(true).open(p).unwrap();
                g.write_all(b"c\n").unwrap();
            },
            |s| s.iter().any(|l| l.2 == "c"),
        );
        let texts: Vec<_> = seen.iter().map(|l| l.2.as_str()).collect();
        assert_eq!(texts, ["a1", "a2", "partial", "b1", "c"]);
        assert_eq!(seen[0].0, 0);
        assert_eq!((seen[2].0, seen[2].1), (0, 3));
        assert_eq!((seen[3].0, seen[3].1), (1, 1));
        assert_eq!((seen[4].0, seen[4].1), (2, 1));
    }
}
