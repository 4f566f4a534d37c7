//! A PredictResponse in protobuf text format, as TensorFlow Serving's Python client prints it
//! (`print(response)`): fields in field-number order, map entries sorted by key.

use std::fmt::Write;

use proto::tensorflow::serving::PredictResponse;
use proto::tensorflow::serving::model_spec::VersionChoice;
use proto::tensorflow::{DataType, TensorProto};

/// Python's shortest round-trip form of a float (`1e-05`, `0.25`, `3.0`, `nan`, `-inf`), given
/// Rust's shortest round-trip digits of it.
fn python_float(v: f64, shortest: impl Fn(bool) -> String) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    if v == 0.0 || (1e-4..1e16).contains(&v.abs()) {
        let s = shortest(false);
        if s.contains('.') { s } else { format!("{s}.0") }
    } else {
        let s = shortest(true);
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        format!("{mantissa}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    }
}

fn float(v: f32) -> String {
    python_float(v as f64, |exponent| if exponent { format!("{v:e}") } else { format!("{v}") })
}

fn double(v: f64) -> String {
    python_float(v, |exponent| if exponent { format!("{v:e}") } else { format!("{v}") })
}

/// A string or bytes field as protobuf's text format writes it (C escapes; bytes outside
/// printable ASCII as three octal digits), between double quotes.
fn quoted(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for &b in bytes {
        match b {
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b'"' => out.push_str("\\\""),
            b'\'' => out.push_str("\\'"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\{b:03o}");
            }
        }
    }
    out.push('"');
    out
}

fn tensor(out: &mut String, t: &TensorProto, indent: &str) {
    let dtype = DataType::try_from(t.dtype).map_or_else(|_| t.dtype.to_string(), |d| d.as_str_name().to_string());
    let _ = writeln!(out, "{indent}dtype: {dtype}");
    if let Some(shape) = &t.tensor_shape {
        let _ = writeln!(out, "{indent}tensor_shape {{");
        for d in &shape.dim {
            let _ = writeln!(out, "{indent}  dim {{\n{indent}    size: {}", d.size);
            if !d.name.is_empty() {
                let _ = writeln!(out, "{indent}    name: {}", quoted(d.name.as_bytes()));
            }
            let _ = writeln!(out, "{indent}  }}");
        }
        if shape.unknown_rank {
            let _ = writeln!(out, "{indent}  unknown_rank: true");
        }
        let _ = writeln!(out, "{indent}}}");
    }
    if t.version_number != 0 {
        let _ = writeln!(out, "{indent}version_number: {}", t.version_number);
    }
    if !t.tensor_content.is_empty() {
        let _ = writeln!(out, "{indent}tensor_content: {}", quoted(&t.tensor_content));
    }
    for v in &t.float_val {
        let _ = writeln!(out, "{indent}float_val: {}", float(*v));
    }
    for v in &t.double_val {
        let _ = writeln!(out, "{indent}double_val: {}", double(*v));
    }
    for v in &t.int_val {
        let _ = writeln!(out, "{indent}int_val: {v}");
    }
    for v in &t.string_val {
        let _ = writeln!(out, "{indent}string_val: {}", quoted(v));
    }
    for v in &t.int64_val {
        let _ = writeln!(out, "{indent}int64_val: {v}");
    }
    for v in &t.bool_val {
        let _ = writeln!(out, "{indent}bool_val: {v}");
    }
}

pub fn predict_response(r: &PredictResponse) -> String {
    let mut out = String::new();
    let mut keys: Vec<&String> = r.outputs.keys().collect();
    keys.sort();
    for key in keys {
        let _ = writeln!(out, "outputs {{\n  key: {}\n  value {{", quoted(key.as_bytes()));
        tensor(&mut out, &r.outputs[key], "    ");
        let _ = writeln!(out, "  }}\n}}");
    }
    if let Some(spec) = &r.model_spec {
        let _ = writeln!(out, "model_spec {{\n  name: {}", quoted(spec.name.as_bytes()));
        match &spec.version_choice {
            Some(VersionChoice::Version(v)) => {
                let _ = writeln!(out, "  version {{\n    value: {v}\n  }}");
            }
            Some(VersionChoice::VersionLabel(l)) => {
                let _ = writeln!(out, "  version_label: {}", quoted(l.as_bytes()));
            }
            None => {}
        }
        let _ = writeln!(out, "  signature_name: {}\n}}", quoted(spec.signature_name.as_bytes()));
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
        assert_eq!(float(f32::NAN), "nan");
        assert_eq!(float(f32::INFINITY), "inf");
        assert_eq!(float(f32::NEG_INFINITY), "-inf");
        assert_eq!(float(-0.0), "-0.0");
        assert_eq!(float(f32::MAX), "3.4028235e+38");
        assert_eq!(float(f32::MIN_POSITIVE / 8.0), "1.469368e-39");
        assert_eq!(double(1e300), "1e+300");
        assert_eq!(double(0.1), "0.1");
    }

    #[test]
    fn strings_are_escaped_like_protobuf() {
        assert_eq!(quoted(b"mnist"), "\"mnist\"");
        assert_eq!(quoted("a\"b\\c'\n\t".as_bytes()), r#""a\"b\\c\'\n\t""#);
        assert_eq!(quoted("é\u{0}".as_bytes()), r#""\303\251\000""#);
    }

    #[test]
    fn any_answer_prints_without_panicking() {
        use proto::tensorflow::serving::ModelSpec;
        let odd = TensorProto {
            dtype: 999,
            float_val: vec![f32::NAN, f32::INFINITY, -f32::INFINITY, f32::MIN_POSITIVE, f32::MAX, -0.0],
            double_val: vec![f64::NAN, 1e-320],
            string_val: vec![vec![0, 255, b'"'], "ü".into()],
            tensor_content: vec![1, 2, 200],
            bool_val: vec![true],
            ..Default::default()
        };
        let response = PredictResponse {
            outputs: [("probabilities\n\"x".to_string(), odd), ("classes".to_string(), TensorProto::default())].into(),
            model_spec: Some(ModelSpec {
                name: "m\"\\".into(),
                version_choice: Some(VersionChoice::VersionLabel("é".into())),
                signature_name: String::new(),
            }),
        };
        let text = predict_response(&response);
        for want in [
            "float_val: nan",
            "float_val: inf",
            "float_val: -inf",
            "double_val: nan",
            r#"string_val: "\000\377\"""#,
            "dtype: 999",
            r#"name: "m\"\\""#,
            r#"version_label: "\303\251""#,
            r#"key: "probabilities\n\"x""#,
        ] {
            assert!(text.contains(want), "{want} in:\n{text}");
        }
    }
}
