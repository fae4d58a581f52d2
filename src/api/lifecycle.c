/*-------------------------------------------------------------------------
 *
 * lifecycle.c
 *	  The SQL functions that act on an existing stream as a whole: drop,
 *	  pause, resume, recover (a stream whose slot lost WAL) and snapshot
 *	  one table again.  A dropped stream's slot is dropped only when the
 *	  dropping transaction commits, by the transaction callbacks here.
 *	  Like streams.c's, these check the caller's privileges and then work
 *	  through SPI as the bootstrap superuser (store.h).
 *
 * src/api/lifecycle.c
 *
 *-------------------------------------------------------------------------
 */
#include "zerobus.h"

#include "access/relation.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "pgstat.h"
#include "replication/slot.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "store.h"
#include "stream.h"
#include "targets.h"

PG_FUNCTION_INFO_V1(zerobus_drop_stream);
PG_FUNCTION_INFO_V1(zerobus_pause_stream);
PG_FUNCTION_INFO_V1(zerobus_resume_stream);
PG_FUNCTION_INFO_V1(zerobus_recover_stream);
PG_FUNCTION_INFO_V1(zerobus_snapshot_table);

/* How long drop_stream waits for the slot to be released (ms) */
#define SLOT_RELEASE_TIMEOUT_MS 30000

/*
 * The pid of the process using the replication slot, 0 if none; *exists
 * tells whether the slot exists.
 */
static pid_t
slot_active_pid(const char *slot_name, bool *exists)
{
	ReplicationSlot *slot;
	pid_t		pid = 0;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	slot = SearchNamedReplicationSlot(slot_name, false);
	*exists = (slot != NULL);
	if (slot)
	{
		SpinLockAcquire(&slot->mutex);
		pid = slot->active_pid;
		SpinLockRelease(&slot->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);
	return pid;
}

/*
 * Slots of the streams dropped in this transaction, which it drops when it
 * commits: dropping a slot cannot be undone, so a drop_stream whose
 * transaction (or subtransaction) rolls back must leave the slot alone.
 */
typedef struct PendingSlotDrop
{
	char		slot_name[NAMEDATALEN];
	int32		stream_id;
	bool		marked;			/* zerobus_stream_mark_dropping() was called */
	SubTransactionId subid;		/* the subtransaction that dropped the stream */
} PendingSlotDrop;

static List *pending_slot_drops = NIL;	/* in TopTransactionContext */
static bool slot_drop_callbacks_registered = false;

/*
 * Drops the pending slots just before the commit, where an error still
 * aborts the transaction (a slot taken meanwhile by another process makes
 * the commit fail, and the stream stays).  Each is looked up again: a
 * slot dropped by someone else meanwhile is not an error.
 */
static void
slot_drop_xact_callback(XactEvent event, void *arg)
{
	ListCell   *lc;

	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			foreach(lc, pending_slot_drops)
			{
				PendingSlotDrop *drop = (PendingSlotDrop *) lfirst(lc);
				bool		exists;

				(void) slot_active_pid(drop->slot_name, &exists);
				if (exists)
					ReplicationSlotDrop(drop->slot_name, true);
			}
			pending_slot_drops = NIL;
			break;
		case XACT_EVENT_PRE_PREPARE:
			if (pending_slot_drops != NIL)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot prepare a transaction that dropped a zerobus stream")));
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PREPARE:
			/* the list went with TopTransactionContext */
			pending_slot_drops = NIL;
			break;
		default:
			break;
	}
}

/*
 * A subtransaction's pending drops go with its rollback (and the launcher
 * may run the stream's worker again) and pass to its parent when it
 * commits.
 */
static void
slot_drop_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						   SubTransactionId parentSubid, void *arg)
{
	ListCell   *lc;

	if (event != SUBXACT_EVENT_ABORT_SUB && event != SUBXACT_EVENT_COMMIT_SUB)
		return;
	foreach(lc, pending_slot_drops)
	{
		PendingSlotDrop *drop = (PendingSlotDrop *) lfirst(lc);

		if (drop->subid != mySubid)
			continue;
		if (event == SUBXACT_EVENT_ABORT_SUB)
		{
			if (drop->marked)
				zerobus_stream_unmark_dropping(drop->stream_id);
			pending_slot_drops = foreach_delete_current(pending_slot_drops, lc);
		}
		else
			drop->subid = parentSubid;
	}
}

