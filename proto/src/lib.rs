//! The TensorFlow Serving API subset: `tensorflow.*` messages (TensorProto, SignatureDef, ...)
//! and the `tensorflow.serving` messages and services, with upstream's packages, names and
//! field numbers, so an unchanged TensorFlow Serving client talks to our server.

#![allow(clippy::all, missing_docs)]

pub mod tensorflow {
    tonic::include_proto!("tensorflow");

    pub mod error {
        tonic::include_proto!("tensorflow.error");
    }

    pub mod serving {
        tonic::include_proto!("tensorflow.serving");
    }
}

/// The encoded descriptor set of every message and service, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("descriptor");

/// Every message of [`FILE_DESCRIPTOR_SET`] by name, for reading text-format protos
/// (`--model_config_file` and the other config files) as TensorFlow Serving does.
pub fn descriptor_pool() -> &'static prost_reflect::DescriptorPool {
    static POOL: std::sync::LazyLock<prost_reflect::DescriptorPool> = std::sync::LazyLock::new(|| {
        prost_reflect::DescriptorPool::decode(FILE_DESCRIPTOR_SET).expect("build.rs wrote a valid descriptor set")
    });
    &POOL
}

/// `type_url` of a packed `tensorflow.serving.SignatureDefMap` in GetModelMetadata.
pub const SIGNATURE_DEF_MAP_TYPE_URL: &str = "type.googleapis.com/tensorflow.serving.SignatureDefMap";
