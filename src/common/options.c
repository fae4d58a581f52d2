/*-------------------------------------------------------------------------
 *
 * options.c
 *	  The options of a stream, described once: the table below drives
 *	  create_stream's and alter_stream's checks (src/api/streams.c),
 *	  alter_stream's reset, and the loading of a stream's configuration by
 *	  its worker (zerobus_stream_load).
 *
 * An option is a column of zerobus.streams (or, for a secret, of
 * zerobus.stream_secrets) and an argument of the same name of
 * create_stream and, unless it is set at creation only, of alter_stream;
 * the SQL functions find their arguments by name, so their declarations
 * (sql/zerobus--*.sql) may order them freely.  A new option is a column,
 * the two arguments, a row here and, if the worker reads it, a field of
 * ZerobusStreamConfig.
 *
 * src/common/options.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "store.h"
#include "stream.h"

#define CONFIG_FIELD(field) offsetof(ZerobusStreamConfig, field)
#define NOT_LOADED	(-1)

/*
 * The superuser-only options choose what the stream reads and how the
 * server connects on its behalf: another publication (tables the owner
 * cannot read), a conninfo (another user, the server's .pgpass, options a
 * superuser sets), a CA file (any file the server can open) or an
 * unencrypted connection.  The owner changes the rest.
 */
static const char *const schema_policies[] = {
	"pause", "drop_missing_columns", "evolve", NULL
};
static const char *const array_nulls_policies[] = {"mark", "pause", NULL};

const ZerobusStreamOption zerobus_stream_options[] = {
	{"publication", ZB_OPT_PUBLICATION, TEXTOID,
	ZB_OPT_REQUIRED | ZB_OPT_SUPERUSER, CONFIG_FIELD(publication)},
	{"endpoint", ZB_OPT_URL, TEXTOID,
	ZB_OPT_REQUIRED, CONFIG_FIELD(endpoint)},
	{"workspace_url", ZB_OPT_URL, TEXTOID,
	ZB_OPT_REQUIRED, CONFIG_FIELD(workspace_url)},
	{"client_id", ZB_OPT_TEXT, TEXTOID,
	ZB_OPT_SECRET | ZB_OPT_REQUIRED, CONFIG_FIELD(client_id)},
	{"client_secret", ZB_OPT_TEXT, TEXTOID,
	ZB_OPT_SECRET | ZB_OPT_REQUIRED, CONFIG_FIELD(client_secret)},
	{"target_catalog", ZB_OPT_TARGET_PART, TEXTOID,
	ZB_OPT_REQUIRED, CONFIG_FIELD(target_catalog)},
	{"target_schema", ZB_OPT_TARGET_PART, TEXTOID,
	0, CONFIG_FIELD(target_schema)},
	{"table_map", ZB_OPT_TABLE_MAP, JSONBOID,
	0, NOT_LOADED},				/* read by zerobus_stream_load itself */
	{"insecure", ZB_OPT_BOOL, BOOLOID,
	ZB_OPT_SUPERUSER, CONFIG_FIELD(insecure)},
	{"conninfo", ZB_OPT_CONNINFO, TEXTOID,
	ZB_OPT_SECRET | ZB_OPT_SUPERUSER, CONFIG_FIELD(conninfo)},
	{"enabled", ZB_OPT_BOOL, BOOLOID,
	ZB_OPT_CREATE_ONLY, NOT_LOADED},	/* the launcher's business */
	{"batch_max_records", ZB_OPT_TUNING, INT4OID,
	0, CONFIG_FIELD(batch_max_records), &zerobus_batch_max_records},
	{"batch_max_bytes", ZB_OPT_TUNING, INT4OID,
	0, CONFIG_FIELD(batch_max_bytes), &zerobus_batch_max_bytes},
	{"batch_max_delay", ZB_OPT_TUNING, INT4OID,
	0, CONFIG_FIELD(batch_max_delay_ms), &zerobus_batch_max_delay},
	{"max_inflight_bytes", ZB_OPT_TUNING, INT4OID,
	0, CONFIG_FIELD(max_inflight_bytes), &zerobus_max_inflight_bytes},
	{"ack_timeout", ZB_OPT_TUNING, INT4OID,
	0, CONFIG_FIELD(ack_timeout_ms), &zerobus_ack_timeout},
	{"workspace_id", ZB_OPT_TEXT, TEXTOID,
	0, CONFIG_FIELD(workspace_id)},
	{"ca_file", ZB_OPT_TEXT, TEXTOID,
	ZB_OPT_SUPERUSER, CONFIG_FIELD(ca_file), NULL, &zerobus_ca_file},
	{"owner", ZB_OPT_OWNER, REGROLEOID,
	ZB_OPT_SUPERUSER, CONFIG_FIELD(owner)},
	{"schema_policy", ZB_OPT_POLICY, TEXTOID,
	0, CONFIG_FIELD(schema_policy), .choices = schema_policies},
	{"array_nulls", ZB_OPT_POLICY, TEXTOID,
	0, CONFIG_FIELD(pause_array_nulls), .choices = array_nulls_policies},
	{"snapshot", ZB_OPT_BOOL, BOOLOID,
	ZB_OPT_CREATE_ONLY, NOT_LOADED},	/* initial_snapshot.c reads it */
	{"failover", ZB_OPT_BOOL, BOOLOID,
	ZB_OPT_CREATE_ONLY, NOT_LOADED},	/* the slot's, set at its creation */
	{"shared_connection", ZB_OPT_BOOL, BOOLOID,
	0, CONFIG_FIELD(shared_connection)},
	/* the targets are created with the stream (targets.c) */
	{"warehouse_id", ZB_OPT_TEXT, TEXTOID,
	ZB_OPT_CREATE_ONLY, CONFIG_FIELD(warehouse_id)},
	{"create_targets", ZB_OPT_BOOL, BOOLOID,
	ZB_OPT_CREATE_ONLY, CONFIG_FIELD(create_targets)},
};

