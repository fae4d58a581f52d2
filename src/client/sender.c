/*-------------------------------------------------------------------------
 *
 * sender.c
 *	  The Zerobus side of a stream worker: targets and their tokens, one
 *	  EphemeralStream call per target table and lane, batching, acks and
 *	  backpressure.
 *
 * Sending.  There is one EphemeralStream call (grpc.c) per target table,
 * lane (changes, snapshot) and shard, each on an HTTP/2 connection of its
 * own unless the stream shares one.  A busy table's records are spread
 * over several shards by a hash of their key the caller gives, their
 * number chosen from the table's rate and the service's per-stream quota
 * (shards.c); a quiet table has one.  A call is opened lazily,
 * with a token fetched for its table (token.c) and the DescriptorProto the
 * caller gives for its records.  Token requests never block the worker:
 * they run on the same multi handle as the calls, so the other tables'
 * traffic goes on while one table waits for its token; a call without a
 * usable token takes records all the same and holds its flushed batches
 * (offsets assigned, counted in flight) until the token comes, it starts
 * and Zerobus has created its stream.  Records of a call are appended to
 * its open batch, which is sent when it holds batch_max_records records or
 * batch_max_bytes bytes, when batch_max_delay_ms has passed since its first
 * record, or when the caller flushes (the worker does as soon as the
 * replication stream has nothing more to read, so a lone change is not
 * delayed).  A flush sends a call's open batch only while fewer than
 * ZB_FLUSH_MAX_INFLIGHT of its batches await their ack; otherwise the batch
 * goes on filling until an ack comes back (the worker flushes again after
 * each round of events), it is full, or batch_max_delay_ms passes.  So a
 * quiet stream sends each change at once, and a busy one sends few large
 * requests instead of many small ones.  A batch takes the next offset_id
 * of its call (0, 1, 2, ...).  A call is retired, i.e. takes no new
 * records and is half-closed once its last batch is acked (the server then
 * ends it), when records of its
 * table and lane come with another descriptor, when the new token
 * requested as its token neared expiry (less than min(5 minutes, 20% of
 * its lifetime) left) has come, or when the server announces a close
 * (CloseStreamSignal); new records go to a fresh call.  A call opened
 * with another descriptor than the calls before it of its table and lane
 * starts only once Zerobus created those (waits_for_older): the target
 * then answers the descriptors of a table in the order the table changed,
 * so the first one the caller hears rejected is the earliest, and the
 * calls of the descriptors it accepted are known when a later one is
 * rejected (the worker alters the target for the earliest, and keeps the
 * others' records flowing meanwhile: zerobus_sender_pause with drain).
 *
 * Acks.  Each batch remembers the ack groups (ZerobusAckGroup, e.g. a
 * transaction) it holds records of, in the order they came.  An ack of
 * offset N on a call releases that call's batches up to N, and each
 * released batch decrements the pending count of its groups; the caller
 * decides from those counts what it may confirm.
 *
 * Backpressure.  Records count as in flight from the moment they enter a
 * batch until they are acked.  While more than max_inflight_bytes are in
 * flight, or more than ZB_MAX_QUEUED_BYTES wait in the transport's send
 * queues, zerobus_sender_backpressured() says so, and the worker stops
 * reading the replication connection (and stops watching its socket); the
 * walsender then blocks on a full socket.  Memory thus stays bounded
 * whatever the size of a transaction or the ack delay.
 *
 * Failures.  A call the server ends before it acked everything (a stream
 * timeout, UNAVAILABLE, a dropped connection) is reopened alone and its
 * unacked batches sent again (reopen_call), as the official SDKs recover a
 * stream; each batch keeps its records until acked for that.  A token
 * request that fails for a transient cause (the endpoint unreachable or
 * answering 5xx) is tried again with the same backoff, the calls waiting
 * for it, as the official SDKs retry it.  Another transient failure (an
 * ack timeout, a protocol violation, a call reopened too often, a token
 * request failed ZB_MAX_REOPENS times in a row) raises an ERROR, which
 * makes the worker reset its session.
 * A permanent one (see "Recovery" in worker.c) raises an
 * ERROR too, after which zerobus_sender_failed_for_good() is true and the
 * worker marks the stream failed, unless it concerns one target table only
 * (its call ended with INVALID_ARGUMENT, NOT_FOUND or PERMISSION_DENIED,
 * its token refused with HTTP 403, its name no Unity Catalog name): then
 * the sender pauses that target alone, which drops its calls
 * (zerobus_sender_pause) and makes it refuse records from then on, and
 * queues a ZB_OUTCOME_PAUSED for the worker to record.  A descriptor
 * rejected when a call opens is left to the worker (ZB_OUTCOME_REJECTED),
 * which knows the columns behind it.  The sender never calls up into the
 * worker: outcomes go back through zerobus_sender_next_outcome().
 *
 * src/client/sender.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/ilist.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "auth.h"
#include "compat.h"
#include "delta_schema.h"
#include "grpc.h"
#include "sender.h"
#include "shards.h"
#include "stream.h"
#include "token.h"

/* Room left in a gRPC message for the request framing around the records */
#define ZB_REQUEST_OVERHEAD		(64 * 1024)
#define ZB_MAX_RECORD			(ZB_GRPC_MAX_REQUEST - ZB_REQUEST_OVERHEAD)

/*
 * Most record bytes held in the transport's send queues before the worker
 * stops reading the slot, whatever max_inflight_bytes allows: bounds the
 * memory used while Zerobus reads slower than the slot is decoded.  Four
 * times libcurl's upload buffer keeps the connection busy; more only costs
 * memory (8 MB here meant 12 MB more peak RSS, and no more throughput).
 */
#define ZB_MAX_QUEUED_BYTES		(2 * 1024 * 1024)

/*
 * A flush sends a call's open batch only while fewer of its batches than
 * this are unacked (see the file header).  Two keep one batch on the wire
 * while the previous one is acked.
 */
#define ZB_FLUSH_MAX_INFLIGHT	2

/*
 * Most records one call may have unacked, in seconds of its quota (see
 * zerobus_sender_backpressured): enough to cover the service's time to
 * durability (up to 500 ms at p95) and keep the stream at its quota.
 */
#define ZB_STREAM_BACKLOG_S		2

/* A batch of records of one call: open, then sent, then acked. */
typedef struct ZbBatch
{
	dlist_node	node;			/* in ZbCall.inflight once sent */
	int64		offset;			/* offset_id, once sent */
	int			nrecords;
	size_t		bytes;			/* sum of the record sizes */
	int			ngroups;		/* the ack groups it holds records of, */
	int			maxgroups;		/* in the order they came */
	ZerobusAckGroup **groups;
	char	   *held;			/* once flushed: its records, back to back, */
	size_t	   *held_lens;		/* kept until acked (see reopen_call) */
	bool		on_wire;		/* sent on its call's current gRPC call */
} ZbBatch;

