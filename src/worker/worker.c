/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The stream worker: consumes a stream's logical replication slot and
 *	  pushes every change record to Zerobus, confirming to the slot only
 *	  what Zerobus has made durable.
 *
 * Consuming the slot.  The worker opens a loopback replication connection
 * with PostgreSQL's own libpqwalreceiver, as the subscription apply worker
 * does, and runs START_REPLICATION SLOT ... LOGICAL 0/0 (proto_version '1',
 * publication_names '<the stream's publication>'): decoding then runs in a
 * walsender, in parallel with this process's network I/O, and
 * pg_stat_replication shows the worker like any subscriber (application
 * name "zerobus:<stream name>").  Starting at 0/0 means "from the slot's
 * confirmed_flush_lsn".  Without a conninfo in the stream's configuration
 * the worker connects to host=<first unix_socket_directories entry or
 * localhost> port=<port> dbname=<this database> user=<bootstrap superuser>;
 * libpqwalreceiver adds replication=database.  pg_hba.conf must let that
 * user make a local replication connection (peer or trust on the socket).
 *
 * Each CopyData of the walsender is an XLogData ('w') carrying one
 * zerobus.output.Message (proto/zerobus_output.proto), or a keepalive ('k').
 * Change messages, the hot path, are parsed by hand; the rarer ones with
 * the protobuf-c code generated from the proto.
 *
 * Sending.  Records go to Zerobus through the sender (sender.c, whose
 * header describes batching, acks and backpressure).  The sender never
 * calls back: what happens to a target table (a descriptor accepted or
 * rejected, a target paused) comes back as outcomes that the worker takes
 * after each call into the sender, before the confirmable position moves,
 * and hands to reactions.c.  The worker sends the
 * open batches as soon as the replication stream has nothing more to read,
 * so a lone change is not delayed, and while the sender is backpressured
 * it stops reading the replication connection (and stops watching its
 * socket): the walsender then blocks on a full socket, and status updates
 * keep flowing.
 *
 * Confirming.  Transactions are kept in a FIFO in commit order.  Each is
 * the ack group of its records: it knows how many unacked batches (sent or
 * still open) hold them.  The confirmable LSN is the end LSN of the longest
 * prefix of the FIFO whose transactions are committed and fully acked;
 * with an empty FIFO and no transaction being received it is the last WAL
 * position the walsender reported, so idle or filtered-out WAL is
 * confirmed too.  That position, and never a later one, is sent as flush
 * (and apply) position in the standby status updates, which the walsender
 * turns into the slot's confirmed_flush_lsn.
 *
 * Recovery.  A call the server ends, or whose connection drops, is
 * reopened alone, and a token request that failed is made again, by the
 * sender, a few times with backoff (sender.c, "Failures").  Every other
 * transient failure (no message for ack_timeout_ms while batches are in
 * flight, a protocol violation, those retries used up, the replication
 * connection lost, any ERROR raised while streaming) resets the session:
 * all calls are dropped, the replication connection is closed,
 * the state becomes RETRYING, and after a backoff (1 s doubling to 30 s,
 * back to 1 s once an ack arrives) the worker reconnects and starts
 * replication again.  The walsender then resends everything after the
 * slot's confirmed_flush_lsn, i.e. everything not known durable: nothing is
 * lost, records may be sent twice (at-least-once; (_commit_lsn, _seq)
 * identifies them).  Permanent failures of one target table (a descriptor
 * rejected, a call ending with INVALID_ARGUMENT, NOT_FOUND or
 * PERMISSION_DENIED, its token refused with HTTP 403) pause that table alone
 * (pause_target): its calls are dropped, its records are no
 * longer sent, and the confirmable position stops for good in this session
 * before its first unacked record (freeze_confirm), while the other tables
 * flow on; zerobus.stream_tables keeps the reason, so later sessions skip
 * its records from the first one, until resume_stream() clears it and
 * restarts the worker, which replays the slot from there.  Other permanent
 * failures (OUT_OF_RANGE, UNIMPLEMENTED, UNAUTHENTICATED for a token
 * fetched for that very call, another OAuth denial, a record too large
 * for Zerobus, and the same replication error ending ZB_REPEATED_FAILURES
 * sessions in a row with nothing acked: see failure_repeats) mark the
 * stream failed with the reason and the worker exits with status 0, so the
 * launcher leaves it alone until resume_stream(); the WAL stays in the slot.
 *
 * Schema changes.  When Zerobus accepts a call's descriptor, the worker
 * stores the relation's columns as the target's accepted columns; when it
 * rejects one at creation, the target pauses and the reason names the
 * columns that changed since and the ALTER TABLE statements that fix the
 * target (reactions.c, delta_schema.c).
 * Under schema_policy drop_missing_columns, columns the target lacks are
 * instead left out of the descriptor and the records, from a replay of the
 * slot on.  Under schema_policy evolve, the target is altered through the
 * stream's SQL warehouse while its records wait (evolve.c), once those of
 * the descriptor it accepted are acked and the slot confirmed them
 * (zerobus_worker_confirm_settled), and a replay of the slot sends them
 * with the new descriptor.  A slot that lost WAL it needed (wal_status
 * 'lost') or vanished fails the stream before replication starts, naming
 * recover_stream().
 *
 * Initial snapshots (initial_snapshot.c) share the loop: between reads of the
 * slot, while less than half of max_inflight_bytes is unacked, the worker
 * reads one chunk of a table to snapshot and hands its records to the
 * sender on the snapshot lane; chunks hold no transaction of the FIFO, so
 * the slot keeps being confirmed while a snapshot runs.
 *
 * Truncate is not propagated: Delta's change data feed has no such change
 * type.  Each one is logged as a WARNING naming the tables.
 *
 * src/worker/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "common/hashfn.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "lib/ilist.h"
#include "miscadmin.h"
#include "nodes/bitmapset.h"
#include "pgstat.h"
#include "port/pg_bswap.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "postmaster/postmaster.h"
#include "replication/slot.h"
#include "replication/walreceiver.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/varlena.h"

#include "delta_schema.h"
#include "initial_snapshot.h"
#include "store.h"
#include "stream.h"
#include "worker.h"
#include "zerobus.h"
#include "zerobus_output.pb-c.h"

/* Backoff between sessions after a transient failure */
#define ZB_BACKOFF_MIN_MS		1000
#define ZB_BACKOFF_MAX_MS		30000

/*
 * Sessions that may end in a row on the same replication error, with
 * nothing acked, before the stream is paused (see failure_repeats)
 */
#define ZB_REPEATED_FAILURES	5

/* Replication messages handled per loop iteration before serving the rest */
#define ZB_RECEIVE_BURST		2000

/* Least time between two status updates that only report moved positions */
#define ZB_FEEDBACK_MIN_MS		100

/* Most sockets libcurl can ask us to watch */
#define ZB_MAX_SOCKETS			16

/* A transaction received from the walsender, in commit order. */
typedef struct ZbTxn
{
	dlist_node	node;			/* in ZbSession.txns */
	XLogRecPtr	end_lsn;		/* end of its commit record, once seen */
	TimestampTz commit_time;
	ZerobusAckGroup acks;		/* batches holding its records */
	bool		committed;		/* its Commit message was received */
	bool		blocked;		/* never confirmable (see freeze_confirm) */
} ZbTxn;

/*
 * Everything a session (one replication connection, one Zerobus connection)
 * owns, with ws.sender and ws.relations.  Allocations live in cxt, which
 * is reset when the session ends; the sender and rcv are released
 * explicitly.
 */
typedef struct ZbSession
{
	MemoryContext cxt;
	MemoryContext txn_cxt;		/* ZbTxn chunks */
	WalReceiverConn *rcv;
	pgsocket	rcv_sock;
	ZerobusSnapshot *snapshot;	/* initial snapshots, between slot reads */
	dlist_head	txns;			/* ZbTxn in commit order */
	ZbTxn	   *cur_txn;		/* being received (between Begin and Commit) */
	bool		frozen;			/* a target is paused: confirm no further */
	ZbTxn		unlisted;		/* cur_txn once frozen, in no FIFO */
	XLogRecPtr	received_lsn;	/* highest WAL position the walsender sent */
	XLogRecPtr	confirm_lsn;	/* confirmable position */
	XLogRecPtr	sent_write;		/* positions of the last status update */
	XLogRecPtr	sent_flush;
	TimestampTz last_feedback;
	bool		reply_requested;
	bool		drained;		/* walrcv_receive had nothing more */

	/* the wait set, kept while it watches the same sockets (wait_for_work) */
	WaitEventSet *wes;
	uint64		wes_generation;
	pgsocket	wes_rcv_sock;	/* PGINVALID_SOCKET when not watched */
	int			wes_nsocks;
	pgsocket	wes_socks[ZB_MAX_SOCKETS];
	int			wes_events[ZB_MAX_SOCKETS];
} ZbSession;

static ZerobusWorkerState ws;	/* what reactions.c works on */
static StringInfoData stripped;	/* a record without the dropped columns */
static ZbSession *zb;
static char *repeated_error;	/* failure_repeats(): the last one, or NULL */
static int	repeated_count;
static TimestampTz zb_now;		/* taken once per loop iteration */

pg_noreturn static void stop_stream(const char *fmt,...) pg_attribute_printf(1, 2);
static void pause_target(ZerobusTarget *target, const char *target_name,
						 const char *reason);

/*
 * Stops the stream for good: records the reason in zerobus.streams (so the
 * launcher does not restart the worker until resume_stream) and in shared
 * memory, and exits with status 0.  The slot keeps the WAL.  For permanent
 * failures only; transient ones raise an ERROR, which resets the session.
 */
static void
stop_stream(const char *fmt,...)
{
	char		reason[2048];
	va_list		args;

	va_start(args, fmt);
	vsnprintf(reason, sizeof(reason), fmt, args);
	va_end(args);

	zerobus_stream_set_failed(ws.config->id, reason);
	proc_exit(0);
}

/*
 * Reads the stream's configuration into ws.cxt.  With reload, only the
 * tuning options are taken over (the launcher restarts the worker when
 * anything else changes), and the fresh copy is thrown away.
 */
static void
load_config(bool reload)
{
	ZerobusStreamConfig *fresh;
	MemoryContext cxt;
	ZerobusXact xact;

	cxt = reload ? AllocSetContextCreate(ws.cxt, "zerobus config",
										 ALLOCSET_SMALL_SIZES) : ws.cxt;
	zerobus_xact_begin(&xact, false);
	MemoryContextSwitchTo(cxt);
	fresh = zerobus_stream_load(ws.shared->stream_id, true);
	zerobus_xact_end(&xact);

	if (fresh == NULL)
		ereport(FATAL,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("zerobus stream %d does not exist", ws.shared->stream_id)));

	if (!reload)
	{
		ws.config = fresh;
		return;
	}
	zerobus_stream_retune(ws.config, fresh);
	MemoryContextDelete(cxt);
}

