/*-------------------------------------------------------------------------
 *
 * render.c
 *	  Text and JSON renderings of encoded records, for the plugin's text and
 *	  json formats.
 *
 * The renderer decodes the record bytes themselves, the protobuf wire form
 * Zerobus receives, and uses the plan only for the field names and kinds.
 * So the regression tests show exactly what would be sent: dates as days
 * since 1970, timestamps as microseconds since 1970, DECIMAL as its text.
 *
 * Text form (in the spirit of test_decoding), fields in descriptor order,
 * absent fields left out:
 *
 *	id[bigint]:1 t[text]:'it''s' by[bytea]:'\x00ff' ia[integer[]]:[1,2]
 *	a[addr]:{street:'Main' zip:12345} _change_type:'insert' _seq:0
 *	_unchanged_columns:['big']
 *
 * JSON form: one object, int64 values as JSON numbers, bytes as "\\x.."
 * hex text, non-finite floats as the strings "NaN", "Infinity", "-Infinity",
 * nested messages as objects and repeated fields as arrays:
 *
 *	{"id":1,"t":"it's","by":"\\x00ff","ia":[1,2],
 *	 "a":{"street":"Main","zip":12345},"_change_type":"insert","_seq":0}
 *
 * Unless include_volatile, _commit_lsn, _commit_timestamp and _xid are left
 * out.
 *
 * src/plugin/render.c
 *
 *-------------------------------------------------------------------------
 */
#include "zerobus.h"

#include <math.h>

#include "common/shortest_dec.h"
#include "miscadmin.h"
#include "utils/json.h"

/* One field occurrence of a message on the wire. */
typedef struct WireItem
{
	int			number;
	int			wire_type;
	uint64		value;			/* varint, fixed32 or fixed64 bits */
	const char *data;			/* length-delimited payload */
	int			len;
} WireItem;

/* A message being decoded: its occurrences in wire order. */
typedef struct WireMessage
{
	WireItem   *items;
	int			nitems;
} WireMessage;

/* A field of a message as the renderer knows it. */
typedef struct RenderField
{
	const char *name;
	const char *pg_type;		/* shown in the text form, or NULL */
	int			number;
	const ZerobusType *type;
	bool		hidden;			/* known but not shown */
} RenderField;

static void render_message(StringInfo out, const RenderField *fields,
						   int nfields, const char *data, int len, bool json,
						   bool top);

static void
malformed(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("malformed zerobus record: %s", what)));
}

/* Read a varint at *p (before end), advancing *p. */
static uint64
read_varint(const char **p, const char *end)
{
	uint64		value;

	if (!zerobus_wire_varint(p, end, &value))
		malformed("truncated varint");
	return value;
}

/* Read n little-endian bytes at *p as an integer, advancing *p. */
static uint64
read_fixed(const char **p, const char *end, int n)
{
	uint64		value;

	if (!zerobus_wire_fixed(p, end, n, &value))
		malformed("truncated fixed-size value");
	return value;
}

/* Split a message into its field occurrences. */
static WireMessage
parse_message(const char *data, int len)
{
	const char *p = data;
	const char *end = data + len;
	WireMessage msg;
	int			allocated = 16;

	msg.items = palloc(sizeof(WireItem) * allocated);
	msg.nitems = 0;
	while (p < end)
	{
		ZerobusWireField f;
		const char *error = zerobus_wire_next(&p, end, &f);
		WireItem   *item;

		if (error != NULL)
			malformed(error);
		if (f.number > PG_INT32_MAX)
			malformed("field number out of range");
		if (msg.nitems == allocated)
		{
			allocated *= 2;
			msg.items = repalloc(msg.items, sizeof(WireItem) * allocated);
		}
		item = &msg.items[msg.nitems++];
		item->number = (int) f.number;
		item->wire_type = f.wire_type;
		item->value = f.value;
		item->data = f.data;
		item->len = f.data ? (int) f.value : 0;
	}
	return msg;
}

/* Append a float or double, whose text never depends on settings. */
static void
render_float(StringInfo out, double value, bool single, bool json)
{
	char		buf[DOUBLE_SHORTEST_DECIMAL_LEN];

	if (isnan(value) || isinf(value))
	{
		const char *s = isnan(value) ? "NaN" : value > 0 ? "Infinity" : "-Infinity";

		appendStringInfo(out, json ? "\"%s\"" : "%s", s);
		return;
	}
	if (single)
		float_to_shortest_decimal_buf((float) value, buf);
	else
		double_to_shortest_decimal_buf(value, buf);
	appendStringInfoString(out, buf);
}

