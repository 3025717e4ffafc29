//! The command line: the subcommands and their flags, each handled in its own module.

mod commands;
pub mod fleet;

mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Prometheus exporter for an OpenClaw gateway reached through an ssh -L forward.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// A TOML config file layered over the embedded default (then OPENCLAW_EXPORTER__SECTION__KEY env).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format on stderr: human (default) or json (one object per line).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the exporter (the default).
    Run,
    /// Validate the configuration: exit 0, or print every problem and exit 1.
    CheckConfig,
    /// Print the embedded default configuration.
    DefaultConfig,
    /// Check the tunnel layer by layer and say what to fix first. Exit 0 when all pass, 10+N for step N.
    Doctor {
        /// Check only this forward (default: every forward).
        #[arg(long)]
        forward: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the routing-table row of each forward (local port, jump host, remote, revision, owner).
    RoutingRow {
        /// Print the table header first.
        #[arg(long)]
        header: bool,
    },
    /// Freeze evidence into one .tar.gz: doctor report, routing rows, the running exporter's status and
    /// metrics, ssh -G, the gateway's /startupz and /readyz, `openclaw gateway status --json`; tokens redacted.
    Evidence {
        /// The archive to write (refused if it exists); default openclaw-evidence-TIME.tar.gz here.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Find the forwards this laptop already has (ssh config LocalForwards to the gateway's port, running ssh
    /// clients with -L) and print a config for them.
    Init {
        /// The gateway's port on the far side.
        #[arg(long, default_value_t = 18789)]
        remote_port: u16,
        /// Write the config to FILE (refused if it exists) instead of stdout.
        #[arg(long, value_name = "FILE")]
        write: Option<PathBuf>,
        /// The ssh config to read (default ~/.ssh/config).
        #[arg(long, value_name = "FILE")]
        ssh_config: Option<PathBuf>,
    },
    /// Keep a tunnel's ssh running: start PROGRAM again whenever it exits, waiting 5 s, doubling to 5 min,
    /// back to 5 s after a run of an hour (the Windows tasks use it; Task Scheduler cannot back off).
    Supervise {
        /// The first wait after an exit.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        min_delay: std::time::Duration,
        /// The longest wait.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        max_delay: std::time::Duration,
        /// A run this long resets the wait to --min-delay.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        healthy_after: std::time::Duration,
        /// The program and its arguments (after `--`).
        #[arg(last = true, required = true)]
        program: Vec<String>,
    },
    /// Send many laptops' rounds through the remote-write client (bench/fleet.py); prints a JSON report.
    #[command(hide = true)]
    SimulateFleet(fleet::Fleet),
    /// Read a token from stdin (or --file) and print its `hash = "..."` line for [[auth.revision]]: an
    /// argon2id hash with a random salt (a leaked config does not give the token away).
    Fingerprint {
        /// Read the token from this file instead of stdin.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
}

/// Parse the command line and run what it asks for.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = cli.config.as_deref();
    match cli.command.unwrap_or(Command::Run) {
        Command::DefaultConfig => {
            print!("{}", crate::config::DEFAULT_TOML);
            ExitCode::SUCCESS
        }
        Command::Fingerprint { file } => commands::fingerprint(file),
        Command::Doctor { forward, json } => commands::doctor(config, forward, json),
        Command::RoutingRow { header } => commands::routing_row(config, header),
        Command::CheckConfig => commands::check_config(config),
        Command::Evidence { out } => commands::evidence(config, out),
        Command::Init { remote_port, write, ssh_config } => commands::init(remote_port, write, ssh_config),
        Command::SimulateFleet(fleet) => commands::simulate_fleet(config, fleet),
        Command::Supervise { min_delay, max_delay, healthy_after, program } => {
            crate::supervise::run(&program, crate::supervise::Backoff::new(min_delay, max_delay, healthy_after))
        }
        Command::Run => run::main(cli.config, cli.log_format),
    }
}
