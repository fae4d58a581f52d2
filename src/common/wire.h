/*-------------------------------------------------------------------------
 *
 * wire.h
 *	  The protobuf wire format as zerobus writes and reads it by hand
 *	  (wire.c): varints, tags and fields, the framing of the output
 *	  plugin's messages, and the column stripping of schema_policy
 *	  drop_missing_columns.
 *
 * The output plugin writes its messages and records by hand for speed;
 * the worker, the renderer and the column stripper read them by hand.  All
 * of them go through here, with the field numbers generated from
 * proto/zerobus_output.proto (zerobus_output_fields.h, ZB_OUT_*), so the C
 * and the contract cannot disagree; test/roundtrip.py checks the result
 * with an independent protobuf implementation.
 *
 * Nothing here raises an error: readers report what is wrong and the
 * caller raises it, so that the same code serves the backend and the
 * libFuzzer harnesses (fuzz/).
 *
 * src/common/wire.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ZEROBUS_WIRE_H
#define ZEROBUS_WIRE_H

#include "lib/stringinfo.h"

#include "zerobus_output_fields.h"

/* protobuf wire types */
#define ZB_WIRE_VARINT	0
#define ZB_WIRE_I64		1
#define ZB_WIRE_LEN		2
#define ZB_WIRE_I32		5

/* The largest varint: 64 bits in groups of 7 */
#define ZB_WIRE_MAX_VARINT	10

/*
 * Writes value as a protobuf varint at p, which must have room for
 * ZB_WIRE_MAX_VARINT bytes (the caller enlarges its buffer once per
 * value); returns the byte count.
 */
static inline int
zerobus_wire_varint_raw(char *p, uint64 value)
{
	int			n = 0;

	while (value >= 0x80)
	{
		p[n++] = (char) (value | 0x80);
		value >>= 7;
	}
	p[n++] = (char) value;
	return n;
}

/* Number of bytes zerobus_wire_varint_raw writes for value. */
static inline int
zerobus_wire_varint_size(uint64 value)
{
	int			size = 1;

	while (value >= 0x80)
	{
		value >>= 7;
		size++;
	}
	return size;
}

/* Appends a varint field (tag and value), growing the buffer once. */
static inline void
zerobus_wire_put_varint_field(StringInfo out, int field_number, uint64 value)
{
	enlargeStringInfo(out, 2 * ZB_WIRE_MAX_VARINT);
	out->len += zerobus_wire_varint_raw(out->data + out->len,
										((uint64) field_number << 3) | ZB_WIRE_VARINT);
	out->len += zerobus_wire_varint_raw(out->data + out->len, value);
	out->data[out->len] = '\0';
}

extern void zerobus_wire_put_varint(StringInfo out, uint64 value);
extern void zerobus_wire_put_tag(StringInfo out, int field_number,
								 int wire_type);
extern void zerobus_wire_put_bytes(StringInfo out, int field_number,
								   const char *data, int len);

/* One field of a message, as zerobus_wire_next() read it */
typedef struct ZerobusWireField
{
	uint64		number;			/* field number */
	int			wire_type;		/* ZB_WIRE_* */
	uint64		value;			/* VARINT: the value; I64, I32: the bits;
								 * LEN: the length of data */
	const char *data;			/* LEN: the payload; else NULL */
	const char *start;			/* the field's first byte (its tag) */
} ZerobusWireField;

extern bool zerobus_wire_varint(const char **p, const char *end,
								uint64 *value);
extern bool zerobus_wire_fixed(const char **p, const char *end, int size,
							   uint64 *value);
extern const char *zerobus_wire_next(const char **p, const char *end,
									 ZerobusWireField *field);

/*
 * One zerobus.output.Message of the output plugin, as
 * zerobus_output_read() splits it: its kind (ZB_OUT_MESSAGE_*) and body,
 * and for a Change (the hot path, read by hand) its fields.  The other
 * kinds are read from body with protobuf-c.
 */
typedef struct ZerobusOutputMessage
{
	int			kind;
	const char *body;
	size_t		body_len;
	/* kind ZB_OUT_MESSAGE_CHANGE */
	uint32		relid;
	int			change_type;	/* ZB_OUT_CHANGE_TYPE_* */
	const char *record;			/* NULL when the Change has none */
	size_t		record_len;
	uint32		array_nulls;	/* arrays sent without their NULL elements */
} ZerobusOutputMessage;

extern const char *zerobus_output_read(const char *data, size_t len,
									   ZerobusOutputMessage *msg);

extern const char *zerobus_wire_strip(StringInfo out, const char *data,
									  size_t len, const int *fields,
									  int nfields, bool descriptor);

#endif							/* ZEROBUS_WIRE_H */