/* Append bytes as \x hex: quoted for text, a JSON string for json. */
static void
render_bytes(StringInfo out, const char *data, int len, bool json)
{
	static const char hex[] = "0123456789abcdef";
	int			i;

	appendStringInfoString(out, json ? "\"\\\\x" : "'\\x");
	for (i = 0; i < len; i++)
	{
		appendStringInfoChar(out, hex[(unsigned char) data[i] >> 4]);
		appendStringInfoChar(out, hex[(unsigned char) data[i] & 0x0F]);
	}
	appendStringInfoChar(out, json ? '"' : '\'');
}

/* Append a string: single-quoted with quotes doubled, or a JSON string. */
static void
render_string(StringInfo out, const char *data, int len, bool json)
{
	char	   *s = pnstrdup(data, len);
	const char *p;

	if (json)
		escape_json(out, s);
	else
	{
		appendStringInfoChar(out, '\'');
		for (p = s; *p; p++)
		{
			if (*p == '\'')
				appendStringInfoChar(out, '\'');
			appendStringInfoChar(out, *p);
		}
		appendStringInfoChar(out, '\'');
	}
	pfree(s);
}

/*
 * Append one scalar value of kind t->kind from its wire bits (value) or
 * payload (data, len).  Messages are rendered from their payload.
 */
static void
render_value(StringInfo out, const ZerobusType *t, uint64 value,
			 const char *data, int len, bool json)
{
	switch (t->kind)
	{
		case ZB_PROTO_BOOL:
			appendStringInfoString(out, value ? "true" : "false");
			break;
		case ZB_PROTO_INT32:
			appendStringInfo(out, "%d", (int32) value);
			break;
		case ZB_PROTO_INT64:
			appendStringInfo(out, INT64_FORMAT, (int64) value);
			break;
		case ZB_PROTO_FLOAT:
			{
				uint32		bits = (uint32) value;
				float		f;

				memcpy(&f, &bits, sizeof(f));
				render_float(out, f, true, json);
				break;
			}
		case ZB_PROTO_DOUBLE:
			{
				double		d;

				memcpy(&d, &value, sizeof(d));
				render_float(out, d, false, json);
				break;
			}
		case ZB_PROTO_STRING:
			render_string(out, data, len, json);
			break;
		case ZB_PROTO_BYTES:
			render_bytes(out, data, len, json);
			break;
		case ZB_PROTO_MESSAGE:
			{
				RenderField *fields = palloc(sizeof(RenderField) *
											 Max(t->nfields, 1));
				int			i;

				for (i = 0; i < t->nfields; i++)
				{
					fields[i].name = t->fields[i].name;
					fields[i].pg_type = NULL;
					fields[i].number = t->fields[i].field_number;
					fields[i].type = t->fields[i].type;
					fields[i].hidden = false;
				}
				render_message(out, fields, t->nfields, data, len, json, false);
				pfree(fields);
				break;
			}
	}
}

/* The wire type a single value of kind takes when not packed. */
static int
wire_type_of(ZerobusProtoKind kind)
{
	switch (kind)
	{
		case ZB_PROTO_FLOAT:
			return ZB_WIRE_I32;
		case ZB_PROTO_DOUBLE:
			return ZB_WIRE_I64;
		case ZB_PROTO_STRING:
		case ZB_PROTO_BYTES:
		case ZB_PROTO_MESSAGE:
			return ZB_WIRE_LEN;
		default:
			return ZB_WIRE_VARINT;
	}
}

/*
 * Append the elements of a repeated field: every occurrence of the field,
 * packed (one payload of concatenated values) or not.
 */
