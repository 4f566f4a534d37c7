//! TensorFlow Serving's REST API, as a translation to and from the gRPC services (so both
//! answer alike):
//!   GET  /v1/models/NAME[/versions/V]            model status
//!   GET  /v1/models/NAME[/versions/V]/metadata   signature metadata
//!   POST /v1/models/NAME[/versions/V]:predict    {"instances": [...]} (row) or {"inputs": ...} (columnar)
//! Errors are `{"error": "..."}` with TensorFlow Serving's HTTP codes. Bodies may use
//! TensorFlow Serving's `NaN` / `Infinity` / `-Infinity` literals (refused as inputs, by index,
//! like any non-finite value). A request past `--rest_api_timeout_in_ms` answers 504.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use engine::export::INPUT_NAME;
use prost::Message;
use proto::tensorflow::serving::model_service_server::ModelService;
use proto::tensorflow::serving::model_spec::VersionChoice;
use proto::tensorflow::serving::model_version_status::State as VersionState;
use proto::tensorflow::serving::prediction_service_server::PredictionService;
use proto::tensorflow::serving::*;
use proto::tensorflow::{DataType, TensorInfo, TensorProto, tensor_info};
use serde_json::{Value, json};
use tonic::{Code, Request};

use crate::grpc::Services;

#[derive(Clone)]
pub struct Rest {
    services: Arc<Services>,
    timeout: Duration,
}

pub fn router(services: Arc<Services>, timeout: Duration) -> Router {
    // TensorFlow Serving takes bodies of any size (axum's default refuses beyond 2 MiB).
    Router::new()
        .route("/v1/models/{*path}", get(get_model).post(post_model))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(Rest { services, timeout })
}

/// Runs `work` within the REST deadline; past it the answer is 504 and the work is dropped (a
/// batched request not yet run is then never run).
async fn with_deadline(timeout: Duration, work: impl Future<Output = Response>) -> Response {
    match tokio::time::timeout(timeout, work).await {
        Ok(response) => response,
        Err(_) => {
            error(StatusCode::GATEWAY_TIMEOUT, format!("Request timed out after {} ms (--rest_api_timeout_in_ms)", timeout.as_millis()))
        }
    }
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, axum::Json(json!({ "error": message.into() }))).into_response()
}

