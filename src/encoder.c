/*-------------------------------------------------------------------------
 *
 * encoder.c
 *	  Record plans and the protobuf encoding of tuples.
 *
 * src/encoder.c
 *
 *-------------------------------------------------------------------------
 */
#include "zerobus.h"

#include "utils/memutils.h"
#include "utils/rel.h"

const char *const zerobus_meta_names[ZB_META_NCOLUMNS] = {
	"_change_type", "_commit_lsn", "_commit_timestamp", "_xid", "_seq",
	"_unchanged_columns"
};

const char *const zerobus_meta_delta_types[ZB_META_NCOLUMNS] = {
	"STRING", "BIGINT", "TIMESTAMP", "BIGINT", "BIGINT", "ARRAY<STRING>"
};

const char *const zerobus_change_names[5] = {
	NULL, "insert", "update_preimage", "update_postimage", "delete"
};

void
zerobus_pb_put_varint(StringInfo out, uint64 value)
{
	enlargeStringInfo(out, 10);
	while (value >= 0x80)
	{
		out->data[out->len++] = (char) ((value & 0x7F) | 0x80);
		value >>= 7;
	}
	out->data[out->len++] = (char) value;
	out->data[out->len] = '\0';
}

void
zerobus_pb_put_tag(StringInfo out, int field_number, int wire_type)
{
	zerobus_pb_put_varint(out, ((uint64) field_number << 3) | wire_type);
}

void
zerobus_pb_put_bytes(StringInfo out, int field_number, const char *data,
					 int len)
{
	zerobus_pb_put_tag(out, field_number, ZB_WIRE_LEN);
	zerobus_pb_put_varint(out, (uint64) len);
	appendBinaryStringInfo(out, data, len);
}

ZerobusRecordPlan *
zerobus_plan_build(Relation rel, Bitmapset *columns, MemoryContext parent)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "zerobus plan",
											  ALLOCSET_SMALL_SIZES);
	ZerobusRecordPlan *plan = MemoryContextAllocZero(cxt, sizeof(ZerobusRecordPlan));

	plan->cxt = cxt;
	plan->relid = RelationGetRelid(rel);
	plan->table_name = MemoryContextStrdup(cxt, RelationGetRelationName(rel));
	plan->message_name = plan->table_name;
	plan->schema_name = plan->table_name;
	plan->replident = rel->rd_rel->relreplident;
	plan->descriptor = MemoryContextAllocZero(cxt, 1);
	return plan;
}

void
zerobus_plan_free(ZerobusRecordPlan *plan)
{
	MemoryContextDelete(plan->cxt);
}

void
zerobus_encode_record(StringInfo out, const ZerobusRecordPlan *plan,
					  TupleDesc tupdesc, HeapTuple tuple,
					  const ZerobusChangeMeta *meta)
{
	zerobus_pb_put_bytes(out, ZB_META_FIELD_BASE + ZB_META_CHANGE_TYPE,
						 zerobus_change_names[meta->kind],
						 strlen(zerobus_change_names[meta->kind]));
}
