//! deploy/: the Kubernetes manifests validate offline against Kubernetes' schemas (PyPI's
//! kubernetes-validate, pinned, through scripts/validate-deploy), the config files in the
//! ConfigMap are ones the server parses, and the container runs as a non-root user with a
//! health check.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn validate(files: &[&Path]) -> (bool, String) {
    let out = Command::new(root().join("scripts/validate-deploy")).args(files).output().expect("run scripts/validate-deploy");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn the_manifests_validate_and_a_broken_one_does_not() {
    let (ok, log) = validate(&[]);
    assert!(ok, "{log}");
    for resource in [
        "deployment/mnist-serving",
        "service/mnist-serving",
        "service/mnist-serving-headless",
        "horizontalpodautoscaler/mnist-serving",
        "poddisruptionbudget/mnist-serving",
        "configmap/mnist-serving-config",
        "persistentvolumeclaim/mnist-models",
    ] {
        assert!(log.contains(&format!("passed for resource {resource}")), "{resource} not validated:\n{log}");
    }
    // The validator is strict: a misspelt field or a mistyped value fails.
    let dir = tempfile::tempdir().unwrap();
    let deployment = std::fs::read_to_string(root().join("deploy/kubernetes/deployment.yaml")).unwrap();
    for (from, to) in [("readinessProbe:", "readynessProbe:"), ("containerPort: 8500", "containerPort: grpc")] {
        assert!(deployment.contains(from));
        let broken = dir.path().join("broken.yaml");
        std::fs::write(&broken, deployment.replacen(from, to, 1)).unwrap();
        let (ok, log) = validate(&[&broken]);
        assert!(!ok, "{to}: {log}");
    }
}

/// The block scalar under `key: |` in a YAML file, unindented.
fn block(yaml: &str, key: &str) -> String {
    let mut lines = yaml.lines().skip_while(|l| l.trim() != format!("{key}: |"));
    let header = lines.next().unwrap_or_else(|| panic!("no {key}: | block"));
    let indent = header.len() - header.trim_start().len() + 2;
    lines
        .take_while(|l| l.is_empty() || l.len() > indent && l[..indent].trim().is_empty())
        .map(|l| format!("{}\n", l.get(indent..).unwrap_or("")))
        .collect()
}

#[test]
fn the_config_map_holds_files_the_server_parses_and_the_deployment_uses() {
    let configmap = std::fs::read_to_string(root().join("deploy/kubernetes/configmap.yaml")).unwrap();
    let models = server::model_config::parse_model_config(&block(&configmap, "models.config"), Path::new("/config/models.config")).unwrap();
    assert_eq!((models[0].name.as_str(), models[0].base_path.to_str()), ("mnist", Some("/models/mnist")));
    let monitoring = server::text_proto::parse(&block(&configmap, "monitoring.config"), "tensorflow.serving.MonitoringConfig").unwrap();
    let metrics_path = server::monitoring_config::prometheus_path(&monitoring).unwrap().expect("Prometheus is enabled");
    let batching = server::text_proto::parse(&block(&configmap, "batching.config"), "tensorflow.serving.BatchingParameters").unwrap();
    let batching = server::batching_config::BatchingConfig::from_parameters(&batching).unwrap();
    assert_eq!(batching.allowed_batch_sizes.last(), Some(&batching.max_batch_size));

    let deployment = std::fs::read_to_string(root().join("deploy/kubernetes/deployment.yaml")).unwrap();
    for flag in [
        "--model_config_file=/config/models.config",
        "--monitoring_config_file=/config/monitoring.config",
        "--batching_parameters_file=/config/batching.config",
        "--enable_batching=true",
    ] {
        assert!(deployment.contains(flag), "the deployment passes {flag}");
    }
    assert!(deployment.contains(&format!("prometheus.io/path: {metrics_path}")), "the scrape annotation names {metrics_path}");
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let after = &deployment[deployment.find(&format!("{probe}:")).unwrap()..];
        assert!(after.lines().nth(1).unwrap().trim() == "grpc:" && after.lines().nth(2).unwrap().trim() == "port: 8500", "{probe}");
    }
    // Every flag the deployment passes is one the server accepts.
    let args: Vec<&str> = deployment.lines().map(str::trim).filter_map(|l| l.strip_prefix("- --")).collect();
    let mut argv = vec!["server".to_string(), "--port=8500".into(), "--rest_api_port=8501".into()];
    argv.extend(args.iter().map(|a| format!("--{a}")));
    <server::cli::Options as clap::Parser>::try_parse_from(argv).unwrap();
}

#[test]
fn the_container_runs_as_a_non_root_user_with_a_health_check() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let user = dockerfile.lines().rfind(|l| l.starts_with("USER ")).expect("a USER line");
    assert!(!user.contains("root") && user.trim() != "USER 0", "{user}");
    assert!(dockerfile.contains("USER 10001"), "the uid the Deployment's runAsUser names");
    let health = dockerfile.lines().skip_while(|l| !l.starts_with("HEALTHCHECK")).take(2).collect::<String>();
    assert!(health.contains("client") && health.contains("health"), "{health}");
}
