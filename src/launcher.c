/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  Module initialization, the zerobus.* settings, the shared memory of
 *	  the stream workers, and the launcher that runs one worker per stream.
 *
 * Loaded through shared_preload_libraries, the module defines its settings,
 * reserves shared memory (one ZerobusStreamShared per possible stream plus
 * the launcher's latch) and registers the launcher.  The launcher connects
 * to zerobus.database and keeps, for every enabled stream not paused by an
 * error, one dynamic background worker running: it starts missing ones,
 * stops the workers of streams dropped, paused or changed (a changed stream
 * has a new config_version), restarts workers that exited with an
 * exponential backoff, and drops the replication slots named zerobus_*
 * that no stream owns (left behind by a rolled back create_stream).  The
 * SQL functions of catalog.c wake it when their transaction commits.
 *
 * Loaded any other way (a walsender or a backend loading the output plugin)
 * the module only serves as the output plugin: no settings, no shared
 * memory, and the SQL API refuses to run.
 *
 * Stream ids are only unique within one database, so shared memory and the
 * launcher belong to the streams of zerobus.database alone.
 *
 * src/launcher.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "catalog.h"
#include "compat.h"
#include "stream.h"

PG_FUNCTION_INFO_V1(zerobus_stream_shared_state);

void		_PG_init(void);

/* How long the launcher sleeps when nothing is due (ms) */
#define LAUNCHER_NAP_MS			60000
/* A worker that ran this long without exiting resets its backoff (ms) */
#define WORKER_STABLE_MS		60000
/* First restart delay of a failed worker (ms) */
#define WORKER_BACKOFF_MIN_MS	1000

/* Advisory lock key serializing slot creation against the orphan sweep */
#define SLOT_LOCK_KEY1			0x7a65726f	/* "zero" */
#define SLOT_LOCK_KEY2			0x62757300	/* "bus" */
#define SLOT_LOCK_FIELD4		0x5a42	/* outside pg_advisory_lock's 1, 2 */

const char *const zerobus_state_names[] = {
	"stopped", "starting", "streaming", "retrying", "paused", "failed"
};

bool		zerobus_preloaded = false;

char	   *zerobus_database = NULL;
int			zerobus_max_streams = 16;
int			zerobus_batch_max_records = 1000;
int			zerobus_batch_max_bytes = 1024 * 1024;
int			zerobus_batch_max_delay = 10;
int			zerobus_max_inflight_bytes = 64 * 1024 * 1024;
int			zerobus_ack_timeout = 60000;
int			zerobus_restart_backoff_max = 60;
int			zerobus_snapshot_chunk_rows = 10000;
char	   *zerobus_ca_file = NULL;

/*
 * The integer settings.  Those marked per_stream are also options of
 * create_stream/alter_stream, which validate them against the same limits.
 */
typedef struct IntSetting
{
	const char *name;			/* without the "zerobus." prefix */
	const char *description;
	int		   *variable;
	int			boot_value;
	int			min_value;
	int			max_value;
	GucContext	context;
	int			flags;
	bool		per_stream;
} IntSetting;

static const IntSetting int_settings[] = {
	{"max_streams",
		"Maximum number of streams (shared memory slots).",
		&zerobus_max_streams, 16, 1, 1024, PGC_POSTMASTER, 0, false},
	{"batch_max_records",
		"Maximum number of records in one request to Zerobus.",
		&zerobus_batch_max_records, 1000, 1, 100000, PGC_SIGHUP, 0, true},
	{"batch_max_bytes",
		"Maximum size of the records of one request to Zerobus.",
		&zerobus_batch_max_bytes, 1024 * 1024, 1024, 4 * 1024 * 1024 - 64 * 1024,
		PGC_SIGHUP, GUC_UNIT_BYTE, true},
	{"batch_max_delay",
		"Maximum time a record waits for its batch to fill.",
		&zerobus_batch_max_delay, 10, 0, 60000, PGC_SIGHUP, GUC_UNIT_MS, true},
	{"max_inflight_bytes",
		"Bytes sent or queued and not yet acknowledged after which a worker stops reading its slot.",
		&zerobus_max_inflight_bytes, 64 * 1024 * 1024, 1024 * 1024, INT_MAX,
		PGC_SIGHUP, GUC_UNIT_BYTE, true},
	{"ack_timeout",
		"Time without any acknowledgement, while records are in flight, after which a worker reconnects.",
		&zerobus_ack_timeout, 60000, 1000, INT_MAX, PGC_SIGHUP, GUC_UNIT_MS, true},
	{"restart_backoff_max",
		"Maximum delay before a failed stream worker is restarted.",
		&zerobus_restart_backoff_max, 60, 1, 3600, PGC_SIGHUP, GUC_UNIT_S, false},
	{"snapshot_chunk_rows",
		"Rows an initial snapshot reads per primary-key chunk (one short transaction each).",
		&zerobus_snapshot_chunk_rows, 10000, 100, 1000000, PGC_SIGHUP, 0, false},
};

/* Slots made by this server's zerobus functions, remembered for the sweep */
#define ZB_SLOT_LEDGER 64

/* Shared memory: the launcher and one slot per stream */
typedef struct ZerobusShared
{
	pid_t		launcher_pid;	/* 0 when no launcher runs */
	Latch	   *launcher_latch;
	Oid			launcher_dboid; /* database the launcher serves */

	/*
	 * The slots create_stream made (a ring: the oldest entry goes when it
	 * is full), until the launcher sees them belong to a stream.  Only these may be swept as orphans: a slot someone else
	 * named zerobus_* is never ours to drop.  Protected by zb_lock.
	 */
	int			ledger_next;
	NameData	ledger[ZB_SLOT_LEDGER];
	ZerobusStreamShared streams[FLEXIBLE_ARRAY_MEMBER];
} ZerobusShared;

static ZerobusShared *zb_shared = NULL;
static LWLock *zb_lock = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* Per-backend: what the SQL functions asked for at end of transaction */
static bool xact_callback_registered = false;
static bool wakeup_at_commit = false;
static List *dropping_streams = NIL;	/* stream ids, in TopMemoryContext */

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

static Size
zerobus_shmem_size(void)
{
	return add_size(offsetof(ZerobusShared, streams),
					mul_size(zerobus_max_streams, sizeof(ZerobusStreamShared)));
}

static void
zerobus_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(zerobus_shmem_size());
	RequestNamedLWLockTranche("zerobus", 1);
}

