//! TensorProto <-> engine data: the request's `images` tensor validated (dtype, shape, length)
//! before anything is allocated and decoded as TensorFlow's `Tensor::FromProto` decodes it, and
//! the response's typed outputs.

use proto::tensorflow::tensor_shape_proto::Dim;
use proto::tensorflow::{DataType, TensorProto, TensorShapeProto};

/// The largest input tensor, in bytes: what the largest message TensorFlow Serving accepts
/// (INT32_MAX bytes) can carry, also for a shape that typed values are broadcast to.
pub const MAX_INPUT_BYTES: u64 = i32::MAX as u64;

/// A typed field decoded as TensorFlow does: values beyond `n` are dropped, too few are
/// followed by repeats of the last (so one value fills the shape), none gives zeros.
fn fill_as_tensorflow(values: &[f32], n: usize) -> Vec<f32> {
    let Some(&last) = values.last() else { return vec![0.0; n] };
    let mut filled = values[..n.min(values.len())].to_vec();
    filled.resize(n, last);
    filled
}

/// Checks `tensor` against one example's shape `[h, w, c]` and returns `(floats, n)`.
/// Accepted shapes: `[n, h*w*c]`, `[n, h, w]` (when c = 1) and `[n, h, w, c]`.
pub fn decode_images(key: &str, tensor: &TensorProto, example: [usize; 3]) -> Result<(Vec<f32>, usize), String> {
    let [h, w, c] = example;
    let len = h * w * c;
    if tensor.dtype != DataType::DtFloat as i32 {
        let given = DataType::try_from(tensor.dtype).map_or_else(|_| format!("dtype {}", tensor.dtype), |d| d.as_str_name().to_string());
        return Err(format!("input '{key}': expects DT_FLOAT but {given} was provided"));
    }
    let dims: Vec<i64> = tensor.tensor_shape.as_ref().map(|s| s.dim.iter().map(|d| d.size).collect()).unwrap_or_default();
    let shape_ok = match dims.as_slice() {
        [n, l] => *n >= 1 && *l == len as i64,
        [n, hh, ww] => *n >= 1 && c == 1 && (*hh, *ww) == (h as i64, w as i64),
        [n, hh, ww, cc] => *n >= 1 && (*hh, *ww, *cc) == (h as i64, w as i64, c as i64),
        _ => false,
    };
    let accepted = if c == 1 { format!("[N,{len}], [N,{h},{w}] or [N,{h},{w},{c}]") } else { format!("[N,{len}] or [N,{h},{w},{c}]") };
    if !shape_ok {
        return Err(format!("input '{key}': shape {dims:?} is not one of {accepted} with N >= 1"));
    }
    let n = dims[0] as u64;
    let values = n
        .checked_mul(len as u64)
        .filter(|v| v.saturating_mul(4) <= MAX_INPUT_BYTES)
        .ok_or(format!("input '{key}': shape {dims:?} is too large (at most {MAX_INPUT_BYTES} bytes of float32)"))?;
    let values = values as usize;
    if !tensor.tensor_content.is_empty() {
        if tensor.tensor_content.len() != values * 4 {
            return Err(format!(
                "input '{key}': tensor_content holds {} bytes, shape {dims:?} needs {} ({values} float32 values)",
                tensor.tensor_content.len(),
                values * 4
            ));
        }
        let floats: Vec<f32> = tensor.tensor_content.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        check_finite(key, &floats, len)?;
        return Ok((floats, n as usize));
    }
    let floats = fill_as_tensorflow(&tensor.float_val, values);
    check_finite(key, &floats, len)?;
    Ok((floats, n as usize))
}

/// NaN and infinities are refused, naming the first: a model cannot answer them meaningfully.
fn check_finite(key: &str, values: &[f32], example_len: usize) -> Result<(), String> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(format!(
            "input '{key}': value {} at flat index {i} (example {}, element {}) is not a finite number",
            values[i],
            i / example_len.max(1),
            i % example_len.max(1)
        )),
    }
}

/// A served output is never NaN: finite inputs so large that the model overflows on them
/// (inputs are expected in [0, 1]) are refused, naming the first such example.
pub fn check_outputs(key: &str, probabilities: &[f32], classes: usize) -> Result<(), String> {
    match probabilities.iter().position(|p| !p.is_finite()) {
        None => Ok(()),
        Some(i) => Err(format!(
            "input '{key}': example {} overflows the model (its outputs are not finite numbers); inputs are expected in [0, 1]",
            i / classes.max(1)
        )),
    }
}

pub fn shape(dims: &[i64]) -> TensorShapeProto {
    TensorShapeProto { dim: dims.iter().map(|&size| Dim { size, name: String::new() }).collect(), unknown_rank: false }
}

