/*-------------------------------------------------------------------------
 *
 * typemap.c
 *	  Mapping of PostgreSQL types to Delta types and protobuf wire values.
 *
 * zerobus_type_build() decides, once per column type, how values of that
 * type travel: the Delta column type of the target table, the protobuf kind
 * of the record field and the conversion applied to each Datum.
 * zerobus_value_encode() then applies that decision to one value.
 *
 * The mapping (PostgreSQL -> Delta -> protobuf field, value on the wire):
 *
 *	bool				BOOLEAN			bool		0 / 1
 *	int2				SMALLINT		int32
 *	int4				INT				int32
 *	int8				BIGINT			int64
 *	float4				FLOAT			float		IEEE single; NaN, +-Infinity kept
 *	float8				DOUBLE			double		IEEE double; NaN, +-Infinity kept
 *	numeric(p,s)		DECIMAL(p,s)	string		exact text from numeric_out;
 *						(0 <= s <= p <= 38)			NaN is sent as "NaN", which the
 *													target rejects (the stream stops
 *													with the server's error)
 *	numeric (other)		STRING			string		exact text, also NaN, Infinity
 *	text, varchar, bpchar, name, "char"
 *						STRING			string		bpchar keeps its padding
 *	bytea				BINARY			bytes		raw bytes
 *	date				DATE			int32		days since 1970-01-01;
 *													-infinity/infinity are
 *													INT32_MIN/INT32_MAX
 *	timestamptz			TIMESTAMP		int64		microseconds since 1970-01-01
 *													00:00:00 UTC
 *	timestamp			TIMESTAMP_NTZ	int64		microseconds of the wall clock
 *													since 1970-01-01 00:00:00;
 *													-infinity/infinity of both are
 *													INT64_MIN/INT64_MAX; a value after
 *													294247-01-10 cannot be expressed
 *													and is an error
 *	time				STRING			string		"HH:MM:SS[.ffffff]"
 *	timetz				STRING			string		"HH:MM:SS[.ffffff]+HH[:MM[:SS]]"
 *	interval			STRING			string		ISO 8601 "P1Y2M3DT4H5M6.5S",
 *													each part with its own sign, as
 *													intervalstyle iso_8601 prints it
 *	uuid				STRING			string		canonical lowercase text
 *	json				VARIANT			string		JSON text as stored
 *	jsonb				VARIANT			string		canonical jsonb output
 *	enum				STRING			string		label
 *	domain				as its base type, with the domain's typmod
 *	T[]					ARRAY<T>		repeated T	numeric scalars packed; arrays of
 *													any dimension flattened in
 *													row-major order; NULL elements
 *													are left out and their positions
 *													named in _array_nulls, as is a
 *													NULL array (both arrive as an
 *													empty repeated field otherwise)
 *	composite			STRUCT<...>		message		members optional, nested
 *													composites and arrays of
 *													composites included
 *	anything else		STRING			string		the type's text output (as_text);
 *													also arrays whose elements are
 *													arrays (a domain over an array)
 *
 * Fractions of seconds are written without trailing zeros.  Every value is
 * independent of DateStyle, IntervalStyle, TimeZone and extra_float_digits
 * except the text output of "anything else" types, which the encoder
 * computes under fixed settings (see encoder.c).  Strings are converted from
 * the database encoding to UTF-8.
 *
 * src/common/typemap.c
 *
 *-------------------------------------------------------------------------
 */
#include "zerobus.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/arrayaccess.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"
#include "utils/uuid.h"

/* Values of ZerobusType.conversion */
enum
{
	ZB_CONV_BOOL,
	ZB_CONV_INT2,
	ZB_CONV_INT4,
	ZB_CONV_INT8,
	ZB_CONV_FLOAT4,
	ZB_CONV_FLOAT8,
	ZB_CONV_TEXT,				/* text-like varlena, sent as is */
	ZB_CONV_NAME,
	ZB_CONV_BYTEA,
	ZB_CONV_DATE,
	ZB_CONV_TIMESTAMP,			/* timestamp and timestamptz alike */
	ZB_CONV_TIME,
	ZB_CONV_TIMETZ,
	ZB_CONV_INTERVAL,
	ZB_CONV_UUID,
	ZB_CONV_OUTPUT,				/* the type's output function */
	ZB_CONV_ARRAY,
	ZB_CONV_COMPOSITE
};

