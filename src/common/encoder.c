/*-------------------------------------------------------------------------
 *
 * encoder.c
 *	  Record plans and the protobuf encoding of decoded tuples.
 *
 * A record plan describes the target table's record message for one
 * relation (and one publication column list): the published source columns
 * with their type mappings (typemap.c), the CDC metadata columns, and the
 * serialized google.protobuf.DescriptorProto that Zerobus receives when a
 * stream is created.  zerobus_encode_record() turns one decoded tuple into
 * the bytes of such a record; it is the hot path of the output plugin.
 *
 * Record message layout:
 *
 *	message <table> {
 *	  optional <T> <column> = <attnum>;	   -- every published column
 *	  required string _change_type = 2001;
 *	  required int64 _commit_lsn = 2002;
 *	  required int64 _commit_timestamp = 2003;   -- microseconds since 1970
 *	  required int64 _xid = 2004;
 *	  required int64 _seq = 2005;
 *	  repeated string _unchanged_columns = 2006;
 *	  repeated ArrayNull _array_nulls = 2007;	-- only with array columns
 *	  message <composite> { optional <T> <member> = <attnum>; ... }
 *	  message ArrayNull { optional string path = 1; repeated int32 positions = 2; }
 *	}
 *
 * All nested messages (one per composite type used anywhere in the record)
 * are nested directly in the record message, with names unique within it,
 * and fields refer to them as "<record>.<composite>", a relative name that
 * resolves whatever package the receiver wraps the descriptor in.
 *
 * src/common/encoder.c
 *
 *-------------------------------------------------------------------------
 */
#include "zerobus.h"

#include "access/detoast.h"
#include "access/htup_details.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

const char *const zerobus_meta_names[ZB_META_NCOLUMNS] = {
	"_change_type", "_commit_lsn", "_commit_timestamp", "_xid", "_seq",
	"_unchanged_columns", "_array_nulls"
};

const char *const zerobus_meta_delta_types[ZB_META_NCOLUMNS] = {
	"STRING", "BIGINT", "TIMESTAMP", "BIGINT", "BIGINT", "ARRAY<STRING>",
	"ARRAY<STRUCT<path: STRING, positions: ARRAY<INT>>>"
};

/*
 * Protobuf kinds of the metadata columns, for the descriptor and the
 * renderer: _unchanged_columns and _array_nulls are repeated, the latter of
 * a nested message whose name each plan makes unique in its record.
 */
static const ZerobusType meta_string_type = {.kind = ZB_PROTO_STRING};
static const ZerobusType meta_int32_type = {.kind = ZB_PROTO_INT32};
static const ZerobusType meta_positions_type = {
	.kind = ZB_PROTO_INT32,
	.is_array = true,
	.elem = (ZerobusType *) &meta_int32_type
};
static const ZerobusField array_null_fields[] = {
	{.name = "path", .attnum = 1, .field_number = 1,
	.type = (ZerobusType *) &meta_string_type},
	{.name = "positions", .attnum = 2, .field_number = 2,
	.type = (ZerobusType *) &meta_positions_type}
};
static const ZerobusType array_null_type = {
	.kind = ZB_PROTO_MESSAGE,
	.nfields = lengthof(array_null_fields),
	.fields = (ZerobusField *) array_null_fields,
	.message_name = "ArrayNull"
};

const ZerobusType zerobus_meta_types[ZB_META_NCOLUMNS] = {
	[ZB_META_CHANGE_TYPE] = {.kind = ZB_PROTO_STRING},
	[ZB_META_COMMIT_LSN] = {.kind = ZB_PROTO_INT64},
	[ZB_META_COMMIT_TIMESTAMP] = {.kind = ZB_PROTO_INT64},
	[ZB_META_XID] = {.kind = ZB_PROTO_INT64},
	[ZB_META_SEQ] = {.kind = ZB_PROTO_INT64},
	[ZB_META_UNCHANGED_COLUMNS] = {
		.kind = ZB_PROTO_STRING,
		.is_array = true,
		.elem = (ZerobusType *) &meta_string_type
	},
	[ZB_META_ARRAY_NULLS] = {
		.kind = ZB_PROTO_MESSAGE,
		.is_array = true,
		.elem = (ZerobusType *) &array_null_type
	}
};

const char *const zerobus_change_names[6] = {
	NULL, "insert", "update_preimage", "update_postimage", "delete", "snapshot"
};

