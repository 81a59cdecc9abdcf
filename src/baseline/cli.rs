//! `portent baseline show|reset --state DIR [--host IP]`.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::store::{BaselineKey, Store};
use super::{port_key, BaselineParams, HostBaseline};
use crate::time::Ts;

#[derive(Args, Debug)]
pub struct BaselineArgs {
    #[command(subcommand)]
    pub action: BaselineAction,
    /// State directory of the sensor (holds baseline.redb).
    #[arg(long, global = true)]
    pub state: Option<PathBuf>,
    /// Only this internal host.
    #[arg(long, global = true)]
    pub host: Option<IpAddr>,
}

#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BaselineAction {
    /// Print the learned baselines (ports, destinations).
    Show,
    /// Forget learned baselines (one host with --host, else all).
    Reset,
}

pub fn run_baseline(a: &BaselineArgs) -> Result<(), String> {
    let out = run_to_string(a)?;
    print!("{out}");
    Ok(())
}

/// The command's output, as text (tests read it).
pub fn run_to_string(a: &BaselineArgs) -> Result<String, String> {
    let dir = a.state.as_ref().ok_or("--state DIR is required")?;
    let store = Store::open(dir).map_err(|e| e.to_string())?;
    let key = a.host.map(BaselineKey::Host);
    match a.action {
        BaselineAction::Show => {
            let all = store.list().map_err(|e| e.to_string())?;
            let mut s = String::new();
            for (k, b) in all
                .iter()
                .filter(|(k, _)| key.as_ref().is_none_or(|h| h == k))
            {
                render(&mut s, k, b);
            }
            if s.is_empty() {
                s.push_str("no baselines\n");
            }
            Ok(s)
        }
        BaselineAction::Reset => {
            let n = store.reset(key.as_ref()).map_err(|e| e.to_string())?;
            Ok(format!("reset {n} baseline(s)\n"))
        }
    }
}

fn render(s: &mut String, k: &BaselineKey, b: &HostBaseline) {
    use std::fmt::Write;
    let p = BaselineParams::default();
    let now = Ts(b.last_seen);
    let _ = writeln!(
        s,
        "{k}  flows={} first={} last={}",
        b.flows,
        Ts(b.first_seen).rfc3339(),
        now.rfc3339()
    );
    let mut ports = b.ports.entries.clone();
    ports.sort_by(|x, y| {
        y.count_at(now, p.half_life)
            .total_cmp(&x.count_at(now, p.half_life))
    });
    s.push_str("  ports:");
    for e in &ports {
        let (port, proto) = ((e.key >> 8) as u16, e.key as u8);
        let proto = match proto {
            6 => "tcp",
            17 => "udp",
            _ => "ip",
        };
        let reg = if b.is_regular_port(&p, now, port, e.key as u8) {
            "*"
        } else {
            ""
        };
        debug_assert_eq!(port_key(port, e.key as u8), e.key);
        let _ = write!(
            s,
            " {port}/{proto}{reg}={:.1}",
            e.count_at(now, p.half_life)
        );
    }
    s.push_str("\n  dests:");
    let mut dests = b.dests.entries.clone();
    dests.sort_by(|x, y| {
        y.count_at(now, p.half_life)
            .total_cmp(&x.count_at(now, p.half_life))
    });
    for e in &dests {
        let _ = write!(
            s,
            " {}={:.1}",
            dest_text(e.key),
            e.count_at(now, p.half_life)
        );
    }
    s.push('\n');
}

fn dest_text(k: u64) -> String {
    if k >> 63 == 1 {
        let top = u128::from(k & ((1 << 48) - 1)) << 80;
        format!("{}/48", std::net::Ipv6Addr::from(top))
    } else {
        format!("{}/24", std::net::Ipv4Addr::from((k as u32) << 8))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_and_reset() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            let p = BaselineParams::default();
            let mut b = HostBaseline::default();
            for t in [0, 1000, 2000, 4000] {
                b.observe(
                    &p,
                    Ts::from_secs(t),
                    "71.63.201.9".parse().unwrap(),
                    8443,
                    6,
                );
            }
            let k = BaselineKey::Host("10.0.0.7".parse().unwrap());
            s.save_all([(&k, &b)]).unwrap();
        }
        let args = |action, host: Option<&str>| BaselineArgs {
            action,
            state: Some(dir.path().to_path_buf()),
            host: host.map(|h| h.parse().unwrap()),
        };
        let out = run_to_string(&args(BaselineAction::Show, None)).unwrap();
        assert!(
            out.contains("host/10.0.0.7") && out.contains("8443/tcp*"),
            "{out}"
        );
        assert!(out.contains("71.63.201.0/24"), "{out}");
        let out = run_to_string(&args(BaselineAction::Show, Some("10.0.0.8"))).unwrap();
        assert_eq!(out, "no baselines\n");
        let out = run_to_string(&args(BaselineAction::Reset, Some("10.0.0.7"))).unwrap();
        assert_eq!(out, "reset 1 baseline(s)\n");
        let out = run_to_string(&args(BaselineAction::Show, None)).unwrap();
        assert_eq!(out, "no baselines\n");
        let e = run_to_string(&BaselineArgs {
            action: BaselineAction::Show,
            state: None,
            host: None,
        });
        assert!(e.is_err());
    }
}
