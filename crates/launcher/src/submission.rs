//! `payroute submission`: the folder `participantes/<id>/` that a Rinha de Backend 2025
//! entry adds to the challenge's repository: `docker-compose.yml` running the pushed
//! image, `nginx.conf`, `info.json` (the challenge's fields) and a `README.md`.
//!
//! The compose file is `deploy/docker-compose.yml` (embedded at build time) with three
//! rewrites, each of which must match or the command fails: its header comment is
//! replaced, the local `build:` section goes and `image:` names the pushed image, and
//! every service's `cpus` and `memory` are set from [`crate::resources::SERVICES`], the
//! one source of the split. The test `deploy_submission.rs` holds the result to every
//! rule of SPEC §4 with the same checks as `deploy/`.

use crate::lbconf::NGINX_CONF;
use crate::resources::{limit_of, ServiceLimit, SERVICES};
use anyhow::{bail, Context};
use netio::SettingError;
use std::path::{Path, PathBuf};

/// `deploy/docker-compose.yml`.
pub(crate) const COMPOSE_YML: &str = include_str!("../../../deploy/docker-compose.yml");
/// The local image and build section of [`COMPOSE_YML`], replaced by the pushed image.
const LOCAL_IMAGE: &str =
    "  image: payroute:latest\n  build:\n    context: ..\n    dockerfile: deploy/Dockerfile\n";
/// Longest folder name accepted: the challenge's are far shorter.
const MAX_ID_LEN: usize = 64;
/// The files written, in the order a reader wants them.
const FILES: [&str; 4] = ["docker-compose.yml", "nginx.conf", "info.json", "README.md"];

/// Flags of `payroute submission`.
#[derive(Debug, Clone, clap::Args)]
pub struct SubmissionArgs {
    /// Your entry's folder name under participantes/ (letters, digits, `-`, `_`, `.`;
    /// starting with a letter or digit), as in `yourname-payroute`.
    #[arg(long)]
    pub id: String,
    /// The pushed image every payroute service runs, built for linux/amd64, as in
    /// `docker.io/you/payroute:1.0` (deploy/Dockerfile builds it).
    #[arg(long)]
    pub image: String,
    /// A checkout of the challenge's repository: the folder goes to
    /// <OUT>/participantes/<ID>/.
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    /// Overwrite the files of an existing, non-empty folder.
    #[arg(long)]
    pub force: bool,
    /// info.json `name`: who submits (default: the id).
    #[arg(long)]
    pub name: Option<String>,
    /// info.json `social`: a link to you; repeat for several.
    #[arg(long)]
    pub social: Vec<String>,
    /// info.json `source-code-repo` and the README's link: the public repository of
    /// this source, which the challenge requires.
    #[arg(long)]
    pub repo: Option<String>,
}

/// Entry point of `payroute submission`: checks the settings, writes the folder, and
/// says where.
pub fn run_submission(args: SubmissionArgs) -> anyhow::Result<()> {
    let dir = write_submission(&args)?;
    for file in FILES {
        println!("{}", dir.join(file).display());
    }
    if args.repo.is_none() {
        eprintln!(
            "NOTE: info.json's source-code-repo is empty: the challenge asks for a link to \
             the source; run again with --repo URL --force"
        );
    }
    Ok(())
}

