/*-------------------------------------------------------------------------
 *
 * streams.c
 *	  The SQL functions that create and alter a stream and read its
 *	  credentials, with the checks of every stream setting.  Dropping,
 *	  pausing, resuming and recovering a stream live in lifecycle.c,
 *	  zerobus.target_ddl() in target_ddl.c; the catalog access all of them
 *	  share in src/common/store.c.
 *
 * src/api/streams.c
 *
 *-------------------------------------------------------------------------
 */
#include "zerobus.h"

#include "access/relation.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "catalog/pg_publication.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "libpq-fe.h"
#include "miscadmin.h"
#include "replication/slot.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/rls.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/varlena.h"

#include "store.h"
#include "delta_schema.h"
#include "stream.h"
#include "targets.h"

PG_FUNCTION_INFO_V1(zerobus_create_stream);
PG_FUNCTION_INFO_V1(zerobus_alter_stream);
PG_FUNCTION_INFO_V1(zerobus_stream_credentials);

/*
 * The stream API
 *
 * The functions below check the caller's privileges (creating a stream
 * takes a superuser, changing one its owner or a superuser) and then read
 * and write zerobus.streams and zerobus.stream_secrets through SPI as the
 * bootstrap superuser, since only superusers may touch the secrets.  Every
 * value goes to SPI as a parameter, so no secret is ever part of a
 * statement's text, and no constraint of the secrets table can fail on the
 * secret (so no error shows its row).  The SQL declarations pin
 * search_path to pg_catalog, pg_temp.
 */

/* Whether argument argno (from arg_position) is NULL or not declared */
#define ARGNO_ISNULL(argno) ((argno) < 0 || PG_ARGISNULL(argno))

/*
 * The position of argument argname of the SQL function being called, from
 * its declaration (pg_proc.proargnames, cached in fn_extra): the options
 * table (options.c) names arguments, the declarations order them.  -1 when
 * the declaration has no such argument: those of an older version of the
 * extension's SQL, not updated yet (ALTER EXTENSION zerobus UPDATE), lack
 * the arguments added since, which then count as NULL (ARGNO_ISNULL).
 */
static int
arg_position(FunctionCallInfo fcinfo, const char *argname)
{
	FmgrInfo   *flinfo = fcinfo->flinfo;
	char	  **names = (char **) flinfo->fn_extra;
	int			nargs = PG_NARGS();

	if (names == NULL)
	{
		HeapTuple	tuple;
		Oid		   *types;
		char	   *modes;
		char	  **found;
		MemoryContext oldcxt;

		tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(flinfo->fn_oid));
		if (!HeapTupleIsValid(tuple))
			elog(ERROR, "cache lookup failed for function %u", flinfo->fn_oid);
		oldcxt = MemoryContextSwitchTo(flinfo->fn_mcxt);
		if (get_func_arg_info(tuple, &types, &found, &modes) != nargs ||
			found == NULL)
			elog(ERROR, "function %u does not name its %d arguments",
				 flinfo->fn_oid, nargs);
		MemoryContextSwitchTo(oldcxt);
		ReleaseSysCache(tuple);
		flinfo->fn_extra = names = found;
	}
	for (int i = 0; i < nargs; i++)
		if (strcmp(names[i], argname) == 0)
			return i;
	return -1;
}

/*
 * Errors out unless name can name a stream: lowercase letters, digits and
 * underscores (the characters of a replication slot name), short enough
 * for its slot name "zerobus_<name>" to fit.
 */
static void
check_stream_name(const char *name)
{
	const char *p;

	for (p = name; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
			  *p == '_'))
			break;
	if (*name == '\0' || *p != '\0' || strlen(name) > ZB_STREAM_NAME_MAXLEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_NAME),
				 errmsg("invalid stream name \"%s\"", name),
				 errdetail("A stream name has 1 to %d lowercase letters, digits and underscores.",
						   ZB_STREAM_NAME_MAXLEN),
				 errhint("The stream's replication slot is named \"%s\" followed by the stream name.",
						 ZB_SLOT_PREFIX)));
}

/*
 * Errors out unless url is fit to be the stream's what (see
 * zerobus_url_check).
 */
