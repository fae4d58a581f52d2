/*-------------------------------------------------------------------------
 *
 * store.h
 *	  Access to the extension's own tables (store.c), shared by the SQL
 *	  functions and the stream workers: SPI as the bootstrap superuser,
 *	  statements whose values are all parameters, and the stream row a
 *	  function acts on.
 *
 * src/common/store.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ZEROBUS_STORE_H
#define ZEROBUS_STORE_H

#include "postgres.h"

#include "fmgr.h"
#include "utils/relcache.h"

/* Room for every stream setting and the few columns added to them */
#define ZB_MAX_COLUMNS 40

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

/* A background worker's transaction of its own (zerobus_xact_begin) */
typedef struct ZerobusXact
{
	MemoryContext caller;		/* the memory context to go back to */
	bool		spi;			/* connected to SPI */
} ZerobusXact;

extern void zerobus_xact_begin(ZerobusXact *xact, bool spi);
extern void zerobus_xact_end(ZerobusXact *xact);
extern void zerobus_add_column(ZerobusColumnValues *cv, const char *column,
							   Oid type, Datum value, bool isnull);
extern void zerobus_catalog_begin(ZerobusCatalogAccess *access);
extern void zerobus_catalog_end(ZerobusCatalogAccess *access);
extern void zerobus_execute_with_values(const char *sql,
										ZerobusColumnValues *cv,
										int expected);
extern void zerobus_create_stream_slot(const char *slot_name, bool failover);
extern char *zerobus_result_text(int attnum);
extern Datum zerobus_result_datum(int attnum, bool *isnull);
extern Relation zerobus_open_table(Oid relid);
extern bool zerobus_catalog_has_column(const char *table, const char *column);
extern ZerobusStreamRow *zerobus_lookup_stream(const char *name,
											   bool missing_ok);
extern void zerobus_check_stream_owner(ZerobusCatalogAccess *access,
									   const char *name,
									   ZerobusStreamRow *row);
extern char *zerobus_text_arg(FunctionCallInfo fcinfo, int argno,
							  const char *argname, bool required);

/*
 * The leaves of relation r as a relid column: the table itself unless it is
 * partitioned (pg_partition_tree() lists nothing for a table that is not a
 * partition), and the leaves of its partition tree.
 */
#define ZB_PARTITION_LEAVES(r) \
	"(SELECT l.oid AS relid FROM pg_catalog.pg_class l" \
	" WHERE l.oid = " r " AND l.relkind <> 'p'" \
	" UNION SELECT pt.relid FROM pg_catalog.pg_partition_tree(" r ") pt" \
	" WHERE pt.isleaf)"

/*
 * SQL for the published tables of stream $1, as (relid, nspname, relname,
 * attnames, rowfilter, snapshot, owner), the last two the stream's:
 * pg_publication_tables gives the partition root when the publication
 * publishes via the root, else the leaves.  The extension's own
 * tables, which a FOR ALL TABLES or TABLES IN SCHEMA publication lists, are
 * left out, as the output plugin leaves out their changes.  Used by the
 * stream_tables bookkeeping (store.c) and the owner's checks (streams.c).
 */
#define ZB_PUBLISHED_TABLES \
	"SELECT c.oid AS relid, n.nspname, c.relname, pt.attnames, pt.rowfilter," \
	" s.snapshot, s.owner" \
	" FROM zerobus.streams s" \
	" JOIN pg_catalog.pg_publication_tables pt ON pt.pubname = s.publication" \
	" JOIN pg_catalog.pg_namespace n ON n.nspname = pt.schemaname" \
	" JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid" \
	"  AND c.relname = pt.tablename" \
	" WHERE s.id = $1 AND NOT EXISTS" \
	"  (SELECT FROM pg_catalog.pg_depend d" \
	"   JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid" \
	"   WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass" \
	"   AND d.objid = c.oid AND d.deptype = 'e'" \
	"   AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass" \
	"   AND e.extname = 'zerobus')"


/* Bookkeeping in zerobus.stream_tables; each needs a transaction */
extern void zerobus_stream_tables_sync(int32 stream_id);
extern void zerobus_stream_tables_add(int32 stream_id, Oid relid);
extern bool zerobus_stream_tables_reset(int32 stream_id, Oid relid);

#endif							/* ZEROBUS_STORE_H */
