//! `payroute submission`: the challenge entry it writes (participantes/<id>/) is held to
//! the same rules of SPEC §4 as deploy/ (the checks are shared: `common::compose`),
//! runs the pushed image only, brings every file its compose file mounts, and has the
//! challenge's info.json; bad settings are refused with exit code 2.

mod common;

use common::compose::{self, services, str_of, volumes_of};
use std::path::Path;
use std::process::{Command, Output};

const IMAGE: &str = "docker.io/someone/payroute:1.0";
const REPO: &str = "https://github.com/someone/payroute";

fn submission(out: &Path, extra: &[&str]) -> Output {
    Command::new(common::payroute_exe())
        .args(["submission", "--image", IMAGE, "--repo", REPO])
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn submission_meets_the_challenge_rules() {
    let out_dir = common::test_dir("submission");
    let out = submission(
        &out_dir,
        &[
            "--id",
            "someone-payroute",
            "--social",
            "https://x.com/someone",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = out_dir.join("participantes/someone-payroute");
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    for name in ["docker-compose.yml", "nginx.conf", "info.json", "README.md"] {
        assert!(dir.join(name).is_file(), "{name} missing");
        assert!(listed.contains(name), "{name} not listed: {listed}");
    }

    let doc = compose::load(&dir.join("docker-compose.yml"));
    compose::check_challenge_rules(&doc);
    compose::check_limits_equal_the_launcher_table(&doc);
    for (name, svc) in services(&doc) {
        assert!(svc.get("build").is_none(), "{name}: builds locally");
        let image = str_of(&svc["image"]);
        if name != "lb" {
            assert_eq!(image, IMAGE, "{name}");
        }
        // Every file it mounts is in the folder.
        for volume in volumes_of(svc) {
            if let Some(file) = volume.strip_prefix("./") {
                let file = file.split(':').next().unwrap();
                assert!(
                    dir.join(file).is_file(),
                    "{name} mounts {file}, not written"
                );
            }
        }
    }
    assert_eq!(text(&dir.join("nginx.conf")), launcher::lbconf::NGINX_CONF);

    let info: serde_json::Value = serde_json::from_str(&text(&dir.join("info.json"))).unwrap();
    let keys: Vec<&str> = info
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = [
        "name",
        "social",
        "source-code-repo",
        "langs",
        "storages",
        "messaging",
        "load-balancers",
        "other-technologies",
    ];
    expected.sort_unstable();
    assert_eq!(keys, expected, "the challenge's info.json keys");
    assert_eq!(info["name"], "someone-payroute");
    assert_eq!(info["social"], serde_json::json!(["https://x.com/someone"]));
    assert_eq!(info["source-code-repo"], REPO);
    assert_eq!(info["langs"], serde_json::json!(["rust"]));
    assert_eq!(info["load-balancers"], serde_json::json!(["nginx"]));
    for (key, value) in info.as_object().unwrap() {
        if !matches!(key.as_str(), "name" | "source-code-repo") {
            assert!(
                value.as_array().unwrap().iter().all(|v| v.is_string()),
                "{key}: a list of strings"
            );
        }
    }

    let readme = text(&dir.join("README.md"));
    for needed in [IMAGE, REPO, "linux/amd64", "| worker | 0.7 | 220MB |"] {
        assert!(
            readme.contains(needed),
            "README.md lacks {needed}:\n{readme}"
        );
    }
    std::fs::remove_dir_all(out_dir).unwrap();
}

#[test]
fn submission_refuses_bad_settings_with_exit_2() {
    let out_dir = common::test_dir("submission-refusals");
    for (args, flag) in [
        (vec!["--id", "../escape"], "--id"),
        (vec!["--id", "a/b"], "--id"),
        (vec!["--id", ""], "--id"),
    ] {
        let out = submission(&out_dir, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("invalid setting {flag}:")),
            "{args:?}: {stderr}"
        );
    }
    assert!(!out_dir.join("participantes").exists(), "nothing written");

    let local = Command::new(common::payroute_exe())
        .args([
            "submission",
            "--id",
            "x",
            "--image",
            "payroute:latest",
            "--out",
        ])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert_eq!(local.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&local.stderr).contains("invalid setting --image:"));

    // A folder with something in it: refused, untouched; --force overwrites our files.
    let dir = out_dir.join("participantes/taken");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("docker-compose.yml"), "mine").unwrap();
    let out = submission(&out_dir, &["--id", "taken"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid setting --out:") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(text(&dir.join("docker-compose.yml")), "mine");
    let out = submission(&out_dir, &["--id", "taken", "--force"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text(&dir.join("docker-compose.yml")).contains(IMAGE));
    std::fs::remove_dir_all(out_dir).unwrap();
}
