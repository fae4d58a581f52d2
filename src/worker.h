/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  Interfaces between the parts of a stream worker: the slot side
 *	  (worker.c) and the Zerobus side (sender.c).  Private to the worker;
 *	  the launcher sees only stream.h.
 *
 * src/worker.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ZEROBUS_WORKER_H
#define ZEROBUS_WORKER_H

#include "postgres.h"

#include "stream.h"
#include "utils/timestamp.h"

/*
 * Records that must all be acked before something can be confirmed (a
 * transaction).  Each unacked batch holding records of the group counts
 * once in pending; the sender decrements it when the batch is released.
 * The group must outlive the batches that point to it.
 */
typedef struct ZerobusAckGroup
{
	int			pending;		/* unacked batches holding its records */
} ZerobusAckGroup;

/*
 * Each target table has one current call per lane, so that records of
 * different kinds (and descriptors) go on separate Zerobus streams.
 */
typedef enum ZerobusLane
{
	ZB_LANE_CHANGES,			/* the change stream read from the slot */
	ZB_LANE_SNAPSHOT,			/* rows read by an initial snapshot */
	ZB_NLANES
} ZerobusLane;

/* The Zerobus side of a session (sender.c) */
typedef struct ZerobusSender ZerobusSender;

/* A target table of a sender, with its token and current calls */
typedef struct ZerobusTarget ZerobusTarget;

/* worker.c */
extern void zerobus_worker_fail(const char *fmt,...) pg_attribute_printf(1, 2) pg_attribute_noreturn();
extern void zerobus_worker_descriptor_accepted(ZerobusTarget *target,
											   const char *descriptor, int len);
extern void zerobus_worker_descriptor_rejected(ZerobusTarget *target,
											   const char *target_name,
											   const char *descriptor, int len,
											   const char *status,
											   const char *message);
extern char *zerobus_worker_read_refusal(Oid relid, const char *qualname);
extern void zerobus_worker_pause_target(ZerobusTarget *target,
										const char *target_name,
										const char *reason);

/* sender.c */
extern ZerobusSender *zerobus_sender_create(ZerobusStreamConfig *config,
											ZerobusStreamShared *shared,
											MemoryContext parent,
											char *errbuf, size_t errlen);
extern void zerobus_sender_destroy(ZerobusSender *sender);
extern void zerobus_sender_set_now(ZerobusSender *sender, TimestampTz now);
extern ZerobusTarget *zerobus_sender_target(ZerobusSender *sender,
											const char *name);
extern bool zerobus_sender_add(ZerobusSender *sender, ZerobusTarget *target,
							   ZerobusLane lane,
							   const char *descriptor, int descriptor_len,
							   uint64 *call_serial,
							   const char *record, size_t len,
							   ZerobusAckGroup *group, const char *source);
extern void zerobus_sender_pause(ZerobusSender *sender, ZerobusTarget *target);
extern bool zerobus_sender_paused(ZerobusTarget *target);
extern void zerobus_sender_flush_all(ZerobusSender *sender);
extern long zerobus_sender_process(ZerobusSender *sender);
extern void zerobus_sender_check_timers(ZerobusSender *sender, long *timeout);
extern bool zerobus_sender_backpressured(ZerobusSender *sender);
extern size_t zerobus_sender_inflight_bytes(ZerobusSender *sender);
extern int	zerobus_sender_sockets(ZerobusSender *sender, pgsocket *socks,
								   int *events, int max, uint64 *generation);
extern bool zerobus_sender_got_ack(ZerobusSender *sender);
extern bool zerobus_sender_unsent(ZerobusSender *sender);

/*
 * Lowers *timeout (milliseconds, -1 = none) to the time left from now until
 * due.
 */
static inline void
zerobus_timeout_until(long *timeout, TimestampTz now, TimestampTz due)
{
	long		ms = due <= now ? 0 : (long) ((due - now + 999) / 1000);

	if (*timeout < 0 || ms < *timeout)
		*timeout = ms;
}

#endif							/* ZEROBUS_WORKER_H */
