//! Cadence analytics: pure statistics over one group's stream of observations, for
//! `periodic_transfer` (T1029, AN1115) and `fixed_size_transfer` (T1030, AN0598).
//!
//! No I/O, no clock, no allocation per observation. The pipeline owns one series per
//! group (internal host × external address × port × transport, host × DNS name, or
//! process), feeds it in packet-time order and calls `evaluate` when
//! [`PeriodicSeries::observe`] reports a new beat (or after each size for
//! [`SizeSeries`]); dedup into alert windows is the caller's job.
//!
//! ```
//! use portent::analytics::cadence::{PeriodicParams, PeriodicSeries, Observed};
//! use portent::time::Ts;
//! let mut s = PeriodicSeries::new();
//! let mut fired = None;
//! for i in 0..30 {
//!     if s.observe(Ts::from_secs(1_700_000_000 + 60 * i)) == Observed::NewBeat {
//!         fired = s.evaluate(&PeriodicParams::default()).or(fired);
//!     }
//! }
//! assert!((fired.unwrap().period_s - 60.0).abs() < 1e-6);
//! ```

pub mod compare;
pub mod config;
pub mod detector;
pub mod periodic;
pub mod rita;
pub mod size;
pub mod stats;
#[cfg(test)]
mod tests;

pub use config::{CadenceAllow, CadenceConfig};
pub use detector::{Cadence, CadenceStats};
pub use periodic::{
    Observed, PeriodicParams, PeriodicSeries, PeriodicStats, PeriodicVerdict, PERIODIC_CAPACITY,
};
pub use size::{FixedSizeVerdict, SizeConfig, SizeParams, SizeSeries, SIZE_CLUSTERS};
