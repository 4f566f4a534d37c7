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

/// `type_url` of a packed `tensorflow.serving.SignatureDefMap` in GetModelMetadata.
pub const SIGNATURE_DEF_MAP_TYPE_URL: &str = "type.googleapis.com/tensorflow.serving.SignatureDefMap";
