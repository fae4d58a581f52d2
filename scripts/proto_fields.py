#!/usr/bin/python3
"""Write the C names of the field numbers and enum values of a .proto file.

Usage: proto_fields.py PROTO_DIR FILE.proto PREFIX > header.h

The output plugin encodes its messages by hand and the worker, the renderer
and the column stripper read them by hand, so every field number they use
comes from here, generated from the .proto by the build (Makefile): C and
the contract cannot disagree.  For message Foo with field bar = 3 the header
has PREFIX_FOO_BAR 3; for enum value X of enum Kind, PREFIX_KIND_X (or
PREFIX_X when the value's name already starts with the enum's).

protoc parses the .proto (it is the reference), google.protobuf
(python3-protobuf) reads its descriptors.
"""

import os
import re
import subprocess
import sys
import tempfile

from google.protobuf import descriptor_pb2


def snake(name):
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).upper()


def main():
    proto_dir, proto, prefix = sys.argv[1:4]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "set.pb")
        subprocess.run(["protoc", "--proto_path=" + proto_dir,
                        "--descriptor_set_out=" + out,
                        os.path.join(proto_dir, proto)], check=True)
        with open(out, "rb") as f:
            fds = descriptor_pb2.FileDescriptorSet.FromString(f.read())

    guard = prefix + "_FIELDS_H"
    lines = ["/* Generated from proto/%s by scripts/proto_fields.py: do not edit. */" % proto,
             "#ifndef " + guard, "#define " + guard, ""]
    for file in fds.file:
        for msg in file.message_type:
            lines.append("/* message %s */" % msg.name)
            for field in msg.field:
                lines.append("#define %s_%s_%s %d" % (prefix, snake(msg.name),
                                                      field.name.upper(), field.number))
            lines.append("")
        for enum in file.enum_type:
            lines.append("/* enum %s */" % enum.name)
            enum_prefix = snake(enum.name)
            for value in enum.value:
                name = value.name
                if not name.startswith(enum_prefix + "_"):
                    name = enum_prefix + "_" + name
                lines.append("#define %s_%s %d" % (prefix, name, value.number))
            lines.append("")
    lines.append("#endif")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