/* ----------------------------------------------------------------
 * Transactions and the confirmable position
 * ----------------------------------------------------------------
 */

/*
 * Moves the confirmable position over every committed, fully acked
 * transaction at the head of the FIFO, or to the last WAL position received
 * when nothing is pending at all, and publishes the result.
 */
static void
advance_confirm(void)
{
	TimestampTz acked_time = 0;
	TimestampTz oldest = 0;

	while (!dlist_is_empty(&zb->txns))
	{
		ZbTxn	   *txn = dlist_head_element(ZbTxn, node, &zb->txns);

		if (!txn->committed || txn->acks.pending > 0 || txn->blocked)
		{
			oldest = txn->commit_time;
			break;
		}
		zb->confirm_lsn = txn->end_lsn;
		acked_time = txn->commit_time;
		dlist_delete(&txn->node);
		pfree(txn);
	}

	if (dlist_is_empty(&zb->txns) && zb->cur_txn == NULL &&
		zb->received_lsn > zb->confirm_lsn)
		zb->confirm_lsn = zb->received_lsn;

	SpinLockAcquire(&ws.shared->mutex);
	if (zb->confirm_lsn > ws.shared->acked_lsn)
		ws.shared->acked_lsn = zb->confirm_lsn;
	if (acked_time != 0)
		ws.shared->acked_commit_time = acked_time;
	ws.shared->oldest_unacked_commit_time = oldest;
	SpinLockRelease(&ws.shared->mutex);
}

