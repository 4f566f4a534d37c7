//! `--monitoring_config_file`: TensorFlow Serving's `MonitoringConfig`, which turns on the
//! Prometheus endpoint on the REST port.

use std::path::Path;

use proto::tensorflow::serving::MonitoringConfig;

use crate::text_proto::{self, ConfigFileError};

/// Where TensorFlow Serving serves Prometheus metrics when the config names no path.
pub const DEFAULT_PROMETHEUS_PATH: &str = "/monitoring/prometheus/metrics";

/// The path Prometheus metrics are served at, or None when the config leaves them off.
pub fn prometheus_path(config: &MonitoringConfig) -> Result<Option<String>, String> {
    let Some(prometheus) = config.prometheus_config.as_ref().filter(|p| p.enable) else { return Ok(None) };
    match prometheus.path.as_str() {
        "" => Ok(Some(DEFAULT_PROMETHEUS_PATH.into())),
        path if path.starts_with('/') && !path.starts_with("/v1/") => Ok(Some(path.into())),
        path => Err(format!("prometheus_config.path '{path}' must start with '/' and lie outside /v1/")),
    }
}

pub fn load(path: &Path) -> Result<Option<String>, ConfigFileError> {
    let config: MonitoringConfig = text_proto::read(path, "tensorflow.serving.MonitoringConfig")?;
    prometheus_path(&config).map_err(|e| ConfigFileError::invalid(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> Result<Option<String>, String> {
        prometheus_path(&text_proto::parse(text, "tensorflow.serving.MonitoringConfig").map_err(|e| e.message)?)
    }

    #[test]
    fn tensorflow_serving_monitoring_configs() {
        assert_eq!(path("prometheus_config { enable: true }").unwrap().as_deref(), Some(DEFAULT_PROMETHEUS_PATH));
        assert_eq!(path("prometheus_config { enable: true, path: '/metrics' }").unwrap().as_deref(), Some("/metrics"));
        assert_eq!(path("prometheus_config { path: '/metrics' }").unwrap(), None);
        assert_eq!(path("").unwrap(), None);
        assert!(path("prometheus_config { enable: true path: 'metrics' }").unwrap_err().contains("must start with '/'"));
        assert!(path("prometheus_config { enable: yes }").unwrap_err().contains("yes"));
        assert!(path("prometheus { enable: true }").unwrap_err().contains("field 'prometheus' not found"));
    }
}
