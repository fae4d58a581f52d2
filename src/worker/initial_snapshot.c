/*-------------------------------------------------------------------------
 *
 * initial_snapshot.c
 *	  Initial snapshots: the rows a published table already holds, sent as
 *	  '_change_type = snapshot' records that, together with the change
 *	  stream, equal the source table.
 *
 * Bookkeeping.  zerobus.stream_tables has one row per table the stream's
 * publication publishes (the partition root when it publishes via the
 * root, else the leaves).  create_stream() fills it in the slot's
 * transaction, 'pending' or, with snapshot => false, 'skipped'; the worker
 * compares it with the publication at session start, every
 * ZB_SNAPSHOT_SYNC_MS and when a Relation message names a table it does
 * not know, so a table added to the publication later is snapshotted alone
 * and a table no longer published (or dropped) loses its row.
 * zerobus.snapshot_table() puts one row back to 'pending'; an idle worker
 * looks for such rows every ZB_SNAPSHOT_POLL_MS.
 *
 * Chunks.  A table is read in key order (its primary key, else its replica
 * identity index) in chunks of zerobus.snapshot_chunk_rows rows, each in a
 * short transaction of the worker:
 *
 *	SELECT r, <key columns>::text FROM [ONLY] <table> r
 *	 WHERE (<key columns>) > (<last key>) AND (<publication row filter>)
 *	 ORDER BY <key columns> LIMIT <chunk rows> FOR SHARE OF r NOWAIT
 *
 * The rows reach a DestReceiver one at a time, as the LockRows node returns
 * them locked, and the receiver stops the query once the rows kept reach
 * an eighth of zerobus.max_inflight_bytes, so a chunk of wide (TOASTed)
 * rows ends early, after its last row received, whose key ends the chunk;
 * a single larger row goes alone.  Rows the query did not return were not
 * locked and are not in the chunk.
 *
 * A table with neither a primary key nor a replica identity index is read
 * in block ranges instead, resumable by block number:
 *
 *	SELECT r FROM [ONLY] <table> r
 *	 WHERE r.ctid >= '(<first block>,0)' AND r.ctid < '(<end block>,0)'
 *	   AND (<publication row filter>) FOR SHARE OF r NOWAIT
 *
 * (a TID range scan), the range sized from the table's density to hold
 * about snapshot_chunk_rows rows and the byte bound above.  The range is
 * always read whole: a row returned by FOR SHARE after a concurrent update
 * is the newest version, whose ctid need not be the scan position, so no
 * row tells where a range cut short would have to resume.  The bound on a
 * chunk of such a table is therefore its range, at least one block.
 *
 * NOWAIT: the chunk never waits for a row lock.  Waiting, it would lock
 * rows in key order while an application transaction locks them in its own
 * order: when that transaction holds a row the chunk reaches and then
 * updates one the chunk locked, the two deadlock, and PostgreSQL aborts the
 * one that completes the cycle, the application's.  Instead a chunk that
 * meets a locked row rolls back (a subtransaction around the query) and is
 * read again later, 10 ms after, then twice as long each time up to 1 s,
 * while the change stream flows on; the first such wait of a table is
 * logged.  A transaction that holds a row lock for long thus holds the
 * snapshot of that table until it ends, as waiting would, without anyone's
 * transaction failing.
 *
 * Still in the chunk's transaction, the worker writes a non-transactional
 * logical message ("zerobus.snapshot", "<stream>:<relid>:<chunk>") whose
 * start LSN H is the chunk's watermark.  Every record of the chunk carries
 * _commit_lsn = H, _seq = its row number in the chunk, _xid = the chunk
 * transaction's xid and _commit_timestamp = the time it was read.  A
 * partitioned table published via its root is read without ONLY, in the
 * root's row type (a keyless one in the same block range of every leaf);
 * everything else with ONLY.
 *
 * Why this is exact.  FOR SHARE blocks every UPDATE and DELETE of a
 * returned row from the moment the row is locked until the chunk
 * transaction ends, and in READ COMMITTED it first waits for a concurrent
 * updater and returns the newest committed version.  So every transaction
 * that changed a returned row committed (its commit record was inserted)
 * before the lock was taken, hence before H, and every later change of the
 * row commits after the chunk transaction, hence after H, since H is the
 * start of a record inserted while the locks are held.  The output plugin's
 * _commit_lsn is the start of a transaction's commit record, so no change
 * record ever ties with H.  Rows a chunk does not return (inserted or
 * deleted concurrently) reach the target through the change stream alone.
 * Applying all records in (_commit_lsn, _seq) order, a snapshot record
 * being an upsert of the whole row, thus yields the source table, in
 * whatever order the records arrive.  The slot is never held for the
 * snapshot: the change stream keeps flowing and confirming between chunks.
 *
 * Keyless tables.  Without a key, a target can only take such a table's
 * inserts (a publication for INSERT only) or, with REPLICA IDENTITY FULL,
 * its updates and deletes as full old rows; folding is then by multiset (a
 * snapshot record adds the row, a change removes one equal row).  The fold
 * equals the source when the table does not change while it is read.  A
 * row inserted, or moved by an UPDATE, into a range not read yet reaches
 * the target twice, through its change record and through the snapshot of
 * that range; a row moved by an UPDATE out of a range not read yet into
 * one already read reaches it once, through its change record only (its
 * delete of the old row finds nothing).  A snapshot of a keyless table is
 * thus at-least-once per row, where a keyed table's is exact.
 *
 * Sending and progress.  Snapshot records go to the target table on a
 * Zerobus stream of their own (the sender's snapshot lane), opened with
 * the descriptor of the table's current record plan.  Each chunk is an
 * ack group in a FIFO; several may be in flight.  When the oldest chunk is
 * fully acked its progress is written to stream_tables (last key, rows,
 * watermark; 'done' after a short chunk), in chunk order, so after a
 * restart of the worker or the server the snapshot resumes after the last
 * acked chunk.  Rows of chunks that were in flight may be sent twice
 * (at-least-once, as everywhere).  A snapshot run is identified by
 * snapshot_started_at: progress of an older run (before snapshot_table()
 * restarted the table) is dropped.
 *
 * src/worker/initial_snapshot.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/ilist.h"
#include "miscadmin.h"
#include "nodes/params.h"
#include "replication/message.h"
#include "storage/block.h"
#include "tcop/dest.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "initial_snapshot.h"
#include "store.h"
#include "worker.h"
#include "zerobus.h"

/* Prefix of the watermark messages */
#define ZB_SNAPSHOT_MESSAGE_PREFIX "zerobus.snapshot"

/* Compare stream_tables with the publication this often (ms) */
#define ZB_SNAPSHOT_SYNC_MS		10000