const int	zerobus_stream_noptions = lengthof(zerobus_stream_options);

/* Every option fits in a ZerobusColumnValues, with room for a few more */
StaticAssertDecl(lengthof(zerobus_stream_options) + 8 <= ZB_MAX_COLUMNS,
				 "ZB_MAX_COLUMNS is too small for the stream options");

/*
 * Stores value (isnull when NULL) of option o, column attnum of the
 * current SPI result, into its field of config, allocating in cxt.
 */
static void
load_option(ZerobusStreamConfig *config, const ZerobusStreamOption *o,
			int attnum, MemoryContext cxt)
{
	char	   *field = (char *) config + o->config_offset;
	bool		isnull;
	Datum		value = zerobus_result_datum(attnum, &isnull);

	switch (o->kind)
	{
		case ZB_OPT_TUNING:
			*(int *) field = isnull ? *o->tuning_default : DatumGetInt32(value);
			break;
		case ZB_OPT_BOOL:
			*(bool *) field = !isnull && DatumGetBool(value);
			break;
		case ZB_OPT_POLICY:
			/* the choice's position; NULL is the first */
			*(int *) field = 0;
			if (!isnull)
			{
				char	   *choice = TextDatumGetCString(value);

				for (int c = 0; o->choices[c] != NULL; c++)
					if (strcmp(choice, o->choices[c]) == 0)
						*(int *) field = c;
			}
			break;
		case ZB_OPT_OWNER:
			*(Oid *) field = isnull ? InvalidOid : DatumGetObjectId(value);
			break;
		case ZB_OPT_TABLE_MAP:
			elog(ERROR, "option \"%s\" is not loaded", o->name);
			break;
		default:
			if (!isnull)
				*(char **) field = MemoryContextStrdup(cxt, TextDatumGetCString(value));
			else if (o->text_default && (*o->text_default)[0] != '\0')
				*(char **) field = MemoryContextStrdup(cxt, *o->text_default);
			else
				*(char **) field = NULL;
			break;
	}
}

