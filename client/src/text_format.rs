//! A PredictResponse in protobuf text format, as TensorFlow Serving's Python client prints it
//! (`print(response)`): fields in field-number order, map entries sorted by key.

use std::fmt::Write;

use proto::tensorflow::serving::PredictResponse;
use proto::tensorflow::serving::model_spec::VersionChoice;
use proto::tensorflow::{DataType, TensorProto};

/// Python's shortest round-trip form of a float32 (`1e-05`, `0.25`, `3.0`).
fn float(v: f32) -> String {
    if v == 0.0 || (1e-4..1e16).contains(&v.abs()) {
        let s = format!("{v}");
        if s.contains('.') || s.contains("inf") || s.contains("NaN") { s } else { format!("{s}.0") }
    } else {
        let s = format!("{v:e}");
        let (mantissa, exp) = s.split_once('e').expect("exponent form");
        let exp: i32 = exp.parse().expect("exponent");
        format!("{mantissa}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    }
}

fn tensor(out: &mut String, t: &TensorProto, indent: &str) {
    let dtype = DataType::try_from(t.dtype).map_or_else(|_| t.dtype.to_string(), |d| d.as_str_name().to_string());
    let _ = writeln!(out, "{indent}dtype: {dtype}");
    if let Some(shape) = &t.tensor_shape {
        let _ = writeln!(out, "{indent}tensor_shape {{");
        for d in &shape.dim {
            let _ = writeln!(out, "{indent}  dim {{\n{indent}    size: {}\n{indent}  }}", d.size);
        }
        let _ = writeln!(out, "{indent}}}");
    }
    for v in &t.float_val {
        let _ = writeln!(out, "{indent}float_val: {}", float(*v));
    }
    for v in &t.int64_val {
        let _ = writeln!(out, "{indent}int64_val: {v}");
    }
}

pub fn predict_response(r: &PredictResponse) -> String {
    let mut out = String::new();
    let mut keys: Vec<&String> = r.outputs.keys().collect();
    keys.sort();
    for key in keys {
        let _ = writeln!(out, "outputs {{\n  key: \"{key}\"\n  value {{");
        tensor(&mut out, &r.outputs[key], "    ");
        let _ = writeln!(out, "  }}\n}}");
    }
    if let Some(spec) = &r.model_spec {
        let _ = writeln!(out, "model_spec {{\n  name: \"{}\"", spec.name);
        match &spec.version_choice {
            Some(VersionChoice::Version(v)) => {
                let _ = writeln!(out, "  version {{\n    value: {v}\n  }}");
            }
            Some(VersionChoice::VersionLabel(l)) => {
                let _ = writeln!(out, "  version_label: \"{l}\"");
            }
            None => {}
        }
        let _ = writeln!(out, "  signature_name: \"{}\"\n}}", spec.signature_name);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_python() {
        assert_eq!(float(0.25), "0.25");
        assert_eq!(float(3.0), "3.0");
        assert_eq!(float(1e-5), "1e-05");
        assert_eq!(float(2.5e-7), "2.5e-07");
        assert_eq!(float(0.0), "0.0");
    }
}