fn from_status(s: tonic::Status) -> Response {
    let code = match s.code() {
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(code, s.message())
}

/// `NAME[/versions/V][/labels/L]` -> (name, version, rest after them).
fn parse_target(path: &str) -> Result<(String, Option<i64>, &str), (StatusCode, String)> {
    let mut parts = path.splitn(2, '/');
    let name = parts.next().unwrap_or_default();
    let mut rest = parts.next().unwrap_or_default();
    let mut version = None;
    if let Some(after) = rest.strip_prefix("versions/") {
        let (v, tail) = after.split_once('/').unwrap_or((after, ""));
        version = Some(v.parse::<i64>().map_err(|_| (StatusCode::BAD_REQUEST, format!("version '{v}' is not a number")))?);
        rest = tail;
    } else if rest.starts_with("labels/") {
        return Err((StatusCode::NOT_FOUND, "version labels are not supported (this server serves numeric versions only)".into()));
    }
    if name.is_empty() {
        return Err((StatusCode::NOT_FOUND, "no model name in the URL".into()));
    }
    Ok((name.to_string(), version, rest))
}

fn spec(name: &str, version: Option<i64>, signature: &str) -> ModelSpec {
    ModelSpec { name: name.to_string(), version_choice: version.map(VersionChoice::Version), signature_name: signature.to_string() }
}

fn tensor_info_json(t: &TensorInfo) -> Value {
    let name = match &t.encoding {
        Some(tensor_info::Encoding::Name(n)) => n.clone(),
        None => String::new(),
    };
    let dims: Vec<Value> =
        t.tensor_shape.iter().flat_map(|s| &s.dim).map(|d| json!({"size": d.size.to_string(), "name": d.name})).collect();
    let dtype = DataType::try_from(t.dtype).map_or("DT_INVALID", |d| d.as_str_name());
    json!({"dtype": dtype, "tensor_shape": {"dim": dims, "unknown_rank": false}, "name": name})
}

async fn get_model(State(rest): State<Rest>, Path(path): Path<String>) -> Response {
    with_deadline(rest.timeout, model_resource(rest.services, path)).await
}

fn version_status_json(s: &ModelVersionStatus) -> Value {
    let state = VersionState::try_from(s.state).map_or("UNKNOWN", |s| s.as_str_name());
    let (code, message) = s.status.as_ref().map_or((0, ""), |st| (st.error_code, st.error_message.as_str()));
    let code = proto::tensorflow::error::Code::try_from(code).map_or("UNKNOWN", |c| c.as_str_name());
    json!({"version": s.version.to_string(), "state": state, "status": {"error_code": code, "error_message": message}})
}

async fn model_resource(services: Arc<Services>, path: String) -> Response {
    let (name, version, rest) = match parse_target(&path) {
        Ok(t) => t,
        Err((code, message)) => return error(code, message),
    };
    match rest {
        "" => {
            let request = Request::new(GetModelStatusRequest { model_spec: Some(spec(&name, version, "")) });
            match services.get_model_status(request).await {
                Ok(r) => {
                    let versions: Vec<Value> = r.into_inner().model_version_status.iter().map(version_status_json).collect();
                    axum::Json(json!({ "model_version_status": versions })).into_response()
                }
                Err(s) => from_status(s),
            }
        }
        "metadata" => {
            let request =
                GetModelMetadataRequest { model_spec: Some(spec(&name, version, "")), metadata_field: vec!["signature_def".into()] };
            match services.get_model_metadata(Request::new(request)).await {
                Ok(r) => {
                    let r = r.into_inner();
                    let map = r
                        .metadata
                        .get("signature_def")
                        .and_then(|any| SignatureDefMap::decode(any.value.as_slice()).ok())
                        .unwrap_or_default();
                    let signatures: serde_json::Map<String, Value> = map
                        .signature_def
                        .iter()
                        .map(|(key, sig)| {
                            let inputs: serde_json::Map<String, Value> =
                                sig.inputs.iter().map(|(k, t)| (k.clone(), tensor_info_json(t))).collect();
                            let outputs: serde_json::Map<String, Value> =
                                sig.outputs.iter().map(|(k, t)| (k.clone(), tensor_info_json(t))).collect();
                            (key.clone(), json!({"inputs": inputs, "outputs": outputs, "method_name": sig.method_name}))
                        })
                        .collect();
                    let served = match r.model_spec.and_then(|s| s.version_choice) {
                        Some(VersionChoice::Version(v)) => v.to_string(),
                        _ => String::new(),
                    };
                    axum::Json(json!({
                        "model_spec": {"name": name, "signature_name": "", "version": served},
                        "metadata": {"signature_def": {"signature_def": signatures}},
                    }))
                    .into_response()
                }
                Err(s) => from_status(s),
            }
        }
        other => error(StatusCode::NOT_FOUND, format!("unknown resource '{other}' (expected nothing, 'metadata' or ':predict')")),
    }
}

/// The dimensions of a nested JSON array of numbers, and its numbers in row-major order.
/// Numbers must all sit at the same depth: once one is seen, no list may open a deeper level.
fn flatten(v: &Value, dims: &mut Vec<i64>, depth: usize, out: &mut Vec<f32>) -> Result<(), String> {
    match v {
        Value::Array(items) => {
            if dims.len() == depth {
                if !out.is_empty() {
                    return Err("ragged nested list: a list where a number was expected".into());
                }
                dims.push(items.len() as i64);
            } else if dims[depth] != items.len() as i64 {
                return Err(format!("ragged nested list: {} items where {} were expected", items.len(), dims[depth]));
            }
            items.iter().try_for_each(|item| flatten(item, dims, depth + 1, out))
        }
        Value::Number(_) | Value::String(_) if dims.len() != depth => Err("ragged nested list: a number where a list was expected".into()),
        Value::Number(n) => {
            out.push(n.as_f64().unwrap_or(f64::NAN) as f32);
            Ok(())
        }
        Value::String(s) if s.starts_with(NON_FINITE_MARK) => {
            out.push(match &s[NON_FINITE_MARK.len()..] {
                "NaN" => f32::NAN,
                literal if literal.starts_with('-') => f32::NEG_INFINITY,
                _ => f32::INFINITY,
            });
            Ok(())
        }
        other => Err(format!("expected numbers, found {other}")),
    }
}

/// The `images` tensor of a predict body: row format (`instances`, each an image or
/// `{"images": image}`) or columnar (`inputs`, the batch or `{"images": batch}`).
fn input_tensor(body: &Value) -> Result<(TensorProto, bool), String> {
    let named = |v: &Value| -> Result<Value, String> {
        match v {
            Value::Object(map) => {
                if let Some(key) = map.keys().find(|k| k.as_str() != INPUT_NAME) {
                    return Err(format!(
                        "input tensor alias not found in signature: {key}. Inputs expected to be in the set {{{INPUT_NAME}}}."
                    ));
                }
                map.get(INPUT_NAME).cloned().ok_or(format!("missing input '{INPUT_NAME}'"))
            }
            other => Ok(other.clone()),
        }
    };
    let (batch, row) = match (body.get("instances"), body.get("inputs")) {
        (Some(Value::Array(instances)), None) => (Value::Array(instances.iter().map(named).collect::<Result<_, _>>()?), true),
        (None, Some(inputs)) => (named(inputs)?, false),
        (Some(_), Some(_)) => return Err("give either \"instances\" or \"inputs\", not both".into()),
        (Some(_), None) => return Err("\"instances\" must be a list".into()),
        (None, None) => return Err("missing \"instances\" or \"inputs\"".into()),
    };
    let (mut dims, mut values) = (Vec::new(), Vec::new());
    flatten(&batch, &mut dims, 0, &mut values)?;
    let tensor = TensorProto {
        dtype: DataType::DtFloat as i32,
        tensor_shape: Some(crate::tensors::shape(&dims)),
        float_val: values,
        ..Default::default()
    };
    Ok((tensor, row))
}

async fn post_model(State(rest): State<Rest>, Path(path): Path<String>, body: Bytes) -> Response {
    with_deadline(rest.timeout, predict(rest.services, path, body)).await
}

/// Marks a `NaN` / `Infinity` / `-Infinity` literal rewritten as a JSON string; NUL cannot
/// start a string a client means as data here (strings are not accepted as pixels).
const NON_FINITE_MARK: &str = "\u{0}non-finite:";

/// `body` with TensorFlow Serving's non-finite literals (outside strings) rewritten as marked
/// strings that serde_json parses; borrowed when there are none.
fn rewrite_non_finite_literals(body: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    const LITERALS: [&[u8]; 5] = [b"-Infinity", b"Infinity", b"-Inf", b"Inf", b"NaN"];
    let (mut out, mut copied, mut in_string, mut escaped) = (None::<Vec<u8>>, 0, false, false);
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        let boundary = |end: usize| body.get(end).is_none_or(|c| !c.is_ascii_alphanumeric());
        let previous_ok = i == 0 || !body[i - 1].is_ascii_alphanumeric();
        if let Some(lit) = LITERALS.iter().find(|l| previous_ok && body[i..].starts_with(l) && boundary(i + l.len())) {
            let out = out.get_or_insert_with(|| Vec::with_capacity(body.len() + 64));
            out.extend_from_slice(&body[copied..i]);
            out.extend_from_slice(b"\"\\u0000non-finite:");
            out.extend_from_slice(lit);
            out.push(b'"');
            i += lit.len();
            copied = i;
            continue;
        }
        i += 1;
    }
    match out {
        None => std::borrow::Cow::Borrowed(body),
        Some(mut out) => {
            out.extend_from_slice(&body[copied..]);
            std::borrow::Cow::Owned(out)
        }
    }
}