/// `classes`: DT_INT64 `[n]` in `int64_val`.
pub fn classes(values: Vec<i64>) -> TensorProto {
    TensorProto {
        dtype: DataType::DtInt64 as i32,
        tensor_shape: Some(shape(&[values.len() as i64])),
        int64_val: values,
        ..Default::default()
    }
}

/// `probabilities`: DT_FLOAT `[n, classes]` in `float_val`.
pub fn probabilities(values: Vec<f32>, classes: usize) -> TensorProto {
    let n = (values.len() / classes.max(1)) as i64;
    TensorProto {
        dtype: DataType::DtFloat as i32,
        tensor_shape: Some(shape(&[n, classes as i64])),
        float_val: values,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(dims: &[i64], floats: usize) -> TensorProto {
        TensorProto { dtype: DataType::DtFloat as i32, tensor_shape: Some(shape(dims)), float_val: vec![0.5; floats], ..Default::default() }
    }

    #[test]
    fn accepts_the_three_shapes_and_both_encodings() {
        for dims in [vec![2, 784], vec![2, 28, 28], vec![2, 28, 28, 1]] {
            let (v, n) = decode_images("images", &tensor(&dims, 1568), [28, 28, 1]).unwrap();
            assert_eq!((v.len(), n), (1568, 2));
        }
        let content: Vec<u8> = (0..784).flat_map(|i| (i as f32 / 784.0).to_le_bytes()).collect();
        let t = TensorProto { tensor_content: content, ..tensor(&[1, 784], 0) };
        let (v, n) = decode_images("images", &t, [28, 28, 1]).unwrap();
        assert_eq!((v[392], n), (0.5, 1));
    }

    #[test]
    fn typed_values_fill_the_shape_as_in_tensorflow() {
        let one = TensorProto { float_val: vec![0.25], ..tensor(&[2, 784], 0) };
        assert_eq!(decode_images("images", &one, [28, 28, 1]).unwrap(), (vec![0.25; 1568], 2));
        let none = tensor(&[1, 28, 28], 0);
        assert_eq!(decode_images("images", &none, [28, 28, 1]).unwrap(), (vec![0.0; 784], 1));
        let few = TensorProto { float_val: vec![0.1, 0.2, 0.3], ..tensor(&[1, 784], 0) };
        let (v, _) = decode_images("images", &few, [28, 28, 1]).unwrap();
        assert_eq!((&v[..4], v[783], v.len()), (&[0.1, 0.2, 0.3, 0.3][..], 0.3, 784));
        let many = TensorProto { float_val: (0..800).map(|i| i as f32 / 800.0).collect(), ..tensor(&[1, 784], 0) };
        let (v, _) = decode_images("images", &many, [28, 28, 1]).unwrap();
        assert_eq!((v.len(), v[783]), (784, 783.0 / 800.0));
        // Broadcasting is bounded like a message: no shape allocates beyond INT32_MAX bytes.
        let huge = TensorProto { float_val: vec![0.5], ..tensor(&[1 << 20, 784], 0) };
        assert!(decode_images("images", &huge, [28, 28, 1]).unwrap_err().contains("too large"));
    }

    #[test]
    fn rejects_non_finite_values_naming_the_first() {
        let mut t = tensor(&[2, 784], 1568);
        t.float_val[790] = f32::NAN;
        t.float_val[900] = f32::INFINITY;
        let err = decode_images("images", &t, [28, 28, 1]).unwrap_err();
        assert!(err.contains("'images'") && err.contains("NaN at flat index 790 (example 1, element 6)"), "{err}");
        let content: Vec<u8> = (0..784).flat_map(|i| if i == 3 { f32::NEG_INFINITY } else { 0.5 }.to_le_bytes()).collect();
        let t = TensorProto { tensor_content: content, ..tensor(&[1, 784], 0) };
        let err = decode_images("images", &t, [28, 28, 1]).unwrap_err();
        assert!(err.contains("-inf at flat index 3"), "{err}");
        assert!(check_outputs("images", &[0.5, 0.5, f32::NAN, 0.5], 2).unwrap_err().contains("example 1 overflows"));
    }

    #[test]
    fn rejects_bad_dtype_shape_and_length_before_allocating() {
        let cases = [
            (TensorProto { dtype: DataType::DtDouble as i32, ..tensor(&[1, 784], 784) }, "DT_DOUBLE"),
            (tensor(&[1, 785], 785), "shape [1, 785]"),
            (tensor(&[0, 784], 0), "N >= 1"),
            (tensor(&[i64::MAX / 2, 784], 0), "too large"),
            (TensorProto { tensor_content: vec![0; 7], ..tensor(&[1, 784], 0) }, "tensor_content holds 7 bytes"),
        ];
        for (t, want) in cases {
            let err = decode_images("images", &t, [28, 28, 1]).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
    }
}