/*
 * A target was paused: records of it were dropped unacked (their
 * transactions stay pending) or will be refused from now on.  Stops the
 * confirmable position for the rest of the session before the transaction
 * being received, or before the next one: that one is marked blocked, and
 * the transactions after it get no FIFO entry at all, so memory stays
 * bounded however long the pause lasts.  The blocked entry also keeps the
 * FIFO from ever emptying, which stops the confirmation of idle WAL.  The
 * records of the other targets are still sent and acked; the next session
 * replays them from the slot (at-least-once).
 */
static void
freeze_confirm(void)
{
	ZbTxn	   *txn = zb->cur_txn;

	if (zb->frozen)
		return;
	zb->frozen = true;
	if (txn == NULL)
	{
		txn = MemoryContextAllocZero(zb->txn_cxt, sizeof(ZbTxn));
		txn->commit_time = zb_now;
		dlist_push_tail(&zb->txns, &txn->node);
	}
	txn->blocked = true;
}

/* The slot's confirmed_flush_lsn, as the walsender last set it. */
static XLogRecPtr
slot_confirmed_flush(void)
{
	ReplicationSlot *slot;
	XLogRecPtr	lsn = InvalidXLogRecPtr;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	slot = SearchNamedReplicationSlot(ws.config->slot_name, false);
	if (slot != NULL)
	{
		SpinLockAcquire(&slot->mutex);
		lsn = slot->data.confirmed_flush;
		SpinLockRelease(&slot->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);
	return lsn;
}

/*
 * Whether the confirmable position of this frozen session has gone as far
 * as it ever will, and the slot has confirmed it: the head of the FIFO is
 * the freeze's marker or holds records dropped unacked, so every
 * transaction before it was acked.  An evolution waits for this before it
 * alters its target (evolve.c): the target's records encoded with the
 * descriptor it accepted are then durable and behind the slot, and the
 * replay after the ALTER TABLE starts after them, where the altered target
 * refuses nothing.
 */
bool
zerobus_worker_confirm_settled(void)
{
	ZbTxn	   *head;

	if (!zb->frozen || dlist_is_empty(&zb->txns))
		return false;
	head = dlist_head_element(ZbTxn, node, &zb->txns);
	if (!head->blocked && !head->acks.dropped)
		return false;
	return zb->sent_flush == zb->confirm_lsn &&
		slot_confirmed_flush() >= zb->confirm_lsn;
}

/* ----------------------------------------------------------------
 * The replication stream
 * ----------------------------------------------------------------
 */

/* Appends key='value' to a conninfo string, quoting as libpq wants. */
static void
append_conninfo(StringInfo buf, const char *key, const char *value)
{
	const char *p;

	appendStringInfo(buf, "%s%s='", buf->len > 0 ? " " : "", key);
	for (p = value; *p; p++)
	{
		if (*p == '\'' || *p == '\\')
			appendStringInfoChar(buf, '\\');
		appendStringInfoChar(buf, *p);
	}
	appendStringInfoChar(buf, '\'');
}

/*
 * The conninfo of the loopback replication connection when the stream does
 * not give one (see the file header).  Needs a transaction.
 */
static char *
default_conninfo(void)
{
	StringInfoData buf;
	char	   *dirs;
	List	   *dirlist = NIL;
	char		port[16];

	initStringInfo(&buf);
	dirs = pstrdup(Unix_socket_directories ? Unix_socket_directories : "");
	if (SplitDirectoriesString(dirs, ',', &dirlist) && dirlist != NIL)
		append_conninfo(&buf, "host", (char *) linitial(dirlist));
	else
		append_conninfo(&buf, "host", "localhost");
	snprintf(port, sizeof(port), "%d", PostPortNumber);
	append_conninfo(&buf, "port", port);
	append_conninfo(&buf, "dbname", get_database_name(MyDatabaseId));
	append_conninfo(&buf, "user",
					GetUserNameFromId(BOOTSTRAP_SUPERUSERID, false));
	return buf.data;
}

/*
 * Sends a standby status update: write = everything received, flush =
 * apply = the confirmable position.  Sent when the walsender asked, at
 * least every wal_receiver_status_interval seconds, and when a position
 * moved, but then at most every ZB_FEEDBACK_MIN_MS: each update costs the
 * walsender a slot update (and at times a recomputation of the required
 * xmin and LSN under ProcArrayLock), which one update per loop iteration
 * made a visible part of its CPU at full speed.  Lowers *timeout to when a
 * held-back update is due.
 */
static void
send_feedback(long *timeout)
{
	char		msg[1 + 8 * 4 + 1];
	uint64		v;
	bool		due;

	due = wal_receiver_status_interval > 0 &&
		TimestampDifferenceExceeds(zb->last_feedback, zb_now,
								   wal_receiver_status_interval * 1000);
	if (!due && !zb->reply_requested)
	{
		TimestampTz next = TimestampTzPlusMilliseconds(zb->last_feedback,
													   ZB_FEEDBACK_MIN_MS);

		if (zb->confirm_lsn == zb->sent_flush &&
			zb->received_lsn == zb->sent_write)
			return;
		if (zb_now < next)
		{
			zerobus_timeout_until(timeout, zb_now, next);
			return;
		}
	}

	msg[0] = 'r';
	v = pg_hton64(zb->received_lsn);
	memcpy(msg + 1, &v, 8);
	v = pg_hton64(zb->confirm_lsn);
	memcpy(msg + 9, &v, 8);
	memcpy(msg + 17, &v, 8);
	v = pg_hton64((uint64) zb_now);
	memcpy(msg + 25, &v, 8);
	msg[33] = 0;
	walrcv_send(zb->rcv, msg, sizeof(msg));

	zb->sent_write = zb->received_lsn;
	zb->sent_flush = zb->confirm_lsn;
	zb->last_feedback = zb_now;
	zb->reply_requested = false;

	SpinLockAcquire(&ws.shared->mutex);
	ws.shared->confirmed_lsn = zb->confirm_lsn;
	SpinLockRelease(&ws.shared->mutex);
}

pg_noreturn static void
protocol_error(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_PROTOCOL_VIOLATION),
			 errmsg("invalid message from the zerobus output plugin: %s", what)));
}

