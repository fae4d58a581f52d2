/*-------------------------------------------------------------------------
 *
 * wire.c
 *	  The protobuf wire format as zerobus writes and reads it by hand:
 *	  fields, the framing of the output plugin's messages, and the
 *	  stripping of columns from records and descriptors.
 *
 * Every reader here is fed bytes that may come from anywhere (a slot
 * written by another version, a fuzzer), so each one checks every length
 * against the end of its input and reports what is wrong instead of
 * raising an error; the callers raise it.  Builds in the backend and, with
 * FRONTEND, in the libFuzzer harness fuzz/output_fuzz.c.
 *
 * src/common/wire.c
 *
 *-------------------------------------------------------------------------
 */
#ifdef FRONTEND
#include "postgres_fe.h"
#else
#include "postgres.h"
#endif

#include "wire.h"

/* Appends a varint. */
void
zerobus_wire_put_varint(StringInfo out, uint64 value)
{
	enlargeStringInfo(out, ZB_WIRE_MAX_VARINT);
	out->len += zerobus_wire_varint_raw(out->data + out->len, value);
	out->data[out->len] = '\0';
}

/* Appends the tag of field field_number with the given wire type. */
void
zerobus_wire_put_tag(StringInfo out, int field_number, int wire_type)
{
	zerobus_wire_put_varint(out, ((uint64) field_number << 3) | wire_type);
}

/* Appends a length-delimited field (string, bytes or message payload). */
void
zerobus_wire_put_bytes(StringInfo out, int field_number, const char *data,
					   int len)
{
	enlargeStringInfo(out, len + 2 * ZB_WIRE_MAX_VARINT);
	out->len += zerobus_wire_varint_raw(out->data + out->len,
										((uint64) field_number << 3) | ZB_WIRE_LEN);
	out->len += zerobus_wire_varint_raw(out->data + out->len, (uint64) len);
	memcpy(out->data + out->len, data, len);
	out->len += len;
	out->data[out->len] = '\0';
}

/*
 * Reads the varint at *p (before end) into *value and advances *p; false,
 * with *p undefined, when it runs past end or past ZB_WIRE_MAX_VARINT bytes.
 */
bool
zerobus_wire_varint(const char **p, const char *end, uint64 *value)
{
	uint64		v = 0;
	int			shift;

	for (shift = 0; *p < end && shift < 7 * ZB_WIRE_MAX_VARINT; shift += 7)
	{
		uint8		b = (uint8) *(*p)++;

		v |= (uint64) (b & 0x7f) << shift;
		if ((b & 0x80) == 0)
		{
			*value = v;
			return true;
		}
	}
	return false;
}

/*
 * Reads the size (4 or 8) little-endian bytes at *p (before end) into
 * *value and advances *p; false when they run past end.
 */
bool
zerobus_wire_fixed(const char **p, const char *end, int size, uint64 *value)
{
	if (end - *p < size)
		return false;
	*value = 0;
	for (int i = size - 1; i >= 0; i--)
		*value = (*value << 8) | (uint8) (*p)[i];
	*p += size;
	return true;
}

/*
 * Reads the field at *p (before end) into *field and advances *p past it.
 * Returns NULL, or what is wrong with the input (then *p is undefined).
 * Groups (wire types 3 and 4) are refused: nothing zerobus reads has them.
 */
const char *
zerobus_wire_next(const char **p, const char *end, ZerobusWireField *field)
{
	uint64		tag;
	int			size;

	field->start = *p;
	field->data = NULL;
	if (!zerobus_wire_varint(p, end, &tag))
		return "truncated tag";
	field->number = tag >> 3;
	field->wire_type = (int) (tag & 7);
	if (field->number == 0)
		return "field number 0";
	switch (field->wire_type)
	{
		case ZB_WIRE_VARINT:
			if (!zerobus_wire_varint(p, end, &field->value))
				return "truncated varint";
			return NULL;
		case ZB_WIRE_LEN:
			if (!zerobus_wire_varint(p, end, &field->value))
				return "truncated length";
			if (field->value > (uint64) (end - *p))
				return "length-delimited field runs past the end";
			field->data = *p;
			*p += field->value;
			return NULL;
		case ZB_WIRE_I64:
		case ZB_WIRE_I32:
			size = field->wire_type == ZB_WIRE_I64 ? 8 : 4;
			if (!zerobus_wire_fixed(p, end, size, &field->value))
				return "truncated fixed-size value";
			return NULL;
		default:
			return "unsupported wire type";
	}
}

