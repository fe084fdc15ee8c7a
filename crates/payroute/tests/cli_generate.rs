//! `payroute completions <shell>` and `payroute man`: run as a user would, their output
//! checked for what each format must hold (and the bash script parsed by bash itself).

mod common;

use std::process::{Command, Output};

fn payroute(args: &[&str]) -> Output {
    let out = Command::new(common::payroute_exe())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "payroute {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

const SUBCOMMANDS: [&str; 8] = [
    "api",
    "worker",
    "processor",
    "bench",
    "up",
    "submission",
    "completions",
    "man",
];

#[test]
fn completions_for_every_shell_name_every_subcommand() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = String::from_utf8(payroute(&["completions", shell]).stdout).unwrap();
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{shell}: no `{sub}`");
        }
        // Flags of a subcommand, and the global one.
        assert!(script.contains("limits"), "{shell}: no --limits");
        assert!(script.contains("log-format"), "{shell}: no --log-format");
    }
}

/// groff, which `man` runs, reads every page without a warning (`-ww`: all of them;
/// `-k`: UTF-8 input through preconv, as `man` does).
#[test]
fn groff_reads_every_man_page_without_warnings() {
    let Some(groff) = common::require_program("groff") else {
        return;
    };
    let dir = common::test_dir("man");
    for page in ["payroute"].into_iter().chain(SUBCOMMANDS) {
        let args: Vec<&str> = if page == "payroute" {
            vec!["man"]
        } else {
            vec!["man", page]
        };
        let path = dir.join(format!("{page}.1"));
        std::fs::write(&path, payroute(&args).stdout).unwrap();
        let out = Command::new(&groff)
            .args(["-k", "-man", "-Tutf8", "-ww", "-z"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.is_empty(),
            "{page}: {stderr}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// bash itself reads the script (`bash -n`: parse, do not run).
#[test]
fn bash_parses_its_completion_script() {
    let Some(bash) = common::require_program("bash") else {
        return;
    };
    let dir = common::test_dir("completions");
    let path = dir.join("payroute.bash");
    std::fs::write(&path, payroute(&["completions", "bash"]).stdout).unwrap();
    let out = Command::new(bash).arg("-n").arg(&path).output().unwrap();
    assert!(
        out.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn man_pages_for_payroute_and_each_subcommand() {
    let page = String::from_utf8(payroute(&["man"]).stdout).unwrap();
    assert!(page.contains(".TH payroute 1"), "{page}");
    for sub in SUBCOMMANDS {
        assert!(page.contains(sub), "payroute(1) lacks `{sub}`");
    }
    let up = String::from_utf8(payroute(&["man", "up"]).stdout).unwrap();
    assert!(up.contains(".TH payroute-up 1"), "{up}");
    assert!(up.contains("limits"), "payroute-up(1) lacks --limits");
    assert!(
        up.contains("PAYROUTE_RUN_DIR"),
        "payroute-up(1) lacks its environment"
    );

    let out = Command::new(common::payroute_exe())
        .args(["man", "nonsense"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no subcommand `nonsense`"), "{stderr}");
}
