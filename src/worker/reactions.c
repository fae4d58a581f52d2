/*-------------------------------------------------------------------------
 *
 * reactions.c
 *	  What a stream worker does about one target table when something
 *	  happens to it: record its pause (and find the recorded ones when a
 *	  session starts), store the columns it accepted, explain a descriptor
 *	  it rejected or, under schema_policy drop_missing_columns, leave the
 *	  columns it lacks out, and refuse a table the stream's owner may not
 *	  read.
 *
 * Each reaction that touches the catalog runs in one transaction of its
 * own.  The worker (worker.c) calls these for the outcomes the sender
 * queues (sender.h) and for the Relation messages it reads; none of them
 * calls back into the worker or the sender's internals.
 *
 * src/worker/reactions.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "store.h"
#include "worker.h"

/*
 * Why the stream's owner may not have table relid (qualname) read, or NULL
 * when it may (zerobus_owner_can_read): a table that joins a FOR ALL TABLES
 * or TABLES IN SCHEMA publication after the owner was checked is checked
 * here, by the change stream and by the snapshot, and paused if need be.
 * palloc'd in the caller's context.  Needs a transaction.
 */
char *
zerobus_reaction_read_refusal(ZerobusStreamConfig *config, Oid relid,
							  const char *qualname)
{
	switch (zerobus_owner_can_read(config->owner, relid))
	{
		case ZB_READ_OK:
			break;
		case ZB_READ_NO_SELECT:
			return psprintf("owner %s of stream \"%s\" cannot read table %s. "
							"Hint: Grant SELECT on the table to the stream's owner, then call zerobus.resume_stream().",
							GetUserNameFromId(config->owner, false),
							config->name, qualname);
		case ZB_READ_RLS:
			return psprintf("row-level security of table %s applies to owner %s of stream \"%s\". "
							"Hint: Make the table's owner, or a role with BYPASSRLS, the stream's owner, then call zerobus.resume_stream().",
							qualname, GetUserNameFromId(config->owner, false),
							config->name);
	}
	return NULL;
}

/* zerobus_reaction_read_refusal, in a transaction of its own if need be */
char *
zerobus_reaction_read_refusal_in_xact(ZerobusStreamConfig *config, Oid relid,
									  const char *qualname)
{
	MemoryContext cxt = CurrentMemoryContext;
	bool		in_xact = IsTransactionState();
	char	   *refusal;

	if (!in_xact)
		StartTransactionCommand();
	refusal = zerobus_reaction_read_refusal(config, relid, qualname);
	if (refusal != NULL)
		refusal = MemoryContextStrdup(cxt, refusal);
	if (!in_xact)
		CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	return refusal;
}

/*
 * The columns to leave out of the records of relation relid encoded with
 * the given descriptor (as the plugin or a snapshot builds it), or NULL.
 */
const ZerobusColumnDrop *
zerobus_reaction_find_drop(ZerobusWorkerState *ws, Oid relid,
						   const char *descriptor, int len)
{
	ListCell   *lc;

	foreach(lc, ws->column_drops)
	{
		ZerobusColumnDrop *drop = lfirst(lc);

		if (drop->relid == relid && drop->descriptor_len == len &&
			memcmp(drop->descriptor, descriptor, len) == 0)
			return drop;
	}
	return NULL;
}

/*
 * Appends a record (or, with descriptor, a DescriptorProto) to out without
 * the columns of drop.  Bytes that cannot be read, which neither the plugin
 * nor the encoder writes, are a protocol violation.
 */
void
zerobus_reaction_strip(StringInfo out, const char *data, size_t len,
					   const ZerobusColumnDrop *drop, bool descriptor)
{
	const char *error = zerobus_wire_strip(out, data, len, drop->fields,
										   drop->nfields, descriptor);

	if (error != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("could not leave columns out of a %s: %s",
						descriptor ? "descriptor" : "record", error)));
}

/*
 * Leaves the columns of an earlier ZerobusColumnDrop out of rel's
 * descriptor and column set, when the drop was made for this very
 * descriptor (a Relation message just read).
 */
void
zerobus_reaction_column_drop(ZerobusWorkerState *ws, ZerobusRelation *rel)
{
	StringInfoData desc;

	rel->drop = zerobus_reaction_find_drop(ws, rel->relid, rel->descriptor,
										   rel->descriptor_len);
	if (rel->drop == NULL)
		return;

	initStringInfo(&desc);
	zerobus_reaction_strip(&desc, rel->descriptor, rel->descriptor_len,
						   rel->drop, true);
	pfree(rel->descriptor);
	rel->descriptor = desc.data;
	rel->descriptor_len = desc.len;
	zerobus_reaction_drop_columns(&rel->columns, rel->drop);
}

