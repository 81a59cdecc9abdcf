//! `portent simulate` (labelled traffic, EDR feed and ground truth) and `portent score`.

pub mod dns_msg;
pub mod pcap_writer;
pub mod render;
pub mod rng;

/// Arguments of `portent simulate`.
#[derive(clap::Args, Debug, Clone)]
pub struct SimulateArgs {
    /// Seed: the same seed always writes the same files.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output directory (traffic.pcap, edr.jsonl, truth.json).
    #[arg(long)]
    pub out: std::path::PathBuf,
}

/// Runs `portent simulate`; the error is a one-line message for the user.
pub fn run_simulate(_args: &SimulateArgs) -> Result<(), String> {
    Err("simulate: not built yet".into())
}

/// Arguments of `portent score`.
#[derive(clap::Args, Debug, Clone)]
pub struct ScoreArgs {
    #[arg(long)]
    pub truth: std::path::PathBuf,
    #[arg(long)]
    pub alerts: std::path::PathBuf,
}

/// Runs `portent score`; `Ok(false)` means a threshold was not met (exit code 1).
pub fn run_score(_args: &ScoreArgs) -> Result<bool, String> {
    Err("score: not built yet".into())
}
