/*-------------------------------------------------------------------------
 *
 * catalog.h
 *	  The catalog access shared by the stream functions of catalog.c and
 *	  lifecycle.c: SPI as the bootstrap superuser, statements whose values
 *	  are all parameters, and the stream row they act on.
 *
 * src/catalog.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ZEROBUS_CATALOG_H
#define ZEROBUS_CATALOG_H

#include "postgres.h"

#include "fmgr.h"
#include "utils/relcache.h"

/* Room for every stream setting and the few columns added to them */
#define ZB_MAX_COLUMNS 32

/* Column values collected for an INSERT or UPDATE, as SPI parameters */
typedef struct ZerobusColumnValues
{
	int			n;
	const char *columns[ZB_MAX_COLUMNS];
	Oid			types[ZB_MAX_COLUMNS];
	Datum		values[ZB_MAX_COLUMNS];
	char		nulls[ZB_MAX_COLUMNS];
} ZerobusColumnValues;

/* A stream row, as the functions that change a stream need it */
typedef struct ZerobusStreamRow
{
	int32		id;
	Oid			owner;
	char	   *slot_name;
	char	   *endpoint;
	char	   *workspace_url;
	bool		insecure;
} ZerobusStreamRow;

/* The caller's identity, saved while acting as the bootstrap superuser */
typedef struct ZerobusCatalogAccess
{
	Oid			caller;
	int			sec_context;
	int			guc_level;		/* of the forced search_path */
} ZerobusCatalogAccess;

extern void zerobus_add_column(ZerobusColumnValues *cv, const char *column,
							   Oid type, Datum value, bool isnull);
extern void zerobus_catalog_begin(ZerobusCatalogAccess *access);
extern void zerobus_catalog_end(ZerobusCatalogAccess *access);
extern void zerobus_execute_with_values(const char *sql,
										ZerobusColumnValues *cv,
										int expected);
extern char *zerobus_result_text(int attnum);
extern Datum zerobus_result_datum(int attnum, bool *isnull);
extern Relation zerobus_open_table(Oid relid);
extern ZerobusStreamRow *zerobus_lookup_stream(const char *name,
											   bool missing_ok);
extern void zerobus_check_stream_owner(ZerobusCatalogAccess *access,
									   const char *name,
									   ZerobusStreamRow *row);
extern char *zerobus_text_arg(FunctionCallInfo fcinfo, int argno,
							  const char *argname, bool required);

#endif							/* ZEROBUS_CATALOG_H */