/*
 * Splits one message of the output plugin (data, len bytes): a
 * zerobus.output.Message holding exactly one of its kinds.  For a Change,
 * also reads its fields.  Returns NULL, or what is wrong.
 */
const char *
zerobus_output_read(const char *data, size_t len, ZerobusOutputMessage *msg)
{
	const char *p = data;
	const char *end = data + len;
	ZerobusWireField f;
	const char *error;

	memset(msg, 0, sizeof(*msg));
	if ((error = zerobus_wire_next(&p, end, &f)) != NULL)
		return error;
	if (f.wire_type != ZB_WIRE_LEN || p != end)
		return "not one length-delimited kind";
	if (f.number < ZB_OUT_MESSAGE_BEGIN || f.number > ZB_OUT_MESSAGE_MESSAGE)
		return "unknown Message kind";
	msg->kind = (int) f.number;
	msg->body = f.data;
	msg->body_len = f.value;
	if (msg->kind != ZB_OUT_MESSAGE_CHANGE)
		return NULL;

	p = msg->body;
	end = msg->body + msg->body_len;
	while (p < end)
	{
		if ((error = zerobus_wire_next(&p, end, &f)) != NULL)
			return error;
		if (f.number == ZB_OUT_CHANGE_RELID && f.wire_type == ZB_WIRE_VARINT)
			msg->relid = (uint32) f.value;
		else if (f.number == ZB_OUT_CHANGE_TYPE && f.wire_type == ZB_WIRE_VARINT)
			msg->change_type = (int) f.value;
		else if (f.number == ZB_OUT_CHANGE_RECORD && f.wire_type == ZB_WIRE_LEN)
		{
			msg->record = f.data;
			msg->record_len = f.value;
		}
		else if (f.number == ZB_OUT_CHANGE_ARRAY_NULLS &&
				 f.wire_type == ZB_WIRE_VARINT)
			msg->array_nulls = (uint32) f.value;
		else
			return "unexpected field in Change";
	}
	return NULL;
}

/* Whether field_number is one of the nfields numbers of fields. */
static inline bool
is_dropped(const int *fields, int nfields, uint64 field_number)
{
	for (int i = 0; i < nfields; i++)
		if ((uint64) fields[i] == field_number)
			return true;
	return false;
}

/*
 * The field number declared by a serialized FieldDescriptorProto (its
 * field "number", 3), or 0.
 */
static uint64
declared_number(const char *p, const char *end)
{
	ZerobusWireField f;

	while (p < end && zerobus_wire_next(&p, end, &f) == NULL)
		if (f.number == 3 && f.wire_type == ZB_WIRE_VARINT)
			return f.value;
	return 0;
}

/*
 * Appends message data (len bytes) to out without the fields whose numbers
 * are in fields: with descriptor, data is a DescriptorProto and the fields
 * left out are the FieldDescriptorProtos (its field "field", 2) declaring
 * those numbers; else data is a record and its top-level fields of those
 * numbers are left out.  Returns NULL, or what is wrong with data (then
 * out holds part of it).
 */
const char *
zerobus_wire_strip(StringInfo out, const char *data, size_t len,
				   const int *fields, int nfields, bool descriptor)
{
	const char *p = data;
	const char *end = data + len;

	while (p < end)
	{
		ZerobusWireField f;
		const char *error;
		bool		skip;

		if ((error = zerobus_wire_next(&p, end, &f)) != NULL)
			return error;
		if (descriptor)
			skip = f.number == 2 && f.wire_type == ZB_WIRE_LEN &&
				is_dropped(fields, nfields,
						   declared_number(f.data, f.data + f.value));
		else
			skip = is_dropped(fields, nfields, f.number);
		if (!skip)
			appendBinaryStringInfo(out, f.start, p - f.start);
	}
	return NULL;
}