/* Leaves the columns of drop out of set, in place. */
void
zerobus_reaction_drop_columns(ZerobusColumnSet *set,
							  const ZerobusColumnDrop *drop)
{
	int			n = 0;

	for (int i = 0; i < set->ncolumns; i++)
	{
		ZerobusSchemaColumn *col = &set->columns[i];
		bool		keep = true;

		for (int j = 0; j < drop->nfields; j++)
			if (col->field_number == drop->fields[j])
				keep = false;
		if (keep)
			set->columns[n++] = *col;
	}
	set->ncolumns = n;
}

/*
 * The relation whose records go to target with the given descriptor, or
 * NULL (a descriptor of no Relation message, e.g. a snapshot's); the
 * descriptor may be the relation's current one or an earlier one of the
 * session.  *columns gets its columns and *stored its accepted_stored flag.
 */
static ZerobusRelation *
find_relation(ZerobusWorkerState *ws, ZerobusTarget *target,
			  const char *descriptor, int len, ZerobusColumnSet **columns,
			  bool **stored)
{
	HASH_SEQ_STATUS status;
	ZerobusRelation *rel;

	hash_seq_init(&status, ws->relations);
	while ((rel = hash_seq_search(&status)) != NULL)
	{
		ListCell   *lc;

		if (rel->target != target)
			continue;
		if (rel->descriptor_len == len &&
			memcmp(rel->descriptor, descriptor, len) == 0)
		{
			*columns = &rel->columns;
			*stored = &rel->accepted_stored;
			hash_seq_term(&status);
			return rel;
		}
		foreach(lc, rel->previous)
		{
			ZerobusRelationVersion *v = lfirst(lc);

			if (v->descriptor_len == len &&
				memcmp(v->descriptor, descriptor, len) == 0)
			{
				*columns = &v->columns;
				*stored = &v->accepted_stored;
				hash_seq_term(&status);
				return rel;
			}
		}
	}
	return NULL;
}

/*
 * A target accepted a descriptor of source table relid with these columns:
 * stores them as its accepted columns (delta_schema.c), which the pause
 * and evolve policies compare a later rejected descriptor with.
 */
void
zerobus_reaction_store_accepted(ZerobusWorkerState *ws, Oid relid,
								const ZerobusColumnSet *columns,
								const char *notice)
{
	ZerobusXact xact;

	zerobus_xact_begin(&xact, false);
	zerobus_stream_tables_add(ws->config->id, relid);
	zerobus_schema_store_accepted(ws->config->id, relid, columns, notice);
	zerobus_xact_end(&xact);
}

/*
 * The target accepted the descriptor of a call (ZB_OUTCOME_ACCEPTED): when
 * it is one of a Relation message, remembers the columns it accepted, once
 * per Relation message.  Returns false for a descriptor of no Relation
 * message (a snapshot's, see zerobus_snapshot_accepted).
 */
bool
zerobus_reaction_accepted(ZerobusWorkerState *ws,
						  const ZerobusOutcome *outcome)
{
	ZerobusColumnSet *columns;
	bool	   *stored;
	ZerobusRelation *rel = find_relation(ws, outcome->target,
										 outcome->descriptor,
										 outcome->descriptor_len,
										 &columns, &stored);

	if (rel == NULL)
		return false;
	if (!*stored)
	{
		zerobus_reaction_store_accepted(ws, rel->relid, columns,
										rel->drop ? rel->drop->notice : NULL);
		*stored = true;
	}
	return true;
}

/*
 * schema_policy drop_missing_columns: when the target lacks columns of
 * rel's rejected descriptor (added or renamed since it accepted accepted),
 * remembers to leave them out and fails the session, so that the next one
 * replays from the slot without them.  Returns when the policy cannot help
 * (a type changed), for the stream to pause.
 */
