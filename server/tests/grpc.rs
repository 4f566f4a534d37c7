//! The server over real gRPC on ephemeral ports: every RPC, every error code, large and
//! concurrent requests, batching, and live version changes.

mod common;

use std::time::Duration;

use common::*;
use prost::Message;
use proto::tensorflow::serving::model_spec::VersionChoice;
use proto::tensorflow::serving::model_version_status::State;
use proto::tensorflow::serving::*;
use proto::tensorflow::{DataType, TensorProto};
use tonic::Code;

fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= 1e-5, "{g} vs {w}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn predict_metadata_status_health_and_reflection() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("mnist");
    let net = export_version(&base, 1, 7);
    let server = TestServer::start(&["--model_name", "mnist", "--model_base_path", base.to_str().unwrap()]).await;
    let mut client = server.predictions().await;

    // The three accepted shapes, tensor_content and float_val.
    let x = images(3);
    let (classes, probs) = expected(&net, &x);
    let content = float_tensor(&[3, 28, 28, 1], &x);
    let flat = TensorProto { tensor_content: Vec::new(), float_val: x.clone(), ..float_tensor(&[3, 784], &[]) };
    let square = float_tensor(&[3, 28, 28], &x);
    for tensor in [content, flat, square] {
        let r = client.predict(predict_request("mnist", None, tensor)).await.unwrap().into_inner();
        let c = &r.outputs["classes"];
        assert_eq!(c.dtype, DataType::DtInt64 as i32);
        assert_eq!(c.tensor_shape.as_ref().unwrap().dim.iter().map(|d| d.size).collect::<Vec<_>>(), vec![3]);
        assert_eq!(c.int64_val, classes);
        let p = &r.outputs["probabilities"];
        assert_eq!(p.dtype, DataType::DtFloat as i32);
        assert_eq!(p.tensor_shape.as_ref().unwrap().dim.iter().map(|d| d.size).collect::<Vec<_>>(), vec![3, 10]);
        assert!(p.tensor_content.is_empty(), "outputs in typed fields");
        assert_close(&p.float_val, &probs);
        let spec = r.model_spec.unwrap();
        assert_eq!(
            (spec.name.as_str(), spec.version_choice, spec.signature_name.as_str()),
            ("mnist", Some(VersionChoice::Version(1)), "serving_default")
        );
    }

    // output_filter and an explicit version and signature.
    let mut req = predict_request("mnist", Some(1), float_tensor(&[1, 784], &x[..784]));
    req.output_filter = vec!["classes".into()];
    req.model_spec.as_mut().unwrap().signature_name = "serving_default".into();
    let r = client.predict(req).await.unwrap().into_inner();
    assert_eq!(r.outputs.keys().collect::<Vec<_>>(), vec!["classes"]);

    // Metadata: the signature map packed in an Any.
    let meta = client
        .get_model_metadata(GetModelMetadataRequest {
            model_spec: Some(spec("mnist", None, "")),
            metadata_field: vec!["signature_def".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let any = &meta.metadata["signature_def"];
    assert_eq!(any.type_url, "type.googleapis.com/tensorflow.serving.SignatureDefMap");
    let map = SignatureDefMap::decode(any.value.as_slice()).unwrap();
    let sig = &map.signature_def["serving_default"];
    assert_eq!(sig.method_name, "tensorflow/serving/predict");
    let input = &sig.inputs["images"];
    assert_eq!(input.dtype, DataType::DtFloat as i32);
    assert_eq!(input.tensor_shape.as_ref().unwrap().dim.iter().map(|d| d.size).collect::<Vec<_>>(), vec![-1, 28, 28, 1]);
    assert_eq!(sig.outputs["classes"].dtype, DataType::DtInt64 as i32);
    assert_eq!(meta.model_spec.unwrap().version_choice, Some(VersionChoice::Version(1)));

    // Status.
    let status = server
        .models()
        .await
        .get_model_status(GetModelStatusRequest { model_spec: Some(spec("mnist", None, "")) })
        .await
        .unwrap()
        .into_inner();
    let v = &status.model_version_status;
    assert_eq!(v.len(), 1);
    assert_eq!((v[0].version, v[0].state), (1, State::Available as i32));
    assert_eq!(v[0].status.as_ref().unwrap().error_code, 0);

    // Health.
    let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await);
    for service in ["", "tensorflow.serving.PredictionService", "tensorflow.serving.ModelService"] {
        let r = health.check(tonic_health::pb::HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(r.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32, "{service}");
    }

    // Reflection lists the services.
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(server.channel().await);
    let request = ServerReflectionRequest { host: String::new(), message_request: Some(MessageRequest::ListServices(String::new())) };
    let mut stream = reflection.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let reply = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else { panic!("{reply:?}") };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in ["tensorflow.serving.PredictionService", "tensorflow.serving.ModelService", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_carry_tensorflow_serving_codes() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("mnist");
    export_version(&base, 1, 7);
    let server = TestServer::start(&["--model_name", "mnist", "--model_base_path", base.to_str().unwrap()]).await;
    let mut client = server.predictions().await;
    let good = || float_tensor(&[1, 784], &images(1));
    let with = |f: &dyn Fn(&mut PredictRequest)| {
        let mut r = predict_request("mnist", None, good());
        f(&mut r);
        r
    };
    let cases: Vec<(PredictRequest, Code, &str)> = vec![
        (predict_request("nope", None, good()), Code::NotFound, "Servable not found for request: Latest(nope)"),
        (predict_request("mnist", Some(9), good()), Code::NotFound, "Specific(mnist, 9)"),
        (with(&|r| r.model_spec = None), Code::InvalidArgument, "Missing ModelSpec"),
        (with(&|r| r.model_spec.as_mut().unwrap().signature_name = "other".into()), Code::FailedPrecondition, "\"other\" not found"),
        (with(&|r| r.inputs = [("pixels".to_string(), good())].into()), Code::InvalidArgument, "alias not found in signature: pixels"),
        (with(&|r| r.inputs.clear()), Code::InvalidArgument, "Missing input tensor alias: images"),
        (with(&|r| r.inputs.get_mut("images").unwrap().dtype = DataType::DtDouble as i32), Code::InvalidArgument, "DT_DOUBLE"),
        (
            with(&|r| r.inputs.insert("images".into(), float_tensor(&[1, 27, 28], &[0.0; 756])).map(|_| ()).unwrap()),
            Code::InvalidArgument,
            "shape [1, 27, 28]",
        ),
        (
            with(&|r| r.inputs.insert("images".into(), float_tensor(&[2, 784], &[0.0; 784])).map(|_| ()).unwrap()),
            Code::InvalidArgument,
            "tensor_content holds 3136 bytes",
        ),
        (
            with(&|r| r.inputs.insert("images".into(), float_tensor(&[1 << 40, 784], &[0.0; 784])).map(|_| ()).unwrap()),
            Code::InvalidArgument,
            "too large",
        ),
        (with(&|r| r.output_filter = vec!["logits".into()]), Code::InvalidArgument, "output tensor alias not found in signature: logits"),
        (
            with(&|r| r.output_filter = vec!["classes".into(), "probabilities".into(), "classes".into()]),
            Code::InvalidArgument,
            "duplicate output tensor alias: classes",
        ),
        (
            with(&|r| r.model_spec.as_mut().unwrap().version_choice = Some(VersionChoice::VersionLabel("stable".into()))),
            Code::InvalidArgument,
            "Unrecognized servable version label: stable",
        ),
    ];
    for (request, code, text) in cases {
        let status = client.predict(request).await.unwrap_err();
        assert_eq!(status.code(), code, "{}", status.message());
        assert!(status.message().contains(text), "{:?}: {}", code, status.message());
    }
    let s = client.classify(ClassificationRequest { model_spec: Some(spec("mnist", None, "")) }).await.unwrap_err();
    assert_eq!(s.code(), Code::Unimplemented);
    let s = client.regress(RegressionRequest { model_spec: Some(spec("mnist", None, "")) }).await.unwrap_err();
    assert_eq!(s.code(), Code::Unimplemented);
    let s = client.multi_inference(MultiInferenceRequest {}).await.unwrap_err();
    assert_eq!(s.code(), Code::Unimplemented);
    let meta = |fields: Vec<String>, name: &str| GetModelMetadataRequest { model_spec: Some(spec(name, None, "")), metadata_field: fields };
    assert_eq!(client.get_model_metadata(meta(vec![], "mnist")).await.unwrap_err().code(), Code::InvalidArgument);
    assert_eq!(client.get_model_metadata(meta(vec!["graph".into()], "mnist")).await.unwrap_err().code(), Code::InvalidArgument);
    assert_eq!(client.get_model_metadata(meta(vec!["signature_def".into()], "nope")).await.unwrap_err().code(), Code::NotFound);
    let mut models = server.models().await;
    let s = models.get_model_status(GetModelStatusRequest { model_spec: Some(spec("nope", None, "")) }).await.unwrap_err();
    assert_eq!(s.code(), Code::NotFound);
    let s = models.get_model_status(GetModelStatusRequest { model_spec: Some(spec("mnist", Some(4), "")) }).await.unwrap_err();
    assert_eq!(s.code(), Code::NotFound);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_64_mib_request_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("mnist");
    let net = export_version(&base, 1, 3);
    let server = TestServer::start(&["--model_name", "mnist", "--model_base_path", base.to_str().unwrap()]).await;
    let n = 64 * 1024 * 1024 / (784 * 4) + 1;
    let x = images(n);
    let r =
        server.predictions().await.predict(predict_request("mnist", None, float_tensor(&[n as i64, 784], &x))).await.unwrap().into_inner();
    assert_eq!(r.outputs["classes"].int64_val.len(), n);
    assert_eq!(r.outputs["classes"].int64_val[..20], expected(&net, &x[..20 * 784]).0[..]);
    server.stop().await.unwrap();
}

/// 64 concurrent single-image requests, with and without batching: each gets its own answer.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_requests_get_their_own_answers() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("mnist");
    let net = export_version(&base, 1, 11);
    let x = images(64);
    let (classes, probs) = expected(&net, &x);
    for flags in [vec![], vec!["--enable_batching", "--max_batch_size", "16", "--batch_timeout_micros", "5000"]] {
        let mut args = vec!["--model_name", "mnist", "--model_base_path", base.to_str().unwrap()];
        args.extend(flags.iter());
        let server = TestServer::start(&args).await;
        let mut tasks = Vec::new();
        for i in 0..64 {
            let mut client = server.predictions().await;
            let image = x[i * 784..(i + 1) * 784].to_vec();
            tasks.push(tokio::spawn(async move { client.predict(predict_request("mnist", None, float_tensor(&[1, 784], &image))).await }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            let r = t.await.unwrap().unwrap().into_inner();
            assert_eq!(r.outputs["classes"].int64_val, vec![classes[i]], "request {i} with {flags:?}");
            assert_close(&r.outputs["probabilities"].float_val, &probs[i * 10..(i + 1) * 10]);
        }
        server.stop().await.unwrap();
    }
}

/// The AVAILABLE versions GetModelStatus reports, newest first.
async fn served_version(server: &TestServer) -> Vec<i64> {
    let status = server.models().await.get_model_status(GetModelStatusRequest { model_spec: Some(spec("mnist", None, "")) }).await;
    let available = |v: &&ModelVersionStatus| v.state == State::Available as i32;
    status.map(|s| s.into_inner().model_version_status.iter().filter(available).map(|v| v.version).collect()).unwrap_or_default()
}

async fn wait_for(server: &TestServer, want: Vec<i64>) {
    for _ in 0..100 {
        if served_version(server).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("served versions {:?}, expected {want:?}", served_version(server).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn new_versions_are_picked_up_and_half_copied_ones_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("mnist");
    export_version(&base, 1, 1);
    let server =
        TestServer::start(&["--model_name", "mnist", "--model_base_path", base.to_str().unwrap(), "--file_system_poll_wait_seconds", "1"])
            .await;

    // Requests keep flowing during every change below; none may fail.
    let url = server.url();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let channel = tonic::transport::Channel::from_shared(url).unwrap().connect().await.unwrap();
            let mut client = prediction_service_client::PredictionServiceClient::new(channel);
            let mut versions = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r =
                    client.predict(predict_request("mnist", None, float_tensor(&[1, 784], &images(1)))).await.expect("no request fails");
                if let Some(VersionChoice::Version(v)) = r.into_inner().model_spec.unwrap().version_choice {
                    versions.push(v);
                }
            }
            versions
        })
    };

    // A half-copied version 3: model.json present, weights truncated. Skipped, 1 still served.
    let staging = dir.path().join("staging");
    export_version(&staging, 3, 3);
    std::fs::create_dir_all(base.join("3")).unwrap();
    std::fs::copy(staging.join("3/model.json"), base.join("3/model.json")).unwrap();
    let weights = std::fs::read(staging.join("3/weights.safetensors")).unwrap();
    std::fs::write(base.join("3/weights.safetensors"), &weights[..weights.len() / 2]).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(served_version(&server).await, vec![1]);

    // A complete version 2 is loaded and replaces 1 (policy latest: one version).
    export_version(&base, 2, 2);
    wait_for(&server, vec![2]).await;

    // Finishing the copy of 3 makes it the served version.
    std::fs::write(base.join("3/weights.safetensors"), &weights).unwrap();
    wait_for(&server, vec![3]).await;

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = load.await.unwrap();
    assert!(
        seen.contains(&1) && seen.contains(&3),
        "requests were answered by each version: {:?}",
        seen.iter().collect::<std::collections::BTreeSet<_>>()
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_config_file_serves_several_models_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    for v in [1, 2, 3] {
        export_version(&dir.path().join("a"), v, v as u64);
    }
    export_version(&dir.path().join("b"), 5, 5);
    let config = dir.path().join("models.config");
    std::fs::write(
        &config,
        "model_config_list {\n  config { name: 'a' base_path: 'a' model_platform: 'tensorflow'\n    model_version_policy { specific { versions: 1 versions: 3 } } }\n  config { name: 'b' base_path: 'b' }\n}\n",
    )
    .unwrap();
    let server = TestServer::start(&["--model_config_file", config.to_str().unwrap()]).await;
    let mut models = server.models().await;
    let versions = |name: &str| GetModelStatusRequest { model_spec: Some(spec(name, None, "")) };
    let a = models.get_model_status(versions("a")).await.unwrap().into_inner();
    assert_eq!(a.model_version_status.iter().map(|s| s.version).collect::<Vec<_>>(), vec![3, 1], "newest first");
    let b = models.get_model_status(versions("b")).await.unwrap().into_inner();
    assert_eq!(b.model_version_status.iter().map(|s| s.version).collect::<Vec<_>>(), vec![5]);
    let mut client = server.predictions().await;
    let r = client.predict(predict_request("a", Some(1), float_tensor(&[1, 784], &images(1)))).await.unwrap().into_inner();
    assert_eq!(r.model_spec.unwrap().version_choice, Some(VersionChoice::Version(1)));
    assert_eq!(
        client.predict(predict_request("a", Some(2), float_tensor(&[1, 784], &images(1)))).await.unwrap_err().code(),
        Code::NotFound
    );
    server.stop().await.unwrap();
}

/// A model slow enough (~2.5 MFLOP per image) that a burst outruns it.
const SLOW_CNN: &str = r#"
[model]
[[model.layers]]
type = "conv2d"
filters = 64
kernel_size = 5
padding = "same"
[[model.layers]]
type = "flatten"
[[model.layers]]
type = "dense"
units = 10
"#;

/// With room for one waiting batch, a burst of large requests overfills the queue: the extra
/// ones are answered UNAVAILABLE at once, the others correctly.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_batch_queue_answers_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("mnist");
    let net = export_config(&base, 1, 5, SLOW_CNN);
    let flags = ["--enable_batching", "--max_batch_size", "2000", "--max_enqueued_batches", "1", "--num_batch_threads", "1"];
    let mut args = vec!["--model_name", "mnist", "--model_base_path", base.to_str().unwrap()];
    args.extend(flags);
    let server = TestServer::start(&args).await;
    let x = std::sync::Arc::new(images(2000));
    let (classes, _) = expected(&net, &x[..784]);
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (mut client, x) = (server.predictions().await, x.clone());
        tasks.push(tokio::spawn(async move { client.predict(predict_request("mnist", None, float_tensor(&[2000, 784], &x))).await }));
    }
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) => {
                assert_eq!(r.into_inner().outputs["classes"].int64_val[0], classes[0]);
                ok += 1;
            }
            Err(s) => {
                assert_eq!(s.code(), Code::Unavailable, "{}", s.message());
                assert!(s.message().contains("queue is full"), "{}", s.message());
                refused += 1;
            }
        }
    }
    assert!(ok >= 1 && refused >= 1, "{ok} answered, {refused} refused");
    server.stop().await.unwrap();
}

