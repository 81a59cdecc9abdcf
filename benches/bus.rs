//! The analytics tier without the broker: records as they arrive from Kafka (bytes) are
//! decoded, merged over two producers and run through every analytic, per record. The
//! broker's share (fetch, decompression) is measured end to end in the closing notes
//! with tansu; this is the part portent owns. Also the capture tier's cost of encoding
//! one flow event.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use portent::analytics::{default_detectors, Context, Engine};
use portent::bus::merge::{MergeConfig, Merger, Released};
use portent::bus::record::{self, Body, Envelope, ProducerId};
use portent::config::Config;
use portent::flow::{ConnState, EndReason, FlowEvent, FlowRecord, History};
use portent::time::{Dur, Ts};

/// 20 000 records: 2 producers × 100 hosts, each connection a start and an end.
fn records() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut seq = [0u64; 2];
    for i in 0..10_000u32 {
        let inst = (i % 2) as usize;
        let host = IpAddr::V4(Ipv4Addr::new(
            10,
            1,
            (i % 100 / 50) as u8,
            (i % 50) as u8 + 2,
        ));
        let peer = IpAddr::V4(Ipv4Addr::new(
            93,
            (i % 7) as u8,
            (i % 13) as u8,
            1 + (i % 200) as u8,
        ));
        let t = Ts::from_secs(1_700_000_000 + i as i64 / 2);
        let r = FlowRecord {
            uid: i as u64,
            proto: 6,
            orig: host,
            orig_port: 40_000 + (i % 20_000) as u16,
            resp: peer,
            resp_port: [443, 80, 8443][(i % 3) as usize],
            orig_is_internal: true,
            first_ts: t,
            last_ts: t,
            orig_pkts: 6,
            resp_pkts: 5,
            orig_bytes: 517 + (i % 5) as u64,
            resp_bytes: 4000,
            orig_ip_bytes: 900,
            resp_ip_bytes: 4300,
            conn_state: ConnState::SF,
            history: History::default(),
            orig_first_sizes: [517, 0, 0, 0],
            resp_first_sizes: [1400, 0, 0, 0],
            orig_mac: None,
            vlan: 0,
            handle: portent::flow::FlowHandle::NONE,
        };
        for ev in [
            FlowEvent::Started(r),
            FlowEvent::Ended(r, EndReason::Closed),
        ] {
            seq[inst] += 1;
            let env = Envelope {
                producer: ProducerId {
                    instance: inst as u64 + 1,
                    epoch: 1,
                    worker: 0,
                    workers: 1,
                },
                seq: seq[inst],
                at: t,
            };
            let mut b = Vec::new();
            record::encode(&env, &Body::Flow(ev), &mut b);
            out.push(b);
        }
    }
    for inst in 0..2u64 {
        let env = Envelope {
            producer: ProducerId {
                instance: inst + 1,
                epoch: 1,
                worker: 0,
                workers: 1,
            },
            seq: 1 << 40,
            at: Ts::from_secs(1_700_010_000),
        };
        let mut b = Vec::new();
        record::encode(&env, &Body::End, &mut b);
        out.push(b);
    }
    out
}

fn analytics_tier(c: &mut Criterion) {
    let recs = records();
    let cfg = Config::default();
    let mut g = c.benchmark_group("analyze");
    g.throughput(Throughput::Elements(recs.len() as u64));
    g.bench_function("decode_merge_analytics", |b| {
        b.iter(|| {
            let ctx = Context {
                home_net: cfg.home_net.clone(),
                attributor: None,
            };
            let mut engine = Engine::new(ctx, default_detectors()(&cfg), Dur::from_secs(3600));
            let mut merge = Merger::new(MergeConfig {
                expected_instances: 2,
                ..MergeConfig::default()
            });
            let mut alerts = Vec::new();
            for bytes in &recs {
                let r = record::decode(bytes).unwrap();
                merge.push(r, &mut |rel| match rel {
                    Released::Record(r) => match &r.body {
                        Body::Flow(ev) => engine.on_flow(ev, &mut alerts),
                        Body::Dns(a) => engine.on_dns(a, &mut alerts),
                        _ => {}
                    },
                    Released::Tick(t) => engine.on_tick(t, &mut alerts),
                });
            }
            black_box(alerts.len())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("publish");
    g.throughput(Throughput::Elements(1));
    let r = record::decode(&recs[0]).unwrap();
    let Body::Flow(ev) = r.body else {
        unreachable!()
    };
    let mut buf = Vec::with_capacity(256);
    g.bench_function("encode_flow_event", |b| {
        b.iter(|| {
            record::encode_flow(black_box(&r.env), black_box(&ev), &mut buf);
            black_box(buf.len())
        })
    });
    g.finish();
}

criterion_group!(benches, analytics_tier);
criterion_main!(benches);
