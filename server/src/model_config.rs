//! TensorFlow Serving's `--model_config_file`: the text-format `ModelServerConfig` subset that
//! names models, their base paths and version policies.
//!
//! ```text
//! model_config_list {
//!   config { name: 'mnist' base_path: '/models/mnist' model_platform: 'tensorflow'
//!            model_version_policy { specific { versions: 1 versions: 2 } } }
//! }
//! ```

use std::path::{Path, PathBuf};

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
}

#[derive(Debug, thiserror::Error)]
#[error("model config {path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq)]
enum Value {
    Scalar(String),
    Message(Vec<(String, Value)>),
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Parser<'a> {
    fn skip_space(&mut self) {
        loop {
            let rest = &self.text[self.at..];
            let trimmed = rest.trim_start();
            self.at += rest.len() - trimmed.len();
            if trimmed.starts_with('#') {
                self.at += trimmed.find('\n').unwrap_or(trimmed.len());
            } else {
                return;
            }
        }
    }

    fn line(&self) -> usize {
        self.text[..self.at].matches('\n').count() + 1
    }

    fn fail<T>(&self, message: impl std::fmt::Display) -> Result<T, String> {
        Err(format!("line {}: {message}", self.line()))
    }

    fn word(&mut self) -> &'a str {
        let rest = &self.text[self.at..];
        let len = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '.' || c == '+')).unwrap_or(rest.len());
        self.at += len;
        &rest[..len]
    }

    fn fields(&mut self, closing: bool) -> Result<Vec<(String, Value)>, String> {
        let mut fields = Vec::new();
        loop {
            self.skip_space();
            let rest = &self.text[self.at..];
            if rest.is_empty() {
                return if closing { self.fail("missing '}'") } else { Ok(fields) };
            }
            if rest.starts_with('}') {
                if !closing {
                    return self.fail("unexpected '}'");
                }
                self.at += 1;
                return Ok(fields);
            }
            let name = self.word();
            if name.is_empty() {
                return self.fail(format!("expected a field name, found '{}'", rest.chars().next().unwrap_or(' ')));
            }
            self.skip_space();
            if self.text[self.at..].starts_with(':') {
                self.at += 1;
                self.skip_space();
            }
            let rest = &self.text[self.at..];
            let value = if rest.starts_with('{') {
                self.at += 1;
                Value::Message(self.fields(true)?)
            } else if let Some(quote) = rest.chars().next().filter(|c| *c == '\'' || *c == '"') {
                let end = rest[1..].find(quote).map(|e| e + 1);
                let Some(end) = end else { return self.fail(format!("unterminated string in field '{name}'")) };
                self.at += end + 1;
                Value::Scalar(rest[1..end].to_string())
            } else {
                let word = self.word();
                if word.is_empty() {
                    return self.fail(format!("field '{name}' has no value"));
                }
                Value::Scalar(word.to_string())
            };
            fields.push((name.to_string(), value));
        }
    }
}

fn parse(text: &str) -> Result<Vec<(String, Value)>, String> {
    Parser { text, at: 0 }.fields(false)
}

fn scalar<'v>(fields: &'v [(String, Value)], key: &str) -> Option<&'v str> {
    fields.iter().find_map(|(k, v)| match v {
        Value::Scalar(s) if k == key => Some(s.as_str()),
        _ => None,
    })
}

fn messages<'v>(fields: &'v [(String, Value)], key: &'v str) -> impl Iterator<Item = &'v [(String, Value)]> + 'v {
    fields.iter().filter_map(move |(k, v)| match v {
        Value::Message(m) if k == key => Some(m.as_slice()),
        _ => None,
    })
}