/// `--device gpu` (lavapipe in CI): the same answers as the engine on the CPU.
#[tokio::test(flavor = "multi_thread")]
async fn serves_from_the_gpu() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("mnist");
    let net = export_version(&base, 1, 13);
    let server = TestServer::start(&["--model_name", "mnist", "--model_base_path", base.to_str().unwrap(), "--device", "gpu"]).await;
    let x = images(5);
    let (classes, probs) = expected(&net, &x);
    let r = server.predictions().await.predict(predict_request("mnist", None, float_tensor(&[5, 784], &x))).await.unwrap().into_inner();
    assert_eq!(r.outputs["classes"].int64_val, classes);
    assert_close(&r.outputs["probabilities"].float_val, &probs);
    server.stop().await.unwrap();
}

/// As TensorFlow's `Tensor::FromProto`: one typed value fills the shape, too few repeat the
/// last, none are zeros.
#[tokio::test(flavor = "multi_thread")]
async fn typed_values_fill_the_shape_as_in_tensorflow() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("mnist");
    let net = export_version(&base, 1, 7);
    let server = TestServer::start(&["--model_name", "mnist", "--model_base_path", base.to_str().unwrap()]).await;
    let mut client = server.predictions().await;
    let x = images(1);
    let typed = |values: &[f32]| TensorProto { tensor_content: Vec::new(), float_val: values.to_vec(), ..float_tensor(&[2, 28, 28], &[]) };
    let mut filled = x[..400].to_vec();
    filled.resize(1568, x[399]);
    for (values, want) in [(vec![0.5], vec![0.5; 1568]), (vec![], vec![0.0; 1568]), (x[..400].to_vec(), filled)] {
        let r = client.predict(predict_request("mnist", None, typed(&values))).await.unwrap().into_inner();
        let (classes, probs) = expected(&net, &want);
        assert_eq!(r.outputs["classes"].int64_val, classes);
        assert_close(&r.outputs["probabilities"].float_val, &probs);
    }
    server.stop().await.unwrap();
}
