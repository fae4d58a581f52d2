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
 * header describes batching, acks and backpressure).  The worker sends the
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
 * Recovery.  Every transient failure (transport error, a call ending with a
 * retryable status or ending with unacked batches, no message for
 * ack_timeout_ms while batches are in flight, token endpoint unavailable,
 * replication connection lost, any ERROR raised while streaming) resets
 * the session: all calls are dropped, the replication connection is closed,
 * the state becomes RETRYING, and after a backoff (1 s doubling to 30 s,
 * back to 1 s once an ack arrives) the worker reconnects and starts
 * replication again.  The walsender then resends everything after the
 * slot's confirmed_flush_lsn, i.e. everything not known durable: nothing is
 * lost, records may be sent twice (at-least-once; (_commit_lsn, _seq)
 * identifies them).  Permanent failures of one target table (a descriptor
 * rejected, a call ending with INVALID_ARGUMENT, NOT_FOUND or
 * PERMISSION_DENIED, its token refused with HTTP 403) pause that table alone
 * (zerobus_worker_pause_target): its calls are dropped, its records are no
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
 * target (schema.c).
 * Under schema_policy drop_missing_columns, columns the target lacks are
 * instead left out of the descriptor and the records, from a replay of the
 * slot on.  A slot that lost WAL it needed (wal_status 'lost') or vanished
 * fails the stream before replication starts, naming recover_stream().
 *
 * Initial snapshots (snapshot.c) share the loop: between reads of the
 * slot, while less than half of max_inflight_bytes is unacked, the worker
 * reads one chunk of a table to snapshot and hands its records to the
 * sender on the snapshot lane; chunks hold no transaction of the FIFO, so
 * the slot keeps being confirmed while a snapshot runs.
 *
 * Truncate is not propagated: Delta's change data feed has no such change
 * type.  Each one is logged as a WARNING naming the tables.
 *
 * src/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "lib/ilist.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/pg_bswap.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "postmaster/postmaster.h"
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

#include "schema.h"
#include "snapshot.h"
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
 * Columns left out under schema_policy drop_missing_columns: for one
 * descriptor of a relation that the target rejected, the fields the target
 * lacks.  Kept for the worker's life (in worker_cxt), so that the sessions
 * after the rejection leave them out of the descriptor and of every record.
 */
typedef struct ZbColumnDrop
{
	uint32		relid;
	char	   *descriptor;		/* as the plugin sent it */
	int			descriptor_len;
	int		   *fields;			/* field numbers left out */
	int			nfields;
	char	   *notice;			/* shown by zerobus.stat_streams */
} ZbColumnDrop;

/* A source relation, as last described by a Relation message. */
typedef struct ZbRelation
{
	uint32		relid;			/* hash key */
	char	   *qualname;		/* schema.table, for messages */
	char	   *target_name;	/* catalog.schema.table */
	ZerobusTarget *target;
	char	   *descriptor;
	int			descriptor_len;
	ZerobusColumnSet columns;	/* the descriptor's source columns */
	bool		accepted_stored;	/* the target accepted the descriptor,
									 * and zerobus.stream_tables says so */
	ZbColumnDrop *drop;			/* columns left out, or NULL */
	uint64		call_serial;	/* the call known to accept the descriptor */
} ZbRelation;

/*
 * Everything a session (one replication connection, one Zerobus connection)
 * owns.  Allocations live in cxt, which is reset when the session ends;
 * sender and rcv are released explicitly.
 */
