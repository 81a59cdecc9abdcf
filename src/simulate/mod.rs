//! `portent simulate` (labelled traffic, EDR feed and ground truth) and `portent score`.
//!
//! ```text
//! portent simulate --seed N [--hosts 20] [--hours 2] [--scenario NAME]... --out DIR
//! portent score --truth DIR/truth.json --alerts alerts.jsonl [--min-recall X] [--min-precision Y] [--technique T]...
//! ```
//!
//! The simulator builds a site ([`world`]: Macs, Linux hosts, VMs on ESXi hosts, two
//! internal resolvers, RFC 1918 addresses, a share of 802.1Q tags and IPv6), plans benign
//! background activities ([`benign`]) and malicious instances ([`scenarios`]) as episodes
//! with start times, then merges them: an episode is rendered into packet records
//! ([`plan`], [`render`]) when the merge reaches its start, and a binary heap of
//! per-episode cursors writes packets in timestamp order. Memory is bounded by the
//! episodes in flight, not by the capture length. Every draw comes from one seeded
//! xoshiro256** ([`rng`]), forked per purpose, so one seed gives byte-identical files.
//!
//! On the wire: DNS over UDP (and some over TCP, length-prefixed) before named
//! connections, CNAME chains and rotating multi-address CDN answers with low TTLs, TCP
//! handshakes, data both ways with consistent seq/ack and delayed ACKs, FIN or RST
//! teardown, UDP request/response. Bulk flows are written with a snap length (captured
//! length < wire length, IP length true). Payloads are shaped per protocol (TLS records,
//! HTTP/1.1, git pkt-lines, NTP, STUN, MQTT, WireGuard, ESP-in-UDP, OpenVPN, SSH banners,
//! FTP) so that tshark dissects them without malformed packets.
//!
//! Outputs in DIR:
//! * `traffic.pcap`: classic pcap, nanosecond timestamps (magic 0xa1b23c4d), Ethernet.
//! * `edr.jsonl`: the canonical EDR feed ([`edr`]): host inventory (ESXi hosts with `vm`
//!   objects), process starts, one `network` event per connection of an EDR-covered host
//!   (about 80% of hosts), sorted by time.
//! * `truth.json` ([`truth::Truth`]): every planted instance with technique, analytic,
//!   host, external addresses, ports, domains, process/user/launchd/vm, scenario
//!   parameters, and what the wire carried: `start`/`end` are the instance's first and
//!   last packet, `connections` (SYN time, destination, bytes sent) and `dns` (answers).
//!
//! See [`score`] for how alerts are scored against the truth.

pub mod benign;
pub mod calc;
pub mod dns_msg;
pub mod edr;
pub mod pcap_writer;
pub mod plan;
pub mod render;
pub mod rng;
pub mod scenarios;
pub mod score;
#[cfg(test)]
mod tests;
pub mod truth;
pub mod world;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use benign::{Activity, Kind};
use plan::{DnsCache, EdrConn, Episode, Observed};
use render::{FrameBuilder, Rendered};
use rng::Rng;
use world::World;

pub use score::{run_score, ScoreArgs};

/// Arguments of `portent simulate`.
#[derive(clap::Args, Debug, Clone)]
pub struct SimulateArgs {
    /// Seed: the same seed always writes the same files.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output directory (traffic.pcap, edr.jsonl, truth.json).
    #[arg(long)]
    pub out: std::path::PathBuf,
    /// Internal endpoints (Macs, Linux hosts, VMs); ESXi hosts come on top.
    #[arg(long, default_value_t = 20)]
    pub hosts: usize,
    /// Capture length in hours.
    #[arg(long, default_value_t = 2.0)]
    pub hours: f64,
    /// Malicious scenarios to plant (repeatable): dns-calc, unusual-dns, fixed-size,
    /// periodic, nonbrowser; `none` for benign traffic only. Default: all.
    #[arg(long = "scenario")]
    pub scenarios: Vec<String>,
    /// No summary on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Capture frames cut to this many bytes (a sensor's snap length; IP lengths stay
    /// true). 0: whole frames.
    #[arg(long, default_value_t = 0)]
    pub snaplen: u32,
}

/// What one run wrote.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub packets: u64,
    pub pcap_bytes: u64,
    pub edr_events: u64,
    pub instances: usize,
}

/// Runs `portent simulate`; the error is a one-line message for the user.
pub fn run_simulate(args: &SimulateArgs) -> Result<(), String> {
    let t0 = std::time::Instant::now();
    let s = simulate(args)?;
    if !args.quiet {
        let dt = t0.elapsed().as_secs_f64();
        eprintln!(
            "simulate: {} packets ({:.1} MB pcap), {} EDR events, {} malicious instances in {:.2} s ({:.2} M packets/s)",
            s.packets,
            s.pcap_bytes as f64 / 1e6,
            s.edr_events,
            s.instances,
            dt,
            s.packets as f64 / dt / 1e6
        );
    }
    Ok(())
}

fn create(dir: &Path, name: &str) -> Result<BufWriter<File>, String> {
    let p = dir.join(name);
    let f = File::create(&p).map_err(|e| format!("cannot create {}: {e}", p.display()))?;
    Ok(BufWriter::with_capacity(8 << 20, f))
}