static void
drop_missing_columns(ZerobusWorkerState *ws, ZerobusRelation *rel,
					 const ZerobusColumnSet *accepted, const char *target_name)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(ws->cxt);
	ZerobusColumnDrop *drop = palloc0(sizeof(ZerobusColumnDrop));

	drop->nfields = zerobus_schema_missing_columns(accepted, &rel->columns,
												   rel->qualname, target_name,
												   &drop->fields,
												   &drop->notice);
	if (drop->nfields == 0)
	{
		MemoryContextSwitchTo(oldcxt);
		return;
	}
	drop->relid = rel->relid;
	drop->descriptor = palloc(rel->descriptor_len);
	memcpy(drop->descriptor, rel->descriptor, rel->descriptor_len);
	drop->descriptor_len = rel->descriptor_len;
	ws->column_drops = lappend(ws->column_drops, drop);
	MemoryContextSwitchTo(oldcxt);

	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
			 errmsg("zerobus stream \"%s\": %s", ws->config->name, drop->notice),
			 errdetail("The target rejected the descriptor and schema_policy is drop_missing_columns; the stream replays from its slot without those columns.")));
}

/*
 * The target rejected the descriptor of a call when it opened
 * (ZB_OUTCOME_REJECTED): returns the reason to pause that target alone
 * with, naming the table and the columns that changed since the target
 * last accepted a descriptor, and the ALTER TABLE statements that fix the
 * target (delta_schema.c).  Under drop_missing_columns, raises an ERROR
 * instead when leaving columns out helps (drop_missing_columns).
 */
char *
zerobus_reaction_rejected(ZerobusWorkerState *ws,
						  const ZerobusOutcome *outcome)
{
	ZerobusStreamConfig *config = ws->config;
	const char *target_name = outcome->target_name;
	const char *status = outcome->status;
	const char *message = outcome->message;
	ZerobusColumnSet *columns;
	bool	   *stored;
	ZerobusRelation *rel = find_relation(ws, outcome->target,
										 outcome->descriptor,
										 outcome->descriptor_len,
										 &columns, &stored);
	ZerobusXact xact;
	ZerobusColumnSet accepted;
	bool		known;
	char	   *problem;
	char	   *hint;

	if (rel == NULL)
		return psprintf("target table %s rejected a descriptor. Zerobus ended the stream for table %s with status %s: %s. Hint: zerobus.target_ddl(<source table>, stream => '%s') gives the CREATE TABLE the stream expects; alter the target, then call zerobus.resume_stream('%s').",
						target_name, target_name, status, message,
						config->name, config->name);
	zerobus_xact_begin(&xact, false);
	MemoryContextSwitchTo(xact.caller); /* the columns outlive it */
	known = zerobus_schema_load_accepted(config->id, rel->relid, &accepted);
	zerobus_xact_end(&xact);

	/* columns are left out of the relation's current descriptor only */
	if (config->schema_policy == ZB_SCHEMA_DROP_MISSING && known &&
		rel->drop == NULL && columns == &rel->columns)
		drop_missing_columns(ws, rel, &accepted, target_name);
	zerobus_schema_explain(known ? &accepted : NULL, columns,
						   rel->qualname, target_name, config->name, message,
						   &problem, &hint);
	return psprintf("%s. Zerobus ended the stream for table %s with status %s: %s. Hint: %s",
					problem, target_name, status, message, hint);
}

/*
 * schema_policy evolve: when the target rejected the descriptor of a call
 * (ZB_OUTCOME_REJECTED) for changes Delta applies to a table in place
 * (added and renamed columns, widened types), returns the ALTER TABLE
 * statements that apply them, one per change, in the order they must run,
 * and sets *nsql and *relid (the source table); else returns NULL (the
 * target pauses as under the pause policy).  Dropped columns need none: the target's columns are nullable.
 */
char	  **
zerobus_reaction_evolution(ZerobusWorkerState *ws,
						   const ZerobusOutcome *outcome, int *nsql,
						   Oid *relid)
{
	ZerobusStreamConfig *config = ws->config;
	ZerobusRelation *rel;
	ZerobusColumnSet *columns;
	bool	   *stored;
	ZerobusXact xact;
	ZerobusColumnSet accepted;
	ZerobusSchemaChange *changes;
	int			nchanges;
	char	  **sql;
	bool		known;

	*nsql = 0;
	if (config->schema_policy != ZB_SCHEMA_EVOLVE || config->warehouse_id == NULL)
		return NULL;
	rel = find_relation(ws, outcome->target, outcome->descriptor,
						outcome->descriptor_len, &columns, &stored);
	if (rel == NULL)
		return NULL;
	*relid = rel->relid;
	zerobus_xact_begin(&xact, false);
	MemoryContextSwitchTo(xact.caller); /* the columns outlive it */
	known = zerobus_schema_load_accepted(config->id, rel->relid, &accepted);
	zerobus_xact_end(&xact);
	if (!known)
		return NULL;

	nchanges = zerobus_schema_diff(&accepted, columns, &changes);
	sql = palloc(sizeof(char *) * (nchanges + 1));
	for (int i = 0; i < nchanges; i++)
	{
		const ZerobusSchemaChange *c = &changes[i];

		if (c->kind == ZB_SCHEMA_DROP)
			continue;
		if (c->kind == ZB_SCHEMA_RETYPE &&
			!zerobus_schema_widens(c->old->delta_type, c->new->delta_type))
			return NULL;
		sql[(*nsql)++] = zerobus_schema_alter_text(outcome->target_name, c, 1, "");
	}
	return *nsql > 0 ? sql : NULL;
}

