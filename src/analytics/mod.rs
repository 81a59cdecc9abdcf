//! Analytics: the detections. In: [`FlowEvent`](crate::flow::FlowEvent)s and
//! [`DnsAnswer`](crate::decode::dns::DnsAnswer)s, in packet-time order, for the internal
//! hosts one worker owns. Out: [`Alert`]s.
//!
//! Must never: read the wall clock, touch files or sockets, or wait for a learning period
//! before firing when the evidence stands on its own (history may only lower a score).
//! Each detector implements [`Detector`]; the [`Engine`] fans events out to them and
//! applies the contract's deduplication window.

pub mod alert;
pub mod cadence;
pub mod dnscalc;
pub mod engine;
pub mod nonbrowser;
pub mod per_flow;

pub use alert::{Alert, AlertCadence, AlertDns, Analytic};
pub use engine::{Context, Detector, Engine};
pub use per_flow::PerFlow;

/// A 64-bit hash of a text (a DNS name, an executable) that detectors key their tables
/// by: foldhash with one random seed per process, so crafted names cannot aim at
/// collisions and every worker agrees. Only equality of hashes matters (no output,
/// order or stored state depends on the values), so replays stay deterministic; SipHash
/// over each name cost about 150 instructions per DNS answer.
pub fn text_hash(s: &str) -> u64 {
    use std::hash::BuildHasher;
    static SEED: std::sync::OnceLock<hashbrown::DefaultHashBuilder> = std::sync::OnceLock::new();
    SEED.get_or_init(Default::default).hash_one(s)
}

/// The detectors every worker runs, built fresh per worker from the configuration,
/// without persisted baselines.
pub fn default_detectors() -> crate::pipeline::DetectorFactory {
    detectors_with_state(None)
}

/// As [`default_detectors`], with baselines loaded from and saved to `state`
/// (`portent replay --state DIR`: `baseline::Store::open(DIR)`, shared by all workers).
pub fn detectors_with_state(
    state: Option<std::sync::Arc<crate::baseline::Store>>,
) -> crate::pipeline::DetectorFactory {
    std::sync::Arc::new(move |cfg: &crate::config::Config| {
        let mut v: Vec<Box<dyn Detector>> = Vec::new();
        // main validates first (validate_config); a bad section here falls back to the
        // defaults rather than silently running without the detection.
        let c = dnscalc::DnsCalcConfig::from_config(cfg).unwrap_or_else(|e| {
            eprintln!("portent: {e}; using defaults for analytics.dnscalc");
            dnscalc::DnsCalcConfig::default()
        });
        if c.calculated_port || c.unusual_response {
            v.push(Box::new(dnscalc::DnsCalc::new(c, state.clone())));
        }
        let c = cadence::CadenceConfig::from_config(cfg).unwrap_or_else(|e| {
            eprintln!("portent: {e}; using defaults for analytics.cadence");
            cadence::CadenceConfig::default()
        });
        if c.periodic || c.fixed_size {
            v.push(Box::new(cadence::Cadence::new(c)));
        }
        let n = nonbrowser::NonbrowserConfig::from_config(cfg).unwrap_or_else(|e| {
            eprintln!("portent: {e}; using defaults for analytics.nonbrowser");
            nonbrowser::NonbrowserConfig::default()
        });
        if n.enabled {
            v.push(Box::new(nonbrowser::Nonbrowser::new(n, state.clone())));
        }
        v
    })
}

/// Checks the analytics sections of the configuration (call before building workers).
pub fn validate_config(cfg: &crate::config::Config) -> Result<(), crate::config::ConfigError> {
    dnscalc::DnsCalcConfig::from_config(cfg)?;
    cadence::CadenceConfig::from_config(cfg)?;
    nonbrowser::NonbrowserConfig::from_config(cfg)?;
    Ok(())
}