static void
zerobus_shmem_startup(void)
{
	bool		found;
	int			i;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	zb_shared = ShmemInitStruct("zerobus", zerobus_shmem_size(), &found);
	if (!found)
	{
		memset(zb_shared, 0, zerobus_shmem_size());
		for (i = 0; i < zerobus_max_streams; i++)
			SpinLockInit(&zb_shared->streams[i].mutex);
	}
	zb_lock = &(GetNamedLWLockTranche("zerobus"))->lock;
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Module load.  Only the postmaster loading us from shared_preload_libraries
 * sets up settings, shared memory and the launcher; a walsender using the
 * output plugin gets none of it.
 */
void
_PG_init(void)
{
	BackgroundWorker bgw;
	int			i;

	if (!process_shared_preload_libraries_in_progress)
		return;
	zerobus_preloaded = true;

	DefineCustomStringVariable("zerobus.database",
							   "Database whose zerobus.streams the launcher runs.",
							   NULL, &zerobus_database, "postgres",
							   PGC_POSTMASTER, 0, NULL, NULL, NULL);
	for (i = 0; i < lengthof(int_settings); i++)
	{
		const IntSetting *s = &int_settings[i];

		DefineCustomIntVariable(psprintf("zerobus.%s", s->name),
								s->description,
								s->per_stream ? "A stream's own option of the same name overrides it." : NULL,
								s->variable, s->boot_value,
								s->min_value, s->max_value,
								s->context, s->flags, NULL, NULL, NULL);
	}
	DefineCustomStringVariable("zerobus.ca_file",
							   "File of trusted certificate authorities for TLS to Zerobus and OAuth; empty for the system's.",
							   "A stream's own ca_file overrides it.",
							   &zerobus_ca_file, "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	MarkGUCPrefixReserved("zerobus");

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = zerobus_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = zerobus_shmem_startup;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 5;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "zerobus");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "zerobus_launcher_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "zerobus launcher");
	snprintf(bgw.bgw_type, BGW_MAXLEN, "zerobus launcher");
	RegisterBackgroundWorker(&bgw);
}

/*
 * Errors out unless the module was preloaded; every SQL function of the
 * stream API calls this first.
 */
void
zerobus_require_preload(void)
{
	if (!zerobus_preloaded)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("zerobus must be loaded via shared_preload_libraries"),
				 errhint("Add zerobus to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/*
 * Errors out unless value is within the limits of the setting
 * zerobus.<name>, which must be a per-stream option.
 */
void
zerobus_check_stream_option(const char *name, int value)
{
	int			i;

	for (i = 0; i < lengthof(int_settings); i++)
	{
		const IntSetting *s = &int_settings[i];

		if (!s->per_stream || strcmp(s->name, name) != 0)
			continue;
		if (value < s->min_value || value > s->max_value)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%d is outside the valid range for option \"%s\" (%d .. %d)",
							value, name, s->min_value, s->max_value)));
		return;
	}
	elog(ERROR, "unknown stream option \"%s\"", name);
}

