//! Prometheus metrics with TensorFlow Serving's names, labels, types and buckets, so that its
//! dashboards keep working, plus ours (queue depth, versions and their states, the device).
//!
//! TensorFlow Serving's metric `/tensorflow/serving/request_count` is exposed as
//! `:tensorflow:serving:request_count`. The exposition is the `prometheus` crate's; histograms
//! are [`TfHistogram`]s, which bucket as TensorFlow does.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Bucket, Histogram, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use tonic::Code;

/// TensorFlow's `Buckets::Exponential(scale, growth_factor, bucket_count)` bounds.
fn exponential(scale: f64, growth: f64, count: usize) -> Vec<f64> {
    let mut bounds = Vec::with_capacity(count);
    let mut bound = scale;
    for _ in 0..count {
        bounds.push(bound);
        bound *= growth;
    }
    bounds
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[derive(Default)]
struct Series {
    /// Per bucket (the last one unbounded), not cumulative.
    counts: Vec<u64>,
    sum: f64,
}

/// A histogram family bucketed as TensorFlow's: a value counts in the first bucket whose bound
/// exceeds it (exclusive upper bounds: a batch of exactly 8 images is in the bucket up to 16),
/// where the `prometheus` crate's own histograms count it in the bucket up to 8.
#[derive(Clone)]
struct TfHistogram {
    desc: Arc<Desc>,
    bounds: Arc<[f64]>,
    series: Arc<Mutex<BTreeMap<Vec<String>, Series>>>,
}

impl TfHistogram {
    fn new(name: &str, help: &str, labels: &[&str], bounds: Vec<f64>) -> Self {
        let labels = labels.iter().map(|l| l.to_string()).collect();
        let desc = Desc::new(name.into(), help.into(), labels, HashMap::new()).expect("a valid histogram");
        Self { desc: Arc::new(desc), bounds: bounds.into(), series: Arc::default() }
    }

    fn observe(&self, labels: &[&str], value: f64) {
        let bucket = self.bounds.partition_point(|bound| *bound <= value);
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let s = series.entry(labels.iter().map(|l| l.to_string()).collect()).or_default();
        s.counts.resize(self.bounds.len() + 1, 0);
        s.counts[bucket] += 1;
        s.sum += value;
    }
}

impl Collector for TfHistogram {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let metrics = series
            .iter()
            .map(|(values, s)| {
                let mut labels: Vec<LabelPair> = self
                    .desc
                    .variable_labels
                    .iter()
                    .zip(values)
                    .map(|(name, value)| {
                        let mut pair = LabelPair::default();
                        pair.set_name(name.clone());
                        pair.set_value(value.clone());
                        pair
                    })
                    .collect();
                labels.sort_by(|a, b| a.name().cmp(b.name()));
                let mut cumulative = 0;
                let buckets = self
                    .bounds
                    .iter()
                    .zip(&s.counts)
                    .map(|(bound, count)| {
                        cumulative += count;
                        let mut bucket = Bucket::default();
                        bucket.set_upper_bound(*bound);
                        bucket.set_cumulative_count(cumulative);
                        bucket
                    })
                    .collect();
                let mut histogram = Histogram::default();
                histogram.set_bucket(buckets);
                histogram.set_sample_count(s.counts.iter().sum());
                histogram.set_sample_sum(s.sum);
                let mut metric = Metric::from_label(labels);
                metric.set_histogram(histogram);
                metric
            })
            .collect();
        let mut family = MetricFamily::default();
        family.set_name(self.desc.fq_name.clone());
        family.set_help(self.desc.help.clone());
        family.set_field_type(MetricType::HISTOGRAM);
        family.set_metric(metrics);
        vec![family]
    }
}

/// TensorFlow's name of a status code (`OK`, `INVALID_ARGUMENT`, ...).
pub fn code_name(code: Code) -> &'static str {
    proto::tensorflow::error::Code::try_from(code as i32).map_or("UNKNOWN", |c| c.as_str_name())
}

/// One model version as our gauges report it.
pub struct VersionGauge<'a> {
    pub model: &'a str,
    pub version: i64,
    /// START, LOADING, AVAILABLE, UNLOADING or END.
    pub state: &'a str,
    /// Images waiting in its batch queue.
    pub queued_images: usize,
}