static void type_fill(ZerobusType *t, Oid typid, int32 typmod,
					  MemoryContext cxt);

/*
 * Build the ZerobusType tree for values of (typid, typmod), allocated in cxt.
 *
 * Composite types are looked up in the type cache; the caller must rebuild
 * the tree when the type changes (the plan cache of the decoder does that on
 * relcache invalidation).  Raises an error for a composite member whose name
 * cannot be a protobuf field name.
 */
ZerobusType *
zerobus_type_build(Oid typid, int32 typmod, MemoryContext cxt)
{
	ZerobusType *t = MemoryContextAllocZero(cxt, sizeof(ZerobusType));

	check_stack_depth();
	type_fill(t, typid, typmod, cxt);
	return t;
}

/* A scalar mapping with a dedicated conversion. */
static void
type_set(ZerobusType *t, const char *delta_type, ZerobusProtoKind kind,
		 int conversion)
{
	t->delta_type = (char *) delta_type;
	t->kind = kind;
	t->conversion = conversion;
}

/* A string sent as the type's output function writes it. */
static void
type_output(ZerobusType *t, const char *delta_type, MemoryContext cxt)
{
	Oid			outfunc;
	bool		isvarlena;

	getTypeOutputInfo(t->typid, &outfunc, &isvarlena);
	fmgr_info_cxt(outfunc, &t->out_func, cxt);
	type_set(t, delta_type, ZB_PROTO_STRING, ZB_CONV_OUTPUT);
}

/*
 * Fall back to the type's text output: the mapping for every type without
 * a dedicated one.
 */
static void
type_as_text(ZerobusType *t, MemoryContext cxt)
{
	type_output(t, "STRING", cxt);
	t->as_text = true;
}

/*
 * numeric: DECIMAL(p,s) when the typmod fits Delta's DECIMAL, else STRING.
 * PostgreSQL 15 allows negative scales and scales above the precision,
 * which DECIMAL cannot hold.
 */
static void
type_numeric(ZerobusType *t, MemoryContext cxt)
{
	type_output(t, "STRING", cxt);
	if (t->typmod >= (int32) VARHDRSZ)
	{
		int32		packed = t->typmod - VARHDRSZ;
		int			precision = (packed >> 16) & 0xFFFF;
		int			scale = ((packed & 0x7FF) ^ 1024) - 1024;

		if (precision >= 1 && precision <= 38 && scale >= 0 &&
			scale <= precision)
			t->delta_type = MemoryContextStrdup(cxt,
												psprintf("DECIMAL(%d,%d)",
														 precision, scale));
	}
}

/*
 * Arrays: ARRAY<T> of the element mapping.  Protobuf has no repeated
 * repeated field, so an element that is itself an array (possible through
 * a domain over an array type) sends the whole value as text.
 */
static void
type_array(ZerobusType *t, Oid elemtype, MemoryContext cxt)
{
	ZerobusType *elem = zerobus_type_build(elemtype, t->typmod, cxt);

	if (elem->is_array)
	{
		type_as_text(t, cxt);
		return;
	}
	t->elem = elem;
	t->is_array = true;
	t->kind = elem->kind;
	t->conversion = ZB_CONV_ARRAY;
	t->delta_type = MemoryContextStrdup(cxt,
										psprintf("ARRAY<%s>",
												 elem->delta_type));
}

/*
 * Composites: STRUCT<member: T, ...>, a nested message whose field numbers
 * are the members' attribute numbers.  The nested message name starts as
 * the type name; the record plan makes it unique within its descriptor.
 */
