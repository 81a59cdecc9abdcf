//! Per-packet cost of `FlowShard::process` with 10k, 100k and 1M live flows: the table is
//! a hash index over a slab with intrusive timeout lists, so the cost per packet should
//! not grow with the number of flows (beyond cache misses).
//!
//! Three workloads per size: `hit` (packets of existing flows, spread over the whole
//! table, one at a time), `hit_batched` (the same, the way a worker runs a batch: keys
//! first, then the index slot and the flow record prefetched a few packets ahead, so
//! the cache misses of a large table overlap) and `new_at_cap` (every packet a new flow
//! at the cap: one eviction and one insertion each, the flood case).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use portent::config::{FlowConfig, NetSet};
use portent::decode::{Packet, PROTO_UDP};
use portent::flow::table::FlowShard;
use portent::time::Ts;

const BATCH: u64 = 10_000;

fn packet(i: u64, ts: Ts) -> Packet {
    Packet {
        ts,
        src: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | (i as u32 & 0x00ff_ffff))),
        dst: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)),
        sport: 1024 + (i >> 24) as u16,
        dport: 443,
        proto: PROTO_UDP,
        ip_len: 100,
        payload_len: 72,
        ports_known: true,
        ..Packet::UNSET
    }
}

/// A shard holding `n` live flows (keys 0..n), its clock just past the last insert.
fn filled(n: u64) -> (FlowShard, Ts) {
    let cfg = FlowConfig::default();
    let home = NetSet::parse(&["10.0.0.0/8"]).unwrap();
    let mut shard = FlowShard::new(&cfg, n as usize, home);
    let mut out = Vec::new();
    let t0 = Ts::from_secs(1_700_000_000);
    for i in 0..n {
        out.clear();
        shard.process(&packet(i, t0), &mut out);
    }
    assert_eq!(shard.live() as u64, n);
    (shard, t0)
}

fn flows(c: &mut Criterion) {
    let mut g = c.benchmark_group("flow_process");
    g.throughput(Throughput::Elements(BATCH));
    g.sample_size(20);
    for n in [10_000u64, 100_000, 1_000_000] {
        let (mut shard, t0) = filled(n);
        let mut out = Vec::with_capacity(8);
        // Existing flows in a scattered order (a multiplicative walk over 0..n).
        let mut k = 0u64;
        g.bench_function(format!("hit/{n}"), |b| {
            b.iter(|| {
                for _ in 0..BATCH {
                    k = (k + 2_654_435_761) % n;
                    out.clear();
                    shard.process(black_box(&packet(k, t0)), &mut out);
                }
            })
        });
        assert_eq!(shard.live() as u64, n);
        // The worker's path (src/pipeline/worker.rs): batches of 1024, two-stage prefetch.
        let mut keys = Vec::with_capacity(1024);
        let mut pkts = Vec::with_capacity(1024);
        g.bench_function(format!("hit_batched/{n}"), |b| {
            b.iter(|| {
                for _ in 0..BATCH.div_ceil(1000) {
                    pkts.clear();
                    keys.clear();
                    for _ in 0..1000 {
                        k = (k + 2_654_435_761) % n;
                        let p = packet(k, t0);
                        keys.push(shard.key_of(&p));
                        pkts.push(p);
                    }
                    for i in 0..pkts.len() {
                        if let Some(far) = keys.get(i + 12) {
                            shard.prefetch_slot(far);
                        }
                        if let Some(near) = keys.get(i + 6) {
                            shard.prefetch_flow(near);
                        }
                        out.clear();
                        shard.process_keyed(black_box(&pkts[i]), &keys[i], &mut out);
                    }
                }
            })
        });
        assert_eq!(shard.live() as u64, n);
        // New flows at the cap: each evicts the longest-idle one.
        let mut next = n;
        g.bench_function(format!("new_at_cap/{n}"), |b| {
            b.iter(|| {
                for _ in 0..BATCH {
                    next += 1;
                    out.clear();
                    shard.process(black_box(&packet(next, t0)), &mut out);
                }
            })
        });
        assert_eq!(shard.live() as u64, n);
        println!(
            "flows {n}: {} evicted, table heap {} MiB",
            shard.stats.evicted,
            shard.heap_bytes() >> 20
        );
    }
    g.finish();
}

criterion_group!(benches, flows);
criterion_main!(benches);
