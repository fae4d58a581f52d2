#!/usr/bin/python3
"""Decode the zerobus output plugin's binary output with an independent
protobuf implementation (Debian's python3-protobuf) and check it.

Checks:
  * every plugin message parses as zerobus.output.Message (proto/zerobus_output.proto,
    compiled here with protoc);
  * transactions are framed Begin ... Commit, with matching xids and
    Commit.changes equal to the number of Change messages;
  * every Change.record parses with the DescriptorProto of the last Relation
    message of its relation, and its values equal the expected values that
    PostgreSQL computed independently (expected.json, see t/001_roundtrip.pl);
  * the CDC metadata columns: _change_type, _seq (0, 1, 2... per transaction),
    _commit_lsn, _xid and _commit_timestamp agree with Begin/Commit;
  * the descriptor and zerobus.target_ddl() agree column for column (names,
    order, types, nullability).

Usage: roundtrip.py PROTO_DIR CHANGES EXPECTED DDL
  CHANGES   one base64-encoded plugin message per line
  EXPECTED  JSON: {"insert": {id: row}, "update_postimage": {...},
                   "update_preimage": {...}, "delete": {...}}
  DDL       the output of zerobus.target_ddl() for the relation
Prints "roundtrip: N records checked" and exits 0, or prints every mismatch
and exits 1.
"""

import base64
import importlib
import json
import math
import os
import re
import struct
import subprocess
import sys
import tempfile

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

errors = []


def fail(msg):
    errors.append(msg)


def load_output_proto(proto_dir):
    out = tempfile.mkdtemp()
    subprocess.run(["protoc", "--proto_path=" + proto_dir, "--python_out=" + out,
                    os.path.join(proto_dir, "zerobus_output.proto")], check=True)
    sys.path.insert(0, out)
    return importlib.import_module("zerobus_output_pb2")


def record_class(pool, relid, version, descriptor_bytes):
    """Message class for a record descriptor, in its own file so that every
    Relation message (a new version after ALTER TABLE) gets a fresh class."""
    desc = descriptor_pb2.DescriptorProto.FromString(descriptor_bytes)
    fdp = descriptor_pb2.FileDescriptorProto(
        name="rel_%d_%d.proto" % (relid, version), syntax="proto2",
        package="rel_%d_%d" % (relid, version))
    fdp.message_type.add().CopyFrom(desc)
    pool.Add(fdp)
    md = pool.FindMessageTypeByName("rel_%d_%d.%s" % (relid, version, desc.name))
    return desc, message_factory.MessageFactory(pool).GetPrototype(md)


def to_python(msg):
    """A record message as a dict of the fields that are present."""
    res = {}
    for field, value in msg.ListFields():
        if field.label == field.LABEL_REPEATED:
            value = [to_python(v) if field.type == field.TYPE_MESSAGE else v for v in value]
        elif field.type == field.TYPE_MESSAGE:
            value = to_python(value)
        res[field.name] = value
    return res


def same_float(got, want_text, single):
    want = float(want_text)
    if single:
        want = struct.unpack("f", struct.pack("f", want))[0]
    if math.isnan(want):
        return math.isnan(got)
    return got == want


