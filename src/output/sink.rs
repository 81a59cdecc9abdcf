//! An output file (or stdout for `-`), buffered, reopenable for logrotate.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

pub struct Sink {
    path: Option<PathBuf>,
    w: BufWriter<Box<dyn Write + Send>>,
    pub lines: u64,
}

impl Sink {
    /// Opens `path` for appending-by-truncation (a fresh file per run); `-` is stdout.
    pub fn open(path: &Path) -> io::Result<Sink> {
        let (p, w): (Option<PathBuf>, Box<dyn Write + Send>) = if path == Path::new("-") {
            (None, Box::new(io::stdout()))
        } else {
            (Some(path.to_owned()), Box::new(File::create(path)?))
        };
        Ok(Sink {
            path: p,
            w: BufWriter::with_capacity(256 << 10, w),
            lines: 0,
        })
    }

    pub fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        self.lines += 1;
        self.w.write_all(line)
    }

    /// Whole lines (`lines` of them), written past the buffer: what was buffered goes
    /// first, then `bytes` in one write.
    pub fn write_lines(&mut self, bytes: &[u8], lines: u64) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.lines += lines;
        self.w.flush()?;
        self.w.get_mut().write_all(bytes)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }

    /// Flushes and reopens the file at the same path (after logrotate moved it); new
    /// lines are appended to whatever file now has that name.
    pub fn reopen(&mut self) -> io::Result<()> {
        self.w.flush()?;
        if let Some(p) = &self.path {
            let f = OpenOptions::new().create(true).append(true).open(p)?;
            self.w = BufWriter::with_capacity(256 << 10, Box::new(f));
        }
        Ok(())
    }
}