/*
 * A hash of a record's replica identity key: the bytes of its key
 * columns' fields as encoded (all its source columns' when the relation
 * has no key, as under REPLICA IDENTITY FULL or NOTHING).  A table spread
 * over several Zerobus streams sends each record on the stream of its
 * key's hash, so that the changes of one key stay on one stream, in order
 * (see zerobus_sender_add).  A malformed record hashes as far as it reads:
 * Zerobus will refuse it anyway.
 */
static uint32
key_hash(const ZerobusRelation *rel, const char *record, size_t len)
{
	const char *p = record;
	const char *end = record + len;
	uint32		h = 0;
	ZerobusWireField f;

	while (p < end && zerobus_wire_next(&p, end, &f) == NULL)
	{
		if (f.number >= ZB_META_FIELD_BASE ||
			(rel->key_fields != NULL &&
			 !bms_is_member((int) f.number, rel->key_fields)))
			continue;
		h = hash_combine(h, hash_bytes((const unsigned char *) f.start,
									   (int) (p - f.start)));
	}
	return h;
}

/*
 * A record with arrays sent without their NULL elements (named in
 * _array_nulls): counted, and under array_nulls 'pause' its table pauses
 * instead (the record is not sent; resume_stream() replays it).  Returns
 * whether the record may be sent.
 */
bool
zerobus_worker_array_nulls_sendable(ZerobusTarget *target,
									const char *target_name,
									const char *qualname, uint32 narrays)
{
	if (ws.config->pause_array_nulls)
	{
		if (!zerobus_sender_paused(target))
			pause_target(target, target_name,
						 psprintf("a row of %s has an array with NULL elements and the stream's array_nulls policy is 'pause'; set array_nulls to 'mark' with zerobus.alter_stream() to send such arrays without their NULL elements (named in _array_nulls), then call zerobus.resume_stream()",
								  qualname));
		return false;
	}
	SpinLockAcquire(&ws.shared->mutex);
	ws.shared->array_nulls += narrays;
	SpinLockRelease(&ws.shared->mutex);
	return true;
}

/* A Change message (the hot path: its fields read by zerobus_output_read). */
static void
handle_change(const ZerobusOutputMessage *msg)
{
	const char *record = msg->record;
	size_t		record_len = msg->record_len;
	ZerobusRelation *rel;

	if (record == NULL || zb->cur_txn == NULL)
		protocol_error("Change without record or outside a transaction");

	rel = hash_search(ws.relations, &msg->relid, HASH_FIND, NULL);
	if (rel == NULL)
		protocol_error("Change for a relation never described");
	if (msg->array_nulls > 0 &&
		!zerobus_worker_array_nulls_sendable(rel->target, rel->target_name,
											 rel->qualname, msg->array_nulls))
		return;
	if (rel->drop)
	{
		if (stripped.data == NULL)
		{
			MemoryContext oldcxt = MemoryContextSwitchTo(ws.cxt);

			initStringInfo(&stripped);
			MemoryContextSwitchTo(oldcxt);
		}
		resetStringInfo(&stripped);
		zerobus_reaction_strip(&stripped, record, record_len, rel->drop,
							   false);
		record = stripped.data;
		record_len = stripped.len;
	}
	if (!zerobus_sender_add(ws.sender, rel->target, ZB_LANE_CHANGES,
							rel->descriptor, rel->descriptor_len,
							&rel->call_epoch,
							zerobus_sender_shards(rel->target) > 1 ?
							key_hash(rel, record, record_len) : 0,
							record, record_len,
							&zb->cur_txn->acks, rel->qualname))
		freeze_confirm();		/* its target is paused: record not sent */
}

/*
 * Frees the earlier descriptors of rel that no call of its target uses any
 * more: no outcome can name them, and no record is encoded with them after
 * a later Relation message.  So the versions kept are bounded by the
 * target's calls, which end once acked, however many times the table
 * changes in one session.
 */
static void
forget_versions(ZerobusRelation *rel)
{
	ListCell   *lc;

	foreach(lc, rel->previous)
	{
		ZerobusRelationVersion *v = lfirst(lc);

		if (zerobus_sender_uses_descriptor(ws.sender, rel->target,
										   v->descriptor, v->descriptor_len))
			continue;
		rel->previous = foreach_delete_current(rel->previous, lc);
		pfree(v->descriptor);
		for (int i = 0; i < v->columns.ncolumns; i++)
		{
			pfree(v->columns.columns[i].name);
			pfree(v->columns.columns[i].delta_type);
		}
		pfree(v->columns.columns);
		pfree(v);
	}
}

