//! README.md stays true: its quick start is two commands, its settings table names
//! every environment variable the roles accept, and its resource table is the
//! launcher's (the compose file's) split.

mod common;

use launcher::resources::SERVICES;
use std::path::Path;
use std::process::Command;

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn quick_start_is_two_commands() {
    let text = readme();
    let section = text
        .split("## Quick start")
        .nth(1)
        .expect("a Quick start section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a code block in Quick start");
    let commands: Vec<&str> = block.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(commands, ["cargo run --release -- up", "./scripts/test"]);
}

#[test]
fn settings_table_names_every_environment_variable() {
    let text = readme();
    let exe = common::payroute_exe();
    let mut missing = Vec::new();
    for role in ["api", "worker", "processor", "up", "bench"] {
        let out = Command::new(&exe).args([role, "--help"]).output().unwrap();
        assert!(out.status.success(), "payroute {role} --help");
        let help = String::from_utf8_lossy(&out.stdout);
        for var in help.split("[env: ").skip(1) {
            let name: String = var
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            if !text.contains(&format!("`{name}`")) {
                missing.push(format!("{role}: {name}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "README.md's settings table lacks {missing:?}"
    );
}

#[test]
fn resource_table_is_the_launchers() {
    let text = readme();
    for s in SERVICES {
        let row = format!(
            "| {} | {} | {} MB |",
            s.service,
            s.compose_cpus(),
            s.memory_mb
        );
        assert!(text.contains(&row), "README.md lacks `{row}`");
    }
}