/* An idle worker looks for tables to snapshot this often (ms) */
#define ZB_SNAPSHOT_POLL_MS		1000

/* First and longest delay before a chunk that met a locked row is retried */
#define ZB_SNAPSHOT_LOCKED_MIN_MS	10
#define ZB_SNAPSHOT_LOCKED_MAX_MS	1000

/*
 * Alias of the table in the chunk query.  A column of that name would hide
 * the whole-row reference; '$' cannot appear in a column sent to Zerobus.
 */
#define ZB_ROW_ALIAS			"\"zerobus$row\""

/* A chunk read and handed to the sender, awaiting its acks */
typedef struct SnapChunk
{
	dlist_node	node;			/* in ZerobusSnapshot.chunks */
	ZerobusAckGroup group;
	Oid			relid;
	ZerobusTarget *target;
	TimestampTz run;			/* snapshot_started_at of the table's run */
	int			nkeys;
	char	  **key;			/* key of its last row; NULL when empty */
	int64		nrows;
	XLogRecPtr	lsn;			/* watermark */
	bool		last;			/* the table has no more rows */
	bool		by_block;		/* a block range of a keyless table */
	BlockNumber start_block;	/* its range, when by_block */
	BlockNumber end_block;
} SnapChunk;

/* The table being read */
typedef struct SnapTable
{
	Oid			relid;
	char	   *qualname;		/* schema.table, for messages */
	char	   *target_name;	/* catalog.schema.table */
	TimestampTz run;
	int			nkeys;
	char	  **key;			/* key of the last row read; NULL: start */
	bool		by_block;		/* keyless, resuming at block */
	BlockNumber block;			/* next block to read of a keyless table */
	uint32		blocks;			/* blocks of the last range read */
	double		rows_per_block; /* density of the last range read */
	double		bytes_per_block;
	int64		chunk_no;
	ZerobusTarget *target;
	uint64		call_epoch;		/* sender's descriptor epoch known to
								 * match (zerobus_sender_add) */
} SnapTable;

/*
 * The descriptor a target's snapshot lane last used, with its columns: when
 * Zerobus accepts it, they become the target's accepted columns
 * (zerobus_snapshot_accepted), so that a table whose rows came only from
 * its snapshot so far can be altered by schema_policy evolve, and explained
 * by the pause policy, as one whose changes were streamed.  One per target
 * snapshotted in this session.
 */
typedef struct SnapDescriptor
{
	ZerobusTarget *target;
	Oid			relid;
	char	   *descriptor;
	int			descriptor_len;
	ZerobusColumnSet columns;
	const char *notice;			/* of the columns left out, or NULL */
	bool		stored;			/* accepted, and stored */
} SnapDescriptor;

struct ZerobusSnapshot
{
	MemoryContext cxt;
	ZerobusWorkerState *ws;		/* the stream, its sender, its column drops */
	SnapTable  *cur;			/* NULL: pick the next table */
	bool		idle;			/* nothing to read at the last look */
	List	   *finished;		/* relids read to the end, last chunk unacked */
	List	   *known;			/* relids in stream_tables at the last sync */
	List	   *descriptors;	/* SnapDescriptor */
	dlist_head	chunks;			/* SnapChunk, in reading order */
	bool		sync_due;
	TimestampTz next_sync;
	TimestampTz next_poll;
	TimestampTz locked_until;	/* a row of cur was locked: not before */
	int			locked_ms;		/* the next delay after a locked row; 0
								 * while cur's last chunk met none */
};

/* Reads the relids of the stream's stream_tables rows into snap->known. */
static void
load_known(ZerobusSnapshot *snap)
{
	Oid			argtypes[1] = {INT4OID};
	Datum		args[1] = {Int32GetDatum(snap->ws->config->id)};
	MemoryContext oldcxt;
	uint64		i;

	if (SPI_execute_with_args("SELECT relid FROM zerobus.stream_tables"
							  " WHERE stream_id = $1",
							  1, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read zerobus.stream_tables");
	list_free(snap->known);
	snap->known = NIL;
	oldcxt = MemoryContextSwitchTo(snap->cxt);
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		snap->known = lappend_oid(snap->known,
								  DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
																 SPI_tuptable->tupdesc,
																 1, &isnull)));
	}
	MemoryContextSwitchTo(oldcxt);
}

/* Syncs stream_tables with the publication, in a transaction of its own. */
static void
sync_now(ZerobusSnapshot *snap, TimestampTz now)
{
	ZerobusXact xact;

	zerobus_xact_begin(&xact, true);
	zerobus_stream_tables_sync(snap->ws->config->id);
	load_known(snap);
	zerobus_xact_end(&xact);

	snap->sync_due = false;
	snap->idle = false;
	snap->next_sync = TimestampTzPlusMilliseconds(now, ZB_SNAPSHOT_SYNC_MS);
}

