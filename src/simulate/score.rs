//! `portent score`.

/// Arguments of `portent score`.
#[derive(clap::Args, Debug, Clone)]
pub struct ScoreArgs {
    #[arg(long)]
    pub truth: std::path::PathBuf,
    #[arg(long)]
    pub alerts: std::path::PathBuf,
}

pub fn run_score(_args: &ScoreArgs) -> Result<bool, String> {
    Err("score: not built yet".into())
}