def without_nulls(value):
    """JSON from PostgreSQL spells NULL struct members out; protobuf leaves
    them absent."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    return value


def check_value(col, got, want):
    """Compare one decoded value with the value PostgreSQL computed."""
    if isinstance(want, dict):
        return got == without_nulls(want)
    if col in ("f4", "f8"):
        return same_float(got, want, col == "f4")
    if col == "by":
        return got.hex() == want
    if col == "j":
        return json.loads(got) == json.loads(want)
    if col == "big":
        import hashlib
        return hashlib.md5(got.encode()).hexdigest() == want
    return got == want


def check_record(kind, rec, expected, present_only):
    key = str(rec.get("id"))
    want_row = expected.get(kind, {}).get(key)
    if want_row is None:
        fail("%s record for id %s was not expected" % (kind, key))
        return
    if rec.get("_unchanged_columns", []) != want_row.get("_unchanged_columns", []):
        fail("%s id %s: _unchanged_columns %r, want %r" % (kind, key, rec.get("_unchanged_columns", []),
                                                          want_row.get("_unchanged_columns", [])))
    for col, want in want_row.items():
        if want is None:
            if col in rec:
                fail("%s id %s: %s should be absent (NULL), got %r" % (kind, key, col, rec[col]))
            continue
        if col not in rec:
            if want == [] or col in rec.get("_unchanged_columns", []) or present_only:
                continue
            fail("%s id %s: %s missing, want %r" % (kind, key, col, want))
            continue
        if not check_value(col, rec[col], want):
            fail("%s id %s: %s = %r, want %r" % (kind, key, col, rec[col], want))


DELTA_TO_PROTO = {
    "TINYINT": "TYPE_INT32", "SMALLINT": "TYPE_INT32", "INT": "TYPE_INT32",
    "BIGINT": "TYPE_INT64", "FLOAT": "TYPE_FLOAT", "DOUBLE": "TYPE_DOUBLE",
    "BOOLEAN": "TYPE_BOOL", "STRING": "TYPE_STRING", "BINARY": "TYPE_BYTES",
    "DATE": "TYPE_INT32", "TIMESTAMP": "TYPE_INT64", "TIMESTAMP_NTZ": "TYPE_INT64",
    "VARIANT": "TYPE_STRING",
}


def split_top(s):
    """Split 'a: INT, b: STRUCT<x: INT, y: STRING>' at top-level commas."""
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch == "<" or ch == "(":
            depth += 1
        elif ch == ">" or ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def check_type(where, delta, field, desc):
    """Does descriptor field `field` (of message `desc`) carry Delta type `delta`?"""
    FD = descriptor_pb2.FieldDescriptorProto
    if delta.startswith("ARRAY<"):
        if field.label != FD.LABEL_REPEATED:
            fail("%s: ARRAY column is not a repeated field" % where)
        delta = delta[6:-1]
    elif field.label == FD.LABEL_REPEATED:
        fail("%s: repeated field for non-ARRAY type %s" % (where, delta))
    if delta.startswith("STRUCT<"):
        if field.type != FD.TYPE_MESSAGE:
            fail("%s: STRUCT column is not a message field" % where)
            return
        nested = [n for n in desc.nested_type if field.type_name.split(".")[-1] == n.name]
        if len(nested) != 1:
            fail("%s: nested type %s not found in the descriptor" % (where, field.type_name))
            return
        members = split_top(delta[7:-1])
        if len(members) != len(nested[0].field):
            fail("%s: STRUCT has %d members, message %d fields" % (where, len(members), len(nested[0].field)))
        for m, f in zip(members, nested[0].field):
            name, mtype = [x.strip() for x in m.split(":", 1)]
            if name.strip("`") != f.name:
                fail("%s: member %s vs field %s" % (where, name, f.name))
            check_type(where + "." + f.name, mtype, f, nested[0])
        return
    want = "TYPE_STRING" if delta.startswith("DECIMAL") else DELTA_TO_PROTO.get(delta)
    got = FD.Type.Name(field.type)
    if want != got:
        fail("%s: Delta type %s but protobuf type %s" % (where, delta, got))


def check_ddl(ddl, desc):
    """Compare the target_ddl() column list with the record descriptor."""
    body = ddl[ddl.index("(") + 1:]
    cols = []
    for line in body.splitlines():
        line = re.sub(r"\s+--.*$", "", line).strip().rstrip(",")
        m = re.match(r"^`?([A-Za-z_][A-Za-z0-9_]*)`?\s+(.+?)(\s+NOT NULL)?(\s+COMMENT\s+'.*')?$", line)
        if line.startswith(")"):
            break               # the table's clauses follow (TBLPROPERTIES)
        if not line or not m:
            continue
        cols.append((m.group(1), m.group(2).strip(), bool(m.group(3))))
    fields = list(desc.field)
    if [c[0] for c in cols] != [f.name for f in fields]:
        fail("target_ddl columns %s != descriptor fields %s" % ([c[0] for c in cols], [f.name for f in fields]))
        return
    FD = descriptor_pb2.FieldDescriptorProto
    for (name, delta, notnull), f in zip(cols, fields):
        if notnull != (f.label == FD.LABEL_REQUIRED):
            fail("column %s: NOT NULL in DDL is %s but label is %s" % (name, notnull, FD.Label.Name(f.label)))
        check_type(name, delta, f, desc)
    return len(cols)


def main():
    proto_dir, changes_file, expected_file, ddl_file = sys.argv[1:5]
    pb = load_output_proto(proto_dir)
    expected = json.load(open(expected_file))
    ddl = open(ddl_file).read()
    pool = descriptor_pool.DescriptorPool()

    classes = {}
    versions = 0
    checked = 0
    ddl_checked = False
    txn = None
    for line in open(changes_file):
        line = line.strip()
        if not line:
            continue
        msg = pb.Message.FromString(base64.b64decode(line))
        kind = msg.WhichOneof("kind")
        if kind == "begin":
            if txn is not None:
                fail("Begin inside a transaction")
            txn = {"begin": msg.begin, "changes": 0}
        elif kind == "commit":
            if txn is None:
                fail("Commit without Begin")
                continue
            c = msg.commit
            if c.xid != txn["begin"].xid or c.commit_lsn != txn["begin"].final_lsn:
                fail("Commit xid/lsn %d/%d differ from Begin's %d/%d" % (c.xid, c.commit_lsn, txn["begin"].xid, txn["begin"].final_lsn))
            if c.end_lsn <= c.commit_lsn:
                fail("Commit end_lsn %d not after commit_lsn %d" % (c.end_lsn, c.commit_lsn))
            if c.changes != txn["changes"]:
                fail("Commit.changes %d but %d Change messages" % (c.changes, txn["changes"]))
            txn = None
        elif kind == "relation":
            r = msg.relation
            versions += 1
            classes[r.relid] = record_class(pool, r.relid, versions, r.descriptor_proto)
            desc = classes[r.relid][0]
            if [c.name for c in r.columns] != [f.name for f in desc.field]:
                fail("Relation.columns %s differ from descriptor fields" % [c.name for c in r.columns])
            if r.table_name == "rt" and not ddl_checked:
                check_ddl(ddl, desc)
                ddl_checked = True
        elif kind == "change":
            ch = msg.change
            if txn is None:
                fail("Change outside a transaction")
                continue
            if ch.relid not in classes:
                fail("Change for relid %d before its Relation message" % ch.relid)
                continue
            rec = to_python(classes[ch.relid][1].FromString(ch.record))
            ctype = pb.ChangeType.Name(ch.type).lower()
            b = txn["begin"]
            if rec.get("_change_type") != ctype:
                fail("_change_type %r but Change.type %s" % (rec.get("_change_type"), ctype))
            if rec.get("_seq") != txn["changes"]:
                fail("_seq %r, want %d" % (rec.get("_seq"), txn["changes"]))
            if rec.get("_commit_lsn") != b.final_lsn or rec.get("_xid") != b.xid \
                    or rec.get("_commit_timestamp") != b.commit_time:
                fail("record metadata %r disagrees with Begin" % {k: rec.get(k) for k in ("_commit_lsn", "_xid", "_commit_timestamp")})
            txn["changes"] += 1
            check_record(ctype, rec, expected, ctype in ("update_preimage", "delete"))
            checked += 1
    if txn is not None:
        fail("output ends inside a transaction")
    if not ddl_checked:
        fail("no Relation message for table rt")
    want = sum(len(v) for v in expected.values())
    if checked != want:
        fail("%d records decoded, %d expected" % (checked, want))
    for e in errors:
        print("MISMATCH: " + e)
    print("roundtrip: %d records checked" % checked)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