static void
check_url(const char *what, const char *url, bool insecure)
{
	ZerobusUrlProblem problem = zerobus_url_check(url, insecure);

	if (problem != ZB_URL_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s \"%s\"", what, url),
				 errdetail("%s", zerobus_url_problem_detail(problem)),
				 problem == ZB_URL_PLAINTEXT ?
				 errhint("Use an https:// URL.") : 0));
}

/*
 * Errors out unless conninfo is a libpq connection string (keyword=value
 * pairs or a URI) of known options.  The error repeats nothing of the
 * string: libpq's own message can quote a fragment of a password.
 */
static void
check_conninfo(const char *conninfo)
{
	char	   *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &err);

	if (opts == NULL)
	{
		bool		oom = (err == NULL);

		if (err)
			PQfreemem(err);
		if (oom)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory")));
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid conninfo"),
				 errdetail("The connection string does not parse, or names an option libpq does not know; it is not repeated here because it may hold a password."),
				 errhint("Give keyword=value pairs, as in 'host=/var/run/postgresql user=zerobus', with values that contain spaces in single quotes.")));
	}
	PQconninfoFree(opts);
}

/*
 * conninfo with the value of its password option (if any) replaced, for
 * showing it to the stream's owner; NULL for NULL.  palloc'd.  The stored
 * string was checked by check_conninfo.
 */
static char *
conninfo_redacted(const char *conninfo)
{
	PQconninfoOption *opts;
	PQconninfoOption *o;
	StringInfoData out;

	if (conninfo == NULL)
		return NULL;
	opts = PQconninfoParse(conninfo, NULL);
	if (opts == NULL)
		return pstrdup("[unreadable]");
	initStringInfo(&out);
	for (o = opts; o->keyword != NULL; o++)
	{
		const char *v;

		if (o->val == NULL)
			continue;
		appendStringInfo(&out, "%s%s='", out.len ? " " : "", o->keyword);
		if (strcmp(o->keyword, "password") == 0)
			appendStringInfoString(&out, "[redacted]");
		else
			for (v = o->val; *v; v++)
			{
				if (*v == '\\' || *v == '\'')
					appendStringInfoChar(&out, '\\');
				appendStringInfoChar(&out, *v);
			}
		appendStringInfoChar(&out, '\'');
	}
	PQconninfoFree(opts);
	return out.data;
}

/*
 * Errors out unless the owner of stream stream_id can read every table the
 * stream publishes (zerobus_owner_can_read).  Needs zerobus_catalog_begin().
 */
static void
check_owner_can_read(int32 stream_id)
{
	ZerobusColumnValues args = {0};
	uint64		i;

	zerobus_add_column(&args, "id", INT4OID, Int32GetDatum(stream_id), false);
	zerobus_execute_with_values("SELECT p.relid, p.owner::oid, pg_catalog.format('%I.%I', p.nspname, p.relname)"
								" FROM (" ZB_PUBLISHED_TABLES ") p"
								" ORDER BY p.nspname, p.relname", &args, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		bool		isnull;
		Oid			relid = DatumGetObjectId(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
		Oid			owner = DatumGetObjectId(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
		char	   *table = SPI_getvalue(tup, SPI_tuptable->tupdesc, 3);

		switch (zerobus_owner_can_read(owner, relid))
		{
			case ZB_READ_OK:
				break;
			case ZB_READ_NO_SELECT:
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("owner %s of the stream cannot read table %s",
								GetUserNameFromId(owner, false), table),
						 errdetail("The stream copies every table of its publication, and its owner must have the SELECT privilege on each."),
						 errhint("Grant SELECT on the table to the stream's owner, or use a publication without it.")));
				break;
			case ZB_READ_RLS:
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("row-level security of table %s applies to owner %s of the stream",
								table, GetUserNameFromId(owner, false)),
						 errdetail("The stream copies every row of the tables it publishes, past any row-level security policy."),
						 errhint("Make the table's owner, or a role with BYPASSRLS, the stream's owner.")));
				break;
		}
	}
}

/*
 * Check that str is one of option o's values (ZB_OPT_POLICY).
 */