static void
type_composite(ZerobusType *t, MemoryContext cxt)
{
	TupleDesc	tupdesc = lookup_rowtype_tupdesc(t->typid, -1);
	StringInfoData delta;
	char	   *typname;
	int			i;

	PG_TRY();
	{
		t->tupdesc = CreateTupleDescCopy(tupdesc);
	}
	PG_FINALLY();
	{
		ReleaseTupleDesc(tupdesc);
	}
	PG_END_TRY();

	t->kind = ZB_PROTO_MESSAGE;
	t->conversion = ZB_CONV_COMPOSITE;
	typname = get_rel_name(get_typ_typrelid(t->typid));
	t->message_name = MemoryContextStrdup(cxt, typname ? typname : "composite");
	t->fields = MemoryContextAllocZero(cxt,
									   sizeof(ZerobusField) *
									   Max(t->tupdesc->natts, 1));
	initStringInfo(&delta);
	appendStringInfoString(&delta, "STRUCT<");
	for (i = 0; i < t->tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(t->tupdesc, i);
		ZerobusField *f;

		if (att->attisdropped)
			continue;
		if (!zerobus_is_identifier(NameStr(att->attname)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_NAME),
					 errmsg("attribute \"%s\" of type %s cannot be sent to Zerobus",
							NameStr(att->attname),
							format_type_be(t->typid)),
					 errdetail("Protobuf field names consist of ASCII letters, digits and underscores and do not start with a digit."),
					 errhint("Rename the attribute with ALTER TYPE ... RENAME ATTRIBUTE.")));
		f = &t->fields[t->nfields++];
		f->name = MemoryContextStrdup(cxt, NameStr(att->attname));
		f->attnum = att->attnum;
		f->field_number = att->attnum;
		f->pg_type = MemoryContextStrdup(cxt,
										 format_type_with_typemod(att->atttypid,
																  att->atttypmod));
		f->type = zerobus_type_build(att->atttypid, att->atttypmod, cxt);
		appendStringInfo(&delta, "%s%s: %s", t->nfields > 1 ? ", " : "",
						 zerobus_delta_identifier(f->name), f->type->delta_type);
	}
	appendStringInfoChar(&delta, '>');
	t->delta_type = MemoryContextStrdup(cxt, delta.data);
	pfree(delta.data);
}

/*
 * Fill t for (typid, typmod): flatten domains, then pick the mapping.
 */
static void
type_fill(ZerobusType *t, Oid typid, int32 typmod, MemoryContext cxt)
{
	Oid			elemtype;

	t->typid = getBaseTypeAndTypmod(typid, &typmod);
	t->typmod = typmod;
	get_typlenbyvalalign(t->typid, &t->typlen, &t->typbyval, &t->typalign);

	switch (t->typid)
	{
		case BOOLOID:
			type_set(t, "BOOLEAN", ZB_PROTO_BOOL, ZB_CONV_BOOL);
			return;
		case INT2OID:
			type_set(t, "SMALLINT", ZB_PROTO_INT32, ZB_CONV_INT2);
			return;
		case INT4OID:
			type_set(t, "INT", ZB_PROTO_INT32, ZB_CONV_INT4);
			return;
		case INT8OID:
			type_set(t, "BIGINT", ZB_PROTO_INT64, ZB_CONV_INT8);
			return;
		case FLOAT4OID:
			type_set(t, "FLOAT", ZB_PROTO_FLOAT, ZB_CONV_FLOAT4);
			return;
		case FLOAT8OID:
			type_set(t, "DOUBLE", ZB_PROTO_DOUBLE, ZB_CONV_FLOAT8);
			return;
		case NUMERICOID:
			type_numeric(t, cxt);
			return;
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
			type_set(t, "STRING", ZB_PROTO_STRING, ZB_CONV_TEXT);
			return;
		case NAMEOID:
			type_set(t, "STRING", ZB_PROTO_STRING, ZB_CONV_NAME);
			return;
		case BYTEAOID:
			type_set(t, "BINARY", ZB_PROTO_BYTES, ZB_CONV_BYTEA);
			return;
		case DATEOID:
			type_set(t, "DATE", ZB_PROTO_INT32, ZB_CONV_DATE);
			return;
		case TIMESTAMPTZOID:
			type_set(t, "TIMESTAMP", ZB_PROTO_INT64, ZB_CONV_TIMESTAMP);
			return;
		case TIMESTAMPOID:
			type_set(t, "TIMESTAMP_NTZ", ZB_PROTO_INT64, ZB_CONV_TIMESTAMP);
			return;
		case TIMEOID:
			type_set(t, "STRING", ZB_PROTO_STRING, ZB_CONV_TIME);
			return;
		case TIMETZOID:
			type_set(t, "STRING", ZB_PROTO_STRING, ZB_CONV_TIMETZ);
			return;
		case INTERVALOID:
			type_set(t, "STRING", ZB_PROTO_STRING, ZB_CONV_INTERVAL);
			return;
		case UUIDOID:
			type_set(t, "STRING", ZB_PROTO_STRING, ZB_CONV_UUID);
			return;
		case JSONOID:
			type_set(t, "VARIANT", ZB_PROTO_STRING, ZB_CONV_TEXT);
			return;
		case JSONBOID:
			type_output(t, "VARIANT", cxt);
			return;
		case CHAROID:
			type_output(t, "STRING", cxt);
			return;
	}

	elemtype = get_element_type(t->typid);
	if (OidIsValid(elemtype))
		type_array(t, elemtype, cxt);
	else if (type_is_enum(t->typid))
		type_output(t, "STRING", cxt);
	else if (get_typtype(t->typid) == TYPTYPE_COMPOSITE)
		type_composite(t, cxt);
	else
		type_as_text(t, cxt);
}

