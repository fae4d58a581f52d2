/*-------------------------------------------------------------------------
 *
 * module.c
 *	  Module initialization: the zerobus.* settings, which databases run
 *	  streams, and the guard against dropping the extension under them.
 *
 * Loaded through shared_preload_libraries, the module defines its settings,
 * reserves its shared memory (src/common/shared.c), installs an object
 * access hook (see zerobus_object_access) and registers the cluster
 * launcher (src/worker/cluster_launcher.c), which starts a database
 * launcher (src/worker/launcher.c) for each database with streams to run.
 *
 * Loaded any other way (a walsender or a backend loading the output plugin)
 * the module only serves as the output plugin: no settings, no shared
 * memory, and the SQL API refuses to run.
 *
 * src/common/module.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_class.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/varlena.h"

#include "store.h"
#include "stream.h"

void		_PG_init(void);

static object_access_hook_type prev_object_access_hook = NULL;


bool		zerobus_preloaded = false;

char	   *zerobus_databases = NULL;
char	   *zerobus_database = NULL;
int			zerobus_max_streams = 16;
int			zerobus_batch_max_records = 1000;
int			zerobus_batch_max_bytes = 1024 * 1024;
int			zerobus_batch_max_delay = 10;
int			zerobus_max_inflight_bytes = 48 * 1024 * 1024;
int			zerobus_ack_timeout = 60000;
int			zerobus_restart_backoff_max = 60;
int			zerobus_snapshot_chunk_rows = 10000;
char	   *zerobus_ca_file = NULL;
char	   *zerobus_proxy = NULL;
char	   *zerobus_no_proxy = NULL;
int			zerobus_stream_max_records_per_second = 15000;
int			zerobus_stream_max_bytes_per_second = 100000000;
int			zerobus_max_streams_per_table = 32;
int			zerobus_statement_timeout = 300000;

/*
 * The integer settings.  Those marked per_stream are also options of
 * create_stream/alter_stream, which validate them against the same limits.
 */
typedef struct IntSetting
{
	const char *name;			/* without the "zerobus." prefix */
	const char *description;
	int		   *variable;
	int			boot_value;
	int			min_value;
	int			max_value;
	GucContext	context;
	int			flags;
	bool		per_stream;
} IntSetting;

static const IntSetting int_settings[] = {
	{"max_streams",
		"Maximum number of streams (shared memory slots).",
		&zerobus_max_streams, 16, 1, 1024, PGC_POSTMASTER, 0, false},
	{"batch_max_records",
		"Maximum number of records in one request to Zerobus.",
		&zerobus_batch_max_records, 1000, 1, 100000, PGC_SIGHUP, 0, true},
	{"batch_max_bytes",
		"Maximum size of the records of one request to Zerobus.",
		&zerobus_batch_max_bytes, 1024 * 1024, 1024, 10 * 1024 * 1024 - 64 * 1024,
		PGC_SIGHUP, GUC_UNIT_BYTE, true},
	{"batch_max_delay",
		"Maximum time a record waits for its batch to fill.",
		&zerobus_batch_max_delay, 10, 0, 60000, PGC_SIGHUP, GUC_UNIT_MS, true},
	{"max_inflight_bytes",
		"Bytes sent or queued and not yet acknowledged after which a worker stops reading its slot.",
		&zerobus_max_inflight_bytes, 48 * 1024 * 1024, 1024 * 1024, INT_MAX,
		PGC_SIGHUP, GUC_UNIT_BYTE, true},
	{"ack_timeout",
		"Time without any acknowledgement, while records are in flight, after which a worker reconnects.",
		&zerobus_ack_timeout, 60000, 1000, INT_MAX, PGC_SIGHUP, GUC_UNIT_MS, true},
	{"restart_backoff_max",
		"Maximum delay before a failed stream worker is restarted.",
		&zerobus_restart_backoff_max, 60, 1, 3600, PGC_SIGHUP, GUC_UNIT_S, false},
	{"snapshot_chunk_rows",
		"Rows an initial snapshot reads per primary-key chunk (one short transaction each).",
		&zerobus_snapshot_chunk_rows, 10000, 100, 1000000, PGC_SIGHUP, 0, false},
	{"stream_max_records_per_second",
		"Records per second one Zerobus stream carries (the service's per-stream quota); a busier table gets more streams.",
		&zerobus_stream_max_records_per_second, 15000, 1, INT_MAX, PGC_SIGHUP, 0, false},
	{"stream_max_bytes_per_second",
		"Bytes per second one Zerobus stream carries (the service's per-stream quota); a busier table gets more streams.",
		&zerobus_stream_max_bytes_per_second, 100000000, 1024, INT_MAX,
		PGC_SIGHUP, GUC_UNIT_BYTE, false},
	/* 32 streams at 70% of the strictest quota (15,000/s) carry 336,000/s */
	{"max_streams_per_table",
		"Maximum number of Zerobus streams one table's records are spread over.",
		&zerobus_max_streams_per_table, 32, 1, ZB_MAX_STREAMS_PER_TABLE, PGC_SIGHUP, 0, false},
	/* a warehouse may have to start first: minutes for a classic one */
	{"statement_timeout",
		"Time a Databricks SQL statement (creating or altering a target table) may take, warehouse start included, before it is canceled.",
		&zerobus_statement_timeout, 300000, 1000, INT_MAX, PGC_SUSET, GUC_UNIT_MS, false},
};