/* Deletes the stream_tables row of a table that went away, saying so. */
static void
forget_table(ZerobusSnapshot *snap, Oid relid, const char *qualname,
			 const char *why)
{
	Oid			argtypes[2] = {INT4OID, OIDOID};
	Datum		args[2] = {Int32GetDatum(snap->ws->config->id),
	ObjectIdGetDatum(relid)};

	if (SPI_execute_with_args("DELETE FROM zerobus.stream_tables"
							  " WHERE stream_id = $1 AND relid = $2",
							  2, argtypes, args, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not update zerobus.stream_tables");
	ereport(LOG,
			(errmsg("zerobus stream \"%s\": snapshot of table %s abandoned: %s",
					snap->ws->config->name, qualname, why)));
}

/* ----------------------------------------------------------------
 * Reading chunks
 * ----------------------------------------------------------------
 */

/* A copy of a key of nkeys values in snap->cxt (NULL stays NULL) */
static char **
copy_key(ZerobusSnapshot *snap, char **key, int nkeys)
{
	char	  **copy;
	int			i;

	if (key == NULL)
		return NULL;
	copy = MemoryContextAlloc(snap->cxt, sizeof(char *) * nkeys);
	for (i = 0; i < nkeys; i++)
		copy[i] = MemoryContextStrdup(snap->cxt, key[i]);
	return copy;
}

static void
free_key(char **key, int nkeys)
{
	int			i;

	if (key == NULL)
		return;
	for (i = 0; i < nkeys; i++)
		pfree(key[i]);
	pfree(key);
}

/*
 * Remembers the descriptor t's rows are sent with, and the columns it
 * gives the target (plan's, without those drop leaves out), unless it is
 * the one already known.
 */
static void
note_descriptor(ZerobusSnapshot *snap, SnapTable *t,
				const ZerobusRecordPlan *plan, const char *descriptor,
				int descriptor_len, const ZerobusColumnDrop *drop)
{
	SnapDescriptor *d = NULL;
	ListCell   *lc;
	MemoryContext oldcxt;

	foreach(lc, snap->descriptors)
	{
		if (((SnapDescriptor *) lfirst(lc))->target == t->target)
			d = lfirst(lc);
	}
	if (d != NULL && d->descriptor_len == descriptor_len &&
		memcmp(d->descriptor, descriptor, descriptor_len) == 0)
		return;

	oldcxt = MemoryContextSwitchTo(snap->cxt);
	if (d == NULL)
	{
		d = palloc0(sizeof(SnapDescriptor));
		d->target = t->target;
		snap->descriptors = lappend(snap->descriptors, d);
	}
	else
	{
		pfree(d->descriptor);
		for (int i = 0; i < d->columns.ncolumns; i++)
		{
			pfree(d->columns.columns[i].name);
			pfree(d->columns.columns[i].delta_type);
		}
		pfree(d->columns.columns);
	}
	d->relid = t->relid;
	d->descriptor = palloc(descriptor_len);
	memcpy(d->descriptor, descriptor, descriptor_len);
	d->descriptor_len = descriptor_len;
	zerobus_schema_from_plan(plan, &d->columns);
	if (drop != NULL)
		zerobus_reaction_drop_columns(&d->columns, drop);
	d->notice = drop ? drop->notice : NULL;
	d->stored = false;
	MemoryContextSwitchTo(oldcxt);
}

/*
 * A target accepted the descriptor of a call of no Relation message: when
 * it is the one its snapshot rows go with, stores its columns as the
 * target's accepted columns (once per descriptor).
 */
void
zerobus_snapshot_accepted(ZerobusSnapshot *snap, const ZerobusOutcome *outcome)
{
	ListCell   *lc;

	foreach(lc, snap->descriptors)
	{
		SnapDescriptor *d = lfirst(lc);

		if (d->target != outcome->target || d->stored ||
			d->descriptor_len != outcome->descriptor_len ||
			memcmp(d->descriptor, outcome->descriptor, d->descriptor_len) != 0)
			continue;
		zerobus_reaction_store_accepted(snap->ws, d->relid, &d->columns,
										d->notice);
		d->stored = true;
	}
}

/* Stops reading snap->cur (finished, gone, or restarted meanwhile). */
static void
drop_current(ZerobusSnapshot *snap)
{
	SnapTable  *t = snap->cur;

	free_key(t->key, t->nkeys);
	pfree(t->qualname);
	pfree(t->target_name);
	pfree(t);
	snap->cur = NULL;
	snap->locked_ms = 0;
}

/*
 * About how many rows table relid holds, over its partitions: their
 * reltuples, or for one never analyzed nor vacuumed its size at 100 bytes
 * a row.  Enough to tell a bulk from a small table.  Needs SPI.
 */
static double
estimated_rows(Oid relid)
{
	bool		isnull;
	Datum		rows;

	if (SPI_execute_with_args("SELECT coalesce(sum(CASE WHEN c.reltuples >= 0"
							  "  THEN c.reltuples::float8"
							  "  ELSE pg_catalog.pg_relation_size(pt.relid) / 100.0 END), 0)"
							  " FROM " ZB_PARTITION_LEAVES("$1") " pt"
							  " JOIN pg_catalog.pg_class c ON c.oid = pt.relid",
							  1, (Oid[]) {OIDOID},
							  (Datum[]) {ObjectIdGetDatum(relid)},
							  NULL, true, 0) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not read the size of table %u", relid);
	rows = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
						 &isnull);
	return isnull ? 0 : DatumGetFloat8(rows);
}

/*
 * Picks the table to read next (one being read before a restart first,
 * then pending ones), marks it running and makes it snap->cur; sets
 * snap->idle when there is none.  Needs a transaction and SPI.
 */
static void
pick_table(ZerobusSnapshot *snap, TimestampTz now)
{
	Oid			argtypes[3] = {INT4OID, OIDARRAYOID, TEXTOID};
	Datum		args[3];
	char	   *refusal;
	Datum	   *finished;
	ListCell   *lc;
	int			n = 0;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;
	bool		key_isnull;
	SnapTable  *t;
	MemoryContext oldcxt;
	char	   *target;
	Datum		key;

	finished = palloc(sizeof(Datum) * Max(list_length(snap->finished), 1));
	foreach(lc, snap->finished)
		finished[n++] = ObjectIdGetDatum(lfirst_oid(lc));
	args[0] = Int32GetDatum(snap->ws->config->id);
	args[1] = PointerGetDatum(construct_array(finished, n, OIDOID, sizeof(Oid),
											  true, TYPALIGN_INT));
	if (SPI_execute_with_args("SELECT relid, schema_name, table_name,"
							  " snapshot_state = 'running', snapshot_key,"
							  " snapshot_started_at"
							  " FROM zerobus.stream_tables"
							  " WHERE stream_id = $1"
							  " AND snapshot_state IN ('pending', 'running')"
							  " AND paused_reason IS NULL"
							  " AND relid <> ALL ($2)"
							  " ORDER BY snapshot_state = 'running' DESC, relid"
							  " LIMIT 1",
							  2, argtypes, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read zerobus.stream_tables");
	if (SPI_processed == 0)
	{
		snap->idle = true;
		snap->next_poll = TimestampTzPlusMilliseconds(now, ZB_SNAPSHOT_POLL_MS);
		return;
	}

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;

	/* a table the owner may not have read is paused, not read */
	refusal = zerobus_reaction_read_refusal(snap->ws->config,
											DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull)),
											quote_qualified_identifier(SPI_getvalue(tup, desc, 2),
																	   SPI_getvalue(tup, desc, 3)));
	if (refusal != NULL)
	{
		args[1] = SPI_getbinval(tup, desc, 1, &isnull);
		argtypes[1] = OIDOID;
		args[2] = CStringGetTextDatum(refusal);
		if (SPI_execute_with_args("UPDATE zerobus.stream_tables"
								  " SET paused_reason = $3, paused_at = pg_catalog.now()"
								  " WHERE stream_id = $1 AND relid = $2",
								  3, argtypes, args, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not write zerobus.stream_tables");
		ereport(LOG,
				(errmsg("zerobus stream \"%s\": table not snapshotted: %s",
						snap->ws->config->name, refusal)));
		pick_table(snap, now);
		return;
	}

	oldcxt = MemoryContextSwitchTo(snap->cxt);
	t = palloc0(sizeof(SnapTable));
	t->relid = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
	t->qualname = quote_qualified_identifier(SPI_getvalue(tup, desc, 2),
											 SPI_getvalue(tup, desc, 3));
	target = zerobus_stream_target_table(snap->ws->config,
										 SPI_getvalue(tup, desc, 2),
										 SPI_getvalue(tup, desc, 3));
	t->target = zerobus_sender_target(snap->ws->sender, target);
	t->target_name = target;
	key = SPI_getbinval(tup, desc, 5, &key_isnull);
	if (DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull)))
	{
		/* resume after the last acked chunk */
		t->run = DatumGetTimestampTz(SPI_getbinval(tup, desc, 6, &isnull));
		if (!key_isnull)
		{
			Datum	   *elems;
			bool	   *elem_nulls;
			int			nelems;
			int			i;

			deconstruct_array(DatumGetArrayTypeP(key), TEXTOID, -1, false,
							  TYPALIGN_INT, &elems, &elem_nulls, &nelems);
			if (nelems == 2 && elem_nulls[0] && !elem_nulls[1])
			{
				/* {NULL, block} of a keyless table, see progress */
				t->by_block = true;
				t->block = (BlockNumber) strtoul(TextDatumGetCString(elems[1]),
												 NULL, 10);
			}
			else
			{
				t->nkeys = nelems;
				t->key = palloc(sizeof(char *) * t->nkeys);
				for (i = 0; i < t->nkeys; i++)
					t->key[i] = TextDatumGetCString(elems[i]);
			}
		}
	}
	else
	{
		/* a new run */
		t->run = GetCurrentTimestamp();
		if (SPI_execute_with_args("UPDATE zerobus.stream_tables"
								  " SET snapshot_state = 'running',"
								  " snapshot_started_at = $3,"
								  " snapshot_key = NULL, snapshot_rows = 0,"
								  " snapshot_lsn = NULL,"
								  " snapshot_finished_at = NULL"
								  " WHERE stream_id = $1 AND relid = $2",
								  3, (Oid[]) {INT4OID, OIDOID, TIMESTAMPTZOID},
								  (Datum[]) {args[0], ObjectIdGetDatum(t->relid),
									  TimestampTzGetDatum(t->run)},
								  NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "could not update zerobus.stream_tables");
		ereport(LOG,
				(errmsg("zerobus stream \"%s\": snapshot of table %s started",
						snap->ws->config->name, t->qualname)));
	}
	MemoryContextSwitchTo(oldcxt);
	/* a large table comes as a bulk: it gets its streams at once */
	zerobus_sender_expect(snap->ws->sender, t->target,
						  estimated_rows(t->relid));
	snap->cur = t;
}

/*
 * The key columns chunks are ordered by: the primary key, else the replica
 * identity index; none (0) for a table with neither.
 */
static int
key_columns(Relation rel, AttrNumber **attnums)
{
	Oid			indexoid = zerobus_primary_key_index(rel);
	Relation	index;
	int			n;
	int			i;

	if (!OidIsValid(indexoid))
		indexoid = RelationGetReplicaIndex(rel);
	if (!OidIsValid(indexoid))
		return 0;
	index = index_open(indexoid, AccessShareLock);
	n = index->rd_index->indnkeyatts;
	*attnums = palloc(sizeof(AttrNumber) * n);
	for (i = 0; i < n; i++)
		(*attnums)[i] = index->rd_index->indkey.values[i];
	index_close(index, AccessShareLock);
	return n;
}

/*
 * The bytes of rows one chunk may hold: an eighth of max_inflight_bytes
 * (8 MB by default).  The worker reads a chunk only while less than half of
 * max_inflight_bytes is unacked, so a chunk never takes the records in
 * flight past five eighths of it, which leaves the change stream room; the
 * worker holds a chunk twice at most (its rows, then its records), well
 * below the sender's own bound.  A row larger than this goes alone.
 */
static size_t
chunk_max_bytes(ZerobusSnapshot *snap)
{
	return (size_t) snap->ws->config->max_inflight_bytes / 8;
}

/*
 * The block range the next chunk of a keyless table t reads, starting at
 * t->block: about zerobus.snapshot_chunk_rows rows and chunk_max_bytes()
 * bytes, going by the density of the chunk before and the table's
 * statistics, whichever is denser, and at least one block.  Sets
 * chunk->end_block, and chunk->last when the range reaches the table's
 * end (the largest leaf for a partitioned table).  Needs SPI.
 */
static void
block_range(ZerobusSnapshot *snap, SnapTable *t, SnapChunk *chunk)
{
	Oid			argtypes[1] = {OIDOID};
	Datum		args[1] = {ObjectIdGetDatum(t->relid)};
	bool		isnull;
	uint64		nblocks;
	double		rows_per_block;
	double		bytes_per_block;
	uint64		n;

	if (SPI_execute_with_args("SELECT coalesce(max(pg_catalog.pg_relation_size(pt.relid)), 0)"
							  "  / pg_catalog.current_setting('block_size')::int8,"
							  " coalesce(sum(c.reltuples) FILTER (WHERE c.reltuples >= 0)"
							  "  / nullif(sum(c.relpages) FILTER (WHERE c.reltuples >= 0), 0), 0)::float8,"
							  " coalesce(sum(pg_catalog.pg_table_size(pt.relid))::float8"
							  "  / nullif(sum(pg_catalog.pg_relation_size(pt.relid)), 0)"
							  "  * pg_catalog.current_setting('block_size')::int8, 0)"
							  " FROM " ZB_PARTITION_LEAVES("$1") " pt"
							  " JOIN pg_catalog.pg_class c ON c.oid = pt.relid",
							  1, argtypes, args, NULL, true, 0) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not read the size of table %s", t->qualname);
	nblocks = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
	rows_per_block = Max(t->rows_per_block,
						 DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc,
													  2, &isnull)));
	bytes_per_block = Max(t->bytes_per_block,
						  DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0],
													   SPI_tuptable->tupdesc,
													   3, &isnull)));

	/* nothing known of the density yet: double the range of the last chunk */
	if (rows_per_block > 0)
		n = (uint64) (zerobus_snapshot_chunk_rows / rows_per_block);
	else
		n = (uint64) t->blocks * 2;
	if (bytes_per_block > 0)
		n = Min(n, (uint64) (chunk_max_bytes(snap) / bytes_per_block));
	n = Max(n, 1);

	chunk->start_block = t->block;
	chunk->end_block = (BlockNumber) Min((uint64) t->block + n,
										 Max(nblocks, t->block));
	chunk->last = chunk->end_block >= nblocks;
}

