/*-------------------------------------------------------------------------
 *
 * delta_schema.c
 *	  The schema of target tables: Delta identifiers and Unity Catalog
 *	  names, and schema evolution: what a target table accepted, how a
 *	  source table has changed since, and the ALTER TABLE statements that
 *	  bring the target along.
 *
 * When Zerobus accepts a call's descriptor, the stream worker stores the
 * source columns of that descriptor (name, field number, Delta type) in
 * zerobus.stream_tables.accepted_columns.  When the target later rejects a
 * descriptor, the worker compares its columns with the stored ones and
 * pauses the stream with an error naming the columns and giving the ALTER
 * TABLE statements to run; zerobus.target_ddl(..., form => 'alter') prints
 * the same statements from the same code (zerobus_schema_diff and
 * zerobus_schema_alter_text).
 *
 * A column's field number is its attribute number, which PostgreSQL never
 * reuses within a table, so comparing by field number tells the changes
 * apart:
 *	- the same field number under another name is a RENAME COLUMN;
 *	- the same column with another Delta type is a type change (Delta type
 *	  widening, e.g. INT to BIGINT);
 *	- a new field number is an ADD COLUMNS, unless a dropped column had the
 *	  same name (DROP COLUMN c, ADD COLUMN c), which for the target is the
 *	  same column, unchanged or with another type;
 *	- a field number that is gone is a dropped column: the target keeps it
 *	  and only needs it nullable, as target_ddl creates every source column.
 *
 * Delta column names are case-insensitive, so names are compared that way.
 *
 * src/common/delta_schema.c
 *
 *-------------------------------------------------------------------------
 */
#include "delta_schema.h"

#include "access/relation.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "store.h"
#include "stream.h"


/*
 * Is name usable as a protobuf field or message name (and so, unquoted or
 * backquoted, as a Delta column name)?  ASCII letters, digits and
 * underscores, not starting with a digit.
 */
bool
zerobus_is_identifier(const char *name)
{
	const char *p;

	if (name[0] == '\0' || (name[0] >= '0' && name[0] <= '9'))
		return false;
	for (p = name; *p; p++)
	{
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			  (*p >= '0' && *p <= '9') || *p == '_'))
			return false;
	}
	return true;
}

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
 * The end of the run of ASCII letters, digits and underscores starting at
 * p: the characters a part of a Unity Catalog name may have.
 */
const char *
zerobus_target_part_end(const char *p)
{
	while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		   (*p >= '0' && *p <= '9') || *p == '_')
		p++;
	return p;
}

/*
 * Whether target_table is catalog.schema.table with three non-empty parts
 * of ASCII letters, digits and underscores: the form Zerobus accepts, and
 * nothing that could end an HTTP header line.
 */
bool
zerobus_target_name_valid(const char *target_table)
{
	const char *p = target_table;
	int			parts = 0;

	for (;;)
	{
		const char *start = p;

		p = zerobus_target_part_end(p);
		if (p == start || (*p != '.' && *p != '\0'))
			return false;
		parts++;
		if (*p == '\0')
			return parts == 3;
		if (parts == 3)
			return false;
		p++;
	}
}

/*
 * Append target_table, which must be a valid target name
 * (zerobus_target_name_valid), each part quoted as needed.
 */
void
zerobus_append_target_name(StringInfo out, const char *target_table)
{
	const char *p = target_table;

	if (!zerobus_target_name_valid(target_table))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid target table name \"%s\"", target_table),
				 errdetail("A target table name has three non-empty parts separated by dots, each made of ASCII letters, digits and underscores."),
				 errhint("Give the Unity Catalog name as catalog.schema.table, for example main.default.orders.")));
	for (;;)
	{
		const char *start = p;

		p = zerobus_target_part_end(p);
		if (start != target_table)
			appendStringInfoChar(out, '.');
		appendStringInfoString(out,
							   zerobus_delta_identifier(pnstrdup(start, p - start)));
		if (*p == '\0')
			break;
		p++;
	}
}

/*
 * The source columns of plan, and _array_nulls when it has one (it comes
 * and goes with the table's array columns, so a schema change handles it
 * like theirs; the other metadata columns never change and are not part of
 * a column set), allocated in the current memory context.
 */