typedef struct ZbSession
{
	MemoryContext cxt;
	MemoryContext txn_cxt;		/* ZbTxn chunks */
	WalReceiverConn *rcv;
	pgsocket	rcv_sock;
	ZerobusSender *sender;
	ZerobusSnapshot *snapshot;	/* initial snapshots, between slot reads */
	HTAB	   *relations;
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

static List *column_drops = NIL;	/* ZbColumnDrop, in worker_cxt */
static StringInfoData stripped;	/* a record without the dropped columns */
static ZerobusStreamConfig *config;
static ZerobusStreamShared *shared;
static MemoryContext worker_cxt;
static ZbSession *zb;
static char *repeated_error;	/* failure_repeats(): the last one, or NULL */
static int	repeated_count;
static TimestampTz zb_now;		/* taken once per loop iteration */

/*
 * Stops the stream for good: records the reason in zerobus.streams (so the
 * launcher does not restart the worker until resume_stream) and in shared
 * memory, and exits with status 0.  The slot keeps the WAL.  For permanent
 * failures only; transient ones raise an ERROR, which resets the session.
 */
void
zerobus_worker_fail(const char *fmt,...)
{
	char		reason[2048];
	va_list		args;

	va_start(args, fmt);
	vsnprintf(reason, sizeof(reason), fmt, args);
	va_end(args);

	zerobus_stream_set_failed(config->id, reason);
	proc_exit(0);
}

/*
 * Reads the stream's configuration into worker_cxt.  With reload, only the
 * tuning options are taken over (the launcher restarts the worker when
 * anything else changes), and the fresh copy is thrown away.
 */
static void
load_config(bool reload)
{
	ZerobusStreamConfig *fresh;
	MemoryContext cxt;
	MemoryContext oldcxt;

	cxt = reload ? AllocSetContextCreate(worker_cxt, "zerobus config",
										 ALLOCSET_SMALL_SIZES) : worker_cxt;
	oldcxt = CurrentMemoryContext;
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	MemoryContextSwitchTo(cxt);
	fresh = zerobus_stream_load(shared->stream_id, true);
	MemoryContextSwitchTo(oldcxt);
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(oldcxt);

	if (fresh == NULL)
		ereport(FATAL,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("zerobus stream %d does not exist", shared->stream_id)));

	if (!reload)
	{
		config = fresh;
		return;
	}
	config->batch_max_records = fresh->batch_max_records;
	config->batch_max_bytes = fresh->batch_max_bytes;
	config->batch_max_delay_ms = fresh->batch_max_delay_ms;
	config->max_inflight_bytes = fresh->max_inflight_bytes;
	config->ack_timeout_ms = fresh->ack_timeout_ms;
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

	SpinLockAcquire(&shared->mutex);
	if (zb->confirm_lsn > shared->acked_lsn)
		shared->acked_lsn = zb->confirm_lsn;
	if (acked_time != 0)
		shared->acked_commit_time = acked_time;
	shared->oldest_unacked_commit_time = oldest;
	SpinLockRelease(&shared->mutex);
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

	SpinLockAcquire(&shared->mutex);
	shared->confirmed_lsn = zb->confirm_lsn;
	SpinLockRelease(&shared->mutex);
}

/* Reads a protobuf varint; false when it runs past end. */
static inline bool
read_varint(const uint8 **p, const uint8 *end, uint64 *value)
{
	uint64		v = 0;
	int			shift = 0;

	while (*p < end && shift < 64)
	{
		uint8		b = *(*p)++;

		v |= (uint64) (b & 0x7f) << shift;
		if ((b & 0x80) == 0)
		{
			*value = v;
			return true;
		}
		shift += 7;
	}
	return false;
}

static pg_attribute_noreturn() void
protocol_error(const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_PROTOCOL_VIOLATION),
			 errmsg("invalid message from the zerobus output plugin: %s", what)));
}

/* A Change message: relid, type, record (the hot path, parsed by hand). */
static void
handle_change(const uint8 *p, const uint8 *end)
{
	uint32		relid = 0;
	const uint8 *record = NULL;
	uint64		record_len = 0;
	ZbRelation *rel;

	while (p < end)
	{
		uint64		tag;
		uint64		v;

		if (!read_varint(&p, end, &tag))
			protocol_error("truncated Change");
		switch (tag & 7)
		{
			case 0:
				if (!read_varint(&p, end, &v))
					protocol_error("truncated Change");
				if ((tag >> 3) == 1)
					relid = (uint32) v;
				break;
			case 2:
				if (!read_varint(&p, end, &v) || v > (uint64) (end - p))
					protocol_error("truncated Change");
				if ((tag >> 3) == 3)
				{
					record = p;
					record_len = v;
				}
				p += v;
				break;
			default:
				protocol_error("unexpected wire type in Change");
		}
	}
	if (record == NULL || zb->cur_txn == NULL)
		protocol_error("Change without record or outside a transaction");

	rel = hash_search(zb->relations, &relid, HASH_FIND, NULL);
	if (rel == NULL)
		protocol_error("Change for a relation never described");
	if (rel->drop)
	{
		resetStringInfo(&stripped);
		zerobus_schema_strip(&stripped, (const char *) record, record_len,
							 rel->drop->fields, rel->drop->nfields, false);
		record = (const uint8 *) stripped.data;
		record_len = stripped.len;
	}
	if (!zerobus_sender_add(zb->sender, rel->target, ZB_LANE_CHANGES,
							rel->descriptor, rel->descriptor_len,
							&rel->call_serial, (const char *) record,
							record_len, &zb->cur_txn->acks, rel->qualname))
		freeze_confirm();		/* its target is paused: record not sent */
}