/*
 * Has the slot of a stream dropped when the current transaction commits;
 * with marked, the stream was also marked as dropping for the launcher.
 */
static void
drop_slot_at_commit(const char *slot_name, int32 stream_id, bool marked)
{
	MemoryContext oldcxt;
	PendingSlotDrop *drop;

	if (!slot_drop_callbacks_registered)
	{
		RegisterXactCallback(slot_drop_xact_callback, NULL);
		RegisterSubXactCallback(slot_drop_subxact_callback, NULL);
		slot_drop_callbacks_registered = true;
	}
	oldcxt = MemoryContextSwitchTo(TopTransactionContext);
	drop = palloc(sizeof(PendingSlotDrop));
	strlcpy(drop->slot_name, slot_name, NAMEDATALEN);
	drop->stream_id = stream_id;
	drop->marked = marked;
	drop->subid = GetCurrentSubTransactionId();
	pending_slot_drops = lappend(pending_slot_drops, drop);
	MemoryContextSwitchTo(oldcxt);
}

/*
 * zerobus.drop_stream(name text, if_exists bool) returns void
 *
 * The owner's or a superuser's.  Deletes the stream, has the launcher stop
 * its worker and waits for the slot to be released; the slot is dropped
 * when the transaction commits, so a rollback leaves the stream whole.
 */
Datum
zerobus_drop_stream(PG_FUNCTION_ARGS)
{
	char	   *name = zerobus_text_arg(fcinfo, 0, "name", true);
	bool		if_exists = !PG_ARGISNULL(1) && PG_GETARG_BOOL(1);
	ZerobusColumnValues args = {0};
	ZerobusCatalogAccess access;
	ZerobusStreamRow *row;
	bool		exists;
	pid_t		pid;
	int			waited_ms = 0;
	bool		marked;

	zerobus_require_preload();
	zerobus_catalog_begin(&access);
	row = zerobus_lookup_stream(name, if_exists);
	if (row == NULL)
	{
		zerobus_catalog_end(&access);
		ereport(NOTICE,
				(errmsg("stream \"%s\" does not exist, skipping", name)));
		PG_RETURN_VOID();
	}
	zerobus_check_stream_owner(&access, name, row);
	zerobus_add_column(&args, "id", INT4OID, Int32GetDatum(row->id), false);
	zerobus_execute_with_values("DELETE FROM zerobus.streams WHERE id = $1", &args,
								SPI_OK_DELETE);
	zerobus_catalog_end(&access);

	marked = zerobus_in_served_database();
	if (marked)
		zerobus_stream_mark_dropping(row->id);
	drop_slot_at_commit(row->slot_name, row->id, marked);

	while ((pid = slot_active_pid(row->slot_name, &exists)) != 0)
	{
		if (waited_ms >= SLOT_RELEASE_TIMEOUT_MS)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_IN_USE),
					 errmsg("replication slot \"%s\" of stream \"%s\" is still in use by process %d",
							row->slot_name, name, (int) pid),
					 errhint("Stop the process that uses the slot, then drop the stream again.")));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 100, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		waited_ms += 100;
	}
	zerobus_launcher_wakeup_at_commit();
	PG_RETURN_VOID();
}

/* Runs sql (with $1 = the stream's id) on the stream name, for its owner. */
static void
update_stream(FunctionCallInfo fcinfo, const char *sql)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	ZerobusColumnValues args = {0};
	ZerobusCatalogAccess access;
	ZerobusStreamRow *row;

	zerobus_require_preload();
	zerobus_catalog_begin(&access);
	row = zerobus_lookup_stream(name, false);
	zerobus_check_stream_owner(&access, name, row);
	zerobus_add_column(&args, "id", INT4OID, Int32GetDatum(row->id), false);
	zerobus_execute_with_values(sql, &args, SPI_OK_UPDATE);
	zerobus_catalog_end(&access);
	zerobus_launcher_wakeup_at_commit();
}