/*
 * Whether this backend's database is the one the launcher serves: only
 * there do streams have workers and shared state.
 */
bool
zerobus_in_served_database(void)
{
	return zerobus_preloaded &&
		get_database_oid(zerobus_database, true) == MyDatabaseId;
}

/*
 * The shared slot of a stream of the served database, or NULL when it has
 * none and create is false.  With create, a free slot is taken (counters
 * zeroed, state stopped); running out of slots is an ERROR, which cannot
 * happen for an existing stream since create_stream keeps the number of
 * streams within zerobus.max_streams.  The result stays valid while the
 * stream exists; read and write its fields under its mutex.
 */
ZerobusStreamShared *
zerobus_stream_shared(int32 stream_id, bool create)
{
	ZerobusStreamShared *free_slot = NULL;
	int			i;

	zerobus_require_preload();
	Assert(stream_id > 0);

	LWLockAcquire(zb_lock, create ? LW_EXCLUSIVE : LW_SHARED);
	for (i = 0; i < zerobus_max_streams; i++)
	{
		ZerobusStreamShared *s = &zb_shared->streams[i];

		if (s->stream_id == stream_id)
		{
			LWLockRelease(zb_lock);
			return s;
		}
		if (s->stream_id == 0 && free_slot == NULL)
			free_slot = s;
	}
	if (!create)
	{
		LWLockRelease(zb_lock);
		return NULL;
	}
	if (free_slot == NULL)
	{
		LWLockRelease(zb_lock);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("no free zerobus stream slot for stream %d", stream_id),
				 errhint("Increase zerobus.max_streams.")));
	}
	SpinLockAcquire(&free_slot->mutex);
	memset((char *) free_slot + offsetof(ZerobusStreamShared, stream_id), 0,
		   sizeof(ZerobusStreamShared) - offsetof(ZerobusStreamShared, stream_id));
	free_slot->stream_id = stream_id;
	free_slot->state = ZB_STATE_STOPPED;
	SpinLockRelease(&free_slot->mutex);
	LWLockRelease(zb_lock);
	return free_slot;
}

/* Sets the launcher's latch, if a launcher runs. */
void
zerobus_launcher_wakeup(void)
{
	Latch	   *latch;

	if (!zerobus_preloaded)
		return;
	LWLockAcquire(zb_lock, LW_SHARED);
	latch = zb_shared->launcher_latch;
	if (latch)
		SetLatch(latch);
	LWLockRelease(zb_lock);
}

/*
 * At the end of a transaction that changed streams: wake the launcher on
 * commit; on abort too, so that it restarts the workers of streams whose
 * drop was rolled back and drops the slots of streams whose creation was.
 * A prepared transaction would commit without us, so it is refused.
 */
static void
zerobus_xact_callback(XactEvent event, void *arg)
{
	ListCell   *lc;

	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (wakeup_at_commit)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot prepare a transaction that changed zerobus streams")));
			break;
		case XACT_EVENT_COMMIT:
			if (wakeup_at_commit)
				zerobus_launcher_wakeup();
			wakeup_at_commit = false;
			list_free(dropping_streams);
			dropping_streams = NIL;
			break;
		case XACT_EVENT_ABORT:
			foreach(lc, dropping_streams)
			{
				ZerobusStreamShared *s = zerobus_stream_shared(lfirst_int(lc), false);

				if (s == NULL)
					continue;
				SpinLockAcquire(&s->mutex);
				s->dropping = false;
				SpinLockRelease(&s->mutex);
			}
			/* a rolled back create_stream may have left a slot to drop */
			if (wakeup_at_commit || dropping_streams != NIL)
				zerobus_launcher_wakeup();
			wakeup_at_commit = false;
			list_free(dropping_streams);
			dropping_streams = NIL;
			break;
		default:
			break;
	}
}

