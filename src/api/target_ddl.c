/*-------------------------------------------------------------------------
 *
 * target_ddl.c
 *	  zerobus.target_ddl(): the Databricks SQL that creates the Delta table
 *	  receiving a source table's changes, or that brings it along after the
 *	  source table changed.
 *
 * The CREATE TABLE is derived from the very record plan the output plugin
 * uses (zerobus_plan_build), so the Delta table it creates and the
 * DescriptorProto of the stream agree column for column: the source
 * columns in attribute number order, then the metadata columns.  Source
 * columns are nullable (a delete carries only the key; an unchanged TOAST
 * value is absent); the metadata columns are NOT NULL but
 * _unchanged_columns.  Calling target_ddl requires ownership of, or SELECT
 * privilege on, the source table: the output reveals only column names and
 * types, but those are not everybody's to see.  The ALTER TABLE form comes
 * from the schema evolution code the worker uses (delta_schema.c).
 *
 * src/api/target_ddl.c
 *
 *-------------------------------------------------------------------------
 */
#include "zerobus.h"

#include "access/relation.h"
#include "access/sysattr.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"

#include "delta_schema.h"
#include "store.h"
#include "stream.h"

PG_FUNCTION_INFO_V1(zerobus_target_ddl);

/* Append s as a Databricks SQL string literal. */
static void
append_sql_string(StringInfo out, const char *s)
{
	appendStringInfoChar(out, '\'');
	for (; *s; s++)
	{
		if (*s == '\'' || *s == '\\')
			appendStringInfoChar(out, '\\');
		appendStringInfoChar(out, *s);
	}
	appendStringInfoChar(out, '\'');
}

/*
 * The CREATE TABLE statement for the target of plan, named target_table
 * (validated here), or with mirror that of its mirror table: the source
 * columns alone.  Columns whose values are sent as their type's text
 * output carry a SQL comment saying so.
 */
char *
zerobus_target_ddl_text(const ZerobusRecordPlan *plan,
						const char *target_table, bool mirror)
{
	StringInfoData out;
	int			nmeta = mirror ? 0 : zerobus_plan_nmeta(plan);
	int			i;

	initStringInfo(&out);
	appendStringInfoString(&out, "CREATE TABLE IF NOT EXISTS ");
	zerobus_append_target_name(&out, target_table);
	appendStringInfoString(&out, " (\n");
	for (i = 0; i < plan->ncolumns; i++)
	{
		const ZerobusField *col = &plan->columns[i];

		appendStringInfo(&out, "  %s %s%s", zerobus_delta_identifier(col->name),
						 col->type->delta_type,
						 i == plan->ncolumns - 1 && nmeta == 0 ? "" : ",");
		if (col->type->as_text)
			appendStringInfo(&out, " -- %s, sent as text", col->pg_type);
		else if (zerobus_type_has_text_output(col->type))
			appendStringInfo(&out, " -- %s, some members sent as text",
							 col->pg_type);
		appendStringInfoChar(&out, '\n');
	}
	for (i = 0; i < nmeta; i++)
		appendStringInfo(&out, "  %s %s%s%s\n", zerobus_meta_names[i],
						 zerobus_meta_delta_types[i],
						 i < ZB_META_UNCHANGED_COLUMNS ? " NOT NULL" : "",
						 i == nmeta - 1 ? "" : ",");
	appendStringInfoString(&out, ") USING DELTA COMMENT ");
	append_sql_string(&out, psprintf(mirror ?
									 "Current state of PostgreSQL table %s, kept from its changes" :
									 "Changes of PostgreSQL table %s, streamed by zerobus",
									 quote_qualified_identifier(plan->schema_name,
																plan->table_name)));
	/*
	 * Column mapping by name: a source column's rename becomes a RENAME
	 * COLUMN of the target, which Delta allows only with it (and a DROP
	 * COLUMN too).  Type widening: an int4 column that becomes int8, or a
	 * numeric whose precision grows, becomes ALTER COLUMN ... TYPE of the
	 * target (Delta's widening changes) rather than a new table.
	 */
	appendStringInfoString(&out, "\nTBLPROPERTIES ("
						   "'delta.columnMapping.mode' = 'name', "
						   "'delta.enableTypeWidening' = 'true');");
	return out.data;
}

