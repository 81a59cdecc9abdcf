//! Bus: the capture tier and the analytics tier joined by Kafka (issue #10).
//!
//! ```text
//!  capture instance(s)                 Kafka topic                 analytics group
//!  decode → flow table ──records──▶ partition = hash(host) ──▶ merge (watermarks) → analytics
//!  (`--publish`)                        (one host, one partition)   (`portent analyze`)
//! ```
//!
//! * [`record`]: the binary records (flow events, DNS answers, clocks, EDR lines).
//! * [`publish`]: the capture side; never blocks a live capture.
//! * [`merge`]: per-partition merge of several producers' packet-time orders.
//! * [`analyze`]: the consumer-group side; one analytics engine per partition.
//!
//! Records are routed by the same internal host as the pipeline's workers
//! ([`crate::pipeline::route_host_of`]), so a host's DNS answers and its connections meet
//! in one partition even when a packet broker sent them to different sensors.

pub mod analyze;
pub mod merge;
pub mod publish;
pub mod record;

use std::future::Future;
use std::net::IpAddr;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;

/// `kafka://HOST:PORT[,HOST:PORT...]/TOPIC`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusUrl {
    pub brokers: String,
    pub topic: String,
}

impl std::str::FromStr for BusUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<BusUrl, String> {
        let bad = |why: &str| format!("{s}: {why} (expected kafka://HOST:PORT/TOPIC)");
        let rest = s
            .strip_prefix("kafka://")
            .ok_or_else(|| bad("not a kafka:// address"))?;
        let (brokers, topic) = rest.split_once('/').ok_or_else(|| bad("no topic"))?;
        if brokers.is_empty() || brokers.split(',').any(|b| !b.contains(':')) {
            return Err(bad("each broker needs HOST:PORT"));
        }
        // Kafka's topic name rule: 1..249 of [A-Za-z0-9._-].
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if topic.is_empty() || topic.len() > 249 || !topic.chars().all(ok) {
            return Err(bad("bad topic name"));
        }
        Ok(BusUrl {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
        })
    }
}

/// `KEY=VALUE` librdkafka properties given on the command line.
pub fn parse_options(opts: &[String]) -> Result<Vec<(String, String)>, String> {
    opts.iter()
        .map(|o| match o.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(format!("--kafka-option {o}: expected KEY=VALUE")),
        })
        .collect()
}

pub(crate) fn client_config(brokers: &str, opts: &[(String, String)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    // librdkafka's log reaches portent's consumer context (which prints warnings and
    // errors); PORTENT_KAFKA_DEBUG=1 with `--kafka-option debug=cgrp` shows everything.
    c.set_log_level(if std::env::var_os("PORTENT_KAFKA_DEBUG").is_some() {
        rdkafka::config::RDKafkaLogLevel::Debug
    } else {
        rdkafka::config::RDKafkaLogLevel::Warning
    });
    for (k, v) in opts {
        c.set(k, v);
    }
    c
}

/// The partition of an internal host (the pipeline's host hash, on other bits than the
/// workers use).
pub fn partition_of(host: IpAddr, partitions: u32) -> i32 {
    ((crate::pipeline::host_hash(host) >> 40) % partitions.max(1) as u64) as i32
}

/// Creates `topic` with `partitions` partitions unless it exists, then returns its
/// partition count as the brokers report it.
pub fn ensure_topic(
    brokers: &str,
    opts: &[(String, String)],
    topic: &str,
    partitions: u32,
    timeout: Duration,
) -> Result<u32, String> {
    let admin: AdminClient<DefaultClientContext> = client_config(brokers, opts)
        .create()
        .map_err(|e| format!("kafka://{brokers}: {e}"))?;
    let new = NewTopic::new(topic, partitions as i32, TopicReplication::Fixed(1));
    let opts_admin = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    match block_on(admin.create_topics([&new], &opts_admin)) {
        Ok(results) => {
            for r in results {
                if let Err((_, code)) = r {
                    if code != RDKafkaErrorCode::TopicAlreadyExists {
                        return Err(format!("kafka://{brokers}/{topic}: cannot create: {code}"));
                    }
                }
            }
        }
        Err(e) => return Err(format!("kafka://{brokers}/{topic}: cannot create: {e}")),
    }
    partition_count(admin.inner(), topic, timeout)
}

/// Partitions of `topic` per the brokers' metadata (retried until `timeout`, since a
/// topic just created may take a moment to show).
pub(crate) fn partition_count<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<u32, String> {
    let until = std::time::Instant::now() + timeout;
    loop {
        let last = match client.fetch_metadata(Some(topic), Duration::from_secs(2)) {
            Ok(md) => match md.topics().iter().find(|t| t.name() == topic) {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                    return Ok(t.partitions().len() as u32)
                }
                Some(t) => format!("{:?}", t.error()),
                None => "not in metadata".to_string(),
            },
            Err(e) => e.to_string(),
        };
        if std::time::Instant::now() >= until {
            return Err(format!("topic {topic}: no partitions ({last})"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs one future to completion on this thread (the admin API is async; portent has
/// no async runtime and needs none for this).
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

pub use crate::pipeline::name_hash;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u: BusUrl = "kafka://127.0.0.1:9092/portent.records".parse().unwrap();
        assert_eq!(u.brokers, "127.0.0.1:9092");
        assert_eq!(u.topic, "portent.records");
        let u: BusUrl = "kafka://a:1,b:2/t".parse().unwrap();
        assert_eq!(u.brokers, "a:1,b:2");
        for bad in [
            "http://a:1/t",
            "kafka://a:1",
            "kafka://a/t",
            "kafka://a:1/",
            "kafka://a:1/t/u",
            "kafka://:1,/t",
        ] {
            assert!(bad.parse::<BusUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn partitions_spread_and_are_stable() {
        let mut seen = [0u32; 8];
        for i in 0..8000u32 {
            let ip = IpAddr::V4((0x0a00_0000 + i).into());
            let p = partition_of(ip, 8);
            assert_eq!(p, partition_of(ip, 8));
            seen[p as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
        assert_eq!(partition_of("10.0.0.1".parse().unwrap(), 0), 0);
    }

    #[test]
    fn options() {
        assert_eq!(
            parse_options(&["a.b=1".into(), "c= x=y".into()]).unwrap(),
            vec![("a.b".into(), "1".into()), ("c".into(), " x=y".into())]
        );
        assert!(parse_options(&["novalue".into()]).is_err());
        assert!(parse_options(&["=v".into()]).is_err());
    }
}
