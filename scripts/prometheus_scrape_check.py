"""A Prometheus scrape of our server parsed by PyPI prometheus-client's text parser.

Fetches URL (over TLS, mutual TLS with --cert/--key, when --ca is given), parses it with
prometheus_client.parser.text_string_to_metric_families, and checks that TensorFlow Serving's
families are there with their types and labels.
Usage: python prometheus_scrape_check.py URL MODEL [--ca CA --cert CERT --key KEY]
"""
import argparse
import ssl
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

parser = argparse.ArgumentParser()
parser.add_argument("url")
parser.add_argument("model")
parser.add_argument("--ca")
parser.add_argument("--cert")
parser.add_argument("--key")
args = parser.parse_args()

context = None
if args.ca:
    context = ssl.create_default_context(cafile=args.ca)
    if args.cert:
        context.load_cert_chain(args.cert, args.key)
with urllib.request.urlopen(args.url, context=context, timeout=10) as response:
    content_type = response.headers.get("Content-Type")
    text = response.read().decode()

families = {f.name: f for f in text_string_to_metric_families(text)}
failures = []


def check(what, ok, detail=""):
    print(("PASS " if ok else "FAIL ") + what + (f": {detail}" if detail else ""))
    if not ok:
        failures.append(what)


print(f"scrape: {len(text)} bytes, Content-Type {content_type}, {len(families)} families, "
      f"{sum(len(f.samples) for f in families.values())} samples")
for name, kind in [(":tensorflow:serving:request_count", "counter"),
                   (":tensorflow:serving:request_latency", "histogram"),
                   (":tensorflow:serving:request_example_counts", "histogram"),
                   (":tensorflow:serving:batching_session:queuing_latency", "histogram"),
                   (":tensorflow:serving:batching_session:input_batch_size", "histogram"),
                   (":tensorflow:serving:batching_session:processed_batch_size", "histogram"),
                   (":tensorflow:serving:batching_session:padding_size", "histogram"),
                   (":tensorflow:cc:saved_model:load_attempt_count", "counter"),
                   (":tensorflow:cc:saved_model:load_latency", "counter"),
                   (":mnist_rs:serving:model_version_state", "gauge"),
                   (":mnist_rs:serving:batch_queue_depth", "gauge"),
                   (":mnist_rs:serving:device", "gauge")]:
    family = families.get(name)
    check(f"{name} is a {kind}", family is not None and family.type == kind,
          f"{family.type}, {len(family.samples)} samples" if family else "missing")

ok = [s for s in families[":tensorflow:serving:request_count"].samples
      if s.labels.get("model_name") == args.model and s.labels.get("status") == "OK"]
check(f"request_count{{model_name={args.model},status=OK}} counted", bool(ok) and ok[0].value >= 1,
      str(ok[0].value) if ok else "no sample")
latency = families[":tensorflow:serving:request_latency"]
grpc_buckets = [s for s in latency.samples if s.name.endswith("_bucket") and s.labels.get("entrypoint") == "GRPC"
                and s.labels.get("API") == "Predict" and s.labels.get("model_name") == args.model]
check("request_latency GRPC buckets: Exponential(10, 1.8, 33) + Inf", len(grpc_buckets) == 34
      and float(grpc_buckets[0].labels["le"]) == 10.0 and grpc_buckets[-1].labels["le"] == "+Inf",
      f"{len(grpc_buckets)} buckets, le {grpc_buckets[0].labels['le'] if grpc_buckets else None}"
      f" .. {grpc_buckets[-1].labels['le'] if grpc_buckets else None}")
print(f"{len(failures)} failed" if failures else "all scrape checks passed")
sys.exit(1 if failures else 0)