/*
 * Builds the chunk query of t (see the file header) and the column list of
 * its publication, and for a keyless table the block range of the chunk.
 * Returns false when the publication no longer publishes the table.  Needs
 * SPI.
 */
static bool
chunk_query(ZerobusSnapshot *snap, SnapTable *t, Relation rel,
			SnapChunk *chunk, StringInfo sql, Bitmapset **columns,
			int *nkeys)
{
	Oid			argtypes[2] = {INT4OID, OIDOID};
	Datum		args[2] = {Int32GetDatum(snap->ws->config->id),
	ObjectIdGetDatum(t->relid)};
	TupleDesc	desc = RelationGetDescr(rel);
	AttrNumber *keys = NULL;
	char	   *filter;
	bool		isnull;
	Datum		attnames;
	const char *sep = " WHERE ";
	int			i;

	if (SPI_execute_with_args("SELECT attnames, rowfilter FROM ("
							  ZB_PUBLISHED_TABLES ") p WHERE p.relid = $2",
							  2, argtypes, args, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the publication of zerobus stream \"%s\"",
			 snap->ws->config->name);
	if (SPI_processed == 0)
		return false;

	*columns = NULL;
	attnames = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
							 1, &isnull);
	if (!isnull)
	{
		Datum	   *elems;
		int			nelems;

		deconstruct_array(DatumGetArrayTypeP(attnames), NAMEOID, NAMEDATALEN,
						  false, TYPALIGN_CHAR, &elems, NULL, &nelems);
		for (i = 0; i < nelems; i++)
		{
			AttrNumber	attnum = get_attnum(t->relid,
											NameStr(*DatumGetName(elems[i])));

			if (attnum != InvalidAttrNumber)
				*columns = bms_add_member(*columns, attnum);
		}
	}
	filter = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);

	*nkeys = key_columns(rel, &keys);
	if ((t->key != NULL && t->nkeys != *nkeys) ||
		(t->by_block && *nkeys > 0))
	{
		ereport(LOG,
				(errmsg("zerobus stream \"%s\": the key of table %s changed, its snapshot restarts from the first row",
						snap->ws->config->name, t->qualname)));
		free_key(t->key, t->nkeys);
		t->key = NULL;
		t->by_block = false;
		t->block = 0;
	}

	appendStringInfoString(sql, "SELECT " ZB_ROW_ALIAS);
	for (i = 0; i < *nkeys; i++)
		appendStringInfo(sql, ", " ZB_ROW_ALIAS ".%s::pg_catalog.text",
						 quote_identifier(NameStr(TupleDescAttr(desc, keys[i] - 1)->attname)));
	appendStringInfo(sql, " FROM %s%s " ZB_ROW_ALIAS,
					 rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE ?
					 "" : "ONLY ", t->qualname);
	if (t->key != NULL)
	{
		appendStringInfoString(sql, " WHERE (");
		for (i = 0; i < *nkeys; i++)
			appendStringInfo(sql, "%s" ZB_ROW_ALIAS ".%s", i ? ", " : "",
							 quote_identifier(NameStr(TupleDescAttr(desc, keys[i] - 1)->attname)));
		appendStringInfoString(sql, ") > (");
		for (i = 0; i < *nkeys; i++)
			appendStringInfo(sql, "%s$%d::%s", i ? ", " : "", i + 1,
							 format_type_with_typemod(TupleDescAttr(desc, keys[i] - 1)->atttypid,
													  TupleDescAttr(desc, keys[i] - 1)->atttypmod));
		appendStringInfoChar(sql, ')');
		sep = " AND ";
	}
	else if (*nkeys == 0)
	{
		block_range(snap, t, chunk);
		appendStringInfo(sql,
						 " WHERE " ZB_ROW_ALIAS ".ctid >= '(%u,0)'::pg_catalog.tid"
						 " AND " ZB_ROW_ALIAS ".ctid < '(%u,0)'::pg_catalog.tid",
						 chunk->start_block, chunk->end_block);
		sep = " AND ";
	}
	if (filter != NULL)
		appendStringInfo(sql, "%s(%s)", sep, filter);
	if (*nkeys > 0)
	{
		appendStringInfoString(sql, " ORDER BY ");
		for (i = 0; i < *nkeys; i++)
			appendStringInfo(sql, "%s" ZB_ROW_ALIAS ".%s", i ? ", " : "",
							 quote_identifier(NameStr(TupleDescAttr(desc, keys[i] - 1)->attname)));
		appendStringInfo(sql, " LIMIT %d", zerobus_snapshot_chunk_rows);
	}
	appendStringInfoString(sql, " FOR SHARE OF " ZB_ROW_ALIAS " NOWAIT");
	return true;
}