/* Does t, or a type in its tree (array elements, members), satisfy pred? */
static bool
type_tree_any(const ZerobusType *t, bool (*pred) (const ZerobusType *))
{
	int			i;

	if (pred(t))
		return true;
	if (t->is_array)
		return type_tree_any(t->elem, pred);
	for (i = 0; i < t->nfields; i++)
	{
		if (type_tree_any(t->fields[i].type, pred))
			return true;
	}
	return false;
}

static bool
sends_array(const ZerobusType *t)
{
	return t->is_array;
}

static bool
sends_text_output(const ZerobusType *t)
{
	return t->as_text;
}

/* Does any part of the tree of t send arrays? */
bool
zerobus_type_has_arrays(const ZerobusType *t)
{
	return type_tree_any(t, sends_array);
}

/*
 * Does any part of the tree use a type's own text output (as_text)?  Such
 * output may depend on session settings, which the encoder then pins.
 */
bool
zerobus_type_has_text_output(const ZerobusType *t)
{
	return type_tree_any(t, sends_text_output);
}

/* ----------------------------------------------------------------
 * Value encoding
 * ----------------------------------------------------------------
 */

/* Append little-endian fixed-size bytes (float and double values). */
static inline void
put_fixed(StringInfo out, const void *value, int size)
{
#ifdef WORDS_BIGENDIAN
	const unsigned char *src = value;
	int			i;

	enlargeStringInfo(out, size);
	for (i = size - 1; i >= 0; i--)
		out->data[out->len++] = (char) src[i];
	out->data[out->len] = '\0';
#else
	appendBinaryStringInfoNT(out, value, size);
#endif
}

/*
 * Append a string field holding len bytes of s in the database encoding,
 * converted to UTF-8 as protobuf strings must be.
 */
static void
put_string(StringInfo out, int field_number, const char *s, int len)
{
	if (GetDatabaseEncoding() != PG_UTF8)
	{
		const char *utf8 = pg_server_to_any(s, len, PG_UTF8);

		if (utf8 != s)
		{
			s = utf8;
			len = strlen(utf8);
		}
	}
	zerobus_wire_put_bytes(out, field_number, s, len);
}

/*
 * Write the fractional part of a count of microseconds (0 <= usecs <
 * 1000000) as ".ffffff" without trailing zeros, or nothing when it is zero.
 * Returns the end of the written text.
 */
static char *
format_fraction(char *p, int usecs)
{
	int			digits = 6;

	if (usecs == 0)
		return p;
	while (usecs % 10 == 0)
	{
		usecs /= 10;
		digits--;
	}
	return p + sprintf(p, ".%0*d", digits, usecs);
}

/* "HH:MM:SS[.ffffff]" of a time of day in microseconds */
static char *
format_time(char *p, TimeADT time)
{
	int			hours = (int) (time / USECS_PER_HOUR);
	int			minutes = (int) ((time / USECS_PER_MINUTE) % MINS_PER_HOUR);
	int			seconds = (int) ((time / USECS_PER_SEC) % SECS_PER_MINUTE);

	p += sprintf(p, "%02d:%02d:%02d", hours, minutes, seconds);
	return format_fraction(p, (int) (time % USECS_PER_SEC));
}

/*
 * timetz: the time, then the UTC offset "+HH", with ":MM" and ":SS" only
 * when not zero.  TimeTzADT.zone counts seconds west of Greenwich.
 */
