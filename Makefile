# Makefile for the zerobus extension (PGXS)
#
#   make && make install           build and install
#   make installcheck              pg_regress suites on a temporary instance
#   make prove_installcheck        TAP tests (t/*.pl)
#   ./scripts/test.sh              everything, as CI runs it
#
# protobuf-c code for proto/*.proto is generated at build time into src/pb/
# by protoc-c (Debian package protobuf-c-compiler); it is never committed.

EXTENSION = zerobus
MODULE_big = zerobus
EXTVERSION = $(shell grep default_version $(EXTENSION).control | sed -e "s/default_version[[:space:]]*=[[:space:]]*'\([^']*\)'/\1/")

PROTOS = proto/zerobus_service.proto proto/zerobus_output.proto
PB_SRCS = $(patsubst proto/%.proto,src/pb/%.pb-c.c,$(PROTOS))
PB_HDRS = $(PB_SRCS:.c=.h)

# The sources, by the process they run in (see README.md, "Layout"):
#   src/plugin  the output plugin, inside a walsender or a decoding backend
#   src/api     the SQL functions, inside backends
#   src/worker  the launcher and the stream workers
#   src/client  the Zerobus client the workers use (gRPC, OAuth)
#   src/common  what all of them share (module setup, wire format, encoding)
SRCDIRS = src/common src/plugin src/api src/worker src/client
OBJS = \
	src/common/module.o \
	src/common/shared.o \
	src/common/store.o \
	src/common/options.o \
	src/common/url.o \
	src/common/wire.o \
	src/common/typemap.o \
	src/common/encoder.o \
	src/common/delta_schema.o \
	src/plugin/decoder.o \
	src/plugin/publication.o \
	src/plugin/render.o \
	src/api/streams.o \
	src/api/lifecycle.o \
	src/api/target_ddl.o \
	src/api/stat.o \
	src/worker/cluster_launcher.o \
	src/api/targets.o \
	src/worker/launcher.o \
	src/worker/worker.o \
	src/worker/reactions.o \
	src/worker/initial_snapshot.o \
	src/worker/evolve.o \
	src/client/sender.o \
	src/client/shards.o \
	src/client/grpc.o \
	src/client/grpc_reader.o \
	src/client/auth.o \
	src/client/token.o \
	src/client/token_reply.o \
	src/client/statement.o \
	$(PB_SRCS:.c=.o)

TAP_TESTS = 1

# The install script of 0.1.0 and the update scripts from it: CREATE
# EXTENSION runs them in turn up to default_version (as pg_stat_statements
# does), and ALTER EXTENSION zerobus UPDATE runs those after the installed
# version.  A released script is never edited: a change is a new update
# script (see README.md, "Upgrading").
DATA = $(sort $(wildcard sql/$(EXTENSION)--*.sql))

# Every sql/*.sql but the extension script is a pg_regress test.
REGRESS = $(patsubst sql/%.sql,%,$(sort $(filter-out sql/$(EXTENSION)--%,$(wildcard sql/*.sql))))
REGRESS_OPTS = --temp-instance=tmp_check --temp-config=test/zerobus.conf \
	--load-extension=$(EXTENSION)

# PostgreSQL's and protoc-c's headers are system headers here, so that the
# warnings below judge our code only.
PG_CPPFLAGS = $(addprefix -I$(srcdir)/,$(SRCDIRS)) -isystem $(srcdir)/src/pb \
	-isystem $(includedir_server) -isystem $(includedir_internal) -I$(libpq_srcdir) \
	-DZEROBUS_VERSION='"$(EXTVERSION)"'
# On top of PostgreSQL's own warnings.  Unused parameters are the rule in
# callbacks whose signatures PostgreSQL and libcurl fix, and tables whose
# rows leave optional trailing fields out are PostgreSQL's style.  Header
# dependencies are generated (-MMD) and read back below.  The test command
# adds -Werror.
PG_CFLAGS = -Wextra -Wno-unused-parameter -Wno-missing-field-initializers \
	-MMD -MP
SHLIB_LINK = -lprotobuf-c -lcurl
# libpq, only to parse and check conninfo strings (PQconninfoParse)
SHLIB_LINK_INTERNAL = $(libpq)

EXTRA_CLEAN = src/pb $(OBJS:.o=.d) results regression.diffs regression.out tmp_check

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

src/pb/%.pb-c.c src/pb/%.pb-c.h: proto/%.proto
	@mkdir -p src/pb
	protoc-c --proto_path=proto --c_out=src/pb $<

# The field numbers of the plugin's framing, for the C that writes and reads
# it by hand (python3-protobuf, like test/roundtrip.py)
ZB_PYTHON ?= /usr/bin/python3
src/pb/zerobus_output_fields.h: proto/zerobus_output.proto scripts/proto_fields.py
	@mkdir -p src/pb
	$(ZB_PYTHON) $(srcdir)/scripts/proto_fields.py $(srcdir)/proto zerobus_output.proto ZB_OUT > $@.tmp
	mv $@.tmp $@

# protoc-c's headers and the generated field numbers before any object or
# LLVM bitcode file; every other header dependency comes from the compiler
# (-MMD).
$(OBJS) $(OBJS:.o=.bc): $(PB_HDRS) src/pb/zerobus_output_fields.h
-include $(OBJS:.o=.d)

# protoc-c's own code, not ours to fix: its initializers nest unbraced
$(PB_SRCS:.c=.o): override CFLAGS += -Wno-missing-braces
