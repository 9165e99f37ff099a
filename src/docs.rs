//! Man pages and shell completions, generated from the clap definitions of
//! [`crate::cli`] (`graph2aufs generate-docs DIR`, run by `scripts/install`):
//! `DIR/man/*.1` (graph2aufs, one page per subcommand) and
//! `DIR/completions/{bash,zsh,fish}/`. [`write_docs`] renders them for any
//! program (g2a-genroot renders its own with it).

use crate::cli::{self, Cli};
use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Writes every man page and completion of graph2aufs into `dir`; returns
/// their paths.
pub fn generate(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let graph2aufs = program(Cli::command());
    let subs: Vec<String> = graph2aufs
        .get_subcommands()
        .map(|s| format!("graph2aufs-{}", s.get_name()))
        .collect();
    let mut pages = vec![(graph2aufs.clone(), top_sections(&subs))];
    for sub in graph2aufs.get_subcommands() {
        pages.push((sub.clone(), sub_sections(sub.get_name())));
    }
    write_docs(dir, &graph2aufs, pages)
}

/// Writes `pages` (each a command and the sections after its options) as
/// `dir/man/NAME.1`, and `program`'s completions as
/// `dir/completions/{bash,zsh,fish}/`; returns their paths.
pub fn write_docs(
    dir: &Path,
    program: &clap::Command,
    pages: Vec<(clap::Command, Vec<Section>)>,
) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let man = dir.join("man");
    fs::create_dir_all(&man)?;
    for (cmd, sections) in pages {
        let path = man.join(format!("{}.1", cmd.get_display_name().unwrap_or(cmd.get_name())));
        write_file(&path, &man_page(cmd, &sections)?)?;
        written.push(path);
    }
    for (shell, dir_name, file) in [
        (Shell::Bash, "bash", "{}"),
        (Shell::Zsh, "zsh", "_{}"),
        (Shell::Fish, "fish", "{}.fish"),
    ] {
        let out = dir.join("completions").join(dir_name);
        fs::create_dir_all(&out)?;
        let name = program.get_name().to_string();
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut program.clone(), &name, &mut text);
        let path = out.join(file.replace("{}", &name));
        write_file(&path, &text)?;
        written.push(path);
    }
    Ok(written)
}

/// A program's command as its man pages and completions show it: built,
/// without what is hidden.
pub fn program(cmd: clap::Command) -> clap::Command {
    public(&built(cmd))
}

fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn built(mut cmd: clap::Command) -> clap::Command {
    cmd.build();
    cmd
}

/// `cmd` as users see it: without hidden subcommands and arguments
/// (internal plumbing), without the after-help text (the man pages render
/// it as sections of their own).
fn public(cmd: &clap::Command) -> clap::Command {
    let mut out = clap::Command::new(cmd.get_name().to_string())
        .disable_help_subcommand(true)
        // (--help and --version are made anew.)
        .args(
            cmd.get_arguments()
                .filter(|a| !a.is_hide_set() && !["help", "version"].contains(&a.get_id().as_str()))
                .cloned(),
        )
        .subcommands(
            cmd.get_subcommands()
                .filter(|s| !s.is_hide_set() && s.get_name() != "help")
                .map(public),
        );
    if let Some(about) = cmd.get_about() {
        out = out.about(about.clone());
    }
    if let Some(about) = cmd.get_long_about() {
        out = out.long_about(about.clone());
    }
    if let Some(v) = cmd.get_version() {
        out = out.version(v.to_string());
    }
    if let Some(name) = cmd.get_display_name() {
        out = out.display_name(name.to_string());
    }
    if let Some(name) = cmd.get_bin_name() {
        out = out.bin_name(name.to_string());
    }
    if cmd.is_subcommand_required_set() {
        out = out.subcommand_required(true);
    }
    out
}

/// A man page section: a title and its entries (term, text).
pub type Section = (&'static str, Vec<(String, String)>);

/// `table` as a section's entries.
pub fn rows(table: &[(&str, &str)]) -> Vec<(String, String)> {
    table.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A SEE ALSO section naming `pages`.
pub fn see_also(pages: &[String]) -> Section {
    (
        "SEE ALSO",
        vec![(
            pages.iter().map(|p| format!("{p}(1)")).collect::<Vec<_>>().join(", "),
            String::new(),
        )],
    )
}

fn top_sections(subs: &[String]) -> Vec<Section> {
    vec![
        ("ITEM STATES", rows(&cli::STATES)),
        ("EXIT STATUS", rows(&cli::EXIT_CODES)),
        ("ENVIRONMENT", rows(&cli::ENVIRONMENT)),
        ("FILES", rows(&cli::FILES)),
        see_also(subs),
    ]
}

fn sub_sections(name: &str) -> Vec<Section> {
    let mut v = Vec::new();
    if matches!(name, "plan" | "migrate" | "status") {
        v.push(("ITEM STATES", rows(&cli::STATES)));
    }
    v.push(("EXIT STATUS", rows(&cli::exit_codes(name))));
    v.push(see_also(&["graph2aufs".to_string()]));
    v
}

/// The page of `cmd`: clap_mangen's sections, then `sections`; the
/// version in the footer.
fn man_page(cmd: clap::Command, sections: &[Section]) -> io::Result<Vec<u8>> {
    let man = Man::new(cmd.clone()).source(format!("graph2aufs {}", env!("CARGO_PKG_VERSION")));
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut out)?;
    }
    let mut roff = Roff::new();
    for (title, entries) in sections {
        roff.control("SH", [*title]);
        for (term, text) in entries {
            if text.is_empty() {
                roff.text([roman(term.as_str())]);
            } else {
                roff.control("TP", []);
                roff.text([bold(term.as_str())]);
                roff.text([roman(text.as_str())]);
            }
        }
    }
    roff.to_writer(&mut out)?;
    Ok(out)
}
