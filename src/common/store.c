/*-------------------------------------------------------------------------
 *
 * store.c
 *	  The extension's own tables, as the SQL functions and the stream
 *	  workers read and write them: SPI as the bootstrap superuser with a
 *	  safe search_path, statements whose values are all parameters, the
 *	  stream row a function acts on, a stream's configuration as its
 *	  worker loads it, and the bookkeeping of zerobus.stream_tables (one
 *	  row per table a stream publishes) shared by the SQL functions and the
 *	  worker.
 *
 * src/common/store.c
 *
 *-------------------------------------------------------------------------
 */
#include "zerobus.h"

#include "access/relation.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rls.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "store.h"
#include "stream.h"

static int	force_safe_search_path(void);

/*
 * Starts a transaction of its own, with a snapshot, for the catalog work of
 * a background worker (the caller must be outside any transaction); with
 * spi, connects to SPI too.  zerobus_xact_end() commits it.
 */
void
zerobus_xact_begin(ZerobusXact *xact, bool spi)
{
	Assert(!IsTransactionState());
	xact->caller = CurrentMemoryContext;
	xact->spi = spi;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (spi && SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

/*
 * Commits the transaction of zerobus_xact_begin() and goes back to the
 * memory context the caller was in then.
 */
void
zerobus_xact_end(ZerobusXact *xact)
{
	if (xact->spi)
		SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(xact->caller);
}

/* Appends a column and its value (an SPI parameter) to cv */
void
zerobus_add_column(ZerobusColumnValues *cv, const char *column, Oid type,
				   Datum value, bool isnull)
{
	Assert((size_t) cv->n < lengthof(cv->columns));
	cv->columns[cv->n] = column;
	cv->types[cv->n] = type;
	cv->values[cv->n] = value;
	cv->nulls[cv->n] = isnull ? 'n' : ' ';
	cv->n++;
}

/*
 * Connects to SPI as the bootstrap superuser, with search_path forced to
 * pg_catalog, pg_temp whatever the caller or the database set: an operator
 * or function that a role planted earlier on its path must never run with
 * the superuser's rights.  zerobus_catalog_end() undoes both (an error
 * undoes them too, with the transaction).
 */
void
zerobus_catalog_begin(ZerobusCatalogAccess *access)
{
	GetUserIdAndSecContext(&access->caller, &access->sec_context);
	SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID,
						   access->sec_context | SECURITY_LOCAL_USERID_CHANGE);
	access->guc_level = force_safe_search_path();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

/* Leaves SPI and acts as the caller again, under its search_path */
void
zerobus_catalog_end(ZerobusCatalogAccess *access)
{
	SPI_finish();
	AtEOXact_GUC(true, access->guc_level);
	SetUserIdAndSecContext(access->caller, access->sec_context);
}

/*
 * Sets search_path to pg_catalog, pg_temp at a new GUC nest level, which
 * the caller ends with AtEOXact_GUC(true, level) (or the transaction's
 * abort does).  For every statement run with more rights than the role
 * whose settings are in effect.  Returns the level.
 */
static int
force_safe_search_path(void)
{
	int			level = NewGUCNestLevel();

	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
	return level;
}

/* SPI_execute_with_args on cv's values, checking the result */
void
zerobus_execute_with_values(const char *sql, ZerobusColumnValues *cv,
							int expected)
{
	int			rc = SPI_execute_with_args(sql, cv->n, cv->types, cv->values,
										   cv->nulls, false, 0);

	if (rc != expected)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
}

/*
 * Creates the logical replication slot of a stream (needs SPI), with
 * failover (synchronized to standbys that ask for it, 17+) when asked; the
 * caller has checked that the server supports it (ZB_HAVE_FAILOVER_SLOTS).
 */
void
zerobus_create_stream_slot(const char *slot_name, bool failover)
{
	ZerobusColumnValues args = {0};

	zerobus_add_column(&args, "slot_name", NAMEOID,
					   DirectFunctionCall1(namein, CStringGetDatum(slot_name)), false);
	zerobus_add_column(&args, "failover", BOOLOID, BoolGetDatum(failover), false);
	zerobus_execute_with_values(ZB_CREATE_SLOT_SQL, &args, SPI_OK_SELECT);
}

/* Text of column attnum of the first result row, or NULL */
char *
zerobus_result_text(int attnum)
{
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, attnum);
}

/* Binary value of column attnum of the first result row */
Datum
zerobus_result_datum(int attnum, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
						 attnum, isnull);
}

