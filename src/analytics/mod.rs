//! Analytics: the detections. In: [`FlowEvent`](crate::flow::FlowEvent)s and
//! [`DnsAnswer`](crate::decode::dns::DnsAnswer)s, in packet-time order, for the internal
//! hosts one worker owns. Out: [`Alert`]s.
//!
//! Must never: read the wall clock, touch files or sockets, or wait for a learning period
//! before firing when the evidence stands on its own (history may only lower a score).
//! Each detector implements [`Detector`]; the [`Engine`] fans events out to them and
//! applies the contract's deduplication window.

pub mod alert;
pub mod dnscalc;
pub mod engine;

pub use alert::{Alert, AlertCadence, AlertDns, Analytic};
pub use engine::{Context, Detector, Engine};

/// The detectors every worker runs, built fresh per worker from the configuration.
pub fn default_detectors() -> crate::pipeline::DetectorFactory {
    std::sync::Arc::new(|_cfg: &crate::config::Config| Vec::<Box<dyn Detector>>::new())
}