/* Asks for the launcher to be woken when the current transaction commits. */
void
zerobus_launcher_wakeup_at_commit(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(zerobus_xact_callback, NULL);
		xact_callback_registered = true;
	}
	wakeup_at_commit = true;
}

/*
 * Tells the launcher, right away, to stop the worker of a stream being
 * dropped by the current transaction and not to start another.  Undone if
 * the transaction aborts.  Only for streams of the served database.
 */
void
zerobus_stream_mark_dropping(int32 stream_id)
{
	ZerobusStreamShared *s = zerobus_stream_shared(stream_id, true);
	MemoryContext oldcxt;

	zerobus_launcher_wakeup_at_commit();
	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	dropping_streams = lappend_int(dropping_streams, stream_id);
	MemoryContextSwitchTo(oldcxt);

	SpinLockAcquire(&s->mutex);
	s->dropping = true;
	SpinLockRelease(&s->mutex);
	zerobus_launcher_wakeup();
}

/*
 * Undoes zerobus_stream_mark_dropping() for a drop_stream whose
 * subtransaction rolled back: the launcher may run the stream's worker
 * again.  (A rollback of the whole transaction undoes every mark of it in
 * zerobus_xact_callback.)
 */
void
zerobus_stream_unmark_dropping(int32 stream_id)
{
	ZerobusStreamShared *s = zerobus_stream_shared(stream_id, false);

	dropping_streams = list_delete_int(dropping_streams, stream_id);
	if (s == NULL)
		return;
	SpinLockAcquire(&s->mutex);
	s->dropping = false;
	SpinLockRelease(&s->mutex);
	zerobus_launcher_wakeup();
}

/*
 * Takes the transaction-level lock that keeps the launcher from dropping a
 * slot created by a transaction that has not committed its stream yet:
 * create_stream takes it shared (wait = true); the launcher's sweep takes it
 * exclusively and skips the sweep when it is busy.
 */
bool
zerobus_slot_lock(bool exclusive, bool wait)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, SLOT_LOCK_KEY1, SLOT_LOCK_KEY2,
						 SLOT_LOCK_FIELD4);
	return LockAcquire(&tag, exclusive ? ExclusiveLock : ShareLock,
					   false, !wait) != LOCKACQUIRE_NOT_AVAIL;
}

/*
 * Remembers that this backend is about to create replication slot
 * slot_name for a stream, so that the launcher may drop it if the
 * transaction that made it never commits a stream for it.
 */
void
zerobus_slot_ledger_add(const char *slot_name)
{
	LWLockAcquire(zb_lock, LW_EXCLUSIVE);
	namestrcpy(&zb_shared->ledger[zb_shared->ledger_next], slot_name);
	zb_shared->ledger_next = (zb_shared->ledger_next + 1) % ZB_SLOT_LEDGER;
	LWLockRelease(zb_lock);
}

/*
 * Takes slot_name out of the ledger; returns whether it was there.  Nothing
 * is an orphan of ours unless it was.
 */
static bool
slot_ledger_forget(const char *slot_name)
{
	bool		found = false;

	LWLockAcquire(zb_lock, LW_EXCLUSIVE);
	for (int i = 0; i < ZB_SLOT_LEDGER; i++)
	{
		if (strcmp(NameStr(zb_shared->ledger[i]), slot_name) == 0)
		{
			found = true;
			MemSet(&zb_shared->ledger[i], 0, sizeof(NameData));
		}
	}
	LWLockRelease(zb_lock);
	return found;
}

/*
 * Sets a stream's last_error to message (and last_error_time to now), cut
 * on a character boundary to fit: the view shows it as text, which must be
 * valid in the server encoding.  The caller must not hold the mutex.
 */
void
zerobus_stream_note_error(ZerobusStreamShared *shared, const char *message)
{
	int			len = pg_mbcliplen(message, strlen(message),
								   sizeof(shared->last_error) - 1);
	TimestampTz now = GetCurrentTimestamp();

	SpinLockAcquire(&shared->mutex);
	memcpy(shared->last_error, message, len);
	shared->last_error[len] = '\0';
	shared->last_error_time = now;
	SpinLockRelease(&shared->mutex);
}