void
zerobus_schema_from_plan(const ZerobusRecordPlan *plan, ZerobusColumnSet *set)
{
	int			i;

	set->ncolumns = plan->ncolumns;
	set->columns = palloc0(sizeof(ZerobusSchemaColumn) * (plan->ncolumns + 1));
	for (i = 0; i < plan->ncolumns; i++)
	{
		set->columns[i].name = pstrdup(plan->columns[i].name);
		set->columns[i].field_number = plan->columns[i].field_number;
		set->columns[i].delta_type = pstrdup(plan->columns[i].type->delta_type);
	}
	if (plan->array_nulls_type != NULL)
	{
		ZerobusSchemaColumn *col = &set->columns[set->ncolumns++];

		col->name = pstrdup(zerobus_meta_names[ZB_META_ARRAY_NULLS]);
		col->field_number = ZB_META_FIELD_BASE + ZB_META_ARRAY_NULLS;
		col->delta_type = pstrdup(zerobus_meta_delta_types[ZB_META_ARRAY_NULLS]);
	}
}

/*
 * set as the JSON array stored in accepted_columns:
 * [{"name": ..., "field_number": ..., "delta_type": ...}, ...].
 */
char *
zerobus_schema_to_json(const ZerobusColumnSet *set)
{
	StringInfoData out;
	int			i;

	initStringInfo(&out);
	appendStringInfoChar(&out, '[');
	for (i = 0; i < set->ncolumns; i++)
	{
		const ZerobusSchemaColumn *col = &set->columns[i];

		appendStringInfoString(&out, i ? ", {\"name\": " : "{\"name\": ");
		escape_json(&out, col->name);
		appendStringInfo(&out, ", \"field_number\": %d, \"delta_type\": ",
						 col->field_number);
		escape_json(&out, col->delta_type);
		appendStringInfoChar(&out, '}');
	}
	appendStringInfoChar(&out, ']');
	return out.data;
}

/* The column of set with the given field number, or NULL. */
static const ZerobusSchemaColumn *
find_by_number(const ZerobusColumnSet *set, int field_number)
{
	int			i;

	for (i = 0; i < set->ncolumns; i++)
		if (set->columns[i].field_number == field_number)
			return &set->columns[i];
	return NULL;
}

/* The column of set named name (case-insensitively), or NULL. */
static const ZerobusSchemaColumn *
find_by_name(const ZerobusColumnSet *set, const char *name)
{
	int			i;

	for (i = 0; i < set->ncolumns; i++)
		if (pg_strcasecmp(set->columns[i].name, name) == 0)
			return &set->columns[i];
	return NULL;
}

static void
add_change(ZerobusSchemaChange *changes, int *n, ZerobusSchemaChangeKind kind,
		   const ZerobusSchemaColumn *old, const ZerobusSchemaColumn *new)
{
	changes[*n].kind = kind;
	changes[*n].old = old;
	changes[*n].new = new;
	(*n)++;
}

/*
 * The changes that take a target table from the accepted columns to the
 * current ones (see the file header), renames first, then type changes,
 * additions and drops: the order in which the ALTER statements must run.
 * Returns their number; *changes is palloc'd and points into both sets,
 * which must outlive it.
 */