/*
 * Receives the rows of a chunk query one at a time, as the executor's
 * LockRows node returns them locked: keeps a copy of each whole row (its
 * values detoasted) and the key of the last one, and stops the query once
 * the rows kept reach max_bytes, so that a chunk of wide rows ends early.
 * Only the rows returned are locked and kept, so the chunk is exactly the
 * rows received.
 */
typedef struct SnapReceiver
{
	DestReceiver pub;
	MemoryContext cxt;			/* the rows and the key array */
	MemoryContext key_cxt;		/* the key values, reset for every row */
	MemoryContext row_cxt;		/* scratch, reset for every row */
	HeapTupleHeader *rows;
	int64		nrows;
	int64		maxrows;
	size_t		bytes;
	size_t		max_bytes;		/* 0: no bound (block ranges) */
	int			nkeys;
	char	  **key;			/* of the last row; nkeys values */
} SnapReceiver;

static bool
receive_row(TupleTableSlot *slot, DestReceiver *self)
{
	SnapReceiver *r = (SnapReceiver *) self;
	MemoryContext oldcxt;
	HeapTupleHeader th;
	uint32		len;
	bool		isnull;
	int			k;

	MemoryContextReset(r->row_cxt);
	oldcxt = MemoryContextSwitchTo(r->row_cxt);
	th = DatumGetHeapTupleHeader(slot_getattr(slot, 1, &isnull));
	len = HeapTupleHeaderGetDatumLength(th);
	if (r->nrows == r->maxrows)
	{
		r->maxrows *= 2;
		r->rows = repalloc(r->rows, sizeof(HeapTupleHeader) * r->maxrows);
	}
	r->rows[r->nrows] = MemoryContextAlloc(r->cxt, len);
	memcpy(r->rows[r->nrows], th, len);
	r->nrows++;
	r->bytes += len;

	if (r->nkeys > 0)
	{
		MemoryContextReset(r->key_cxt);
		MemoryContextSwitchTo(r->key_cxt);
		for (k = 0; k < r->nkeys; k++)
			r->key[k] = TextDatumGetCString(slot_getattr(slot, k + 2, &isnull));
	}
	MemoryContextSwitchTo(oldcxt);
	return r->max_bytes == 0 || r->bytes < r->max_bytes;
}

