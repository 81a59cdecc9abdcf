//! portent: a passive network sensor for command-and-control and exfiltration that hides
//! in ordinary-looking egress (ATT&CK T1568.003 DNS calculation, T1030 fixed-size
//! transfers, T1029 scheduled transfers).
//!
//! Data flows one way, one module per stage:
//!
//! ```text
//! capture ──RawPacket──▶ decode ──Packet──▶ flow ──FlowEvent──▶ analytics ──Alert──▶ output
//!                          │ (DnsAnswer)                           ▲
//!                          └───────────────────────────────────────┘   enrichment joins
//!                                                                       EDR context in
//! ```
//!
//! * [`capture`]: packet sources (pcap/pcapng files, libpcap, AF_XDP). Knows files and
//!   sockets; knows nothing about protocols.
//! * [`decode`]: frames to [`decode::Packet`] summaries and DNS messages to
//!   [`decode::dns::DnsAnswer`]. Pure functions over byte slices; never panics.
//! * [`flow`]: the sharded flow table: Zeek-style connection records, timeouts, eviction.
//! * [`analytics`]: the detections. Pure: they see events and packet time, never the wall
//!   clock, files or sockets.
//! * [`enrichment`]: the optional EDR feed and host inventory, joined to flows and alerts.
//! * [`output`]: JSON Lines writers (alerts, flows, DNS) and Community ID.
//! * [`pipeline`]: the threads that connect the stages; the same code for replay and live.
//! * [`bus`]: the capture and analytics tiers over Kafka (`--publish`, `portent analyze`).
//!
//! Side modules: [`config`], [`time`] (packet time), [`baseline`] (persisted state),
//! [`telemetry`] (metrics), [`live_cmd`] (`portent live`), [`simulate`] (labelled traffic generator and scorer).

pub mod analytics;
pub mod baseline;
pub mod bus;
pub mod capture;
pub mod config;
pub mod decode;
pub mod enrichment;
pub mod flow;
pub mod live_cmd;
pub mod output;
pub mod pipeline;
pub mod report;
pub mod signals;
pub mod simulate;
pub mod telemetry;
pub mod time;