static void
check_choice(const ZerobusStreamOption *o, const char *str)
{
	StringInfoData values;
	int			i;

	initStringInfo(&values);
	for (i = 0; o->choices[i] != NULL; i++)
	{
		if (strcmp(str, o->choices[i]) == 0)
		{
			pfree(values.data);
			return;
		}
		if (i > 0)
			appendStringInfoString(&values,
								   o->choices[i + 1] == NULL ? " or " : ", ");
		appendStringInfo(&values, "'%s'", o->choices[i]);
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid %s \"%s\"", o->name, str),
			 errhint("The %s is %s.", o->name, values.data)));
}

/* Errors out unless value can be a part of a Unity Catalog name. */
static void
check_target_part(const char *what, const char *value)
{
	if (*value == '\0' || *zerobus_target_part_end(value) != '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s \"%s\"", what, value),
				 errdetail("A Unity Catalog name is made of ASCII letters, digits and underscores.")));
}

/*
 * The table map, checked and normalized: an object whose keys name existing
 * tables as schema.table and whose values are catalog.schema.table target
 * names.  The keys are rewritten as quote_qualified_identifier() spells the
 * table, which is how zerobus_stream_target_table() looks them up.
 */
static Datum
normalize_table_map(Jsonb *map)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	StringInfoData out;
	char	   *key = NULL;
	bool		first = true;

	if (!JB_ROOT_IS_OBJECT(map) || JB_ROOT_IS_SCALAR(map))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("table_map must be a JSON object"),
				 errhint("Map source tables to target tables, as in '{\"public.orders\": \"main.sales.orders\"}'.")));

	initStringInfo(&out);
	appendStringInfoChar(&out, '{');
	it = JsonbIteratorInit(&map->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			key = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE)
		{
			List	   *names = zerobus_qualified_name_list(key);
			char	   *target;
			StringInfoData scratch;
			Oid			relid;

			if (list_length(names) != 2)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("table_map key \"%s\" is not a schema-qualified table name", key),
						 errhint("Name the source table as schema.table.")));
			/* locked: a concurrent drop must not leave its name unreadable */
			relid = RangeVarGetRelid(makeRangeVarFromNameList(names),
									 AccessShareLock, true);
			if (!OidIsValid(relid) ||
				(get_rel_relkind(relid) != RELKIND_RELATION &&
				 get_rel_relkind(relid) != RELKIND_PARTITIONED_TABLE))
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_TABLE),
						 errmsg("table \"%s\" of table_map does not exist", key)));
			if (v.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("table_map value for \"%s\" is not a string", key)));
			target = pnstrdup(v.val.string.val, v.val.string.len);
			initStringInfo(&scratch);
			zerobus_append_target_name(&scratch, target);

			if (!first)
				appendStringInfoString(&out, ", ");
			first = false;
			escape_json(&out, quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
														 get_rel_name(relid)));
			appendStringInfoString(&out, ": ");
			escape_json(&out, target);
		}
	}
	appendStringInfoChar(&out, '}');
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(out.data));
}

/*
 * Checks the settings given to create_stream (create) or alter_stream and
 * adds them to cols (zerobus.streams) and secrets (zerobus.stream_secrets).
 * For alter_stream, old is the stream before the change and reset (from
 * parse_resets) flags the settings to put back to their defaults, which the
 * caller writes itself.  caller is who called the function.
 */
