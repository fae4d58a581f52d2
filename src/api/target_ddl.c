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
 * (validated here).  Columns whose values are sent as their type's text
 * output carry a SQL comment saying so.
 */
char *
zerobus_target_ddl_text(const ZerobusRecordPlan *plan,
						const char *target_table)
{
	StringInfoData out;
	int			nmeta = zerobus_plan_nmeta(plan);
	int			i;

	initStringInfo(&out);
	appendStringInfoString(&out, "CREATE TABLE IF NOT EXISTS ");
	zerobus_append_target_name(&out, target_table);
	appendStringInfoString(&out, " (\n");
	for (i = 0; i < plan->ncolumns; i++)
	{
		const ZerobusField *col = &plan->columns[i];

		appendStringInfo(&out, "  %s %s,", zerobus_delta_identifier(col->name),
						 col->type->delta_type);
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
	append_sql_string(&out, psprintf("Changes of PostgreSQL table %s, streamed by zerobus",
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

		columns = bms_add_member(columns, get_attnum(relid, name));
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
 * columns are those its publication publishes.  Requires ownership of the
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
	if (strcmp(form, "create") != 0 && strcmp(form, "alter") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid form \"%s\"", form),
				 errhint("The form is 'create' or 'alter'.")));
	alter = (form[0] == 'a');
	if (stream == NULL && (alter || target_table == NULL))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg(alter ? "the alter form needs a stream" :
						"target_table or stream must be given"),
				 errhint("The stream knows the target table and the columns it accepted.")));

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
		if (target_table == NULL)
			target_table = zerobus_stream_target_table(config,
													   get_namespace_name(RelationGetNamespace(rel)),
													   RelationGetRelationName(rel));
		columns = zerobus_published_columns(config->publication, relid);
	}

	plan = zerobus_plan_build(rel, columns, CurrentMemoryContext);
	if (!alter)
		ddl = zerobus_target_ddl_text(plan, target_table);
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