/*
 * Leaves the columns of an earlier ZbColumnDrop out of rel's descriptor
 * and column set, when the drop was made for this very descriptor.
 */
static void
apply_column_drop(ZbRelation *rel)
{
	ListCell   *lc;
	StringInfoData desc;
	int			i;
	int			n = 0;

	rel->drop = NULL;
	foreach(lc, column_drops)
	{
		ZbColumnDrop *drop = lfirst(lc);

		if (drop->relid == rel->relid &&
			drop->descriptor_len == rel->descriptor_len &&
			memcmp(drop->descriptor, rel->descriptor, rel->descriptor_len) == 0)
			rel->drop = drop;
	}
	if (rel->drop == NULL)
		return;

	initStringInfo(&desc);
	zerobus_schema_strip(&desc, rel->descriptor, rel->descriptor_len,
						 rel->drop->fields, rel->drop->nfields, true);
	pfree(rel->descriptor);
	rel->descriptor = desc.data;
	rel->descriptor_len = desc.len;
	for (i = 0; i < rel->columns.ncolumns; i++)
	{
		ZerobusSchemaColumn *col = &rel->columns.columns[i];
		bool		keep = true;
		int			j;

		for (j = 0; j < rel->drop->nfields; j++)
			if (col->field_number == rel->drop->fields[j])
				keep = false;
		if (keep)
			rel->columns.columns[n++] = *col;
	}
	rel->columns.ncolumns = n;
}

/*
 * Why the stream's owner may not have table relid (qualname) read, or NULL
 * when it may (zerobus_owner_can_read): a table that joins a FOR ALL TABLES
 * or TABLES IN SCHEMA publication after the owner was checked is checked
 * here, by the change stream and by the snapshot, and paused if need be.
 * palloc'd in the caller's context.  Needs a transaction.
 */
char *
zerobus_worker_read_refusal(Oid relid, const char *qualname)
{
	switch (zerobus_owner_can_read(config->owner, relid))
	{
		case ZB_READ_OK:
			break;
		case ZB_READ_NO_SELECT:
			return psprintf("owner %s of stream \"%s\" cannot read table %s. "
							"Hint: Grant SELECT on the table to the stream's owner, then call zerobus.resume_stream().",
							GetUserNameFromId(config->owner, false),
							config->name, qualname);
		case ZB_READ_RLS:
			return psprintf("row-level security of table %s applies to owner %s of stream \"%s\". "
							"Hint: Make the table's owner, or a role with BYPASSRLS, the stream's owner, then call zerobus.resume_stream().",
							qualname, GetUserNameFromId(config->owner, false),
							config->name);
	}
	return NULL;
}

/* zerobus_worker_read_refusal, in a transaction of its own if need be */
static char *
read_refusal_in_xact(Oid relid, const char *qualname)
{
	MemoryContext cxt = CurrentMemoryContext;
	bool		in_xact = IsTransactionState();
	char	   *refusal;

	if (!in_xact)
		StartTransactionCommand();
	refusal = zerobus_worker_read_refusal(relid, qualname);
	if (refusal != NULL)
		refusal = MemoryContextStrdup(cxt, refusal);
	if (!in_xact)
		CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	return refusal;
}