/* One EphemeralStream call, writing one target table. */
typedef struct ZbCall
{
	dlist_node	node;			/* in ZerobusSender.calls */
	ZerobusGrpcCall *grpc;
	ZerobusTarget *target;
	ZerobusLane lane;
	int			shard;			/* which of its target's calls of lane */
	char	   *descriptor;		/* DescriptorProto it was opened with */
	int			descriptor_len;
	int64		next_offset;
	ZbBatch    *open;			/* batch being filled, or NULL */
	StringInfoData buf;			/* the open batch's records, back to back */
	size_t	   *lens;			/* their sizes */
	int			maxlens;
	TimestampTz open_since;		/* when the open batch got its first record */
	dlist_head	inflight;		/* sent batches awaiting their ack */
	int			ninflight;		/* how many */
	int64		inflight_records;	/* records in them */
	bool		retiring;		/* takes no new records */
	bool		closing;		/* half-closed: the server ends it */
	bool		created;		/* Zerobus created its stream */
	bool		accepted;		/* ... at least once: took its descriptor */
	int			reopens;		/* reopen_call() since its last ack */
	TimestampTz reopen_at;		/* reopened: not started before then */
	TimestampTz last_heard;		/* last event, or when batches went in
								 * flight */
} ZbCall;

/* A target table and its token. */
struct ZerobusTarget
{
	dlist_node	node;			/* in ZerobusSender.targets */
	char	   *name;			/* catalog.schema.table */
	/* current calls, per lane and shard; NULL until needed */
	ZbCall	   *call[ZB_NLANES][ZB_MAX_STREAMS_PER_TABLE];
	char	   *descriptor[ZB_NLANES];	/* of the lane's current calls */
	int			descriptor_len[ZB_NLANES];
	uint64		epoch[ZB_NLANES];	/* changes with the lane's descriptor */
	ZerobusShardRate rate;		/* its rate and number of shards (shards.c) */
	ZerobusToken token;			/* token.c */
	bool		paused;			/* takes no records (zerobus_sender_pause) */
};

/*
 * The Zerobus connection of a session and everything sent on it.
 * Allocations live in cxt (batches in batch_cxt), deleted with the sender;
 * grpc and the tokens are released explicitly.
 */
struct ZerobusSender
{
	MemoryContext cxt;
	MemoryContext batch_cxt;	/* ZbBatch chunks */
	ZerobusStreamConfig *config;
	ZerobusStreamShared *shared;
	ZerobusGrpc *grpc;
	dlist_head	targets;
	dlist_head	calls;
	uint64		next_epoch;
	size_t		inflight_bytes;
	TimestampTz now;			/* set once per loop iteration */
	bool		unsent;			/* batches queued since the last perform */
	bool		got_ack;		/* an ack arrived: the session works */
	bool		failed_for_good;	/* the ERROR raised must stop the stream */
	MemoryContext outcome_cxt;	/* the queued outcomes and their strings */
	List	   *outcomes;		/* ZerobusOutcome, oldest first */
};

static void flush_batch(ZerobusSender *sender, ZbCall *call);
static void send_batch(ZerobusSender *sender, ZbCall *call, ZbBatch *batch);
static void start_call(ZerobusSender *sender, ZbCall *call);
static bool start_when_due(ZerobusSender *sender, ZbCall *call);
static bool waits_for_older(ZerobusSender *sender, ZbCall *call);
static void drop_call(ZerobusSender *sender, ZbCall *call);
static void retire_call(ZerobusSender *sender, ZbCall *call);

/*
 * A server's words made fit to be shown and stored, with the stream's
 * credentials and target's token redacted (zerobus_auth_redact).
 */
static char *
server_words(ZerobusSender *sender, ZerobusTarget *target, const char *text)
{
	return zerobus_auth_redact(text, sender->config->client_id,
							   sender->config->client_secret,
							   target ? target->token.token : NULL);
}

/*
 * Connects to the stream's Zerobus endpoint (the connection itself is made
 * by the first call).  config and shared must outlive the sender; tuning
 * options changed in config take effect at once.  Returns NULL, with the
 * reason in errbuf, when the endpoint is invalid.
 */
ZerobusSender *
zerobus_sender_create(ZerobusStreamConfig *config, ZerobusStreamShared *shared,
					  MemoryContext parent, char *errbuf, size_t errlen)
{
	ZerobusGrpc *grpc;
	ZerobusSender *sender;
	MemoryContext cxt;

	grpc = zerobus_grpc_create(config->endpoint, config->insecure,
							   config->ca_file, config->shared_connection,
							   errbuf, errlen);
	if (grpc == NULL)
		return NULL;

	cxt = AllocSetContextCreate(parent, "zerobus sender",
								ALLOCSET_DEFAULT_SIZES);
	sender = MemoryContextAllocZero(cxt, sizeof(ZerobusSender));
	sender->cxt = cxt;
	sender->batch_cxt = AllocSetContextCreate(cxt, "zerobus batches",
											  ALLOCSET_DEFAULT_SIZES);
	sender->outcome_cxt = AllocSetContextCreate(cxt, "zerobus outcomes",
												ALLOCSET_SMALL_SIZES);
	sender->config = config;
	sender->shared = shared;
	sender->grpc = grpc;
	dlist_init(&sender->targets);
	dlist_init(&sender->calls);
	sender->now = GetCurrentTimestamp();
	return sender;
}

/*
 * Sets the current time, taken once per loop iteration: timers, token
 * refresh and ack timeouts are judged against it.
 */
void
zerobus_sender_set_now(ZerobusSender *sender, TimestampTz now)
{
	sender->now = now;
}

/*
 * Frees a batch whose records are durable (acked), or will never be: then
 * its ack groups stay pending for good, so that nothing holding records of
 * the batch is ever confirmed.
 */
static void
release_batch(ZerobusSender *sender, ZbBatch *batch, bool acked)
{
	int			i;

	sender->inflight_bytes -= batch->bytes;
	if (acked)
	{
		for (i = 0; i < batch->ngroups; i++)
			batch->groups[i]->pending--;
		SpinLockAcquire(&sender->shared->mutex);
		sender->shared->records_acked += batch->nrecords;
		sender->shared->bytes_acked += batch->bytes;
		SpinLockRelease(&sender->shared->mutex);
	}
	else
	{
		for (i = 0; i < batch->ngroups; i++)
			batch->groups[i]->dropped = true;
	}
	if (batch->groups)
		pfree(batch->groups);
	if (batch->held)
		pfree(batch->held);
	if (batch->held_lens)
		pfree(batch->held_lens);
	pfree(batch);
}