pub fn simulate(args: &SimulateArgs) -> Result<Summary, String> {
    if !(args.hours > 0.0 && args.hours <= 24.0 * 7.0) {
        return Err(format!("--hours must be in (0, 168], got {}", args.hours));
    }
    if args.hosts == 0 || args.hosts > 5000 {
        return Err(format!("--hosts must be in 1..=5000, got {}", args.hosts));
    }
    let which = scenarios::parse(&args.scenarios)?;
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;

    let mut root = Rng::new(args.seed);
    let mut wrng = root.fork("world");
    let mut brng = root.fork("benign");
    let mut srng = root.fork("scenarios");
    let mut world = World::new(&mut wrng, args.hosts, args.hours);
    let mut acts: Vec<Activity> = Vec::new();
    let mut eps: Vec<Episode> = Vec::new();
    benign::plan(&mut world, &mut brng, &mut acts, &mut eps);
    let planted = scenarios::plan(&mut world, &mut srng, &which);
    let mut instances = Vec::with_capacity(planted.len());
    for (i, p) in planted.into_iter().enumerate() {
        let act = acts.len() as u32;
        acts.push(Activity {
            host: p.host,
            proc: Some(p.proc),
            kind: Kind::Planned,
        });
        for (start, steps) in p.episodes {
            eps.push(Episode {
                start,
                act,
                seed: srng.next_u64(),
                instance: Some(i as u32),
                steps: Some(steps),
            });
        }
        for (start, steps) in p.background {
            eps.push(Episode {
                start,
                act,
                seed: srng.next_u64(),
                instance: None,
                steps: Some(steps),
            });
        }
        instances.push(p.instance);
    }
    eps.sort_by_key(|e| (e.start, e.act));

    let mut pcap =
        pcap_writer::PcapWriter::with_snaplen(create(&args.out, "traffic.pcap")?, args.snaplen)
            .map_err(|e| e.to_string())?;
    let mut observed = vec![Observed::default(); instances.len()];
    let mut edr_conns: Vec<EdrConn> = Vec::new();
    let mut cache = DnsCache::default();
    let mut fb = FrameBuilder::new();
    let mut slots: Vec<Rendered> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut heap: BinaryHeap<Reverse<(i64, usize)>> = BinaryHeap::new();
    let end = world.end.0;

    let mut pop_one = |heap: &mut BinaryHeap<Reverse<(i64, usize)>>,
                       slots: &mut Vec<Rendered>,
                       free: &mut Vec<usize>,
                       pcap: &mut pcap_writer::PcapWriter<BufWriter<File>>|
     -> Result<(), String> {
        let Some(Reverse((ts, slot))) = heap.pop() else {
            return Ok(());
        };
        let r = &mut slots[slot];
        let p = r.pkts[r.pos];
        if ts <= end {
            let (cap, wire) = fb.build(&r.flows[p.flow as usize], &r.blobs, &p);
            pcap.write(crate::time::Ts(ts), &fb.frame[..cap], wire)
                .map_err(|e| e.to_string())?;
        }
        r.pos += 1;
        match r.next_ts() {
            Some(next) if next <= end => heap.push(Reverse((next, slot))),
            _ => {
                *r = Rendered::default();
                free.push(slot);
            }
        }
        Ok(())
    };

    for ep in &eps {
        if ep.start.0 > end {
            break;
        }
        while let Some(Reverse((ts, _))) = heap.peek() {
            if *ts >= ep.start.0 {
                break;
            }
            pop_one(&mut heap, &mut slots, &mut free, &mut pcap)?;
        }
        let act = &acts[ep.act as usize];
        let mut rng = Rng::new(ep.seed);
        let built;
        let steps = match &ep.steps {
            Some(s) => s,
            None => {
                built = benign::build_steps(&world, act, ep.start, &mut rng, &mut cache);
                &built
            }
        };
        let slot = free.pop().unwrap_or_else(|| {
            slots.push(Rendered::default());
            slots.len() - 1
        });
        let r = &mut slots[slot];
        let obs = ep.instance.map(|i| &mut observed[i as usize]);
        plan::render_steps(
            &world,
            act.host,
            act.proc,
            steps,
            &mut rng,
            r,
            &mut edr_conns,
            obs,
        );
        r.finish();
        match r.next_ts() {
            Some(t) => heap.push(Reverse((t, slot))),
            None => free.push(slot),
        }
    }
    while !heap.is_empty() {
        pop_one(&mut heap, &mut slots, &mut free, &mut pcap)?;
    }
    let summary_packets = pcap.packets;
    let pcap_bytes = pcap.bytes;
    pcap.into_inner().flush().map_err(|e| e.to_string())?;

    let mut edr_out = create(&args.out, "edr.jsonl")?;
    let edr_events = edr::write(&mut edr_out, &world, &mut edr_conns).map_err(|e| e.to_string())?;
    edr_out.flush().map_err(|e| e.to_string())?;

    let instances = scenarios::finish(instances, &observed);
    let truth = truth::Truth {
        generator: format!("portent simulate {}", env!("CARGO_PKG_VERSION")),
        seed: args.seed,
        hosts: args.hosts,
        hours: args.hours,
        scenarios: which.iter().map(|s| s.name().to_string()).collect(),
        start: world.start.rfc3339().to_string(),
        end: world.end.rfc3339().to_string(),
        instances,
    };
    let mut tout = create(&args.out, "truth.json")?;
    serde_json::to_writer_pretty(&mut tout, &truth).map_err(|e| e.to_string())?;
    tout.write_all(b"\n").map_err(|e| e.to_string())?;
    tout.flush().map_err(|e| e.to_string())?;
    Ok(Summary {
        packets: summary_packets,
        pcap_bytes,
        edr_events,
        instances: truth.instances.len(),
    })
}