/* A Relation message: (re)learn the relation's target and descriptor. */
static void
handle_relation(const uint8 *data, size_t len)
{
	char	   *refusal;
	Zerobus__Output__Relation *msg;
	ZerobusRelation *rel;
	bool		found;
	size_t		i;

	msg = zerobus__output__relation__unpack(NULL, len, data);
	if (msg == NULL || !msg->has_descriptor_proto ||
		msg->schema_name == NULL || msg->table_name == NULL)
		protocol_error("bad Relation");

	rel = hash_search(ws.relations, &msg->relid, HASH_ENTER, &found);
	if (found)
	{
		/* kept for the outcomes of the calls opened with it */
		ZerobusRelationVersion *old = palloc(sizeof(ZerobusRelationVersion));

		old->descriptor = rel->descriptor;
		old->descriptor_len = rel->descriptor_len;
		old->columns = rel->columns;
		old->accepted_stored = rel->accepted_stored;
		rel->previous = lappend(rel->previous, old);
		forget_versions(rel);
		pfree(rel->qualname);
		pfree(rel->target_name);
		bms_free(rel->key_fields);
	}
	else
		rel->previous = NIL;
	rel->qualname = quote_qualified_identifier(msg->schema_name,
											   msg->table_name);
	rel->descriptor = palloc(msg->descriptor_proto.len);
	memcpy(rel->descriptor, msg->descriptor_proto.data,
		   msg->descriptor_proto.len);
	rel->descriptor_len = msg->descriptor_proto.len;
	rel->call_epoch = 0;
	rel->accepted_stored = false;
	rel->key_fields = NULL;

	/* the source columns and _array_nulls, without the other metadata */
	rel->columns.ncolumns = 0;
	rel->columns.columns = palloc(sizeof(ZerobusSchemaColumn) *
								  (msg->n_columns + 1));
	for (i = 0; i < msg->n_columns; i++)
	{
		Zerobus__Output__Column *col = msg->columns[i];
		ZerobusSchemaColumn *to = &rel->columns.columns[rel->columns.ncolumns];

		if (col->field_number >= ZB_META_FIELD_BASE &&
			col->field_number != ZB_META_FIELD_BASE + ZB_META_ARRAY_NULLS)
			continue;
		if (col->has_is_key && col->is_key)
			rel->key_fields = bms_add_member(rel->key_fields,
											 (int) col->field_number);
		to->name = pstrdup(col->name ? col->name : "");
		to->field_number = (int) col->field_number;
		to->delta_type = pstrdup(col->delta_type ? col->delta_type : "");
		rel->columns.ncolumns++;
	}

	rel->target_name = zerobus_stream_target_table(ws.config, msg->schema_name,
												   msg->table_name);
	rel->target = zerobus_sender_target(ws.sender, rel->target_name);
	zerobus_reaction_column_drop(&ws, rel);
	zerobus_snapshot_relation_seen(zb->snapshot, msg->relid);

	/* a table that joined the publication since the owner's check */
	refusal = zerobus_reaction_read_refusal_in_xact(ws.config, msg->relid,
													rel->qualname);
	if (refusal != NULL)
		pause_target(rel->target, rel->target_name, refusal);

	zerobus__output__relation__free_unpacked(msg, NULL);
}

/*
 * Pauses one target table for the rest of the session, for a failure that
 * concerns it alone (see "Recovery"): drops its calls and refuses its
 * records from now on (zerobus_sender_pause), freezes the confirmable
 * position (freeze_confirm), and records the reason
 * (zerobus_reaction_record_pause).  The other targets flow on.
 */
static void
pause_target(ZerobusTarget *target, const char *target_name,
			 const char *reason)
{
	if (zerobus_sender_paused(target))
		return;
	zerobus_sender_pause(ws.sender, target, false);
	freeze_confirm();
	zerobus_reaction_record_pause(&ws, target_name, reason);
}

/*
 * Acts on what the sender's last calls did to target tables (sender.h), in
 * the order it happened.  Called right after each call into the sender
 * that may queue outcomes, before the confirmable position moves.
 */
static void
react(void)
{
	ZerobusOutcome outcome;

	while (zerobus_sender_next_outcome(ws.sender, &outcome))
	{
		switch (outcome.kind)
		{
			case ZB_OUTCOME_ACCEPTED:
				if (!zerobus_reaction_accepted(&ws, &outcome))
					zerobus_snapshot_accepted(zb->snapshot, &outcome);
				break;
			case ZB_OUTCOME_REJECTED:
				/* a call opened before its target stopped: moot */
				if (zerobus_sender_paused(outcome.target))
					break;
				if (zerobus_evolve_start(&ws, &outcome))
				{
					/*
					 * A pause that is not recorded, while it is altered; the
					 * calls of the descriptor it accepted get their acks.
					 */
					zerobus_sender_pause(ws.sender, outcome.target, true);
					freeze_confirm();
				}
				else
					pause_target(outcome.target, outcome.target_name,
								 zerobus_reaction_rejected(&ws, &outcome));
				break;
			case ZB_OUTCOME_TRANSFER_DONE:
				zerobus_evolve_transfer_done(&ws, outcome.transfer,
											 outcome.result);
				break;
			case ZB_OUTCOME_PAUSED:
				/* the sender paused it already */
				freeze_confirm();
				zerobus_reaction_record_pause(&ws, outcome.target_name,
											  outcome.message);
				break;
		}
	}
}

/* A Truncate message: not propagated, said so. */
static void
handle_truncate(const uint8 *data, size_t len)
{
	Zerobus__Output__Truncate *msg;
	StringInfoData names;
	size_t		i;

	msg = zerobus__output__truncate__unpack(NULL, len, data);
	if (msg == NULL)
		protocol_error("bad Truncate");
	initStringInfo(&names);
	for (i = 0; i < msg->n_relids; i++)
	{
		ZerobusRelation *rel = hash_search(ws.relations, &msg->relids[i],
									  HASH_FIND, NULL);

		if (i > 0)
			appendStringInfoString(&names, ", ");
		if (rel)
			appendStringInfoString(&names, rel->qualname);
		else
			appendStringInfo(&names, "relation %u", msg->relids[i]);
	}
	SpinLockAcquire(&ws.shared->mutex);
	ws.shared->truncates += msg->n_relids;
	SpinLockRelease(&ws.shared->mutex);
	ereport(WARNING,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("truncate of %s is not propagated to Zerobus", names.data),
			 errdetail("Delta change data feed has no truncate change type."),
			 errhint("Truncate the target tables in Databricks if needed.")));
	pfree(names.data);
	zerobus__output__truncate__free_unpacked(msg, NULL);
}