/* google.protobuf.FieldDescriptorProto.Label and .Type values */
#define PB_LABEL_OPTIONAL	1
#define PB_LABEL_REQUIRED	2
#define PB_LABEL_REPEATED	3

#define PB_TYPE_DOUBLE		1
#define PB_TYPE_FLOAT		2
#define PB_TYPE_INT64		3
#define PB_TYPE_INT32		5
#define PB_TYPE_BOOL		8
#define PB_TYPE_STRING		9
#define PB_TYPE_MESSAGE		11
#define PB_TYPE_BYTES		12

/* ----------------------------------------------------------------
 * Record plans
 * ----------------------------------------------------------------
 */

/* The nested message types of a plan, collected while it is built. */
typedef struct MessageSet
{
	List	   *types;			/* ZerobusType of each distinct composite */
	const char *record_name;
} MessageSet;

/*
 * A valid protobuf identifier derived from name: characters other than
 * ASCII letters, digits and '_' become '_', and a leading digit gets a '_'
 * in front.  Allocated in the current memory context.
 */
static char *
identifier_from(const char *name)
{
	StringInfoData buf;
	const char *p;

	initStringInfo(&buf);
	if (name[0] == '\0' || (name[0] >= '0' && name[0] <= '9'))
		appendStringInfoChar(&buf, '_');
	for (p = name; *p; p++)
	{
		char		c = *p;

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9')))
			c = '_';
		appendStringInfoChar(&buf, c);
	}
	return buf.data;
}

/* Is name already used by the record message or one of its nested types? */
static bool
message_name_taken(const MessageSet *set, const char *name)
{
	ListCell   *lc;

	if (strcmp(set->record_name, name) == 0)
		return true;
	foreach(lc, set->types)
	{
		if (strcmp(((ZerobusType *) lfirst(lc))->message_name, name) == 0)
			return true;
	}
	return false;
}

/*
 * A nested message name from base (made an identifier) that is not yet
 * used within the record message, allocated in cxt.
 */
static char *
unique_message_name(const MessageSet *set, const char *base,
					MemoryContext cxt)
{
	char	   *ident = identifier_from(base);
	char	   *name = ident;
	int			suffix = 2;

	while (message_name_taken(set, name))
		name = psprintf("%s_%d", ident, suffix++);
	return MemoryContextStrdup(cxt, name);
}

/*
 * Give every composite type in t's tree a nested message name that is
 * unique within the record message; the same composite type used twice
 * shares one nested message.
 */
static void
collect_messages(MessageSet *set, ZerobusType *t, MemoryContext cxt)
{
	ListCell   *lc;
	int			i;

	if (t->is_array)
	{
		collect_messages(set, t->elem, cxt);
		return;
	}
	if (t->kind != ZB_PROTO_MESSAGE)
		return;
	for (i = 0; i < t->nfields; i++)
		collect_messages(set, t->fields[i].type, cxt);

	foreach(lc, set->types)
	{
		ZerobusType *known = lfirst(lc);

		if (known->typid == t->typid)
		{
			t->message_name = known->message_name;
			return;
		}
	}
	t->message_name = unique_message_name(set, t->message_name, cxt);
	set->types = lappend(set->types, t);
}

/*
 * Append one FieldDescriptorProto as field 2 of a DescriptorProto being
 * written to out.  Array types make repeated fields whatever label says;
 * message fields name their nested type relative to the record message.
 */
static void
put_field_descriptor(StringInfo out, const char *name, int number, int label,
					 const ZerobusType *t, const char *record_name)
{
	static const int pb_types[] = {
		[ZB_PROTO_BOOL] = PB_TYPE_BOOL,
		[ZB_PROTO_INT32] = PB_TYPE_INT32,
		[ZB_PROTO_INT64] = PB_TYPE_INT64,
		[ZB_PROTO_FLOAT] = PB_TYPE_FLOAT,
		[ZB_PROTO_DOUBLE] = PB_TYPE_DOUBLE,
		[ZB_PROTO_STRING] = PB_TYPE_STRING,
		[ZB_PROTO_BYTES] = PB_TYPE_BYTES,
		[ZB_PROTO_MESSAGE] = PB_TYPE_MESSAGE
	};
	StringInfoData field;
	const ZerobusType *value_type = t->is_array ? t->elem : t;

	initStringInfo(&field);
	zerobus_wire_put_bytes(&field, 1, name, strlen(name));
	zerobus_wire_put_tag(&field, 3, ZB_WIRE_VARINT);
	zerobus_wire_put_varint(&field, number);
	zerobus_wire_put_tag(&field, 4, ZB_WIRE_VARINT);
	zerobus_wire_put_varint(&field, t->is_array ? PB_LABEL_REPEATED : label);
	zerobus_wire_put_tag(&field, 5, ZB_WIRE_VARINT);
	zerobus_wire_put_varint(&field, pb_types[value_type->kind]);
	if (value_type->kind == ZB_PROTO_MESSAGE)
	{
		char	   *type_name = psprintf("%s.%s", record_name,
										 value_type->message_name);

		zerobus_wire_put_bytes(&field, 6, type_name, strlen(type_name));
		pfree(type_name);
	}
	zerobus_wire_put_bytes(out, 2, field.data, field.len);
	pfree(field.data);
}

