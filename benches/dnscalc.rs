//! Cost of the DNS-calculation check per new flow, with 0, 8 and 32 answers (8 addresses
//! each, all inside the window) in the host's memory. Flows go to random external
//! addresses no answer gave, on random non-standard ports: the full per-flow path (port
//! index, shuffle signatures, baseline learning). A standard-port flow is the early exit.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use portent::analytics::dnscalc::unusual::{is_bogon, is_private};
use portent::analytics::dnscalc::{DnsCalc, DnsCalcConfig};
use portent::analytics::{Context, Detector};
use portent::config::NetSet;
use portent::decode::dns::{DnsAnomalies, DnsAnswer, DnsKind};
use portent::flow::{FlowEvent, FlowRecord, History};
use portent::time::Ts;

const HOST: [u8; 4] = [10, 1, 0, 17];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// A public unicast address (ordinary answers; private or reserved ones are unusual).
fn public(rng: &mut Rng) -> IpAddr {
    loop {
        let a = IpAddr::V4(Ipv4Addr::from(rng.next() as u32));
        if !is_bogon(a) && !is_private(a) {
            return a;
        }
    }
}

fn answer(t: f64, i: usize, rng: &mut Rng) -> DnsAnswer {
    let addrs: Vec<IpAddr> = (0..8).map(|_| public(rng)).collect();
    DnsAnswer {
        ts: Ts::from_secs_f64(t),
        client: IpAddr::from(HOST),
        client_port: 40000,
        resolver: IpAddr::from([10, 0, 0, 53]),
        resolver_port: 53,
        transport: 17,
        kind: DnsKind::Dns,
        id: 1,
        query: format!("n{i}.example.com"),
        qtype: 1,
        rcode: 0,
        records: Vec::new(),
        cname_chain: Vec::new(),
        addrs,
        min_ttl: 300,
        anomalies: DnsAnomalies::default(),
    }
}

fn flow(t: f64, dst: IpAddr, port: u16) -> FlowEvent {
    let mut history = History::default();
    history.push(b'S');
    FlowEvent::Started(FlowRecord {
        uid: 1,
        proto: 6,
        orig: IpAddr::from(HOST),
        orig_port: 50123,
        resp: dst,
        resp_port: port,
        orig_is_internal: true,
        first_ts: Ts::from_secs_f64(t),
        last_ts: Ts::from_secs_f64(t),
        orig_pkts: 1,
        resp_pkts: 0,
        orig_bytes: 0,
        resp_bytes: 0,
        orig_ip_bytes: 60,
        resp_ip_bytes: 0,
        conn_state: Default::default(),
        history,
        orig_first_sizes: [0; 4],
        resp_first_sizes: [0; 4],
        orig_mac: None,
        vlan: 0,
        handle: portent::flow::FlowHandle::NONE,
    })
}

fn bench(c: &mut Criterion) {
    let ctx = Context {
        home_net: NetSet::parse(&["10.0.0.0/8"]).unwrap(),
        attributor: None,
    };
    let mut g = c.benchmark_group("dnscalc_new_flow");
    g.throughput(Throughput::Elements(1));
    for answers in [0usize, 8, 32] {
        let mut d = DnsCalc::new(DnsCalcConfig::default(), None);
        let mut rng = Rng(0x5eed ^ answers as u64);
        let mut out = Vec::new();
        for i in 0..answers {
            d.on_dns(&ctx, &answer(i as f64, i, &mut rng), &mut out);
        }
        let t = answers as f64 + 1.0;
        let flows: Vec<FlowEvent> = (0..4096)
            .map(|_| {
                let dst = public(&mut rng);
                flow(t, dst, 1024 + (rng.next() % 64_000) as u16)
            })
            .collect();
        let mut i = 0;
        g.bench_with_input(
            BenchmarkId::new("nonstandard", answers),
            &answers,
            |b, _| {
                b.iter(|| {
                    d.on_flow(&ctx, black_box(&flows[i & 4095]), &mut out);
                    i += 1;
                    out.clear();
                })
            },
        );
        let web = flow(t, IpAddr::from([93, 184, 216, 34]), 443);
        g.bench_with_input(BenchmarkId::new("standard", answers), &answers, |b, _| {
            b.iter(|| d.on_flow(&ctx, black_box(&web), &mut out))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
