/*-------------------------------------------------------------------------
 *
 * decoder.c
 *	  The "zerobus" logical decoding output plugin.
 *
 * The plugin chooses tables the way pgoutput does, through publications
 * (FOR TABLE, FOR ALL TABLES, TABLES IN SCHEMA, publish actions,
 * publish_via_partition_root, row filters and column lists), and turns every
 * published row change into a record already encoded for the target Delta
 * table (encoder.c).  Its output framing is proto/zerobus_output.proto: in
 * the default binary format every message written is one serialized
 * zerobus.output.Message, encoded here by hand.  The text and json formats
 * show the same messages in readable form, the records being decoded back
 * from the bytes that would be sent (render.c), and exist for tests and
 * debugging.
 *
 * Options (all given by the client when decoding starts):
 *	publication_names	comma-separated publication names (required)
 *	format				binary (default), text or json
 *	messages			pass logical messages through (default false)
 *	proto_version		framing version, only 1 exists (default 1)
 *	include_volatile	text/json: show xids, LSNs, commit times and relation
 *						OIDs (default true; tests turn it off)
 *
 * Transactions are never streamed and two-phase decoding is not offered:
 * PostgreSQL spills big transactions to disk instead, so the consumer only
 * ever sees committed transactions, one at a time, in commit order.  Begin is
 * written lazily with the first published change so that transactions that
 * touch no published table produce nothing at all.
 *
 * The relation cache keeps, per decoded relation, the publication decision,
 * the row filter states, the column list and the record plan.  Catalog
 * invalidations only mark entries invalid; they are rebuilt on next use under
 * the historic snapshot of the change being decoded, so that publication and
 * schema changes take effect exactly at their position in the WAL.
 *
 * src/plugin/decoder.c
 *
 *-------------------------------------------------------------------------
 */
#include "zerobus.h"
#include "publication.h"

#include "access/tupconvert.h"
#include "catalog/pg_publication.h"
#include "executor/executor.h"
#include "replication/logical.h"
#include "replication/output_plugin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/varlena.h"

PG_MODULE_MAGIC;

extern void _PG_output_plugin_init(OutputPluginCallbacks *cb);

/* Call OutputPluginUpdateProgress at most once per this many changes. */
#define ZB_PROGRESS_INTERVAL	100

/* A reusable record buffer grown beyond this is given back after use. */
#define ZB_RECORD_BUFFER_KEEP	(8 * 1024 * 1024)

typedef enum ZerobusFormat
{
	ZB_FORMAT_BINARY,
	ZB_FORMAT_TEXT,
	ZB_FORMAT_JSON
} ZerobusFormat;

/*
 * State of one decoding session.
 */
typedef struct ZerobusDecodingData
{
	/* options */
	List	   *publication_names;
	ZerobusFormat format;
	bool		messages;
	bool		include_volatile;

	MemoryContext change_cxt;	/* reset after every callback */
	MemoryContext cache_cxt;	/* relation cache, sent schemas */
	HTAB	   *sent_schemas;	/* ZerobusSentSchema by published relid */

	StringInfoData record;		/* reusable buffer for one record */
	StringInfoData scratch;		/* reusable buffer for a message body */

	/* the transaction being decoded */
	bool		begin_sent;
	int64		next_seq;
	uint64		nchanges;

	int			changes_since_progress;
} ZerobusDecodingData;

/*
 * The last Relation message written for a published relation.  Kept apart
 * from the relation entries because all the partitions of a table published
 * through its root share one.
 */
typedef struct ZerobusSentSchema
{
	Oid			relid;			/* hash key: the published relation */
	char	   *msg;			/* in cache_cxt */
	int			len;
} ZerobusSentSchema;

static void zerobus_startup(LogicalDecodingContext *ctx,
							OutputPluginOptions *opt, bool is_init);
static void zerobus_shutdown(LogicalDecodingContext *ctx);
static void zerobus_begin_txn(LogicalDecodingContext *ctx,
							  ReorderBufferTXN *txn);
static void zerobus_commit_txn(LogicalDecodingContext *ctx,
							   ReorderBufferTXN *txn, XLogRecPtr commit_lsn);
static void zerobus_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
						   Relation relation, ReorderBufferChange *change);
static void zerobus_truncate(LogicalDecodingContext *ctx,
							 ReorderBufferTXN *txn, int nrelations,
							 Relation relations[], ReorderBufferChange *change);
static void zerobus_message(LogicalDecodingContext *ctx,
							ReorderBufferTXN *txn, XLogRecPtr message_lsn,
							bool transactional, const char *prefix,
							Size message_size, const char *message);

/*
 * Register the plugin's callbacks.  No streaming or two-phase callbacks: see
 * the file header.
 */
void
_PG_output_plugin_init(OutputPluginCallbacks *cb)
{
	AssertVariableIsOfType(&_PG_output_plugin_init, LogicalOutputPluginInit);

	cb->startup_cb = zerobus_startup;
	cb->begin_cb = zerobus_begin_txn;
	cb->change_cb = zerobus_change;
	cb->truncate_cb = zerobus_truncate;
	cb->commit_cb = zerobus_commit_txn;
	cb->message_cb = zerobus_message;
	cb->shutdown_cb = zerobus_shutdown;
}