/* The serialized DescriptorProto of the plan's record message. */
static void
build_descriptor(ZerobusRecordPlan *plan, const MessageSet *set)
{
	StringInfoData desc;
	ListCell   *lc;
	int			i;

	initStringInfo(&desc);
	zerobus_wire_put_bytes(&desc, 1, plan->message_name,
						 strlen(plan->message_name));
	for (i = 0; i < plan->ncolumns; i++)
		put_field_descriptor(&desc, plan->columns[i].name,
							 plan->columns[i].field_number, PB_LABEL_OPTIONAL,
							 plan->columns[i].type, plan->message_name);
	for (i = 0; i < zerobus_plan_nmeta(plan); i++)
		put_field_descriptor(&desc, zerobus_meta_names[i],
							 ZB_META_FIELD_BASE + i, PB_LABEL_REQUIRED,
							 zerobus_meta_type(plan, i), plan->message_name);

	foreach(lc, set->types)
	{
		ZerobusType *t = lfirst(lc);
		StringInfoData nested;

		initStringInfo(&nested);
		zerobus_wire_put_bytes(&nested, 1, t->message_name,
							 strlen(t->message_name));
		for (i = 0; i < t->nfields; i++)
			put_field_descriptor(&nested, t->fields[i].name,
								 t->fields[i].field_number, PB_LABEL_OPTIONAL,
								 t->fields[i].type, plan->message_name);
		zerobus_wire_put_bytes(&desc, 3, nested.data, nested.len);
		pfree(nested.data);
	}

	plan->descriptor = MemoryContextAlloc(plan->cxt, desc.len + 1);
	memcpy(plan->descriptor, desc.data, desc.len + 1);
	plan->descriptor_len = desc.len;
	pfree(desc.data);
}

/*
 * Check that a source column can be a field of the record message: a valid
 * protobuf name that does not clash with a metadata column.
 */
static void
check_column_name(Relation rel, const char *name)
{
	int			i;

	if (!zerobus_is_identifier(name))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("column \"%s\" of table \"%s\" cannot be sent to Zerobus",
						name, RelationGetRelationName(rel)),
				 errdetail("Protobuf field names consist of ASCII letters, digits and underscores and do not start with a digit."),
				 errhint("Rename the column, or leave it out of the publication with a column list.")));
	for (i = 0; i < ZB_META_NCOLUMNS; i++)
	{
		if (pg_strcasecmp(name, zerobus_meta_names[i]) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_COLUMN),
					 errmsg("column \"%s\" of table \"%s\" has the name of a zerobus metadata column",
							name, RelationGetRelationName(rel)),
					 errdetail("Every target table has the metadata columns _change_type, _commit_lsn, _commit_timestamp, _xid, _seq and _unchanged_columns, and a table with arrays also _array_nulls."),
					 errhint("Rename the column, or leave it out of the publication with a column list.")));
	}
}

/*
 * Fill plan from rel; runs in the plan's memory context so that everything
 * kept belongs to it.
 */
