//! The results picture: training / test loss and accuracy curves, the confusion matrix, and the
//! test digits the model got wrong most confidently.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};

use engine::data::Dataset;
use engine::predictor::Mistake;

use crate::report::Results;

const WIDTH: u32 = 1400;
const HEIGHT: u32 = 1000;
/// Width of the confusion matrix's quadrant; the mistakes take the rest of the bottom row.
const CONFUSION_WIDTH: u32 = HEIGHT / 2 + 120;
/// The grid of mistakes shown.
const MISTAKE_COLUMNS: usize = 6;
const MISTAKE_ROWS: usize = 3;
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// Draws `results` into a PNG at `path`; `test` is the data set the mistakes' indices refer to.
pub fn write_png(path: &Path, results: &Results, test: &Dataset) -> anyhow::Result<()> {
    register_font("sans-serif", FontStyle::Normal, FONT).map_err(|_| anyhow!("cannot load the bundled font"))?;
    let mut pixels = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let title = format!(
            "MNIST CNN: test accuracy {:.2}%, loss {:.4} ({} epoch{}, {})",
            100.0 * results.test_accuracy,
            results.test_loss,
            results.epochs.len(),
            if results.epochs.len() == 1 { "" } else { "s" },
            results.device
        );
        let root = root.titled(&title, ("sans-serif", 24)).map_err(draw_err)?;
        let (top, bottom) = root.split_vertically(HEIGHT / 2 - 20);
        let (loss_area, acc_area) = top.split_horizontally(WIDTH / 2);
        draw_loss(&loss_area, results)?;
        draw_accuracy(&acc_area, results)?;
        let (confusion_area, mistakes_area) = bottom.split_horizontally(CONFUSION_WIDTH);
        draw_confusion(&confusion_area, &results.confusion_matrix)?;
        draw_mistakes(&mistakes_area, &results.confident_mistakes, test)?;
        root.present().map_err(draw_err)?;
    }
    let img = image::RgbImage::from_raw(WIDTH, HEIGHT, pixels).ok_or_else(|| anyhow!("image buffer size"))?;
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png)?;
    engine::export::write_file_atomically(path, png.get_ref())?;
    Ok(())
}

fn draw_err(e: impl std::fmt::Debug) -> anyhow::Error {
    anyhow!("drawing failed: {e:?}")
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

fn x_range(results: &Results) -> std::ops::Range<f64> {
    0.0..(results.epochs.len() as f64).max(1.0)
}

fn draw_loss(area: &Area, r: &Results) -> anyhow::Result<()> {
    let train: Vec<(f64, f64)> = r.loss_curve.iter().map(|p| (p.epoch, p.loss)).collect();
    let test: Vec<(f64, f64)> = r.epochs.iter().map(|e| (e.epoch as f64, e.test_loss)).collect();
    let max = train.iter().chain(&test).map(|p| p.1).fold(0.0f64, f64::max).max(1e-3) * 1.05;
    draw_curves(area, r, "loss (cross-entropy)", "loss", 0.0..max, &train, &test, SeriesLabelPosition::UpperRight)
}

fn draw_accuracy(area: &Area, r: &Results) -> anyhow::Result<()> {
    let train: Vec<(f64, f64)> = r.loss_curve.iter().map(|p| (p.epoch, 100.0 * p.accuracy)).collect();
    let test: Vec<(f64, f64)> = r.epochs.iter().map(|e| (e.epoch as f64, 100.0 * e.test_accuracy)).collect();
    let min = train.iter().chain(&test).map(|p| p.1).fold(100.0f64, f64::min).min(90.0);
    draw_curves(area, r, "accuracy (%)", "accuracy %", min..100.0, &train, &test, SeriesLabelPosition::LowerRight)
}

/// Training windows as a blue line, test points per epoch as a red line with dots.
#[allow(clippy::too_many_arguments)]
fn draw_curves(
    area: &Area,
    r: &Results,
    caption: &str,
    y_desc: &str,
    y: std::ops::Range<f64>,
    train: &[(f64, f64)],
    test: &[(f64, f64)],
    legend: SeriesLabelPosition,
) -> anyhow::Result<()> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x_range(r), y)
        .map_err(draw_err)?;
    chart.configure_mesh().x_desc("epoch").y_desc(y_desc).draw().map_err(draw_err)?;
    chart
        .draw_series(LineSeries::new(train.iter().copied(), &BLUE))
        .map_err(draw_err)?
        .label("train (window mean)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(test.iter().copied(), &RED))
        .map_err(draw_err)?
        .label("test")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    chart.draw_series(test.iter().map(|&p| Circle::new(p, 4, RED.filled()))).map_err(draw_err)?;
    chart.configure_series_labels().position(legend).background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(draw_err)?;
    Ok(())
}