/*
 * The key columns of the mirror of rel: its replica identity index, or its
 * primary key under REPLICA IDENTITY FULL (deletes then carry every
 * column, the key too), as attribute numbers offset by
 * FirstLowInvalidHeapAttributeNumber.  Without either, or with a key
 * column the stream does not publish, no record names the row it changes
 * unambiguously, so there is no mirror to keep.
 */
static Bitmapset *
mirror_key_or_why(Relation rel, const ZerobusRecordPlan *plan,
				  const char **why)
{
	Bitmapset  *key;
	int			published = 0;
	int			i;

	key = RelationGetIndexAttrBitmap(rel, INDEX_ATTR_BITMAP_IDENTITY_KEY);
	if (bms_is_empty(key) &&
		rel->rd_rel->relreplident == REPLICA_IDENTITY_FULL)
		key = RelationGetIndexAttrBitmap(rel, INDEX_ATTR_BITMAP_PRIMARY_KEY);
	for (i = 0; i < plan->ncolumns; i++)
		if (bms_is_member(plan->columns[i].attnum - FirstLowInvalidHeapAttributeNumber,
						  key))
			published++;
	if (bms_is_empty(key))
		*why = _("A mirror is kept by key, and the table has neither a replica identity index nor a primary key.");
	else if (published != bms_num_members(key))
		*why = _("A mirror is kept by key, and the stream's publication does not publish every key column.");
	else
		return key;
	return NULL;
}

/* mirror_key_or_why, or an ERROR that says why there is no key */
static Bitmapset *
mirror_key(Relation rel, const ZerobusRecordPlan *plan)
{
	const char *why;
	Bitmapset  *key = mirror_key_or_why(rel, plan, &why);

	if (key == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" has no replica identity key to mirror by",
						RelationGetRelationName(rel)),
				 errdetail_internal("%s", why),
				 errhint("Give the table a primary key or a replica identity index (ALTER TABLE ... REPLICA IDENTITY USING INDEX), published in full, or fold its change table as a multiset.")));
	return key;
}

/* The default mirror of a change table: its name followed by _mirror. */
char *
zerobus_mirror_table_name(const char *change_table)
{
	return psprintf("%s_mirror", change_table);
}

/*
 * The CREATE TABLE IF NOT EXISTS of mirror, the mirror table of rel (the
 * one mirror_text prints), or NULL with *why saying so when rel has no key
 * to mirror by.  For create_stream's create_mirrors.
 */
char *
zerobus_mirror_create_text(Relation rel, const ZerobusRecordPlan *plan,
						   const char *mirror, const char **why)
{
	if (mirror_key_or_why(rel, plan, why) == NULL)
		return NULL;
	return zerobus_target_ddl_text(plan, mirror, true);
}

/*
 * The Databricks SQL that keeps mirror, a table equal to the source of
 * plan, from its change table: a Lakeflow declarative pipeline's AUTO CDC
 * flow, then for users without pipelines the CREATE TABLE and MERGE that
 * do the same.
 *
 * Both apply each key's last record by (_commit_lsn, _seq), the order of
 * the changes in the source (a snapshot row's _commit_lsn is its chunk's
 * watermark, see initial_snapshot.c), so the order in which records
 * landed does not matter, and a record delivered twice is the same record
 * at the same position: duplicates are harmless.  Deletes and update
 * preimages remove their key; an UPDATE that changes the key is a
 * preimage of the old key then a postimage of the new one (_seq + 1), and
 * under REPLICA IDENTITY FULL an UPDATE that keeps the key is a preimage
 * followed by the postimage of the same key, which wins.  Inserts,
 * postimages and snapshot rows are upserts.  The MERGE reads the whole
 * change table each time and only overwrites a row with the values of its
 * key's last record, so it is idempotent and may run at any time.  A
 * varlena column left out of an update's record (unchanged TOAST) takes
 * the value of the key's last record that has it; AUTO CDC has no such
 * per-record choice and applies it as NULL (README).
 *
 * AUTO CDC syntax as Databricks documents it ("AUTO CDC INTO (Lakeflow
 * Declarative Pipelines)", docs.databricks.com and docs.azure.cn
 * dlt-sql-ref-apply-changes-into: CREATE FLOW ... AS AUTO CDC INTO ...
 * FROM ... KEYS ... APPLY AS DELETE WHEN ... SEQUENCE BY ... COLUMNS *
 * EXCEPT (...) STORED AS SCD TYPE 1; SEQUENCE BY takes a struct to order
 * by several columns).  last_value(expr) IGNORE NULLS OVER ... as in
 * Databricks' "last_value aggregate function" page.
 */
