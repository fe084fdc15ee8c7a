//! `payroute completions <shell>` and `payroute man [command]`: shell completion
//! scripts and man pages made from the command line's own definition (clap), printed
//! to stdout, so they cannot disagree with the flags.

use anyhow::{bail, Context};
use std::io::Write;

/// Flags of `payroute completions`.
#[derive(Debug, clap::Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to complete for. Install, e.g. for bash:
    /// `payroute completions bash > /etc/bash_completion.d/payroute`.
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

/// Flags of `payroute man`.
#[derive(Debug, clap::Args)]
pub(crate) struct ManArgs {
    /// The subcommand whose page to print (`up` gives payroute-up(1)); without it,
    /// payroute(1). Read one with `payroute man up | man -l -`.
    pub(crate) command: Option<String>,
}

/// Writes the completion script of `cmd` for `args.shell` to `out`.
pub(crate) fn completions(
    mut cmd: clap::Command,
    args: &CompletionsArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let name = cmd.get_name().to_string();
    clap_complete::generate(args.shell, &mut cmd, name, out);
    Ok(())
}

/// Writes the man page (roff) of `cmd`, or of its subcommand `args.command`, to `out`.
pub(crate) fn man(cmd: clap::Command, args: &ManArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    // Building names each subcommand's page as git's are (payroute-up), and gives it
    // the full usage line.
    let mut cmd = cmd;
    cmd.build();
    let page = match &args.command {
        None => cmd,
        Some(name) => {
            let Some(sub) = cmd.find_subcommand(name) else {
                let names: Vec<&str> = cmd.get_subcommands().map(|s| s.get_name()).collect();
                bail!("no subcommand `{name}`: one of {}", names.join(", "));
            };
            sub.clone()
        }
    };
    render(page, out).context("cannot write the man page")
}

/// clap_mangen's sections, with an ENVIRONMENT section after OPTIONS: every flag of
/// payroute has an environment variable twin, which clap_mangen does not list.
fn render(page: clap::Command, out: &mut dyn Write) -> std::io::Result<()> {
    let environment = environment_section(&page);
    let has_subcommands = page.has_subcommands();
    let has_args = page.get_arguments().any(|a| !a.is_hide_set());
    let man = clap_mangen::Man::new(page);
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    if has_args {
        man.render_options_section(out)?;
    }
    out.write_all(environment.as_bytes())?;
    if has_subcommands {
        man.render_subcommands_section(out)?;
    }
    man.render_version_section(out)
}

/// `.SH ENVIRONMENT` in roff, one entry per variable: the flag it stands for.
fn environment_section(page: &clap::Command) -> String {
    let entries: Vec<String> = page
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| {
            let var = a.get_env()?.to_string_lossy().into_owned();
            let flag = a.get_long()?;
            Some(format!(
                ".TP\n\\fB{var}\\fR\nAs \\fB\\-\\-{}\\fR; the flag wins.\n",
                flag.replace('-', "\\-")
            ))
        })
        .collect();
    if entries.is_empty() {
        return String::new();
    }
    format!(".SH ENVIRONMENT\n{}", entries.concat())
}
