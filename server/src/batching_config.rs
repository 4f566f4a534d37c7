//! What the batch scheduler runs with: from the batching flags, or from TensorFlow Serving's
//! `--batching_parameters_file` (text `BatchingParameters`, TensorFlow Serving's defaults for
//! the fields it leaves unset).

use std::path::Path;
use std::time::Duration;

use proto::tensorflow::serving::BatchingParameters;

use crate::cli::BatchingOptions;
use crate::text_proto::{self, ConfigFileError};

/// TensorFlow Serving's defaults for fields a parameters file leaves unset.
pub const DEFAULT_MAX_BATCH_SIZE: i64 = 1000;
pub const DEFAULT_BATCH_TIMEOUT_MICROS: i64 = 0;
pub const DEFAULT_MAX_ENQUEUED_BATCHES: i64 = 10;
pub const DEFAULT_THREAD_POOL_NAME: &str = "batch_threads";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchingConfig {
    /// Most images in one merged batch (and in each inference workspace).
    pub max_batch_size: usize,
    pub batch_timeout: Duration,
    /// Batches that may wait per queue; a request beyond them is refused at once.
    pub max_enqueued_batches: usize,
    pub num_batch_threads: usize,
    /// Batch sizes to pad a merged batch up to (increasing, the last is `max_batch_size`);
    /// empty: batches run at the size they have.
    pub allowed_batch_sizes: Vec<usize>,
    /// The `thread_pool_name` label of the queuing latency metric.
    pub thread_pool_name: String,
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl BatchingConfig {
    pub fn from_flags(flags: &BatchingOptions) -> Self {
        Self {
            max_batch_size: flags.max_batch_size.max(1),
            batch_timeout: Duration::from_micros(flags.batch_timeout_micros),
            max_enqueued_batches: flags.max_enqueued_batches.max(1),
            num_batch_threads: if flags.num_batch_threads == 0 { cores() } else { flags.num_batch_threads },
            allowed_batch_sizes: Vec::new(),
            thread_pool_name: DEFAULT_THREAD_POOL_NAME.into(),
        }
    }

    /// TensorFlow Serving's checks: positive sizes, and allowed sizes increasing up to
    /// `max_batch_size`. Errors name the field.
    pub fn from_parameters(p: &BatchingParameters) -> Result<Self, String> {
        let positive = |field: &str, value: Option<i64>, default: i64| -> Result<usize, String> {
            let v = value.unwrap_or(default);
            usize::try_from(v).ok().filter(|v| *v > 0).ok_or(format!("{field} must be positive, got {v}"))
        };
        let max_batch_size = positive("max_batch_size", p.max_batch_size, DEFAULT_MAX_BATCH_SIZE)?;
        let timeout = p.batch_timeout_micros.unwrap_or(DEFAULT_BATCH_TIMEOUT_MICROS);
        let timeout = u64::try_from(timeout).map_err(|_| format!("batch_timeout_micros must not be negative, got {timeout}"))?;
        let max_enqueued_batches = positive("max_enqueued_batches", p.max_enqueued_batches, DEFAULT_MAX_ENQUEUED_BATCHES)?;
        let num_batch_threads = positive("num_batch_threads", p.num_batch_threads, cores() as i64)?;
        let mut allowed_batch_sizes = Vec::with_capacity(p.allowed_batch_sizes.len());
        for (i, &size) in p.allowed_batch_sizes.iter().enumerate() {
            let size =
                usize::try_from(size).ok().filter(|s| *s > 0).ok_or(format!("allowed_batch_sizes[{i}] must be positive, got {size}"))?;
            if allowed_batch_sizes.last().is_some_and(|last| *last >= size) {
                return Err(format!("allowed_batch_sizes must increase: {:?}", p.allowed_batch_sizes));
            }
            allowed_batch_sizes.push(size);
        }
        if let Some(&last) = allowed_batch_sizes.last()
            && last != max_batch_size
        {
            return Err(format!("the last entry of allowed_batch_sizes ({last}) must equal max_batch_size ({max_batch_size})"));
        }
        let thread_pool_name = p.thread_pool_name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| DEFAULT_THREAD_POOL_NAME.into());
        Ok(Self {
            max_batch_size,
            batch_timeout: Duration::from_micros(timeout),
            max_enqueued_batches,
            num_batch_threads,
            allowed_batch_sizes,
            thread_pool_name,
        })
    }

    pub fn load(path: &Path) -> Result<Self, ConfigFileError> {
        let parameters: BatchingParameters = text_proto::read(path, "tensorflow.serving.BatchingParameters")?;
        Self::from_parameters(&parameters).map_err(|e| ConfigFileError::invalid(path, e))
    }

    /// The size a merged batch of `images` runs at: the next allowed size (the padding repeats
    /// the batch's first image), or `images` itself when none is configured or it is larger
    /// than all of them (a single request beyond `max_batch_size` runs on its own).
    pub fn padded_size(&self, images: usize) -> usize {
        self.allowed_batch_sizes.iter().copied().find(|&s| s >= images).unwrap_or(images)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BatchingConfig, String> {
        let p: BatchingParameters = text_proto::parse(text, "tensorflow.serving.BatchingParameters").map_err(|e| e.message)?;
        BatchingConfig::from_parameters(&p)
    }

    #[test]
    fn tensorflow_serving_example_and_defaults() {
        let c = parse(
            "max_batch_size { value: 128 } batch_timeout_micros { value: 0 } max_enqueued_batches { value: 1000000 } \
             num_batch_threads { value: 8 }",
        )
        .unwrap();
        assert_eq!((c.max_batch_size, c.batch_timeout, c.max_enqueued_batches, c.num_batch_threads), (128, Duration::ZERO, 1_000_000, 8));
        let d = parse("").unwrap();
        assert_eq!((d.max_batch_size, d.batch_timeout, d.max_enqueued_batches, d.num_batch_threads), (1000, Duration::ZERO, 10, cores()));
        assert_eq!(d.thread_pool_name, "batch_threads");
        let e = parse(
            "max_batch_size { value: 8 } batch_timeout_micros { value: 500 } allowed_batch_sizes: [2, 4, 8] \
             thread_pool_name { value: 'mnist_pool' } pad_variable_length_inputs: false",
        )
        .unwrap();
        assert_eq!((e.allowed_batch_sizes.as_slice(), e.thread_pool_name.as_str()), (&[2, 4, 8][..], "mnist_pool"));
        assert_eq!(e.batch_timeout, Duration::from_micros(500));
        assert_eq!([1, 2, 3, 5, 8, 9].map(|n| e.padded_size(n)), [2, 2, 4, 8, 8, 9]);
        assert_eq!(d.padded_size(3), 3);
    }

    #[test]
    fn bad_values_name_the_field() {
        for (text, want) in [
            ("max_batch_size { value: 0 }", "max_batch_size must be positive"),
            ("batch_timeout_micros { value: -1 }", "batch_timeout_micros must not be negative"),
            ("num_batch_threads { value: -2 }", "num_batch_threads must be positive"),
            ("max_batch_size { value: 8 } allowed_batch_sizes: [4, 2, 8]", "must increase"),
            ("max_batch_size { value: 8 } allowed_batch_sizes: [2, 4]", "(4) must equal max_batch_size (8)"),
            ("max_batch_size { value: 8 } allowed_batch_sizes: [0, 8]", "allowed_batch_sizes[0] must be positive"),
            ("max_batch_size: 8", "expected '{' or '<', but found '8'"),
            ("max_batch_sise { value: 8 }", "field 'max_batch_sise' not found"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
