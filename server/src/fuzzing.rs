//! The bodies of the server's fuzz targets (`fuzz/fuzz_targets/`), kept here so that the tests
//! replay the kept corpora (`fuzz/corpus/`) through exactly what the fuzzer runs. Each takes
//! arbitrary bytes and must return without panicking, whatever they hold.

use std::path::Path;

use prost::Message;
use proto::tensorflow::serving::PredictRequest;

/// One MNIST example, `[h, w, c]`.
const EXAMPLE: [usize; 3] = [28, 28, 1];

/// A Predict request as it comes off the wire: protobuf decoding, then the server's checks of
/// its inputs, shapes, lengths and values.
pub fn predict_request(data: &[u8]) {
    if let Ok(request) = PredictRequest::decode(data)
        && let Ok((images, n)) = crate::grpc::validate_inputs(&request, EXAMPLE)
    {
        assert_eq!(images.len(), n * 784, "validated images are whole examples");
        assert!(images.iter().all(|v| v.is_finite()), "validated images are finite");
    }
}

/// A REST predict body: JSON (with TensorFlow Serving's NaN / Infinity literals) to the images
/// tensor, then the same checks as gRPC.
pub fn rest_body(data: &[u8]) {
    if let Ok(body) = crate::rest::parse_predict_body(data)
        && let Ok((images, n)) = crate::tensors::decode_images("images", &body.tensor, EXAMPLE)
    {
        assert_eq!(images.len(), n * 784, "validated images are whole examples");
    }
}

/// The text-format model config file (`--model_config_file`).
pub fn model_config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::model_config::parse_model_config(text, Path::new("/models/models.config"));
    }
}