/* ----------------------------------------------------------------
 * Targets, calls and batches
 * ----------------------------------------------------------------
 */

/*
 * Finds or creates the target of the given name (catalog.schema.table).
 * The result lives as long as the sender.
 */
ZerobusTarget *
zerobus_sender_target(ZerobusSender *sender, const char *name)
{
	dlist_iter	iter;
	ZerobusTarget *target;

	dlist_foreach(iter, &sender->targets)
	{
		target = dlist_container(ZerobusTarget, node, iter.cur);
		if (strcmp(target->name, name) == 0)
			return target;
	}
	target = MemoryContextAllocZero(sender->cxt, sizeof(ZerobusTarget));
	target->name = MemoryContextStrdup(sender->cxt, name);
	zerobus_shards_init(&target->rate);
	dlist_push_tail(&sender->targets, &target->node);
	return target;
}

/*
 * Queues an outcome for the worker (see sender.h), copying what it points
 * to.
 */
static void
queue_outcome(ZerobusSender *sender, ZerobusOutcomeKind kind,
			  ZerobusTarget *target, const char *descriptor,
			  int descriptor_len, const char *status, const char *message)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(sender->outcome_cxt);
	ZerobusOutcome *outcome = palloc0(sizeof(ZerobusOutcome));

	outcome->kind = kind;
	outcome->target = target;
	outcome->target_name = target->name;
	if (descriptor)
	{
		char	   *copy = palloc(descriptor_len);

		memcpy(copy, descriptor, descriptor_len);
		outcome->descriptor = copy;
		outcome->descriptor_len = descriptor_len;
	}
	outcome->status = status ? pstrdup(status) : NULL;
	outcome->message = message ? pstrdup(message) : NULL;
	sender->outcomes = lappend(sender->outcomes, outcome);
	MemoryContextSwitchTo(oldcxt);
}

/* Tells the worker that a transfer of its own is over. */
static void
queue_transfer_done(ZerobusSender *sender, void *transfer, int result)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(sender->outcome_cxt);
	ZerobusOutcome *outcome = palloc0(sizeof(ZerobusOutcome));

	outcome->kind = ZB_OUTCOME_TRANSFER_DONE;
	outcome->transfer = transfer;
	outcome->result = result;
	sender->outcomes = lappend(sender->outcomes, outcome);
	MemoryContextSwitchTo(oldcxt);
}

/*
 * Runs a transfer of the worker's (a SQL statement's, statement.h) on the
 * sender's connection, with its traffic; a TRANSFER_DONE outcome says when
 * it is over, and the worker then takes it off with
 * zerobus_sender_remove_transfer() before freeing it.  Returns false, with
 * errbuf filled, when libcurl refuses it.
 */
bool
zerobus_sender_add_transfer(ZerobusSender *sender, void *easy, char *errbuf,
							size_t errlen)
{
	return zerobus_grpc_add_transfer(sender->grpc, easy, NULL, errbuf, errlen);
}

/* Takes a transfer of the worker's off, done or not; no outcome follows. */
void
zerobus_sender_remove_transfer(ZerobusSender *sender, void *easy)
{
	zerobus_grpc_remove_transfer(sender->grpc, easy);
}

/*
 * Pauses target for a failure of its own (zerobus_sender_pause) and tells
 * the worker why.
 */
static void
pause_for(ZerobusSender *sender, ZerobusTarget *target, const char *reason)
{
	zerobus_sender_pause(sender, target, false);
	queue_outcome(sender, ZB_OUTCOME_PAUSED, target, NULL, 0, NULL, reason);
}

/*
 * Takes the oldest queued outcome into *outcome; false when there is none
 * (then the memory of the outcomes taken so far is released).
 */
bool
zerobus_sender_next_outcome(ZerobusSender *sender, ZerobusOutcome *outcome)
{
	if (sender->outcomes == NIL)
	{
		MemoryContextReset(sender->outcome_cxt);
		return false;
	}
	*outcome = *(ZerobusOutcome *) linitial(sender->outcomes);
	sender->outcomes = list_delete_first(sender->outcomes);
	return true;
}

/*
 * Whether the ERROR the sender raised last is a permanent failure of the
 * stream (see "Failures" above): the worker then stops the stream.
 */
bool
zerobus_sender_failed_for_good(ZerobusSender *sender)
{
	return sender->failed_for_good;
}

/* Whether target has any call, current or retired */
static bool
has_calls(ZerobusSender *sender, ZerobusTarget *target)
{
	dlist_iter	iter;

	dlist_foreach(iter, &sender->calls)
	{
		if (dlist_container(ZbCall, node, iter.cur)->target == target)
			return true;
	}
	return false;
}

/*
 * Starts a token request for target, unless one is in flight.  The
 * request runs on the Zerobus connection's multi handle with the rest of
 * the traffic; token_done() takes its outcome.  A source table whose name
 * makes no Unity Catalog name (a dot, a space, a line break, a non-ASCII
 * letter) pauses alone instead, before its name reaches a token request or
 * a request header.
 */
static void
request_token(ZerobusSender *sender, ZerobusTarget *target)
{
	/* a paused target's calls left are draining (zerobus_sender_pause) */
	if (target->paused && !has_calls(sender, target))
		return;
	if (!zerobus_target_name_valid(target->name))
	{
		pause_for(sender, target,
				  psprintf("target table name %s is not catalog.schema.table with parts of ASCII letters, digits and underscores. "
						   "Hint: Map its source table to a valid name with zerobus.alter_stream(table_map => ...), then call zerobus.resume_stream().",
						   quote_literal_cstr(target->name)));
		return;
	}
	zerobus_token_request(&target->token, sender->grpc, sender->config,
						  target->name, target, sender->now);
}

/* Whether target's token may start a call now (zerobus_token_usable) */
static bool
token_usable(ZerobusSender *sender, ZerobusTarget *target)
{
	return zerobus_token_usable(&target->token, sender->now);
}

/*
 * The token request of target is over (libcurl's result): takes the new
 * token, retires the calls started with the old one and starts the calls
 * that waited for it; or pauses the target (HTTP 403), or raises the
 * ERROR that ends the session (for good when the endpoint denied the
 * client).
 */