static char *
mirror_text(Relation rel, const ZerobusRecordPlan *plan,
			const char *change_table, const char *mirror)
{
	Bitmapset  *key = mirror_key(rel, plan);
	int			nmeta = zerobus_plan_nmeta(plan);
	const char *type = zerobus_meta_names[ZB_META_CHANGE_TYPE];
	const char *lsn = zerobus_meta_names[ZB_META_COMMIT_LSN];
	const char *seq = zerobus_meta_names[ZB_META_SEQ];
	StringInfoData out;
	StringInfoData keys;
	StringInfoData is_delete;
	StringInfoData on;
	StringInfoData set;
	StringInfoData names;
	StringInfoData values;
	StringInfoData sent;
	int			i;

	initStringInfo(&keys);
	initStringInfo(&names);
	initStringInfo(&sent);
	initStringInfo(&on);
	initStringInfo(&set);
	initStringInfo(&values);
	for (i = 0; i < plan->ncolumns; i++)
	{
		const ZerobusField *col = &plan->columns[i];
		const char *name = zerobus_delta_identifier(col->name);

		appendStringInfo(&names, "%s%s", names.len ? ", " : "", name);
		if (bms_is_member(col->attnum - FirstLowInvalidHeapAttributeNumber,
						  key))
		{
			appendStringInfo(&keys, "%s%s", keys.len ? ", " : "", name);
			appendStringInfo(&on, "%ss.%s = t.%s", on.len ? " AND " : "",
							 name, name);
		}
		else if (get_typlen(col->type->typid) == -1)
		{
			/*
			 * A varlena value may be TOASTed, and an UPDATE that leaves it
			 * alone does not send it (the column is in _unchanged_columns):
			 * its value is that of the key's last record that sent it, or
			 * the mirror's when no record of the change table did.
			 */
			const char *last = zerobus_delta_identifier(psprintf("_sent_%s",
																 col->name));

			appendStringInfo(&sent, ",\n      last_value(CASE WHEN %s IN ('insert', 'update_postimage', 'snapshot') "
							 "AND NOT coalesce(array_contains(%s, ",
							 type, zerobus_meta_names[ZB_META_UNCHANGED_COLUMNS]);
			append_sql_string(&sent, col->name);
			appendStringInfo(&sent, "), false) THEN named_struct('v', %s) END) IGNORE NULLS OVER w AS %s",
							 name, last);
			appendStringInfo(&set, "%s%s = CASE WHEN s.%s IS NULL THEN t.%s ELSE s.%s.v END",
							 set.len ? ", " : "", name, last, name, last);
			appendStringInfo(&values, "%ss.%s.v", values.len ? ", " : "", last);
			continue;
		}
		appendStringInfo(&set, "%s%s = s.%s", set.len ? ", " : "", name, name);
		appendStringInfo(&values, "%ss.%s", values.len ? ", " : "", name);
	}
	initStringInfo(&is_delete);
	appendStringInfo(&is_delete, "%s IN ('delete', 'update_preimage')", type);

	initStringInfo(&out);
	appendStringInfoString(&out,
						   "-- In a Lakeflow declarative pipeline:\n"
						   "CREATE OR REFRESH STREAMING TABLE ");
	zerobus_append_target_name(&out, mirror);
	appendStringInfo(&out, ";\nCREATE FLOW %s AS AUTO CDC INTO ",
					 zerobus_delta_identifier(psprintf("%s_cdc",
													   strrchr(mirror, '.') + 1)));
	zerobus_append_target_name(&out, mirror);
	appendStringInfoString(&out, "\nFROM stream(");
	zerobus_append_target_name(&out, change_table);
	appendStringInfo(&out, ")\nKEYS (%s)\nAPPLY AS DELETE WHEN %s\n"
					 "SEQUENCE BY struct(%s, %s)\nCOLUMNS * EXCEPT (",
					 keys.data, is_delete.data, lsn, seq);
	for (i = 0; i < nmeta; i++)
		appendStringInfo(&out, "%s%s", i ? ", " : "", zerobus_meta_names[i]);
	appendStringInfoString(&out, ")\nSTORED AS SCD TYPE 1;\n\n"
						   "-- Without pipelines, run the MERGE whenever the mirror should catch up:\n");
	appendStringInfoString(&out, zerobus_target_ddl_text(plan, mirror, true));
	appendStringInfoString(&out, "\nMERGE INTO ");
	zerobus_append_target_name(&out, mirror);
	appendStringInfo(&out, " AS t\nUSING (\n  SELECT * FROM (\n"
					 "    SELECT *,\n      row_number() OVER (PARTITION BY %s ORDER BY %s DESC, %s DESC) AS _last%s\n"
					 "    FROM ", keys.data, lsn, seq, sent.data);
	zerobus_append_target_name(&out, change_table);
	if (sent.len)
		appendStringInfo(&out, "\n    WINDOW w AS (PARTITION BY %s ORDER BY %s, %s "
						 "ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)",
						 keys.data, lsn, seq);
	appendStringInfo(&out, "\n  ) AS c WHERE _last = 1\n) AS s\nON %s\n"
					 "WHEN MATCHED AND s.%s THEN DELETE\n"
					 "WHEN MATCHED THEN UPDATE SET %s\n"
					 "WHEN NOT MATCHED AND NOT s.%s THEN INSERT (%s) VALUES (%s);",
					 on.data, is_delete.data, set.data, is_delete.data,
					 names.data, values.data);
	return out.data;
}

