//! Output: JSON Lines writers for alerts (../shared/spec/alerts.md), flows (Zeek conn.log
//! style) and DNS answers, and the Community ID v1 flow hash.
//!
//! Strings from the wire (DNS names) may hold quotes, control characters or bytes that
//! are not UTF-8: serde_json escapes them, and names are made valid UTF-8 upstream, so
//! every line is valid JSON.

pub mod community_id;
