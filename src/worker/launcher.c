/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The launcher of a database: one stream worker running for every
 *	  stream of the database that wants one, and no replication slot left
 *	  behind.
 *
 * The cluster launcher (cluster_launcher.c) starts one of these, a dynamic
 * background worker, for a database (bgw_main_arg is its OID) when it
 * probes it or a backend there asks for it.  It connects to the database
 * and keeps, for every enabled stream not paused by an error, one dynamic
 * background worker running: it
 * starts missing ones, stops the workers of streams dropped, paused or
 * changed (a changed stream has a new config_version), restarts workers
 * that exited with an exponential backoff, and drops the replication slots
 * named zerobus_* that no stream owns and that this server's create_stream
 * made (left behind by a rolled back create_stream).  The SQL functions
 * wake it when their transaction commits (src/common/shared.c).
 *
 * A database launcher with nothing to do (no extension, no stream that
 * wants a worker, no worker left) sweeps the orphan slots and exits: the
 * cluster launcher starts it again when a backend of the database asks.
 * So databases without running streams hold no process (none that would
 * keep DROP DATABASE waiting) and no background worker slot.
 *
 * src/worker/launcher.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "stream.h"

/* How long the launcher sleeps when nothing is due (ms) */
#define LAUNCHER_NAP_MS			60000
/* A worker that ran this long without exiting resets its backoff (ms) */
#define WORKER_STABLE_MS		60000
/* First restart delay of a failed worker (ms) */
#define WORKER_BACKOFF_MIN_MS	1000
/* Delay of the next orphan sweep when a create_stream held it off (ms) */
#define ORPHAN_RETRY_MS			1000

/* The launcher's view of one stream's worker */
typedef struct LauncherWorker
{
	int32		stream_id;		/* 0: entry unused */
	int32		config_version; /* of the running worker */
	BackgroundWorkerHandle *handle; /* NULL: no worker */
	bool		terminating;	/* we asked it to stop */
	TimestampTz started_at;
	TimestampTz next_start;		/* not restarted before */
	int			backoff_ms;		/* delay of the next restart */
} LauncherWorker;

/* One row of zerobus.streams, as the launcher reads it */
typedef struct LauncherStream
{
	int32		id;
	int32		config_version;
	bool		wanted;			/* enabled and not paused by an error */
	char		name[NAMEDATALEN];
} LauncherStream;

static LauncherWorker *launcher_workers = NULL;
static char *launcher_dbname = NULL;	/* for messages */

/*
 * Forgets the launcher when it exits, and stops the workers it started:
 * they belong to this launcher, and a new one starts its own.
 */
static void
launcher_on_exit(int code, Datum arg)
{
	int			i;

	for (i = 0; i < zerobus_max_streams; i++)
		if (launcher_workers[i].handle)
			TerminateBackgroundWorker(launcher_workers[i].handle);
	(void) zerobus_dblauncher_detach(false);
}

/*
 * Reads zerobus.streams into *rows (allocated in cxt).  Returns false, with
 * no rows, when the extension is not installed.  Needs a transaction.
 */