static void
collect_settings(FunctionCallInfo fcinfo, bool create, ZerobusStreamRow *old,
				 const bool *reset, Oid caller, ZerobusColumnValues *cols,
				 ZerobusColumnValues *secrets)
{
	const char *endpoint = old ? old->endpoint : NULL;
	const char *workspace_url = old ? old->workspace_url : NULL;
	bool		insecure = old ? old->insecure : false;
	bool		urls_changed = create;
	int			i;

	for (i = 0; i < zerobus_stream_noptions; i++)
	{
		const ZerobusStreamOption *s = &zerobus_stream_options[i];
		int			argno;
		Datum		value;
		char	   *str = NULL;

		if (!create && (s->flags & ZB_OPT_CREATE_ONLY))
			continue;
		argno = arg_position(fcinfo, s->name);
		if (!create && (s->flags & ZB_OPT_SUPERUSER) && !superuser_arg(caller) &&
			((reset != NULL && reset[i]) || !ARGNO_ISNULL(argno)))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to change setting \"%s\" of a stream", s->name),
					 errdetail("Only superusers can change a stream's publication, conninfo, ca_file, insecure and owner.")));
		if (reset != NULL && reset[i])
		{
			/* back to the column's default, which for insecure is false */
			if (strcmp(s->name, "insecure") == 0)
			{
				insecure = false;
				urls_changed = true;
			}
			continue;
		}
		if (ARGNO_ISNULL(argno))
		{
			if (create && (s->flags & ZB_OPT_REQUIRED))
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("%s must not be null", s->name)));
			continue;
		}
		value = PG_GETARG_DATUM(argno);
		if (s->type == TEXTOID)
		{
			str = TextDatumGetCString(value);
			if (*str == '\0')
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("%s must not be empty", s->name)));
		}

		switch (s->kind)
		{
			case ZB_OPT_TEXT:
				break;
			case ZB_OPT_URL:
				if (strcmp(s->name, "endpoint") == 0)
					endpoint = str;
				else
					workspace_url = str;
				urls_changed = true;
				break;
			case ZB_OPT_PUBLICATION:
				if (!OidIsValid(get_publication_oid(str, true)))
					ereport(ERROR,
							(errcode(ERRCODE_UNDEFINED_OBJECT),
							 errmsg("publication \"%s\" does not exist", str),
							 errhint("Create it first with CREATE PUBLICATION.")));
				break;
			case ZB_OPT_TARGET_PART:
				check_target_part(s->name, str);
				break;
			case ZB_OPT_TABLE_MAP:
				value = normalize_table_map(DatumGetJsonbP(value));
				break;
			case ZB_OPT_TUNING:
				zerobus_check_stream_option(s->name, DatumGetInt32(value));
				break;
			case ZB_OPT_BOOL:
				if (strcmp(s->name, "insecure") == 0)
				{
					insecure = DatumGetBool(value);
					urls_changed = true;
				}
				else if (strcmp(s->name, "failover") == 0 &&
						 DatumGetBool(value) && !ZB_HAVE_FAILOVER_SLOTS)
					ereport(ERROR,
							(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
							 errmsg("failover slots require PostgreSQL 17 or later"),
							 errdetail("This server runs PostgreSQL %s.", PG_VERSION),
							 errhint("Leave failover out: after a failover to a standby, zerobus.recover_stream() then replaces the lost slot.")));
				break;
			case ZB_OPT_POLICY:
				check_choice(s, str);
				break;
			case ZB_OPT_CONNINFO:
				check_conninfo(str);
				break;
			case ZB_OPT_OWNER:
				break;
		}
		zerobus_add_column((s->flags & ZB_OPT_SECRET) ? secrets : cols, s->name, s->type, value, false);
	}

	if (urls_changed)
	{
		check_url("endpoint", endpoint, insecure);
		check_url("workspace_url", workspace_url, insecure);
	}
}

/*
 * Errors out unless this server can run streams: logical WAL, and the output
 * plugin allowed by output_plugin_libraries where that setting exists.
 */
static void
check_server_setup(void)
{
	const char *libraries;

	if (wal_level < WAL_LEVEL_LOGICAL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("zerobus streams require wal_level = logical"),
				 errhint("Set wal_level = logical in postgresql.conf and restart the server.")));

	libraries = GetConfigOption("output_plugin_libraries", true, false);
	if (libraries != NULL)
	{
		char	   *copy = pstrdup(libraries);
		List	   *names;
		ListCell   *lc;
		bool		allowed = false;

		if (!SplitIdentifierString(copy, ',', &names))
			names = NIL;
		foreach(lc, names)
			if (strcmp((char *) lfirst(lc), "zerobus") == 0)
				allowed = true;
		if (!allowed)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("output plugin \"zerobus\" is not allowed by output_plugin_libraries"),
					 errhint("Add zerobus to output_plugin_libraries in postgresql.conf and reload the configuration.")));
	}
}

/* INSERT INTO table the columns of cv */
static void
insert_row(const char *table, ZerobusColumnValues *cv)
{
	StringInfoData sql;
	StringInfoData params;
	int			i;

	initStringInfo(&sql);
	initStringInfo(&params);
	appendStringInfo(&sql, "INSERT INTO %s (", table);
	for (i = 0; i < cv->n; i++)
	{
		appendStringInfo(&sql, "%s%s", i ? ", " : "", cv->columns[i]);
		appendStringInfo(&params, "%s$%d", i ? ", " : "", i + 1);
	}
	appendStringInfo(&sql, ") VALUES (%s)", params.data);
	zerobus_execute_with_values(sql.data, cv, SPI_OK_INSERT);
}

