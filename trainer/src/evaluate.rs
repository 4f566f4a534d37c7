//! `trainer evaluate`: test accuracy of an existing export, optionally with inference timing.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use engine::data::{Dataset, Split};
use engine::predictor::Predictor;

use crate::cli::EvaluateArgs;
use crate::train::progress_bar;

pub fn run(args: &EvaluateArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.batch_size >= 1, "--batch_size must be at least 1");
    let device = args.compute.open_device()?;
    let device_name = device.describe();
    let (model, network) =
        engine::export::load(&args.model, device).with_context(|| format!("cannot load the model in {}", args.model.display()))?;
    let test = Dataset::load(&args.data.data_dir, Split::Test, model.architecture.num_classes)?;
    test.check_input_shape(model.architecture.input_shape).with_context(|| format!("cannot evaluate {}", args.model.display()))?;
    let largest_timed = args.timing_batches.iter().copied().max().unwrap_or(0).max(256);
    let capacity = if args.timing { args.batch_size.max(largest_timed) } else { args.batch_size };
    let mut predictor = Predictor::new(network, capacity);
    let start = Instant::now();
    let bar = progress_bar(test.len() as u64, "evaluate");
    let ev = predictor.evaluate(&test, |done| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let timing = args.timing.then(|| time_inference(&mut predictor, &test, &args.timing_batches));
    let correct = ev.confusion.correct();
    if args.json {
        let out = serde_json::json!({
            "model": args.model,
            "test_accuracy": ev.accuracy,
            "test_loss": ev.loss,
            "correct": correct,
            "test_images": test.len(),
            "confusion_matrix": ev.confusion.counts,
            "per_class": ev.confusion.per_class(),
            "confident_mistakes": ev.confident_mistakes,
            "device": device_name,
            "seconds": seconds,
            "inference": timing,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "test accuracy {:.2}% ({correct}/{}), loss {:.4}, {device_name}, {seconds:.2} s",
            100.0 * ev.accuracy,
            test.len(),
            ev.loss
        );
        if let Some(t) = timing {
            println!("inference: {t}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The anchors' protocol: batch 1, 50 warm-up calls then the median and p99 of 1000; larger
/// batches (256, plus `--timing_batches`), 3 warm-up calls then the median of 20. Host floats
/// in, classes and probabilities out (a GPU's readback included).
fn time_inference(predictor: &mut Predictor, test: &Dataset, extra_batches: &[usize]) -> serde_json::Value {
    let len = test.image_len();
    let largest = extra_batches.iter().copied().chain([256]).max().unwrap_or(256);
    let images: Vec<f32> = (0..largest).flat_map(|i| &test.images[(i % test.len()) * len..][..len]).map(|&p| p as f32 / 255.0).collect();
    let mut timed = |n: usize, warmup: usize, calls: usize| -> Vec<f64> {
        let x = &images[..n * len];
        for _ in 0..warmup {
            predictor.predict(x).expect("whole images");
        }
        let mut t: Vec<f64> = (0..calls)
            .map(|_| {
                let s = Instant::now();
                std::hint::black_box(predictor.predict(x).expect("whole images"));
                s.elapsed().as_secs_f64()
            })
            .collect();
        t.sort_by(f64::total_cmp);
        t
    };
    let median = |t: &[f64]| t[t.len() / 2];
    let b1 = timed(1, 50, 1000);
    let mut out = serde_json::json!({
        "batch1_median_ms": median(&b1) * 1e3,
        "batch1_p99_ms": b1[(b1.len() * 99) / 100] * 1e3,
    });
    for n in std::iter::once(256).chain(extra_batches.iter().copied().filter(|&n| n != 256 && n > 1)) {
        let t = timed(n, 3, 20);
        out[format!("batch{n}_median_ms")] = (median(&t) * 1e3).into();
        out[format!("batch{n}_images_per_s")] = (n as f64 / median(&t)).into();
    }
    out
}
