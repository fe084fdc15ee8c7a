//! Tidy checks of every crate's sources, as ordinary tests (the way rust-analyzer's
//! `xtask/src/tidy.rs` keeps its own): every source file opens with a `//!` line saying
//! what it holds, and no production file or function outgrows what a reader takes in
//! at once.
//!
//! The limits: 600 lines for a file before its tests (past that, a file holds more than
//! one thing and wants splitting along its concerns), 80 lines for a function from its
//! signature to its closing brace (when a function's own comments number its steps,
//! each step is a function waiting to be named). Test code is not counted: a file's
//! `#[cfg(test)] mod tests` block, `tests.rs` files, `tests/` directories.

use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 600;
const MAX_FN_LINES: usize = 80;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// Every Rust source of the workspace (crates, fuzz targets), with its text.
fn sources() -> Vec<(String, String)> {
    let root = workspace();
    let mut paths = Vec::new();
    rust_files(&root.join("crates"), &mut paths);
    rust_files(&root.join("fuzz/fuzz_targets"), &mut paths);
    paths.sort();
    assert!(paths.len() > 100, "found only {} files", paths.len());
    paths
        .into_iter()
        .map(|p| {
            let name = p.strip_prefix(&root).unwrap().display().to_string();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// Whether the whole file is test code.
fn is_test_file(name: &str) -> bool {
    name.contains("/tests/")
        || name.ends_with("/tests.rs")
        || name.ends_with("_tests.rs")
        || name.contains("/benches/")
}

/// The text before the file's tests (its `#[cfg(test)]` module, always last).
fn production_part(text: &str) -> &str {
    text.find("\n#[cfg(test)]\nmod ")
        .map_or(text, |i| &text[..i])
}

#[test]
fn every_file_says_what_it_holds() {
    let missing: Vec<String> = sources()
        .into_iter()
        .filter(|(_, text)| !text.starts_with("//! "))
        .map(|(name, _)| name)
        .collect();
    assert!(missing.is_empty(), "no `//!` first line: {missing:?}");
}

#[test]
fn production_files_stay_short() {
    let long: Vec<String> = sources()
        .into_iter()
        .filter(|(name, _)| !is_test_file(name))
        .filter_map(|(name, text)| {
            let n = production_part(&text).lines().count();
            (n > MAX_FILE_LINES).then(|| format!("{name}: {n} lines"))
        })
        .collect();
    assert!(long.is_empty(), "over {MAX_FILE_LINES} lines: {long:?}");
}

#[test]
fn production_functions_stay_short() {
    let mut long = Vec::new();
    for (name, text) in sources().into_iter().filter(|(n, _)| !is_test_file(n)) {
        let lines: Vec<&str> = production_part(&text).lines().collect();
        for (start, line) in lines.iter().enumerate() {
            let code = line.trim_start();
            let code = code
                .strip_prefix("pub ")
                .or_else(|| code.strip_prefix("pub(crate) "))
                .or_else(|| code.strip_prefix("pub(super) "))
                .unwrap_or(code);
            let code = code.strip_prefix("async ").unwrap_or(code);
            if !code.starts_with("fn ") || code.ends_with('}') || code.ends_with(';') {
                continue;
            }
            // Formatted code closes a function at the indentation of its signature.
            let close = format!("{}}}", &line[..line.len() - line.trim_start().len()]);
            let Some(length) = lines[start..].iter().position(|l| *l == close) else {
                continue;
            };
            if length + 1 > MAX_FN_LINES {
                long.push(format!("{name}:{}: {} lines", start + 1, length + 1));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines: {long:?}"
    );
}