static void
receive_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
}

static void
receive_shutdown(DestReceiver *self)
{
}

/*
 * Runs the chunk query of t into r, whose cxt, nkeys and max_bytes the
 * caller has set; the key of the last row read, if any, gives the
 * parameters.
 *
 * The query runs as the table's owner, as a security-restricted operation
 * (as PostgreSQL's own table synchronization does since 16), with any
 * setting its code changes undone: the casts, operators and functions the
 * key's type brings (an enum's cast to text, a domain's check, a row
 * filter) were written by whoever owns the type, and must never run with
 * the worker's superuser rights.  The table's owner reads its own table,
 * FOR SHARE included.  Returns false, the chunk read to no effect, when a
 * row to return was locked by another transaction (see NOWAIT in the file
 * header).
 */
static bool
run_chunk_query(SnapTable *t, Oid table_owner, const char *sql,
				SnapReceiver *r)
{
	SPIExecuteOptions options;
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
	int			k;
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool locked = false;

	r->pub.receiveSlot = receive_row;
	r->pub.rStartup = receive_startup;
	r->pub.rShutdown = receive_shutdown;
	r->pub.rDestroy = receive_shutdown;
	r->pub.mydest = DestNone;
	r->maxrows = 64;
	r->rows = MemoryContextAlloc(r->cxt, sizeof(HeapTupleHeader) * r->maxrows);
	r->key = MemoryContextAllocZero(r->cxt, sizeof(char *) * Max(r->nkeys, 1));
	r->key_cxt = AllocSetContextCreate(r->cxt, "zerobus snapshot key",
									   ALLOCSET_SMALL_SIZES);
	r->row_cxt = AllocSetContextCreate(r->cxt, "zerobus snapshot row",
									   ALLOCSET_DEFAULT_SIZES);

	memset(&options, 0, sizeof(options));
	options.dest = &r->pub;
	if (t->key != NULL)
	{
		options.params = makeParamList(r->nkeys);
		for (k = 0; k < r->nkeys; k++)
		{
			ParamExternData *prm = &options.params->params[k];

			prm->value = CStringGetTextDatum(t->key[k]);
			prm->isnull = false;
			prm->pflags = PARAM_FLAG_CONST;
			prm->ptype = TEXTOID;
		}
	}
	GetUserIdAndSecContext(&save_userid, &save_sec_context);

	/*
	 * A locked row (NOWAIT) rolls the subtransaction back, which also gives
	 * back the user, the settings and the row locks taken so far.
	 */
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		SetUserIdAndSecContext(table_owner,
							   save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
							   SECURITY_RESTRICTED_OPERATION);
		save_nestlevel = NewGUCNestLevel();
		if (SPI_execute_extended(sql, &options) < 0)
			elog(ERROR, "snapshot query failed on table %s", t->qualname);
		AtEOXact_GUC(false, save_nestlevel);
		SetUserIdAndSecContext(save_userid, save_sec_context);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		if (geterrcode() != ERRCODE_LOCK_NOT_AVAILABLE)
			PG_RE_THROW();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		locked = true;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return !locked;
}

/*
 * Writes the chunk's watermark, a non-transactional logical message, and
 * returns its start LSN.  The caller must still hold the row locks of the
 * chunk.
 */
static XLogRecPtr
write_watermark(ZerobusSnapshot *snap, SnapTable *t)
{
	char	   *content = psprintf("%s:%u:" INT64_FORMAT, snap->ws->config->name,
								   t->relid, t->chunk_no);

	(void) zerobus_log_logical_message(ZB_SNAPSHOT_MESSAGE_PREFIX, content,
									   strlen(content), false);
	pfree(content);
	return ProcLastRecPtr;
}

/*
 * A chunk of table t met a row locked by another transaction: it is read
 * again after a delay that doubles from ZB_SNAPSHOT_LOCKED_MIN_MS to
 * ZB_SNAPSHOT_LOCKED_MAX_MS while its rows stay locked.  The first time in
 * a row, says so in the log: a snapshot held by a long transaction should
 * not look stuck for no reason.
 */
static void
chunk_locked(ZerobusSnapshot *snap, SnapTable *t)
{
	if (snap->locked_ms == 0)
	{
		ereport(LOG,
				(errmsg("zerobus stream \"%s\": snapshot of table %s waits for a row locked by another transaction",
						snap->ws->config->name, t->qualname),
				 errdetail("The chunk is read again once the lock is released; the snapshot never waits on row locks, so that it cannot deadlock with the application.")));
		snap->locked_ms = ZB_SNAPSHOT_LOCKED_MIN_MS;
	}
	snap->locked_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													 snap->locked_ms);
	snap->locked_ms = Min(snap->locked_ms * 2, ZB_SNAPSHOT_LOCKED_MAX_MS);
}

/*
 * Ends the transaction of a chunk that read nothing: closes rel (when
 * open), frees the chunk and its memory, and returns to the caller's
 * memory context.
 */
static void
end_chunk_unread(Relation rel, SnapChunk *chunk, MemoryContext chunk_cxt,
				 MemoryContext caller)
{
	if (rel)
		relation_close(rel, AccessShareLock);
	pfree(chunk);
	MemoryContextDelete(chunk_cxt);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(caller);
}

/*
 * Reads the next chunk of snap->cur in a transaction of its own (see the
 * file header), and hands its records to the sender once that transaction
 * has committed.  Picks the next table first when there is none.
 */
