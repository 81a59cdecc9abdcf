//! Generation rate of `portent simulate` (issue target: a million packets per second or
//! more). One run writes a 20-host, 15-minute capture with every scenario, its EDR feed
//! and truth into a temporary directory; throughput is packets written per second.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use portent::simulate::{simulate, SimulateArgs};

fn args(out: &std::path::Path) -> SimulateArgs {
    SimulateArgs {
        seed: 11,
        out: out.to_path_buf(),
        hosts: 20,
        hours: 0.25,
        scenarios: Vec::new(),
        quiet: true,
        snaplen: 0,
    }
}

fn generation(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    // Packets per run are fixed by the seed: count them once for the throughput.
    let packets = simulate(&args(dir.path())).expect("simulate").packets;
    let mut g = c.benchmark_group("simulate");
    g.sample_size(10);
    g.throughput(Throughput::Elements(packets));
    g.bench_function("20_hosts_15_min", |b| {
        b.iter(|| simulate(&args(dir.path())).expect("simulate"))
    });
    g.finish();
}

criterion_group!(benches, generation);
criterion_main!(benches);