/* One zerobus.output.Message. */
static void
handle_message(const char *data, size_t len)
{
	ZerobusOutputMessage frame;
	const char *error = zerobus_output_read(data, len, &frame);
	const uint8 *p = (const uint8 *) frame.body;
	size_t		sublen = frame.body_len;

	if (error != NULL)
		protocol_error(error);

	switch (frame.kind)
	{
		case ZB_OUT_MESSAGE_CHANGE:
			handle_change(&frame);
			break;
		case ZB_OUT_MESSAGE_BEGIN:
			{
				Zerobus__Output__Begin *msg;

				if (zb->cur_txn)
					protocol_error("Begin inside a transaction");
				msg = zerobus__output__begin__unpack(NULL, sublen, p);
				if (msg == NULL)
					protocol_error("bad Begin");
				if (zb->frozen)
				{
					/* never confirmed: only its ack group is needed */
					zb->cur_txn = &zb->unlisted;
					zb->cur_txn->committed = false;
				}
				else
				{
					zb->cur_txn = MemoryContextAllocZero(zb->txn_cxt,
														 sizeof(ZbTxn));
					dlist_push_tail(&zb->txns, &zb->cur_txn->node);
				}
				zb->cur_txn->commit_time =
					zerobus_from_unix_micros(msg->commit_time);
				zerobus__output__begin__free_unpacked(msg, NULL);
				break;
			}
		case ZB_OUT_MESSAGE_COMMIT:
			{
				Zerobus__Output__Commit *msg;

				if (zb->cur_txn == NULL)
					protocol_error("Commit outside a transaction");
				msg = zerobus__output__commit__unpack(NULL, sublen, p);
				if (msg == NULL || !msg->has_end_lsn)
					protocol_error("bad Commit");
				zb->cur_txn->end_lsn = msg->end_lsn;
				zb->cur_txn->committed = true;
				zb->cur_txn = NULL;
				if (msg->end_lsn > zb->received_lsn)
					zb->received_lsn = msg->end_lsn;
				SpinLockAcquire(&ws.shared->mutex);
				ws.shared->received_lsn = zb->received_lsn;
				SpinLockRelease(&ws.shared->mutex);
				zerobus__output__commit__free_unpacked(msg, NULL);
				advance_confirm();
				break;
			}
		case ZB_OUT_MESSAGE_RELATION:
			handle_relation(p, sublen);
			break;
		case ZB_OUT_MESSAGE_TRUNCATE:
			handle_truncate(p, sublen);
			break;
		case ZB_OUT_MESSAGE_MESSAGE:	/* not requested */
			break;
		default:
			protocol_error("unknown Message kind");
	}
}

/* One CopyData message of the walsender. */
static void
handle_copydata(const char *buf, int len)
{
	uint64		walend;

	if (len >= 1 + 24 && buf[0] == 'w')
	{
		memcpy(&walend, buf + 9, 8);
		walend = pg_ntoh64(walend);
		handle_message(buf + 25, len - 25);
	}
	else if (len >= 1 + 17 && buf[0] == 'k')
	{
		memcpy(&walend, buf + 1, 8);
		walend = pg_ntoh64(walend);
		if (buf[17])
			zb->reply_requested = true;
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("unexpected message type \"%c\" from the walsender",
						buf[0])));

	if (walend > zb->received_lsn && zb->cur_txn == NULL)
	{
		zb->received_lsn = walend;
		if (dlist_is_empty(&zb->txns))
			advance_confirm();
	}
}

/*
 * Reads the replication stream until it has nothing ready, until
 * ZB_RECEIVE_BURST messages were handled or until backpressure applies.
 * Sends the open batches when the stream is drained.
 */
static void
receive(void)
{
	int			n;

	for (n = 0; n < ZB_RECEIVE_BURST; n++)
	{
		char	   *buf;
		pgsocket	fd = PGINVALID_SOCKET;
		int			len;

		if (zerobus_sender_backpressured(ws.sender))
			return;
		len = walrcv_receive(zb->rcv, &buf, &fd);
		if (len == 0)
		{
			zb->rcv_sock = fd;
			zb->drained = true;
			zerobus_sender_flush_all(ws.sender);
			return;
		}
		if (len < 0)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("the walsender ended replication of slot \"%s\"",
							ws.config->slot_name)));
		handle_copydata(buf, len);
	}
}

/* ----------------------------------------------------------------
 * Sessions and the event loop
 * ----------------------------------------------------------------
 */

/*
 * Waits for the latch, the replication socket (unless backpressured) and
 * libcurl's sockets, for at most timeout ms.  The wait set is kept from one
 * wait to the next (building one costs an epoll instance and a system call
 * per socket, which showed as a third of the worker's CPU at full speed)
 * and built anew only when the sockets to watch changed: one opened or
 * closed (libcurl may close a socket and open another one with the same
 * number, which the kept epoll set would no longer watch), or the
 * replication socket watched or not.  Changed events of the same sockets
 * are only modified.
 */
