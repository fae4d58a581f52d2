/*-------------------------------------------------------------------------
 *
 * catalog.c
 *	  zerobus.target_ddl(): the Databricks CREATE TABLE of a target table.
 *
 * The statement is derived from the very record plan the output plugin
 * uses (zerobus_plan_build), so the Delta table it creates and the
 * DescriptorProto of the stream agree column for column: the source columns
 * in attribute number order, then the metadata columns.  Source columns are
 * nullable (a delete carries only the key; an unchanged TOAST value is
 * absent); the metadata columns are NOT NULL but _unchanged_columns.
 *
 * Calling it requires ownership of, or SELECT privilege on, the source
 * table: the output reveals only column names and types, but those are not
 * everybody's to see.
 *
 * src/catalog.c
 *
 *-------------------------------------------------------------------------
 */
#include "zerobus.h"

#include "access/relation.h"
#include "catalog/pg_class.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

PG_FUNCTION_INFO_V1(zerobus_target_ddl);

/*
 * Databricks SQL reserved words (ANSI mode), lowercase and sorted for
 * bsearch.  An identifier spelled like one must be backquoted.
 */
static const char *const reserved_words[] = {
	"all", "and", "anti", "any", "as", "authorization", "both", "case",
	"cast", "check", "collate", "column", "constraint", "create", "cross",
	"current_date", "current_time", "current_timestamp", "current_user",
	"default", "distinct", "else", "end", "escape", "except", "false",
	"fetch", "for", "foreign", "from", "full", "grant", "group", "having",
	"in", "inner", "intersect", "into", "is", "join", "lateral", "leading",
	"left", "minus", "natural", "not", "null", "offset", "on", "only", "or",
	"order", "outer", "overlaps", "primary", "references", "right", "select",
	"semi", "session_user", "some", "table", "then", "time", "to",
	"trailing", "true", "union", "unique", "unknown", "user", "using",
	"when", "where", "with"
};

static int
reserved_word_cmp(const void *key, const void *elem)
{
	return pg_strcasecmp((const char *) key, *(const char *const *) elem);
}

/*
 * name as a Databricks SQL identifier: as is when it is a plain identifier
 * and no reserved word, else backquoted (with backquotes doubled).  The
 * result may be name itself; otherwise it is palloc'd.
 */
const char *
zerobus_delta_identifier(const char *name)
{
	StringInfoData buf;
	const char *p;

	if (zerobus_is_identifier(name) &&
		bsearch(name, reserved_words, lengthof(reserved_words),
				sizeof(char *), reserved_word_cmp) == NULL)
		return name;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '`');
	for (p = name; *p; p++)
	{
		if (*p == '`')
			appendStringInfoChar(&buf, '`');
		appendStringInfoChar(&buf, *p);
	}
	appendStringInfoChar(&buf, '`');
	return buf.data;
}

/*
 * Append target_table, which must be catalog.schema.table with three
 * non-empty parts of ASCII letters, digits and underscores (the form
 * Zerobus accepts), each part quoted as needed.
 */
static void
append_target_name(StringInfo out, const char *target_table)
{
	const char *p = target_table;
	int			parts = 0;

	for (;;)
	{
		const char *start = p;
		char	   *part;

		while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			   (*p >= '0' && *p <= '9') || *p == '_')
			p++;
		if (p == start || (*p != '.' && *p != '\0') ||
			(*p == '.' && parts == 2) || (*p == '\0' && parts != 2))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid target table name \"%s\"", target_table),
					 errdetail("A target table name has three non-empty parts separated by dots, each made of ASCII letters, digits and underscores."),
					 errhint("Give the Unity Catalog name as catalog.schema.table, for example main.default.orders.")));
		part = pnstrdup(start, p - start);
		if (parts > 0)
			appendStringInfoChar(out, '.');
		appendStringInfoString(out, zerobus_delta_identifier(part));
		parts++;
		if (*p == '\0')
			break;
		p++;
	}
}

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
	int			i;

	initStringInfo(&out);
	appendStringInfoString(&out, "CREATE TABLE IF NOT EXISTS ");
	append_target_name(&out, target_table);
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
	for (i = 0; i < ZB_META_NCOLUMNS; i++)
		appendStringInfo(&out, "  %s %s%s%s\n", zerobus_meta_names[i],
						 zerobus_meta_delta_types[i],
						 i == ZB_META_UNCHANGED_COLUMNS ? "" : " NOT NULL",
						 i == ZB_META_NCOLUMNS - 1 ? "" : ",");
	appendStringInfoString(&out, ") USING DELTA COMMENT ");
	append_sql_string(&out, psprintf("Changes of PostgreSQL table %s, streamed by zerobus",
									 quote_qualified_identifier(plan->schema_name,
																plan->table_name)));
	appendStringInfoChar(&out, ';');
	return out.data;
}

/*
 * zerobus.target_ddl(source regclass, target_table text) returns text
 *
 * Requires ownership of the source table or SELECT privilege on it.
 */
Datum
zerobus_target_ddl(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	char	   *target_table = text_to_cstring(PG_GETARG_TEXT_PP(1));
	Relation	rel;
	ZerobusRecordPlan *plan;
	char	   *ddl;

	rel = relation_open(relid, AccessShareLock);
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

	plan = zerobus_plan_build(rel, NULL, CurrentMemoryContext);
	ddl = zerobus_target_ddl_text(plan, target_table);
	zerobus_plan_free(plan);
	relation_close(rel, AccessShareLock);

	PG_RETURN_TEXT_P(cstring_to_text(ddl));
}