void
zerobus_snapshot_read_chunk(ZerobusSnapshot *snap)
{
	MemoryContext chunk_cxt;
	MemoryContext row_cxt;
	MemoryContext oldcxt;
	SnapTable  *t;
	SnapChunk  *chunk;
	Relation	rel;
	StringInfoData sql;
	StringInfoData records;
	StringInfoData record;		/* one record before stripping */
	size_t	   *lens = NULL;
	Bitmapset  *columns;
	ZerobusRecordPlan *plan = NULL;
	const ZerobusColumnDrop *drop;
	const char *descriptor;
	int			descriptor_len;
	ZerobusChangeMeta meta;
	SnapReceiver recv;
	uint32		array_nulls = 0;	/* arrays sent without NULL elements */
	bool		sendable;
	int			nkeys = 0;
	int64		i;
	const char *p;
	MemoryContext caller = CurrentMemoryContext;

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* a paused target resumes from its last acked chunk in a later session */
	if (snap->cur != NULL && zerobus_sender_paused(snap->cur->target))
		drop_current(snap);
	if (snap->cur == NULL)
		pick_table(snap, GetCurrentTimestamp());
	t = snap->cur;
	if (t == NULL)
	{
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		MemoryContextSwitchTo(caller);
		return;
	}

	chunk_cxt = AllocSetContextCreate(snap->cxt, "zerobus snapshot chunk",
									  ALLOCSET_DEFAULT_SIZES);
	chunk = MemoryContextAllocZero(snap->cxt, sizeof(SnapChunk));
	chunk->relid = t->relid;
	chunk->target = t->target;
	chunk->run = t->run;

	rel = try_relation_open(t->relid, AccessShareLock);
	initStringInfo(&sql);
	if (rel == NULL ||
		!chunk_query(snap, t, rel, chunk, &sql, &columns, &nkeys))
	{
		forget_table(snap, t->relid, t->qualname,
					 rel == NULL ? "the table was dropped" :
					 "the table is no longer published");
		drop_current(snap);
		end_chunk_unread(rel, chunk, chunk_cxt, caller);
		return;
	}

	plan = zerobus_plan_build(rel, columns, chunk_cxt);
	/* a key saved by one session must read back the same in another */
	zerobus_pin_output_settings(GUC_ACTION_LOCAL);
	memset(&recv, 0, sizeof(recv));
	recv.cxt = chunk_cxt;
	recv.nkeys = nkeys;
	recv.max_bytes = nkeys > 0 ? chunk_max_bytes(snap) : 0;
	if (!run_chunk_query(t, rel->rd_rel->relowner, sql.data, &recv))
	{
		chunk_locked(snap, t);
		end_chunk_unread(rel, chunk, chunk_cxt, caller);
		return;
	}
	snap->locked_ms = 0;
	chunk->lsn = write_watermark(snap, t);

	meta.kind = ZB_CHANGE_SNAPSHOT;
	meta.commit_lsn = chunk->lsn;
	meta.commit_time = GetCurrentTimestamp();
	meta.xid = GetTopTransactionIdIfAny();
	chunk->nrows = recv.nrows;
	chunk->nkeys = nkeys;
	chunk->by_block = nkeys == 0;
	if (nkeys > 0)
		chunk->last = recv.nrows < zerobus_snapshot_chunk_rows &&
			recv.bytes < recv.max_bytes;

	/*
	 * encode the rows, giving each back once encoded; under schema_policy
	 * drop_missing_columns without the columns the change stream leaves out
	 * of the same descriptor
	 */
	oldcxt = MemoryContextSwitchTo(chunk_cxt);
	initStringInfo(&records);
	lens = palloc(sizeof(size_t) * Max(recv.nrows, 1));
	descriptor = plan->descriptor;
	descriptor_len = plan->descriptor_len;
	drop = zerobus_reaction_find_drop(snap->ws, t->relid, descriptor,
									  descriptor_len);
	if (drop)
	{
		StringInfoData stripped;

		initStringInfo(&stripped);
		zerobus_reaction_strip(&stripped, descriptor, descriptor_len, drop,
							   true);
		descriptor = stripped.data;
		descriptor_len = stripped.len;
		initStringInfo(&record);
	}
	MemoryContextSwitchTo(oldcxt);
	note_descriptor(snap, t, plan, descriptor, descriptor_len, drop);
	row_cxt = AllocSetContextCreate(chunk_cxt, "zerobus snapshot encoding",
									ALLOCSET_DEFAULT_SIZES);
	for (i = 0; i < recv.nrows; i++)
	{
		HeapTupleData tuple;
		int			start = records.len;

		oldcxt = MemoryContextSwitchTo(row_cxt);
		tuple.t_len = HeapTupleHeaderGetDatumLength(recv.rows[i]);
		ItemPointerSetInvalid(&tuple.t_self);
		tuple.t_tableOid = t->relid;
		tuple.t_data = recv.rows[i];
		meta.seq = i;
		if (drop)
		{
			resetStringInfo(&record);
			array_nulls += zerobus_encode_record(&record, plan,
												 RelationGetDescr(rel),
												 &tuple, &meta);
			zerobus_reaction_strip(&records, record.data, record.len, drop,
								   false);
		}
		else
			array_nulls += zerobus_encode_record(&records, plan,
												 RelationGetDescr(rel),
												 &tuple, &meta);
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(row_cxt);
		pfree(recv.rows[i]);
		lens[i] = records.len - start;
	}
	if (recv.nrows > 0 && nkeys > 0)
		chunk->key = copy_key(snap, recv.key, nkeys);

	relation_close(rel, AccessShareLock);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(caller);

	/*
	 * The locks are released: hand the records over.  Each row of a
	 * snapshot is sent once, so a busy table's rows may go round its
	 * Zerobus streams by their place in the chunk rather than by key.
	 */
	p = records.data;
	sendable = array_nulls == 0 ||
		zerobus_worker_array_nulls_sendable(t->target, t->target_name,
											t->qualname, array_nulls);
	for (i = 0; sendable && i < chunk->nrows; i++)
	{
		if (!zerobus_sender_add(snap->ws->sender, t->target, ZB_LANE_SNAPSHOT,
								descriptor, descriptor_len,
								&t->call_epoch, (uint32) i, p, lens[i],
								&chunk->group, t->qualname))
			break;				/* paused: zerobus_snapshot_progress drops it */
		p += lens[i];
	}
	if (chunk->by_block && chunk->end_block > chunk->start_block)
	{
		/* the density seen, for the next range */
		t->blocks = chunk->end_block - chunk->start_block;
		t->rows_per_block = (double) recv.nrows / t->blocks;
		t->bytes_per_block = (double) records.len / t->blocks;
	}
	MemoryContextDelete(chunk_cxt);
	dlist_push_tail(&snap->chunks, &chunk->node);

	t->chunk_no++;
	if (chunk->last)
	{
		MemoryContext cxt = MemoryContextSwitchTo(snap->cxt);

		snap->finished = lappend_oid(snap->finished, t->relid);
		MemoryContextSwitchTo(cxt);
		drop_current(snap);
	}
	else if (chunk->by_block)
	{
		t->by_block = true;
		t->block = chunk->end_block;
	}
	else if (chunk->key != NULL)
	{
		free_key(t->key, t->nkeys);
		t->key = copy_key(snap, chunk->key, nkeys);
		t->nkeys = nkeys;
	}
}

/* ----------------------------------------------------------------
 * The worker's interface
 * ----------------------------------------------------------------
 */

/*
 * Starts the snapshot side of a worker session: syncs stream_tables with
 * the publication.  Everything lives in a child of parent, which the
 * session deletes with its chunks when it ends (their progress was not
 * written, so the next session reads them again).
 */