/* pg_lsn datum of lsn, or NULL when invalid */
static void
put_lsn(Datum *values, bool *nulls, int i, XLogRecPtr lsn)
{
	values[i] = LSNGetDatum(lsn);
	nulls[i] = XLogRecPtrIsInvalid(lsn);
}

static void
put_time(Datum *values, bool *nulls, int i, TimestampTz t)
{
	values[i] = TimestampTzGetDatum(t);
	nulls[i] = (t == 0);
}

/*
 * The ids of the streams whose owner the caller has the privileges of, as a
 * list of ints.  Needs a transaction.
 */
static List *
owned_streams(void)
{
	ZerobusCatalogAccess access;
	ZerobusColumnValues args = {0};
	MemoryContext cxt = CurrentMemoryContext;
	List	   *ids = NIL;
	uint64		i;

	zerobus_catalog_begin(&access);
	zerobus_add_column(&args, "caller", OIDOID, ObjectIdGetDatum(access.caller), false);
	zerobus_execute_with_values("SELECT id FROM zerobus.streams"
								" WHERE pg_catalog.pg_has_role($1, owner, 'USAGE')",
								&args, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		MemoryContext oldcxt = MemoryContextSwitchTo(cxt);

		ids = lappend_int(ids, DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i],
														   SPI_tuptable->tupdesc,
														   1, &isnull)));
		MemoryContextSwitchTo(oldcxt);
	}
	zerobus_catalog_end(&access);
	return ids;
}

/*
 * zerobus.stream_shared_state() returns setof record
 *
 * The shared state of the streams of the served database; nothing in any
 * other database.  last_error, which holds a server's words, only for the
 * streams whose owner the caller has the privileges of.
 */