/*
 * The configuration of stream stream_id, allocated in the caller's memory
 * context, with the zerobus.* settings filling in the options the stream
 * does not set; NULL if the stream does not exist.  Only with credentials
 * does it read the secret options (client id, client secret, conninfo;
 * NULL otherwise): the stream worker needs them, a function called by any
 * role never does, and a secret not read cannot leak from the caller's
 * backend.  Must run in a transaction; the caller needs no particular
 * privilege.
 */
ZerobusStreamConfig *
zerobus_stream_load(int32 stream_id, bool credentials)
{
	MemoryContext cxt = CurrentMemoryContext;
	ZerobusStreamConfig *config;
	ZerobusColumnValues args = {0};
	ZerobusCatalogAccess access;
	StringInfoData sql;
	uint64		i;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT s.name, s.slot_name");
	for (i = 0; i < lengthof(zerobus_stream_options); i++)
	{
		const ZerobusStreamOption *o = &zerobus_stream_options[i];

		if (o->config_offset == NOT_LOADED)
			continue;
		if (zerobus_catalog_has_column(o->flags & ZB_OPT_SECRET ?
									   "stream_secrets" : "streams", o->name))
			appendStringInfo(&sql, ", %s.%s", o->flags & ZB_OPT_SECRET ? "c" : "s",
							 o->name);
		else
			appendStringInfoString(&sql, ", NULL"); /* not updated yet */
	}
	appendStringInfoString(&sql, " FROM zerobus.streams s"
						   " LEFT JOIN zerobus.stream_secrets c"
						   "  ON $2 AND c.stream_id = s.id"
						   " WHERE s.id = $1");

	zerobus_catalog_begin(&access);
	zerobus_add_column(&args, "id", INT4OID, Int32GetDatum(stream_id), false);
	zerobus_add_column(&args, "credentials", BOOLOID, BoolGetDatum(credentials), false);
	zerobus_execute_with_values(sql.data, &args, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		zerobus_catalog_end(&access);
		return NULL;
	}

	config = MemoryContextAllocZero(cxt, sizeof(ZerobusStreamConfig));
	config->id = stream_id;
	config->name = MemoryContextStrdup(cxt, zerobus_result_text(1));
	config->slot_name = MemoryContextStrdup(cxt, zerobus_result_text(2));
	{
		int			attnum = 3;

		for (i = 0; i < lengthof(zerobus_stream_options); i++)
			if (zerobus_stream_options[i].config_offset != NOT_LOADED)
				load_option(config, &zerobus_stream_options[i], attnum++, cxt);
	}

	zerobus_execute_with_values("SELECT m.key, m.value FROM zerobus.streams s,"
								" pg_catalog.jsonb_each_text(s.table_map) m"
								" WHERE s.id = $1", &args, SPI_OK_SELECT);
	config->ntargets = (int) SPI_processed;
	config->target_sources = MemoryContextAllocZero(cxt, sizeof(char *) * (SPI_processed + 1));
	config->target_tables = MemoryContextAllocZero(cxt, sizeof(char *) * (SPI_processed + 1));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];

		config->target_sources[i] =
			MemoryContextStrdup(cxt, SPI_getvalue(tup, SPI_tuptable->tupdesc, 1));
		config->target_tables[i] =
			MemoryContextStrdup(cxt, SPI_getvalue(tup, SPI_tuptable->tupdesc, 2));
	}
	zerobus_catalog_end(&access);
	return config;
}

/*
 * Takes over the tuning options of fresh into config: what a worker
 * applies on a configuration reload without a restart.
 */
void
zerobus_stream_retune(ZerobusStreamConfig *config,
					  const ZerobusStreamConfig *fresh)
{
	for (int i = 0; i < (int) lengthof(zerobus_stream_options); i++)
	{
		const ZerobusStreamOption *o = &zerobus_stream_options[i];

		if (o->kind == ZB_OPT_TUNING)
			memcpy((char *) config + o->config_offset,
				   (const char *) fresh + o->config_offset, sizeof(int));
	}
}
