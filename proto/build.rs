//! Compiles the .proto files with protox (no system protoc), generates the prost messages and
//! tonic services, and writes the descriptor set that gRPC reflection serves and the text-format config files are parsed with.

use prost::Message;

const PROTOS: [&str; 8] = [
    "tensorflow_serving/apis/prediction_service.proto",
    "tensorflow_serving/apis/model_service.proto",
    "tensorflow_serving/apis/get_model_status.proto",
    "tensorflow/core/protobuf/meta_graph.proto",
    "tensorflow_serving/config/model_server_config.proto",
    "tensorflow_serving/config/monitoring_config.proto",
    "tensorflow_serving/config/ssl_config.proto",
    "tensorflow_serving/servables/tensorflow/session_bundle_config.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=protos");
    let files: Vec<String> = PROTOS.iter().map(|p| format!("protos/{p}")).collect();
    let fds = protox::compile(&files, ["protos"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().build_server(true).build_client(true).compile_fds(fds)?;
    Ok(())
}
