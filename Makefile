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

OBJS = \
	src/decoder.o \
	src/publication.o \
	src/encoder.o \
	src/typemap.o \
	src/render.o \
	src/catalog.o \
	src/lifecycle.o \
	src/schema.o \
	src/launcher.o \
	src/worker.o \
	src/sender.o \
	src/snapshot.o \
	src/grpc.o \
	src/auth.o \
	src/token_reply.o \
	$(PB_SRCS:.c=.o)

TAP_TESTS = 1

DATA = sql/$(EXTENSION)--$(EXTVERSION).sql

# Every sql/*.sql but the extension script is a pg_regress test.
REGRESS = $(patsubst sql/%.sql,%,$(sort $(filter-out sql/$(EXTENSION)--%,$(wildcard sql/*.sql))))
REGRESS_OPTS = --temp-instance=tmp_check --temp-config=test/zerobus.conf \
	--load-extension=$(EXTENSION)

PG_CPPFLAGS = -I$(srcdir)/src -I$(srcdir)/src/pb -I$(libpq_srcdir)
SHLIB_LINK = -lprotobuf-c -lcurl
# libpq, only to parse and check conninfo strings (PQconninfoParse)
SHLIB_LINK_INTERNAL = $(libpq)

EXTRA_CLEAN = src/pb results regression.diffs regression.out tmp_check

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

src/pb/%.pb-c.c src/pb/%.pb-c.h: proto/%.proto
	@mkdir -p src/pb
	protoc-c --proto_path=proto --c_out=src/pb $<

$(OBJS): $(PB_HDRS) src/zerobus.h src/compat.h
src/decoder.o src/publication.o: src/publication.h
src/grpc.o: src/grpc.h
src/auth.o: src/auth.h src/token_reply.h
src/token_reply.o: src/token_reply.h
src/schema.o src/catalog.o src/sender.o src/worker.o: src/schema.h
src/catalog.o src/lifecycle.o src/launcher.o src/worker.o src/sender.o: src/stream.h
src/worker.o src/sender.o src/snapshot.o: src/worker.h
src/worker.o src/snapshot.o src/catalog.o src/lifecycle.o: src/snapshot.h
src/catalog.o src/lifecycle.o src/launcher.o src/schema.o: src/catalog.h
src/sender.o: src/grpc.h src/auth.h