static void
plan_fill(ZerobusRecordPlan *plan, Relation rel, Bitmapset *columns)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	Bitmapset  *keys = NULL;
	MessageSet	set;
	bool		has_arrays = false;
	int			i;

	plan->relid = RelationGetRelid(rel);
	plan->schema_name = get_namespace_name(RelationGetNamespace(rel));
	plan->table_name = pstrdup(RelationGetRelationName(rel));
	plan->message_name = identifier_from(plan->table_name);
	plan->replident = rel->rd_rel->relreplident;
	if (plan->replident != REPLICA_IDENTITY_FULL &&
		plan->replident != REPLICA_IDENTITY_NOTHING)
	{
		/*
		 * RelationGetIdentityKeyBitmap is for logical decoding only (it
		 * takes no lock on the index and asserts a historic snapshot); a
		 * backend (target_ddl) or a worker (initial snapshot) asks the
		 * relcache the regular way.
		 */
		if (HistoricSnapshotActive())
			keys = RelationGetIdentityKeyBitmap(rel);
		else
			keys = RelationGetIndexAttrBitmap(rel,
											  INDEX_ATTR_BITMAP_IDENTITY_KEY);
	}

	plan->columns = palloc0(sizeof(ZerobusField) * Max(tupdesc->natts, 1));
	plan->is_key = palloc0(sizeof(bool) * Max(tupdesc->natts, 1));
	set.types = NIL;
	set.record_name = plan->message_name;
	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);
		ZerobusField *col;

		/* a generated column only when the column list names it */
		if (att->attisdropped ||
			(columns == NULL ? att->attgenerated != '\0' :
			 !bms_is_member(att->attnum, columns)))
			continue;
		check_column_name(rel, NameStr(att->attname));

		col = &plan->columns[plan->ncolumns];
		col->name = pstrdup(NameStr(att->attname));
		col->attnum = att->attnum;
		col->field_number = att->attnum;
		col->pg_type = format_type_with_typemod(att->atttypid, att->atttypmod);
		col->type = zerobus_type_build(att->atttypid, att->atttypmod,
									   plan->cxt);
		collect_messages(&set, col->type, plan->cxt);
		plan->is_key[plan->ncolumns] =
			plan->replident == REPLICA_IDENTITY_FULL ||
			bms_is_member(att->attnum - FirstLowInvalidHeapAttributeNumber,
						  keys);
		plan->text_output |= zerobus_type_has_text_output(col->type);
		has_arrays |= zerobus_type_has_arrays(col->type);
		plan->ncolumns++;
	}

	if (has_arrays)
	{
		ZerobusType *elem = palloc(sizeof(ZerobusType));

		*elem = array_null_type;
		elem->message_name = unique_message_name(&set, elem->message_name,
												 plan->cxt);
		set.types = lappend(set.types, elem);
		plan->array_nulls_type = palloc(sizeof(ZerobusType));
		*plan->array_nulls_type = zerobus_meta_types[ZB_META_ARRAY_NULLS];
		plan->array_nulls_type->elem = elem;
	}
	build_descriptor(plan, &set);
}

/*
 * Build the record plan of rel for the published columns (attribute
 * numbers, as in a publication column list; NULL for every column but the
 * generated ones).  Dropped columns are never published, generated ones only
 * when named (18 publishes stored generated columns on request).
 *
 * The plan lives in a new child context of parent and keeps no pointer into
 * rel; the caller must rebuild it after an invalidation of the relation or
 * of one of its column types.  Raises an error for a column that cannot be
 * sent (invalid name, clash with a metadata column).
 */
ZerobusRecordPlan *
zerobus_plan_build(Relation rel, Bitmapset *columns, MemoryContext parent)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "zerobus record plan",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext oldcxt = MemoryContextSwitchTo(cxt);
	ZerobusRecordPlan *plan = palloc0(sizeof(ZerobusRecordPlan));

	plan->cxt = cxt;
	PG_TRY();
	{
		plan_fill(plan, rel, columns);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		MemoryContextDelete(cxt);
		PG_RE_THROW();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	return plan;
}

/* Free a plan and everything it owns. */
void
zerobus_plan_free(ZerobusRecordPlan *plan)
{
	MemoryContextDelete(plan->cxt);
}

/* ----------------------------------------------------------------
 * Record encoding
 * ----------------------------------------------------------------
 */

/*
 * Pin the settings that types' text output functions may read, so that a
 * value sent as text does not depend on the session that outputs it.  With
 * GUC_ACTION_SAVE the caller must have opened a GUC nest level
 * (NewGUCNestLevel) and close it with AtEOXact_GUC() afterwards; with
 * GUC_ACTION_LOCAL the settings hold until the end of the current
 * transaction.  Either way an error in between is cleaned up by the
 * transaction abort.
 */
