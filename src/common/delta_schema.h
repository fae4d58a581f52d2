/*-------------------------------------------------------------------------
 *
 * delta_schema.h
 *	  Schema evolution (schema.c): the columns a target table accepted, the
 *	  difference between two column sets, and the Databricks ALTER TABLE
 *	  statements that take a target table from one to the other.
 *
 * src/common/delta_schema.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ZEROBUS_SCHEMA_H
#define ZEROBUS_SCHEMA_H

#include "zerobus.h"

/*
 * One source column as the target sees it.  The field number is the
 * column's attribute number, so it identifies the column across renames
 * and type changes.
 */
typedef struct ZerobusSchemaColumn
{
	char	   *name;
	int			field_number;
	char	   *delta_type;
} ZerobusSchemaColumn;

/* The source columns of one descriptor, in field number order. */
typedef struct ZerobusColumnSet
{
	int			ncolumns;
	ZerobusSchemaColumn *columns;
} ZerobusColumnSet;

typedef enum ZerobusSchemaChangeKind
{
	ZB_SCHEMA_RENAME,			/* same field number, another name */
	ZB_SCHEMA_RETYPE,			/* same column, another Delta type */
	ZB_SCHEMA_ADD,				/* a field number the target never had */
	ZB_SCHEMA_DROP				/* a field number that is gone */
} ZerobusSchemaChangeKind;

/* One difference; old is NULL for ADD, new is NULL for DROP. */
typedef struct ZerobusSchemaChange
{
	ZerobusSchemaChangeKind kind;
	const ZerobusSchemaColumn *old;
	const ZerobusSchemaColumn *new;
} ZerobusSchemaChange;

extern void zerobus_schema_from_plan(const ZerobusRecordPlan *plan,
									 ZerobusColumnSet *set);
extern char *zerobus_schema_to_json(const ZerobusColumnSet *set);
extern int	zerobus_schema_diff(const ZerobusColumnSet *accepted,
								const ZerobusColumnSet *current,
								ZerobusSchemaChange **changes);
extern bool zerobus_schema_widens(const char *from, const char *to);
extern char *zerobus_schema_alter_text(const char *target_table,
									   const ZerobusSchemaChange *changes,
									   int nchanges, const char *separator);
extern void zerobus_schema_explain(const ZerobusColumnSet *accepted,
								   const ZerobusColumnSet *current,
								   const char *source, const char *target_table,
								   const char *stream, const char *server_message,
								   char **message, char **hint);

/* schema_policy drop_missing_columns */
extern int	zerobus_schema_missing_columns(const ZerobusColumnSet *accepted,
										   const ZerobusColumnSet *current,
										   const char *source,
										   const char *target_table,
										   int **fields, char **notice);

/* the catalog (zerobus.stream_tables.accepted_columns); need a transaction */
extern bool zerobus_schema_load_accepted(int32 stream_id, Oid relid,
										 ZerobusColumnSet *set);
extern void zerobus_schema_store_accepted(int32 stream_id, Oid relid,
										  const ZerobusColumnSet *set,
										  const char *notice);

/* Unity Catalog names of target tables */
extern const char *zerobus_target_part_end(const char *p);
extern bool zerobus_target_name_valid(const char *target_table);
extern void zerobus_append_target_name(StringInfo out, const char *target_table);

#endif							/* ZEROBUS_SCHEMA_H */