/*
 * zerobus.pause_stream(name text) returns void
 *
 * Stops the worker until resume_stream; the slot keeps the WAL meanwhile.
 */
Datum
zerobus_pause_stream(PG_FUNCTION_ARGS)
{
	update_stream(fcinfo, "UPDATE zerobus.streams SET enabled = false WHERE id = $1");
	PG_RETURN_VOID();
}

/*
 * zerobus.resume_stream(name text) returns void
 *
 * Restarts a stream paused by the user or by an error (whose reason it
 * clears).  Also clears the pauses of its tables (stream_tables), and
 * then restarts a running worker (a new config_version), which replays
 * from the slot what the paused tables held back.  A stream that creates
 * its targets first runs the CREATE TABLE of its paused tables again
 * (targets.c): a table still not created is paused again.
 */
Datum
zerobus_resume_stream(PG_FUNCTION_ARGS)
{
	int32		stream_id;
	List	   *paused = zerobus_targets_paused(text_to_cstring(PG_GETARG_TEXT_PP(0)),
												&stream_id);

	update_stream(fcinfo, "WITH t AS (UPDATE zerobus.stream_tables"
				  "  SET paused_reason = NULL, paused_at = NULL"
				  "  WHERE stream_id = $1 AND paused_reason IS NOT NULL"
				  "  RETURNING 1)"
				  " UPDATE zerobus.streams"
				  " SET enabled = true, paused_reason = NULL, paused_at = NULL,"
				  " config_version = config_version +"
				  "  (SELECT least(count(*), 1)::int FROM t)"
				  " WHERE id = $1");
	/* after the owner's check: creates the targets whose creation failed */
	if (paused != NIL)
		zerobus_create_targets(stream_id, paused, false);
	PG_RETURN_VOID();
}

/*
 * zerobus.recover_stream(name text, force bool) returns void
 *
 * The one-call recovery of a stream whose slot lost WAL it still needed
 * (wal_status 'lost', e.g. past max_slot_wal_keep_size): drops the slot,
 * creates it anew (same name, starting now), marks every table of the
 * stream for a new snapshot, clears the pauses of the stream and of its
 * tables (as resume_stream does), and restarts the stream.  Changes
 * between the loss and now reach the target through the snapshot.  The
 * owner's or a superuser's.  Without force, a slot that is not lost is an
 * error (resume the stream instead); with force, any slot is replaced,
 * which re-sends every table.  Like create_stream it must come first in its
 * transaction; the old slot is gone even if the transaction rolls back
 * later (then call it again).
 */