/* ----------------------------------------------------------------
 * Options
 * ----------------------------------------------------------------
 */

/*
 * Return the value of an option that needs one.
 */
static char *
zb_option_value(DefElem *option)
{
	if (option->arg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("zerobus option \"%s\" requires a value",
						option->defname)));
	return strVal(option->arg);
}

/*
 * Parse a boolean option, reporting bad values in our own words.
 */
static bool
zb_option_bool(DefElem *option)
{
	bool		result;

	if (option->arg == NULL)
		return true;
	if (!parse_bool(strVal(option->arg), &result))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for zerobus option \"%s\": \"%s\"",
						option->defname, strVal(option->arg)),
				 errhint("Use true or false.")));
	return result;
}

/*
 * Reject an option given twice; "seen" remembers the earlier ones.
 */
static void
zb_option_once(DefElem *option, bool *seen)
{
	if (*seen)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("zerobus option \"%s\" given more than once",
						option->defname),
				 errhint("Give each option once.")));
	*seen = true;
}

/*
 * Parse the client's options into data, with an error for anything unknown,
 * repeated or out of range.
 */
static void
zb_parse_options(List *options, ZerobusDecodingData *data)
{
	ListCell   *lc;
	bool		seen_publications = false;
	bool		seen_format = false;
	bool		seen_messages = false;
	bool		seen_version = false;
	bool		seen_volatile = false;

	data->format = ZB_FORMAT_BINARY;
	data->messages = false;
	data->include_volatile = true;

	foreach(lc, options)
	{
		DefElem    *option = (DefElem *) lfirst(lc);

		if (strcmp(option->defname, "publication_names") == 0)
		{
			char	   *names;

			zb_option_once(option, &seen_publications);
			names = pstrdup(zb_option_value(option));
			if (!SplitIdentifierString(names, ',', &data->publication_names))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid publication_names value: \"%s\"",
								strVal(option->arg)),
						 errhint("Give a comma-separated list of publication names.")));
		}
		else if (strcmp(option->defname, "format") == 0)
		{
			char	   *value;

			zb_option_once(option, &seen_format);
			value = zb_option_value(option);
			if (strcmp(value, "binary") == 0)
				data->format = ZB_FORMAT_BINARY;
			else if (strcmp(value, "text") == 0)
				data->format = ZB_FORMAT_TEXT;
			else if (strcmp(value, "json") == 0)
				data->format = ZB_FORMAT_JSON;
			else
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid value for zerobus option \"format\": \"%s\"",
								value),
						 errhint("Use binary, text or json.")));
		}
		else if (strcmp(option->defname, "messages") == 0)
		{
			zb_option_once(option, &seen_messages);
			data->messages = zb_option_bool(option);
		}
		else if (strcmp(option->defname, "proto_version") == 0)
		{
			char	   *value;

			zb_option_once(option, &seen_version);
			value = zb_option_value(option);
			if (strcmp(value, "1") != 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("unsupported zerobus proto_version: \"%s\"",
								value),
						 errhint("The only proto_version is 1.")));
		}
		else if (strcmp(option->defname, "include_volatile") == 0)
		{
			zb_option_once(option, &seen_volatile);
			data->include_volatile = zb_option_bool(option);
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unrecognized zerobus option \"%s\"",
							option->defname),
					 errhint("Valid options are publication_names, format, messages, proto_version and include_volatile.")));
	}

	if (data->publication_names == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("zerobus option \"publication_names\" is required"),
				 errhint("Name the publications that choose the tables, e.g. 'publication_names', 'mypub'.")));
}

/* ----------------------------------------------------------------
 * Framing
 * ----------------------------------------------------------------
 */

static void
zb_put_string(StringInfo out, int field, const char *value)
{
	zerobus_wire_put_bytes(out, field, value, strlen(value));
}
static const char *
zb_lsn_text(XLogRecPtr lsn)
{
	return psprintf("%X/%X", LSN_FORMAT_ARGS(lsn));
}

/*
 * Write data->scratch as field "kind" of a Message, as one output message.
 */
static void
zb_write_envelope(LogicalDecodingContext *ctx, ZerobusDecodingData *data,
				  int kind, bool last_write)
{
	OutputPluginPrepareWrite(ctx, last_write);
	zerobus_wire_put_bytes(ctx->out, kind, data->scratch.data, data->scratch.len);
	OutputPluginWrite(ctx, last_write);
}

/*
 * Write Begin for the transaction being decoded, if not done yet.  Called
 * just before the first message of the transaction that is published.
 */