static bool
read_streams(MemoryContext cxt, LauncherStream **rows, int *nrows)
{
	uint64		i;

	*rows = NULL;
	*nrows = 0;
	if (!OidIsValid(get_extension_oid("zerobus", true)))
		return false;

	SPI_connect();
	if (SPI_execute("SELECT id, config_version, enabled AND paused_reason IS NULL, name"
					" FROM zerobus.streams", true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read zerobus.streams");

	*rows = MemoryContextAllocZero(cxt, sizeof(LauncherStream) * (SPI_processed + 1));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		LauncherStream  *row = &(*rows)[i];
		bool		isnull;

		row->id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		row->config_version = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		row->wanted = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
		strlcpy(row->name, SPI_getvalue(tup, desc, 4), NAMEDATALEN);
	}
	*nrows = (int) SPI_processed;
	SPI_finish();
	return true;
}

/*
 * Drops the replication slots of this database that look like a stream's
 * (name zerobus_*, plugin zerobus), were made by a zerobus function of this
 * server (the ledger), but belong to no stream and are not in use: those of
 * a rolled back create_stream, say.  Skipped, returning false, while a
 * create_stream is in progress, which includes the end of its transaction:
 * it wakes us before it releases its lock.  Needs a transaction.
 */
static bool
sweep_orphan_slots(bool installed)
{
	uint64		i;
	SPITupleTable *orphans;
	uint64		norphans;

	if (!zerobus_slot_lock(true, false))
		return false;

	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	if (SPI_execute(psprintf("SELECT slot_name FROM pg_catalog.pg_replication_slots r"
							 " WHERE slot_type = 'logical' AND plugin = 'zerobus'"
							 " AND database = pg_catalog.current_database()"
							 " AND NOT active AND pg_catalog.starts_with(slot_name, '%s')%s",
							 ZB_SLOT_PREFIX,
							 installed ? " AND NOT EXISTS (SELECT FROM zerobus.streams s WHERE s.slot_name = r.slot_name)" : ""),
					false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read pg_replication_slots");
	orphans = SPI_tuptable;
	norphans = SPI_processed;
	for (i = 0; i < norphans; i++)
	{
		char	   *slot_name = SPI_getvalue(orphans->vals[i], orphans->tupdesc, 1);
		Oid			argtypes[1] = {NAMEOID};
		Datum		args[1];

		if (!zerobus_slot_ledger_forget(slot_name))
			continue;			/* not made by a zerobus function: not ours */

		ereport(LOG,
				(errmsg("zerobus launcher: dropping replication slot \"%s\", which belongs to no stream",
						slot_name)));
		args[0] = CStringGetDatum(slot_name);
		args[0] = DirectFunctionCall1(namein, args[0]);
		if (SPI_execute_with_args("SELECT pg_catalog.pg_drop_replication_slot($1)",
								  1, argtypes, args, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not drop replication slot \"%s\"", slot_name);
	}
	SPI_finish();
	PopActiveSnapshot();
	return true;
}

static LauncherWorker *
find_worker(int32 stream_id)
{
	int			i;

	for (i = 0; i < zerobus_max_streams; i++)
		if (launcher_workers[i].stream_id == stream_id)
			return &launcher_workers[i];
	return NULL;
}

static const LauncherStream *
find_row(const LauncherStream *rows, int nrows, int32 stream_id)
{
	int			i;

	for (i = 0; i < nrows; i++)
		if (rows[i].id == stream_id)
			return &rows[i];
	return NULL;
}

/* The streams a round read, for stream_in_use() */
typedef struct ReconcileRows
{
	const LauncherStream *rows;
	int			nrows;
} ReconcileRows;

/*
 * Whether the shared slot of stream_id is still needed: the stream exists,
 * or its worker still runs.
 */
static bool
stream_in_use(int32 stream_id, void *arg)
{
	ReconcileRows *known = (ReconcileRows *) arg;
	LauncherWorker *w;

	if (find_row(known->rows, known->nrows, stream_id))
		return true;
	w = find_worker(stream_id);
	return w && w->handle;
}

/* Whether drop_stream has claimed the stream (see zerobus_stream_mark_dropping) */
static bool
stream_dropping(int32 stream_id)
{
	ZerobusStreamShared *s = zerobus_stream_shared(stream_id, false);
	bool		dropping = false;

	if (s)
	{
		SpinLockAcquire(&s->mutex);
		dropping = s->dropping;
		SpinLockRelease(&s->mutex);
	}
	return dropping;
}

/* Delays the next start of w by its backoff, and doubles the backoff. */
static void
schedule_retry(LauncherWorker *w, TimestampTz now)
{
	w->next_start = TimestampTzPlusMilliseconds(now, w->backoff_ms);
	w->backoff_ms = Min(w->backoff_ms * 2,
						zerobus_restart_backoff_max * 1000);
}

/*
 * Notes that a worker has exited: unless the stream ended in an error that
 * paused it, the shared state shows it stopped (or retrying when it is to be
 * restarted).  Schedules the restart: immediately after a stop we asked for
 * (a changed stream), else after the backoff, which doubles on each quick
 * failure up to zerobus.restart_backoff_max and is reset by a worker that
 * ran for a while.
 */
static void
worker_exited(LauncherWorker *w, TimestampTz now)
{
	ZerobusStreamShared *s = zerobus_stream_shared(w->stream_id, false);
	bool		asked = w->terminating;
	bool		failed = false;

	pfree(w->handle);
	w->handle = NULL;
	w->terminating = false;

	if (s)
	{
		SpinLockAcquire(&s->mutex);
		s->pid = 0;
		failed = s->state == ZB_STATE_FAILED;
		if (!failed)
			s->state = asked ? ZB_STATE_STOPPED : ZB_STATE_RETRYING;
		SpinLockRelease(&s->mutex);
	}

	if (asked)
	{
		w->backoff_ms = WORKER_BACKOFF_MIN_MS;
		w->next_start = now;
	}
	else
	{
		if (TimestampDifferenceExceeds(w->started_at, now, WORKER_STABLE_MS))
			w->backoff_ms = WORKER_BACKOFF_MIN_MS;
		/* a failed stream is not restarted: its worker logged why */
		if (!failed)
			ereport(LOG,
					(errmsg("zerobus launcher: worker of stream %d exited, restarting it in %d ms",
							w->stream_id, w->backoff_ms)));
		schedule_retry(w, now);
	}
}

/* Registers the worker of row; on failure retries after the backoff. */
static void
start_worker(LauncherWorker *w, const LauncherStream *row, TimestampTz now)
{
	BackgroundWorker bgw;
	ZerobusWorkerArgs args;
	ZerobusStreamShared *s = zerobus_stream_shared_reserve(row->id);

	w->stream_id = row->id;
	w->config_version = row->config_version;
	w->terminating = false;
	if (w->backoff_ms == 0)
		w->backoff_ms = WORKER_BACKOFF_MIN_MS;
	if (s == NULL)
	{
		/* the streams of other databases hold every slot */
		w->handle = NULL;
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("zerobus launcher: no free stream slot for the worker of stream \"%s\"",
						row->name),
				 errdetail("The streams of all databases share zerobus.max_streams slots."),
				 errhint("Increase zerobus.max_streams.")));
		schedule_retry(w, now);
		return;
	}

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "zerobus");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "zerobus_worker_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "zerobus worker for stream %s", row->name);
	snprintf(bgw.bgw_type, BGW_MAXLEN, "zerobus worker");
	bgw.bgw_main_arg = Int32GetDatum(row->id);
	args.dboid = MyDatabaseId;
	StaticAssertStmt(sizeof(args) <= BGW_EXTRALEN, "ZerobusWorkerArgs too large");
	memcpy(bgw.bgw_extra, &args, sizeof(args));
	bgw.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&bgw, &w->handle))
	{
		w->handle = NULL;
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("zerobus launcher: could not start the worker of stream \"%s\"",
						row->name),
				 errhint("Increase max_worker_processes.")));
		schedule_retry(w, now);
		return;
	}
	w->started_at = now;

	SpinLockAcquire(&s->mutex);
	s->state = ZB_STATE_STARTING;
	SpinLockRelease(&s->mutex);
}