static void
token_done(ZerobusSender *sender, ZerobusTarget *target, int result)
{
	char	   *why = NULL;
	dlist_mutable_iter iter;

	switch (zerobus_token_done(&target->token, sender->grpc, result,
							   sender->now, sender->config, sender->shared,
							   target->name, &why))
	{
		case ZB_TOKEN_OK:
			break;
		case ZB_TOKEN_RETRY:
			return;
		case ZB_TOKEN_FORBIDDEN:
			pause_for(sender, target, why);
			return;
		case ZB_TOKEN_DENIED:
			sender->failed_for_good = true;
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
					 errmsg("%s", why)));
	}

	dlist_foreach_modify(iter, &sender->calls)
	{
		ZbCall	   *call = dlist_container(ZbCall, node, iter.cur);

		if (call->target != target)
			continue;
		if (call->grpc == NULL)
			start_when_due(sender, call);
		else if (!call->retiring)
			retire_call(sender, call);	/* started with the old token */
	}
}

/*
 * Opens a new call for target with the given descriptor and makes it the
 * target's current call of lane and shard.  Any previous current call there
 * must have been retired.  Without a usable token the call waits for one
 * (its batches are held, see flush_batch) and a token request starts.
 * Returns NULL when the target is paused.
 */
static ZbCall *
open_call(ZerobusSender *sender, ZerobusTarget *target, ZerobusLane lane,
		  int shard, const char *descriptor, int descriptor_len)
{
	ZbCall	   *call;

	if (!token_usable(sender, target))
		request_token(sender, target);
	if (target->paused)
		return NULL;
	call = MemoryContextAllocZero(sender->cxt, sizeof(ZbCall));
	call->target = target;
	call->lane = lane;
	call->shard = shard;
	call->descriptor = MemoryContextAlloc(sender->cxt, descriptor_len);
	memcpy(call->descriptor, descriptor, descriptor_len);
	call->descriptor_len = descriptor_len;
	call->last_heard = sender->now;
	dlist_init(&call->inflight);
	call->buf.data = NULL;
	dlist_push_tail(&sender->calls, &call->node);
	target->call[lane][shard] = call;
	if (token_usable(sender, target) && !waits_for_older(sender, call))
		start_call(sender, call);
	return call;
}

/*
 * Whether call must not start yet: a call of its target and lane opened
 * before it with another descriptor has not been accepted (created) yet,
 * nor ended (see the file header).  Calls are listed in the order they
 * were opened.
 */
static bool
waits_for_older(ZerobusSender *sender, ZbCall *call)
{
	dlist_iter	iter;

	dlist_foreach(iter, &sender->calls)
	{
		ZbCall	   *older = dlist_container(ZbCall, node, iter.cur);

		if (older == call)
			break;
		if (older->target == call->target && older->lane == call->lane &&
			!older->accepted &&
			(older->descriptor_len != call->descriptor_len ||
			 memcmp(older->descriptor, call->descriptor,
					call->descriptor_len) != 0))
			return true;
	}
	return false;
}

/*
 * Starts the calls of call's target and lane that waited for it
 * (waits_for_older), now that Zerobus accepted its descriptor.
 */
static void
start_successors(ZerobusSender *sender, ZbCall *call)
{
	dlist_iter	iter;

	dlist_foreach(iter, &sender->calls)
	{
		ZbCall	   *next = dlist_container(ZbCall, node, iter.cur);

		if (next != call && next->target == call->target &&
			next->lane == call->lane && next->grpc == NULL)
			start_when_due(sender, next);
	}
}

/*
 * Starts the EphemeralStream call of call with its target's token.  Its
 * batches go out once Zerobus has created the stream (send_waiting), as
 * the official SDKs wait for create_stream_response.
 */
static void
start_call(ZerobusSender *sender, ZbCall *call)
{
	ZerobusTarget *target = call->target;
	char		errbuf[512];

	Assert(call->grpc == NULL && token_usable(sender, target));
	call->grpc = zerobus_grpc_open(sender->grpc, target->name, target->token.token,
								   call->descriptor, call->descriptor_len, call,
								   errbuf, sizeof(errbuf));
	if (call->grpc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not open a Zerobus stream for table %s: %s",
						target->name, errbuf)));
	call->last_heard = sender->now;
}

/*
 * Starts a call that has no gRPC call (a new one that waited for its
 * token, or one reopen_call replaced) once its reopen backoff is over: at
 * once with a usable token, else when the token requested now comes
 * (token_done).  Returns false while the backoff runs.
 */
static bool
start_when_due(ZerobusSender *sender, ZbCall *call)
{
	if (sender->now < call->reopen_at)
		return false;
	if (waits_for_older(sender, call))
		return true;			/* started by start_successors */
	if (token_usable(sender, call->target))
		start_call(sender, call);
	else
		request_token(sender, call->target);
	return true;
}

/* Whether call's batches can go on the wire: Zerobus created its stream. */
static inline bool
call_ready(const ZbCall *call)
{
	return call->grpc != NULL && call->created;
}

/*
 * Sends, in order, the flushed batches of a call that just became ready
 * (its stream created, or created again by reopen_call).
 */
static void
send_waiting(ZerobusSender *sender, ZbCall *call)
{
	dlist_iter	iter;

	dlist_foreach(iter, &call->inflight)
	{
		ZbBatch    *batch = dlist_container(ZbBatch, node, iter.cur);

		if (!batch->on_wire)
			send_batch(sender, call, batch);
	}
}

/*
 * Ends a retired call that owes nothing as gRPC clients finish a call: it
 * is half-closed, and the server ends it (with OK); its ENDED event then
 * drops it, or zerobus_sender_check_timers() does after ack_timeout.  A
 * call whose stream was never created is dropped at once.
 */
static void
close_call(ZerobusSender *sender, ZbCall *call)
{
	if (!call_ready(call))
	{
		drop_call(sender, call);
		return;
	}
	zerobus_grpc_half_close(call->grpc);
	call->closing = true;
	call->last_heard = sender->now;
}

/* Cancels a call and frees it, with whatever it still holds. */
static void
drop_call(ZerobusSender *sender, ZbCall *call)
{
	dlist_mutable_iter iter;

	if (call->target->call[call->lane][call->shard] == call)
		call->target->call[call->lane][call->shard] = NULL;
	if (call->grpc)
		zerobus_grpc_close(call->grpc);
	if (call->open)
		release_batch(sender, call->open, false);
	dlist_foreach_modify(iter, &call->inflight)
	{
		ZbBatch    *batch = dlist_container(ZbBatch, node, iter.cur);

		dlist_delete(&batch->node);
		release_batch(sender, batch, false);
	}
	dlist_delete(&call->node);
	if (call->buf.data)
		pfree(call->buf.data);
	if (call->lens)
		pfree(call->lens);
	pfree(call->descriptor);
	pfree(call);
}

