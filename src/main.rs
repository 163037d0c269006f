//! The `cineseg` command: parse arguments, set up logging, run the library, map errors to
//! exit codes. Everything else lives in the library (`cineseg::cli`).

use clap::Parser;

fn main() {
    let cli = cineseg::cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: a log file or journald gets plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    if let Err(e) = cineseg::cli::run(cli) {
        // Messages quote file contents and names: control characters are escaped.
        let shown =
            |s: &dyn std::fmt::Display| cineseg::text::printable(&s.to_string()).into_owned();
        eprintln!("error: {}", shown(&e));
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            eprintln!("  caused by: {}", shown(&s));
            source = s.source();
        }
        std::process::exit(e.exit_code());
    }
}
