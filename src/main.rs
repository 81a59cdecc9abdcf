//! The `portent` command. Errors from the library become one-line messages and exit
//! codes here, and only here: 2 for bad input or usage, 1 for a failed threshold.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "portent",
    version,
    about = "Passive sensor for DNS-calculated C2 and fixed-size/periodic exfiltration"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write labelled traffic (pcap), an EDR feed and the ground truth.
    Simulate(portent::simulate::SimulateArgs),
    /// Score alerts against a simulation's ground truth.
    Score(portent::simulate::ScoreArgs),
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Simulate(a) => match portent::simulate::run_simulate(&a) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("portent simulate: {e}");
                2
            }
        },
        Command::Score(a) => match portent::simulate::run_score(&a) {
            Ok(true) => 0,
            Ok(false) => 1,
            Err(e) => {
                eprintln!("portent score: {e}");
                2
            }
        },
    };
    std::process::exit(code);
}