static void
wait_for_work(bool watch_rcv, long timeout)
{
	pgsocket	socks[ZB_MAX_SOCKETS];
	int			events[ZB_MAX_SOCKETS];
	WaitEvent	occurred[ZB_MAX_SOCKETS + 3];
	pgsocket	rcv_sock = watch_rcv ? zb->rcv_sock : PGINVALID_SOCKET;
	uint64		generation;
	int			first;			/* position of the first libcurl socket */
	int			n;
	int			i;

	n = zerobus_sender_sockets(ws.sender, socks, events, ZB_MAX_SOCKETS,
							   &generation);
	first = rcv_sock != PGINVALID_SOCKET ? 3 : 2;
	if (zb->wes == NULL || generation != zb->wes_generation ||
		rcv_sock != zb->wes_rcv_sock || n != zb->wes_nsocks ||
		memcmp(socks, zb->wes_socks, sizeof(pgsocket) * n) != 0)
	{
		if (zb->wes)
		{
			FreeWaitEventSet(zb->wes);
			zb->wes = NULL;
		}
		zb->wes = zerobus_create_wait_event_set(zb->cxt, n + 3);
		AddWaitEventToSet(zb->wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch,
						  NULL);
		AddWaitEventToSet(zb->wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET,
						  NULL, NULL);
		if (rcv_sock != PGINVALID_SOCKET)
			AddWaitEventToSet(zb->wes, WL_SOCKET_READABLE, rcv_sock, NULL,
							  NULL);
		for (i = 0; i < n; i++)
			AddWaitEventToSet(zb->wes, events[i], socks[i], NULL, NULL);
		zb->wes_generation = generation;
		zb->wes_rcv_sock = rcv_sock;
		zb->wes_nsocks = n;
		memcpy(zb->wes_socks, socks, sizeof(pgsocket) * n);
		memcpy(zb->wes_events, events, sizeof(int) * n);
	}
	else
	{
		for (i = 0; i < n; i++)
		{
			if (events[i] == zb->wes_events[i])
				continue;
			ModifyWaitEvent(zb->wes, first + i, events[i], NULL);
			zb->wes_events[i] = events[i];
		}
	}

	(void) WaitEventSetWait(zb->wes, timeout, occurred, lengthof(occurred),
							PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
}

/*
 * Fails the stream when its slot cannot serve it any more: dropped, or
 * invalidated because WAL it still needed was removed (wal_status 'lost',
 * past max_slot_wal_keep_size).  Replication from such a slot cannot
 * start, so retrying would not help; zerobus.recover_stream() replaces the
 * slot and snapshots the tables again.
 */
static void
check_slot(void)
{
	Oid			type = TEXTOID;
	Datum		value = CStringGetTextDatum(ws.config->slot_name);
	char	   *wal_status = NULL;
	bool		exists;
	ZerobusXact xact;

	zerobus_xact_begin(&xact, true);
	if (SPI_execute_with_args("SELECT wal_status FROM pg_catalog.pg_replication_slots"
							  " WHERE slot_name = $1",
							  1, &type, &value, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read pg_replication_slots");
	exists = SPI_processed > 0;
	if (exists)
	{
		char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		wal_status = v ? MemoryContextStrdup(ws.cxt, v) : NULL;
	}
	zerobus_xact_end(&xact);

	if (!exists)
		stop_stream("replication slot \"%s\" of stream \"%s\" does not exist. Hint: SELECT zerobus.recover_stream('%s'); creates it again and snapshots every table again.",
							ws.config->slot_name, ws.config->name, ws.config->name);
	if (wal_status && strcmp(wal_status, "lost") == 0)
		stop_stream("replication slot \"%s\" of stream \"%s\" was invalidated: the WAL it still needed was removed (wal_status lost, see max_slot_wal_keep_size), so changes were lost. Hint: SELECT zerobus.recover_stream('%s'); replaces the slot and snapshots every table again.",
							ws.config->slot_name, ws.config->name, ws.config->name);
}

/* Connects to Zerobus and to the slot; the session starts STREAMING. */
static void
start_session(void)
{
	char		errbuf[512];
	char	   *conninfo;
	char	   *appname;
	char	   *err = NULL;
	WalRcvStreamOptions options;
	HASHCTL		ctl;

	zb = MemoryContextAllocZero(ws.cxt, sizeof(ZbSession));
	zb->cxt = AllocSetContextCreate(ws.cxt, "zerobus session",
									ALLOCSET_DEFAULT_SIZES);
	zb->txn_cxt = AllocSetContextCreate(zb->cxt, "zerobus transactions",
										ALLOCSET_DEFAULT_SIZES);
	zb->rcv_sock = PGINVALID_SOCKET;
	dlist_init(&zb->txns);
	MemoryContextSwitchTo(zb->cxt);

	ctl.keysize = sizeof(uint32);
	ctl.entrysize = sizeof(ZerobusRelation);
	ctl.hcxt = zb->cxt;
	ws.relations = hash_create("zerobus relations", 64, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	check_slot();
	ws.sender = zerobus_sender_create(ws.config, ws.shared, zb->cxt,
									   errbuf, sizeof(errbuf));
	if (ws.sender == NULL)
		stop_stream("invalid Zerobus endpoint: %s", errbuf);
	zerobus_reaction_load_pauses(&ws);

	if (ws.config->conninfo)
		conninfo = ws.config->conninfo;
	else
	{
		StartTransactionCommand();
		MemoryContextSwitchTo(zb->cxt);
		conninfo = default_conninfo();
		CommitTransactionCommand();
		MemoryContextSwitchTo(zb->cxt);
	}
	appname = psprintf("zerobus:%s", ws.config->name);
	zb->rcv = zerobus_walrcv_connect(conninfo, appname, &err);
	if (zb->rcv == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not connect to the slot of zerobus stream \"%s\": %s",
						ws.config->name, err)));

	memset(&options, 0, sizeof(options));
	options.logical = true;
	options.slotname = ws.config->slot_name;
	options.startpoint = InvalidXLogRecPtr;
	options.proto.logical.proto_version = 1;
	options.proto.logical.publication_names =
		list_make1(makeString(ws.config->publication));
	if (!walrcv_startstreaming(zb->rcv, &options))
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not start replication from slot \"%s\"",
						ws.config->slot_name)));

	zb_now = GetCurrentTimestamp();
	zerobus_sender_set_now(ws.sender, zb_now);
	zb->last_feedback = zb_now;
	zb->snapshot = zerobus_snapshot_create(&ws, zb->cxt);
	SpinLockAcquire(&ws.shared->mutex);
	ws.shared->state = ZB_STATE_STREAMING;
	SpinLockRelease(&ws.shared->mutex);
}

/* Releases what a session holds outside its memory context. */
static void
end_session(void)
{
	if (zb == NULL)
		return;
	if (zb->wes)
		FreeWaitEventSet(zb->wes);
	if (ws.sender)
	{
		zerobus_evolve_end(&ws);	/* its transfers are on the sender */
		zerobus_sender_destroy(ws.sender);
	}
	ws.sender = NULL;
	ws.relations = NULL;
	if (zb->rcv)
		walrcv_disconnect(zb->rcv);
	MemoryContextSwitchTo(ws.cxt);
	MemoryContextDelete(zb->cxt);
	pfree(zb);
	zb = NULL;
}

/*
 * Whether to read a snapshot chunk now: there may be one, and the records
 * in flight stay below half of max_inflight_bytes, so that the change
 * stream is served between chunks and its slot keeps advancing.
 */
static bool
snapshot_can_read(void)
{
	return zerobus_snapshot_has_work(zb->snapshot) &&
		!zerobus_sender_backpressured(ws.sender) &&
		zerobus_sender_inflight_bytes(ws.sender) <
		(size_t) ws.config->max_inflight_bytes / 2;
}

/*
 * Streams until an ERROR ends the session.  Each iteration reads the slot
 * (unless backpressured), does the Zerobus I/O, handles acks and events,
 * sends a status update if one is due and waits for the next thing to do.
 */
