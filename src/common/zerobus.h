/*-------------------------------------------------------------------------
 *
 * zerobus.h
 *	  Declarations shared by the modules of the zerobus extension: record
 *	  plans and the tuple encoder (encoder.c), the type mapping
 *	  (typemap.c), the text renderer (render.c), target_ddl's CREATE TABLE
 *	  (target_ddl.c) and Delta identifiers (delta_schema.c).
 *
 * Every exported symbol starts with zerobus_ (or Zerobus for types).
 *
 * src/common/zerobus.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ZEROBUS_H
#define ZEROBUS_H

#include "postgres.h"

#include "access/htup.h"
#include "access/tupdesc.h"
#include "lib/stringinfo.h"
#include "nodes/bitmapset.h"
#include "utils/guc.h"
#include "utils/relcache.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "wire.h"

/*
 * The user-agent of our requests (gRPC calls, token requests): the
 * official SDKs identify themselves there, and so do we.  ZEROBUS_VERSION
 * is the extension's version (default_version of zerobus.control), given by
 * the Makefile.
 */
#define ZEROBUS_USER_AGENT "zerobus-postgres/" ZEROBUS_VERSION " PostgreSQL/" PG_VERSION

/*
 * Protobuf wire scalar kinds a PostgreSQL value can be encoded as.  The
 * Delta type of a column determines its kind (see zerobus-wire.md).
 */
typedef enum ZerobusProtoKind
{
	ZB_PROTO_BOOL,
	ZB_PROTO_INT32,
	ZB_PROTO_INT64,
	ZB_PROTO_FLOAT,
	ZB_PROTO_DOUBLE,
	ZB_PROTO_STRING,
	ZB_PROTO_BYTES,
	ZB_PROTO_MESSAGE			/* STRUCT: nested message */
} ZerobusProtoKind;

/*
 * How one PostgreSQL type is sent: its Delta type, its protobuf kind and the
 * conversion applied to a Datum.  A tree: arrays point at their element type
 * (repeated field), composites at their member types (nested message).
 *
 * Built by zerobus_type_build() in a caller-supplied memory context and
 * never modified afterwards, so it can be shared by cached plans.
 */
typedef struct ZerobusType ZerobusType;

typedef struct ZerobusField
{
	char	   *name;			/* member / column name */
	AttrNumber	attnum;			/* attribute number in its tuple descriptor */
	int			field_number;	/* protobuf field number */
	ZerobusType *type;
	char	   *pg_type;		/* format_type of the declared type (domain
								 * name for domains) */
} ZerobusField;

struct ZerobusType
{
	Oid			typid;			/* after domain flattening */
	int32		typmod;
	char	   *delta_type;		/* e.g. "BIGINT", "ARRAY<INT>", "DECIMAL(10,2)" */
	ZerobusProtoKind kind;		/* wire kind of one value (of one element) */
	bool		is_array;		/* repeated field of elem */
	bool		as_text;		/* no dedicated mapping: sent as the type's
								 * text output (enums are mapped, not
								 * as_text) */
	int			conversion;		/* typemap.c private: how to convert a Datum */
	ZerobusType *elem;			/* element type when is_array */
	int			nfields;		/* composite members when kind ==
								 * ZB_PROTO_MESSAGE */
	ZerobusField *fields;
	char	   *message_name;	/* nested message name for composites */
	FmgrInfo	out_func;		/* output function, when the conversion uses
								 * it (as_text types, numeric, jsonb, enums,
								 * "char") */
	int16		typlen;			/* of typid, for array elements */
	bool		typbyval;
	char		typalign;
	TupleDesc	tupdesc;		/* composites: copy of the row type */
};

/*
 * The CDC metadata columns appended to every record (design.md, "Record
 * shape").  Their field numbers follow the highest possible attnum.
 */
#define ZB_META_FIELD_BASE			2001
#define ZB_META_CHANGE_TYPE			0
#define ZB_META_COMMIT_LSN			1
#define ZB_META_COMMIT_TIMESTAMP	2
#define ZB_META_XID					3
#define ZB_META_SEQ					4
#define ZB_META_UNCHANGED_COLUMNS	5
#define ZB_META_ARRAY_NULLS			6	/* only in records with arrays */
#define ZB_META_NCOLUMNS			7

extern const char *const zerobus_meta_names[ZB_META_NCOLUMNS];
extern const char *const zerobus_meta_delta_types[ZB_META_NCOLUMNS];
extern const ZerobusType zerobus_meta_types[ZB_META_NCOLUMNS];

/*
 * A record plan: everything needed to encode rows of one relation (with one
 * column list) as the target table's record message.  Built once per
 * relation and cached by the caller until the relation or one of its types
 * changes.  All of it lives in plan->cxt; deleting that context frees it.
 */
typedef struct ZerobusRecordPlan
{
	MemoryContext cxt;
	Oid			relid;
	char	   *schema_name;
	char	   *table_name;
	char	   *message_name;	/* name of the record message */
	char		replident;		/* pg_class.relreplident */
	int			ncolumns;		/* published source columns */
	ZerobusField *columns;		/* in attnum order; field_number = attnum */
	bool	   *is_key;			/* per column: part of the replica identity */
	char	   *descriptor;		/* serialized DescriptorProto */
	int			descriptor_len;
	bool		text_output;	/* some value is sent as its type's text
								 * output, computed under pinned settings */
	ZerobusType *array_nulls_type;	/* _array_nulls, with its nested message
									 * named uniquely in this record; NULL
									 * without arrays */
} ZerobusRecordPlan;

/*
 * The number of metadata columns of plan's records: all of them when some
 * column holds arrays (_array_nulls, the last), one fewer otherwise.
 */