/*
 * Cancels every call, releasing their batches (so the ack groups they hold
 * records of stay pending for good), frees the tokens, closes the Zerobus
 * connection and frees the sender.
 */
void
zerobus_sender_destroy(ZerobusSender *sender)
{
	while (!dlist_is_empty(&sender->calls))
		drop_call(sender, dlist_head_element(ZbCall, node, &sender->calls));
	while (!dlist_is_empty(&sender->targets))
	{
		ZerobusTarget *target = dlist_head_element(ZerobusTarget, node,
												   &sender->targets);

		zerobus_token_release(&target->token, sender->grpc);
		dlist_delete(&target->node);
	}
	zerobus_grpc_destroy(sender->grpc);
	MemoryContextDelete(sender->cxt);
}

/*
 * Stops sending to target for the rest of the session: cancels its calls,
 * whose unacked batches leave their ack groups pending for good, and makes
 * zerobus_sender_add() refuse its records.  With drain, the retired calls
 * Zerobus accepted (those of the target's earlier descriptors, even one
 * being reopened) go on until everything they sent is acked, and their ack
 * groups complete: for a target that rejected a new descriptor and is to
 * be altered, whose records encoded with the old one must be durable
 * before the ALTER TABLE, after which it would refuse them.  The caller
 * must stop confirming before the first record refused or dropped.
 */
void
zerobus_sender_pause(ZerobusSender *sender, ZerobusTarget *target, bool drain)
{
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &sender->calls)
	{
		ZbCall	   *call = dlist_container(ZbCall, node, iter.cur);

		if (call->target == target &&
			(!drain || !call->retiring || !call->accepted))
			drop_call(sender, call);
	}
	/* the calls left draining may need a token still */
	if (!has_calls(sender, target))
		zerobus_token_cancel(&target->token, sender->grpc);
	target->paused = true;
}

/*
 * Whether a call of target, current or retired, was opened with the given
 * descriptor: its outcomes (ACCEPTED, REJECTED) may still come.
 */
bool
zerobus_sender_uses_descriptor(ZerobusSender *sender, ZerobusTarget *target,
							   const char *descriptor, int descriptor_len)
{
	dlist_iter	iter;

	dlist_foreach(iter, &sender->calls)
	{
		ZbCall	   *call = dlist_container(ZbCall, node, iter.cur);

		if (call->target == target &&
			call->descriptor_len == descriptor_len &&
			memcmp(call->descriptor, descriptor, descriptor_len) == 0)
			return true;
	}
	return false;
}

/* Whether target was paused (zerobus_sender_pause) */
bool
zerobus_sender_paused(ZerobusTarget *target)
{
	return target->paused;
}

/*
 * Stops routing records to a call: its open batch is sent, and it is
 * closed (close_call) once everything it sent is acked.
 */
static void
retire_call(ZerobusSender *sender, ZbCall *call)
{
	if (call->open)
		flush_batch(sender, call);
	call->retiring = true;
	if (call->target->call[call->lane][call->shard] == call)
		call->target->call[call->lane][call->shard] = NULL;
	if (dlist_is_empty(&call->inflight))
		close_call(sender, call);
}

/* Retires target's current calls of lane from shard from on. */
static void
retire_shards(ZerobusSender *sender, ZerobusTarget *target, ZerobusLane lane,
			  int from)
{
	for (int shard = from; shard < ZB_MAX_STREAMS_PER_TABLE; shard++)
		if (target->call[lane][shard] != NULL)
			retire_call(sender, target->call[lane][shard]);
}

/*
 * The call a record with the given descriptor and key hash goes to: the
 * current call of target's lane for the hash's shard, opened when there
 * is none.  All current calls of a lane share one descriptor; a record
 * with another retires them.  *epoch caches the lane's descriptor epoch
 * the caller's descriptor is known to match, so that the descriptor is
 * compared only once per change of it; 0 means none.  NULL when the target
 * was paused meanwhile.
 */
static ZbCall *
call_for(ZerobusSender *sender, ZerobusTarget *target, ZerobusLane lane,
		 const char *descriptor, int descriptor_len, uint64 *epoch,
		 uint32 key_hash)
{
	int			nshards = target->rate.nshards;
	int			shard = nshards > 1 ? key_hash % nshards : 0;
	ZbCall	   *call;

	if (*epoch == 0 || *epoch != target->epoch[lane])
	{
		if (target->descriptor[lane] == NULL ||
			target->descriptor_len[lane] != descriptor_len ||
			memcmp(target->descriptor[lane], descriptor, descriptor_len) != 0)
		{
			retire_shards(sender, target, lane, 0);
			if (target->descriptor[lane] != NULL)
				pfree(target->descriptor[lane]);
			target->descriptor[lane] = MemoryContextAlloc(sender->cxt,
														  descriptor_len);
			memcpy(target->descriptor[lane], descriptor, descriptor_len);
			target->descriptor_len[lane] = descriptor_len;
			target->epoch[lane] = ++sender->next_epoch;
		}
		*epoch = target->epoch[lane];
	}
	call = target->call[lane][shard];
	if (call == NULL)
		call = open_call(sender, target, lane, shard, descriptor,
						 descriptor_len);
	return call;
}

/* Queues a flushed batch on its call's gRPC call. */
static void
send_batch(ZerobusSender *sender, ZbCall *call, ZbBatch *batch)
{
	const char **records = palloc(sizeof(char *) * batch->nrecords);
	const char *p = batch->held;

	for (int i = 0; i < batch->nrecords; i++)
	{
		records[i] = p;
		p += batch->held_lens[i];
	}
	zerobus_grpc_send(call->grpc, batch->offset, batch->nrecords, records,
					  batch->held_lens);
	pfree(records);
	batch->on_wire = true;
	sender->unsent = true;
}

/*
 * Sends call's open batch with the next offset_id, or holds it until the
 * call is ready.  The batch keeps a copy of its records until acked, so
 * that a reopened call can send them again.
 */