void
zerobus_pin_output_settings(GucAction action)
{
	(void) set_config_option("datestyle", "ISO, YMD", PGC_USERSET,
							 PGC_S_SESSION, action, true, 0, false);
	(void) set_config_option("intervalstyle", "postgres", PGC_USERSET,
							 PGC_S_SESSION, action, true, 0, false);
	(void) set_config_option("timezone", "UTC", PGC_USERSET,
							 PGC_S_SESSION, action, true, 0, false);
	(void) set_config_option("extra_float_digits", "1", PGC_USERSET,
							 PGC_S_SESSION, action, true, 0, false);
}

/*
 * Append the record message of one decoded tuple (not length-prefixed) to
 * out: every non-null published column, then the metadata columns.
 *
 * tupdesc must be the relation's current descriptor (the one the plan was
 * built from).  A column holding an on-disk TOAST pointer, which in a decoded
 * tuple means "unchanged and not in the WAL", is left out and named in
 * _unchanged_columns instead.  Arrays sent without some of their content
 * (NULL elements, or NULL altogether where the record carries the whole
 * row) are named in _array_nulls.  Returns the number of arrays whose NULL
 * elements were left out.  Allocates in the current memory context, which
 * the caller resets per change.
 */
int
zerobus_encode_record(StringInfo out, const ZerobusRecordPlan *plan,
					  TupleDesc tupdesc, HeapTuple tuple,
					  const ZerobusChangeMeta *meta)
{
	Datum	   *values = palloc(sizeof(Datum) * tupdesc->natts);
	bool	   *nulls = palloc(sizeof(bool) * tupdesc->natts);
	int		   *unchanged = NULL;
	int			nunchanged = 0;
	int			nestlevel = -1;
	const char *change = zerobus_change_names[meta->kind];
	ZerobusArrayNulls array_nulls = {0};
	bool		key_only;
	int			i;

	/* deletes and preimages carry the replica identity alone, unless FULL */
	key_only = (meta->kind == ZB_CHANGE_DELETE ||
				meta->kind == ZB_CHANGE_UPDATE_PREIMAGE) &&
		plan->replident != REPLICA_IDENTITY_FULL;
	if (plan->array_nulls_type != NULL)
		initStringInfo(&array_nulls.entries);
	heap_deform_tuple(tuple, tupdesc, values, nulls);
	if (plan->text_output)
	{
		nestlevel = NewGUCNestLevel();
		zerobus_pin_output_settings(GUC_ACTION_SAVE);
	}

	for (i = 0; i < plan->ncolumns; i++)
	{
		const ZerobusField *col = &plan->columns[i];
		int			off = col->attnum - 1;

		if (off >= tupdesc->natts)
			continue;
		if (nulls[off])
		{
			if (col->type->is_array && (plan->is_key[i] || !key_only))
				zerobus_array_nulls_add_null(&array_nulls, col->name);
			continue;
		}
		if (TupleDescAttr(tupdesc, off)->attlen == -1 &&
			VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(values[off])))
		{
			if (unchanged == NULL)
				unchanged = palloc(sizeof(int) * plan->ncolumns);
			unchanged[nunchanged++] = i;
			continue;
		}
		zerobus_value_encode(out, col->type, col->field_number, values[off],
							 col->name, &array_nulls);
	}

	if (nestlevel >= 0)
		AtEOXact_GUC(true, nestlevel);

	zerobus_wire_put_bytes(out, ZB_META_FIELD_BASE + ZB_META_CHANGE_TYPE,
						 change, strlen(change));
	zerobus_wire_put_varint_field(out, ZB_META_FIELD_BASE + ZB_META_COMMIT_LSN,
								(uint64) meta->commit_lsn);
	zerobus_wire_put_varint_field(out, ZB_META_FIELD_BASE + ZB_META_COMMIT_TIMESTAMP,
								(uint64) zerobus_unix_micros(meta->commit_time));
	zerobus_wire_put_varint_field(out, ZB_META_FIELD_BASE + ZB_META_XID,
								(uint64) meta->xid);
	zerobus_wire_put_varint_field(out, ZB_META_FIELD_BASE + ZB_META_SEQ,
								(uint64) meta->seq);
	for (i = 0; i < nunchanged; i++)
	{
		const char *name = plan->columns[unchanged[i]].name;

		zerobus_wire_put_bytes(out,
							 ZB_META_FIELD_BASE + ZB_META_UNCHANGED_COLUMNS,
							 name, strlen(name));
	}
	if (plan->array_nulls_type != NULL)
		appendBinaryStringInfo(out, array_nulls.entries.data,
							   array_nulls.entries.len);
	return array_nulls.marked;
}