static inline int
zerobus_plan_nmeta(const ZerobusRecordPlan *plan)
{
	return plan->array_nulls_type != NULL ? ZB_META_NCOLUMNS :
		ZB_META_NCOLUMNS - 1;
}

/* The type of metadata column i (< zerobus_plan_nmeta()) of plan's records. */
static inline const ZerobusType *
zerobus_meta_type(const ZerobusRecordPlan *plan, int i)
{
	return i == ZB_META_ARRAY_NULLS ? plan->array_nulls_type :
		&zerobus_meta_types[i];
}

/*
 * The change kinds of a record, as written in _change_type and, but for
 * snapshots, in the plugin's Change.type (zerobus.output.ChangeType).
 */
typedef enum ZerobusChangeKind
{
	ZB_CHANGE_INSERT = ZB_OUT_CHANGE_TYPE_INSERT,
	ZB_CHANGE_UPDATE_PREIMAGE = ZB_OUT_CHANGE_TYPE_UPDATE_PREIMAGE,
	ZB_CHANGE_UPDATE_POSTIMAGE = ZB_OUT_CHANGE_TYPE_UPDATE_POSTIMAGE,
	ZB_CHANGE_DELETE = ZB_OUT_CHANGE_TYPE_DELETE,
	ZB_CHANGE_SNAPSHOT			/* a row read by an initial snapshot */
} ZerobusChangeKind;

extern const char *const zerobus_change_names[6];	/* index by kind */

/* Metadata of one record. */
typedef struct ZerobusChangeMeta
{
	ZerobusChangeKind kind;
	XLogRecPtr	commit_lsn;
	TimestampTz commit_time;
	TransactionId xid;
	int64		seq;
} ZerobusChangeMeta;

/*
 * Where the encoder collects the _array_nulls entries of one record: each
 * array value sent without some of its content (a NULL array, or an array
 * whose NULL elements were left out), with the path to it.
 */
typedef struct ZerobusArrayNulls
{
	StringInfoData entries;		/* encoded _array_nulls fields */
	int			marked;			/* arrays with NULL elements left out */
} ZerobusArrayNulls;

/* typemap.c */
extern ZerobusType *zerobus_type_build(Oid typid, int32 typmod,
									   MemoryContext cxt);
extern void zerobus_value_encode(StringInfo out, const ZerobusType *type,
								 int field_number, Datum value,
								 const char *column, ZerobusArrayNulls *nulls);
extern void zerobus_array_nulls_add_null(ZerobusArrayNulls *nulls,
										 const char *column);
extern bool zerobus_type_has_text_output(const ZerobusType *type);
extern bool zerobus_type_has_arrays(const ZerobusType *type);

/* encoder.c */
extern ZerobusRecordPlan *zerobus_plan_build(Relation rel, Bitmapset *columns,
											 MemoryContext parent);
extern void zerobus_plan_free(ZerobusRecordPlan *plan);
extern int	zerobus_encode_record(StringInfo out,
								  const ZerobusRecordPlan *plan,
								  TupleDesc tupdesc, HeapTuple tuple,
								  const ZerobusChangeMeta *meta);
extern void zerobus_pin_output_settings(GucAction action);

/*
 * render.c: the text and JSON renderings of an encoded record, decoded from
 * the record bytes themselves.  With include_volatile false the metadata that
 * differs from run to run (_commit_lsn, _commit_timestamp, _xid) is left out,
 * which keeps regression output stable.
 */
extern void zerobus_render_record(StringInfo out,
								  const ZerobusRecordPlan *plan,
								  const char *data, int len, bool json,
								  bool include_volatile);

/* target_ddl.c, delta_schema.c */
extern char *zerobus_target_ddl_text(const ZerobusRecordPlan *plan,
									 const char *target_table, bool mirror);
extern Bitmapset *zerobus_published_columns(const char *publication,
											Oid relid);
extern char *zerobus_mirror_table_name(const char *change_table);
extern char *zerobus_mirror_create_text(Relation rel,
										const ZerobusRecordPlan *plan,
										const char *mirror, const char **why);
extern bool zerobus_is_identifier(const char *name);
extern const char *zerobus_delta_identifier(const char *name);

/* url.c: the check of a stream's URLs */
typedef enum ZerobusUrlProblem
{
	ZB_URL_OK,
	ZB_URL_SCHEME,				/* neither https:// nor http:// */
	ZB_URL_FORM,				/* not scheme, host, optional port */
	ZB_URL_PLAINTEXT			/* http:// but not insecure to a loopback host */
} ZerobusUrlProblem;

extern ZerobusUrlProblem zerobus_url_check(const char *url, bool insecure);
extern const char *zerobus_url_problem_detail(ZerobusUrlProblem problem);

/*
 * The records and the plugin's messages count time from the Unix epoch
 * (1970-01-01), PostgreSQL from its own (2000-01-01).
 */
#define ZB_UNIX_EPOCH_DAYS	((int32) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE))
#define ZB_UNIX_EPOCH_USECS ((int64) ZB_UNIX_EPOCH_DAYS * USECS_PER_DAY)

/* Microseconds since the Unix epoch of a PostgreSQL timestamp */
static inline int64
zerobus_unix_micros(TimestampTz ts)
{
	return ts + ZB_UNIX_EPOCH_USECS;
}

/* The PostgreSQL timestamp of microseconds since the Unix epoch */
static inline TimestampTz
zerobus_from_unix_micros(int64 micros)
{
	return micros - ZB_UNIX_EPOCH_USECS;
}

#endif							/* ZEROBUS_H */