Datum
zerobus_recover_stream(PG_FUNCTION_ARGS)
{
	char	   *name = zerobus_text_arg(fcinfo, 0, "name", true);
	bool		force = !PG_ARGISNULL(1) && PG_GETARG_BOOL(1);
	ZerobusColumnValues args = {0};
	ZerobusCatalogAccess access;
	ZerobusStreamRow *row;
	char	   *wal_status = NULL;
	bool		isnull;
	bool		exists;
	pid_t		pid;
	MemoryContext fn_cxt = CurrentMemoryContext;
	bool		failover;

	zerobus_require_preload();
	if (GetTopTransactionIdIfAny() != InvalidTransactionId)
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("cannot recover a stream in a transaction that has written"),
				 errdetail("A stream's logical replication slot must be created before its transaction writes anything."),
				 errhint("Call zerobus.recover_stream() in a transaction of its own, or first in its transaction.")));

	zerobus_catalog_begin(&access);
	zerobus_slot_lock(false, true);

	/* no FOR UPDATE yet: a row lock takes an xid, and a new slot needs none */
	zerobus_add_column(&args, "name", TEXTOID, CStringGetTextDatum(name), false);
	zerobus_execute_with_values("SELECT s.id, s.owner::oid, s.slot_name, r.wal_status,"
								" s.failover FROM zerobus.streams s"
								" LEFT JOIN pg_catalog.pg_replication_slots r"
								" ON r.slot_name = s.slot_name WHERE s.name = $1",
								&args, SPI_OK_SELECT);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("stream \"%s\" does not exist", name)));
	/* out of SPI's memory: the NOTICE below comes after SPI_finish */
	row = MemoryContextAllocZero(fn_cxt, sizeof(ZerobusStreamRow));
	row->id = DatumGetInt32(zerobus_result_datum(1, &isnull));
	row->owner = DatumGetObjectId(zerobus_result_datum(2, &isnull));
	row->slot_name = MemoryContextStrdup(fn_cxt, zerobus_result_text(3));
	if (zerobus_result_text(4))
		wal_status = pstrdup(zerobus_result_text(4));
	failover = DatumGetBool(zerobus_result_datum(5, &isnull));
	zerobus_check_stream_owner(&access, name, row);
	if (!force && wal_status != NULL && strcmp(wal_status, "lost") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("replication slot \"%s\" of stream \"%s\" is not lost",
						row->slot_name, name),
				 errdetail("Its wal_status is \"%s\": it still holds every change the stream has not delivered.",
						   wal_status),
				 errhint("Use zerobus.resume_stream() to restart the stream, or force => true to replace the slot and snapshot every table again.")));

	pid = slot_active_pid(row->slot_name, &exists);
	if (pid != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("replication slot \"%s\" of stream \"%s\" is in use by process %d",
						row->slot_name, name, (int) pid),
				 errhint("Pause the stream with zerobus.pause_stream() first.")));
	if (exists)
		ReplicationSlotDrop(row->slot_name, true);

	zerobus_create_stream_slot(row->slot_name, failover);

	args.n = 0;
	zerobus_add_column(&args, "id", INT4OID, Int32GetDatum(row->id), false);
	zerobus_execute_with_values("UPDATE zerobus.stream_tables t"
								" SET snapshot_state = 'pending', snapshot_key = NULL,"
								" snapshot_rows = 0, snapshot_lsn = NULL,"
								" snapshot_started_at = NULL, snapshot_finished_at = NULL,"
								" paused_reason = NULL, paused_at = NULL"
								" WHERE t.stream_id = $1",
								&args, SPI_OK_UPDATE);
	zerobus_execute_with_values("UPDATE zerobus.streams"
								" SET enabled = true, paused_reason = NULL, paused_at = NULL,"
								" config_version = config_version + 1"
								" WHERE id = $1", &args, SPI_OK_UPDATE);
	zerobus_catalog_end(&access);

	ereport(NOTICE,
			(errmsg("replication slot \"%s\" of stream \"%s\" was recreated; every table of the stream will be snapshotted again",
					row->slot_name, name)));
	zerobus_launcher_wakeup_at_commit();
	PG_RETURN_VOID();
}

/*
 * zerobus.snapshot_table(stream text, source regclass) returns void
 *
 * Snapshots one table of a stream again from its first row (after its
 * target table was recreated, say); the owner's or a superuser's.  The
 * stream's worker picks the table up within a second of the commit.
 */
Datum
zerobus_snapshot_table(PG_FUNCTION_ARGS)
{
	char	   *name = zerobus_text_arg(fcinfo, 0, "stream", true);
	Oid			relid;
	ZerobusCatalogAccess access;
	ZerobusStreamRow *row;
	Relation	rel;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("source must not be null")));
	relid = PG_GETARG_OID(1);
	rel = zerobus_open_table(relid);
	zerobus_catalog_begin(&access);
	row = zerobus_lookup_stream(name, false);
	zerobus_check_stream_owner(&access, name, row);
	if (!zerobus_stream_tables_reset(row->id, relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("stream \"%s\" does not publish table %s",
						name,
						quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												   RelationGetRelationName(rel))),
				 errhint("Add the table to the stream's publication with ALTER PUBLICATION; a table added there is snapshotted by itself.")));
	zerobus_catalog_end(&access);
	relation_close(rel, NoLock);
	PG_RETURN_VOID();
}
