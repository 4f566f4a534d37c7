//! TensorFlow Serving's `--model_config_file`: the text-format `ModelServerConfig` subset that
//! names models, their base paths, version policies and version labels, read by
//! [`text_proto`] against upstream's `model_server_config.proto`.
//!
//! ```text
//! model_config_list {
//!   config { name: 'mnist' base_path: '/models/mnist' model_platform: 'tensorflow'
//!            model_version_policy { specific { versions: 1 versions: 2 } }
//!            version_labels { key: 'stable' value: 1 } version_labels { key: 'canary' value: 2 } }
//! }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proto::tensorflow::serving::file_system_storage_path_source_config::ServableVersionPolicy;
use proto::tensorflow::serving::file_system_storage_path_source_config::servable_version_policy::PolicyChoice;
use proto::tensorflow::serving::{ModelConfig, ModelServerConfig, model_server_config};

use crate::text_proto;
pub use crate::text_proto::ConfigFileError;

/// Which versions of a model are served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VersionPolicy {
    /// The newest `n` complete versions.
    Latest(usize),
    /// Exactly these versions (each as soon as it is complete).
    Specific(Vec<i64>),
    All,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelSource {
    pub name: String,
    pub base_path: PathBuf,
    pub policy: VersionPolicy,
    /// `version_labels`: names for versions (`stable`, `canary`).
    pub version_labels: BTreeMap<String, i64>,
}

impl ModelSource {
    /// The version `label` names in this model's `version_labels`.
    pub fn label(&self, label: &str) -> Option<i64> {
        self.version_labels.get(label).copied()
    }
}

const MESSAGE: &str = "tensorflow.serving.ModelServerConfig";

fn policy(policy: Option<&ServableVersionPolicy>) -> Result<VersionPolicy, String> {
    Ok(match policy.and_then(|p| p.policy_choice.as_ref()) {
        None => VersionPolicy::Latest(1),
        // As TensorFlow Serving: `num_versions: 0` (or unset) serves one version.
        Some(PolicyChoice::Latest(latest)) => VersionPolicy::Latest((latest.num_versions as usize).max(1)),
        Some(PolicyChoice::All(_)) => VersionPolicy::All,
        Some(PolicyChoice::Specific(specific)) if specific.versions.is_empty() => {
            return Err("model_version_policy.specific lists no versions".into());
        }
        Some(PolicyChoice::Specific(specific)) => VersionPolicy::Specific(specific.versions.clone()),
    })
}

fn source(config: &ModelConfig, dir: &Path) -> Result<ModelSource, String> {
    let name = &config.name;
    if name.is_empty() {
        return Err("a config has no name".into());
    }
    let model = |e: String| format!("model '{name}': {e}");
    if config.base_path.is_empty() {
        return Err(model("base_path is empty".into()));
    }
    if !config.model_platform.is_empty() && config.model_platform != "tensorflow" {
        return Err(model(format!("model_platform '{}' is not supported (expected tensorflow)", config.model_platform)));
    }
    let policy = policy(config.model_version_policy.as_ref()).map_err(model)?;
    if let Some((label, version)) = config.version_labels.iter().find(|(label, v)| label.is_empty() || **v < 0) {
        return Err(model(format!("version_labels: '{label}' -> {version} is not a label and a version")));
    }
    Ok(ModelSource {
        name: name.clone(),
        base_path: dir.join(&config.base_path),
        policy,
        version_labels: config.version_labels.iter().map(|(k, v)| (k.clone(), *v)).collect(),
    })
}

/// The models a parsed `ModelServerConfig` names; relative base paths are taken from `dir`.
pub fn sources(config: &ModelServerConfig, dir: &Path) -> Result<Vec<ModelSource>, String> {
    let Some(model_server_config::Config::ModelConfigList(list)) = &config.config else {
        return Err("no model_config_list".into());
    };
    let mut sources: Vec<ModelSource> = Vec::new();
    for config in &list.config {
        let source = source(config, dir)?;
        if sources.iter().any(|s| s.name == source.name) {
            return Err(format!("model '{}' is configured twice", source.name));
        }
        sources.push(source);
    }
    if sources.is_empty() {
        return Err("model_config_list has no config".into());
    }
    Ok(sources)
}