/*
 * The columns of relid that stream publication publishes (its column
 * list), as a set of attribute numbers in the caller's memory; NULL for
 * every column, also when the publication does not publish the table.
 * Connects to SPI for the query.
 */
Bitmapset *
zerobus_published_columns(const char *publication, Oid relid)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid			types[3] = {TEXTOID, NAMEOID, NAMEOID};
	Datum		values[3];
	Bitmapset  *columns = NULL;
	uint64		i;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	values[0] = CStringGetTextDatum(publication);
	values[1] = DirectFunctionCall1(namein,
									CStringGetDatum(get_namespace_name(get_rel_namespace(relid))));
	values[2] = DirectFunctionCall1(namein, CStringGetDatum(get_rel_name(relid)));
	if (SPI_execute_with_args("SELECT pg_catalog.unnest(attnames)"
							  " FROM pg_catalog.pg_publication_tables"
							  " WHERE pubname = $1 AND schemaname = $2 AND tablename = $3",
							  3, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read pg_publication_tables");
	/* the set in the caller's memory: SPI_finish frees SPI's */
	MemoryContextSwitchTo(caller);
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *name = SPI_getvalue(SPI_tuptable->vals[i],
										SPI_tuptable->tupdesc, 1);
		AttrNumber	attnum = get_attnum(relid, name);

		/* listed but not published before 18 (see compat.h) */
		if (!ZB_GENERATED_COLUMNS_PUBLISHED && get_attgenerated(relid, attnum))
			continue;
		columns = bms_add_member(columns, attnum);
	}
	SPI_finish();
	return columns;
}

/*
 * zerobus.target_ddl(source regclass, target_table text, stream text,
 *	 form text) returns text
 *
 * form 'create': the CREATE TABLE of the target table of source.  form
 * 'alter': the ALTER TABLE statements (one a line, empty when there is
 * nothing to do) that take the target from the columns it last accepted in
 * stream to the source table's published columns now; the worker's hint
 * for a rejected descriptor comes from the same code.  With stream given,
 * target_table defaults to the stream's target table for source and the
 * columns are those its publication publishes.  form 'mirror' (stream
 * required): the SQL that keeps a mirror table, target_table (default the
 * stream's target table followed by _mirror), equal to source from the
 * stream's target table, see mirror_text().  Requires ownership of the
 * source table or SELECT privilege on it.
 */