/* A Relation message: (re)learn the relation's target and descriptor. */
static void
handle_relation(const uint8 *data, size_t len)
{
	char	   *refusal;
	Zerobus__Output__Relation *msg;
	ZbRelation *rel;
	bool		found;
	size_t		i;

	msg = zerobus__output__relation__unpack(NULL, len, data);
	if (msg == NULL || !msg->has_descriptor_proto ||
		msg->schema_name == NULL || msg->table_name == NULL)
		protocol_error("bad Relation");

	rel = hash_search(zb->relations, &msg->relid, HASH_ENTER, &found);
	if (found)
	{
		pfree(rel->qualname);
		pfree(rel->target_name);
		pfree(rel->descriptor);
		for (i = 0; i < rel->columns.ncolumns; i++)
		{
			pfree(rel->columns.columns[i].name);
			pfree(rel->columns.columns[i].delta_type);
		}
		pfree(rel->columns.columns);
	}
	rel->qualname = quote_qualified_identifier(msg->schema_name,
											   msg->table_name);
	rel->descriptor = palloc(msg->descriptor_proto.len);
	memcpy(rel->descriptor, msg->descriptor_proto.data,
		   msg->descriptor_proto.len);
	rel->descriptor_len = msg->descriptor_proto.len;
	rel->call_serial = 0;
	rel->accepted_stored = false;

	/* the source columns, without the metadata columns */
	rel->columns.ncolumns = 0;
	rel->columns.columns = palloc(sizeof(ZerobusSchemaColumn) *
								  (msg->n_columns + 1));
	for (i = 0; i < msg->n_columns; i++)
	{
		Zerobus__Output__Column *col = msg->columns[i];
		ZerobusSchemaColumn *to = &rel->columns.columns[rel->columns.ncolumns];

		if (col->field_number >= ZB_META_FIELD_BASE)
			continue;
		to->name = pstrdup(col->name ? col->name : "");
		to->field_number = (int) col->field_number;
		to->delta_type = pstrdup(col->delta_type ? col->delta_type : "");
		rel->columns.ncolumns++;
	}

	rel->target_name = zerobus_stream_target_table(config, msg->schema_name,
												   msg->table_name);
	rel->target = zerobus_sender_target(zb->sender, rel->target_name);
	apply_column_drop(rel);
	zerobus_snapshot_relation_seen(zb->snapshot, msg->relid);

	/* a table that joined the publication since the owner's check */
	refusal = read_refusal_in_xact(msg->relid, rel->qualname);
	if (refusal != NULL)
		zerobus_worker_pause_target(rel->target, rel->target_name, refusal);

	zerobus__output__relation__free_unpacked(msg, NULL);
}

/*
 * The relation whose records go to target with the given descriptor, or
 * NULL (a descriptor of no Relation message, e.g. a snapshot's).
 */
static ZbRelation *
find_relation(ZerobusTarget *target, const char *descriptor, int len)
{
	HASH_SEQ_STATUS status;
	ZbRelation *rel;

	hash_seq_init(&status, zb->relations);
	while ((rel = hash_seq_search(&status)) != NULL)
	{
		if (rel->target == target && rel->descriptor_len == len &&
			memcmp(rel->descriptor, descriptor, len) == 0)
		{
			hash_seq_term(&status);
			return rel;
		}
	}
	return NULL;
}

/*
 * The sender opened a call with this descriptor: remember the columns the
 * target accepted (schema.c), once per Relation message.
 */
void
zerobus_worker_descriptor_accepted(ZerobusTarget *target,
								   const char *descriptor, int len)
{
	ZbRelation *rel = find_relation(target, descriptor, len);
	MemoryContext oldcxt = CurrentMemoryContext;

	if (rel == NULL || rel->accepted_stored)
		return;
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	zerobus_snapshot_add_table(config->id, rel->relid);
	zerobus_schema_store_accepted(config->id, rel->relid, &rel->columns,
								  rel->drop ? rel->drop->notice : NULL);
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(oldcxt);
	rel->accepted_stored = true;
}

/*
 * schema_policy drop_missing_columns: when the target lacks columns of
 * rel's rejected descriptor (added or renamed since it accepted accepted),
 * remembers to leave them out and fails the session, so that the next one
 * replays from the slot without them.  Returns when the policy cannot help
 * (a type changed), for the stream to pause.
 */