/*
 * Whether the database named datname (a template, with istemplate) is one
 * the launchers serve, by the list list (zerobus.databases' syntax: names
 * as identifiers, "*" for every database that is not a template).
 */
static bool
database_in_list(const char *list, const char *datname, bool istemplate)
{
	char	   *copy = pstrdup(list);
	List	   *names;
	ListCell   *lc;
	bool		served = false;

	if (!SplitIdentifierString(copy, ',', &names))
		names = NIL;			/* the check hook refused that already */
	foreach(lc, names)
	{
		const char *name = (const char *) lfirst(lc);

		if ((strcmp(name, "*") == 0 && !istemplate) ||
			strcmp(name, datname) == 0)
			served = true;
	}
	list_free(names);
	pfree(copy);
	return served;
}

/*
 * Whether the launchers serve database datname: zerobus.databases, or the
 * deprecated zerobus.database when that is set (it names one database, as
 * it did before zerobus.databases existed).
 */
bool
zerobus_database_served(const char *datname, bool istemplate)
{
	if (zerobus_database != NULL && zerobus_database[0] != '\0')
		return strcmp(zerobus_database, datname) == 0;
	return database_in_list(zerobus_databases, datname, istemplate);
}

/*
 * GUC check hook of zerobus.databases: a comma-separated list of database
 * names (identifiers: unquoted names are lowercased) or "*".
 */
static bool
check_databases(char **newval, void **extra, GucSource source)
{
	char	   *copy = pstrdup(*newval);
	List	   *names;
	bool		ok = SplitIdentifierString(copy, ',', &names);

	list_free(names);
	pfree(copy);
	if (!ok)
	{
		GUC_check_errdetail("List syntax is invalid.");
		GUC_check_errhint("Give database names separated by commas, as in 'shop, billing', or '*' for every database.");
	}
	return ok;
}

/*
 * GUC check hook of zerobus.proxy: empty, or a URL with a scheme libcurl
 * takes for a proxy and a host, with no line break (it becomes a curl
 * option as it is).  The value may hold credentials: the message does not
 * show it.
 */
static bool
check_proxy(char **newval, void **extra, GucSource source)
{
	static const char *const schemes[] = {
		"http://", "https://", "socks4://", "socks4a://", "socks5://", "socks5h://"
	};
	const char *v = *newval;

	if (v == NULL || v[0] == '\0')
		return true;
	for (int i = 0; i < (int) lengthof(schemes); i++)
	{
		size_t		len = strlen(schemes[i]);

		if (pg_strncasecmp(v, schemes[i], len) == 0 && v[len] != '\0' &&
			v[len] != '/' && strpbrk(v, " \t\r\n") == NULL)
			return true;
	}
	GUC_check_errdetail("The proxy must be a URL of scheme http, https, socks4, socks4a, socks5 or socks5h with a host, such as http://proxy.example.com:3128.");
	return false;
}

/*
 * Object access hook: refuses to drop zerobus.streams, which only DROP
 * EXTENSION zerobus (or a DROP SCHEMA or DROP OWNED that cascades to it)
 * can do, while it holds streams.  Their replication slots are not objects
 * of the database: dropped with the extension, the streams would leave
 * their slots behind, holding WAL with no launcher to drop them.  Dropping
 * the slots instead would lose the position the streams have confirmed, so
 * the user drops the streams first, which is explicit about it.
 */
static void
zerobus_object_access(ObjectAccessType access, Oid classId, Oid objectId,
					  int subId, void *arg)
{
	if (prev_object_access_hook)
		prev_object_access_hook(access, classId, objectId, subId, arg);

	if (access == OAT_DROP && classId == RelationRelationId && subId == 0)
	{
		Oid			nsp = get_namespace_oid("zerobus", true);
		int64		nstreams;
		bool		isnull;

		if (!OidIsValid(nsp) || get_relname_relid("streams", nsp) != objectId ||
			!OidIsValid(get_extension_oid("zerobus", true)))
			return;
		SPI_connect();
		if (SPI_execute("SELECT count(*) FROM zerobus.streams", true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read zerobus.streams");
		nstreams = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 1, &isnull));
		SPI_finish();
		if (nstreams > 0)
			ereport(ERROR,
					(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
					 errmsg("cannot drop extension zerobus while streams exist"),
					 errdetail_plural("Database \"%s\" has %lld stream, whose replication slot would be left behind holding WAL.",
									  "Database \"%s\" has %lld streams, whose replication slots would be left behind holding WAL.",
									  nstreams, get_database_name(MyDatabaseId),
									  (long long) nstreams),
					 errhint("Drop the streams first with SELECT zerobus.drop_stream(name) FROM zerobus.streams;")));
	}
}

