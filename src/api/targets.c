/*-------------------------------------------------------------------------
 *
 * targets.c
 *	  Creating a stream's target tables in Databricks, for create_stream's
 *	  create_targets: the CREATE TABLE that zerobus.target_ddl() prints,
 *	  run through the SQL Statement Execution API (statement.c) on the
 *	  stream's warehouse, with a workspace token of its service principal.
 *
 * create_stream runs the statements before it returns, so before the
 * stream's worker can start (it starts once create_stream's transaction
 * commits) and send its first records.  A target that exists is left as
 * it is (CREATE TABLE IF NOT EXISTS): if its columns differ from the
 * source table's, Zerobus refuses the stream's descriptor and the worker
 * pauses that table with the column named, as for any schema difference.
 * A statement that fails (a warehouse error, a missing privilege, a
 * timeout) does not fail create_stream: its table is paused with the
 * statement's error, and the tables after it, not tried, are paused too.
 * Their changes wait in the slot; resume_stream() runs the statements of
 * the paused tables again before the worker restarts.  Failing
 * create_stream instead would roll the record of the failed statement
 * back with it, and would leave the caller nothing to resume.
 *
 * With create_mirrors, the mirror table of each table with a key (the
 * CREATE TABLE IF NOT EXISTS that target_ddl(form => 'mirror') prints) is
 * created the same way, after all the change tables.  The stream never
 * writes a mirror, so a mirror that cannot be created pauses nothing: it is
 * a WARNING, and the statement's record.  Keeping it current is the AUTO
 * CDC flow's or the scheduled MERGE's job (README, "Current-state mirror").
 *
 * Every statement run is recorded in zerobus.statement_log (shown by the
 * view zerobus.statements), in the transaction of the call that ran it.
 *
 * src/api/targets.c
 *
 *-------------------------------------------------------------------------
 */
#include "zerobus.h"

#include "access/relation.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "auth.h"
#include "statement.h"
#include "store.h"
#include "stream.h"
#include "targets.h"

/* One table to create */
typedef struct TargetTable
{
	Oid			relid;
	char	   *source;			/* schema.table, quoted as needed */
	char	   *target;			/* catalog.schema.table */
	char	   *ddl;
	bool		mirror;			/* target is a mirror table */
} TargetTable;

/*
 * The tables of stream_id to create, in the caller's memory: those of
 * zerobus.stream_tables, or of them only those in relids when it is not
 * NIL; with mirrors, then the mirror tables of those with a key.
 */
static List *
tables_to_create(ZerobusStreamConfig *config, List *relids, bool mirrors)
{
	List	   *mirror_tables = NIL;
	MemoryContext caller = CurrentMemoryContext;
	ZerobusColumnValues args = {0};
	ZerobusCatalogAccess access;
	List	   *tables = NIL;
	ListCell   *lc;

	zerobus_catalog_begin(&access);
	zerobus_add_column(&args, "id", INT4OID, Int32GetDatum(config->id), false);
	zerobus_execute_with_values("SELECT relid, schema_name, table_name"
								" FROM zerobus.stream_tables WHERE stream_id = $1"
								" ORDER BY schema_name, table_name",
								&args, SPI_OK_SELECT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Oid			relid = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
		char	   *schema_name = SPI_getvalue(tup, desc, 2);
		char	   *table_name = SPI_getvalue(tup, desc, 3);
		MemoryContext spi = MemoryContextSwitchTo(caller);
		TargetTable *t;

		if (relids == NIL || list_member_oid(relids, relid))
		{
			t = palloc0(sizeof(TargetTable));
			t->relid = relid;
			t->source = pstrdup(quote_qualified_identifier(schema_name, table_name));
			t->target = pstrdup(zerobus_stream_target_table(config, schema_name,
															table_name));
			tables = lappend(tables, t);
		}
		MemoryContextSwitchTo(spi);
	}
	zerobus_catalog_end(&access);

	/* the CREATE TABLE of each, from the plan of its published columns */
	foreach(lc, tables)
	{
		TargetTable *t = lfirst(lc);
		Relation	rel = zerobus_open_table(t->relid);
		Bitmapset  *columns = zerobus_published_columns(config->publication,
														t->relid);
		ZerobusRecordPlan *plan = zerobus_plan_build(rel, columns,
													 CurrentMemoryContext);

		t->ddl = zerobus_target_ddl_text(plan, t->target, false);
		if (mirrors)
		{
			TargetTable *m = palloc0(sizeof(TargetTable));
			const char *why;

			m->relid = t->relid;
			m->source = t->source;
			m->target = zerobus_mirror_table_name(t->target);
			m->mirror = true;
			m->ddl = zerobus_mirror_create_text(rel, plan, m->target, &why);
			if (m->ddl != NULL)
				mirror_tables = lappend(mirror_tables, m);
			else
				ereport(NOTICE,
						(errmsg("stream \"%s\": table %s gets no mirror table",
								config->name, t->source),
						 errdetail_internal("%s", why)));
		}
		zerobus_plan_free(plan);
		relation_close(rel, AccessShareLock);
	}
	return list_concat(tables, mirror_tables);
}