/// A predict body, parsed.
pub struct PredictBody {
    /// The `images` tensor.
    pub tensor: TensorProto,
    /// Row format (`instances`) rather than columnar (`inputs`).
    pub row: bool,
    pub signature: String,
}

/// Parses a predict body (JSON with TensorFlow Serving's non-finite literals); errors are 400
/// messages.
pub fn parse_predict_body(body: &[u8]) -> Result<PredictBody, String> {
    let body: Value = serde_json::from_slice(&rewrite_non_finite_literals(body)).map_err(|e| format!("JSON body: {e}"))?;
    let (tensor, row) = input_tensor(&body)?;
    let signature = body.get("signature_name").and_then(Value::as_str).unwrap_or_default().to_string();
    Ok(PredictBody { tensor, row, signature })
}

async fn predict(services: Arc<Services>, path: String, body: Bytes) -> Response {
    let Some(target) = path.strip_suffix(":predict") else {
        let verb = path.rsplit_once(':').map_or("", |(_, v)| v);
        return error(StatusCode::NOT_IMPLEMENTED, format!("'{verb}' is not supported: POST .../MODEL[/versions/V]:predict"));
    };
    let (name, version, rest) = match parse_target(target) {
        Ok(t) => t,
        Err((code, message)) => return error(code, message),
    };
    if !rest.is_empty() {
        return error(StatusCode::NOT_FOUND, format!("unknown resource '{rest}'"));
    }
    let PredictBody { tensor, row, signature } = match parse_predict_body(&body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let signature = signature.as_str();
    let request = PredictRequest {
        model_spec: Some(spec(&name, version, signature)),
        inputs: [(INPUT_NAME.to_string(), tensor)].into(),
        output_filter: vec![],
    };
    let response = match services.predict(Request::new(request)).await {
        Ok(r) => r.into_inner(),
        Err(s) => return from_status(s),
    };
    let classes = response.outputs.get("classes").map(|t| t.int64_val.clone()).unwrap_or_default();
    let probs = response.outputs.get("probabilities").map(|t| t.float_val.clone()).unwrap_or_default();
    let k = probs.len() / classes.len().max(1);
    let rows: Vec<&[f32]> = probs.chunks(k.max(1)).collect();
    if row {
        let predictions: Vec<Value> = classes.iter().zip(&rows).map(|(c, p)| json!({"classes": c, "probabilities": p})).collect();
        axum::Json(json!({ "predictions": predictions })).into_response()
    } else {
        axum::Json(json!({ "outputs": {"classes": classes, "probabilities": rows} })).into_response()
    }
}