fn policy(fields: Option<&[(String, Value)]>) -> Result<VersionPolicy, String> {
    let Some(fields) = fields else { return Ok(VersionPolicy::Latest(1)) };
    match fields {
        [] => Ok(VersionPolicy::Latest(1)),
        [(kind, Value::Message(inner))] => match kind.as_str() {
            "all" => Ok(VersionPolicy::All),
            "latest" => {
                let n = scalar(inner, "num_versions").unwrap_or("1");
                n.parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .map(VersionPolicy::Latest)
                    .ok_or(format!("latest.num_versions '{n}' is not a positive number"))
            }
            "specific" => {
                let versions = inner
                    .iter()
                    .map(|(k, v)| match (k.as_str(), v) {
                        ("versions", Value::Scalar(s)) => s.parse::<i64>().map_err(|_| format!("specific.versions '{s}' is not a number")),
                        (other, _) => Err(format!("unknown field 'specific.{other}'")),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if versions.is_empty() {
                    return Err("specific lists no versions".into());
                }
                Ok(VersionPolicy::Specific(versions))
            }
            other => Err(format!("unknown version policy '{other}' (expected latest, specific or all)")),
        },
        _ => Err("model_version_policy must hold exactly one of latest, specific, all".into()),
    }
}

/// Parses the config text; relative base paths are taken from `dir`.
pub fn parse_model_config(text: &str, dir: &Path) -> Result<Vec<ModelSource>, String> {
    let top = parse(text)?;
    let list = messages(&top, "model_config_list").next().ok_or("no model_config_list")?;
    let mut sources = Vec::new();
    for config in messages(list, "config") {
        let name = scalar(config, "name").filter(|n| !n.is_empty()).ok_or("a config has no name")?;
        let base = scalar(config, "base_path").filter(|b| !b.is_empty()).ok_or(format!("model '{name}' has no base_path"))?;
        if let Some(platform) = scalar(config, "model_platform").filter(|p| *p != "tensorflow") {
            return Err(format!("model '{name}': model_platform '{platform}' is not supported (expected tensorflow)"));
        }
        let policy = policy(messages(config, "model_version_policy").next()).map_err(|e| format!("model '{name}': {e}"))?;
        if sources.iter().any(|s: &ModelSource| s.name == name) {
            return Err(format!("model '{name}' is configured twice"));
        }
        sources.push(ModelSource { name: name.to_string(), base_path: dir.join(base), policy });
    }
    if sources.is_empty() {
        return Err("model_config_list has no config".into());
    }
    Ok(sources)
}

pub fn load_model_config(path: &Path) -> Result<Vec<ModelSource>, ConfigError> {
    let err = |message: String| ConfigError { path: path.display().to_string(), message };
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
    parse_model_config(&text, path.parent().unwrap_or(Path::new("."))).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

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
              }
              config { name: 'every' base_path: '/e' model_version_policy: { all: {} } }
              config { name: 'two' base_path: '/t' model_version_policy { latest { num_versions: 2 } } }
            }"#;
        let s = parse_model_config(text, Path::new("/etc")).unwrap();
        assert_eq!(s[0], ModelSource { name: "mnist".into(), base_path: "/models/mnist".into(), policy: VersionPolicy::Latest(1) });
        assert_eq!(s[1].base_path, PathBuf::from("/etc/rel/pinned"));
        assert_eq!(s[1].policy, VersionPolicy::Specific(vec![1, 3]));
        assert_eq!(s[2].policy, VersionPolicy::All);
        assert_eq!(s[3].policy, VersionPolicy::Latest(2));
    }

    #[test]
    fn errors_name_the_line_or_model() {
        let bad = [
            ("model_config_list { config { name: 'a' } }", "model 'a' has no base_path"),
            ("model_config_list { config { name: 'a' base_path: '/a' ", "missing '}'"),
            (
                "model_config_list { config { name: 'a' base_path: '/a' model_version_policy { newest {} } } }",
                "unknown version policy 'newest'",
            ),
            ("model_config_list {\n config { name: 'a\n", "line 2: unterminated string"),
            ("model_config_list { }", "no config"),
        ];
        for (text, want) in bad {
            let err = parse_model_config(text, Path::new(".")).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}