/*
 * Records the statements run and pauses the tables not created: the one
 * whose statement failed (with its error) and those not tried after it.
 * Mirror tables pause nothing: the stream does not write them.
 */
static void
record_runs(ZerobusStreamConfig *config, List *tables,
			ZerobusStatementResult *results, int nrun)
{
	ZerobusCatalogAccess access;
	TargetTable *failed = NULL;
	int			i = 0;
	ListCell   *lc;

	zerobus_catalog_begin(&access);
	foreach(lc, tables)
	{
		TargetTable *t = lfirst(lc);
		ZerobusStatementResult *r = &results[i];
		char	   *reason = NULL;

		if (i < nrun)
		{
			zerobus_statement_record(config->id, t->relid, t->target, t->ddl, r);
			if (!r->succeeded)
			{
				failed = t;
				if (!t->mirror)
					reason = psprintf("target table %s could not be created: statement %s: %s",
									  t->target, r->state, r->error);
			}
		}
		else if (!t->mirror)
			reason = psprintf("target table %s was not created: the creation of %s failed first",
							  t->target, failed->target);
		if (reason != NULL)
		{
			ZerobusColumnValues pause = {0};

			zerobus_add_column(&pause, "stream_id", INT4OID, Int32GetDatum(config->id), false);
			zerobus_add_column(&pause, "relid", OIDOID, ObjectIdGetDatum(t->relid), false);
			zerobus_add_column(&pause, "reason", TEXTOID, CStringGetTextDatum(reason), false);
			zerobus_execute_with_values("UPDATE zerobus.stream_tables"
										" SET paused_reason = $3, paused_at = pg_catalog.now()"
										" WHERE stream_id = $1 AND relid = $2",
										&pause, SPI_OK_UPDATE);
		}
		i++;
	}
	zerobus_catalog_end(&access);
}

/*
 * Creates the missing target tables of stream_id (all of its tables, or
 * those in relids when it is not NIL), if the stream creates its targets,
 * and with mirrors their missing mirror tables.  Tables whose creation
 * fails are paused, with a WARNING.  Needs a transaction; the caller has
 * checked its right to act on the stream.
 */