static void
flush_batch(ZerobusSender *sender, ZbCall *call)
{
	ZbBatch    *batch = call->open;

	Assert(batch != NULL && !call->retiring);

	batch->offset = call->next_offset++;
	batch->held = MemoryContextAlloc(sender->batch_cxt, call->buf.len);
	memcpy(batch->held, call->buf.data, call->buf.len);
	batch->held_lens = MemoryContextAlloc(sender->batch_cxt,
										  sizeof(size_t) * batch->nrecords);
	memcpy(batch->held_lens, call->lens, sizeof(size_t) * batch->nrecords);
	if (call_ready(call))
		send_batch(sender, call, batch);

	if (dlist_is_empty(&call->inflight))
		call->last_heard = sender->now;
	dlist_push_tail(&call->inflight, &batch->node);
	call->ninflight++;
	call->inflight_records += batch->nrecords;
	call->open = NULL;
	resetStringInfo(&call->buf);

	SpinLockAcquire(&sender->shared->mutex);
	sender->shared->records_sent += batch->nrecords;
	sender->shared->bytes_sent += batch->bytes;
	SpinLockRelease(&sender->shared->mutex);
}

/*
 * Sends the open batch of every call with fewer than ZB_FLUSH_MAX_INFLIGHT
 * batches unacked; the worker calls this while the replication stream is
 * drained (see the file header).
 */
void
zerobus_sender_flush_all(ZerobusSender *sender)
{
	dlist_iter	iter;

	dlist_foreach(iter, &sender->calls)
	{
		ZbCall	   *call = dlist_container(ZbCall, node, iter.cur);

		if (call->open && call->ninflight < ZB_FLUSH_MAX_INFLIGHT)
			flush_batch(sender, call);
	}
}

/*
 * Appends one record, encoded with descriptor, to the current call of
 * target's lane for its key_hash (see call_for for epoch; the hash matters
 * only while zerobus_sender_shards() is above 1), and counts its batch as
 * pending in group until the batch is acked.  source names the source
 * table in the error about a record too large.  The record is copied;
 * group must outlive the batch.  Returns false, taking nothing, when the
 * target is paused.
 */
bool
zerobus_sender_add(ZerobusSender *sender, ZerobusTarget *target,
				   ZerobusLane lane, const char *descriptor, int descriptor_len,
				   uint64 *epoch, uint32 key_hash, const char *record,
				   size_t len, ZerobusAckGroup *group, const char *source)
{
	ZerobusStreamConfig *config = sender->config;
	ZbCall	   *call;
	ZbBatch    *batch;

	if (target->paused)
		return false;
	if (len > ZB_MAX_RECORD)
	{
		sender->failed_for_good = true;
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("a record of table %s is %zu bytes, more than Zerobus accepts in one message (%d bytes)",
						source, len, ZB_MAX_RECORD)));
	}

	call = call_for(sender, target, lane, descriptor, descriptor_len, epoch,
					key_hash);
	if (call == NULL)
		return false;
	zerobus_shards_count(&target->rate, sender->now, len);
	batch = call->open;
	if (batch && batch->bytes + len > (size_t) config->batch_max_bytes)
	{
		flush_batch(sender, call);
		batch = NULL;
	}
	if (batch == NULL)
	{
		batch = MemoryContextAllocZero(sender->batch_cxt, sizeof(ZbBatch));
		call->open = batch;
		call->open_since = sender->now;
		if (call->buf.data == NULL)
		{
			MemoryContext oldcxt = MemoryContextSwitchTo(sender->cxt);

			initStringInfo(&call->buf);
			MemoryContextSwitchTo(oldcxt);
		}
		if (call->lens == NULL)
		{
			call->maxlens = config->batch_max_records;
			call->lens = MemoryContextAlloc(sender->cxt,
											sizeof(size_t) * call->maxlens);
		}
	}

	if (batch->nrecords >= call->maxlens)
	{
		call->maxlens *= 2;
		call->lens = repalloc(call->lens, sizeof(size_t) * call->maxlens);
	}
	appendBinaryStringInfo(&call->buf, record, len);
	call->lens[batch->nrecords++] = len;
	batch->bytes += len;
	sender->inflight_bytes += len;

	if (batch->ngroups == 0 || batch->groups[batch->ngroups - 1] != group)
	{
		if (batch->ngroups == batch->maxgroups)
		{
			batch->maxgroups = batch->maxgroups ? batch->maxgroups * 2 : 4;
			if (batch->groups)
				batch->groups = repalloc(batch->groups,
										 sizeof(ZerobusAckGroup *) * batch->maxgroups);
			else
				batch->groups = MemoryContextAlloc(sender->batch_cxt,
												   sizeof(ZerobusAckGroup *) * batch->maxgroups);
		}
		batch->groups[batch->ngroups++] = group;
		group->pending++;
	}

	if (batch->nrecords >= config->batch_max_records)
		flush_batch(sender, call);
	return true;
}

/*
 * How many calls per lane target's records are spread over, by a hash of
 * their replica identity key (see adjust_shards).
 */
int
zerobus_sender_shards(ZerobusTarget *target)
{
	return target->rate.nshards;
}

/*
 * Tells the sender that about records records of target are coming as fast
 * as they can be read (a snapshot), so that it spreads them over the
 * streams they need from the start (zerobus_shards_expect).
 */
void
zerobus_sender_expect(ZerobusSender *sender, ZerobusTarget *target,
					  double records)
{
	zerobus_shards_expect(&target->rate, sender->now, records, target->name);
}

/*
 * The most records one current call of target has unacked: how far its
 * acks lag (see zerobus_shards_choose).
 */
static int64
most_unacked(ZerobusTarget *target)
{
	int64		most = 0;

	for (int lane = 0; lane < ZB_NLANES; lane++)
		for (int shard = 0; shard < target->rate.nshards; shard++)
		{
			ZbCall	   *call = target->call[lane][shard];

			if (call != NULL)
				most = Max(most, call->inflight_records);
		}
	return most;
}

/*
 * Spreads target's records over the number of streams its rate asks for
 * (shards.c) once its measuring window is over; the calls of the shards
 * given up are retired.
 */
static void
adjust_shards(ZerobusSender *sender, ZerobusTarget *target, long *timeout)
{
	int			n = target->rate.nshards;

	if (zerobus_shards_due(&target->rate, sender->now, timeout) &&
		zerobus_shards_choose(&target->rate, sender->now,
							  most_unacked(target), target->name,
							  timeout) != n)
	{
		for (int lane = 0; lane < ZB_NLANES; lane++)
			retire_shards(sender, target, lane, target->rate.nshards);
	}
}

/* ----------------------------------------------------------------
 * Zerobus events
 * ----------------------------------------------------------------
 */

/*
 * Whether a call ending with this status means that its target table
 * cannot take its records (missing, not granted, records or descriptor
 * refused), which pauses that table alone.
 */
static bool
status_pauses_table(int status)
{
	return status == ZB_GRPC_INVALID_ARGUMENT ||
		status == ZB_GRPC_NOT_FOUND ||
		status == ZB_GRPC_PERMISSION_DENIED;
}

