//! Build script: records the git commit the bench is built from as `BENCH_GIT_COMMIT`
//! for [`provenance`](src/provenance.rs): `PAYROUTE_GIT_COMMIT` when set (builds without
//! a `.git`, as in a container), else `git rev-parse HEAD`, else "unknown".

use std::path::Path;
use std::process::Command;

/// What `git ARGS` prints, trimmed; `None` when git is missing, fails or prints nothing.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// Asks cargo to run this again when the file `git_path` (as `git rev-parse
/// --git-path` names it) changes; only for files that exist, since cargo reruns on
/// every build for a missing one.
fn watch(git_path: &str) {
    if let Some(p) = git(&["rev-parse", "--git-path", git_path]) {
        if Path::new(&p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PAYROUTE_GIT_COMMIT");
    let given = std::env::var("PAYROUTE_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty());
    let commit = given
        .or_else(|| git(&["rev-parse", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=BENCH_GIT_COMMIT={commit}");
    // HEAD moves on a checkout (HEAD), a commit (the branch's ref) or a gc (packed-refs).
    watch("HEAD");
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch(&branch);
    }
    watch("packed-refs");
}
