//! TensorFlow Serving's REST API, as a translation to and from the gRPC services (so both
//! answer alike):
//!   GET  /v1/models/NAME[/versions/V | /labels/L]            model status
//!   GET  /v1/models/NAME[/versions/V | /labels/L]/metadata   signature metadata
//!   POST /v1/models/NAME[/versions/V | /labels/L]:predict    {"instances": [...]} (row) or {"inputs": ...} (columnar)
//! Ours, for the draw-a-digit page (web.rs):
//!   GET  /v1/models/NAME[/versions/V | /labels/L]/webgpu_plan?batch=N   the version's WebGPU inference plan
//!   GET  /v1/models/NAME[/versions/V | /labels/L]/webgpu_weights        the weights blob the plan reads
//!   GET  /, /web/FILE, /page/models                                     the page, its files, the models it offers
//! Any other path under `/v1/` is 400 `Malformed request: METHOD PATH`, as there. Errors are
//! `{"error": "..."}` with TensorFlow Serving's HTTP codes. Bodies have no size limit; gzip
//! bodies (`Content-Encoding: gzip`) are inflated, up to [`MAX_INFLATED_BYTES`]. Bodies may use
//! TensorFlow Serving's `NaN` / `Infinity` / `-Infinity` literals (refused as inputs, by index,
//! like any non-finite value). A request past `--rest_api_timeout_in_ms` answers 504. Every
//! `/v1/` request is counted in the metrics (entrypoint `REST`), which are served at the
//! monitoring config's path.

use std::future::Future;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use engine::export::INPUT_NAME;
use prost::Message;
use proto::tensorflow::serving::model_service_server::ModelService;
use proto::tensorflow::serving::model_spec::VersionChoice;
use proto::tensorflow::serving::model_version_status::State as VersionState;
use proto::tensorflow::serving::prediction_service_server::PredictionService;
use proto::tensorflow::serving::*;
use proto::tensorflow::{DataType, TensorInfo, TensorProto, tensor_info};
use serde_json::{Value, json};
use tonic::{Code, Request, Status};

use crate::grpc::Services;

/// The most a gzip body may inflate to, as in TensorFlow Serving (100 MiB).
pub const MAX_INFLATED_BYTES: u64 = 100 << 20;

#[derive(Clone)]
pub struct Rest {
    services: Arc<Services>,
    timeout: Duration,
    metrics_path: Option<Arc<str>>,
}

/// The REST API; with `metrics_path`, Prometheus metrics are served there (any method); with
/// `cors_origin`, that origin may call it from a browser (CORS preflights answered).
pub fn router(services: Arc<Services>, timeout: Duration, metrics_path: Option<String>, cors_origin: Option<HeaderValue>) -> Router {
    // TensorFlow Serving takes bodies of any size (axum's default refuses beyond 2 MiB).
    let router = Router::new().fallback(dispatch).layer(axum::extract::DefaultBodyLimit::disable()).with_state(Rest {
        services,
        timeout,
        metrics_path: metrics_path.map(Into::into),
    });
    match cors_origin {
        None => router,
        Some(origin) => router.layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(origin)
                .allow_methods([Method::GET, Method::POST])
                .allow_headers([header::CONTENT_TYPE, header::CONTENT_ENCODING]),
        ),
    }
}

/// Which version a URL names.
#[derive(Debug, PartialEq, Eq)]
enum VersionRef {
    Newest,
    Number(i64),
    Label(String),
}

#[derive(Debug, PartialEq, Eq)]
enum Resource {
    Status,
    Metadata,
    Predict,
    /// `/webgpu_plan?batch=N`, `/webgpu_weights` (ours, for the page).
    WebgpuPlan,
    WebgpuWeights,
    /// `:classify` / `:regress`: tf.Example APIs this server does not serve.
    Unsupported(&'static str),
}

#[derive(Debug, PartialEq, Eq)]
struct Route {
    model: String,
    version: VersionRef,
    resource: Resource,
}

impl Resource {
    /// The `API` label of the request latency metric, as TensorFlow Serving's REST handler sets it.
    fn api(&self) -> &'static str {
        match self {
            Resource::Status | Resource::Metadata | Resource::WebgpuPlan | Resource::WebgpuWeights => "",
            Resource::Predict => "predict",
            Resource::Unsupported(api) => api,
        }
    }
}

/// Splits `s` at the first '/' or ':'.
fn segment(s: &str) -> (&str, &str) {
    s.split_at(s.find(['/', ':']).unwrap_or(s.len()))
}

