//! Writes client/data/0.png .. 9.png: the first MNIST test image of each digit, as 28x28
//! grayscale PNGs (white digit on black, as in MNIST).
//! `scripts/fetch-mnist && cargo run -p client --example make_digits`

use std::path::Path;

use engine::data::{Dataset, Split};

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let test = Dataset::load(&root.join("data/mnist"), Split::Test, 10)?;
    let out = root.join("client/data");
    std::fs::create_dir_all(&out)?;
    for digit in 0..10u8 {
        let i = test.labels.iter().position(|&l| l == digit).expect("every digit occurs");
        let pixels = test.images[i * 784..(i + 1) * 784].to_vec();
        let img = image::GrayImage::from_raw(28, 28, pixels).expect("28x28");
        let path = out.join(format!("{digit}.png"));
        img.save(&path)?;
        println!("{} <- test image {i}", path.display());
    }
    Ok(())
}