/*
 * Inserts a new stream in a subtransaction and checks that its owner can
 * read its tables; if either fails, drops the slot already created for it
 * before rethrowing.  Returns the new id.
 */
static int32
insert_stream(ZerobusColumnValues *cols, ZerobusColumnValues *secrets, const char *slot_name)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	int32		id = 0;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		bool		isnull;

		if (SPI_execute("SELECT pg_catalog.nextval('zerobus.streams_id_seq')::int4",
						false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not allocate a stream id");
		id = DatumGetInt32(zerobus_result_datum(1, &isnull));
		zerobus_add_column(cols, "id", INT4OID, Int32GetDatum(id), false);
		zerobus_add_column(secrets, "stream_id", INT4OID, Int32GetDatum(id), false);
		insert_row("zerobus.streams", cols);
		insert_row("zerobus.stream_secrets", secrets);
		check_owner_can_read(id);

		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		ReplicationSlotDrop(slot_name, true);
		ReThrowError(edata);
	}
	PG_END_TRY();
	return id;
}

/*
 * Errors out if replication slot slot_name, the one stream name would
 * have, exists.  Slot names are unique in the cluster while stream names
 * are per database, so the slot of a stream of the same name in another
 * database is the likely owner: the message says which database holds it.
 * Needs zerobus_catalog_begin().
 */
static void
check_slot_free(const char *name, const char *slot_name)
{
	ZerobusColumnValues args = {0};
	char	   *database;

	zerobus_add_column(&args, "slot_name", NAMEOID,
					   DirectFunctionCall1(namein, CStringGetDatum(slot_name)), false);
	zerobus_execute_with_values("SELECT database FROM pg_catalog.pg_replication_slots"
								" WHERE slot_name = $1", &args, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return;
	database = zerobus_result_text(1);
	ereport(ERROR,
			(errcode(ERRCODE_DUPLICATE_OBJECT),
			 errmsg("replication slot \"%s\" of stream \"%s\" already exists", slot_name, name),
			 database && strcmp(database, get_database_name(MyDatabaseId)) != 0 ?
			 errdetail("It is a slot of database \"%s\": replication slot names are unique in the cluster, so stream names are too.",
					   database) :
			 errdetail("A stream's replication slot is named \"%s\" followed by the stream name.",
					   ZB_SLOT_PREFIX),
			 errhint("Choose another stream name.")));
}

/*
 * Checks create_stream's create_targets, create_mirrors, schema_policy and
 * warehouse_id: creating the targets and schema_policy evolve take a
 * warehouse, the mirrors are created with the targets, and a warehouse id
 * is what Databricks' ids are (letters and digits), so that a mistake is
 * caught here rather than by the warehouse after the slot is made.
 * Returns create_targets, and create_mirrors in *mirrors.
 */
static bool
check_create_targets(FunctionCallInfo fcinfo, bool *mirrors)
{
	int			create_arg = arg_position(fcinfo, "create_targets");
	int			mirrors_arg = arg_position(fcinfo, "create_mirrors");
	int			warehouse_arg = arg_position(fcinfo, "warehouse_id");
	int			policy_arg = arg_position(fcinfo, "schema_policy");
	bool		create = !ARGNO_ISNULL(create_arg) && PG_GETARG_BOOL(create_arg);
	bool		evolve = !ARGNO_ISNULL(policy_arg) &&
		strcmp(text_to_cstring(PG_GETARG_TEXT_PP(policy_arg)), "evolve") == 0;

	*mirrors = !ARGNO_ISNULL(mirrors_arg) && PG_GETARG_BOOL(mirrors_arg);
	if (*mirrors && !create)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("create_mirrors needs create_targets"),
				 errdetail("The mirror tables are created with the change tables they are kept from."),
				 errhint("Pass create_targets => true as well, or create the mirrors from zerobus.target_ddl(form => 'mirror').")));

	if (!ARGNO_ISNULL(warehouse_arg))
	{
		char	   *id = text_to_cstring(PG_GETARG_TEXT_PP(warehouse_arg));

		if (strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") != strlen(id) ||
			strlen(id) > 64)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid warehouse_id \"%s\"", id),
					 errdetail("A SQL warehouse id is made of at most 64 ASCII letters and digits."),
					 errhint("Copy it from the warehouse's connection details in Databricks.")));
	}
	else if (create || evolve)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s needs a warehouse_id",
						create ? "create_targets" : "schema_policy evolve"),
				 errdetail("The target tables are created and altered by SQL statements run on a Databricks SQL warehouse.")));
	return create;
}

