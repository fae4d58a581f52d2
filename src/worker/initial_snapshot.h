/*-------------------------------------------------------------------------
 *
 * initial_snapshot.h
 *	  Initial snapshots of the tables a stream publishes (initial_snapshot.c): the
 *	  zerobus.stream_tables bookkeeping, shared by the SQL functions, and the
 *	  chunked reading that the stream worker interleaves with the change
 *	  stream.
 *
 * src/worker/initial_snapshot.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ZEROBUS_INITIAL_SNAPSHOT_H
#define ZEROBUS_INITIAL_SNAPSHOT_H

#include "postgres.h"

#include "sender.h"

/* The snapshot side of a worker session */
typedef struct ZerobusSnapshot ZerobusSnapshot;

/* worker.h */
struct ZerobusWorkerState;

/* The worker's side; called outside any transaction */
extern ZerobusSnapshot *zerobus_snapshot_create(struct ZerobusWorkerState *ws,
												MemoryContext parent);
extern bool zerobus_snapshot_has_work(ZerobusSnapshot *snap);
extern void zerobus_snapshot_read_chunk(ZerobusSnapshot *snap);
extern void zerobus_snapshot_progress(ZerobusSnapshot *snap);
extern void zerobus_snapshot_check_timers(ZerobusSnapshot *snap,
										  TimestampTz now, long *timeout);
extern void zerobus_snapshot_relation_seen(ZerobusSnapshot *snap, Oid relid);
extern void zerobus_snapshot_accepted(ZerobusSnapshot *snap,
									  const ZerobusOutcome *outcome);

#endif							/* ZEROBUS_INITIAL_SNAPSHOT_H */
