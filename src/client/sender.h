/*-------------------------------------------------------------------------
 *
 * sender.h
 *	  The Zerobus side of a stream worker (sender.c): targets, calls,
 *	  batches, acks and backpressure.
 *
 * The sender never calls up into the worker.  What the worker must act on
 * (a target accepted or rejected a descriptor, a target paused for a
 * failure of its own) comes back as outcomes, queued in the order they
 * happened, that the worker takes after each call into the sender.  A
 * failure that ends the session raises an ERROR; one that must stop the
 * stream for good also makes zerobus_sender_failed_for_good() say so.
 *
 * src/client/sender.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ZEROBUS_SENDER_H
#define ZEROBUS_SENDER_H

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
	bool		dropped;		/* a batch of it was dropped unacked: it is
								 * never acked in this session */
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

/* The Zerobus side of a session */
typedef struct ZerobusSender ZerobusSender;

/* A target table of a sender, with its token and current calls */
typedef struct ZerobusTarget ZerobusTarget;

/* What happened to a target table, for the worker to act on */
typedef enum ZerobusOutcomeKind
{
	ZB_OUTCOME_ACCEPTED,		/* the target accepted a call's descriptor */
	ZB_OUTCOME_REJECTED,		/* it rejected a call's descriptor at
								 * creation; the target is not paused */
	ZB_OUTCOME_PAUSED,			/* a failure of this target alone: the sender
								 * paused it (zerobus_sender_pause) */
	ZB_OUTCOME_TRANSFER_DONE	/* a transfer of zerobus_sender_add_transfer()
								 * is over; target is NULL */
} ZerobusOutcomeKind;

/*
 * One outcome.  Its strings and descriptor stay valid until the next call
 * of zerobus_sender_next_outcome() that returns false.
 */
typedef struct ZerobusOutcome
{
	ZerobusOutcomeKind kind;
	ZerobusTarget *target;
	const char *target_name;	/* catalog.schema.table */
	const char *descriptor;		/* ACCEPTED, REJECTED: the call's */
	int			descriptor_len;
	const char *status;			/* REJECTED: "<code> (<name>)" */
	const char *message;		/* REJECTED: the server's words, scrubbed;
								 * PAUSED: the reason */
	void	   *transfer;		/* TRANSFER_DONE: its CURL easy handle */
	int			result;			/* TRANSFER_DONE: its CURLcode */
} ZerobusOutcome;

extern ZerobusSender *zerobus_sender_create(ZerobusStreamConfig *config,
											ZerobusStreamShared *shared,
											MemoryContext parent,
											char *errbuf, size_t errlen);
extern void zerobus_sender_destroy(ZerobusSender *sender);
extern bool zerobus_sender_add_transfer(ZerobusSender *sender, void *easy,
										char *errbuf, size_t errlen);
extern void zerobus_sender_remove_transfer(ZerobusSender *sender, void *easy);
extern void zerobus_sender_set_now(ZerobusSender *sender, TimestampTz now);
extern ZerobusTarget *zerobus_sender_target(ZerobusSender *sender,
											const char *name);
extern bool zerobus_sender_add(ZerobusSender *sender, ZerobusTarget *target,
							   ZerobusLane lane,
							   const char *descriptor, int descriptor_len,
							   uint64 *epoch, uint32 key_hash,
							   const char *record, size_t len,
							   ZerobusAckGroup *group, const char *source);
extern int	zerobus_sender_shards(ZerobusTarget *target);
extern void zerobus_sender_expect(ZerobusSender *sender, ZerobusTarget *target,
								  double records);
extern void zerobus_sender_pause(ZerobusSender *sender, ZerobusTarget *target,
								 bool drain);
extern bool zerobus_sender_paused(ZerobusTarget *target);
extern bool zerobus_sender_uses_descriptor(ZerobusSender *sender,
										   ZerobusTarget *target,
										   const char *descriptor,
										   int descriptor_len);
extern void zerobus_sender_flush_all(ZerobusSender *sender);
extern long zerobus_sender_process(ZerobusSender *sender);
extern void zerobus_sender_check_timers(ZerobusSender *sender, long *timeout);
extern bool zerobus_sender_next_outcome(ZerobusSender *sender,
										ZerobusOutcome *outcome);
extern bool zerobus_sender_failed_for_good(ZerobusSender *sender);
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

#endif							/* ZEROBUS_SENDER_H */