/*
 * zerobus.create_stream(name, publication, endpoint, workspace_url,
 *	 client_id, client_secret, target_catalog, ...) returns int
 *
 * Superusers only.  Creates the logical slot zerobus_<name> first (a
 * logical slot cannot be created once the transaction has written), then
 * the rows.  The slot is not transactional: if the calling transaction
 * rolls back later, the launcher drops the slot it left.  With
 * create_targets, then creates the missing target tables (targets.c), and
 * with create_mirrors their mirror tables.
 */
Datum
zerobus_create_stream(PG_FUNCTION_ARGS)
{
	char	   *name;
	char	   *slot_name;
	ZerobusColumnValues cols = {0};
	ZerobusColumnValues secrets = {0};
	ZerobusColumnValues args = {0};
	ZerobusCatalogAccess access;
	bool		isnull;
	int32		id;
	int			failover_arg = arg_position(fcinfo, "failover");
	bool		failover;
	int			nelsewhere;
	bool		create_targets;
	bool		create_mirrors;

	zerobus_require_preload();
	name = zerobus_text_arg(fcinfo, 0, "name", true);
	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to create stream \"%s\"", name),
				 errdetail("Only superusers can create streams.")));
	check_server_setup();
	check_stream_name(name);
	slot_name = psprintf("%s%s", ZB_SLOT_PREFIX, name);
	/* the column's default says the same: on where the server supports it */
	failover = ARGNO_ISNULL(failover_arg) ? ZB_HAVE_FAILOVER_SLOTS :
		PG_GETARG_BOOL(failover_arg);
	collect_settings(fcinfo, true, NULL, NULL, GetUserId(), &cols, &secrets);
	create_targets = check_create_targets(fcinfo, &create_mirrors);
	zerobus_add_column(&cols, "name", TEXTOID, CStringGetTextDatum(name), false);
	zerobus_add_column(&cols, "slot_name", NAMEOID,
					   DirectFunctionCall1(namein, CStringGetDatum(slot_name)), false);
	if (ARGNO_ISNULL(arg_position(fcinfo, "owner")))
		zerobus_add_column(&cols, "owner", REGROLEOID, ObjectIdGetDatum(GetUserId()), false);

	if (GetTopTransactionIdIfAny() != InvalidTransactionId)
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("cannot create a stream in a transaction that has written"),
				 errdetail("A stream's logical replication slot must be created before its transaction writes anything."),
				 errhint("Call zerobus.create_stream() in a transaction of its own, or first in its transaction.")));

	zerobus_catalog_begin(&access);
	zerobus_slot_lock(false, true);

	zerobus_add_column(&args, "name", TEXTOID, CStringGetTextDatum(name), false);
	zerobus_execute_with_values("SELECT count(*) FILTER (WHERE name = $1), count(*)"
								" FROM zerobus.streams", &args, SPI_OK_SELECT);
	if (DatumGetInt64(zerobus_result_datum(1, &isnull)) > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("stream \"%s\" already exists", name)));
	nelsewhere = zerobus_stream_slots_elsewhere();
	if (DatumGetInt64(zerobus_result_datum(2, &isnull)) + nelsewhere >= zerobus_max_streams)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("cannot create more than %d streams", zerobus_max_streams),
				 nelsewhere > 0 ?
				 errdetail_plural("The streams of all databases count, and %d is in other databases.",
								  "The streams of all databases count, and %d are in other databases.",
								  nelsewhere, nelsewhere) : 0,
				 errhint("Drop a stream, or increase zerobus.max_streams.")));

	check_slot_free(name, slot_name);
	zerobus_slot_ledger_add(slot_name);
	zerobus_create_stream_slot(slot_name, failover);
	id = insert_stream(&cols, &secrets, slot_name);
	zerobus_stream_tables_sync(id);
	zerobus_catalog_end(&access);
	/* before the commit that lets the worker start */
	if (create_targets)
		zerobus_create_targets(id, NIL, create_mirrors);

	if (!zerobus_in_served_database())
		ereport(WARNING,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("stream \"%s\" will not run: database \"%s\" is not served by the zerobus launcher",
						name, get_database_name(MyDatabaseId)),
				 zerobus_database[0] != '\0' ?
				 errdetail("The deprecated zerobus.database names database \"%s\" alone.",
						   zerobus_database) :
				 errdetail("zerobus.databases is '%s'.", zerobus_databases),
				 errhint("Add the database to zerobus.databases (\"*\" serves every database but the templates) and reload the configuration.")));
	zerobus_launcher_wakeup_at_commit();
	PG_RETURN_INT32(id);
}