static char *
format_timetz(char *p, const TimeTzADT *value)
{
	int			offset = -value->zone;
	int			abs_offset = offset < 0 ? -offset : offset;

	p = format_time(p, value->time);
	p += sprintf(p, "%c%02d", offset < 0 ? '-' : '+',
				 abs_offset / SECS_PER_HOUR);
	if (abs_offset % SECS_PER_HOUR != 0)
	{
		p += sprintf(p, ":%02d", (abs_offset / SECS_PER_MINUTE) % MINS_PER_HOUR);
		if (abs_offset % SECS_PER_MINUTE != 0)
			p += sprintf(p, ":%02d", abs_offset % SECS_PER_MINUTE);
	}
	return p;
}

/*
 * interval as ISO 8601 "PnYnMnDTnHnMn.nS", leaving out zero parts, each
 * part signed on its own (months, days and microseconds are independent in
 * PostgreSQL), the "T" only before a time part, "PT0S" when all are zero:
 * the same text as PostgreSQL's own intervalstyle iso_8601.
 */
static char *
format_interval(char *p, const Interval *value)
{
	char	   *start = p;
	int64		time = value->time;
	int64		hours = time / USECS_PER_HOUR;
	int64		minutes = (time % USECS_PER_HOUR) / USECS_PER_MINUTE;
	int64		usecs = time % USECS_PER_MINUTE;

#ifdef INTERVAL_NOT_FINITE
	if (INTERVAL_IS_NOBEGIN(value))
		return p + sprintf(p, "-infinity");
	if (INTERVAL_IS_NOEND(value))
		return p + sprintf(p, "infinity");
#endif
	*p++ = 'P';
	if (value->month / MONTHS_PER_YEAR != 0)
		p += sprintf(p, "%dY", value->month / MONTHS_PER_YEAR);
	if (value->month % MONTHS_PER_YEAR != 0)
		p += sprintf(p, "%dM", value->month % MONTHS_PER_YEAR);
	if (value->day != 0)
		p += sprintf(p, "%dD", value->day);
	if (time == 0)
	{
		/* only date parts, or "PT0S" for a zero interval */
		if (p == start + 1)
			p += sprintf(p, "T0S");
		*p = '\0';
		return p;
	}
	*p++ = 'T';
	if (hours != 0)
		p += sprintf(p, INT64_FORMAT "H", hours);
	if (minutes != 0)
		p += sprintf(p, INT64_FORMAT "M", minutes);
	if (usecs != 0)
	{
		if (usecs < 0)
		{
			*p++ = '-';
			usecs = -usecs;
		}
		p += sprintf(p, INT64_FORMAT, usecs / USECS_PER_SEC);
		p = format_fraction(p, (int) (usecs % USECS_PER_SEC));
		*p++ = 'S';
	}
	*p = '\0';
	return p;
}

/* uuid in its canonical lowercase form */
static char *
format_uuid(char *p, const pg_uuid_t *value)
{
	static const char hex[] = "0123456789abcdef";
	int			i;

	for (i = 0; i < UUID_LEN; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		*p++ = hex[value->data[i] >> 4];
		*p++ = hex[value->data[i] & 0x0F];
	}
	return p;
}

/*
 * Can values of t be packed into one length-delimited field when repeated?
 * Only varint and fixed-size scalars can.
 */
static inline bool
conversion_is_packable(int conversion)
{
	return conversion <= ZB_CONV_FLOAT8 || conversion == ZB_CONV_DATE ||
		conversion == ZB_CONV_TIMESTAMP;
}

/*
 * The int64 sent for a timestamp or timestamptz: microseconds since 1970;
 * infinities map to the int64 extremes.
 */
static int64
timestamp_to_unix(Timestamp ts, const char *column)
{
	int64		result;

	if (TIMESTAMP_IS_NOBEGIN(ts))
		return PG_INT64_MIN;
	if (TIMESTAMP_IS_NOEND(ts))
		return PG_INT64_MAX;
	if (pg_add_s64_overflow(ts, ZB_UNIX_EPOCH_USECS, &result))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp in column \"%s\" is out of range for Zerobus",
						column),
				 errdetail("Delta timestamps are 64-bit microseconds since 1970-01-01 and end at 294247-01-10 04:00:54.775807."),
				 errhint("A change already in the WAL can only be skipped by advancing the replication slot past it.")));
	return result;
}