/// Parses `text`, the contents of the config file `path` (relative base paths are taken from
/// its directory).
pub fn parse_model_config(text: &str, path: &Path) -> Result<Vec<ModelSource>, ConfigFileError> {
    let config: ModelServerConfig = text_proto::parse(text, MESSAGE).map_err(|e| ConfigFileError::Syntax {
        path: path.to_path_buf(),
        line: e.line,
        column: e.column,
        message: e.message,
    })?;
    sources(&config, path.parent().unwrap_or(Path::new("."))).map_err(|e| ConfigFileError::invalid(path, e))
}

pub fn load_model_config(path: &Path) -> Result<Vec<ModelSource>, ConfigFileError> {
    let config: ModelServerConfig = text_proto::read(path, MESSAGE)?;
    sources(&config, path.parent().unwrap_or(Path::new("."))).map_err(|e| ConfigFileError::invalid(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<ModelSource>, ConfigFileError> {
        parse_model_config(text, Path::new("/etc/models.config"))
    }

    #[test]
    fn parses_tensorflow_serving_configs() {
        let text = r#"
            # two models
            model_config_list {
              config { name: 'mnist' base_path: '/models/mnist' model_platform: "tensorflow" }
              config {
                name: "pinned"
                base_path: "rel/pinned"
                model_version_policy { specific { versions: 1 versions: 3 } }
                version_labels { key: 'stable' value: 1 }
                version_labels { key: 'canary' value: 3 }
              }
              config { name: 'every' base_path: '/e' model_version_policy: { all: {} } }
              config { name: 'two' base_path: '/t' model_version_policy < latest { num_versions: 2 } > }
              config { name: 'zero' base_path: '/z' model_type: TENSORFLOW model_version_policy { latest { } } }
            }"#;
        let s = parse(text).unwrap();
        let mnist = ModelSource {
            name: "mnist".into(),
            base_path: "/models/mnist".into(),
            policy: VersionPolicy::Latest(1),
            version_labels: BTreeMap::new(),
        };
        assert_eq!(s[0], mnist);
        assert_eq!(s[1].base_path, PathBuf::from("/etc/rel/pinned"));
        assert_eq!(s[1].policy, VersionPolicy::Specific(vec![1, 3]));
        assert_eq!((s[1].label("stable"), s[1].label("canary"), s[1].label("x")), (Some(1), Some(3), None));
        assert_eq!(s[2].policy, VersionPolicy::All);
        assert_eq!(s[3].policy, VersionPolicy::Latest(2));
        assert_eq!(s[4].policy, VersionPolicy::Latest(1));
    }

    #[test]
    fn errors_name_the_file_and_line_and_column_or_model() {
        let bad = [
            ("model_config_list { config { name: 'a' } }", "/etc/models.config: model 'a': base_path is empty"),
            ("model_config_list { config { name: 'a' base_path: '/a' ", "/etc/models.config:1:"),
            (
                "model_config_list {\n  config { name: 'a' base_path: '/a' model_version_policy { newest {} } } }",
                "/etc/models.config:2:61: field 'newest' not found",
            ),
            ("model_config_list {\n config { name: 'a\n", "/etc/models.config:2:"),
            ("model_config_list {\n config { name: 'a' base_pth: '/a' } }", "/etc/models.config:2:21: field 'base_pth' not found"),
            ("model_config_list { config { name: 'a' base_path: '/a' model_type: TF } }", "1:68: value 'TF' was not found for enum"),
            ("model_config_list { config { name: 'a' base_path: '/a' model_version_policy { latest { num_versions: -1 } } } }", "1:"),
            ("model_config_list { }", "no config"),
            ("", "no model_config_list"),
            ("model_config_list { config { name: 'a' base_path: '/a' } config { name: 'a' base_path: '/b' } }", "configured twice"),
            ("model_config_list { config { name: 'a' base_path: '/a' model_platform: 'onnx' } }", "model_platform 'onnx'"),
        ];
        for (text, want) in bad {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