static void
zb_send_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn)
{
	ZerobusDecodingData *data = ctx->output_plugin_private;
	StringInfo	out;

	if (data->begin_sent)
		return;
	data->begin_sent = true;

	if (data->format == ZB_FORMAT_BINARY)
	{
		out = &data->scratch;
		resetStringInfo(out);
		zerobus_wire_put_varint_field(out, ZB_OUT_BEGIN_XID, txn->xid);
		zerobus_wire_put_varint_field(out, ZB_OUT_BEGIN_FINAL_LSN, txn->final_lsn);
		zerobus_wire_put_varint_field(out, ZB_OUT_BEGIN_COMMIT_TIME, (uint64) zerobus_unix_micros(txn->xact_time.commit_time));
		zb_write_envelope(ctx, data, ZB_OUT_MESSAGE_BEGIN, false);
		return;
	}

	OutputPluginPrepareWrite(ctx, false);
	out = ctx->out;
	if (data->format == ZB_FORMAT_TEXT)
	{
		appendStringInfoString(out, "BEGIN");
		if (data->include_volatile)
			appendStringInfo(out, " xid %u final_lsn %s commit_time %s",
							 txn->xid, zb_lsn_text(txn->final_lsn),
							 timestamptz_to_str(txn->xact_time.commit_time));
	}
	else
	{
		appendStringInfoString(out, "{\"action\":\"B\"");
		if (data->include_volatile)
			appendStringInfo(out, ",\"xid\":%u,\"final_lsn\":\"%s\",\"commit_time\":\"%s\"",
							 txn->xid, zb_lsn_text(txn->final_lsn),
							 timestamptz_to_str(txn->xact_time.commit_time));
		appendStringInfoChar(out, '}');
	}
	OutputPluginWrite(ctx, false);
}

/*
 * Try to report progress, every ZB_PROGRESS_INTERVAL changes and at the end
 * of every transaction, so that a walsender filtering out everything still
 * answers keepalives and the slot can advance past skipped transactions.
 */
static void
zb_update_progress(LogicalDecodingContext *ctx, bool skipped_xact)
{
	ZerobusDecodingData *data = ctx->output_plugin_private;

	if (ctx->end_xact ||
		++data->changes_since_progress >= ZB_PROGRESS_INTERVAL)
	{
		OutputPluginUpdateProgress(ctx, skipped_xact);
		data->changes_since_progress = 0;
	}
}

/* A relation's replica identity, in the Relation message and in text */
typedef struct ZbReplident
{
	char		relreplident;	/* pg_class.relreplident */
	int			wire;			/* zerobus.output.ReplicaIdentity */
	const char *name;
} ZbReplident;

static const ZbReplident *
zb_replident(char relreplident)
{
	static const ZbReplident replidents[] = {
		{REPLICA_IDENTITY_DEFAULT, ZB_OUT_REPLICA_IDENTITY_DEFAULT, "default"},
		{REPLICA_IDENTITY_NOTHING, ZB_OUT_REPLICA_IDENTITY_NOTHING, "nothing"},
		{REPLICA_IDENTITY_FULL, ZB_OUT_REPLICA_IDENTITY_FULL, "full"},
		{REPLICA_IDENTITY_INDEX, ZB_OUT_REPLICA_IDENTITY_INDEX, "index"},
	};

	for (int i = 1; i < (int) lengthof(replidents); i++)
		if (replidents[i].relreplident == relreplident)
			return &replidents[i];
	return &replidents[0];
}

/*
 * Walk a type tree and remember the composite types in it, whose changes
 * must invalidate the plan.
 */
static void
zb_collect_type_deps(ZerobusRelEntry *entry, const ZerobusType *type,
					 int *capacity)
{
	int			i;

	if (type->is_array && type->elem != NULL)
		zb_collect_type_deps(entry, type->elem, capacity);
	if (type->kind != ZB_PROTO_MESSAGE)
		return;

	if (entry->ndeps == *capacity)
	{
		*capacity *= 2;
		entry->dep_relids = repalloc(entry->dep_relids,
									 *capacity * sizeof(Oid));
		entry->dep_hashes = repalloc(entry->dep_hashes,
									 *capacity * sizeof(uint32));
	}
	entry->dep_relids[entry->ndeps] = get_typ_typrelid(type->typid);
	entry->dep_hashes[entry->ndeps] =
		GetSysCacheHashValue1(TYPEOID, ObjectIdGetDatum(type->typid));
	entry->ndeps++;

	for (i = 0; i < type->nfields; i++)
		zb_collect_type_deps(entry, type->fields[i].type, capacity);
}

/*
 * Build the record plan of the published relation and the Relation message
 * describing it, unless already built since the last invalidation.
 */