/*
 * Append the payload (no tag) of a packable value: a varint, or 4 or 8
 * little-endian bytes for float4 and float8.
 */
static void
put_packable(StringInfo out, const ZerobusType *t, Datum value,
			 const char *column)
{
	int64		v;

	switch (t->conversion)
	{
		case ZB_CONV_BOOL:
			v = DatumGetBool(value) ? 1 : 0;
			break;
		case ZB_CONV_INT2:
			v = DatumGetInt16(value);
			break;
		case ZB_CONV_INT4:
			v = DatumGetInt32(value);
			break;
		case ZB_CONV_INT8:
			v = DatumGetInt64(value);
			break;
		case ZB_CONV_FLOAT4:
			{
				float4		f = DatumGetFloat4(value);

				put_fixed(out, &f, sizeof(f));
				return;
			}
		case ZB_CONV_FLOAT8:
			{
				float8		f = DatumGetFloat8(value);

				put_fixed(out, &f, sizeof(f));
				return;
			}
		case ZB_CONV_DATE:
			{
				DateADT		d = DatumGetDateADT(value);

				if (DATE_IS_NOBEGIN(d))
					v = PG_INT32_MIN;
				else if (DATE_IS_NOEND(d))
					v = PG_INT32_MAX;
				else
					v = d + ZB_UNIX_EPOCH_DAYS;
				break;
			}
		case ZB_CONV_TIMESTAMP:
			v = timestamp_to_unix(DatumGetTimestamp(value), column);
			break;
		default:
			elog(ERROR, "conversion %d is not packable", t->conversion);
			return;
	}
	/* negative int32 values are sign-extended to 64 bits, as protobuf says */
	enlargeStringInfo(out, 10);
	out->len += zerobus_wire_varint_raw(out->data + out->len, (uint64) v);
	out->data[out->len] = '\0';
}

/*
 * Where the value being encoded sits in its column, kept on the C stack
 * while composites and arrays of composites are descended, so that an
 * _array_nulls entry can name the array it is about: "col", "col.member",
 * "col[3].member" (positions 1-based in the flattened array).
 */
typedef struct ValuePath
{
	const struct ValuePath *parent;
	const char *member;			/* column or member name; NULL for an element */
	int			index;			/* element position, when member is NULL */
} ValuePath;

/*
 * The _array_nulls collector of the column being encoded and the path of
 * the current value, set by zerobus_value_encode() for each column (an
 * error that unwinds through the encoder leaves them to the next call,
 * which sets them again before any use).
 */
static ZerobusArrayNulls *array_nulls;
static const ValuePath *value_path;

static void encode_value(StringInfo out, const ZerobusType *t,
						 int field_number, Datum value, const char *column);
static void close_length_delimited(StringInfo out, int start);

/* Append path (not NULL) to out: "col", "col.member", "col[3].member". */
static void
append_value_path(StringInfo out, const ValuePath *path)
{
	if (path->parent != NULL)
		append_value_path(out, path->parent);
	if (path->member == NULL)
		appendStringInfo(out, "[%d]", path->index);
	else
	{
		if (path->parent != NULL)
			appendStringInfoChar(out, '.');
		appendStringInfoString(out, path->member);
	}
}

/*
 * Add an _array_nulls entry for the array at the current path (plus member
 * when not NULL): positions are the 1-based positions of its NULL elements
 * in the flattened array, none for a NULL array.
 */
static void
add_array_nulls_entry(const char *member, const int *positions, int npositions)
{
	StringInfo	entries = &array_nulls->entries;
	ValuePath	step = {.parent = value_path, .member = member};
	StringInfoData path;
	int			start;
	int			i;

	initStringInfo(&path);
	append_value_path(&path, member != NULL ? &step : value_path);
	zerobus_wire_put_tag(entries, ZB_META_FIELD_BASE + ZB_META_ARRAY_NULLS,
						 ZB_WIRE_LEN);
	start = entries->len;
	put_string(entries, 1, path.data, path.len);
	if (npositions > 0)
	{
		int			packed;

		zerobus_wire_put_tag(entries, 2, ZB_WIRE_LEN);
		packed = entries->len;
		for (i = 0; i < npositions; i++)
			zerobus_wire_put_varint(entries, (uint64) positions[i]);
		close_length_delimited(entries, packed);
	}
	close_length_delimited(entries, start);
	pfree(path.data);
}

