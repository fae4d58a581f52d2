/*-------------------------------------------------------------------------
 *
 * snapshot.h
 *	  Initial snapshots of the tables a stream publishes (snapshot.c): the
 *	  zerobus.stream_tables bookkeeping, shared by the SQL functions, and the
 *	  chunked reading that the stream worker interleaves with the change
 *	  stream.
 *
 * src/snapshot.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ZEROBUS_SNAPSHOT_H
#define ZEROBUS_SNAPSHOT_H

#include "postgres.h"

#include "worker.h"

/* The snapshot side of a worker session */
typedef struct ZerobusSnapshot ZerobusSnapshot;

/*
 * SQL for the published tables of stream $1, as (relid, nspname, relname,
 * attnames, rowfilter, snapshot, owner), the last two the stream's:
 * pg_publication_tables gives the partition root when the publication
 * publishes via the root, else the leaves.  The extension's own
 * tables, which a FOR ALL TABLES or TABLES IN SCHEMA publication lists, are
 * left out, as the output plugin leaves out their changes.  Used by the
 * stream_tables bookkeeping (snapshot.c) and the owner's checks (catalog.c).
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
extern void zerobus_snapshot_sync_tables(int32 stream_id);
extern void zerobus_snapshot_add_table(int32 stream_id, Oid relid);
extern bool zerobus_snapshot_reset_table(int32 stream_id, Oid relid);

/* The worker's side; called outside any transaction */
extern ZerobusSnapshot *zerobus_snapshot_create(ZerobusStreamConfig *config,
												ZerobusSender *sender,
												MemoryContext parent);
extern bool zerobus_snapshot_has_work(ZerobusSnapshot *snap);
extern void zerobus_snapshot_read_chunk(ZerobusSnapshot *snap);
extern void zerobus_snapshot_progress(ZerobusSnapshot *snap);
extern void zerobus_snapshot_check_timers(ZerobusSnapshot *snap,
										  TimestampTz now, long *timeout);
extern void zerobus_snapshot_relation_seen(ZerobusSnapshot *snap, Oid relid);

#endif							/* ZEROBUS_SNAPSHOT_H */