static void
render_repeated(StringInfo out, const ZerobusType *elem,
				const WireMessage *msg, int number, bool json)
{
	int			wire_type = wire_type_of(elem->kind);
	bool		first = true;
	int			i;

	appendStringInfoChar(out, '[');
	for (i = 0; i < msg->nitems; i++)
	{
		const WireItem *item = &msg->items[i];

		if (item->number != number)
			continue;
		if (item->wire_type == wire_type)
		{
			if (!first)
				appendStringInfoChar(out, ',');
			render_value(out, elem, item->value, item->data, item->len, json);
			first = false;
		}
		else if (item->wire_type == ZB_WIRE_LEN && wire_type != ZB_WIRE_LEN)
		{
			const char *p = item->data;
			const char *end = item->data + item->len;

			while (p < end)
			{
				uint64		value;

				if (wire_type == ZB_WIRE_VARINT)
					value = read_varint(&p, end);
				else
					value = read_fixed(&p, end, wire_type == ZB_WIRE_I32 ? 4 : 8);
				if (!first)
					appendStringInfoChar(out, ',');
				render_value(out, elem, value, NULL, 0, json);
				first = false;
			}
		}
		else
			malformed("wrong wire type for a repeated field");
	}
	appendStringInfoChar(out, ']');
}

/*
 * Append the message in data (len bytes) whose fields are described by
 * fields[]: "{...}" in both forms for nested messages, the bare list of
 * fields for the text form of the record itself (top).
 */
static void
render_message(StringInfo out, const RenderField *fields, int nfields,
			   const char *data, int len, bool json, bool top)
{
	WireMessage msg = parse_message(data, len);
	bool		first = true;
	int			i,
				j;

	check_stack_depth();
	for (j = 0; j < msg.nitems; j++)
	{
		for (i = 0; i < nfields; i++)
		{
			if (fields[i].number == msg.items[j].number)
				break;
		}
		if (i == nfields)
			malformed(psprintf("unknown field number %d", msg.items[j].number));
	}

	if (json || !top)
		appendStringInfoChar(out, '{');
	for (i = 0; i < nfields; i++)
	{
		const RenderField *f = &fields[i];
		const WireItem *last = NULL;

		for (j = 0; j < msg.nitems; j++)
		{
			if (msg.items[j].number == f->number)
				last = &msg.items[j];
		}
		if (last == NULL || f->hidden)
			continue;

		if (!first)
			appendStringInfoChar(out, json ? ',' : ' ');
		first = false;
		if (json)
		{
			escape_json(out, f->name);
			appendStringInfoChar(out, ':');
		}
		else if (f->pg_type != NULL)
			appendStringInfo(out, "%s[%s]:", f->name, f->pg_type);
		else
			appendStringInfo(out, "%s:", f->name);

		if (f->type->is_array)
			render_repeated(out, f->type->elem, &msg, f->number, json);
		else if (last->wire_type != wire_type_of(f->type->kind))
			malformed("wrong wire type");
		else
			render_value(out, f->type, last->value, last->data, last->len,
						 json);
	}
	if (json || !top)
		appendStringInfoChar(out, '}');
	pfree(msg.items);
}

/*
 * Append the rendering of the record message in data (len bytes), encoded
 * with plan, to out.  Raises an error if the bytes are not such a record.
 */
void
zerobus_render_record(StringInfo out, const ZerobusRecordPlan *plan,
					  const char *data, int len, bool json,
					  bool include_volatile)
{
	RenderField *fields = palloc(sizeof(RenderField) *
								 (plan->ncolumns + zerobus_plan_nmeta(plan)));
	int			nfields = 0;
	int			i;

	for (i = 0; i < plan->ncolumns; i++)
	{
		fields[nfields].name = plan->columns[i].name;
		fields[nfields].pg_type = plan->columns[i].pg_type;
		fields[nfields].number = plan->columns[i].field_number;
		fields[nfields].type = plan->columns[i].type;
		fields[nfields].hidden = false;
		nfields++;
	}
	for (i = 0; i < zerobus_plan_nmeta(plan); i++)
	{
		fields[nfields].name = zerobus_meta_names[i];
		fields[nfields].pg_type = NULL;
		fields[nfields].number = ZB_META_FIELD_BASE + i;
		fields[nfields].type = zerobus_meta_type(plan, i);
		fields[nfields].hidden = !include_volatile &&
			(i == ZB_META_COMMIT_LSN || i == ZB_META_COMMIT_TIMESTAMP ||
			 i == ZB_META_XID);
		nfields++;
	}
	render_message(out, fields, nfields, data, len, json, true);
	pfree(fields);
}