Datum
zerobus_stream_shared_state(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bool		sees_all = superuser();
	List	   *owned;
	int			i;

	zerobus_require_preload();
	InitMaterializedSRF(fcinfo, 0);
	if (!zerobus_in_served_database())
		PG_RETURN_VOID();
	owned = sees_all ? NIL : owned_streams();

	for (i = 0; i < zerobus_max_streams; i++)
	{
		ZerobusStreamShared *slot = &zb_shared->streams[i];
		ZerobusStreamShared s;
		Datum		values[18];
		bool		nulls[18] = {0};

		SpinLockAcquire(&slot->mutex);
		memcpy(&s, slot, sizeof(s));
		SpinLockRelease(&slot->mutex);
		if (s.stream_id == 0)
			continue;

		values[0] = Int32GetDatum(s.stream_id);
		values[1] = Int32GetDatum(s.pid);
		nulls[1] = (s.pid == 0);
		values[2] = CStringGetTextDatum(zerobus_state_names[s.state]);
		put_lsn(values, nulls, 3, s.received_lsn);
		put_lsn(values, nulls, 4, s.acked_lsn);
		put_lsn(values, nulls, 5, s.confirmed_lsn);
		put_time(values, nulls, 6, s.acked_commit_time);
		put_time(values, nulls, 7, s.oldest_unacked_commit_time);
		put_time(values, nulls, 8, s.last_ack_time);
		values[9] = Int64GetDatum((int64) s.records_sent);
		values[10] = Int64GetDatum((int64) s.bytes_sent);
		values[11] = Int64GetDatum((int64) s.records_acked);
		values[12] = Int64GetDatum((int64) s.bytes_acked);
		values[13] = Int64GetDatum((int64) s.reconnects);
		s.last_error[sizeof(s.last_error) - 1] = '\0';
		values[14] = CStringGetTextDatum(s.last_error);
		nulls[14] = (s.last_error[0] == '\0') ||
			(!sees_all && !list_member_int(owned, s.stream_id));
		put_time(values, nulls, 15, s.last_error_time);
		put_time(values, nulls, 16, s.started_at);
		values[17] = Int64GetDatum((int64) s.truncates);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
}

/* Forgets the launcher when it exits, and stops the workers it started. */
static void
launcher_on_exit(int code, Datum arg)
{
	int			i;

	for (i = 0; i < zerobus_max_streams; i++)
		if (launcher_workers[i].handle)
			TerminateBackgroundWorker(launcher_workers[i].handle);

	LWLockAcquire(zb_lock, LW_EXCLUSIVE);
	if (zb_shared->launcher_pid == MyProcPid)
	{
		zb_shared->launcher_pid = 0;
		zb_shared->launcher_latch = NULL;
	}
	LWLockRelease(zb_lock);
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
 * a rolled back create_stream, say.  Skipped while a create_stream is in
 * progress.  Needs a transaction.
 */
static void
sweep_orphan_slots(bool installed)
{
	uint64		i;
	SPITupleTable *orphans;
	uint64		norphans;

	if (!zerobus_slot_lock(true, false))
		return;

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

		if (!slot_ledger_forget(slot_name))
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
	ZerobusStreamShared *s = zerobus_stream_shared(row->id, true);

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
	args.stream_id = row->id;
	StaticAssertStmt(sizeof(args) <= BGW_EXTRALEN, "ZerobusWorkerArgs too large");
	memcpy(bgw.bgw_extra, &args, sizeof(args));
	bgw.bgw_notify_pid = MyProcPid;

	w->stream_id = row->id;
	w->config_version = row->config_version;
	w->terminating = false;
	if (w->backoff_ms == 0)
		w->backoff_ms = WORKER_BACKOFF_MIN_MS;

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
 * long the launcher may sleep before a restart is due.
 */
static long
reconcile(const LauncherStream *rows, int nrows)
{
	TimestampTz now = GetCurrentTimestamp();
	long		timeout = LAUNCHER_NAP_MS;
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
	LWLockAcquire(zb_lock, LW_EXCLUSIVE);
	for (i = 0; i < zerobus_max_streams; i++)
	{
		ZerobusStreamShared *s = &zb_shared->streams[i];
		LauncherWorker *w;

		if (s->stream_id == 0 || find_row(rows, nrows, s->stream_id))
			continue;
		w = find_worker(s->stream_id);
		if (w && w->handle)
			continue;
		SpinLockAcquire(&s->mutex);
		s->stream_id = 0;
		SpinLockRelease(&s->mutex);
	}
	LWLockRelease(zb_lock);

	return timeout;
}

/*
 * One round of the launcher: read the streams, reconcile the workers,
 * sweep orphan slots.  Returns how long to sleep.
 */
static long
launcher_round(MemoryContext round_cxt)
{
	LauncherStream  *rows;
	int			nrows;
	bool		installed;
	long		timeout;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "reading zerobus.streams");
	installed = read_streams(round_cxt, &rows, &nrows);
	PopActiveSnapshot();
	CommitTransactionCommand();

	timeout = reconcile(rows, nrows);

	/* the slots of committed streams are theirs, not orphans to be */
	for (int i = 0; i < nrows; i++)
		(void) slot_ledger_forget(psprintf("%s%s", ZB_SLOT_PREFIX, rows[i].name));

	/* with a fresh snapshot, taken once the lock is held */
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING, "dropping orphan zerobus slots");
	sweep_orphan_slots(installed);
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	pgstat_report_stat(true);

	return timeout;
}

/*
 * The launcher's main function.  Errors of a round are logged and the round
 * retried later; the workers keep running meanwhile.
 */
void
zerobus_launcher_main(Datum main_arg)
{
	MemoryContext round_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(zerobus_database, NULL, 0);
	/* no search_path set by a database owner reaches the superuser's SQL */
	SetConfigOption("search_path", "", PGC_SUSET, PGC_S_OVERRIDE);

	launcher_workers = MemoryContextAllocZero(TopMemoryContext,
											  sizeof(LauncherWorker) * zerobus_max_streams);
	round_cxt = AllocSetContextCreate(TopMemoryContext, "zerobus launcher",
									  ALLOCSET_DEFAULT_SIZES);

	LWLockAcquire(zb_lock, LW_EXCLUSIVE);
	zb_shared->launcher_pid = MyProcPid;
	zb_shared->launcher_latch = MyLatch;
	zb_shared->launcher_dboid = MyDatabaseId;
	LWLockRelease(zb_lock);
	before_shmem_exit(launcher_on_exit, (Datum) 0);

	ereport(LOG,
			(errmsg("zerobus launcher started for database \"%s\"",
					zerobus_database)));

	for (;;)
	{
		long		timeout;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		MemoryContextReset(round_cxt);
		PG_TRY();
		{
			timeout = launcher_round(round_cxt);
		}
		PG_CATCH();
		{
			HOLD_INTERRUPTS();
			EmitErrorReport();
			AbortCurrentTransaction();
			FlushErrorState();
			MemoryContextSwitchTo(TopMemoryContext);
			RESUME_INTERRUPTS();
			timeout = 10000;
		}
		PG_END_TRY();

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