void
zerobus_create_targets(int32 stream_id, List *relids, bool mirrors)
{
	ZerobusStreamConfig *config = zerobus_stream_load(stream_id, true);
	ZerobusWorkspace ws = {0};
	List	   *tables;
	const char **sql;
	ZerobusStatementResult *results;
	int			n;
	int			nrun;
	int			nchange = 0;	/* change tables, before the mirrors */
	int			i = 0;
	ListCell   *lc;

	if (config == NULL || !config->create_targets)
		return;
	tables = tables_to_create(config, relids, mirrors);
	n = list_length(tables);
	if (n == 0)
		return;
	sql = palloc(sizeof(char *) * n);
	foreach(lc, tables)
	{
		sql[i++] = ((TargetTable *) lfirst(lc))->ddl;
		if (!((TargetTable *) lfirst(lc))->mirror)
			nchange++;
	}
	results = palloc0(sizeof(ZerobusStatementResult) * n);

	ws.workspace_url = config->workspace_url;
	ws.workspace_id = config->workspace_id ? config->workspace_id :
		zerobus_workspace_id(config->endpoint);
	ws.warehouse_id = config->warehouse_id;
	ws.client_id = config->client_id;
	ws.client_secret = config->client_secret;
	ws.ca_file = config->ca_file;
	ws.insecure = config->insecure;
	nrun = zerobus_statements_run(&ws, sql, n, results);

	record_runs(config, tables, results, nrun);
	if (nrun > 0 && !results[nrun - 1].succeeded)
	{
		TargetTable *t = list_nth(tables, nrun - 1);
		ZerobusStatementResult *r = &results[nrun - 1];

		ereport(WARNING,
				(errcode(ERRCODE_WARNING),
				 t->mirror ?
				 errmsg("stream \"%s\": mirror table %s could not be created",
						config->name, t->target) :
				 errmsg("stream \"%s\": target table %s could not be created",
						config->name, t->target),
				 errdetail("Statement %s ended %s: %s",
						   r->statement_id ? r->statement_id : "(not submitted)",
						   r->state, r->error),
				 t->mirror ?
				 errhint("The stream is not affected%s. Once the cause is fixed, run the CREATE TABLE that zerobus.target_ddl('%s', stream => '%s', form => 'mirror') prints.",
						 nrun < n ? "; the mirror tables after it were not tried either" : "",
						 t->source, config->name) :
				 errhint("Its source table %s is paused%s, its changes kept in the slot; once the cause is fixed, zerobus.resume_stream('%s') runs the statement again.",
						 t->source,
						 nrun < nchange ? ", and so are the tables after it" : "",
						 config->name)));
	}
}

/*
 * The tables of stream name (relids, in the caller's memory) paused
 * because their target could not be created (the reasons above), when the
 * stream creates its targets, else NIL; *stream_id is set either way.
 * resume_stream runs their CREATE TABLE again; a table paused for another
 * reason needs none, and a slow warehouse must not hold its resume.
 */
List *
zerobus_targets_paused(const char *name, int32 *stream_id)
{
	MemoryContext caller = CurrentMemoryContext;
	ZerobusColumnValues args = {0};
	ZerobusCatalogAccess access;
	ZerobusStreamRow *row;
	List	   *relids = NIL;

	zerobus_catalog_begin(&access);
	row = zerobus_lookup_stream(name, false);
	*stream_id = row->id;
	if (!zerobus_catalog_has_column("streams", "create_targets"))
	{
		/* not updated yet: no stream creates its targets */
		zerobus_catalog_end(&access);
		return NIL;
	}
	zerobus_add_column(&args, "id", INT4OID, Int32GetDatum(row->id), false);
	zerobus_execute_with_values("SELECT t.relid FROM zerobus.stream_tables t"
								" JOIN zerobus.streams s ON s.id = t.stream_id"
								" WHERE t.stream_id = $1 AND s.create_targets"
								" AND (t.paused_reason LIKE 'target table % could not be created: %'"
								"  OR t.paused_reason LIKE 'target table % was not created: %')",
								&args, SPI_OK_SELECT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Oid			relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
														   SPI_tuptable->tupdesc,
														   1, &isnull));
		MemoryContext spi = MemoryContextSwitchTo(caller);

		relids = lappend_oid(relids, relid);
		MemoryContextSwitchTo(spi);
	}
	zerobus_catalog_end(&access);
	return relids;
}