/// Writes `<out>/participantes/<id>/` and returns that folder.
pub fn write_submission(args: &SubmissionArgs) -> anyhow::Result<PathBuf> {
    check_id(&args.id)?;
    check_image(&args.image)?;
    let dir = args.out.join("participantes").join(&args.id);
    check_folder(&dir, args.force)?;
    let compose = submission_compose(&args.image)?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let contents = [
        compose,
        NGINX_CONF.to_string(),
        info_json(args),
        readme(args),
    ];
    for (name, text) in FILES.iter().zip(contents) {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(dir)
}

/// A folder name that is the same on every file system and in a URL.
fn check_id(id: &str) -> Result<(), SettingError> {
    let starts_well = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    let all_safe = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !starts_well || !all_safe || id.len() > MAX_ID_LEN {
        return Err(SettingError::new(
            "id",
            format!(
                "`{id}` is not a safe folder name: 1 to {MAX_ID_LEN} letters, digits, `-`, \
                 `_` or `.`, starting with a letter or digit"
            ),
        ));
    }
    Ok(())
}

/// An image the test machine can pull: a registry or namespace, no spaces.
fn check_image(image: &str) -> Result<(), SettingError> {
    if image.is_empty() || image.contains(char::is_whitespace) {
        return Err(SettingError::new(
            "image",
            format!("`{image}` is not an image name"),
        ));
    }
    if !image.contains('/') {
        return Err(SettingError::new(
            "image",
            format!(
                "`{image}` looks like a local image, which the test machine cannot pull: \
                 push it and name it with its namespace, as in `you/payroute:1.0`"
            ),
        ));
    }
    Ok(())
}

/// The folder must be new or empty, unless `force`; and a folder, not a file.
fn check_folder(dir: &Path, force: bool) -> Result<(), SettingError> {
    if dir.exists() && !dir.is_dir() {
        return Err(SettingError::new(
            "out",
            format!("{} exists and is not a folder", dir.display()),
        ));
    }
    let non_empty = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
    if non_empty && !force {
        return Err(SettingError::new(
            "out",
            format!(
                "{} exists and is not empty: pass --force to overwrite its files, or choose \
                 another --id or --out",
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// [`COMPOSE_YML`] for the pushed `image`, its limits set from the resource table.
pub fn submission_compose(image: &str) -> anyhow::Result<String> {
    let body_start = COMPOSE_YML
        .find("\nx-payroute:")
        .context("deploy/docker-compose.yml: no `x-payroute:` anchor")?;
    let body = &COMPOSE_YML[body_start + 1..];
    if body.matches(LOCAL_IMAGE).count() != 1 {
        bail!("deploy/docker-compose.yml: the local image and build section changed shape");
    }
    let body = body.replace(LOCAL_IMAGE, &format!("  image: {image}\n"));
    let body = limits_from_table(&body)?;
    Ok(format!("{}{body}", compose_header(image)))
}

fn compose_header(image: &str) -> String {
    let total_cpus = SERVICES.iter().map(|s| s.milli_cpus).sum::<u32>();
    let total_mb = SERVICES.iter().map(|s| s.memory_mb).sum::<u32>();
    format!(
        "# payroute for the Rinha de Backend 2025, written by `payroute submission`.\n\
         # nginx on :9999 -> api1, api2 (Unix sockets in the volume `sockets`) -> worker ->\n\
         # the payment processors, on the external network `payment-processor`.\n\
         # Image: {image} (linux/amd64). Limits: {} CPU, {total_mb} MB in all.\n\n",
        ServiceLimit {
            service: "total",
            milli_cpus: total_cpus,
            memory_mb: total_mb
        }
        .compose_cpus()
    )
}

/// Sets every service's `cpus:` and `memory:` lines to its row of the table; fails if a
/// service has no row, or a row no service.
fn limits_from_table(body: &str) -> anyhow::Result<String> {
    let mut out = String::with_capacity(body.len());
    let mut in_services = false;
    let mut current: Option<&'static ServiceLimit> = None;
    let mut set = Vec::new();
    for line in body.split_inclusive('\n') {
        let indent = line.len() - line.trim_start().len();
        let text = line.trim();
        if indent == 0 && !text.is_empty() && !text.starts_with('#') {
            in_services = text == "services:";
            current = None;
        } else if in_services && indent == 2 && text.ends_with(':') {
            let name = text.trim_end_matches(':');
            current = Some(limit_of(name).with_context(|| {
                format!("deploy/docker-compose.yml: service `{name}` is not in resources.rs")
            })?);
        }
        let pad = &line[..indent];
        match (current, text.split_once(':')) {
            (Some(limit), Some(("cpus", _))) => {
                out.push_str(&format!("{pad}cpus: \"{}\"\n", limit.compose_cpus()));
                set.push(limit.service);
            }
            (Some(limit), Some(("memory", _))) => {
                out.push_str(&format!("{pad}memory: \"{}\"\n", limit.compose_memory()));
            }
            _ => out.push_str(line),
        }
    }
    for s in SERVICES {
        if !set.contains(&s.service) {
            bail!("deploy/docker-compose.yml: no limits for `{}`", s.service);
        }
    }
    Ok(out)
}

/// The challenge's `info.json`, its keys in the challenge's order.
fn info_json(args: &SubmissionArgs) -> String {
    let string = |s: &str| serde_json::Value::from(s).to_string();
    let list = |items: &[&str]| {
        let items: Vec<String> = items.iter().map(|s| string(s)).collect();
        format!("[{}]", items.join(", "))
    };
    let social: Vec<&str> = args.social.iter().map(String::as_str).collect();
    let fields = [
        ("name", string(args.name.as_deref().unwrap_or(&args.id))),
        ("social", list(&social)),
        (
            "source-code-repo",
            string(args.repo.as_deref().unwrap_or("")),
        ),
        ("langs", list(&["rust"])),
        ("storages", list(&["append-only log file"])),
        ("messaging", list(&["unix sockets"])),
        ("load-balancers", list(&["nginx"])),
        ("other-technologies", list(&["tokio", "hyper"])),
    ];
    let lines: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("  {}: {v}", string(k)))
        .collect();
    format!("{{\n{}\n}}\n", lines.join(",\n"))
}

/// The README the challenge asks for: the technologies, the source's link, the image.
fn readme(args: &SubmissionArgs) -> String {
    let name = args.name.as_deref().unwrap_or(&args.id);
    let repo = args.repo.as_deref().unwrap_or("(link para o código fonte)");
    let mut rows = String::new();
    for s in SERVICES {
        rows.push_str(&format!(
            "| {} | {} | {} |\n",
            s.service,
            s.compose_cpus(),
            s.compose_memory()
        ));
    }
    format!(
        "# {id}: payroute\n\n\
         Submissão de {name} para a Rinha de Backend 2025, feita com **payroute**.\n\n\
         Código fonte: {repo}\n\n\
         ## Tecnologias\n\n\
         - **Rust** (tokio, hyper): um binário, `payroute`, com um subcomando por papel.\n\
         - **nginx** na porta 9999, balanceando entre duas instâncias `api` por Unix sockets.\n\
         - Um **worker** único que guarda a fila e o resumo num log próprio, só de \
         acréscimos (sem banco de dados), e encaminha cada pagamento ao processador mais \
         barato que consegue atendê-lo.\n\n\
         ## Imagem\n\n\
         `{image}`, construída para **linux/amd64** a partir de `deploy/Dockerfile` do \
         repositório:\n\n\
         ```sh\n\
         docker buildx build --platform linux/amd64 -f deploy/Dockerfile -t {image} --push .\n\
         ```\n\n\
         ## Recursos\n\n\
         | serviço | CPU | memória |\n|---|---|---|\n{rows}",
        id = args.id,
        image = args.image,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_ids_only() {
        for ok in ["payroute", "ana-rust-2", "a.b_c", "9lives"] {
            assert!(check_id(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(MAX_ID_LEN + 1);
        for bad in [
            "", ".", "..", "../x", "a/b", "-x", ".hidden", "a b", "á", &long,
        ] {
            let err = check_id(bad).unwrap_err();
            assert_eq!(err.setting, "id", "{bad}");
        }
    }

    #[test]
    fn pullable_images_only() {
        assert!(check_image("you/payroute:1.0").is_ok());
        assert!(check_image("ghcr.io/you/payroute:1.0").is_ok());
        for bad in ["", "payroute:latest", "you/pay route"] {
            assert_eq!(check_image(bad).unwrap_err().setting, "image", "{bad}");
        }
    }

    #[test]
    fn compose_runs_the_pushed_image_with_the_table_limits() {
        let text = submission_compose("you/payroute:1.0").unwrap();
        assert!(text.contains("  image: you/payroute:1.0\n"));
        assert!(!text.contains("build:") && !text.contains("payroute:latest"));
        for s in SERVICES {
            assert!(text.contains(&format!("cpus: \"{}\"", s.compose_cpus())));
            assert!(text.contains(&format!("memory: \"{}\"", s.compose_memory())));
        }
        // Only what the table says: the original file's own numbers are gone where
        // they differ (none today), and the header is the generated one.
        assert!(text.starts_with("# payroute for the Rinha de Backend 2025"));
        assert!(text.contains("Limits: 1.5 CPU, 350 MB in all."), "{text}");
    }

    #[test]
    fn limits_come_from_the_table_not_the_file() {
        let body = "services:\n  api1:\n    deploy:\n      resources:\n        limits:\n          \
                    cpus: \"0.9\"\n          memory: \"999MB\"\n";
        let err = limits_from_table(body).unwrap_err().to_string();
        assert!(err.contains("no limits for `lb`"), "{err}");
        let rewritten = body.replace("api1", "worker");
        let err = limits_from_table(&rewritten).unwrap_err().to_string();
        assert!(err.contains("no limits for"), "{err}");
        let unknown = "services:\n  cache:\n    image: redis\n";
        let err = limits_from_table(unknown).unwrap_err().to_string();
        assert!(err.contains("`cache` is not in resources.rs"), "{err}");
    }

    #[test]
    fn refuses_a_non_empty_folder_without_force() {
        let dir = std::env::temp_dir().join(format!("launcher-submission-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(check_folder(&dir, false).is_ok(), "new");
        std::fs::create_dir_all(&dir).unwrap();
        assert!(check_folder(&dir, false).is_ok(), "empty");
        std::fs::write(dir.join("x"), "").unwrap();
        assert_eq!(check_folder(&dir, false).unwrap_err().setting, "out");
        assert!(check_folder(&dir, true).is_ok());
        assert_eq!(
            check_folder(&dir.join("x"), true).unwrap_err().setting,
            "out"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
