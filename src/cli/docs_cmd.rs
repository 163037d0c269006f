//! `cineseg completions <shell>` and `cineseg man`: shell completion scripts and a roff manual
//! page generated from the same argument definitions as `--help`, so they never drift from it.
//! A Debian package installs their output (`/usr/share/bash-completion/completions/cineseg`,
//! `/usr/share/man/man1/cineseg.1`).

use super::{Cli, CliError};
use clap::CommandFactory;
use std::io::Write;

#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// Shell to write the completion script for (bash, zsh, fish, elvish, powershell).
    shell: clap_complete::Shell,
}

/// Writes the completion script for the chosen shell to stdout.
pub fn completions(a: CompletionsArgs) -> Result<(), CliError> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "cineseg", &mut out);
    write_stdout(&out)
}

/// Writes the manual page (roff, section 1) to stdout: `cineseg man > cineseg.1`.
pub fn man() -> Result<(), CliError> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut out)
        .map_err(|e| CliError::file(std::path::Path::new("<stdout>"), e))?;
    write_stdout(&out)
}

fn write_stdout(bytes: &[u8]) -> Result<(), CliError> {
    std::io::stdout()
        .lock()
        .write_all(bytes)
        .map_err(|e| CliError::file(std::path::Path::new("<stdout>"), e))
}
