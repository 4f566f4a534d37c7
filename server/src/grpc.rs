//! The gRPC services: `tensorflow.serving.PredictionService` (Predict, GetModelMetadata; the
//! tf.Example RPCs answer UNIMPLEMENTED) and `tensorflow.serving.ModelService` (GetModelStatus),
//! with TensorFlow Serving's status codes. Predict, Classify and Regress are counted and timed in
//! the metrics (entrypoint `GRPC`), as TensorFlow Serving counts them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use engine::export::{INPUT_NAME, SIGNATURE_NAME};
use prost::Message;
use proto::tensorflow::serving::model_service_server::ModelService;
use proto::tensorflow::serving::model_spec::VersionChoice;
use proto::tensorflow::serving::prediction_service_server::PredictionService;
use proto::tensorflow::serving::*;
use proto::tensorflow::{DataType, SignatureDef, TensorInfo, tensor_info};
use tonic::{Code, Request, Response, Status};

use crate::manager::{Loaded, ModelManager, PredictError};
use crate::tensors;

const OUTPUTS: [&str; 2] = ["classes", "probabilities"];

pub struct Services {
    pub manager: Arc<ModelManager>,
}

/// The version a spec asks for: its number, the version its label names (an unknown label is
/// INVALID_ARGUMENT, as in TensorFlow Serving), or None for the newest.
fn requested_version(manager: &ModelManager, spec: &ModelSpec) -> Result<Option<i64>, Status> {
    match &spec.version_choice {
        None => Ok(None),
        Some(VersionChoice::Version(v)) => Ok(Some(*v)),
        Some(VersionChoice::VersionLabel(label)) => manager.resolve_label(&spec.name, label).map(Some).map_err(Status::invalid_argument),
    }
}

/// The model and version a spec asks for; a missing spec is INVALID_ARGUMENT, as in
/// TensorFlow Serving.
fn lookup(manager: &ModelManager, spec: Option<&ModelSpec>) -> Result<(Arc<Loaded>, String), Status> {
    let spec = spec.ok_or_else(|| Status::invalid_argument("Missing ModelSpec"))?;
    let version = requested_version(manager, spec)?;
    let loaded = manager.resolve(&spec.name, version).map_err(Status::not_found)?;
    let signature = if spec.signature_name.is_empty() { SIGNATURE_NAME.to_string() } else { spec.signature_name.clone() };
    if signature != SIGNATURE_NAME {
        return Err(Status::failed_precondition(format!("Serving signature key \"{signature}\" not found.")));
    }
    Ok((loaded, signature))
}

fn response_spec(loaded: &Loaded, signature: String) -> ModelSpec {
    ModelSpec {
        name: loaded.servable.name.clone(),
        version_choice: Some(VersionChoice::Version(loaded.servable.version)),
        signature_name: signature,
    }
}

fn tensor_info(name: &str, dtype: DataType, dims: &[i64]) -> TensorInfo {
    TensorInfo {
        encoding: Some(tensor_info::Encoding::Name(format!("{name}:0"))),
        dtype: dtype as i32,
        tensor_shape: Some(tensors::shape(dims)),
    }
}

fn signature_def(loaded: &Loaded) -> SignatureDef {
    let [h, w, c] = loaded.servable.input_shape();
    let k = loaded.servable.num_classes() as i64;
    SignatureDef {
        inputs: HashMap::from([(INPUT_NAME.to_string(), tensor_info(INPUT_NAME, DataType::DtFloat, &[-1, h as i64, w as i64, c as i64]))]),
        outputs: HashMap::from([
            ("classes".to_string(), tensor_info("classes", DataType::DtInt64, &[-1])),
            ("probabilities".to_string(), tensor_info("probabilities", DataType::DtFloat, &[-1, k])),
        ]),
        method_name: loaded.servable.model.signature.method_name.clone(),
        defaults: HashMap::new(),
    }
}

/// A Predict request's inputs and output filter, checked against a model taking examples of
/// `example` (`[h, w, c]`): its images as floats and their count, or an INVALID_ARGUMENT message.
pub fn validate_inputs(request: &PredictRequest, example: [usize; 3]) -> Result<(Vec<f32>, usize), String> {
    if let Some(key) = request.inputs.keys().find(|k| k.as_str() != INPUT_NAME) {
        return Err(format!("input tensor alias not found in signature: {key}. Inputs expected to be in the set {{{INPUT_NAME}}}."));
    }
    let tensor = request
        .inputs
        .get(INPUT_NAME)
        .ok_or_else(|| format!("Missing input tensor alias: {INPUT_NAME}. Expected inputs: {{{INPUT_NAME}}}."))?;
    for (i, key) in request.output_filter.iter().enumerate() {
        if !OUTPUTS.contains(&key.as_str()) {
            return Err(format!(
                "output tensor alias not found in signature: {key}. Outputs expected to be in the set {{classes,probabilities}}."
            ));
        }
        if request.output_filter[..i].contains(key) {
            return Err(format!("duplicate output tensor alias: {key}"));
        }
    }
    tensors::decode_images(INPUT_NAME, tensor, example)
}

fn model_name(spec: Option<&ModelSpec>) -> &str {
    spec.map_or("", |s| s.name.as_str())
}