int
zerobus_schema_diff(const ZerobusColumnSet *accepted,
					const ZerobusColumnSet *current,
					ZerobusSchemaChange **changes)
{
	ZerobusSchemaChange *out;
	int			n = 0;
	int			pass;
	int			i;

	out = palloc(sizeof(ZerobusSchemaChange) *
				 (2 * current->ncolumns + accepted->ncolumns + 1));
	for (pass = ZB_SCHEMA_RENAME; pass <= ZB_SCHEMA_DROP; pass++)
	{
		if (pass == ZB_SCHEMA_DROP)
		{
			for (i = 0; i < accepted->ncolumns; i++)
			{
				const ZerobusSchemaColumn *old = &accepted->columns[i];

				/* gone, and not taken over by a new column of its name */
				if (find_by_number(current, old->field_number) == NULL &&
					find_by_name(current, old->name) == NULL)
					add_change(out, &n, ZB_SCHEMA_DROP, old, NULL);
			}
			continue;
		}
		for (i = 0; i < current->ncolumns; i++)
		{
			const ZerobusSchemaColumn *new = &current->columns[i];
			const ZerobusSchemaColumn *old = find_by_number(accepted,
															new->field_number);

			if (old == NULL)
			{
				/* a re-added column of a dropped column's name is that column */
				old = find_by_name(accepted, new->name);
				if (old && find_by_number(current, old->field_number) != NULL)
					old = NULL;
			}
			if (pass == ZB_SCHEMA_ADD && old == NULL)
				add_change(out, &n, ZB_SCHEMA_ADD, NULL, new);
			else if (pass == ZB_SCHEMA_RENAME && old &&
					 pg_strcasecmp(old->name, new->name) != 0)
				add_change(out, &n, ZB_SCHEMA_RENAME, old, new);
			else if (pass == ZB_SCHEMA_RETYPE && old &&
					 strcmp(old->delta_type, new->delta_type) != 0)
				add_change(out, &n, ZB_SCHEMA_RETYPE, old, new);
		}
	}
	*changes = out;
	return n;
}

/*
 * Whether Delta's type widening (delta.enableTypeWidening) changes a column
 * of Delta type from to type to: a wider integer, FLOAT to DOUBLE, DATE to
 * TIMESTAMP_NTZ, a DECIMAL with no fewer integer and fraction digits.
 */
bool
zerobus_schema_widens(const char *from, const char *to)
{
	static const char *const ints[] = {"TINYINT", "SMALLINT", "INT", "BIGINT"};
	int			f = -1;
	int			t = -1;
	int			p1,
				s1,
				p2,
				s2;

	for (int i = 0; i < (int) lengthof(ints); i++)
	{
		if (strcmp(from, ints[i]) == 0)
			f = i;
		if (strcmp(to, ints[i]) == 0)
			t = i;
	}
	if (f >= 0 && t >= 0)
		return t > f;
	if (strcmp(from, "FLOAT") == 0 && strcmp(to, "DOUBLE") == 0)
		return true;
	if (strcmp(from, "DATE") == 0 && strcmp(to, "TIMESTAMP_NTZ") == 0)
		return true;
	if (sscanf(from, "DECIMAL(%d,%d)", &p1, &s1) == 2 &&
		sscanf(to, "DECIMAL(%d,%d)", &p2, &s2) == 2)
		return s2 >= s1 && p2 - s2 >= p1 - s1 && (p2 > p1 || s2 > s1);
	return false;
}

/*
 * The Databricks SQL statements that apply changes to target_table (which
 * is validated), each ending with a semicolon, joined by separator.  All
 * additions go into one ADD COLUMNS.
 */
char *
zerobus_schema_alter_text(const char *target_table,
						  const ZerobusSchemaChange *changes, int nchanges,
						  const char *separator)
{
	StringInfoData out;
	StringInfoData table;
	bool		adding = false;
	int			i;

	initStringInfo(&table);
	zerobus_append_target_name(&table, target_table);
	initStringInfo(&out);
	for (i = 0; i < nchanges; i++)
	{
		const ZerobusSchemaChange *c = &changes[i];

		if (adding && c->kind != ZB_SCHEMA_ADD)
		{
			appendStringInfoString(&out, ");");
			adding = false;
		}
		if (out.len > 0 && !adding)
			appendStringInfoString(&out, separator);
		switch (c->kind)
		{
			case ZB_SCHEMA_RENAME:
				appendStringInfo(&out, "ALTER TABLE %s RENAME COLUMN %s TO %s;",
								 table.data,
								 zerobus_delta_identifier(c->old->name),
								 zerobus_delta_identifier(c->new->name));
				break;
			case ZB_SCHEMA_RETYPE:
				appendStringInfo(&out, "ALTER TABLE %s ALTER COLUMN %s TYPE %s;",
								 table.data,
								 zerobus_delta_identifier(c->new->name),
								 c->new->delta_type);
				break;
			case ZB_SCHEMA_ADD:
				if (!adding)
					appendStringInfo(&out, "ALTER TABLE %s ADD COLUMNS (",
									 table.data);
				else
					appendStringInfoString(&out, ", ");
				appendStringInfo(&out, "%s %s",
								 zerobus_delta_identifier(c->new->name),
								 c->new->delta_type);
				adding = true;
				break;
			case ZB_SCHEMA_DROP:
				appendStringInfo(&out, "ALTER TABLE %s ALTER COLUMN %s DROP NOT NULL;",
								 table.data,
								 zerobus_delta_identifier(c->old->name));
				break;
		}
	}
	if (adding)
		appendStringInfoString(&out, ");");
	return out.data;
}

