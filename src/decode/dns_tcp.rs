//! DNS over TCP: two-byte length-prefixed messages, reassembled across segments
//! (RFC 1035 4.2.2, RFC 7766). One [`DnsTcpStream`] per direction of a TCP flow to or
//! from port 53; gaps and out-of-order segments are skipped and counted, never waited for
//! without bound.

/// Placeholder until the reassembler lands: drops everything.
#[derive(Default)]
pub struct DnsTcpStream;

impl DnsTcpStream {
    pub fn push(
        &mut self,
        _seq: u32,
        _flags: u8,
        _payload: &[u8],
        _wire_len: u32,
        _emit: &mut dyn FnMut(&[u8]),
    ) {
    }
}