static void
drop_missing_columns(ZbRelation *rel, const ZerobusColumnSet *accepted,
					 const char *target_name)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(worker_cxt);
	ZbColumnDrop *drop = palloc0(sizeof(ZbColumnDrop));

	drop->nfields = zerobus_schema_missing_columns(accepted, &rel->columns,
												   rel->qualname, target_name,
												   &drop->fields,
												   &drop->notice);
	if (drop->nfields == 0)
	{
		MemoryContextSwitchTo(oldcxt);
		return;
	}
	drop->relid = rel->relid;
	drop->descriptor = palloc(rel->descriptor_len);
	memcpy(drop->descriptor, rel->descriptor, rel->descriptor_len);
	drop->descriptor_len = rel->descriptor_len;
	column_drops = lappend(column_drops, drop);
	if (stripped.data == NULL)
		initStringInfo(&stripped);
	MemoryContextSwitchTo(oldcxt);

	ereport(ERROR,
			(errmsg("zerobus stream \"%s\": %s", config->name, drop->notice),
			 errdetail("The target rejected the descriptor and schema_policy is drop_missing_columns; the stream replays from its slot without those columns.")));
}

/*
 * The target rejected this descriptor when the sender opened a call with
 * it (status is "<code> (<name>)", message the server's): pauses that
 * target alone (zerobus_worker_pause_target) with a reason naming the table
 * and the columns that changed since the target last accepted a
 * descriptor, and the ALTER TABLE statements that fix the target
 * (schema.c).  Under drop_missing_columns, raises an ERROR instead when
 * leaving columns out helps (drop_missing_columns).
 */
void
zerobus_worker_descriptor_rejected(ZerobusTarget *target,
								   const char *target_name,
								   const char *descriptor, int len,
								   const char *status, const char *message)
{
	ZbRelation *rel = find_relation(target, descriptor, len);
	MemoryContext oldcxt = CurrentMemoryContext;
	ZerobusColumnSet accepted;
	bool		known;
	char	   *problem;
	char	   *hint;

	if (rel == NULL)
	{
		zerobus_worker_pause_target(target, target_name,
									psprintf("target table %s rejected a descriptor. Zerobus ended the stream for table %s with status %s: %s. Hint: zerobus.target_ddl(<source table>, stream => '%s') gives the CREATE TABLE the stream expects; alter the target, then call zerobus.resume_stream('%s').",
											 target_name, target_name, status,
											 message, config->name,
											 config->name));
		return;
	}
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	MemoryContextSwitchTo(oldcxt);
	known = zerobus_schema_load_accepted(config->id, rel->relid, &accepted);
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(oldcxt);

	if (config->drop_missing_columns && known && rel->drop == NULL)
		drop_missing_columns(rel, &accepted, target_name);
	zerobus_schema_explain(known ? &accepted : NULL, &rel->columns,
						   rel->qualname, target_name, config->name, message,
						   &problem, &hint);
	zerobus_worker_pause_target(target, target_name,
								psprintf("%s. Zerobus ended the stream for table %s with status %s: %s. Hint: %s",
										 problem, target_name, status,
										 message, hint));
}

/*
 * Records the pause of target_name in zerobus.stream_tables, on the row of
 * every source table mapped to it: those of the Relation messages seen
 * (inserting a row the snapshot bookkeeping did not make yet) and those
 * already in the table.  Runs in a transaction of its own.
 */