/// TensorFlow Serving's URL grammar; anything else under /v1/ is a malformed request.
fn parse_route(method: &Method, path: &str) -> Result<Route, String> {
    let malformed = || format!("Malformed request: {method} {path}");
    let rest = path.strip_prefix("/v1/models").ok_or_else(malformed)?;
    if (rest.is_empty() || rest == "/") && method == Method::GET {
        return Err("Missing model name in request.".into());
    }
    let (model, mut rest) = segment(rest.strip_prefix('/').ok_or_else(malformed)?);
    if model.is_empty() {
        return Err(malformed());
    }
    let mut version = VersionRef::Newest;
    if let Some(after) = rest.strip_prefix("/versions/") {
        let (number, tail) = segment(after);
        let number = Some(number).filter(|n| n.bytes().all(|b| b.is_ascii_digit())).and_then(|n| n.parse().ok());
        version = VersionRef::Number(number.ok_or_else(malformed)?);
        rest = tail;
    } else if let Some(after) = rest.strip_prefix("/labels/") {
        let (label, tail) = segment(after);
        if label.is_empty() {
            return Err(malformed());
        }
        version = VersionRef::Label(label.to_string());
        rest = tail;
    }
    let resource = match (method.as_str(), rest) {
        ("GET", "") => Resource::Status,
        ("GET", "/metadata") => Resource::Metadata,
        ("GET", "/webgpu_plan") => Resource::WebgpuPlan,
        ("GET", "/webgpu_weights") => Resource::WebgpuWeights,
        ("POST", ":predict") => Resource::Predict,
        ("POST", ":classify") => Resource::Unsupported("classify"),
        ("POST", ":regress") => Resource::Unsupported("regress"),
        _ => return Err(malformed()),
    };
    Ok(Route { model: model.to_string(), version, resource })
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// TensorFlow Serving's HTTP code for a status code.
fn http_code(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Cancelled => StatusCode::from_u16(499).expect("499 is a valid code"),
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// Runs `work` within the REST deadline; past it the answer is DEADLINE_EXCEEDED (504) and the
/// work is dropped (a batched request not yet run is then never run).
async fn with_deadline<T>(timeout: Duration, work: impl Future<Output = Result<T, Status>>) -> Result<T, Status> {
    tokio::time::timeout(timeout, work).await.unwrap_or_else(|_| {
        Err(Status::deadline_exceeded(format!("Request timed out after {} ms (--rest_api_timeout_in_ms)", timeout.as_millis())))
    })
}

async fn dispatch(State(rest): State<Rest>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path();
    if rest.metrics_path.as_deref() == Some(path) {
        let text = rest.services.manager.version_gauges(|versions| rest.services.manager.metrics().render(versions));
        return ([(header::CONTENT_TYPE, "text/plain")], text).into_response();
    }
    if !path.starts_with("/v1/") && path != "/v1" {
        if method == Method::GET {
            if let Some((kind, bytes)) = crate::web::asset(path) {
                return ([(header::CONTENT_TYPE, kind)], bytes).into_response();
            }
            if path == "/page/models" {
                return axum::Json(page_models(&rest.services)).into_response();
            }
        }
        return error(StatusCode::NOT_FOUND, format!("Not found: {path} (the REST API lies under /v1/)"));
    }
    let start = Instant::now();
    let (model, api, result) = match parse_route(&method, path) {
        Err(message) => (String::new(), "", Err(Status::invalid_argument(message))),
        Ok(route) => {
            let api = route.resource.api();
            let model = route.model.clone();
            let query = uri.query().map(str::to_string);
            (model, api, with_deadline(rest.timeout, answer(rest.services.clone(), route, query, headers, body)).await)
        }
    };
    let code = result.as_ref().map_or_else(Status::code, |_| Code::Ok);
    rest.services.manager.metrics().request(&model, api, "REST", code, start.elapsed());
    match result {
        Ok(Answer::Json(json)) => axum::Json(json).into_response(),
        Ok(Answer::Bytes(bytes)) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        Err(status) => error(http_code(status.code()), status.message()),
    }
}

enum Answer {
    Json(Value),
    Bytes(Bytes),
}

/// Every model with its AVAILABLE versions, newest first (the page's picker).
fn page_models(services: &Services) -> Value {
    let manager = &services.manager;
    let models: Vec<Value> = manager
        .model_names()
        .into_iter()
        .map(|name| {
            let versions: Vec<i64> = manager.versions(&name).unwrap_or_default().into_iter().rev().collect();
            json!({"name": name, "versions": versions})
        })
        .collect();
    json!({ "models": models })
}

/// A version's WebGPU inference plan (`?batch=N`, default 1) or (`weights`) the weights blob
/// it reads.
async fn webgpu(services: &Services, spec: ModelSpec, weights: bool, query: Option<&str>) -> Result<Answer, Status> {
    let version = match &spec.version_choice {
        None => None,
        Some(VersionChoice::Version(v)) => Some(*v),
        Some(VersionChoice::VersionLabel(label)) => {
            Some(services.manager.resolve_label(&spec.name, label).map_err(Status::invalid_argument)?)
        }
    };
    let loaded = services.manager.resolve(&spec.name, version).map_err(Status::not_found)?;
    let batch = match query.into_iter().flat_map(|q| q.split('&')).find_map(|kv| kv.strip_prefix("batch=")) {
        None => 1,
        Some(n) => n.parse::<usize>().ok().filter(|n| (1..=engine::gpu::plan::MAX_PLAN_BATCH).contains(n)).ok_or_else(|| {
            Status::invalid_argument(format!("batch must be a number from 1 to {}, got '{n}'", engine::gpu::plan::MAX_PLAN_BATCH))
        })?,
    };
    let servable = loaded.servable.clone();
    // The weights are the same whatever the batch: the blob of the smallest plan serves them.
    let plan = tokio::task::spawn_blocking(move || servable.inference_plan(if weights { 1 } else { batch }))
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::internal(format!("recording the WebGPU plan: {e}")))?;
    if weights {
        return Ok(Answer::Bytes(Bytes::copy_from_slice(&plan.weights)));
    }
    let mut json = serde_json::to_value(&plan.plan).map_err(|e| Status::internal(e.to_string()))?;
    let served = &loaded.servable;
    json["model"] = json!(served.name);
    json["version"] = json!(served.version);
    json["weights"]["url"] = json!(format!("/v1/models/{}/versions/{}/webgpu_weights", served.name, served.version));
    Ok(Answer::Json(json))
}

async fn answer(services: Arc<Services>, route: Route, query: Option<String>, headers: HeaderMap, body: Bytes) -> Result<Answer, Status> {
    let version_choice = match route.version {
        VersionRef::Newest => None,
        VersionRef::Number(v) => Some(VersionChoice::Version(v)),
        VersionRef::Label(label) => Some(VersionChoice::VersionLabel(label)),
    };
    let spec =
        |signature: String| ModelSpec { name: route.model.clone(), version_choice: version_choice.clone(), signature_name: signature };
    match route.resource {
        Resource::Status => status(&services, spec(String::new())).await.map(Answer::Json),
        Resource::Metadata => metadata(&services, spec(String::new())).await.map(Answer::Json),
        Resource::Predict => {
            let body = inflate(&headers, body).await?;
            let PredictBody { tensor, row, signature } = parse_predict_body(&body).map_err(Status::invalid_argument)?;
            predict(&services, spec(signature), tensor, row).await.map(Answer::Json)
        }
        Resource::WebgpuPlan | Resource::WebgpuWeights => {
            let weights = route.resource == Resource::WebgpuWeights;
            webgpu(&services, spec(String::new()), weights, query.as_deref()).await
        }
        Resource::Unsupported(api) => {
            Err(Status::unimplemented(format!("'{api}' is not supported: POST /v1/models/MODEL[/versions/V]:predict")))
        }
    }
}

/// The body as sent, or inflated when it is gzip.
async fn inflate(headers: &HeaderMap, body: Bytes) -> Result<Bytes, Status> {
    let encoding = headers.get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap_or("(not text)").trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("identity") => Ok(body),
        Some("gzip") => tokio::task::spawn_blocking(move || {
            let mut inflated = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .take(MAX_INFLATED_BYTES + 1)
                .read_to_end(&mut inflated)
                .map_err(|e| Status::invalid_argument(format!("gzip body: {e}")))?;
            if inflated.len() as u64 > MAX_INFLATED_BYTES {
                return Err(Status::invalid_argument(format!("gzip body inflates to more than {MAX_INFLATED_BYTES} bytes")));
            }
            Ok(Bytes::from(inflated))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?,
        Some(other) => Err(Status::invalid_argument(format!("Content-Encoding '{other}' is not supported (gzip is)"))),
    }
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

fn version_status_json(s: &ModelVersionStatus) -> Value {
    let state = VersionState::try_from(s.state).map_or("UNKNOWN", |s| s.as_str_name());
    let (code, message) = s.status.as_ref().map_or((0, ""), |st| (st.error_code, st.error_message.as_str()));
    let code = proto::tensorflow::error::Code::try_from(code).map_or("UNKNOWN", |c| c.as_str_name());
    json!({"version": s.version.to_string(), "state": state, "status": {"error_code": code, "error_message": message}})
}

async fn status(services: &Services, spec: ModelSpec) -> Result<Value, Status> {
    let response = services.get_model_status(Request::new(GetModelStatusRequest { model_spec: Some(spec) })).await?;
    let versions: Vec<Value> = response.into_inner().model_version_status.iter().map(version_status_json).collect();
    Ok(json!({ "model_version_status": versions }))
}

async fn metadata(services: &Services, spec: ModelSpec) -> Result<Value, Status> {
    let name = spec.name.clone();
    let request = GetModelMetadataRequest { model_spec: Some(spec), metadata_field: vec!["signature_def".into()] };
    let r = services.get_model_metadata(Request::new(request)).await?.into_inner();
    let map = r.metadata.get("signature_def").and_then(|any| SignatureDefMap::decode(any.value.as_slice()).ok()).unwrap_or_default();
    let signatures: serde_json::Map<String, Value> = map
        .signature_def
        .iter()
        .map(|(key, sig)| {
            let inputs: serde_json::Map<String, Value> = sig.inputs.iter().map(|(k, t)| (k.clone(), tensor_info_json(t))).collect();
            let outputs: serde_json::Map<String, Value> = sig.outputs.iter().map(|(k, t)| (k.clone(), tensor_info_json(t))).collect();
            (key.clone(), json!({"inputs": inputs, "outputs": outputs, "method_name": sig.method_name}))
        })
        .collect();
    let served = match r.model_spec.and_then(|s| s.version_choice) {
        Some(VersionChoice::Version(v)) => v.to_string(),
        _ => String::new(),
    };
    Ok(json!({
        "model_spec": {"name": name, "signature_name": "", "version": served},
        "metadata": {"signature_def": {"signature_def": signatures}},
    }))
}

async fn predict(services: &Services, spec: ModelSpec, tensor: TensorProto, row: bool) -> Result<Value, Status> {
    let request = PredictRequest { model_spec: Some(spec), inputs: [(INPUT_NAME.to_string(), tensor)].into(), output_filter: vec![] };
    let response = services.run_predict(request).await?;
    let classes = response.outputs.get("classes").map(|t| t.int64_val.clone()).unwrap_or_default();
    let probs = response.outputs.get("probabilities").map(|t| t.float_val.clone()).unwrap_or_default();
    let k = probs.len() / classes.len().max(1);
    let rows: Vec<&[f32]> = probs.chunks(k.max(1)).collect();
    Ok(if row {
        let predictions: Vec<Value> = classes.iter().zip(&rows).map(|(c, p)| json!({"classes": c, "probabilities": p})).collect();
        json!({ "predictions": predictions })
    } else {
        json!({ "outputs": {"classes": classes, "probabilities": rows} })
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: Method, path: &str) -> Result<Route, String> {
        parse_route(&method, path)
    }

    #[test]
    fn tensorflow_serving_urls() {
        let r = route(Method::GET, "/v1/models/mnist").unwrap();
        assert_eq!((r.model.as_str(), &r.version, &r.resource), ("mnist", &VersionRef::Newest, &Resource::Status));
        assert_eq!(route(Method::GET, "/v1/models/mnist/versions/3/metadata").unwrap().version, VersionRef::Number(3));
        let r = route(Method::POST, "/v1/models/mnist/labels/canary:predict").unwrap();
        assert_eq!((r.version, r.resource), (VersionRef::Label("canary".into()), Resource::Predict));
        assert_eq!(route(Method::POST, "/v1/models/m:regress").unwrap().resource, Resource::Unsupported("regress"));
        assert_eq!(route(Method::GET, "/v1/models").unwrap_err(), "Missing model name in request.");
        assert_eq!(route(Method::GET, "/v1/models/").unwrap_err(), "Missing model name in request.");
        for (method, path) in [
            (Method::GET, "/v1/models/mnist/versions/x"),
            (Method::GET, "/v1/models/mnist/versions/"),
            (Method::GET, "/v1/models/mnist/versions/99999999999999999999"),
            (Method::GET, "/v1/models/mnist/labels/"),
            (Method::GET, "/v1/models/mnist/foo"),
            (Method::GET, "/v1/models/mnist:predict"),
            (Method::POST, "/v1/models/mnist"),
            (Method::POST, "/v1/models/mnist:explain"),
            (Method::PUT, "/v1/models/mnist"),
            (Method::POST, "/v1/models"),
            (Method::GET, "/v1/modelsx/mnist"),
            (Method::GET, "/v1/models//metadata"),
        ] {
            assert_eq!(route(method.clone(), path).unwrap_err(), format!("Malformed request: {method} {path}"));
        }
    }
}