/*
 * Records the pause of target_name (which the sender already paused) in
 * zerobus.stream_tables, on the row of every source table mapped to it:
 * those of the Relation messages seen (inserting a row the snapshot
 * bookkeeping did not make yet) and those already in the table, where the
 * next sessions find it until resume_stream() clears it; and as the
 * stream's last error.  Runs in a transaction of its own.
 */
void
zerobus_reaction_record_pause(ZerobusWorkerState *ws, const char *target_name,
							  const char *reason)
{
	ZerobusStreamConfig *config = ws->config;
	Oid			types[3] = {INT4OID, OIDOID, TEXTOID};
	Datum		values[3];
	HASH_SEQ_STATUS status;
	ZerobusRelation *rel;
	List	   *relids = NIL;
	ListCell   *lc;
	uint64		i;
	ZerobusXact xact;

	zerobus_xact_begin(&xact, true);
	hash_seq_init(&status, ws->relations);
	while ((rel = hash_seq_search(&status)) != NULL)
	{
		if (strcmp(rel->target_name, target_name) == 0)
			zerobus_stream_tables_add(config->id, rel->relid);
	}

	values[0] = Int32GetDatum(config->id);
	values[2] = CStringGetTextDatum(reason);

	if (SPI_execute_with_args("SELECT relid, schema_name, table_name"
							  " FROM zerobus.stream_tables WHERE stream_id = $1",
							  1, types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read zerobus.stream_tables");
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		if (strcmp(zerobus_stream_target_table(config,
											   SPI_getvalue(tup, desc, 2),
											   SPI_getvalue(tup, desc, 3)),
				   target_name) == 0)
			relids = lappend_oid(relids,
								 DatumGetObjectId(SPI_getbinval(tup, desc, 1,
																&isnull)));
	}
	foreach(lc, relids)
	{
		values[1] = ObjectIdGetDatum(lfirst_oid(lc));
		if (SPI_execute_with_args("UPDATE zerobus.stream_tables"
								  " SET paused_reason = $3,"
								  " paused_at = pg_catalog.now()"
								  " WHERE stream_id = $1 AND relid = $2",
								  3, types, values, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not update zerobus.stream_tables");
	}
	zerobus_xact_end(&xact);

	zerobus_stream_note_error(ws->shared, reason);
	ereport(LOG,
			(errmsg("zerobus stream \"%s\": target table %s paused, the other tables flow on: %s",
					config->name, target_name, reason)));
}

/*
 * Pauses, at the start of a session, the targets whose pause
 * zerobus.stream_tables records: their records are refused from the first
 * one on, which freezes the confirmable position there.
 */
void
zerobus_reaction_load_pauses(ZerobusWorkerState *ws)
{
	ZerobusStreamConfig *config = ws->config;
	Oid			type = INT4OID;
	Datum		value = Int32GetDatum(config->id);
	uint64		i;
	ZerobusXact xact;

	zerobus_xact_begin(&xact, true);
	if (SPI_execute_with_args("SELECT schema_name, table_name, paused_reason"
							  " FROM zerobus.stream_tables"
							  " WHERE stream_id = $1 AND paused_reason IS NOT NULL"
							  " ORDER BY paused_at DESC",
							  1, &type, &value, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read zerobus.stream_tables");
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *name = zerobus_stream_target_table(config,
													   SPI_getvalue(tup, desc, 1),
													   SPI_getvalue(tup, desc, 2));

		zerobus_sender_pause(ws->sender,
							 zerobus_sender_target(ws->sender, name), false);
		if (i == 0)
			zerobus_stream_note_error(ws->shared, SPI_getvalue(tup, desc, 3));
	}
	zerobus_xact_end(&xact);
}