/* Releases a call's batches acked by "durable up to offset". */
static void
handle_ack(ZerobusSender *sender, ZbCall *call, int64 offset)
{
	while (!dlist_is_empty(&call->inflight))
	{
		ZbBatch    *batch = dlist_head_element(ZbBatch, node, &call->inflight);

		if (batch->offset > offset)
			break;
		dlist_delete(&batch->node);
		call->ninflight--;
		call->inflight_records -= batch->nrecords;
		release_batch(sender, batch, true);
		call->reopens = 0;
	}
	sender->got_ack = true;
	SpinLockAcquire(&sender->shared->mutex);
	sender->shared->last_ack_time = sender->now;
	SpinLockRelease(&sender->shared->mutex);

	if (call->retiring && !call->closing && dlist_is_empty(&call->inflight))
		close_call(sender, call);
}

/*
 * What a call's end says, for messages: "connection failed", or the
 * status the server ended it with.  palloc'd.
 */
static char *
describe_end(ZbCall *call, int status, const char *message)
{
	if (status == ZB_GRPC_TRANSPORT_ERROR)
		return psprintf("Zerobus connection failed for table %s: %s",
						call->target->name, message);
	if (status == ZB_GRPC_PROTOCOL_ERROR)
		return psprintf("Zerobus broke the protocol on the stream for table %s: %s",
						call->target->name, message);
	return psprintf("Zerobus ended the stream for table %s with status %d (%s)%s: %s",
					call->target->name, status, zerobus_grpc_status_name(status),
					call->created ? " before acking every batch" : "",
					message);
}

/*
 * Replaces the gRPC call of a call that ended before it acked everything,
 * as the official SDKs recover a stream: a new call with the same
 * descriptor takes the batches in flight again, in order and with offsets
 * from 0, once Zerobus has created it; the session and the other calls go
 * on, and the ack groups of those batches stay pending until the new call
 * acks them.  The first reopen is at once (a server's stream timeout is
 * routine), the next ones wait ZB_REOPEN_BACKOFF_MS, doubling.  Returns
 * false, changing nothing, when the call was reopened ZB_MAX_REOPENS times
 * without an ack in between: the caller then fails the session.
 */
static bool
reopen_call(ZerobusSender *sender, ZbCall *call, const char *why)
{
	int64		offset = 0;
	dlist_iter	iter;

	if (call->reopens >= ZB_MAX_REOPENS)
		return false;
	if (call->grpc != NULL)
		zerobus_grpc_close(call->grpc);
	call->grpc = NULL;
	call->created = false;
	dlist_foreach(iter, &call->inflight)
	{
		ZbBatch    *batch = dlist_container(ZbBatch, node, iter.cur);

		batch->offset = offset++;
		batch->on_wire = false;
	}
	call->next_offset = offset;
	call->reopen_at = call->reopens == 0 ? sender->now :
		TimestampTzPlusMilliseconds(sender->now,
									ZB_REOPEN_BACKOFF_MS << (call->reopens - 1));
	call->reopens++;
	call->last_heard = sender->now;

	ereport(call->reopens > 1 ? LOG : DEBUG1,
			(errmsg("%s; reopening the stream (attempt %d)", why, call->reopens)));
	zerobus_stream_note_error(sender->shared, why);
	SpinLockAcquire(&sender->shared->mutex);
	sender->shared->stream_reopens++;
	SpinLockRelease(&sender->shared->mutex);
	return true;
}

/*
 * A call ended.  One that owed nothing is simply over (it is opened again
 * when records come).  Otherwise: a descriptor rejected at creation goes
 * to the worker; a token refused is fetched anew and the call reopened
 * (with backoff, ZB_MAX_REOPENS times at most); a failure of the table
 * alone pauses it; a permanent failure fails the stream; anything else
 * reopens the call alone (reopen_call), and fails the session when that
 * was tried too often.
 */
static void
handle_ended(ZerobusSender *sender, ZbCall *call, int status,
			 const char *server_message)
{
	ZerobusTarget *target = call->target;
	const char *message;
	char	   *why;

	if (status != ZB_GRPC_PROTOCOL_ERROR && call->open == NULL &&
		dlist_is_empty(&call->inflight))
	{
		drop_call(sender, call);
		return;
	}
	message = server_words(sender, target, server_message);

	/* a descriptor rejected at creation: the worker explains it */
	if (status == ZB_GRPC_INVALID_ARGUMENT && !call->created)
	{
		queue_outcome(sender, ZB_OUTCOME_REJECTED, target,
					  call->descriptor, call->descriptor_len,
					  psprintf("%d (%s)", status, zerobus_grpc_status_name(status)),
					  message);
		return;
	}
	why = describe_end(call, status, message);

	/*
	 * A token may have expired or been revoked early, even one fetched a
	 * moment ago (tokens are revoked when rotated).  So the token is fetched
	 * again and the call reopened with it, as the SDKs retry, and with
	 * reopen_call's backoff: a refusal is final only when every reopen met
	 * one, and then pauses the table (PERMISSION_DENIED) or fails the stream
	 * (UNAUTHENTICATED, the client itself is refused).
	 */
	if ((status == ZB_GRPC_UNAUTHENTICATED ||
		 status == ZB_GRPC_PERMISSION_DENIED) &&
		reopen_call(sender, call, why))
	{
		zerobus_token_forget(&target->token);
		start_when_due(sender, call);
		return;
	}
	if (status_pauses_table(status))
	{
		pause_for(sender, target, why);
		return;
	}
	if (zerobus_grpc_status_permanent(status))
	{
		sender->failed_for_good = true;
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("%s", why)));
	}
	if (status != ZB_GRPC_PROTOCOL_ERROR && reopen_call(sender, call, why))
	{
		start_when_due(sender, call);
		return;
	}
	ereport(ERROR,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("%s", why),
			 call->reopens > 0 ?
			 errdetail("The stream was reopened %d times without an ack.",
					   call->reopens) : 0));
}

/*
 * Does the pending Zerobus I/O and handles what came of it.  Returns the
 * milliseconds after which it must run again (-1: no timer).
 */