/* Shorter of *timeout_ms and the time from now until at */
static void
nap_until(long *timeout_ms, TimestampTz now, TimestampTz at)
{
	long		ms = (long) ((at - now) / 1000) + 1;

	*timeout_ms = Min(*timeout_ms, Max(ms, 0));
}

/*
 * Makes the running workers match zerobus.streams (rows).  Returns how
 * long the launcher may sleep before a restart is due; *busy tells whether
 * a stream wants a worker or a worker still runs.
 */
static long
reconcile(const LauncherStream *rows, int nrows, bool *busy)
{
	TimestampTz now = GetCurrentTimestamp();
	long		timeout = LAUNCHER_NAP_MS;
	ReconcileRows known;
	int			i;

	/* reap exited workers, stop unwanted or outdated ones */
	for (i = 0; i < zerobus_max_streams; i++)
	{
		LauncherWorker *w = &launcher_workers[i];
		const LauncherStream *row;
		pid_t		pid;

		if (w->stream_id == 0)
			continue;
		row = find_row(rows, nrows, w->stream_id);
		if (w->handle &&
			GetBackgroundWorkerPid(w->handle, &pid) == BGWH_STOPPED)
			worker_exited(w, now);
		if (w->handle == NULL)
		{
			/* forget streams no longer to run: resuming starts afresh */
			if (row == NULL || !row->wanted)
				memset(w, 0, sizeof(*w));
			continue;
		}
		if (!w->terminating &&
			(row == NULL || !row->wanted ||
			 row->config_version != w->config_version ||
			 stream_dropping(w->stream_id)))
		{
			TerminateBackgroundWorker(w->handle);
			w->terminating = true;
		}
	}

	/* start the workers missing */
	for (i = 0; i < nrows; i++)
	{
		const LauncherStream *row = &rows[i];
		LauncherWorker *w;

		if (!row->wanted || stream_dropping(row->id))
			continue;
		w = find_worker(row->id);
		if (w && w->handle)
			continue;
		if (w && w->config_version != row->config_version)
			w->next_start = now;	/* changed since it failed: retry now */
		if (w && w->next_start > now)
		{
			nap_until(&timeout, now, w->next_start);
			continue;
		}
		if (w == NULL)
			w = find_worker(0);
		if (w == NULL)
			break;				/* more streams than zerobus.max_streams */
		start_worker(w, row, now);
		if (w->handle == NULL)
			nap_until(&timeout, now, w->next_start);
	}

	/* free the shared slots of streams gone and without a worker */
	known.rows = rows;
	known.nrows = nrows;
	zerobus_stream_release_unused(stream_in_use, &known);

	*busy = false;
	for (i = 0; i < nrows; i++)
		if (rows[i].wanted)
			*busy = true;
	for (i = 0; i < zerobus_max_streams; i++)
		if (launcher_workers[i].handle)
			*busy = true;
	return timeout;
}

