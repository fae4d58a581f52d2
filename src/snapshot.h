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
