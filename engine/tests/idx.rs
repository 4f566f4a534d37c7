//! IDX / MNIST reader errors: every problem is an error naming the file, never a panic.

use std::path::Path;

use engine::EngineError;
use engine::data::idx;
use engine::data::{Dataset, Split};

fn images(n: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 3];
    for d in [n, rows, cols] {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend((0..n * rows * cols).map(|i| (i % 251) as u8));
    b
}

fn labels(values: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 1];
    b.extend_from_slice(&(values.len() as u32).to_be_bytes());
    b.extend_from_slice(values);
    b
}

fn parse_err(bytes: Vec<u8>, ndims: u8) -> String {
    idx::parse(Path::new("x-idx3-ubyte"), bytes, ndims).unwrap_err().to_string()
}

#[test]
fn valid_files_parse() {
    let a = idx::parse(Path::new("f"), images(2, 3, 4), 3).unwrap();
    assert_eq!(a.dims, vec![2, 3, 4]);
    assert_eq!(a.data.len(), 24);
}

#[test]
fn truncated_header() {
    let e = parse_err(vec![0, 0], 3);
    assert!(e.contains("x-idx3-ubyte") && e.contains("truncated"), "{e}");
    let e = parse_err(images(2, 3, 4)[..10].to_vec(), 3);
    assert!(e.contains("truncated") && e.contains("header"), "{e}");
}

#[test]
fn wrong_magic() {
    let mut b = images(1, 2, 2);
    b[2] = 0x0D; // float data
    let e = parse_err(b, 3);
    assert!(e.contains("wrong magic") && e.contains("0x00000803"), "{e}");
    let e = parse_err(labels(&[1, 2]), 3);
    assert!(e.contains("wrong magic"), "a labels file is not an images file: {e}");
}

#[test]
fn truncated_and_oversized_data() {
    let mut b = images(2, 3, 4);
    b.truncate(b.len() - 5);
    let e = parse_err(b, 3);
    assert!(e.contains("truncated") && e.contains("24") && e.contains("19"), "{e}");
    let mut b = images(2, 3, 4);
    b.extend_from_slice(&[1, 2, 3]);
    let e = parse_err(b, 3);
    assert!(e.contains("3 unexpected bytes"), "{e}");
}

fn write_split(dir: &Path, imgs: Vec<u8>, labs: Vec<u8>) {
    let (i, l) = Split::Train.files();
    std::fs::write(dir.join(i), imgs).unwrap();
    std::fs::write(dir.join(l), labs).unwrap();
}

#[test]
fn count_mismatch_between_images_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    write_split(dir.path(), images(3, 28, 28), labels(&[1, 2]));
    let e = Dataset::load(dir.path(), Split::Train, 10).unwrap_err().to_string();
    assert!(e.contains("train-labels-idx1-ubyte") && e.contains("2 labels") && e.contains("3 images"), "{e}");
}

#[test]
fn label_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    write_split(dir.path(), images(2, 28, 28), labels(&[1, 12]));
    let e = Dataset::load(dir.path(), Split::Train, 10).unwrap_err().to_string();
    assert!(e.contains("label 12 at index 1"), "{e}");
}

#[test]
fn missing_files_say_how_to_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let e = Dataset::load(dir.path(), Split::Test, 10).unwrap_err();
    assert!(matches!(e, EngineError::MissingData { .. }));
    let e = e.to_string();
    assert!(e.contains("t10k-images-idx3-ubyte") && e.contains("scripts/fetch-mnist"), "{e}");
}

#[test]
fn good_split_loads() {
    let dir = tempfile::tempdir().unwrap();
    write_split(dir.path(), images(3, 28, 28), labels(&[1, 2, 9]));
    let d = Dataset::load(dir.path(), Split::Train, 10).unwrap();
    assert_eq!((d.len(), d.rows, d.cols), (3, 28, 28));
    assert_eq!(d.image(1).len(), 784);
    assert_eq!(d.truncate(2).len(), 2);
}