long
zerobus_sender_process(ZerobusSender *sender)
{
	long		timeout;
	ZerobusGrpcEvent ev;

	sender->unsent = false;
	timeout = zerobus_grpc_perform(sender->grpc);

	while (zerobus_grpc_next_event(sender->grpc, &ev))
	{
		ZbCall	   *call;

		if (ev.kind == ZB_GRPC_EV_TRANSFER_DONE && ev.user_data == NULL)
		{
			queue_transfer_done(sender, ev.transfer, ev.result);
			continue;
		}
		if (ev.kind == ZB_GRPC_EV_TRANSFER_DONE)
		{
			token_done(sender, (ZerobusTarget *) ev.user_data, ev.result);
			continue;
		}
		call = (ZbCall *) ev.user_data;
		call->last_heard = sender->now;
		switch (ev.kind)
		{
			case ZB_GRPC_EV_CREATED:
				elog(DEBUG1, "zerobus stream %s opened for table %s",
					 ev.stream_id, call->target->name);
				call->created = true;
				queue_outcome(sender, ZB_OUTCOME_ACCEPTED, call->target,
							  call->descriptor, call->descriptor_len,
							  NULL, NULL);
				send_waiting(sender, call);
				if (!call->accepted)
				{
					call->accepted = true;
					start_successors(sender, call);
				}
				break;
			case ZB_GRPC_EV_ACK:
				handle_ack(sender, call, ev.offset);
				break;
			case ZB_GRPC_EV_CLOSE_SIGNAL:
				elog(DEBUG1, "Zerobus announced the close of the stream for table %s in " INT64_FORMAT " ms",
					 call->target->name, ev.close_after_ms);
				if (!call->retiring)
					retire_call(sender, call);
				break;
			case ZB_GRPC_EV_ENDED:
				handle_ended(sender, call, ev.status, ev.message);
				break;
			case ZB_GRPC_EV_TRANSFER_DONE:
				break;			/* handled above */
		}
	}
	return timeout;
}

/*
 * Timers: sends batches older than batch_max_delay_ms, fails the session
 * when a started call with batches in flight has been silent for
 * ack_timeout_ms, drops a half-closed call the server has not ended in
 * that time, starts the calls whose reopen backoff is over, and requests a
 * new token for the targets whose token is due for refresh (the calls
 * started with the old one retire when it comes, see token_done).  Lowers
 * *timeout to the time until the next timer is due.
 */
void
zerobus_sender_check_timers(ZerobusSender *sender, long *timeout)
{
	ZerobusStreamConfig *config = sender->config;
	dlist_mutable_iter iter;
	dlist_iter	titer;

	dlist_foreach_modify(iter, &sender->calls)
	{
		ZbCall	   *call = dlist_container(ZbCall, node, iter.cur);
		TimestampTz due;

		if (call->closing)
		{
			due = TimestampTzPlusMilliseconds(call->last_heard,
											  config->ack_timeout_ms);
			if (sender->now >= due)
				drop_call(sender, call);
			else
				zerobus_timeout_until(timeout, sender->now, due);
			continue;
		}
		if (call->grpc == NULL && call->reopens > 0 &&
			!start_when_due(sender, call))
			zerobus_timeout_until(timeout, sender->now, call->reopen_at);
		if (call->grpc != NULL && !dlist_is_empty(&call->inflight))
		{
			due = TimestampTzPlusMilliseconds(call->last_heard,
											  config->ack_timeout_ms);
			if (sender->now >= due)
				ereport(ERROR,
						(errcode(ERRCODE_CONNECTION_FAILURE),
						 errmsg("no ack from Zerobus for table %s in %d ms",
								call->target->name, config->ack_timeout_ms)));
			zerobus_timeout_until(timeout, sender->now, due);
		}
		if (call->retiring || call->open == NULL)
			continue;
		due = TimestampTzPlusMilliseconds(call->open_since,
										  config->batch_max_delay_ms);
		if (sender->now >= due)
			flush_batch(sender, call);
		else
			zerobus_timeout_until(timeout, sender->now, due);
	}

	dlist_foreach(titer, &sender->targets)
	{
		ZerobusTarget *target = dlist_container(ZerobusTarget, node, titer.cur);
		bool		in_use = false;

		if (!target->paused)
		{
			adjust_shards(sender, target, timeout);
			for (int lane = 0; lane < ZB_NLANES; lane++)
				for (int shard = 0; shard < target->rate.nshards; shard++)
					in_use |= target->call[lane][shard] != NULL;
		}
		else if (!has_calls(sender, target))
			continue;
		/* a failed request is retried whoever waits; a token in use renewed */
		if (zerobus_token_due(&target->token, sender->now, in_use, timeout))
			request_token(sender, target);
	}
}

/* ----------------------------------------------------------------
 * State for the event loop
 * ----------------------------------------------------------------
 */

/*
 * Whether reading more records must wait: too many bytes unacked, too
 * many not even handed to the network yet, or a call with
 * ZB_STREAM_BACKLOG_S seconds' worth of its quota
 * (zerobus.stream_max_records_per_second) unacked.
 * The last keeps a busy table from piling on one stream a backlog that
 * the service lets through at its quota only: the table's rate then shows
 * that it needs more streams (adjust_shards), and the records read after
 * go to them.
 */
bool
zerobus_sender_backpressured(ZerobusSender *sender)
{
	dlist_iter	iter;
	size_t		queued = 0;

	if (sender->inflight_bytes >= (size_t) sender->config->max_inflight_bytes)
		return true;
	dlist_foreach(iter, &sender->calls)
	{
		ZbCall	   *call = dlist_container(ZbCall, node, iter.cur);

		if (call->inflight_records >=
			(int64) ZB_STREAM_BACKLOG_S * zerobus_stream_max_records_per_second)
			return true;
		if (call->grpc != NULL)
			queued += zerobus_grpc_queued_bytes(call->grpc);
	}
	return queued >= ZB_MAX_QUEUED_BYTES;
}

/* Record bytes in batches not acked yet (open or sent). */
size_t
zerobus_sender_inflight_bytes(ZerobusSender *sender)
{
	return sender->inflight_bytes;
}

/*
 * The sockets to wait on, with WL_SOCKET_* events, at most max of them;
 * returns how many.  They may change after each zerobus_sender_process();
 * *generation changes when one was opened or closed (zerobus_grpc_sockets).
 */
int
zerobus_sender_sockets(ZerobusSender *sender, pgsocket *socks, int *events,
					   int max, uint64 *generation)
{
	return zerobus_grpc_sockets(sender->grpc, socks, events, max, generation);
}

/* Whether any ack arrived since the sender was created. */
bool
zerobus_sender_got_ack(ZerobusSender *sender)
{
	return sender->got_ack;
}

/*
 * Whether batches were queued since the last zerobus_sender_process(), so
 * that it must run again without waiting.
 */
bool
zerobus_sender_unsent(ZerobusSender *sender)
{
	return sender->unsent;
}