/*
 * Whether alter_stream can reset the setting: its column is nullable (NULL
 * means the zerobus.* setting of the same name) or has a default.  The
 * required settings and the owner have neither.
 */
static bool
setting_resettable(const ZerobusStreamOption *s)
{
	return !(s->flags & (ZB_OPT_CREATE_ONLY | ZB_OPT_REQUIRED)) &&
		s->kind != ZB_OPT_OWNER;
}

/*
 * Reads alter_stream's reset argument into reset[], one flag per entry of
 * zerobus_stream_options.  Errors out on a name that is not a setting, on a setting
 * without a default, and on a setting that is given a value as well.
 */
static void
parse_resets(FunctionCallInfo fcinfo, bool *reset)
{
	Datum	   *names;
	bool	   *nulls;
	int			n;
	int			i;
	int			j;
	int			reset_argno = arg_position(fcinfo, "reset");

	memset(reset, 0, sizeof(bool) * zerobus_stream_noptions);
	if (ARGNO_ISNULL(reset_argno))
		return;
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(reset_argno), TEXTOID, -1,
					  false, TYPALIGN_INT, &names, &nulls, &n);
	for (i = 0; i < n; i++)
	{
		char	   *name;
		const ZerobusStreamOption *s = NULL;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("reset must not contain nulls")));
		name = TextDatumGetCString(names[i]);
		for (j = 0; j < zerobus_stream_noptions; j++)
			if (!(zerobus_stream_options[j].flags & ZB_OPT_CREATE_ONLY) &&
				strcmp(zerobus_stream_options[j].name, name) == 0)
				s = &zerobus_stream_options[j];
		if (s == NULL)
		{
			StringInfoData known;

			initStringInfo(&known);
			for (j = 0; j < zerobus_stream_noptions; j++)
				if (setting_resettable(&zerobus_stream_options[j]))
					appendStringInfo(&known, "%s%s", known.len ? ", " : "",
									 zerobus_stream_options[j].name);
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown setting \"%s\" in reset", name),
					 errhint("The settings that can be reset are: %s.", known.data)));
		}
		if (!setting_resettable(s))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("setting \"%s\" cannot be reset", name),
					 errdetail("A stream must always have its own %s.", name),
					 errhint("Give it a new value instead.")));
		if (!ARGNO_ISNULL(arg_position(fcinfo, s->name)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("setting \"%s\" is both given a value and reset", name)));
		reset[s - zerobus_stream_options] = true;
	}
}

/*
 * zerobus.alter_stream(name, ..., reset) returns void
 *
 * Changes the settings given (not NULL) and puts those named in reset back
 * to their defaults (NULL, that is the zerobus.* setting, for the tuning
 * options); the owner's or a superuser's.  The stream's config_version goes
 * up, so the launcher restarts its worker with the new settings once the
 * transaction commits: with no setting given, it just restarts the worker.
 */