static void
zb_ensure_plan(ZerobusDecodingData *data, ZerobusRelEntry *entry,
			   Relation relation)
{
	Relation	target = relation;
	TupleDesc	desc;
	ZerobusRecordPlan *plan;
	StringInfoData msg;
	StringInfoData col;
	MemoryContext oldcxt;
	int			capacity = 4;
	int			i;

	if (entry->plan != NULL)
		return;

	if (entry->publish_as_relid != RelationGetRelid(relation))
		target = RelationIdGetRelation(entry->publish_as_relid);
	desc = RelationGetDescr(target);

	plan = zerobus_plan_build(target, entry->columns, entry->entry_cxt);

	oldcxt = MemoryContextSwitchTo(entry->entry_cxt);

	entry->dep_relids = palloc(capacity * sizeof(Oid));
	entry->dep_hashes = palloc(capacity * sizeof(uint32));
	for (i = 0; i < plan->ncolumns; i++)
		zb_collect_type_deps(entry, plan->columns[i].type, &capacity);

	entry->pg_types = palloc(Max(plan->ncolumns, 1) * sizeof(char *));
	initStringInfo(&msg);
	initStringInfo(&col);
	zerobus_wire_put_varint_field(&msg, ZB_OUT_RELATION_RELID, plan->relid);
	zb_put_string(&msg, ZB_OUT_RELATION_SCHEMA_NAME, plan->schema_name);
	zb_put_string(&msg, ZB_OUT_RELATION_TABLE_NAME, plan->table_name);
	zerobus_wire_put_bytes(&msg, ZB_OUT_RELATION_DESCRIPTOR_PROTO, plan->descriptor, plan->descriptor_len);
	for (i = 0; i < plan->ncolumns; i++)
	{
		const ZerobusField *field = &plan->columns[i];
		Form_pg_attribute att = TupleDescAttr(desc, field->attnum - 1);

		entry->pg_types[i] = format_type_with_typemod(att->atttypid,
													  att->atttypmod);
		resetStringInfo(&col);
		zb_put_string(&col, ZB_OUT_COLUMN_NAME, field->name);
		zerobus_wire_put_varint_field(&col, ZB_OUT_COLUMN_FIELD_NUMBER, field->field_number);
		zb_put_string(&col, ZB_OUT_COLUMN_PG_TYPE, entry->pg_types[i]);
		zb_put_string(&col, ZB_OUT_COLUMN_DELTA_TYPE, field->type->delta_type);
		zerobus_wire_put_varint_field(&col, ZB_OUT_COLUMN_IS_KEY, plan->is_key[i] ? 1 : 0);
		zerobus_wire_put_bytes(&msg, ZB_OUT_RELATION_COLUMNS, col.data, col.len);
	}
	for (i = 0; i < zerobus_plan_nmeta(plan); i++)
	{
		resetStringInfo(&col);
		zb_put_string(&col, ZB_OUT_COLUMN_NAME, zerobus_meta_names[i]);
		zerobus_wire_put_varint_field(&col, ZB_OUT_COLUMN_FIELD_NUMBER, ZB_META_FIELD_BASE + i);
		zb_put_string(&col, ZB_OUT_COLUMN_DELTA_TYPE, zerobus_meta_delta_types[i]);
		zerobus_wire_put_varint_field(&col, ZB_OUT_COLUMN_IS_KEY, 0);
		zerobus_wire_put_bytes(&msg, ZB_OUT_RELATION_COLUMNS, col.data, col.len);
	}
	zerobus_wire_put_varint_field(&msg, ZB_OUT_RELATION_REPLICA_IDENTITY,
								  zb_replident(plan->replident)->wire);
	pfree(col.data);
	entry->relation_msg = msg.data;
	entry->relation_msg_len = msg.len;
	entry->plan = plan;

	MemoryContextSwitchTo(oldcxt);

	if (target != relation)
		RelationClose(target);
}

/*
 * Write the Relation message of an entry's plan in text or json form.
 */
static void
zb_write_relation_text(ZerobusDecodingData *data, ZerobusRelEntry *entry,
					   StringInfo out)
{
	const ZerobusRecordPlan *plan = entry->plan;
	int			i;

	if (data->format == ZB_FORMAT_TEXT)
	{
		appendStringInfo(out, "RELATION %s:",
						 quote_qualified_identifier(plan->schema_name,
													plan->table_name));
		if (data->include_volatile)
			appendStringInfo(out, " relid %u", plan->relid);
		appendStringInfo(out, " replica identity %s",
						 zb_replident(plan->replident)->name);
		for (i = 0; i < plan->ncolumns; i++)
			appendStringInfo(out, "%s %s[%s]:%s #%d%s",
							 i == 0 ? ":" : ",",
							 quote_identifier(plan->columns[i].name),
							 entry->pg_types[i],
							 plan->columns[i].type->delta_type,
							 plan->columns[i].field_number,
							 plan->is_key[i] ? " key" : "");
		return;
	}

	appendStringInfoString(out, "{\"action\":\"R\"");
	if (data->include_volatile)
		appendStringInfo(out, ",\"relid\":%u", plan->relid);
	appendStringInfoString(out, ",\"schema\":");
	escape_json(out, plan->schema_name);
	appendStringInfoString(out, ",\"table\":");
	escape_json(out, plan->table_name);
	appendStringInfo(out, ",\"replica_identity\":\"%s\",\"columns\":[",
					 zb_replident(plan->replident)->name);
	for (i = 0; i < plan->ncolumns; i++)
	{
		if (i > 0)
			appendStringInfoChar(out, ',');
		appendStringInfoString(out, "{\"name\":");
		escape_json(out, plan->columns[i].name);
		appendStringInfo(out, ",\"field_number\":%d,\"pg_type\":",
						 plan->columns[i].field_number);
		escape_json(out, entry->pg_types[i]);
		appendStringInfoString(out, ",\"delta_type\":");
		escape_json(out, plan->columns[i].type->delta_type);
		appendStringInfo(out, ",\"is_key\":%s}",
						 plan->is_key[i] ? "true" : "false");
	}
	appendStringInfoString(out, "]}");
}