/* Name the NULL array in column in the record's _array_nulls. */
void
zerobus_array_nulls_add_null(ZerobusArrayNulls *nulls, const char *column)
{
	array_nulls = nulls;
	value_path = NULL;
	add_array_nulls_entry(column, NULL, 0);
}

/*
 * Turn the bytes from start to the end of out into the payload of a
 * length-delimited field by inserting its length before them.  Used where
 * the length is not known in advance (nested messages, packed varints).
 */
static void
close_length_delimited(StringInfo out, int start)
{
	char		len[10];
	int			body = out->len - start;
	int			n = zerobus_wire_varint_raw(len, (uint64) body);

	enlargeStringInfo(out, n);
	memmove(out->data + start + n, out->data + start, body);
	memcpy(out->data + start, len, n);
	out->len += n;
	out->data[out->len] = '\0';
}

/*
 * Repeated field of an array's elements, flattened in row-major order.
 * A protobuf repeated field cannot hold a NULL element: NULL elements are
 * left out and their positions named in _array_nulls (the worker applies
 * the stream's array_nulls policy to records with such arrays).
 */
static void
encode_array(StringInfo out, const ZerobusType *t, int field_number,
			 Datum value, const char *column)
{
	ArrayType  *array = DatumGetArrayTypeP(value);
	const ZerobusType *elem = t->elem;
	int			nitems = ArrayGetNItems(ARR_NDIM(array), ARR_DIMS(array));
	bool		packed = conversion_is_packable(elem->conversion);
	int		   *null_positions = NULL;
	int			nnulls = 0;
	const ValuePath *parent = value_path;
	ValuePath	step = {.parent = parent};
	array_iter	iter;
	int			tag_start = 0;
	int			start = 0;
	int			i;

	if (nitems == 0)
		return;
	if (array_contains_nulls(array))
		null_positions = palloc(sizeof(int) * nitems);

	if (packed)
	{
		tag_start = out->len;
		zerobus_wire_put_tag(out, field_number, ZB_WIRE_LEN);
		start = out->len;
	}
	array_iter_setup(&iter, (AnyArrayType *) array);
	for (i = 0; i < nitems; i++)
	{
		bool		isnull;
		Datum		item = array_iter_next(&iter, &isnull, i, elem->typlen,
										   elem->typbyval, elem->typalign);

		if (isnull)
			null_positions[nnulls++] = i + 1;
		else if (packed)
			put_packable(out, elem, item, column);
		else
		{
			step.index = i + 1;
			value_path = &step;
			encode_value(out, elem, field_number, item, column);
			value_path = parent;
		}
	}
	if (packed && out->len == start)
		out->len = tag_start;	/* every element NULL: no field at all */
	else if (packed)
		close_length_delimited(out, start);
	if (nnulls > 0)
	{
		add_array_nulls_entry(NULL, null_positions, nnulls);
		array_nulls->marked++;
		pfree(null_positions);
	}
}

/* Nested message of a composite value's non-null members. */
static void
encode_composite(StringInfo out, const ZerobusType *t, int field_number,
				 Datum value, const char *column)
{
	HeapTupleHeader header = DatumGetHeapTupleHeader(value);
	HeapTupleData tuple;
	Datum	   *values = palloc(sizeof(Datum) * t->tupdesc->natts);
	bool	   *nulls = palloc(sizeof(bool) * t->tupdesc->natts);
	const ValuePath *parent = value_path;
	ValuePath	step = {.parent = parent};
	int			start;
	int			i;

	tuple.t_len = HeapTupleHeaderGetDatumLength(header);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = header;
	heap_deform_tuple(&tuple, t->tupdesc, values, nulls);

	zerobus_wire_put_tag(out, field_number, ZB_WIRE_LEN);
	start = out->len;
	for (i = 0; i < t->nfields; i++)
	{
		const ZerobusField *f = &t->fields[i];

		if (nulls[f->attnum - 1])
		{
			if (f->type->is_array)
				add_array_nulls_entry(f->name, NULL, 0);
			continue;
		}
		step.member = f->name;
		value_path = &step;
		encode_value(out, f->type, f->field_number, values[f->attnum - 1],
					 column);
		value_path = parent;
	}
	close_length_delimited(out, start);
	pfree(values);
	pfree(nulls);
}

