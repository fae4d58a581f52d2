#!/usr/bin/python3
"""Writes the seed corpora of the libFuzzer harnesses whose inputs are
protobuf messages, from the .proto files (run it again after a change to
one of them):
    fuzz/make_corpus.py
- fuzz/corpus/output/ (fuzz/output_fuzz.c): one message of the output
  plugin of each kind, as proto/zerobus_output.proto defines them, with a
  Relation's DescriptorProto and a Change's record of the same table;
- fuzz/corpus/grpc_reader/ (fuzz/grpc_reader_fuzz.c): response bodies of
  an EphemeralStream call (proto/zerobus_service.proto), each behind the
  8-byte last offset sent and the chunk size the harness reads first.
"""

import importlib
import os
import struct
import subprocess
import sys
import tempfile

from google.protobuf import descriptor_pb2

top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
out_dir = os.path.join(top, "fuzz", "corpus", "output")

tmp = tempfile.mkdtemp()
subprocess.run(["protoc", "--proto_path=" + os.path.join(top, "proto"),
                "--python_out=" + tmp,
                os.path.join(top, "proto", "zerobus_output.proto"),
                os.path.join(top, "proto", "zerobus_service.proto")], check=True)
sys.path.insert(0, tmp)
out = importlib.import_module("zerobus_output_pb2")
svc = importlib.import_module("zerobus_service_pb2")

F = descriptor_pb2.FieldDescriptorProto
desc = descriptor_pb2.DescriptorProto(name="public_t")
desc.field.add(name="id", number=1, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
desc.field.add(name="note", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
desc.field.add(name="_change_type", number=2001, type=F.TYPE_STRING,
               label=F.LABEL_OPTIONAL)

# record: id = 7, note = "hi", _change_type = "insert"
record = bytes([0x08, 0x07, 0x12, 0x02]) + b"hi" + bytes([0x8a, 0x7d, 0x06]) + b"insert"

messages = {
    "begin": out.Message(begin=out.Begin(xid=750, final_lsn=0x16B3F10,
                                         commit_time=1764700000000000)),
    "commit": out.Message(commit=out.Commit(xid=750, commit_lsn=0x16B3F10,
                                            end_lsn=0x16B3F48,
                                            commit_time=1764700000000000,
                                            changes=1)),
    "relation": out.Message(relation=out.Relation(
        relid=16384, schema_name="public", table_name="t",
        descriptor_proto=desc.SerializeToString(),
        columns=[out.Column(name="id", field_number=1, pg_type="integer",
                            delta_type="INT", is_key=True),
                 out.Column(name="note", field_number=2, pg_type="text",
                            delta_type="STRING")],
        replica_identity=out.REPLICA_IDENTITY_DEFAULT)),
    "change": out.Message(change=out.Change(relid=16384, type=out.INSERT,
                                            record=record)),
    "truncate": out.Message(truncate=out.Truncate(relids=[16384, 16390],
                                                  cascade=True)),
    "message": out.Message(message=out.LogicalMessage(
        transactional=False, lsn=0x16B3F10, prefix="app", content=b"x")),
}



def write(directory, seeds):
    os.makedirs(directory, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)
    print("wrote %d seeds to %s" % (len(seeds), os.path.relpath(directory, top)))


write(out_dir, {name: msg.SerializeToString() for name, msg in messages.items()})


def frame(msg):
    body = msg.SerializeToString()
    return b"\0" + struct.pack(">I", len(body)) + body


def seed(sent_offset, chunk, *msgs):
    return struct.pack("<q", sent_offset) + bytes([chunk]) + b"".join(frame(m) for m in msgs)


R = svc.EphemeralStreamResponse
created = R(create_stream_response=svc.CreateIngestStreamResponse(stream_id="s-1"))
write(os.path.join(top, "fuzz", "corpus", "grpc_reader"), {
    "created_acks": seed(3, 0, created,
                         R(ingest_record_response=svc.IngestRecordResponse(durability_ack_up_to_offset=1)),
                         R(ingest_record_response=svc.IngestRecordResponse(durability_ack_up_to_offset=3))),
    "close_signal": seed(0, 7, created,
                         R(close_stream_signal=svc.CloseStreamSignal(duration=svc.Duration(seconds=30, nanos=5)))),
    "split_bytes": seed(5, 1, created,
                        R(ingest_record_response=svc.IngestRecordResponse(durability_ack_up_to_offset=5))),
})