/*
 * Make sure the consumer has the current schema of the relation the entry
 * publishes as: write a Relation message unless the last one written for
 * that relation in this session is identical.  Comparing messages lets
 * invalidations be coarse (any catalog change may rebuild an entry) without
 * flooding the stream with repeated schemas, and makes the partitions of a
 * table published via its root share one.
 */
static void
zb_send_schema(LogicalDecodingContext *ctx, ZerobusRelEntry *entry,
			   Relation relation)
{
	ZerobusDecodingData *data = ctx->output_plugin_private;
	ZerobusSentSchema *sent;
	bool		found;

	if (entry->schema_checked && entry->plan != NULL)
		return;

	zb_ensure_plan(data, entry, relation);

	sent = (ZerobusSentSchema *) hash_search(data->sent_schemas,
											 &entry->publish_as_relid,
											 HASH_ENTER, &found);
	if (found && sent->len == entry->relation_msg_len &&
		memcmp(sent->msg, entry->relation_msg, sent->len) == 0)
	{
		entry->schema_checked = true;
		return;
	}
	if (found)
		pfree(sent->msg);
	sent->msg = MemoryContextAlloc(data->cache_cxt, entry->relation_msg_len);
	memcpy(sent->msg, entry->relation_msg, entry->relation_msg_len);
	sent->len = entry->relation_msg_len;

	OutputPluginPrepareWrite(ctx, false);
	if (data->format == ZB_FORMAT_BINARY)
		zerobus_wire_put_bytes(ctx->out, ZB_OUT_MESSAGE_RELATION, entry->relation_msg,
							 entry->relation_msg_len);
	else
		zb_write_relation_text(data, entry, ctx->out);
	OutputPluginWrite(ctx, false);

	entry->schema_checked = true;
}

/*
 * Encode one row as a record and write it as a Change message.
 */
static void
zb_send_record(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
			   ZerobusRelEntry *entry, ZerobusChangeKind kind,
			   TupleTableSlot *slot)
{
	ZerobusDecodingData *data = ctx->output_plugin_private;
	const ZerobusRecordPlan *plan = entry->plan;
	ZerobusChangeMeta meta;
	HeapTuple	tuple;
	StringInfo	out;
	int			array_nulls;

	meta.kind = kind;
	meta.commit_lsn = txn->final_lsn;
	meta.commit_time = txn->xact_time.commit_time;
	meta.xid = txn->xid;
	meta.seq = data->next_seq++;

	tuple = ExecFetchSlotHeapTuple(slot, false, NULL);
	resetStringInfo(&data->record);
	array_nulls = zerobus_encode_record(&data->record, plan,
										slot->tts_tupleDescriptor, tuple,
										&meta);

	OutputPluginPrepareWrite(ctx, true);
	out = ctx->out;
	if (data->format == ZB_FORMAT_BINARY)
	{
		int			reclen = data->record.len;
		uint64		bodylen;

		/* Change{relid, type, record[, array_nulls]}, sized up front */
		bodylen = 1 + zerobus_wire_varint_size(plan->relid) +
			1 + zerobus_wire_varint_size(kind) +
			1 + zerobus_wire_varint_size(reclen) + reclen;
		if (array_nulls > 0)
			bodylen += 1 + zerobus_wire_varint_size(array_nulls);
		zerobus_wire_put_tag(out, ZB_OUT_MESSAGE_CHANGE, ZB_WIRE_LEN);
		zerobus_wire_put_varint(out, bodylen);
		zerobus_wire_put_varint_field(out, ZB_OUT_CHANGE_RELID, plan->relid);
		zerobus_wire_put_varint_field(out, ZB_OUT_CHANGE_TYPE, kind);
		zerobus_wire_put_bytes(out, ZB_OUT_CHANGE_RECORD, data->record.data, reclen);
		if (array_nulls > 0)
			zerobus_wire_put_varint_field(out, ZB_OUT_CHANGE_ARRAY_NULLS, array_nulls);
	}
	else if (data->format == ZB_FORMAT_TEXT)
	{
		static const char *const kind_names[] = {
			NULL, "INSERT", "UPDATE_PREIMAGE", "UPDATE_POSTIMAGE", "DELETE"
		};

		appendStringInfo(out, "table %s: %s: ",
						 quote_qualified_identifier(plan->schema_name,
													plan->table_name),
						 kind_names[kind]);
		zerobus_render_record(out, plan, data->record.data, data->record.len,
							  false, data->include_volatile);
	}
	else
	{
		static const char *const kind_actions[] = {NULL, "I", "U", "U", "D"};

		appendStringInfo(out, "{\"action\":\"%s\",\"schema\":",
						 kind_actions[kind]);
		escape_json(out, plan->schema_name);
		appendStringInfoString(out, ",\"table\":");
		escape_json(out, plan->table_name);
		appendStringInfoString(out, ",\"record\":");
		zerobus_render_record(out, plan, data->record.data, data->record.len,
							  true, data->include_volatile);
		appendStringInfoChar(out, '}');
	}
	OutputPluginWrite(ctx, true);

	data->nchanges++;

	if (data->record.maxlen > ZB_RECORD_BUFFER_KEEP)
	{
		MemoryContext oldcxt;

		oldcxt = MemoryContextSwitchTo(GetMemoryChunkContext(data->record.data));
		pfree(data->record.data);
		initStringInfo(&data->record);
		MemoryContextSwitchTo(oldcxt);
	}
}