/*
 * Module load.  Only the postmaster loading us from shared_preload_libraries
 * sets up settings, shared memory and the launcher; a walsender using the
 * output plugin gets none of it.
 */
void
_PG_init(void)
{
	BackgroundWorker bgw;
	int			i;

	if (!process_shared_preload_libraries_in_progress)
		return;
	zerobus_preloaded = true;

	DefineCustomStringVariable("zerobus.databases",
							   "Databases whose streams run: database names separated by commas, or \"*\" for every database but the templates.",
							   "Unquoted names are lowercased; write a name with capitals in double quotes.",
							   &zerobus_databases, "*",
							   PGC_SIGHUP, GUC_LIST_INPUT,
							   check_databases, NULL, NULL);
	DefineCustomStringVariable("zerobus.database",
							   "Deprecated: the one database whose streams run; when set, it overrides zerobus.databases.",
							   NULL, &zerobus_database, "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	for (i = 0; i < (int) lengthof(int_settings); i++)
	{
		const IntSetting *s = &int_settings[i];

		DefineCustomIntVariable(psprintf("zerobus.%s", s->name),
								s->description,
								s->per_stream ? "A stream's own option of the same name overrides it." : NULL,
								s->variable, s->boot_value,
								s->min_value, s->max_value,
								s->context, s->flags, NULL, NULL, NULL);
	}
	DefineCustomStringVariable("zerobus.ca_file",
							   "File of trusted certificate authorities for TLS to Zerobus and OAuth; empty for the system's.",
							   "A stream's own ca_file overrides it.",
							   &zerobus_ca_file, "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("zerobus.proxy",
							   "Proxy for the connections to Zerobus and to the OAuth endpoint; empty for the server's environment (https_proxy, http_proxy, all_proxy).",
							   "A URL such as http://proxy.example.com:3128 (credentials may be given as user:password@); gRPC goes through a CONNECT tunnel.",
							   &zerobus_proxy, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   check_proxy, NULL, NULL);
	DefineCustomStringVariable("zerobus.no_proxy",
							   "Hosts reached without the proxy, comma-separated; empty for the server's no_proxy environment variable.",
							   "\"*\" bypasses every proxy, also those of the environment.",
							   &zerobus_no_proxy, "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	MarkGUCPrefixReserved("zerobus");

	zerobus_shared_register();
	prev_object_access_hook = object_access_hook;
	object_access_hook = zerobus_object_access;

	/* connected to no database: it reads pg_database only */
	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 5;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "zerobus");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "zerobus_cluster_launcher_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "zerobus cluster launcher");
	snprintf(bgw.bgw_type, BGW_MAXLEN, "zerobus cluster launcher");
	RegisterBackgroundWorker(&bgw);
}

/*
 * Errors out unless the module was preloaded; every SQL function of the
 * stream API calls this first.
 */
void
zerobus_require_preload(void)
{
	if (!zerobus_preloaded)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("zerobus must be loaded via shared_preload_libraries"),
				 errhint("Add zerobus to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/*
 * Errors out unless value is within the limits of the setting
 * zerobus.<name>, which must be a per-stream option.
 */
void
zerobus_check_stream_option(const char *name, int value)
{
	int			i;

	for (i = 0; i < (int) lengthof(int_settings); i++)
	{
		const IntSetting *s = &int_settings[i];

		if (!s->per_stream || strcmp(s->name, name) != 0)
			continue;
		if (value < s->min_value || value > s->max_value)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%d is outside the valid range for option \"%s\" (%d .. %d)",
							value, name, s->min_value, s->max_value)));
		return;
	}
	elog(ERROR, "unknown stream option \"%s\"", name);
}

/*
 * Whether this backend's database is one the launchers serve
 * (zerobus.databases): only there do streams have workers and shared
 * state.
 */
bool
zerobus_in_served_database(void)
{
	HeapTuple	tup;
	Form_pg_database db;
	bool		served;

	if (!zerobus_preloaded)
		return false;
	tup = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(MyDatabaseId));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for database %u", MyDatabaseId);
	db = (Form_pg_database) GETSTRUCT(tup);
	served = zerobus_database_served(NameStr(db->datname), db->datistemplate);
	ReleaseSysCache(tup);
	return served;
}