/*
 * For schema_policy drop_missing_columns: the columns of current that the
 * target lacks (added, or renamed, since it accepted accepted), to be left
 * out of the descriptor and the records.  Returns their number, 0 when the
 * policy cannot help (nothing is missing, or a type changed, which still
 * pauses); *fields gets their field numbers and *notice the text that
 * zerobus.stat_streams shows, naming source and target_table.
 */
int
zerobus_schema_missing_columns(const ZerobusColumnSet *accepted,
							   const ZerobusColumnSet *current,
							   const char *source, const char *target_table,
							   int **fields, char **notice)
{
	ZerobusSchemaChange *changes;
	int			nchanges = zerobus_schema_diff(accepted, current, &changes);
	StringInfoData names;
	int			n = 0;
	int			i;

	*fields = palloc(sizeof(int) * (nchanges + 1));
	initStringInfo(&names);
	for (i = 0; i < nchanges; i++)
	{
		if (changes[i].kind == ZB_SCHEMA_RETYPE)
			return 0;
		if (changes[i].kind == ZB_SCHEMA_DROP)
			continue;
		(*fields)[n++] = changes[i].new->field_number;
		appendStringInfo(&names, "%s%s", names.len ? ", " : "",
						 changes[i].new->name);
	}
	*notice = psprintf("%s: dropping column%s %s (not in target %s)", source,
					   n > 1 ? "s" : "", names.data, target_table);
	return n;
}

/* Appends the double-quoted names in a server message, comma-separated. */
static void
append_quoted_names(StringInfo out, const char *message)
{
	const char *p = message;
	int			count = 0;

	while ((p = strchr(p, '"')) != NULL)
	{
		const char *end = strchr(p + 1, '"');

		if (end == NULL)
			break;
		appendStringInfo(out, "%s%.*s", count++ ? ", " : "",
						 (int) (end - p + 1), p);
		p = end + 1;
	}
}

/*
 * Why the target table rejected the descriptor of source (a qualified name)
 * with current's columns, for the stream worker's error: *message names the
 * table and the columns, *hint gives the statements to run in Databricks
 * and the call that resumes the stream.  accepted is NULL when the target
 * never accepted a descriptor of source; then the columns can only be named
 * from the server's message, and the hint points at target_ddl.
 */
void
zerobus_schema_explain(const ZerobusColumnSet *accepted,
					   const ZerobusColumnSet *current,
					   const char *source, const char *target_table,
					   const char *stream, const char *server_message,
					   char **message, char **hint)
{
	ZerobusSchemaChange *changes;
	int			nchanges = accepted ?
		zerobus_schema_diff(accepted, current, &changes) : 0;
	StringInfoData msg;
	StringInfoData names;
	char	   *resume = psprintf("SELECT zerobus.resume_stream(%s);",
								  quote_literal_cstr(stream));
	int			i;

	initStringInfo(&msg);
	for (i = 0; i < nchanges; i++)
	{
		const ZerobusSchemaChange *c = &changes[i];

		if (i > 0)
			appendStringInfoString(&msg, "; ");
		appendStringInfo(&msg, "column \"%s\" of table %s (target %s) ",
						 c->new ? c->new->name : c->old->name, source,
						 target_table);
		switch (c->kind)
		{
			case ZB_SCHEMA_RENAME:
				appendStringInfo(&msg, "was renamed from \"%s\"", c->old->name);
				break;
			case ZB_SCHEMA_RETYPE:
				appendStringInfo(&msg, "changed type from %s to %s",
								 c->old->delta_type, c->new->delta_type);
				break;
			case ZB_SCHEMA_ADD:
				appendStringInfoString(&msg, "is not in the target table");
				break;
			case ZB_SCHEMA_DROP:
				appendStringInfoString(&msg, "was dropped");
				break;
		}
	}
	if (nchanges > 0)
	{
		*message = msg.data;
		*hint = psprintf("Run in Databricks: %s Then call %s",
						 zerobus_schema_alter_text(target_table, changes,
												   nchanges, " "),
						 resume);
		return;
	}

	initStringInfo(&names);
	append_quoted_names(&names, server_message);
	appendStringInfo(&msg, "target table %s rejected the columns of table %s",
					 target_table, source);
	if (names.len > 0)
		appendStringInfo(&msg, " (%s)", names.data);
	*message = msg.data;
	*hint = psprintf("Compare the target table with SELECT zerobus.target_ddl(%s, %s); alter it, then call %s",
					 quote_literal_cstr(source),
					 quote_literal_cstr(target_table), resume);
}