/* ----------------------------------------------------------------
 * Callbacks
 * ----------------------------------------------------------------
 */

/*
 * Startup: parse and check the options (not when the slot is being created,
 * which passes none) and set up the session's memory and caches.
 */
static void
zerobus_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt,
				bool is_init)
{
	ZerobusDecodingData *data;
	MemoryContext oldcxt;
	HASHCTL		hctl;

	data = MemoryContextAllocZero(ctx->context, sizeof(ZerobusDecodingData));
	data->change_cxt = AllocSetContextCreate(ctx->context,
											 "zerobus change context",
											 ALLOCSET_DEFAULT_SIZES);
	data->cache_cxt = AllocSetContextCreate(ctx->context,
											"zerobus cache context",
											ALLOCSET_DEFAULT_SIZES);
	ctx->output_plugin_private = data;

	/* no streaming of in-progress transactions, no two-phase decoding */
	ctx->streaming = false;
	ctx->twophase = false;

	opt->output_type = OUTPUT_PLUGIN_BINARY_OUTPUT;
	if (is_init)
		return;

	oldcxt = MemoryContextSwitchTo(ctx->context);
	zb_parse_options(ctx->output_plugin_options, data);
	initStringInfo(&data->record);
	initStringInfo(&data->scratch);
	MemoryContextSwitchTo(oldcxt);
	if (data->format != ZB_FORMAT_BINARY)
		opt->output_type = OUTPUT_PLUGIN_TEXTUAL_OUTPUT;

	zerobus_check_publications(data->publication_names);
	zerobus_relcache_init(data->cache_cxt, data->publication_names);

	hctl.keysize = sizeof(Oid);
	hctl.entrysize = sizeof(ZerobusSentSchema);
	hctl.hcxt = data->cache_cxt;
	data->sent_schemas = hash_create("zerobus sent schemas", 64, &hctl,
									 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/*
 * Shutdown: the caches go away with their context; dropping them here too
 * keeps invalidations arriving before that from touching them.
 */
static void
zerobus_shutdown(LogicalDecodingContext *ctx)
{
	ZerobusDecodingData *data = ctx->output_plugin_private;

	if (data != NULL)
		MemoryContextReset(data->cache_cxt);
}

/*
 * Begin: only note that a transaction starts.  Begin is written with the
 * first published change (zb_send_begin).  Transactions are decoded one at a
 * time, so the per-transaction state lives in the session state.
 */
static void
zerobus_begin_txn(LogicalDecodingContext *ctx, ReorderBufferTXN *txn)
{
	ZerobusDecodingData *data = ctx->output_plugin_private;

	data->begin_sent = false;
	data->next_seq = 0;
	data->nchanges = 0;
}

/*
 * Commit: write Commit if Begin was written; report progress either way.
 */
static void
zerobus_commit_txn(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
				   XLogRecPtr commit_lsn)
{
	ZerobusDecodingData *data = ctx->output_plugin_private;
	StringInfo	out;

	zb_update_progress(ctx, !data->begin_sent);
	if (!data->begin_sent)
		return;

	if (data->format == ZB_FORMAT_BINARY)
	{
		out = &data->scratch;
		resetStringInfo(out);
		zerobus_wire_put_varint_field(out, ZB_OUT_COMMIT_XID, txn->xid);
		zerobus_wire_put_varint_field(out, ZB_OUT_COMMIT_COMMIT_LSN, txn->final_lsn);
		zerobus_wire_put_varint_field(out, ZB_OUT_COMMIT_END_LSN, txn->end_lsn);
		zerobus_wire_put_varint_field(out, ZB_OUT_COMMIT_COMMIT_TIME, (uint64) zerobus_unix_micros(txn->xact_time.commit_time));
		zerobus_wire_put_varint_field(out, ZB_OUT_COMMIT_CHANGES, data->nchanges);
		zb_write_envelope(ctx, data, ZB_OUT_MESSAGE_COMMIT, true);
		return;
	}

	OutputPluginPrepareWrite(ctx, true);
	out = ctx->out;
	if (data->format == ZB_FORMAT_TEXT)
	{
		appendStringInfoString(out, "COMMIT");
		if (data->include_volatile)
			appendStringInfo(out, " xid %u commit_lsn %s end_lsn %s commit_time %s",
							 txn->xid, zb_lsn_text(txn->final_lsn),
							 zb_lsn_text(txn->end_lsn),
							 timestamptz_to_str(txn->xact_time.commit_time));
		appendStringInfo(out, " changes " UINT64_FORMAT, data->nchanges);
	}
	else
	{
		appendStringInfoString(out, "{\"action\":\"C\"");
		if (data->include_volatile)
			appendStringInfo(out, ",\"xid\":%u,\"commit_lsn\":\"%s\",\"end_lsn\":\"%s\",\"commit_time\":\"%s\"",
							 txn->xid, zb_lsn_text(txn->final_lsn),
							 zb_lsn_text(txn->end_lsn),
							 timestamptz_to_str(txn->xact_time.commit_time));
		appendStringInfo(out, ",\"changes\":" UINT64_FORMAT "}",
						 data->nchanges);
	}
	OutputPluginWrite(ctx, true);
}

/*
 * Store a decoded tuple in a slot and convert it to the layout of the
 * relation the changes are published as, if that differs.
 */
static TupleTableSlot *
zb_store_tuple(ZerobusRelEntry *entry, HeapTuple tuple, TupleTableSlot *slot,
			   TupleTableSlot *conv_slot)
{
	ExecStoreHeapTuple(tuple, slot, false);
	if (entry->attrmap == NULL)
		return slot;
	return execute_attr_map_slot(entry->attrmap, slot, conv_slot);
}

/*
 * Change: publish an INSERT, UPDATE or DELETE of a row.
 *
 * An UPDATE gives an update_preimage record from the old tuple when WAL has
 * one (replica identity changed, or REPLICA IDENTITY FULL), then an
 * update_postimage record.  A DELETE gives a record of the old tuple, which
 * carries the replica identity columns only unless REPLICA IDENTITY FULL.
 * A DELETE without an old tuple (REPLICA IDENTITY NOTHING, or a table
 * without a primary key) has nothing to identify the row with: it is
 * skipped, as pgoutput skips it.  PostgreSQL refuses such deletes on tables
 * published for deletes, so this only happens when the publication changed
 * afterwards.
 */
static void
zerobus_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
			   Relation relation, ReorderBufferChange *change)
{
	ZerobusDecodingData *data = ctx->output_plugin_private;
	ReorderBufferChangeType action = change->action;
	ZerobusRelEntry *entry;
	TupleTableSlot *old_slot = NULL;
	TupleTableSlot *new_slot = NULL;
	MemoryContext oldcxt;

	zb_update_progress(ctx, false);

	if (!is_publishable_relation(relation))
		return;

	entry = zerobus_relcache_get(relation);
	switch (action)
	{
		case REORDER_BUFFER_CHANGE_INSERT:
			if (!entry->pubactions.pubinsert)
				return;
			break;
		case REORDER_BUFFER_CHANGE_UPDATE:
			if (!entry->pubactions.pubupdate)
				return;
			break;
		case REORDER_BUFFER_CHANGE_DELETE:
			if (!entry->pubactions.pubdelete)
				return;
			if (change->data.tp.oldtuple == NULL)
			{
				elog(DEBUG1, "zerobus skipped a DELETE without old tuple on \"%s\"",
					 RelationGetRelationName(relation));
				return;
			}
			break;
		default:
			return;
	}

	oldcxt = MemoryContextSwitchTo(data->change_cxt);

	if (change->data.tp.oldtuple != NULL)
		old_slot = zb_store_tuple(entry,
								  zerobus_change_tuple(change->data.tp.oldtuple),
								  entry->old_slot, entry->conv_old_slot);
	if (change->data.tp.newtuple != NULL)
		new_slot = zb_store_tuple(entry,
								  zerobus_change_tuple(change->data.tp.newtuple),
								  entry->new_slot, entry->conv_new_slot);

	if (zerobus_row_filter(entry, &action, old_slot, &new_slot))
	{
		zb_send_begin(ctx, txn);
		zb_send_schema(ctx, entry, relation);

		switch (action)
		{
			case REORDER_BUFFER_CHANGE_INSERT:
				zb_send_record(ctx, txn, entry, ZB_CHANGE_INSERT, new_slot);
				break;
			case REORDER_BUFFER_CHANGE_UPDATE:
				if (old_slot != NULL)
					zb_send_record(ctx, txn, entry, ZB_CHANGE_UPDATE_PREIMAGE,
								   old_slot);
				zb_send_record(ctx, txn, entry, ZB_CHANGE_UPDATE_POSTIMAGE,
							   new_slot);
				break;
			default:
				zb_send_record(ctx, txn, entry, ZB_CHANGE_DELETE, old_slot);
				break;
		}
	}

	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(data->change_cxt);
}

/*
 * Truncate: one Truncate message listing the published relations among the
 * truncated ones.  Partitions published via their root are left out: the
 * root is in the list when it was truncated, as pgoutput does.
 */
static void
zerobus_truncate(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
				 int nrelations, Relation relations[],
				 ReorderBufferChange *change)
{
	ZerobusDecodingData *data = ctx->output_plugin_private;
	MemoryContext oldcxt;
	Relation   *published;
	int			npublished = 0;
	StringInfo	out;
	int			i;

	zb_update_progress(ctx, false);

	oldcxt = MemoryContextSwitchTo(data->change_cxt);
	published = palloc(nrelations * sizeof(Relation));

	for (i = 0; i < nrelations; i++)
	{
		Relation	relation = relations[i];
		ZerobusRelEntry *entry;

		if (!is_publishable_relation(relation))
			continue;
		entry = zerobus_relcache_get(relation);
		if (!entry->pubactions.pubtruncate ||
			entry->publish_as_relid != RelationGetRelid(relation))
			continue;

		zb_send_begin(ctx, txn);
		zb_send_schema(ctx, entry, relation);
		published[npublished++] = relation;
	}

	if (npublished > 0)
	{
		bool		cascade = change->data.truncate.cascade;
		bool		restart = change->data.truncate.restart_seqs;

		OutputPluginPrepareWrite(ctx, true);
		out = ctx->out;
		if (data->format == ZB_FORMAT_BINARY)
		{
			StringInfo	body = &data->scratch;

			resetStringInfo(body);
			for (i = 0; i < npublished; i++)
				zerobus_wire_put_varint_field(body, ZB_OUT_TRUNCATE_RELIDS, RelationGetRelid(published[i]));
			zerobus_wire_put_varint_field(body, ZB_OUT_TRUNCATE_CASCADE, cascade ? 1 : 0);
			zerobus_wire_put_varint_field(body, ZB_OUT_TRUNCATE_RESTART_IDENTITY, restart ? 1 : 0);
			zerobus_wire_put_bytes(out, ZB_OUT_MESSAGE_TRUNCATE, body->data, body->len);
		}
		else
		{
			bool		json = data->format == ZB_FORMAT_JSON;

			appendStringInfoString(out, json ?
								   "{\"action\":\"T\",\"relations\":[" :
								   "TRUNCATE:");
			for (i = 0; i < npublished; i++)
			{
				Relation	rel = published[i];
				char	   *nspname = get_namespace_name(RelationGetNamespace(rel));

				if (json)
				{
					if (i > 0)
						appendStringInfoChar(out, ',');
					escape_json(out, psprintf("%s.%s", nspname,
											  RelationGetRelationName(rel)));
				}
				else
					appendStringInfo(out, "%s %s", i > 0 ? "," : "",
									 quote_qualified_identifier(nspname,
																RelationGetRelationName(rel)));
			}
			if (json)
				appendStringInfo(out, "],\"cascade\":%s,\"restart_identity\":%s}",
								 cascade ? "true" : "false",
								 restart ? "true" : "false");
			else
				appendStringInfo(out, "%s%s", cascade ? " cascade" : "",
								 restart ? " restart_identity" : "");
		}
		OutputPluginWrite(ctx, true);
	}

	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(data->change_cxt);
}

/*
 * Logical message (pg_logical_emit_message): passed through when the
 * messages option is on.  A transactional one belongs to its transaction and
 * opens it; a non-transactional one is written on its own.
 */
static void
zerobus_message(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
				XLogRecPtr message_lsn, bool transactional,
				const char *prefix, Size message_size, const char *message)
{
	ZerobusDecodingData *data = ctx->output_plugin_private;
	MemoryContext oldcxt;
	StringInfo	out;

	zb_update_progress(ctx, false);
	if (!data->messages)
		return;

	oldcxt = MemoryContextSwitchTo(data->change_cxt);

	if (transactional)
		zb_send_begin(ctx, txn);

	OutputPluginPrepareWrite(ctx, true);
	out = ctx->out;
	if (data->format == ZB_FORMAT_BINARY)
	{
		StringInfo	body = &data->scratch;

		resetStringInfo(body);
		zerobus_wire_put_varint_field(body, ZB_OUT_LOGICAL_MESSAGE_TRANSACTIONAL, transactional ? 1 : 0);
		zerobus_wire_put_varint_field(body, ZB_OUT_LOGICAL_MESSAGE_LSN, message_lsn);
		zb_put_string(body, ZB_OUT_LOGICAL_MESSAGE_PREFIX, prefix);
		zerobus_wire_put_bytes(body, ZB_OUT_LOGICAL_MESSAGE_CONTENT, message, message_size);
		zerobus_wire_put_bytes(out, ZB_OUT_MESSAGE_MESSAGE, body->data, body->len);
	}
	else
	{
		char	   *content = pnstrdup(message, message_size);

		if (data->format == ZB_FORMAT_TEXT)
		{
			appendStringInfo(out, "MESSAGE: transactional %s",
							 transactional ? "true" : "false");
			if (data->include_volatile)
				appendStringInfo(out, " lsn %s", zb_lsn_text(message_lsn));
			appendStringInfo(out, " prefix %s content %s", prefix, content);
		}
		else
		{
			appendStringInfo(out, "{\"action\":\"M\",\"transactional\":%s",
							 transactional ? "true" : "false");
			if (data->include_volatile)
				appendStringInfo(out, ",\"lsn\":\"%s\"",
								 zb_lsn_text(message_lsn));
			appendStringInfoString(out, ",\"prefix\":");
			escape_json(out, prefix);
			appendStringInfoString(out, ",\"content\":");
			escape_json(out, content);
			appendStringInfoChar(out, '}');
		}
	}
	OutputPluginWrite(ctx, true);

	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(data->change_cxt);
}