static void
run_session(void)
{
	start_session();

	for (;;)
	{
		long		timeout;
		bool		waiting;
		bool		snapshot_ready;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			load_config(true);
		}

		zb_now = GetCurrentTimestamp();
		zerobus_sender_set_now(ws.sender, zb_now);
		zb->drained = false;
		receive();
		react();
		if (snapshot_can_read())
		{
			zerobus_snapshot_read_chunk(zb->snapshot);
			zerobus_sender_flush_all(ws.sender);
			react();
		}
		zb_now = GetCurrentTimestamp();
		zerobus_sender_set_now(ws.sender, zb_now);
		timeout = zerobus_sender_process(ws.sender);
		react();
		if (zb->drained)
		{
			zerobus_sender_flush_all(ws.sender);	/* after the acks */
			react();
		}
		advance_confirm();
		zerobus_snapshot_progress(zb->snapshot);
		zerobus_sender_check_timers(ws.sender, &timeout);
		react();
		zerobus_evolve_step(&ws, &timeout);
		zerobus_snapshot_check_timers(zb->snapshot, zb_now, &timeout);
		send_feedback(&timeout);
		if (wal_receiver_status_interval > 0)
			zerobus_timeout_until(&timeout, zb_now,
								  TimestampTzPlusMilliseconds(zb->last_feedback,
															  wal_receiver_status_interval * 1000));

		waiting = zerobus_sender_backpressured(ws.sender);
		snapshot_ready = snapshot_can_read();
		if ((!zb->drained && !waiting) || snapshot_ready ||
			zerobus_sender_unsent(ws.sender))
			timeout = 0;		/* more to read or to send right away */
		wait_for_work(!waiting, timeout);
	}
}

/*
 * Counts the sessions ended in a row by the same error of the replication
 * connection (ERRCODE_PROTOCOL_VIOLATION: the walsender's or the plugin's
 * error, or a message the worker could not read) with nothing acked
 * between, and returns true at the ZB_REPEATED_FAILURES-th.  Decoding is
 * deterministic: such an error (a change the plugin cannot encode, say)
 * comes back at the same place every time, and retrying it for ever would
 * hide it behind a "retrying" state.  Transport, Zerobus and token errors
 * are not counted; they are retried with backoff for as long as it takes.
 */
static bool
failure_repeats(const ErrorData *edata, bool progressed)
{
	if (progressed || edata->sqlerrcode != ERRCODE_PROTOCOL_VIOLATION ||
		edata->message == NULL)
	{
		repeated_count = 0;
		return false;
	}
	if (repeated_count > 0 && strcmp(repeated_error, edata->message) == 0)
		repeated_count++;
	else
	{
		if (repeated_error)
			pfree(repeated_error);
		repeated_error = MemoryContextStrdup(ws.cxt, edata->message);
		repeated_count = 1;
	}
	return repeated_count >= ZB_REPEATED_FAILURES;
}

/* Sleeps ms milliseconds, waking for interrupts. */
static void
backoff_sleep(long ms)
{
	TimestampTz end = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);

	for (;;)
	{
		long		left;

		CHECK_FOR_INTERRUPTS();
		left = (long) ((end - GetCurrentTimestamp()) / 1000);
		if (left <= 0)
			break;
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 left, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/*
 * Entry point of a stream worker; bgw_main_arg is the stream id and
 * bgw_extra a ZerobusWorkerArgs.
 */
void
zerobus_worker_main(Datum main_arg)
{
	ZerobusWorkerArgs args;
	volatile long backoff = ZB_BACKOFF_MIN_MS;

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnectionByOid(args.dboid, InvalidOid, 0);
	/*
	 * The worker runs SQL as the bootstrap superuser: no search_path that a
	 * database owner set (ALTER DATABASE ... SET) may reach it.  As in
	 * PostgreSQL's apply worker, the path is empty (pg_catalog only).
	 */
	SetConfigOption("search_path", "", PGC_SUSET, PGC_S_OVERRIDE);

	ws.shared = zerobus_stream_shared(DatumGetInt32(main_arg), true);
	SpinLockAcquire(&ws.shared->mutex);
	ws.shared->pid = MyProcPid;
	ws.shared->state = ZB_STATE_STARTING;
	ws.shared->started_at = GetCurrentTimestamp();
	SpinLockRelease(&ws.shared->mutex);

	ws.cxt = AllocSetContextCreate(TopMemoryContext, "zerobus worker",
									   ALLOCSET_DEFAULT_SIZES);
	load_config(false);
	pgstat_report_appname(psprintf("zerobus:%s", ws.config->name));

	load_file("libpqwalreceiver", false);

	for (;;)
	{
		PG_TRY();
		{
			run_session();
		}
		PG_CATCH();
		{
			ErrorData  *edata;
			bool		progressed;
			bool		for_good;

			/* also an error raised while committing (not "in progress") */
			AbortOutOfAnyTransaction();
			MemoryContextSwitchTo(ws.cxt);
			EmitErrorReport();
			edata = CopyErrorData();
			FlushErrorState();

			progressed = ws.sender && zerobus_sender_got_ack(ws.sender);
			for_good = ws.sender && zerobus_sender_failed_for_good(ws.sender);
			if (progressed)
				backoff = ZB_BACKOFF_MIN_MS;
			end_session();
			if (for_good)
				stop_stream("%s", edata->message);
			if (failure_repeats(edata, progressed))
				stop_stream("replication from slot \"%s\" failed %d times in a row at the same position: %s. "
									"Hint: Remove the cause if it can be, then call SELECT zerobus.resume_stream('%s'); "
									"a change that can never be decoded can only be skipped by advancing the slot past it "
									"(pg_replication_slot_advance), which loses it.",
									ws.config->slot_name, ZB_REPEATED_FAILURES,
									edata->message, ws.config->name);

			zerobus_stream_note_error(ws.shared, edata->message);
			SpinLockAcquire(&ws.shared->mutex);
			ws.shared->state = ZB_STATE_RETRYING;
			ws.shared->reconnects++;
			SpinLockRelease(&ws.shared->mutex);
			FreeErrorData(edata);
		}
		PG_END_TRY();

		backoff_sleep(backoff);
		backoff = Min(backoff * 2, ZB_BACKOFF_MAX_MS);
	}
}