fn code_of<T>(result: &Result<T, Status>) -> Code {
    result.as_ref().map_or_else(Status::code, |_| Code::Ok)
}

impl Services {
    /// Predict, without counting it: the gRPC method and the REST handler count their own.
    pub async fn run_predict(&self, request: PredictRequest) -> Result<PredictResponse, Status> {
        let (loaded, signature) = lookup(&self.manager, request.model_spec.as_ref())?;
        let (images, n) = validate_inputs(&request, loaded.servable.input_shape()).map_err(Status::invalid_argument)?;
        self.manager.metrics().examples(&loaded.servable.name, n);
        let prediction = loaded.predict(images, n).await.map_err(|e| match e {
            PredictError::QueueFull(queued) => {
                Status::unavailable(format!("the batch queue is full ({queued} images waiting); retry later"))
            }
            PredictError::Engine(message) => Status::internal(message),
        })?;
        tensors::check_outputs(INPUT_NAME, &prediction.probabilities, loaded.servable.num_classes()).map_err(Status::invalid_argument)?;
        let wants = |name: &str| request.output_filter.is_empty() || request.output_filter.iter().any(|f| f == name);
        let mut outputs = HashMap::new();
        if wants("classes") {
            outputs.insert("classes".to_string(), tensors::classes(prediction.classes));
        }
        if wants("probabilities") {
            outputs.insert("probabilities".to_string(), tensors::probabilities(prediction.probabilities, loaded.servable.num_classes()));
        }
        Ok(PredictResponse { model_spec: Some(response_spec(&loaded, signature)), outputs })
    }

    fn count<T>(&self, model: &str, api: &str, start: Instant, result: Result<T, Status>) -> Result<Response<T>, Status> {
        self.manager.metrics().request(model, api, "GRPC", code_of(&result), start.elapsed());
        result.map(Response::new)
    }
}

#[tonic::async_trait]
impl PredictionService for Services {
    async fn classify(&self, request: Request<ClassificationRequest>) -> Result<Response<ClassificationResponse>, Status> {
        let start = Instant::now();
        let unsupported = Err(Status::unimplemented("Classify is not supported: this server serves the Predict signature only"));
        self.count(model_name(request.get_ref().model_spec.as_ref()), "Classify", start, unsupported)
    }

    async fn regress(&self, request: Request<RegressionRequest>) -> Result<Response<RegressionResponse>, Status> {
        let start = Instant::now();
        let unsupported = Err(Status::unimplemented("Regress is not supported: this server serves the Predict signature only"));
        self.count(model_name(request.get_ref().model_spec.as_ref()), "Regress", start, unsupported)
    }

    async fn multi_inference(&self, _: Request<MultiInferenceRequest>) -> Result<Response<MultiInferenceResponse>, Status> {
        Err(Status::unimplemented("MultiInference is not supported: this server serves the Predict signature only"))
    }

    async fn predict(&self, request: Request<PredictRequest>) -> Result<Response<PredictResponse>, Status> {
        let start = Instant::now();
        let request = request.into_inner();
        let model = model_name(request.model_spec.as_ref()).to_string();
        let result = self.run_predict(request).await;
        self.count(&model, "Predict", start, result)
    }

    async fn get_model_metadata(&self, request: Request<GetModelMetadataRequest>) -> Result<Response<GetModelMetadataResponse>, Status> {
        let request = request.into_inner();
        let (loaded, _) = lookup(&self.manager, request.model_spec.as_ref())?;
        if request.metadata_field.is_empty() {
            return Err(Status::invalid_argument("GetModelMetadataRequest must specify at least one metadata_field"));
        }
        if let Some(field) = request.metadata_field.iter().find(|f| f.as_str() != "signature_def") {
            return Err(Status::invalid_argument(format!("Metadata field {field} is not supported")));
        }
        let map = SignatureDefMap { signature_def: HashMap::from([(SIGNATURE_NAME.to_string(), signature_def(&loaded))]) };
        let any = prost_types::Any { type_url: proto::SIGNATURE_DEF_MAP_TYPE_URL.to_string(), value: map.encode_to_vec() };
        let spec = ModelSpec { signature_name: String::new(), ..response_spec(&loaded, String::new()) };
        Ok(Response::new(GetModelMetadataResponse {
            model_spec: Some(spec),
            metadata: HashMap::from([("signature_def".to_string(), any)]),
        }))
    }
}

#[tonic::async_trait]
impl ModelService for Services {
    async fn get_model_status(&self, request: Request<GetModelStatusRequest>) -> Result<Response<GetModelStatusResponse>, Status> {
        let spec = request.into_inner().model_spec.ok_or_else(|| Status::invalid_argument("Missing ModelSpec"))?;
        let version = requested_version(&self.manager, &spec)?;
        let statuses = self.manager.status(&spec.name, version).map_err(Status::not_found)?;
        let model_version_status = statuses
            .into_iter()
            .map(|s| ModelVersionStatus {
                version: s.version,
                state: s.state as i32,
                status: Some(StatusProto { error_code: s.code as i32, error_message: s.message }),
            })
            .collect();
        Ok(Response::new(GetModelStatusResponse { model_version_status }))
    }
}
