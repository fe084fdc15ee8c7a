//! Tidy checks of this crate's sources, as rust-analyzer's `xtask/src/tidy.rs` does for
//! its own: every file opens with a `//!` line saying what it holds, and no file or
//! function outgrows what a reader takes in at once (tests are not counted).

use std::path::Path;

/// Lines of a file before its tests.
const MAX_FILE_LINES: usize = 600;
/// Lines of a function outside the tests, from its signature to its closing brace.
const MAX_FN_LINES: usize = 80;

/// Every `.rs` file of `src/`: its name and its text.
fn sources() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// The text before the file's tests (its `mod tests`, always last).
fn before_tests(text: &str) -> &str {
    text.find("\n#[cfg(test)]\nmod tests {")
        .map_or(text, |i| &text[..i])
}

#[test]
fn every_file_says_what_it_holds() {
    for (name, text) in sources() {
        assert!(
            text.starts_with("//! "),
            "{name} does not open with a `//!` line"
        );
    }
}

#[test]
fn files_and_functions_stay_short() {
    for (name, text) in sources() {
        let lines: Vec<&str> = before_tests(&text).lines().collect();
        assert!(
            lines.len() <= MAX_FILE_LINES,
            "{name}: {} lines before its tests",
            lines.len()
        );
        for (start, line) in lines.iter().enumerate() {
            let code = line.trim_start();
            let signature = ["fn ", "pub fn ", "pub(crate) fn "]
                .iter()
                .any(|s| code.starts_with(s));
            if !signature || code.ends_with('}') || code.ends_with(';') {
                continue;
            }
            // Formatted code closes a function at the indentation of its signature.
            let close = format!("{}}}", &line[..line.len() - code.len()]);
            let length = lines[start..].iter().position(|l| *l == close).unwrap() + 1;
            assert!(
                length <= MAX_FN_LINES,
                "{name}:{}: a function of {length} lines",
                start + 1
            );
        }
    }
}