/* s copied out of SPI's memory, into the caller's */
static char *
spi_strdup(const char *s)
{
	char	   *copy = SPI_palloc(strlen(s) + 1);

	strcpy(copy, s);
	return copy;
}

/*
 * Reads the stream called name, row-locked for update (allocated in the
 * caller's memory); NULL when there is none and missing_ok.  Needs
 * zerobus_catalog_begin().
 */
ZerobusStreamRow *
zerobus_lookup_stream(const char *name, bool missing_ok)
{
	ZerobusColumnValues cv = {0};
	ZerobusStreamRow *row;
	bool		isnull;

	zerobus_add_column(&cv, "name", TEXTOID, CStringGetTextDatum(name), false);
	zerobus_execute_with_values("SELECT id, owner::oid, slot_name, endpoint, workspace_url, insecure"
								" FROM zerobus.streams WHERE name = $1 FOR UPDATE",
								&cv, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		if (missing_ok)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("stream \"%s\" does not exist", name)));
	}
	row = SPI_palloc(sizeof(ZerobusStreamRow));
	row->id = DatumGetInt32(zerobus_result_datum(1, &isnull));
	row->owner = DatumGetObjectId(zerobus_result_datum(2, &isnull));
	row->slot_name = spi_strdup(zerobus_result_text(3));
	row->endpoint = spi_strdup(zerobus_result_text(4));
	row->workspace_url = spi_strdup(zerobus_result_text(5));
	row->insecure = DatumGetBool(zerobus_result_datum(6, &isnull));
	return row;
}

/*
 * Opens the table relid names with AccessShareLock, held until the end of
 * the transaction; errors out when no relation has that OID (a regclass
 * argument is only an OID: 999999::regclass names nothing) or it was
 * dropped meanwhile.  The caller checks the relation's kind and privileges.
 */
Relation
zerobus_open_table(Oid relid)
{
	Relation	rel = try_relation_open(relid, AccessShareLock);

	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	return rel;
}

/* Errors out unless the caller has the privileges of the stream's owner. */
void
zerobus_check_stream_owner(ZerobusCatalogAccess *access, const char *name,
						   ZerobusStreamRow *row)
{
	if (!has_privs_of_role(access->caller, row->owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of stream \"%s\"", name)));
}