ZerobusSnapshot *
zerobus_snapshot_create(ZerobusWorkerState *ws, MemoryContext parent)
{
	ZerobusSnapshot *snap;

	snap = MemoryContextAllocZero(parent, sizeof(ZerobusSnapshot));
	snap->cxt = AllocSetContextCreate(parent, "zerobus snapshot",
									  ALLOCSET_DEFAULT_SIZES);
	snap->ws = ws;
	dlist_init(&snap->chunks);
	sync_now(snap, GetCurrentTimestamp());
	return snap;
}

/* Whether a chunk may be there to read (false while idle) */
bool
zerobus_snapshot_has_work(ZerobusSnapshot *snap)
{
	if (snap->locked_until != 0)
		return false;			/* until zerobus_snapshot_check_timers */
	return snap->cur != NULL || !snap->idle;
}

/*
 * Writes the progress of the chunks at the head of the FIFO that are fully
 * acked, in one transaction.  A chunk of a run that was restarted or
 * dropped meanwhile updates nothing; if that run is the one being read, it
 * is abandoned.  A chunk of a paused target is dropped unwritten (the
 * sender dropped its batches, so nothing refers to its ack group).
 */
void
zerobus_snapshot_progress(ZerobusSnapshot *snap)
{
	bool		started = false;
	MemoryContext caller = CurrentMemoryContext;

	while (!dlist_is_empty(&snap->chunks))
	{
		SnapChunk  *chunk = dlist_head_element(SnapChunk, node, &snap->chunks);
		Datum		args[7];
		char		nulls[7] = "       ";
		int			k;

		if (zerobus_sender_paused(chunk->target))
		{
			if (chunk->last)
				snap->finished = list_delete_oid(snap->finished, chunk->relid);
			dlist_delete(&chunk->node);
			free_key(chunk->key, chunk->nkeys);
			pfree(chunk);
			continue;
		}
		if (chunk->group.pending > 0)
			break;
		if (!started)
		{
			StartTransactionCommand();
			PushActiveSnapshot(GetTransactionSnapshot());
			if (SPI_connect() != SPI_OK_CONNECT)
				elog(ERROR, "SPI_connect failed");
			started = true;
		}
		args[0] = Int32GetDatum(snap->ws->config->id);
		args[1] = ObjectIdGetDatum(chunk->relid);
		if (chunk->key)
		{
			Datum	   *elems = palloc(sizeof(Datum) * chunk->nkeys);

			for (k = 0; k < chunk->nkeys; k++)
				elems[k] = CStringGetTextDatum(chunk->key[k]);
			args[2] = PointerGetDatum(construct_array(elems, chunk->nkeys,
													  TEXTOID, -1, false,
													  TYPALIGN_INT));
		}
		else if (chunk->by_block)
		{
			/*
			 * {NULL, next block}: no key value is ever NULL, so this cannot
			 * be mistaken for a key if the table gains one.
			 */
			Datum		elems[2];
			bool		elem_nulls[2] = {true, false};
			int			dims[1] = {2};
			int			lbs[1] = {1};

			elems[0] = (Datum) 0;
			elems[1] = CStringGetTextDatum(psprintf("%u", chunk->end_block));
			args[2] = PointerGetDatum(construct_md_array(elems, elem_nulls, 1,
														 dims, lbs, TEXTOID,
														 -1, false,
														 TYPALIGN_INT));
		}
		else
			nulls[2] = 'n';
		args[3] = Int64GetDatum(chunk->nrows);
		args[4] = LSNGetDatum(chunk->lsn);
		args[5] = BoolGetDatum(chunk->last);
		args[6] = TimestampTzGetDatum(chunk->run);
		if (SPI_execute_with_args("UPDATE zerobus.stream_tables"
								  " SET snapshot_key = coalesce($3, snapshot_key),"
								  " snapshot_rows = snapshot_rows + $4,"
								  " snapshot_lsn = $5,"
								  " snapshot_state = CASE WHEN $6 THEN 'done'"
								  "  ELSE 'running' END,"
								  " snapshot_finished_at = CASE WHEN $6"
								  "  THEN pg_catalog.clock_timestamp() END"
								  " WHERE stream_id = $1 AND relid = $2"
								  " AND snapshot_started_at = $7"
								  " AND snapshot_state = 'running'"
								  " RETURNING schema_name, table_name,"
								  " snapshot_rows",
								  7, (Oid[]) {INT4OID, OIDOID, TEXTARRAYOID,
									  INT8OID, LSNOID, BOOLOID,
								  TIMESTAMPTZOID},
								  args, nulls, false, 0) != SPI_OK_UPDATE_RETURNING)
			elog(ERROR, "could not update zerobus.stream_tables");

		if (SPI_processed == 0 && snap->cur != NULL &&
			snap->cur->relid == chunk->relid && snap->cur->run == chunk->run)
			drop_current(snap); /* restarted or dropped: pick again */
		else if (SPI_processed > 0 && chunk->last)
			ereport(LOG,
					(errmsg("zerobus stream \"%s\": snapshot of table %s done, %s rows",
							snap->ws->config->name,
							quote_qualified_identifier(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1),
													   SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2)),
							SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3))));
		if (chunk->last)
			snap->finished = list_delete_oid(snap->finished, chunk->relid);

		dlist_delete(&chunk->node);
		free_key(chunk->key, chunk->nkeys);
		pfree(chunk);
	}
	if (started)
	{
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		MemoryContextSwitchTo(caller);
	}
}

/*
 * Timers: the periodic sync with the publication, the poll of an idle
 * snapshot for tables put back to pending, and the retry of a chunk that
 * met a locked row.  Lowers *timeout (ms) to the
 * next one.
 */
void
zerobus_snapshot_check_timers(ZerobusSnapshot *snap, TimestampTz now,
							  long *timeout)
{
	if (snap->sync_due || now >= snap->next_sync)
		sync_now(snap, now);
	if (snap->idle && now >= snap->next_poll)
		snap->idle = false;
	if (snap->locked_until != 0 && now >= snap->locked_until)
		snap->locked_until = 0;
	zerobus_timeout_until(timeout, now, snap->next_sync);
	if (snap->locked_until != 0)
		zerobus_timeout_until(timeout, now, snap->locked_until);
	if (snap->idle)
		zerobus_timeout_until(timeout, now, snap->next_poll);
}

/*
 * A Relation message named relid: a table unknown to stream_tables may have
 * joined the publication, so sync at the next timer check.
 */
void
zerobus_snapshot_relation_seen(ZerobusSnapshot *snap, Oid relid)
{
	if (!list_member_oid(snap->known, relid))
		snap->sync_due = true;
}
