//! Classic pcap (µs and ns magic, either byte order) and pcapng, read through one large
//! buffer.
//!
//! Why not libpcap for files: it reads through 4 KiB stdio buffers and gives up at the
//! first corrupt record, while a sensor replaying evidence must skip past a bad record
//! and keep the rest. Here a record whose header is impossible (caplen over the limit,
//! fraction out of range) starts a resynchronisation: the reader scans forward for the
//! next offset where two consecutive plausible records (or one and the end of file)
//! begin, and counts the bytes it skipped.
//!
//! Panic contract: no input file makes this module panic; every length is checked
//! against what the buffer holds before it is used.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::{LinkType, RawPacket};
use crate::time::{Ts, NANOS_PER_SEC};

/// Largest frame libpcap itself will write (MAXIMUM_SNAPLEN); a classic record claiming
/// more is corrupt.
pub const MAX_CAPLEN: u32 = 262_144;
/// Largest pcapng block accepted; bigger ones are treated as corruption (a block this
/// large would be a 16 MiB comment or a broken length field).
pub const MAX_BLOCK_LEN: u32 = 16 << 20;
/// Read buffer (grown for a larger record): large reads are what make file replay
/// cheaper than libpcap's 4 KiB ones, and a quarter of the L2 cache keeps what a read
/// copied still cached when the records are parsed (1 MiB measured ~1.5 % more CPU).
const BUF_SIZE: usize = 1 << 18;
/// How far a resynchronisation scans before giving up on the rest of the file.
const MAX_RESYNC_SCAN: usize = 64 << 20;

/// Why a capture file could not be read at all.
#[derive(Debug)]
pub enum CaptureError {
    Open(PathBuf, io::Error),
    Read(PathBuf, io::Error),
    /// The first bytes are not a pcap or pcapng magic number.
    NotPcap(PathBuf, u32),
    /// The file ends inside its global header / section header.
    TruncatedHeader(PathBuf),
}

impl std::fmt::Display for CaptureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaptureError::Open(p, e) => write!(f, "{}: cannot open: {e}", p.display()),
            CaptureError::Read(p, e) => write!(f, "{}: read error: {e}", p.display()),
            CaptureError::NotPcap(p, m) => write!(
                f,
                "{}: not a pcap or pcapng file (magic 0x{m:08x})",
                p.display()
            ),
            CaptureError::TruncatedHeader(p) => {
                write!(f, "{}: file ends inside the capture header", p.display())
            }
        }
    }
}

impl std::error::Error for CaptureError {}

/// What a reader saw besides good records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReaderStats {
    pub records: u64,
    pub bytes: u64,
    /// Times the reader lost record framing and scanned for the next good record.
    pub resyncs: u64,
    pub skipped_bytes: u64,
    /// Records whose caplen exceeded the file's snaplen but were otherwise sane (kept).
    pub caplen_over_snaplen: u64,
    /// The last record was cut short by the end of the file (it is dropped; a warning).
    pub truncated_tail: bool,
    /// pcapng blocks of types portent does not read (skipped).
    pub unknown_blocks: u64,
    /// The first of them: (block type, file offset).
    pub first_unknown_block: Option<(u32, u64)>,
    /// pcapng packets naming an interface that was never described.
    pub bad_interface: u64,
}

#[derive(Clone, Copy, Debug)]
struct Interface {
    link: LinkType,
    snaplen: u32,
    /// Timestamp units per second.
    units_per_sec: u64,
    offset_secs: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Classic,
    PcapNg,
}

