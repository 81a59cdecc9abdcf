//! ATT&CK T1568.003 DNS calculation (analytics AN0729 Linux, AN0730 macOS, AN0731 ESXi).
//!
//! * `dns_calculated_port`: a host connects, within a window after a DNS answer it got,
//!   to a port computed from the answer's address bytes ([`derivation::BUILTIN`] plus
//!   config expressions), on the answered address or on one derived from it
//!   ([`derivation::AddrTransform`]); or, right after the answer, to an address no answer
//!   gave on such a port, once the same key (answer XOR destination) or formula repeats.
//! * `unusual_dns_nonstandard_port`: an unusual answer ([`unusual::Unusual`]) followed by
//!   a connection from the same host on a port outside the standard list and the host's
//!   baseline, to the answered address or, when the answer is unusable (every address
//!   private for a public name or reserved), to a fallback address no answer gave.
//!
//! Chance-match control: a family of k formulas over m answers naming the destination
//! hits a random high port with probability about k·m/64512. The window, the requirement
//! that the destination be the answered address, the standard-port list, the host's
//! baseline and a score lowered by k·m and by memory load keep that rare.

pub mod config;
pub mod derivation;
pub mod detector;
pub mod expr;
pub mod memory;
pub mod unusual;

#[cfg(test)]
mod tests;

pub use config::DnsCalcConfig;
pub use derivation::{AddrTransform, Derivation, BUILTIN};
pub use detector::{DnsCalc, DnsCalcStats};
