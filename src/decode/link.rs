//! See [`super`].

use super::{frag::Reassembler, DecodeAnomalies, DecodeError, Decoded};
use crate::capture::RawPacket;

/// Decodes one frame from its link layer down to the transport payload.
pub fn decode_frame<'a>(
    _raw: &RawPacket<'a>,
    _frags: &'a mut Reassembler,
    _anomalies: &mut DecodeAnomalies,
) -> Result<Decoded<'a>, DecodeError> {
    Err(DecodeError::UnsupportedLink)
}
