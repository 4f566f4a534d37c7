//! Batch-1 CPU latency of an exported model when every call follows an idle gap, as a server's
//! calls do, next to back-to-back calls: the median and p90 of 3000 calls for each gap.
//! `cargo run --release -p engine --example idle_latency -- MODEL_DIR [GAP_US ...]` (default 0 300)

use std::path::Path;
use std::time::{Duration, Instant};

use engine::Device;
use engine::predictor::Predictor;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or_else(|| anyhow::anyhow!("usage: idle_latency MODEL_DIR [GAP_US ...]"))?;
    let mut gaps: Vec<u64> = args.map(|g| g.parse()).collect::<Result<_, _>>()?;
    if gaps.is_empty() {
        gaps = vec![0, 300];
    }
    engine::cpu::threads::configure(None)?;
    let (_, network) = engine::export::load(Path::new(&dir), Device::cpu())?;
    let mut predictor = Predictor::new(network, 1);
    let image: Vec<f32> = (0..predictor.network().input_len()).map(|i| if i % 3 == 0 { (i % 255) as f32 / 255.0 } else { 0.0 }).collect();
    for gap in gaps {
        let mut ms: Vec<f64> = (0..3100)
            .map(|_| {
                std::thread::sleep(Duration::from_micros(gap));
                let start = Instant::now();
                std::hint::black_box(predictor.predict(&image).expect("one whole image"));
                start.elapsed().as_secs_f64() * 1e3
            })
            .skip(100)
            .collect();
        ms.sort_by(f64::total_cmp);
        println!("{{\"gap_us\": {gap}, \"p50_ms\": {:.3}, \"p90_ms\": {:.3}}}", ms[ms.len() / 2], ms[ms.len() * 9 / 10]);
    }
    Ok(())
}