/*
 * Reads the columns stream_id's target accepted for relid into set
 * (allocated in the caller's memory context).  Returns false when none were
 * stored.  Needs a transaction and a snapshot; the caller needs SELECT on
 * zerobus.stream_tables, which everybody has.
 */
bool
zerobus_schema_load_accepted(int32 stream_id, Oid relid, ZerobusColumnSet *set)
{
	Oid			types[2] = {INT4OID, OIDOID};
	Datum		values[2];
	MemoryContext cxt = CurrentMemoryContext;
	bool		found;
	uint64		i;

	values[0] = Int32GetDatum(stream_id);
	values[1] = ObjectIdGetDatum(relid);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("SELECT c.name, c.field_number, c.delta_type"
							  " FROM zerobus.stream_tables t,"
							  " pg_catalog.jsonb_to_recordset(t.accepted_columns)"
							  " AS c(name text, field_number int, delta_type text)"
							  " WHERE t.stream_id = $1 AND t.relid = $2"
							  " ORDER BY c.field_number",
							  2, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read zerobus.stream_tables");
	set->ncolumns = (int) SPI_processed;
	set->columns = MemoryContextAllocZero(cxt, sizeof(ZerobusSchemaColumn) *
										  (SPI_processed + 1));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		set->columns[i].name = MemoryContextStrdup(cxt, SPI_getvalue(tup, desc, 1));
		set->columns[i].field_number =
			DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		set->columns[i].delta_type = MemoryContextStrdup(cxt, SPI_getvalue(tup, desc, 3));
	}
	found = SPI_processed > 0;
	if (!found)
	{
		/* a table without source columns has an empty array */
		if (SPI_execute_with_args("SELECT FROM zerobus.stream_tables"
								  " WHERE stream_id = $1 AND relid = $2"
								  " AND accepted_columns IS NOT NULL",
								  2, types, values, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read zerobus.stream_tables");
		found = SPI_processed > 0;
	}
	SPI_finish();
	return found;
}

/*
 * Records that stream_id's target accepted set for relid, with notice
 * saying which columns the records leave out (NULL: none), on the table's
 * stream_tables row, which the caller makes sure exists
 * (zerobus_stream_tables_add).  Writes nothing when that is what is
 * stored.  Needs a transaction and a snapshot, and a superuser (the stream
 * worker).
 */
void
zerobus_schema_store_accepted(int32 stream_id, Oid relid,
							  const ZerobusColumnSet *set, const char *notice)
{
	Oid			types[4] = {INT4OID, OIDOID, TEXTOID, TEXTOID};
	Datum		values[4];
	char		nulls[4] = "    ";

	values[0] = Int32GetDatum(stream_id);
	values[1] = ObjectIdGetDatum(relid);
	values[2] = CStringGetTextDatum(zerobus_schema_to_json(set));
	values[3] = notice ? CStringGetTextDatum(notice) : (Datum) 0;
	nulls[3] = notice ? ' ' : 'n';
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("UPDATE zerobus.stream_tables t"
							  " SET accepted_columns = $3::pg_catalog.jsonb,"
							  "  schema_notice = $4"
							  " WHERE t.stream_id = $1 AND t.relid = $2"
							  " AND (t.accepted_columns IS DISTINCT FROM $3::pg_catalog.jsonb"
							  "  OR t.schema_notice IS DISTINCT FROM $4)",
							  4, types, values, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not write zerobus.stream_tables");
	SPI_finish();
}
