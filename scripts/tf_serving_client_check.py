"""An unchanged TensorFlow Serving Python client against our server.

Uses only PyPI's tensorflow-serving-api stubs and tf.make_tensor_proto, exactly as a
TensorFlow Serving user does, and checks predictions, metadata, status and error codes.
With --ca (and --cert / --key for mutual TLS) it connects as a TensorFlow Serving user
connects to a server started with --ssl_config_file: grpc.secure_channel with
grpc.ssl_channel_credentials, and checks that a channel without a client certificate is refused.
Usage: python tf_serving_client_check.py HOST:PORT MODEL DIGITS_DIR [--ca CA [--cert CERT --key KEY]]
"""
import argparse
import sys

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

parser = argparse.ArgumentParser()
parser.add_argument("address")
parser.add_argument("model")
parser.add_argument("digits")
parser.add_argument("--ca")
parser.add_argument("--cert")
parser.add_argument("--key")
args = parser.parse_args()
address, model, digits = args.address, args.model, args.digits
options = [("grpc.max_send_message_length", 1 << 30), ("grpc.max_receive_message_length", 1 << 30)]


def read(path):
    with open(path, "rb") as f:
        return f.read()


if args.ca:
    credentials = grpc.ssl_channel_credentials(root_certificates=read(args.ca),
                                               private_key=read(args.key) if args.key else None,
                                               certificate_chain=read(args.cert) if args.cert else None)
    channel = grpc.secure_channel(address, credentials, options=options)
    print(f"grpc.secure_channel to {address} (CA {args.ca}, client certificate {args.cert})")
else:
    channel = grpc.insecure_channel(address, options=options)
stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
failures = []


def check(what, ok, detail=""):
    print(("PASS " if ok else "FAIL ") + what + (f": {detail}" if detail else ""))
    if not ok:
        failures.append(what)


def image(digit):
    png = tf.io.read_file(f"{digits}/{digit}.png")
    return tf.cast(tf.io.decode_png(png, channels=1), tf.float32).numpy() / 255.0  # [28, 28, 1]


def request(batch, name=model, signature="serving_default", key="images"):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = name
    req.model_spec.signature_name = signature
    req.inputs[key].CopyFrom(tf.make_tensor_proto(batch, dtype=tf.float32))
    return req


# One image per digit, shape [1, 28, 28, 1], as the upstream MNIST client sends it.
correct = 0
for d in range(10):
    resp = stub.Predict(request(image(d)[None]), 10.0)
    classes = tf.make_ndarray(resp.outputs["classes"])
    probs = tf.make_ndarray(resp.outputs["probabilities"])
    correct += int(classes[0] == d)
    if d == 0:
        check("probabilities shape [1,10], sums to 1", probs.shape == (1, 10) and abs(probs.sum() - 1) < 1e-4, str(probs.shape))
        check("classes dtype int64", classes.dtype == np.int64, str(classes.dtype))
        check("response model_spec", resp.model_spec.name == model and resp.model_spec.signature_name == "serving_default"
              and resp.model_spec.version.value >= 1, str(resp.model_spec).replace("\n", " "))
check("digits 0-9 classified correctly", correct == 10, f"{correct}/10")

# A batch of all ten in [10, 784] and [10, 28, 28].
batch = np.stack([image(d) for d in range(10)])
for shape in [(10, 784), (10, 28, 28)]:
    resp = stub.Predict(request(batch.reshape(shape)), 10.0)
    got = list(tf.make_ndarray(resp.outputs["classes"]))
    check(f"batch of shape {shape}", got == list(range(10)), str(got))

# Metadata and status.
meta = get_model_metadata_pb2.GetModelMetadataRequest()
meta.model_spec.name = model
meta.metadata_field.append("signature_def")
resp = stub.GetModelMetadata(meta, 10.0)
sigs = get_model_metadata_pb2.SignatureDefMap()
resp.metadata["signature_def"].Unpack(sigs)
check("metadata signature serving_default/images", "images" in sigs.signature_def["serving_default"].inputs)
status_stub = model_service_pb2_grpc.ModelServiceStub(channel)
sreq = get_model_status_pb2.GetModelStatusRequest()
sreq.model_spec.name = model
sresp = status_stub.GetModelStatus(sreq, 10.0)
check("status AVAILABLE", sresp.model_version_status[0].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE)


def code_of(req):
    try:
        stub.Predict(req, 10.0)
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


check("unknown model -> NOT_FOUND", code_of(request(image(0)[None], name="nope")) == grpc.StatusCode.NOT_FOUND)
check("unknown signature -> FAILED_PRECONDITION", code_of(request(image(0)[None], signature="x")) == grpc.StatusCode.FAILED_PRECONDITION)
check("wrong input key -> INVALID_ARGUMENT", code_of(request(image(0)[None], key="x")) == grpc.StatusCode.INVALID_ARGUMENT)
bad = request(image(0)[None])
bad.inputs["images"].CopyFrom(tf.make_tensor_proto(image(0)[None].astype(np.float64)))
check("float64 input -> INVALID_ARGUMENT", code_of(bad) == grpc.StatusCode.INVALID_ARGUMENT)
check("wrong shape -> INVALID_ARGUMENT", code_of(request(np.zeros((1, 27, 28), np.float32))) == grpc.StatusCode.INVALID_ARGUMENT)

if args.ca and args.cert:
    anonymous = grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=read(args.ca)), options=options)
    try:
        prediction_service_pb2_grpc.PredictionServiceStub(anonymous).Predict(request(image(0)[None]), 10.0)
        refused = None
    except grpc.RpcError as e:
        refused = e.code()
    check("no client certificate -> refused (mutual TLS)", refused is not None, str(refused))
    plain = grpc.insecure_channel(address)
    try:
        prediction_service_pb2_grpc.PredictionServiceStub(plain).Predict(request(image(0)[None]), 10.0)
        refused = None
    except grpc.RpcError as e:
        refused = e.code()
    check("plain text to the TLS port -> refused", refused is not None, str(refused))

print(f"{len(failures)} failed" if failures else "all checks passed")
sys.exit(1 if failures else 0)
