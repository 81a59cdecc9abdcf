//! Classic pcap writer, nanosecond timestamps (magic 0xa1b23c4d), linktype Ethernet.

use std::io::{self, Write};

use crate::time::Ts;

pub const LINKTYPE_ETHERNET: u32 = 1;
pub const SNAPLEN: u32 = 65535;

pub struct PcapWriter<W: Write> {
    out: W,
    /// Frames are cut to this many bytes, as a sensor with `-s N` would capture them.
    snaplen: u32,
    pub packets: u64,
    pub bytes: u64,
}

impl<W: Write> PcapWriter<W> {
    pub fn new(out: W) -> io::Result<PcapWriter<W>> {
        Self::with_snaplen(out, SNAPLEN)
    }

    /// A writer whose file declares, and whose frames respect, `snaplen` (0: 65535).
    pub fn with_snaplen(mut out: W, snaplen: u32) -> io::Result<PcapWriter<W>> {
        let snaplen = if snaplen == 0 { SNAPLEN } else { snaplen };
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&0xa1b2_3c4du32.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        h[16..20].copy_from_slice(&snaplen.to_le_bytes());
        h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter {
            out,
            snaplen,
            packets: 0,
            bytes: 24,
        })
    }

    /// Writes `captured` (possibly cut by a snap length) of a frame that was `orig_len` long.
    pub fn write(&mut self, ts: Ts, captured: &[u8], orig_len: usize) -> io::Result<()> {
        let captured = &captured[..captured.len().min(self.snaplen as usize)];
        let mut h = [0u8; 16];
        let secs = ts.0.div_euclid(1_000_000_000) as u32;
        let nanos = ts.0.rem_euclid(1_000_000_000) as u32;
        h[0..4].copy_from_slice(&secs.to_le_bytes());
        h[4..8].copy_from_slice(&nanos.to_le_bytes());
        h[8..12].copy_from_slice(&(captured.len() as u32).to_le_bytes());
        h[12..16].copy_from_slice(&(orig_len as u32).to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(captured)?;
        self.packets += 1;
        self.bytes += 16 + captured.len() as u64;
        Ok(())
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_record_layout() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        w.write(Ts(1_700_000_000_123_456_789), &[1, 2, 3], 60)
            .unwrap();
        let b = w.into_inner();
        assert_eq!(&b[0..4], &[0x4d, 0x3c, 0xb2, 0xa1]);
        assert_eq!(u32::from_le_bytes(b[20..24].try_into().unwrap()), 1);
        assert_eq!(
            u32::from_le_bytes(b[24..28].try_into().unwrap()),
            1_700_000_000
        );
        assert_eq!(
            u32::from_le_bytes(b[28..32].try_into().unwrap()),
            123_456_789
        );
        assert_eq!(u32::from_le_bytes(b[32..36].try_into().unwrap()), 3);
        assert_eq!(u32::from_le_bytes(b[36..40].try_into().unwrap()), 60);
        assert_eq!(b.len(), 24 + 16 + 3);
    }
}
