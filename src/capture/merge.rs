//! Several capture files as one stream in timestamp order (a k-way merge; ties go to the
//! file named first, so the order is deterministic).

use std::path::PathBuf;

use super::pcapfile::{CaptureError, PcapReader, ReaderStats};
use super::RawPacket;

pub struct MergedFiles {
    readers: Vec<PcapReader>,
    /// Reader whose current record was handed out last and must advance first.
    pending: Option<usize>,
    primed: bool,
}

impl MergedFiles {
    /// Opens every file first, so a bad path fails before any work is done.
    pub fn open(paths: &[PathBuf]) -> Result<MergedFiles, CaptureError> {
        let readers = paths
            .iter()
            .map(|p| PcapReader::open(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(MergedFiles {
            readers,
            pending: None,
            primed: false,
        })
    }

    /// The next packet over all files, or None when every file is done.
    #[inline]
    pub fn next_packet(&mut self) -> Result<Option<RawPacket<'_>>, CaptureError> {
        if self.readers.len() == 1 {
            return self.readers[0].next_packet();
        }
        if !self.primed {
            self.primed = true;
            for r in &mut self.readers {
                r.advance()?;
            }
        } else if let Some(i) = self.pending.take() {
            self.readers[i].advance()?;
        }
        let mut best: Option<(usize, crate::time::Ts)> = None;
        for (i, r) in self.readers.iter().enumerate() {
            if let Some(p) = r.current() {
                if best.is_none_or(|(_, t)| p.ts < t) {
                    best = Some((i, p.ts));
                }
            }
        }
        match best {
            Some((i, _)) => {
                self.pending = Some(i);
                Ok(self.readers[i].current())
            }
            None => Ok(None),
        }
    }

    /// Per-file statistics, in the order the files were given.
    pub fn stats(&self) -> Vec<(PathBuf, ReaderStats)> {
        self.readers
            .iter()
            .map(|r| (r.path().to_owned(), r.stats))
            .collect()
    }
}
