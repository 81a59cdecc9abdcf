//! Analytics: the detections. In: [`FlowEvent`](crate::flow::FlowEvent)s and
//! [`DnsAnswer`](crate::decode::dns::DnsAnswer)s, in packet-time order, for the internal
//! hosts one worker owns. Out: [`Alert`]s.
//!
//! Must never: read the wall clock, touch files or sockets, or wait for a learning period
//! before firing when the evidence stands on its own (history may only lower a score).

pub mod alert;
pub mod cadence;

pub use alert::{Alert, AlertCadence, AlertDns, Analytic};