/// A pcap or pcapng file, read record by record.
pub struct PcapReader {
    path: PathBuf,
    /// A file, or any byte source (`from_bytes`: fuzzing and tests without files).
    file: Box<dyn Read + Send>,
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[pos..end]`.
    pos: usize,
    /// File offset of `buf[0]` (for messages that name a place in the file).
    base: u64,
    end: usize,
    eof: bool,
    format: Format,
    swapped: bool,
    // classic pcap
    nanos: bool,
    link: LinkType,
    snaplen: u32,
    // pcapng
    ifaces: Vec<Interface>,
    // current record: data at buf[cur_off..cur_off+cur_len]
    cur_off: usize,
    cur_len: usize,
    cur_ts: Ts,
    cur_orig: u32,
    cur_link: LinkType,
    has_current: bool,
    last_ts: Ts,
    pub stats: ReaderStats,
}

const MAGIC_US: u32 = 0xa1b2_c3d4;
const MAGIC_NS: u32 = 0xa1b2_3c4d;
const NG_SHB: u32 = 0x0a0d_0d0a;
const NG_BYTE_ORDER: u32 = 0x1a2b_3c4d;
const NG_IDB: u32 = 1;
const NG_OPB: u32 = 2;
const NG_SPB: u32 = 3;
const NG_EPB: u32 = 6;
/// Standard pcapng blocks without packets (name resolution, interface statistics,
/// systemd journal, decryption secrets): skipped without a warning. Anything else is
/// counted as unknown (custom and vendor blocks included).
const NG_NO_PACKETS: [u32; 4] = [4, 5, 9, 0x0a];
/// Maximum interfaces per pcapng section (a broken file could declare millions).
const MAX_IFACES: usize = 4096;

impl PcapReader {
    pub fn open(path: &Path) -> Result<PcapReader, CaptureError> {
        let file = File::open(path).map_err(|e| CaptureError::Open(path.to_owned(), e))?;
        if file.metadata().map(|m| m.is_dir()).unwrap_or(false) {
            return Err(CaptureError::Open(
                path.to_owned(),
                io::Error::other("is a directory"),
            ));
        }
        PcapReader::from_reader(path, Box::new(file))
    }

    /// Reads a capture held in memory; `label` names it in errors.
    pub fn from_bytes(label: &Path, bytes: Vec<u8>) -> Result<PcapReader, CaptureError> {
        PcapReader::from_reader(label, Box::new(io::Cursor::new(bytes)))
    }

    fn from_reader(path: &Path, file: Box<dyn Read + Send>) -> Result<PcapReader, CaptureError> {
        let mut r = PcapReader {
            path: path.to_owned(),
            file,
            buf: vec![0; BUF_SIZE],
            pos: 0,
            base: 0,
            end: 0,
            eof: false,
            format: Format::Classic,
            swapped: false,
            nanos: false,
            link: LinkType::Ethernet,
            snaplen: MAX_CAPLEN,
            ifaces: Vec::new(),
            cur_off: 0,
            cur_len: 0,
            cur_ts: Ts::ZERO,
            cur_orig: 0,
            cur_link: LinkType::Ethernet,
            has_current: false,
            last_ts: Ts::ZERO,
            stats: ReaderStats::default(),
        };
        r.read_header()?;
        Ok(r)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes at least `n` unconsumed bytes available; false at end of file. The check
    /// inline, the read out of line: this runs twice per record and is almost always
    /// satisfied already.
    #[inline]
    fn fill(&mut self, n: usize) -> Result<bool, CaptureError> {
        if self.end - self.pos >= n {
            return Ok(true);
        }
        self.refill(n)
    }

    #[inline(never)]
    fn refill(&mut self, n: usize) -> Result<bool, CaptureError> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.base += self.pos as u64;
            self.pos = 0;
        }
        if n > self.buf.len() {
            self.buf.resize(n.next_power_of_two(), 0);
        }
        while self.end < n && !self.eof {
            match self.file.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(k) => self.end += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(CaptureError::Read(self.path.clone(), e)),
            }
        }
        Ok(self.end - self.pos >= n)
    }

    fn u32_at(&self, off: usize) -> u32 {
        let b = [
            self.buf[off],
            self.buf[off + 1],
            self.buf[off + 2],
            self.buf[off + 3],
        ];
        if self.swapped {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    }

    fn u16_at(&self, off: usize) -> u16 {
        let b = [self.buf[off], self.buf[off + 1]];
        if self.swapped {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        }
    }

    fn read_header(&mut self) -> Result<(), CaptureError> {
        if !self.fill(4)? {
            return Err(CaptureError::TruncatedHeader(self.path.clone()));
        }
        let raw = [
            self.buf[self.pos],
            self.buf[self.pos + 1],
            self.buf[self.pos + 2],
            self.buf[self.pos + 3],
        ];
        let le = u32::from_le_bytes(raw);
        let be = u32::from_be_bytes(raw);
        if le == NG_SHB {
            self.format = Format::PcapNg;
            // The section header is parsed as the first block by `next_ng`.
            if !self.fill(12)? {
                return Err(CaptureError::TruncatedHeader(self.path.clone()));
            }
            return Ok(());
        }
        let (magic, swapped) = if le == MAGIC_US || le == MAGIC_NS {
            (le, false)
        } else if be == MAGIC_US || be == MAGIC_NS {
            (be, true)
        } else {
            return Err(CaptureError::NotPcap(self.path.clone(), be));
        };
        self.swapped = swapped;
        self.nanos = magic == MAGIC_NS;
        if !self.fill(24)? {
            return Err(CaptureError::TruncatedHeader(self.path.clone()));
        }
        let snap = self.u32_at(self.pos + 16);
        // The link type is the low 16 bits; the upper bits carry FCS information.
        let lt = self.u32_at(self.pos + 20) & 0x0fff_ffff;
        self.snaplen = if snap == 0 || snap > MAX_CAPLEN {
            MAX_CAPLEN
        } else {
            snap
        };
        self.link = LinkType::from_linktype(lt & 0xffff);
        self.pos += 24;
        Ok(())
    }

    /// The record loaded by the last successful [`advance`](Self::advance).
    #[inline]
    pub fn current(&self) -> Option<RawPacket<'_>> {
        if !self.has_current {
            return None;
        }
        Some(RawPacket {
            ts: self.cur_ts,
            link: self.cur_link,
            data: &self.buf[self.cur_off..self.cur_off + self.cur_len],
            orig_len: self.cur_orig,
        })
    }

    /// Loads the next record; false at the end of the file.
    pub fn advance(&mut self) -> Result<bool, CaptureError> {
        self.has_current = false;
        let got = match self.format {
            Format::Classic => self.next_classic()?,
            Format::PcapNg => self.next_ng()?,
        };
        if got {
            self.has_current = true;
            self.stats.records += 1;
            self.stats.bytes += self.cur_len as u64;
            self.last_ts = self.cur_ts;
        }
        Ok(got)
    }

    /// Reads the next packet: convenience over [`advance`] + [`current`].
    #[inline]
    pub fn next_packet(&mut self) -> Result<Option<RawPacket<'_>>, CaptureError> {
        if self.advance()? {
            Ok(self.current())
        } else {
            Ok(None)
        }
    }

    /// The four fields of a classic record header at `off` (one bounds check, one
    /// byte-order test).
    fn record_header(&self, off: usize) -> [u32; 4] {
        let Some(h) = self.buf.get(off..off + 16) else {
            return [0, u32::MAX, u32::MAX, 0];
        };
        let mut f = [0u32; 4];
        for (v, b) in f.iter_mut().zip(h.chunks_exact(4)) {
            *v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        if self.swapped {
            f = f.map(u32::swap_bytes);
        }
        f
    }

    /// `(caplen, orig)` of a record header that could be real.
    fn classic_plausible(&self, header: [u32; 4]) -> Option<(u32, u32)> {
        let [_, frac, caplen, orig] = header;
        let frac_max = if self.nanos { 1_000_000_000 } else { 1_000_000 };
        if frac >= frac_max || caplen > MAX_CAPLEN || caplen > orig.max(self.snaplen) {
            return None;
        }
        Some((caplen, orig))
    }

    fn next_classic(&mut self) -> Result<bool, CaptureError> {
        loop {
            if !self.fill(16)? {
                if self.end > self.pos {
                    self.stats.truncated_tail = true;
                    self.pos = self.end;
                }
                return Ok(false);
            }
            let header = self.record_header(self.pos);
            let Some((caplen, orig)) = self.classic_plausible(header) else {
                if !self.resync_classic()? {
                    return Ok(false);
                }
                continue;
            };
            if caplen > self.snaplen {
                self.stats.caplen_over_snaplen += 1;
            }
            let need = 16 + caplen as usize;
            if !self.fill(need)? {
                self.stats.truncated_tail = true;
                self.pos = self.end;
                return Ok(false);
            }
            let off = self.pos;
            let [secs, frac, _, _] = header;
            let (secs, frac) = (secs as i64, frac as i64);
            self.cur_ts = Ts(secs * NANOS_PER_SEC + if self.nanos { frac } else { frac * 1000 });
            self.cur_off = off + 16;
            self.cur_len = caplen as usize;
            self.cur_orig = orig.max(caplen);
            self.cur_link = self.link;
            self.pos += need;
            return Ok(true);
        }
    }

    /// Scans forward one byte at a time for an offset where a plausible record starts and
    /// is followed by another plausible record or the end of file.
    fn resync_classic(&mut self) -> Result<bool, CaptureError> {
        self.stats.resyncs += 1;
        let mut scanned = 0usize;
        loop {
            self.pos += 1;
            self.stats.skipped_bytes += 1;
            scanned += 1;
            if scanned > MAX_RESYNC_SCAN || !self.fill(16)? {
                self.stats.skipped_bytes += (self.end - self.pos) as u64;
                self.pos = self.end;
                return Ok(false);
            }
            let Some((caplen, _)) = self.classic_plausible(self.record_header(self.pos)) else {
                continue;
            };
            // Near the last good timestamp (corrupt bytes rarely look like one).
            let secs = self.u32_at(self.pos) as i64;
            if self.last_ts != Ts::ZERO && (secs - self.last_ts.secs()).abs() > 86_400 {
                continue;
            }
            let next = 16 + caplen as usize;
            if !self.fill(next + 16)? {
                // Only the end of file can confirm it.
                if self.end - self.pos == next {
                    return Ok(true);
                }
                continue;
            }
            if self
                .classic_plausible(self.record_header(self.pos + next))
                .is_some()
            {
                return Ok(true);
            }
        }
    }

    fn ng_block_plausible(&self, off: usize) -> Option<(u32, u32)> {
        let btype = self.u32_at(off);
        let blen = self.u32_at(off + 4);
        if blen < 12 || !blen.is_multiple_of(4) || blen > MAX_BLOCK_LEN {
            return None;
        }
        Some((btype, blen))
    }

    fn next_ng(&mut self) -> Result<bool, CaptureError> {
        loop {
            if !self.fill(12)? {
                if self.end > self.pos {
                    self.stats.truncated_tail = true;
                    self.pos = self.end;
                }
                return Ok(false);
            }
            // A section header fixes the byte order of everything after it.
            let raw_type = u32::from_le_bytes([
                self.buf[self.pos],
                self.buf[self.pos + 1],
                self.buf[self.pos + 2],
                self.buf[self.pos + 3],
            ]);
            if raw_type == NG_SHB {
                let bom = [
                    self.buf[self.pos + 8],
                    self.buf[self.pos + 9],
                    self.buf[self.pos + 10],
                    self.buf[self.pos + 11],
                ];
                if u32::from_le_bytes(bom) == NG_BYTE_ORDER {
                    self.swapped = false;
                } else if u32::from_be_bytes(bom) == NG_BYTE_ORDER {
                    self.swapped = true;
                } else {
                    if !self.resync_ng()? {
                        return Ok(false);
                    }
                    continue;
                }
                self.ifaces.clear();
            }
            let Some((btype, blen)) = self.ng_block_plausible(self.pos) else {
                if !self.resync_ng()? {
                    return Ok(false);
                }
                continue;
            };
            if !self.fill(blen as usize)? {
                self.stats.truncated_tail = true;
                self.pos = self.end;
                return Ok(false);
            }
            let off = self.pos;
            let blen_us = blen as usize;
            if self.u32_at(off + blen_us - 4) != blen {
                if !self.resync_ng()? {
                    return Ok(false);
                }
                continue;
            }
            self.pos += blen_us;
            let body = off + 8;
            let body_len = blen_us - 12;
            match btype {
                NG_SHB => {}
                NG_IDB => self.read_idb(body, body_len),
                NG_EPB | NG_OPB => {
                    if body_len < 20 {
                        continue;
                    }
                    let (iface, ts_hi, ts_lo, caplen, orig) = if btype == NG_EPB {
                        (
                            self.u32_at(body) as usize,
                            self.u32_at(body + 4),
                            self.u32_at(body + 8),
                            self.u32_at(body + 12),
                            self.u32_at(body + 16),
                        )
                    } else {
                        (
                            self.u16_at(body) as usize,
                            self.u32_at(body + 4),
                            self.u32_at(body + 8),
                            self.u32_at(body + 12),
                            self.u32_at(body + 16),
                        )
                    };
                    let Some(ifc) = self.ifaces.get(iface).copied() else {
                        self.stats.bad_interface += 1;
                        continue;
                    };
                    let caplen = (caplen as usize).min(body_len - 20);
                    let units = ((ts_hi as u64) << 32) | ts_lo as u64;
                    self.cur_ts = units_to_ts(units, ifc.units_per_sec, ifc.offset_secs);
                    self.cur_off = body + 20;
                    self.cur_len = caplen;
                    self.cur_orig = orig.max(caplen as u32);
                    self.cur_link = ifc.link;
                    return Ok(true);
                }
                NG_SPB => {
                    if body_len < 4 {
                        continue;
                    }
                    let Some(ifc) = self.ifaces.first().copied() else {
                        self.stats.bad_interface += 1;
                        continue;
                    };
                    let orig = self.u32_at(body);
                    let caplen = (orig as usize).min(body_len - 4).min(ifc.snaplen as usize);
                    // No timestamp of its own: it takes the last one seen.
                    self.cur_ts = self.last_ts;
                    self.cur_off = body + 4;
                    self.cur_len = caplen;
                    self.cur_orig = orig.max(caplen as u32);
                    self.cur_link = ifc.link;
                    return Ok(true);
                }
                t if NG_NO_PACKETS.contains(&t) => {}
                _ => {
                    self.stats.unknown_blocks += 1;
                    if self.stats.first_unknown_block.is_none() {
                        self.stats.first_unknown_block = Some((btype, self.base + off as u64));
                    }
                }
            }
        }
    }

    fn read_idb(&mut self, body: usize, body_len: usize) {
        if body_len < 8 || self.ifaces.len() >= MAX_IFACES {
            return;
        }
        let link = LinkType::from_linktype(self.u16_at(body) as u32);
        let snap = self.u32_at(body + 4);
        let mut ifc = Interface {
            link,
            snaplen: if snap == 0 { MAX_CAPLEN } else { snap },
            units_per_sec: 1_000_000,
            offset_secs: 0,
        };
        // Options: code u16, length u16, value padded to 32 bits.
        let mut o = body + 8;
        let stop = body + body_len;
        while o + 4 <= stop {
            let code = self.u16_at(o);
            let len = self.u16_at(o + 2) as usize;
            let val = o + 4;
            if code == 0 || val + len > stop {
                break;
            }
            if code == 9 && len >= 1 {
                let r = self.buf[val];
                let exp = (r & 0x7f) as u32;
                ifc.units_per_sec = if r & 0x80 == 0 {
                    10u64.checked_pow(exp).unwrap_or(0)
                } else {
                    1u64.checked_shl(exp).unwrap_or(0)
                };
                if ifc.units_per_sec == 0 {
                    ifc.units_per_sec = 1_000_000;
                }
            } else if code == 14 && len >= 8 {
                let lo = self.u32_at(val) as u64;
                let hi = self.u32_at(val + 4) as u64;
                let v = if self.swapped {
                    (lo << 32) | hi
                } else {
                    (hi << 32) | lo
                };
                ifc.offset_secs = v as i64;
            }
            o = val + len.div_ceil(4) * 4;
        }
        self.ifaces.push(ifc);
    }

    fn resync_ng(&mut self) -> Result<bool, CaptureError> {
        self.stats.resyncs += 1;
        let mut scanned = 0usize;
        loop {
            // Blocks are 32-bit aligned.
            self.pos += 4;
            self.stats.skipped_bytes += 4;
            scanned += 4;
            if scanned > MAX_RESYNC_SCAN || !self.fill(12)? {
                self.stats.skipped_bytes += (self.end - self.pos) as u64;
                self.pos = self.end;
                return Ok(false);
            }
            let Some((btype, blen)) = self.ng_block_plausible(self.pos) else {
                continue;
            };
            if !matches!(btype, NG_SHB | NG_IDB | NG_EPB | NG_SPB | NG_OPB | 4 | 5) {
                continue;
            }
            if !self.fill(blen as usize)? {
                continue;
            }
            if self.u32_at(self.pos + blen as usize - 4) == blen {
                return Ok(true);
            }
        }
    }
}

fn units_to_ts(units: u64, per_sec: u64, offset_secs: i64) -> Ts {
    let per_sec = per_sec.max(1);
    let secs = (units / per_sec) as i64;
    let rem = (units % per_sec) as u128;
    let nanos = (rem * NANOS_PER_SEC as u128 / per_sec as u128) as i64;
    Ts(secs
        .saturating_add(offset_secs)
        .saturating_mul(NANOS_PER_SEC)
        .saturating_add(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn classic(nanos: bool, be: bool, recs: &[(u32, u32, &[u8])]) -> Vec<u8> {
        let mut v = Vec::new();
        let w32 = |v: &mut Vec<u8>, x: u32| {
            if be {
                v.extend_from_slice(&x.to_be_bytes())
            } else {
                v.extend_from_slice(&x.to_le_bytes())
            }
        };
        let w16 = |v: &mut Vec<u8>, x: u16| {
            if be {
                v.extend_from_slice(&x.to_be_bytes())
            } else {
                v.extend_from_slice(&x.to_le_bytes())
            }
        };
        w32(&mut v, if nanos { MAGIC_NS } else { MAGIC_US });
        w16(&mut v, 2);
        w16(&mut v, 4);
        w32(&mut v, 0);
        w32(&mut v, 0);
        w32(&mut v, 65535);
        w32(&mut v, 1);
        for (s, f, d) in recs {
            w32(&mut v, *s);
            w32(&mut v, *f);
            w32(&mut v, d.len() as u32);
            w32(&mut v, d.len() as u32 + 10);
            v.extend_from_slice(d);
        }
        v
    }

    fn write_tmp(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f.flush().unwrap();
        f
    }

    fn read_all(path: &Path) -> (Vec<(Ts, Vec<u8>, u32)>, ReaderStats) {
        let mut r = PcapReader::open(path).unwrap();
        let mut out = Vec::new();
        while let Some(p) = r.next_packet().unwrap() {
            out.push((p.ts, p.data.to_vec(), p.orig_len));
        }
        (out, r.stats)
    }

    #[test]
    fn classic_micro_and_nano_both_byte_orders() {
        for nanos in [false, true] {
            for be in [false, true] {
                let f = write_tmp(&classic(nanos, be, &[(10, 5, b"abcd"), (11, 7, b"efghij")]));
                let (pkts, st) = read_all(f.path());
                assert_eq!(pkts.len(), 2);
                let frac = if nanos { 5 } else { 5_000 };
                assert_eq!(pkts[0].0, Ts(10 * NANOS_PER_SEC + frac));
                assert_eq!(pkts[1].1, b"efghij");
                assert_eq!(pkts[1].2, 16);
                assert_eq!(st.resyncs, 0);
            }
        }
    }

    #[test]
    fn truncated_last_record_keeps_earlier_ones() {
        let mut b = classic(false, false, &[(10, 0, b"abcd"), (11, 0, b"efghij")]);
        b.truncate(b.len() - 3);
        let f = write_tmp(&b);
        let (pkts, st) = read_all(f.path());
        assert_eq!(pkts.len(), 1);
        assert!(st.truncated_tail);
    }

    #[test]
    fn corrupt_record_is_skipped_and_the_rest_kept() {
        let mut b = classic(false, false, &[(10, 0, b"abcd")]);
        // A record header with an absurd caplen, then good records.
        b.extend_from_slice(&[0xff; 16]);
        let good = classic(false, false, &[(12, 0, b"wxyz"), (13, 0, b"1234")]);
        b.extend_from_slice(&good[24..]);
        let f = write_tmp(&b);
        let (pkts, st) = read_all(f.path());
        assert_eq!(pkts.len(), 3, "{st:?}");
        assert_eq!(pkts[1].1, b"wxyz");
        assert_eq!(st.resyncs, 1);
        assert_eq!(st.skipped_bytes, 16);
    }

    #[test]
    fn not_pcap_is_an_error_naming_the_path() {
        let f = write_tmp(b"hello world, this is not a capture");
        let e = PcapReader::open(f.path()).err().unwrap();
        assert!(matches!(e, CaptureError::NotPcap(..)));
        assert!(e.to_string().contains(&f.path().display().to_string()));
        let f = write_tmp(&[0xd4, 0xc3, 0xb2, 0xa1, 2, 0]);
        assert!(matches!(
            PcapReader::open(f.path()).err().unwrap(),
            CaptureError::TruncatedHeader(_)
        ));
        assert!(matches!(
            PcapReader::open(Path::new("/nonexistent/x.pcap"))
                .err()
                .unwrap(),
            CaptureError::Open(..)
        ));
    }

    fn ng_block(btype: u32, body: &[u8]) -> Vec<u8> {
        let pad = (4 - body.len() % 4) % 4;
        let len = (12 + body.len() + pad) as u32;
        let mut v = Vec::new();
        v.extend_from_slice(&btype.to_le_bytes());
        v.extend_from_slice(&len.to_le_bytes());
        v.extend_from_slice(body);
        v.extend(std::iter::repeat_n(0u8, pad));
        v.extend_from_slice(&len.to_le_bytes());
        v
    }

    fn shb() -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&NG_BYTE_ORDER.to_le_bytes());
        body.extend_from_slice(&1u16.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&(-1i64).to_le_bytes());
        ng_block(NG_SHB, &body)
    }

    fn idb(link: u16, tsresol: Option<u8>) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&link.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        if let Some(r) = tsresol {
            body.extend_from_slice(&9u16.to_le_bytes());
            body.extend_from_slice(&1u16.to_le_bytes());
            body.extend_from_slice(&[r, 0, 0, 0]);
            body.extend_from_slice(&[0, 0, 0, 0]);
        }
        ng_block(NG_IDB, &body)
    }

    fn epb(iface: u32, units: u64, data: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&iface.to_le_bytes());
        body.extend_from_slice(&((units >> 32) as u32).to_le_bytes());
        body.extend_from_slice(&(units as u32).to_le_bytes());
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(&(data.len() as u32).to_le_bytes());
        body.extend_from_slice(data);
        ng_block(NG_EPB, &body)
    }

    #[test]
    fn pcapng_interfaces_resolutions_unknown_and_corrupt_blocks() {
        let mut b = shb();
        b.extend(idb(1, None));
        b.extend(idb(101, Some(9)));
        b.extend(epb(0, 1_500_000, b"eth-frame"));
        b.extend(ng_block(0x0bad, b"unknown block body"));
        b.extend(epb(1, 2_000_000_123, b"raw-ip"));
        b.extend(epb(7, 1, b"no such interface"));
        // Corrupt: a block whose trailing length disagrees.
        let mut bad = epb(0, 5, b"bad");
        let n = bad.len();
        bad[n - 1] = 0x7f;
        b.extend(bad);
        b.extend(epb(0, 3_000_000, b"after"));
        let f = write_tmp(&b);
        let (pkts, st) = read_all(f.path());
        let names: Vec<&[u8]> = pkts.iter().map(|p| p.1.as_slice()).collect();
        assert_eq!(names, vec![&b"eth-frame"[..], b"raw-ip", b"after"]);
        assert_eq!(pkts[0].0, Ts(1_500_000_000));
        assert_eq!(pkts[1].0, Ts(2_000_000_123));
        assert_eq!(st.unknown_blocks, 1);
        assert_eq!(st.bad_interface, 1);
        assert_eq!(st.resyncs, 1);
        let mut r = PcapReader::open(f.path()).unwrap();
        r.advance().unwrap();
        r.advance().unwrap();
        assert_eq!(r.current().unwrap().link, LinkType::Raw);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        for len in 0..400usize {
            let mut v = if len % 2 == 0 {
                classic(false, false, &[(1, 1, b"x")])
            } else {
                shb()
            };
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                v.push(seed as u8);
            }
            let f = write_tmp(&v);
            if let Ok(mut r) = PcapReader::open(f.path()) {
                while let Ok(Some(_)) = r.next_packet() {}
            }
        }
    }
}