/*
 * Append one non-null value of type t, the whole of source column column,
 * as field field_number (for arrays, all its elements).  column also names
 * the column in error messages.  Arrays in the value sent without some of
 * their content are named in nulls (never NULL), the record's _array_nulls.
 *
 * The value must not be an unchanged on-disk TOAST pointer of a decoded
 * tuple (the encoder leaves those out); other TOAST forms are detoasted.
 * Memory allocated here is left to the caller's per-change context.
 */
void
zerobus_value_encode(StringInfo out, const ZerobusType *t, int field_number,
					 Datum value, const char *column, ZerobusArrayNulls *nulls)
{
	ValuePath	root = {.member = column};

	array_nulls = nulls;
	value_path = &root;
	encode_value(out, t, field_number, value, column);
	value_path = NULL;
}

/* zerobus_value_encode() of a value at value_path, for any nesting level */
static void
encode_value(StringInfo out, const ZerobusType *t, int field_number,
			 Datum value, const char *column)
{
	char		buf[128];

	check_stack_depth();
	switch (t->conversion)
	{
		case ZB_CONV_ARRAY:
			encode_array(out, t, field_number, value, column);
			return;
		case ZB_CONV_COMPOSITE:
			encode_composite(out, t, field_number, value, column);
			return;
		case ZB_CONV_TEXT:
			{
				text	   *txt = DatumGetTextPP(value);

				put_string(out, field_number, VARDATA_ANY(txt),
						   VARSIZE_ANY_EXHDR(txt));
				return;
			}
		case ZB_CONV_NAME:
			{
				const char *name = NameStr(*DatumGetName(value));

				put_string(out, field_number, name, strlen(name));
				return;
			}
		case ZB_CONV_BYTEA:
			{
				bytea	   *bytes = DatumGetByteaPP(value);

				zerobus_wire_put_bytes(out, field_number, VARDATA_ANY(bytes),
									 VARSIZE_ANY_EXHDR(bytes));
				return;
			}
		case ZB_CONV_TIME:
			zerobus_wire_put_bytes(out, field_number, buf,
								 format_time(buf, DatumGetTimeADT(value)) - buf);
			return;
		case ZB_CONV_TIMETZ:
			zerobus_wire_put_bytes(out, field_number, buf,
								 format_timetz(buf, DatumGetTimeTzADTP(value)) - buf);
			return;
		case ZB_CONV_INTERVAL:
			zerobus_wire_put_bytes(out, field_number, buf,
								 format_interval(buf, DatumGetIntervalP(value)) - buf);
			return;
		case ZB_CONV_UUID:
			zerobus_wire_put_bytes(out, field_number, buf,
								 format_uuid(buf, DatumGetUUIDP(value)) - buf);
			return;
		case ZB_CONV_OUTPUT:
			{
				/* output functions may cache in fn_extra, in the plan's context */
				char	   *s = OutputFunctionCall((FmgrInfo *) &t->out_func,
												   value);

				put_string(out, field_number, s, strlen(s));
				return;
			}
		case ZB_CONV_FLOAT4:
			zerobus_wire_put_tag(out, field_number, ZB_WIRE_I32);
			put_packable(out, t, value, column);
			return;
		case ZB_CONV_FLOAT8:
			zerobus_wire_put_tag(out, field_number, ZB_WIRE_I64);
			put_packable(out, t, value, column);
			return;
		case ZB_CONV_BOOL:
			zerobus_wire_put_varint_field(out, field_number, DatumGetBool(value) ? 1 : 0);
			return;
		case ZB_CONV_INT4:
			zerobus_wire_put_varint_field(out, field_number,
							 (uint64) (int64) DatumGetInt32(value));
			return;
		case ZB_CONV_INT8:
			zerobus_wire_put_varint_field(out, field_number, (uint64) DatumGetInt64(value));
			return;
		default:
			zerobus_wire_put_tag(out, field_number, ZB_WIRE_VARINT);
			put_packable(out, t, value, column);
			return;
	}
}