static void
store_pause(const char *target_name, const char *reason)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	Oid			types[3] = {INT4OID, OIDOID, TEXTOID};
	Datum		values[3];
	HASH_SEQ_STATUS status;
	ZbRelation *rel;
	List	   *relids = NIL;
	ListCell   *lc;
	uint64		i;

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	hash_seq_init(&status, zb->relations);
	while ((rel = hash_seq_search(&status)) != NULL)
	{
		if (strcmp(rel->target_name, target_name) == 0)
			zerobus_snapshot_add_table(config->id, rel->relid);
	}

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	values[0] = Int32GetDatum(config->id);
	values[2] = CStringGetTextDatum(reason);

	if (SPI_execute_with_args("SELECT relid, schema_name, table_name"
							  " FROM zerobus.stream_tables WHERE stream_id = $1",
							  1, types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read zerobus.stream_tables");
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		if (strcmp(zerobus_stream_target_table(config,
											   SPI_getvalue(tup, desc, 2),
											   SPI_getvalue(tup, desc, 3)),
				   target_name) == 0)
			relids = lappend_oid(relids,
								 DatumGetObjectId(SPI_getbinval(tup, desc, 1,
																&isnull)));
	}
	foreach(lc, relids)
	{
		values[1] = ObjectIdGetDatum(lfirst_oid(lc));
		if (SPI_execute_with_args("UPDATE zerobus.stream_tables"
								  " SET paused_reason = $3,"
								  " paused_at = pg_catalog.now()"
								  " WHERE stream_id = $1 AND relid = $2",
								  3, types, values, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not update zerobus.stream_tables");
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(oldcxt);
}

/*
 * Pauses one target table for the rest of the session, for a failure that
 * concerns it alone (see "Recovery"): drops its calls and refuses its
 * records from now on, freezes the confirmable position (freeze_confirm),
 * and records the reason in zerobus.stream_tables, where the next sessions
 * find it until resume_stream() clears it, and as the stream's last error.
 * The other targets flow on.
 */
void
zerobus_worker_pause_target(ZerobusTarget *target, const char *target_name,
							const char *reason)
{
	if (zerobus_sender_paused(target))
		return;
	zerobus_sender_pause(zb->sender, target);
	freeze_confirm();
	store_pause(target_name, reason);

	zerobus_stream_note_error(shared, reason);
	ereport(LOG,
			(errmsg("zerobus stream \"%s\": target table %s paused, the other tables flow on: %s",
					config->name, target_name, reason)));
}

/*
 * Pauses, at the start of a session, the targets whose pause
 * zerobus.stream_tables records: their records are refused from the first
 * one on, which freezes the confirmable position there.
 */
static void
load_paused_targets(void)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	Oid			type = INT4OID;
	Datum		value = Int32GetDatum(config->id);
	uint64		i;

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("SELECT schema_name, table_name, paused_reason"
							  " FROM zerobus.stream_tables"
							  " WHERE stream_id = $1 AND paused_reason IS NOT NULL"
							  " ORDER BY paused_at DESC",
							  1, &type, &value, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read zerobus.stream_tables");
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *name = zerobus_stream_target_table(config,
													   SPI_getvalue(tup, desc, 1),
													   SPI_getvalue(tup, desc, 2));

		zerobus_sender_pause(zb->sender, zerobus_sender_target(zb->sender,
															   name));
		if (i == 0)
			zerobus_stream_note_error(shared, SPI_getvalue(tup, desc, 3));
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(oldcxt);
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
		ZbRelation *rel = hash_search(zb->relations, &msg->relids[i],
									  HASH_FIND, NULL);

		if (i > 0)
			appendStringInfoString(&names, ", ");
		if (rel)
			appendStringInfoString(&names, rel->qualname);
		else
			appendStringInfo(&names, "relation %u", msg->relids[i]);
	}
	SpinLockAcquire(&shared->mutex);
	shared->truncates += msg->n_relids;
	SpinLockRelease(&shared->mutex);
	ereport(WARNING,
			(errmsg("truncate of %s is not propagated to Zerobus", names.data),
			 errdetail("Delta change data feed has no truncate change type."),
			 errhint("Truncate the target tables in Databricks if needed.")));
	pfree(names.data);
	zerobus__output__truncate__free_unpacked(msg, NULL);
}

/* One zerobus.output.Message. */
static void
handle_message(const uint8 *p, size_t len)
{
	const uint8 *end = p + len;
	uint64		tag;
	uint64		sublen;

	if (!read_varint(&p, end, &tag) || (tag & 7) != 2 ||
		!read_varint(&p, end, &sublen) || sublen != (uint64) (end - p))
		protocol_error("bad Message framing");

	switch (tag >> 3)
	{
		case 4:					/* change */
			handle_change(p, end);
			break;
		case 1:					/* begin */
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
				zb->cur_txn->commit_time = (TimestampTz) msg->commit_time -
					((POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * USECS_PER_SEC);
				zerobus__output__begin__free_unpacked(msg, NULL);
				break;
			}
		case 2:					/* commit */
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
				SpinLockAcquire(&shared->mutex);
				shared->received_lsn = zb->received_lsn;
				SpinLockRelease(&shared->mutex);
				zerobus__output__commit__free_unpacked(msg, NULL);
				advance_confirm();
				break;
			}
		case 3:					/* relation */
			handle_relation(p, sublen);
			break;
		case 5:					/* truncate */
			handle_truncate(p, sublen);
			break;
		case 6:					/* logical message: not requested */
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
		handle_message((const uint8 *) buf + 25, len - 25);
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

		if (zerobus_sender_backpressured(zb->sender))
			return;
		len = walrcv_receive(zb->rcv, &buf, &fd);
		if (len == 0)
		{
			zb->rcv_sock = fd;
			zb->drained = true;
			zerobus_sender_flush_all(zb->sender);
			return;
		}
		if (len < 0)
			ereport(ERROR,
					(errmsg("the walsender ended replication of slot \"%s\"",
							config->slot_name)));
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

	n = zerobus_sender_sockets(zb->sender, socks, events, ZB_MAX_SOCKETS,
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
		zb->wes = CreateWaitEventSet(zb->cxt, n + 3);
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
	Datum		value = CStringGetTextDatum(config->slot_name);
	char	   *wal_status = NULL;
	bool		exists;

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("SELECT wal_status FROM pg_catalog.pg_replication_slots"
							  " WHERE slot_name = $1",
							  1, &type, &value, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read pg_replication_slots");
	exists = SPI_processed > 0;
	if (exists)
	{
		char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		wal_status = v ? MemoryContextStrdup(worker_cxt, v) : NULL;
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();

	if (!exists)
		zerobus_worker_fail("replication slot \"%s\" of stream \"%s\" does not exist. Hint: SELECT zerobus.recover_stream('%s'); creates it again and snapshots every table again.",
							config->slot_name, config->name, config->name);
	if (wal_status && strcmp(wal_status, "lost") == 0)
		zerobus_worker_fail("replication slot \"%s\" of stream \"%s\" was invalidated: the WAL it still needed was removed (wal_status lost, see max_slot_wal_keep_size), so changes were lost. Hint: SELECT zerobus.recover_stream('%s'); replaces the slot and snapshots every table again.",
							config->slot_name, config->name, config->name);
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

	zb = MemoryContextAllocZero(worker_cxt, sizeof(ZbSession));
	zb->cxt = AllocSetContextCreate(worker_cxt, "zerobus session",
									ALLOCSET_DEFAULT_SIZES);
	zb->txn_cxt = AllocSetContextCreate(zb->cxt, "zerobus transactions",
										ALLOCSET_DEFAULT_SIZES);
	zb->rcv_sock = PGINVALID_SOCKET;
	dlist_init(&zb->txns);
	MemoryContextSwitchTo(zb->cxt);

	ctl.keysize = sizeof(uint32);
	ctl.entrysize = sizeof(ZbRelation);
	ctl.hcxt = zb->cxt;
	zb->relations = hash_create("zerobus relations", 64, &ctl,
								HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	check_slot();
	zb->sender = zerobus_sender_create(config, shared, zb->cxt,
									   errbuf, sizeof(errbuf));
	if (zb->sender == NULL)
		zerobus_worker_fail("invalid Zerobus endpoint: %s", errbuf);
	load_paused_targets();

	if (config->conninfo)
		conninfo = config->conninfo;
	else
	{
		StartTransactionCommand();
		MemoryContextSwitchTo(zb->cxt);
		conninfo = default_conninfo();
		CommitTransactionCommand();
		MemoryContextSwitchTo(zb->cxt);
	}
	appname = psprintf("zerobus:%s", config->name);
	zb->rcv = walrcv_connect(conninfo, true, appname, &err);
	if (zb->rcv == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not connect to the slot of zerobus stream \"%s\": %s",
						config->name, err)));

	memset(&options, 0, sizeof(options));
	options.logical = true;
	options.slotname = config->slot_name;
	options.startpoint = InvalidXLogRecPtr;
	options.proto.logical.proto_version = 1;
	options.proto.logical.publication_names =
		list_make1(makeString(config->publication));
	if (!walrcv_startstreaming(zb->rcv, &options))
		ereport(ERROR,
				(errmsg("could not start replication from slot \"%s\"",
						config->slot_name)));

	zb_now = GetCurrentTimestamp();
	zerobus_sender_set_now(zb->sender, zb_now);
	zb->last_feedback = zb_now;
	zb->snapshot = zerobus_snapshot_create(config, zb->sender, zb->cxt);
	SpinLockAcquire(&shared->mutex);
	shared->state = ZB_STATE_STREAMING;
	SpinLockRelease(&shared->mutex);
}

/* Releases what a session holds outside its memory context. */
static void
end_session(void)
{
	if (zb == NULL)
		return;
	if (zb->wes)
		FreeWaitEventSet(zb->wes);
	if (zb->sender)
		zerobus_sender_destroy(zb->sender);
	if (zb->rcv)
		walrcv_disconnect(zb->rcv);
	MemoryContextSwitchTo(worker_cxt);
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
		!zerobus_sender_backpressured(zb->sender) &&
		zerobus_sender_inflight_bytes(zb->sender) <
		(size_t) config->max_inflight_bytes / 2;
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
		zerobus_sender_set_now(zb->sender, zb_now);
		zb->drained = false;
		receive();
		if (snapshot_can_read())
		{
			zerobus_snapshot_read_chunk(zb->snapshot);
			zerobus_sender_flush_all(zb->sender);
		}
		zb_now = GetCurrentTimestamp();
		zerobus_sender_set_now(zb->sender, zb_now);
		timeout = zerobus_sender_process(zb->sender);
		if (zb->drained)
			zerobus_sender_flush_all(zb->sender);	/* after the acks */
		advance_confirm();
		zerobus_snapshot_progress(zb->snapshot);
		zerobus_sender_check_timers(zb->sender, &timeout);
		zerobus_snapshot_check_timers(zb->snapshot, zb_now, &timeout);
		send_feedback(&timeout);
		if (wal_receiver_status_interval > 0)
			zerobus_timeout_until(&timeout, zb_now,
								  TimestampTzPlusMilliseconds(zb->last_feedback,
															  wal_receiver_status_interval * 1000));

		waiting = zerobus_sender_backpressured(zb->sender);
		snapshot_ready = snapshot_can_read();
		if ((!zb->drained && !waiting) || snapshot_ready ||
			zerobus_sender_unsent(zb->sender))
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
		repeated_error = MemoryContextStrdup(worker_cxt, edata->message);
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
	long		backoff = ZB_BACKOFF_MIN_MS;

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

	shared = zerobus_stream_shared(DatumGetInt32(main_arg), true);
	SpinLockAcquire(&shared->mutex);
	shared->pid = MyProcPid;
	shared->state = ZB_STATE_STARTING;
	shared->started_at = GetCurrentTimestamp();
	SpinLockRelease(&shared->mutex);

	worker_cxt = AllocSetContextCreate(TopMemoryContext, "zerobus worker",
									   ALLOCSET_DEFAULT_SIZES);
	load_config(false);
	pgstat_report_appname(psprintf("zerobus:%s", config->name));

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

			/* also an error raised while committing (not "in progress") */
			AbortOutOfAnyTransaction();
			MemoryContextSwitchTo(worker_cxt);
			EmitErrorReport();
			edata = CopyErrorData();
			FlushErrorState();

			progressed = zb && zb->sender &&
				zerobus_sender_got_ack(zb->sender);
			if (progressed)
				backoff = ZB_BACKOFF_MIN_MS;
			end_session();
			if (failure_repeats(edata, progressed))
				zerobus_worker_fail("replication from slot \"%s\" failed %d times in a row at the same position: %s. "
									"Hint: Remove the cause if it can be, then call SELECT zerobus.resume_stream('%s'); "
									"a change that can never be decoded can only be skipped by advancing the slot past it "
									"(pg_replication_slot_advance), which loses it.",
									config->slot_name, ZB_REPEATED_FAILURES,
									edata->message, config->name);

			zerobus_stream_note_error(shared, edata->message);
			SpinLockAcquire(&shared->mutex);
			shared->state = ZB_STATE_RETRYING;
			shared->reconnects++;
			SpinLockRelease(&shared->mutex);
			FreeErrorData(edata);
		}
		PG_END_TRY();

		backoff_sleep(backoff);
		backoff = Min(backoff * 2, ZB_BACKOFF_MAX_MS);
	}
}