fn draw_confusion(area: &Area, counts: &[Vec<u64>]) -> anyhow::Result<()> {
    let k = counts.len() as i32;
    // Rows are drawn top-down: true class t sits at y = k - 1 - t.
    let mut chart = ChartBuilder::on(area)
        .caption("confusion matrix (rows: true class, columns: predicted)", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((0..k - 1).into_segmented(), (0..k - 1).into_segmented())
        .map_err(draw_err)?;
    let label = |v: &SegmentValue<i32>, flip: bool| match v {
        SegmentValue::CenterOf(c) => (if flip { k - 1 - c } else { *c }).to_string(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(k as usize)
        .y_labels(k as usize)
        .x_label_formatter(&|v| label(v, false))
        .y_label_formatter(&|v| label(v, true))
        .x_desc("predicted")
        .y_desc("true")
        .draw()
        .map_err(draw_err)?;
    let max_off = counts
        .iter()
        .enumerate()
        .flat_map(|(t, row)| row.iter().enumerate().filter(move |(p, _)| *p != t).map(|(_, &c)| c))
        .max()
        .unwrap_or(1)
        .max(1);
    let centered = ("sans-serif", 14).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Center));
    for (t, row) in counts.iter().enumerate() {
        let total: u64 = row.iter().sum::<u64>().max(1);
        for (p, &c) in row.iter().enumerate() {
            let color = if p == t {
                let s = c as f64 / total as f64;
                RGBColor((255.0 - 200.0 * s) as u8, (255.0 - 80.0 * s) as u8, (255.0 - 200.0 * s) as u8)
            } else {
                let s = (c as f64).sqrt() / (max_off as f64).sqrt();
                RGBColor(255, (255.0 - 170.0 * s) as u8, (255.0 - 170.0 * s) as u8)
            };
            let (x, y) = (p as i32, k - 1 - t as i32);
            let cell = [(SegmentValue::Exact(x), SegmentValue::Exact(y)), (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1))];
            chart.draw_series(std::iter::once(Rectangle::new(cell, color.filled()))).map_err(draw_err)?;
            let at = (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y));
            chart.draw_series(std::iter::once(Text::new(c.to_string(), at, centered.clone()))).map_err(draw_err)?;
        }
    }
    Ok(())
}