Datum
zerobus_target_ddl(PG_FUNCTION_ARGS)
{
	Oid			relid;
	char	   *target_table = NULL;
	char	   *stream = NULL;
	char	   *form = "create";
	bool		alter;
	bool		mirror;
	char	   *change_table = NULL;
	int32		stream_id = 0;
	Bitmapset  *columns = NULL;
	Relation	rel;
	ZerobusRecordPlan *plan;
	char	   *ddl;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	relid = PG_GETARG_OID(0);
	if (!PG_ARGISNULL(1))
		target_table = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (!PG_ARGISNULL(2))
		stream = text_to_cstring(PG_GETARG_TEXT_PP(2));
	if (!PG_ARGISNULL(3))
		form = text_to_cstring(PG_GETARG_TEXT_PP(3));
	if (strcmp(form, "create") != 0 && strcmp(form, "alter") != 0 &&
		strcmp(form, "mirror") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid form \"%s\"", form),
				 errhint("The form is 'create', 'alter' or 'mirror'.")));
	alter = (form[0] == 'a');
	mirror = (form[0] == 'm');
	if (stream == NULL && (alter || mirror || target_table == NULL))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg(alter ? "the alter form needs a stream" :
						mirror ? "the mirror form needs a stream" :
						"target_table or stream must be given"),
				 errhint(mirror ? "The stream knows the change table the mirror is kept from." :
						 "The stream knows the target table and the columns it accepted.")));

	rel = zerobus_open_table(relid);
	if (rel->rd_rel->relkind != RELKIND_RELATION &&
		rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", RelationGetRelationName(rel)),
				 errdetail("Only tables can be published, so only tables have a target table.")));
	if (!has_privs_of_role(GetUserId(), rel->rd_rel->relowner) &&
		pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s",
						RelationGetRelationName(rel)),
				 errhint("Calling zerobus.target_ddl() requires ownership of the table or SELECT privilege on it.")));

	if (stream)
	{
		Oid			type = TEXTOID;
		Datum		value = CStringGetTextDatum(stream);
		ZerobusStreamConfig *config;
		bool		isnull;

		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		if (SPI_execute_with_args("SELECT id FROM zerobus.streams WHERE name = $1",
								  1, &type, &value, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read zerobus.streams");
		if (SPI_processed == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("stream \"%s\" does not exist", stream)));
		stream_id = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
												SPI_tuptable->tupdesc, 1, &isnull));
		SPI_finish();

		config = zerobus_stream_load(stream_id, false);
		change_table = zerobus_stream_target_table(config,
												   get_namespace_name(RelationGetNamespace(rel)),
												   RelationGetRelationName(rel));
		if (target_table == NULL)
			target_table = mirror ? zerobus_mirror_table_name(change_table) :
				change_table;
		columns = zerobus_published_columns(config->publication, relid);
	}

	plan = zerobus_plan_build(rel, columns, CurrentMemoryContext);
	if (mirror)
		ddl = mirror_text(rel, plan, change_table, target_table);
	else if (!alter)
		ddl = zerobus_target_ddl_text(plan, target_table, false);
	else
	{
		ZerobusColumnSet accepted;
		ZerobusColumnSet current;
		ZerobusSchemaChange *changes;
		int			nchanges;

		if (!zerobus_schema_load_accepted(stream_id, relid, &accepted))
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("stream \"%s\" knows no columns of target table %s",
							stream, target_table),
					 errdetail("The target table has not accepted a descriptor of table %s in this stream yet.",
							   RelationGetRelationName(rel)),
					 errhint("Compare the target table with the create form, zerobus.target_ddl(source, stream => '%s').",
							 stream)));
		zerobus_schema_from_plan(plan, &current);
		nchanges = zerobus_schema_diff(&accepted, &current, &changes);
		ddl = zerobus_schema_alter_text(target_table, changes, nchanges, "\n");
	}
	zerobus_plan_free(plan);
	relation_close(rel, AccessShareLock);

	PG_RETURN_TEXT_P(cstring_to_text(ddl));
}
