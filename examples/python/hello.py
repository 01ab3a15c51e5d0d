#!/usr/bin/env python3
"""Hello World with Sluice from Python: send "Hello World!" to topic `hello`, read it back.

Stubs are generated from proto/sluice/v1 at run time with grpcio-tools, so nothing generated is
kept in the repository. Install the packages with scripts/setup-python.sh, then:

    .venv/bin/python examples/python/hello.py --server 127.0.0.1:50051
"""
import argparse
import importlib
import pathlib
import sys
import tempfile

import grpc
from grpc_tools import protoc

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROTO_DIR = ROOT / "proto"


def load_stubs(out_dir):
    """Compiles the .proto files into out_dir and imports the generated modules."""
    protos = sorted(str(p.relative_to(PROTO_DIR)) for p in (PROTO_DIR / "sluice" / "v1").glob("*.proto"))
    args = ["protoc", f"-I{PROTO_DIR}", f"-I{pathlib.Path(protoc.__file__).parent / '_proto'}",
            f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", *protos]
    if protoc.main(args) != 0:
        sys.exit("could not compile the .proto files")
    sys.path.insert(0, str(out_dir))
    names = ["records_pb2", "admin_pb2", "admin_pb2_grpc", "log_pb2", "log_pb2_grpc"]
    return {n: importlib.import_module(f"sluice.v1.{n}") for n in names}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="127.0.0.1:50051", help="host:port of a running sluice")
    parser.add_argument("--topic", default="hello")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        m = load_stubs(pathlib.Path(tmp))
        channel = grpc.insecure_channel(args.server)
        admin = m["admin_pb2_grpc"].AdminStub(channel)
        log = m["log_pb2_grpc"].LogStub(channel)

        try:
            admin.CreateTopic(m["admin_pb2"].CreateTopicRequest(name=args.topic, partitions=1))
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise

        # Producer: one record; the answer says where it landed.
        record = m["records_pb2"].Record(value=b"Hello World!")
        produced = log.Produce(m["log_pb2"].ProduceRequest(topic=args.topic, partition=0, records=[record]))
        offset = produced.partitions[0].base_offset
        print(f" [x] Sent 'Hello World!' to {args.topic}/0 at offset {offset}")

        # Consumer: fetch from that offset (waits up to 5 s for data).
        fetched = log.Fetch(m["log_pb2"].FetchRequest(topic=args.topic, partition=0, offset=offset,
                                                      max_wait_ms=5000))
        for r in fetched.records:
            print(f" [x] Received {r.value.decode()!r} at offset {r.offset}")


if __name__ == "__main__":
    main()