Datum
zerobus_alter_stream(PG_FUNCTION_ARGS)
{
	char	   *name;
	ZerobusColumnValues cols = {0};
	ZerobusColumnValues secrets = {0};
	ZerobusCatalogAccess access;
	ZerobusStreamRow *row;
	bool		reset[ZB_MAX_COLUMNS];
	bool		reset_secret = false;
	StringInfoData sql;
	StringInfoData secret_sql;
	int			guc_level;
	int			i;

	zerobus_require_preload();

	/*
	 * A new client secret or conninfo is in the call's text: no error of
	 * this function may log it.  create_stream, a superuser's, sets the
	 * same in its declaration; the owner calling this one may not.
	 */
	guc_level = NewGUCNestLevel();
	(void) set_config_option("log_min_error_statement", "panic",
							 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);

	name = zerobus_text_arg(fcinfo, 0, "name", true);
	parse_resets(fcinfo, reset);
	zerobus_catalog_begin(&access);
	row = zerobus_lookup_stream(name, false);
	zerobus_check_stream_owner(&access, name, row);
	collect_settings(fcinfo, false, row, reset, access.caller, &cols, &secrets);

	initStringInfo(&sql);
	initStringInfo(&secret_sql);
	appendStringInfoString(&sql, "UPDATE zerobus.streams SET config_version = config_version + 1");
	for (i = 0; i < cols.n; i++)
		appendStringInfo(&sql, ", %s = $%d", cols.columns[i], i + 1);
	for (i = 0; i < secrets.n; i++)
		appendStringInfo(&secret_sql, "%s%s = $%d", i ? ", " : "",
						 secrets.columns[i], i + 1);
	for (i = 0; i < zerobus_stream_noptions; i++)
	{
		if (!reset[i])
			continue;
		if (zerobus_stream_options[i].flags & ZB_OPT_SECRET)
		{
			appendStringInfo(&secret_sql, "%s%s = DEFAULT",
							 secret_sql.len ? ", " : "", zerobus_stream_options[i].name);
			reset_secret = true;
		}
		else
			appendStringInfo(&sql, ", %s = DEFAULT", zerobus_stream_options[i].name);
	}
	zerobus_add_column(&cols, "id", INT4OID, Int32GetDatum(row->id), false);
	appendStringInfo(&sql, " WHERE id = $%d", cols.n);
	zerobus_execute_with_values(sql.data, &cols, SPI_OK_UPDATE);

	if (secrets.n > 0 || reset_secret)
	{
		resetStringInfo(&sql);
		zerobus_add_column(&secrets, "stream_id", INT4OID, Int32GetDatum(row->id), false);
		appendStringInfo(&sql, "UPDATE zerobus.stream_secrets SET %s WHERE stream_id = $%d",
						 secret_sql.data, secrets.n);
		zerobus_execute_with_values(sql.data, &secrets, SPI_OK_UPDATE);
	}
	check_owner_can_read(row->id);
	zerobus_catalog_end(&access);
	AtEOXact_GUC(true, guc_level);

	zerobus_launcher_wakeup_at_commit();
	PG_RETURN_VOID();
}

/*
 * zerobus.stream_credentials(name text, OUT client_id, OUT client_secret,
 *	 OUT conninfo) returns record
 *
 * For the stream's owner and superusers.
 */
Datum
zerobus_stream_credentials(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	ZerobusColumnValues args = {0};
	ZerobusCatalogAccess access;
	ZerobusStreamRow *row;
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3];
	HeapTupleHeader result;
	int			i;

	zerobus_require_preload();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	zerobus_catalog_begin(&access);
	row = zerobus_lookup_stream(name, false);
	zerobus_check_stream_owner(&access, name, row);
	zerobus_add_column(&args, "id", INT4OID, Int32GetDatum(row->id), false);
	zerobus_execute_with_values("SELECT client_id, client_secret, conninfo"
								" FROM zerobus.stream_secrets WHERE stream_id = $1",
								&args, SPI_OK_SELECT);
	if (SPI_processed != 1)
		elog(ERROR, "credentials of stream \"%s\" are missing", name);
	for (i = 0; i < 3; i++)
	{
		char	   *v = zerobus_result_text(i + 1);

		/* the replication password stays the superuser's */
		if (i == 2)
			v = conninfo_redacted(v);

		nulls[i] = (v == NULL);
		values[i] = v ? CStringGetTextDatum(v) : (Datum) 0;
	}
	/* form the tuple before SPI_finish frees the values */
	result = SPI_returntuple(heap_form_tuple(tupdesc, values, nulls), tupdesc);
	zerobus_catalog_end(&access);
	PG_RETURN_DATUM(HeapTupleHeaderGetDatum(result));
}