/* The text argument argno, or NULL; errors out when NULL and required */
char *
zerobus_text_arg(FunctionCallInfo fcinfo, int argno, const char *argname,
				 bool required)
{
	if (PG_ARGISNULL(argno))
	{
		if (required)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not be null", argname)));
		return NULL;
	}
	return text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

/*
 * Whether owner can read table relid as a stream must: with the SELECT
 * privilege, and with no row-level security that applies to it (the stream
 * reads past any policy, as the superuser).  A stream whose owner cannot
 * would copy to Databricks what its owner cannot see.  Needs a transaction.
 */
ZerobusOwnerRead
zerobus_owner_can_read(Oid owner, Oid relid)
{
	if (pg_class_aclcheck(relid, owner, ACL_SELECT) != ACLCHECK_OK)
		return ZB_READ_NO_SELECT;
	if (check_enable_rls(relid, owner, true) != RLS_NONE)
		return ZB_READ_RLS;
	return ZB_READ_OK;
}

/*
 * The target table (catalog.schema.table) of source table
 * schema_name.table_name: its table_map entry, else the stream's target
 * catalog, its target schema (or else the source schema) and the table's
 * name.  palloc'd.
 */
char *
zerobus_stream_target_table(ZerobusStreamConfig *config,
							const char *schema_name, const char *table_name)
{
	const char *source = quote_qualified_identifier(schema_name, table_name);
	int			i;

	for (i = 0; i < config->ntargets; i++)
		if (strcmp(config->target_sources[i], source) == 0)
			return pstrdup(config->target_tables[i]);
	return psprintf("%s.%s.%s", config->target_catalog,
					config->target_schema ? config->target_schema : schema_name,
					table_name);
}

/*
 * Pauses stream stream_id on a permanent error: records reason in
 * zerobus.streams (in a transaction of its own, which the caller must not
 * be in) and in the shared state, which shows the stream failed.  The
 * launcher starts no worker for it until zerobus.resume_stream().
 */
void
zerobus_stream_set_failed(int32 stream_id, const char *reason)
{
	ZerobusStreamShared *shared;
	ZerobusColumnValues args = {0};
	ZerobusCatalogAccess access;
	ZerobusXact xact;

	zerobus_xact_begin(&xact, false);
	zerobus_catalog_begin(&access);
	zerobus_add_column(&args, "id", INT4OID, Int32GetDatum(stream_id), false);
	zerobus_add_column(&args, "reason", TEXTOID, CStringGetTextDatum(reason), false);
	zerobus_execute_with_values("UPDATE zerobus.streams"
								" SET paused_reason = $2, paused_at = pg_catalog.now()"
								" WHERE id = $1", &args, SPI_OK_UPDATE);
	zerobus_catalog_end(&access);
	zerobus_xact_end(&xact);

	shared = zerobus_stream_shared(stream_id, true);
	zerobus_stream_note_error(shared, reason);
	SpinLockAcquire(&shared->mutex);
	shared->state = ZB_STATE_FAILED;
	SpinLockRelease(&shared->mutex);

	ereport(LOG,
			(errmsg("zerobus stream %d paused: %s", stream_id, reason)));
}

/* ----------------------------------------------------------------
 * zerobus.stream_tables
 * ----------------------------------------------------------------
 */

/* Estimated rows of relation p.relid (all its leaves), NULL when unknown */
#define ESTIMATED_ROWS \
	"(SELECT sum(nullif(x.reltuples, -1))::int8" \
	" FROM " ZB_PARTITION_LEAVES("p.relid") " pt" \
	" JOIN pg_catalog.pg_class x ON x.oid = pt.relid)"

/*
 * The snapshot state of a table that joins stream s (an alias of
 * zerobus.streams, or of a relation with its snapshot column): pending, or
 * skipped when the stream takes no snapshots.
 */
#define JOINING_STATE(s) \
	"CASE WHEN " s ".snapshot THEN 'pending' ELSE 'skipped' END"

/*
 * Brings stream_tables of the stream in line with its publication: rows
 * for new tables ('pending', or 'skipped' when the stream does not
 * snapshot), none for tables no longer published (logged).  Needs a
 * transaction; acts as the current user, who must be able to write
 * zerobus.stream_tables.
 */
void
zerobus_stream_tables_sync(int32 stream_id)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(stream_id)};
	uint64		i;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	if (SPI_execute_with_args("DELETE FROM zerobus.stream_tables st"
							  " WHERE st.stream_id = $1 AND NOT EXISTS"
							  " (SELECT FROM (" ZB_PUBLISHED_TABLES ") p"
							  "  WHERE p.relid = st.relid)"
							  " RETURNING st.schema_name, st.table_name,"
							  " st.snapshot_state",
							  1, argtypes, args, NULL, false, 0) !=
		SPI_OK_DELETE_RETURNING)
		elog(ERROR, "could not update zerobus.stream_tables");
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		ereport(LOG,
				(errmsg("zerobus stream %d: table %s is no longer published, its snapshot state (%s) is dropped",
						stream_id,
						quote_qualified_identifier(SPI_getvalue(tup, desc, 1),
												   SPI_getvalue(tup, desc, 2)),
						SPI_getvalue(tup, desc, 3))));
	}

	if (SPI_execute_with_args("INSERT INTO zerobus.stream_tables"
							  " (stream_id, relid, schema_name, table_name,"
							  "  snapshot_state, snapshot_rows_estimated)"
							  " SELECT $1, p.relid, p.nspname, p.relname, "
							  JOINING_STATE("p") ", " ESTIMATED_ROWS
							  " FROM (" ZB_PUBLISHED_TABLES ") p"
							  " ON CONFLICT (stream_id, relid) DO NOTHING",
							  1, argtypes, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not update zerobus.stream_tables");
	SPI_finish();
}

/*
 * Gives relid a stream_tables row of the stream if it has none, as
 * zerobus_stream_tables_sync() would, for the worker to record something
 * about a table it met in the change stream before the next sync did.
 * Nothing for a relation that no longer exists.  Needs a transaction and a
 * snapshot, and a superuser (the stream worker).
 */
void
zerobus_stream_tables_add(int32 stream_id, Oid relid)
{
	Oid			argtypes[2] = {INT4OID, OIDOID};
	Datum		args[2] = {Int32GetDatum(stream_id), ObjectIdGetDatum(relid)};

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("INSERT INTO zerobus.stream_tables"
							  " (stream_id, relid, schema_name, table_name,"
							  "  snapshot_state, snapshot_rows_estimated)"
							  " SELECT s.id, p.relid, n.nspname, c.relname, "
							  JOINING_STATE("s") ", " ESTIMATED_ROWS
							  " FROM zerobus.streams s,"
							  " (SELECT $2::pg_catalog.oid AS relid) p"
							  " JOIN pg_catalog.pg_class c ON c.oid = p.relid"
							  " JOIN pg_catalog.pg_namespace n"
							  "  ON n.oid = c.relnamespace"
							  " WHERE s.id = $1"
							  " ON CONFLICT (stream_id, relid) DO NOTHING",
							  2, argtypes, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not update zerobus.stream_tables");
	SPI_finish();
}

/*
 * Puts a table of the stream back to 'pending' from its first row (what
 * zerobus.snapshot_table() does), after syncing stream_tables with the
 * publication.  Returns false when the stream does not publish the table.
 * Needs a transaction, like zerobus_stream_tables_sync().
 */
bool
zerobus_stream_tables_reset(int32 stream_id, Oid relid)
{
	Oid			argtypes[2] = {INT4OID, OIDOID};
	Datum		args[2] = {Int32GetDatum(stream_id), ObjectIdGetDatum(relid)};
	bool		found;

	zerobus_stream_tables_sync(stream_id);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("UPDATE zerobus.stream_tables p"
							  " SET snapshot_state = 'pending',"
							  " snapshot_key = NULL, snapshot_rows = 0,"
							  " snapshot_lsn = NULL,"
							  " snapshot_started_at = NULL,"
							  " snapshot_finished_at = NULL,"
							  " snapshot_rows_estimated = " ESTIMATED_ROWS
							  " WHERE p.stream_id = $1 AND p.relid = $2",
							  2, argtypes, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not update zerobus.stream_tables");
	found = SPI_processed > 0;
	SPI_finish();
	return found;
}

/*
 * Whether table table of schema zerobus has column column.  The library
 * serves every version of the extension's SQL from 0.1.0 on: in a database
 * not updated yet (ALTER EXTENSION zerobus UPDATE), the columns added
 * since are missing, and what they hold reads as unset.
 */
bool
zerobus_catalog_has_column(const char *table, const char *column)
{
	Oid			relid = get_relname_relid(table,
										  get_namespace_oid("zerobus", false));

	return OidIsValid(relid) && get_attnum(relid, column) != InvalidAttrNumber;
}
