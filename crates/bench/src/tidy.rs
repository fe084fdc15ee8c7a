//! Tidy checks of this crate's own sources, as ordinary tests: every file opens with a
//! `//!` line saying what it holds, and no file grows past `MAX_LINES` lines before
//! its tests.

use std::path::{Path, PathBuf};

/// Lines a source file may hold before its `#[cfg(test)]` module: past this, a file
/// holds more than one thing and wants splitting.
const MAX_LINES: usize = 600;

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn all_sources() -> Vec<(PathBuf, String)> {
    let mut paths = Vec::new();
    sources(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut paths,
    );
    paths.sort();
    assert!(paths.len() > 10, "{paths:?}");
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

#[test]
fn every_file_says_what_it_holds() {
    for (path, text) in all_sources() {
        assert!(
            text.starts_with("//! "),
            "{} does not open with a `//!` line",
            path.display()
        );
    }
}

#[test]
fn no_file_is_too_long() {
    for (path, text) in all_sources() {
        let lines = text
            .lines()
            .take_while(|l| !l.starts_with("#[cfg(test)]"))
            .count();
        assert!(
            lines <= MAX_LINES,
            "{}: {lines} lines before its tests (at most {MAX_LINES})",
            path.display()
        );
    }
}