pub struct Metrics {
    registry: Registry,
    request_count: IntCounterVec,
    request_latency: TfHistogram,
    request_example_counts: TfHistogram,
    queuing_latency: TfHistogram,
    input_batch_size: TfHistogram,
    processed_batch_size: TfHistogram,
    padding_size: TfHistogram,
    load_attempt_count: IntCounterVec,
    load_latency: IntCounterVec,
    queue_depth: IntGaugeVec,
    version_state: IntGaugeVec,
    versions_available: IntGaugeVec,
    device: IntGaugeVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry of its own (several servers in one process count apart).
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid counter");
            registry.register(Box::new(c.clone())).expect("registered once");
            c
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid gauge");
            registry.register(Box::new(g.clone())).expect("registered once");
            g
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: Vec<f64>| {
            let h = TfHistogram::new(name, help, labels, buckets);
            registry.register(Box::new(h.clone())).expect("registered once");
            h
        };
        let batch_sizes = || exponential(1.0, 2.0, 14);
        let batching = ":tensorflow:serving:batching_session";
        let input_batch_size = histogram(
            &format!("{batching}:input_batch_size"),
            "Tracks the batch size distribution on the inputs by model_name (if available).",
            &[],
            batch_sizes(),
        );
        let processed_batch_size = histogram(
            &format!("{batching}:processed_batch_size"),
            "Tracks the batch size distribution on processing by model_name (if available).",
            &[],
            batch_sizes(),
        );
        Self {
            request_count: counter(":tensorflow:serving:request_count", "The total number of requests.", &["model_name", "status"]),
            request_latency: histogram(
                ":tensorflow:serving:request_latency",
                "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
                &["model_name", "API", "entrypoint"],
                exponential(10.0, 1.8, 33),
            ),
            request_example_counts: histogram(
                ":tensorflow:serving:request_example_counts",
                "The number of tensorflow.Examples per request.",
                &["model"],
                exponential(1.0, 2.0, 15),
            ),
            queuing_latency: histogram(
                &format!("{batching}:queuing_latency"),
                "Distribution of wall time spent (in microseconds) in queuing",
                &["thread_pool_name"],
                exponential(100.0, 1.2, 52),
            ),
            input_batch_size,
            processed_batch_size,
            padding_size: histogram(
                &format!("{batching}:padding_size"),
                "Tracks the padding size distribution on batches by model_name (if available).",
                &["execution_batch_size"],
                batch_sizes(),
            ),
            load_attempt_count: counter(
                ":tensorflow:cc:saved_model:load_attempt_count",
                "The number of times a SavedModel was successfully loaded.",
                &["model_path", "status"],
            ),
            load_latency: counter(
                ":tensorflow:cc:saved_model:load_latency",
                "Latency in microseconds for SavedModels that were successfully loaded.",
                &["model_path"],
            ),
            queue_depth: gauge(
                ":mnist_rs:serving:batch_queue_depth",
                "Images waiting in a model version's batch queue.",
                &["model_name", "version"],
            ),
            version_state: gauge(
                ":mnist_rs:serving:model_version_state",
                "1 for each known model version, labelled with its state (as GetModelStatus reports it).",
                &["model_name", "version", "state"],
            ),
            versions_available: gauge(
                ":mnist_rs:serving:model_versions_available",
                "Versions of a model that serve requests (AVAILABLE).",
                &["model_name"],
            ),
            device: gauge(":mnist_rs:serving:device", "1, labelled with the device every model runs on.", &["kind", "description"]),
            registry,
        }
    }

    /// One request: counted by status; its latency recorded when it succeeded. `api` is
    /// `Predict` (gRPC), `predict` / `classify` / `regress` (REST) or empty (REST GETs);
    /// `entrypoint` is `GRPC` or `REST`.
    pub fn request(&self, model: &str, api: &str, entrypoint: &str, status: Code, latency: Duration) {
        self.request_count.with_label_values(&[model, code_name(status)]).inc();
        if status == Code::Ok {
            self.request_latency.observe(&[model, api, entrypoint], micros(latency));
        }
    }

    /// Examples (images) in one request.
    pub fn examples(&self, model: &str, n: usize) {
        self.request_example_counts.observe(&[model], n as f64);
    }

    /// One merged batch: how long each of its requests waited, the images they hold, and the
    /// size the batch was padded to.
    pub fn batch(&self, thread_pool_name: &str, waited: impl IntoIterator<Item = Duration>, images: usize, padded: usize) {
        for wait in waited {
            self.queuing_latency.observe(&[thread_pool_name], micros(wait));
        }
        self.input_batch_size.observe(&[], images as f64);
        self.processed_batch_size.observe(&[], padded as f64);
        self.padding_size.observe(&[&padded.to_string()], padded.saturating_sub(images) as f64);
    }

    /// One attempt to load the version in `path`.
    pub fn load(&self, path: &str, ok: bool, latency: Duration) {
        self.load_attempt_count.with_label_values(&[path, if ok { "success" } else { "fail" }]).inc();
        if ok {
            self.load_latency.with_label_values(&[path]).inc_by(latency.as_micros() as u64);
        }
    }

    pub fn set_device(&self, kind: &str, description: &str) {
        self.device.reset();
        self.device.with_label_values(&[kind, description]).set(1);
    }

    /// The text exposition, with the gauges of `versions` as they are now.
    pub fn render(&self, versions: &[VersionGauge]) -> String {
        self.queue_depth.reset();
        self.version_state.reset();
        self.versions_available.reset();
        for v in versions {
            let version = v.version.to_string();
            self.version_state.with_label_values(&[v.model, version.as_str(), v.state]).set(1);
            let available = self.versions_available.with_label_values(&[v.model]);
            if v.state == "AVAILABLE" {
                available.inc();
                self.queue_depth.with_label_values(&[v.model, version.as_str()]).set(v.queued_images as i64);
            }
        }
        let mut out = Vec::new();
        // Encoding into a Vec fails only on a metric the registry would not have accepted.
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text exposition");
        String::from_utf8(out).expect("the text exposition is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
        text.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no line {prefix} in\n{text}"))
    }

    #[test]
    fn tensorflow_serving_names_labels_and_buckets() {
        let m = Metrics::new();
        m.request("mnist", "Predict", "GRPC", Code::Ok, Duration::from_micros(10));
        m.request("mnist", "Predict", "GRPC", Code::InvalidArgument, Duration::from_micros(99));
        m.batch("batch_threads", [Duration::from_micros(150)], 3, 4);
        m.batch("batch_threads", [Duration::from_micros(50)], 8, 8);
        m.load("/m/mnist/1", true, Duration::from_millis(2));
        m.load("/m/mnist/2", false, Duration::from_millis(1));
        m.set_device("cpu", "CPU (2 threads)");
        let text = m.render(&[
            VersionGauge { model: "mnist", version: 2, state: "END", queued_images: 0 },
            VersionGauge { model: "mnist", version: 1, state: "AVAILABLE", queued_images: 5 },
        ]);
        assert!(text.contains("# TYPE :tensorflow:serving:request_count counter"), "{text}");
        assert_eq!(
            line(&text, ":tensorflow:serving:request_count{model_name=\"mnist\",status=\"OK\"}"),
            ":tensorflow:serving:request_count{model_name=\"mnist\",status=\"OK\"} 1"
        );
        assert!(text.contains(":tensorflow:serving:request_count{model_name=\"mnist\",status=\"INVALID_ARGUMENT\"} 1"));
        // Latency of successful requests only; 10 us is not below the first bound (10).
        let latency = ":tensorflow:serving:request_latency_bucket{API=\"Predict\",entrypoint=\"GRPC\",model_name=\"mnist\"";
        assert!(text.contains(&format!("{latency},le=\"10\"}} 0")), "{text}");
        assert!(text.contains(&format!("{latency},le=\"18\"}} 1")), "{text}");
        assert!(text.contains(&format!("{latency},le=\"+Inf\"}} 1")), "{text}");
        assert_eq!(text.matches(&format!("{latency},le=")).count(), 34);
        assert!(text.contains("# TYPE :tensorflow:serving:request_latency histogram"));
        // A batch of exactly 8 counts in the bucket below 16, as in TensorFlow.
        let processed = ":tensorflow:serving:batching_session:processed_batch_size_bucket";
        assert!(text.contains(&format!("{processed}{{le=\"4\"}} 0")), "{text}");
        assert!(text.contains(&format!("{processed}{{le=\"8\"}} 1")), "{text}");
        assert!(text.contains(&format!("{processed}{{le=\"16\"}} 2")), "{text}");
        assert!(text.contains(":tensorflow:serving:batching_session:padding_size_count{execution_batch_size=\"4\"} 1"), "{text}");
        assert!(text.contains(":tensorflow:serving:batching_session:queuing_latency_count{thread_pool_name=\"batch_threads\"} 2"));
        assert!(text.contains(":tensorflow:cc:saved_model:load_attempt_count{model_path=\"/m/mnist/1\",status=\"success\"} 1"));
        assert!(text.contains(":tensorflow:cc:saved_model:load_attempt_count{model_path=\"/m/mnist/2\",status=\"fail\"} 1"));
        assert!(text.contains(":tensorflow:cc:saved_model:load_latency{model_path=\"/m/mnist/1\"} 2000"), "{text}");
        assert!(text.contains(":mnist_rs:serving:model_version_state{model_name=\"mnist\",state=\"END\",version=\"2\"} 1"));
        assert!(text.contains(":mnist_rs:serving:model_versions_available{model_name=\"mnist\"} 1"));
        assert!(text.contains(":mnist_rs:serving:batch_queue_depth{model_name=\"mnist\",version=\"1\"} 5"));
        assert!(text.contains(":mnist_rs:serving:device{description=\"CPU (2 threads)\",kind=\"cpu\"} 1"));
        // A version gone since the last scrape is gone from the gauges.
        let text = m.render(&[]);
        assert!(!text.contains("model_version_state{"), "{text}");
    }

    #[test]
    fn exponential_buckets_are_tensorflows() {
        assert_eq!(exponential(1.0, 2.0, 4), vec![1.0, 2.0, 4.0, 8.0]);
        let b = exponential(100.0, 1.2, 52);
        assert_eq!(b.len(), 52);
        assert!((b[51] - 100.0 * 1.2f64.powi(51)).abs() < 1e-6 * b[51]);
    }
}