/*
 * One round of the launcher: read the streams, reconcile the workers,
 * sweep orphan slots.  Returns how long to sleep; *busy tells whether
 * there is anything to keep the launcher running for.
 */
static long
launcher_round(MemoryContext round_cxt, bool *busy)
{
	LauncherStream  *rows;
	int			nrows;
	bool		installed;
	long		timeout;

	/* a wakeup from now on is for a later round */
	zerobus_dblauncher_begin_round();
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "reading zerobus.streams");
	installed = read_streams(round_cxt, &rows, &nrows);
	PopActiveSnapshot();
	CommitTransactionCommand();

	timeout = reconcile(rows, nrows, busy);

	/* the slots of committed streams are theirs, not orphans to be */
	for (int i = 0; i < nrows; i++)
		(void) zerobus_slot_ledger_forget(psprintf("%s%s", ZB_SLOT_PREFIX, rows[i].name));

	/* with a fresh snapshot, taken once the lock is held */
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING, "dropping orphan zerobus slots");
	if (!sweep_orphan_slots(installed))
	{
		/* a create_stream runs or is ending: stay, and look again soon */
		*busy = true;
		timeout = Min(timeout, ORPHAN_RETRY_MS);
	}
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	pgstat_report_stat(true);

	return timeout;
}

/*
 * In the PG_CATCH of a launcher's round (this one's or the cluster
 * launcher's): logs the error, aborts the round's transaction and leaves
 * the launcher ready for the next round.
 */
void
zerobus_launcher_round_failed(void)
{
	HOLD_INTERRUPTS();
	EmitErrorReport();
	AbortCurrentTransaction();
	FlushErrorState();
	MemoryContextSwitchTo(TopMemoryContext);
	RESUME_INTERRUPTS();
}

/*
 * The main function of a database's launcher; main_arg is the database's
 * OID.  Errors of a round are logged and the round retried later; the
 * workers keep running meanwhile.  Exits once a round finds nothing to do
 * and no backend has asked for another.
 */
void
zerobus_launcher_main(Datum main_arg)
{
	MemoryContext round_cxt;
	volatile bool serving = false;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnectionByOid(DatumGetObjectId(main_arg),
											  InvalidOid, 0);
	/* no search_path set by a database owner reaches the superuser's SQL */
	SetConfigOption("search_path", "", PGC_SUSET, PGC_S_OVERRIDE);

	launcher_workers = MemoryContextAllocZero(TopMemoryContext,
											  sizeof(LauncherWorker) * zerobus_max_streams);
	round_cxt = AllocSetContextCreate(TopMemoryContext, "zerobus launcher",
									  ALLOCSET_DEFAULT_SIZES);
	StartTransactionCommand();
	launcher_dbname = MemoryContextStrdup(TopMemoryContext,
										  get_database_name(MyDatabaseId));
	CommitTransactionCommand();

	if (!zerobus_dblauncher_attach())
	{
		ereport(LOG,
				(errmsg("zerobus launcher for database \"%s\" exiting: another one serves it",
						launcher_dbname)));
		proc_exit(0);
	}
	before_shmem_exit(launcher_on_exit, (Datum) 0);
	ereport(DEBUG1,
			(errmsg_internal("zerobus launcher started for database \"%s\"",
							 launcher_dbname)));

	for (;;)
	{
		long		timeout;
		bool		busy;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		MemoryContextReset(round_cxt);
		PG_TRY();
		{
			timeout = launcher_round(round_cxt, &busy);
		}
		PG_CATCH();
		{
			zerobus_launcher_round_failed();
			timeout = 10000;
			busy = true;		/* try again rather than go quietly */
		}
		PG_END_TRY();

		if (!busy)
		{
			/* nothing to run: exit, unless a backend asked meanwhile */
			if (zerobus_dblauncher_detach(true))
			{
				ereport(serving ? LOG : DEBUG1,
						(errmsg("zerobus launcher for database \"%s\" exiting: no stream to run",
								launcher_dbname)));
				proc_exit(0);
			}
			continue;
		}
		if (!serving)
		{
			serving = true;
			zerobus_dblauncher_set_serving();
			ereport(LOG,
					(errmsg("zerobus launcher started for database \"%s\"",
							launcher_dbname)));
		}

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
