//! Metrics: see issue 8.