/// The most confident mistakes as a grid of digits (dark on white, as written), each with its
/// true and predicted class, the confidence and its index in the test set.
fn draw_mistakes(area: &Area, mistakes: &[Mistake], test: &Dataset) -> anyhow::Result<()> {
    let (width, height) = area.dim_in_pixel();
    let (width, height) = (width as i32, height as i32);
    let centered = |size: u32| ("sans-serif", size).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Top));
    area.draw(&Text::new("most confident mistakes: true \u{2192} predicted", (width / 2, 8), centered(20))).map_err(draw_err)?;
    if mistakes.is_empty() {
        return area
            .draw(&Text::new("none: every test image was classified correctly", (width / 2, height / 2), centered(16)))
            .map_err(draw_err);
    }
    let top = 44;
    let (cell_w, cell_h) = (width / MISTAKE_COLUMNS as i32, (height - top) / MISTAKE_ROWS as i32);
    let (rows, cols) = (test.rows as i32, test.cols as i32);
    let scale = ((cell_h - 44) / rows).min((cell_w - 8) / cols).max(1);
    for (slot, m) in mistakes.iter().take(MISTAKE_COLUMNS * MISTAKE_ROWS).enumerate() {
        let (cx, cy) = ((slot % MISTAKE_COLUMNS) as i32 * cell_w, top + (slot / MISTAKE_COLUMNS) as i32 * cell_h);
        let (x0, y0) = (cx + (cell_w - cols * scale) / 2, cy);
        for (i, &v) in test.image(m.index).iter().enumerate() {
            let (r, c) = (i as i32 / cols, i as i32 % cols);
            let shade = 255 - v;
            let pixel = [(x0 + c * scale, y0 + r * scale), (x0 + (c + 1) * scale, y0 + (r + 1) * scale)];
            area.draw(&Rectangle::new(pixel, RGBColor(shade, shade, shade).filled())).map_err(draw_err)?;
        }
        let frame = [(x0 - 1, y0 - 1), (x0 + cols * scale, y0 + rows * scale)];
        area.draw(&Rectangle::new(frame, RGBColor(160, 160, 160))).map_err(draw_err)?;
        let below = y0 + rows * scale + 4;
        let classes = format!("{} \u{2192} {}", m.label, m.predicted);
        area.draw(&Text::new(classes, (cx + cell_w / 2, below), centered(16))).map_err(draw_err)?;
        let detail = format!("{:.1}%  #{}", 100.0 * m.probability, m.index);
        area.draw(&Text::new(detail, (cx + cell_w / 2, below + 19), centered(13))).map_err(draw_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::EpochRecord;

    fn results(mistakes: Vec<Mistake>) -> Results {
        let config = engine::model::Config::parse(include_str!("../HyperParams.config")).unwrap();
        let epoch = EpochRecord {
            epoch: 1,
            train_loss: 0.3,
            train_accuracy: 0.9,
            test_loss: 0.2,
            test_accuracy: 0.95,
            seconds: 1.0,
            images_per_second: 100.0,
            input_wait_seconds: 0.0,
            eval_seconds: 0.1,
            learning_rate: 1e-3,
        };
        Results {
            timestamp: 1,
            test_accuracy: 0.95,
            test_loss: 0.2,
            epochs: vec![epoch],
            confusion_matrix: vec![vec![1; 10]; 10],
            per_class: Vec::new(),
            train_images: 10,
            test_images: 40,
            parameters: 1,
            total_seconds: 1.0,
            device: "cpu".into(),
            threads: 1,
            config_file: "c".into(),
            config,
            export_path: "e".into(),
            resumed_from: None,
            checkpoints: None,
            peak_rss_bytes: None,
            loss_curve: Vec::new(),
            confident_mistakes: mistakes,
        }
    }

    /// Dark pixels in the bottom-right quadrant, below its title.
    fn dark_pixels_among_the_mistakes(path: &Path) -> usize {
        let img = image::open(path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (WIDTH, HEIGHT));
        img.enumerate_pixels().filter(|(x, y, p)| *x > CONFUSION_WIDTH + 10 && *y > HEIGHT / 2 + 90 && p.0[0] < 60).count()
    }

    #[test]
    fn draws_the_mistakes_or_says_there_are_none() {
        let dir = tempfile::tempdir().unwrap();
        for (rows, cols) in [(28, 28), (8, 5)] {
            let n = 40;
            let test = Dataset {
                images: (0..n * rows * cols).map(|i| if i % 3 == 0 { 255 } else { 0 }).collect(),
                labels: (0..n).map(|i| (i % 10) as u8).collect(),
                rows,
                cols,
                images_path: "test".into(),
            };
            let mistakes: Vec<Mistake> = (0..30)
                .map(|i| Mistake { index: i, label: i % 10, predicted: (i + 1) % 10, probability: 1.0 - i as f32 / 100.0 })
                .collect();
            let (with, without) = (dir.path().join(format!("with-{rows}.png")), dir.path().join(format!("without-{rows}.png")));
            write_png(&with, &results(mistakes), &test).unwrap();
            write_png(&without, &results(Vec::new()), &test).unwrap();
            let (drawn, empty) = (dark_pixels_among_the_mistakes(&with), dark_pixels_among_the_mistakes(&without));
            assert!(drawn > 18 * rows * cols, "{rows}x{cols}: {drawn} dark pixels where 18 digits go");
            assert!(empty < drawn / 10, "{rows}x{cols}: {empty} dark pixels with no mistakes (a line of text)");
        }
    }
}
