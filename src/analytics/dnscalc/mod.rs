//! T1568.003 DNS calculation.
pub mod derivation;
pub mod expr;
