/*-------------------------------------------------------------------------
 *
 * module.c
 *	  Module initialization, the zerobus.* settings and the shared memory
 *	  of the launcher and the stream workers.
 *
 * Loaded through shared_preload_libraries, the module defines its settings,
 * reserves shared memory (one ZerobusStreamShared per possible stream, the
 * launcher's latch, the ledger of slots being created) and registers the
 * launcher (src/worker/launcher.c).  The SQL functions of src/api wake the
 * launcher when their transaction commits, through the functions here.
 *
 * Loaded any other way (a walsender or a backend loading the output plugin)
 * the module only serves as the output plugin: no settings, no shared
 * memory, and the SQL API refuses to run.
 *
 * Stream ids are only unique within one database, so shared memory and the
 * launcher belong to the streams of zerobus.database alone.
 *
 * src/common/module.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "store.h"
#include "stream.h"

void		_PG_init(void);

/* Advisory lock key serializing slot creation against the orphan sweep */
#define SLOT_LOCK_KEY1			0x7a65726f	/* "zero" */
#define SLOT_LOCK_KEY2			0x62757300	/* "bus" */
#define SLOT_LOCK_FIELD4		0x5a42	/* outside pg_advisory_lock's 1, 2 */


bool		zerobus_preloaded = false;

char	   *zerobus_database = NULL;
int			zerobus_max_streams = 16;
int			zerobus_batch_max_records = 1000;
int			zerobus_batch_max_bytes = 1024 * 1024;
int			zerobus_batch_max_delay = 10;
int			zerobus_max_inflight_bytes = 48 * 1024 * 1024;
int			zerobus_ack_timeout = 60000;
int			zerobus_restart_backoff_max = 60;
int			zerobus_snapshot_chunk_rows = 10000;
char	   *zerobus_ca_file = NULL;
char	   *zerobus_proxy = NULL;
char	   *zerobus_no_proxy = NULL;
int			zerobus_stream_max_records_per_second = 15000;
int			zerobus_stream_max_bytes_per_second = 100000000;
int			zerobus_max_streams_per_table = 16;
int			zerobus_statement_timeout = 300000;

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
		&zerobus_batch_max_bytes, 1024 * 1024, 1024, 10 * 1024 * 1024 - 64 * 1024,
		PGC_SIGHUP, GUC_UNIT_BYTE, true},
	{"batch_max_delay",
		"Maximum time a record waits for its batch to fill.",
		&zerobus_batch_max_delay, 10, 0, 60000, PGC_SIGHUP, GUC_UNIT_MS, true},
	{"max_inflight_bytes",
		"Bytes sent or queued and not yet acknowledged after which a worker stops reading its slot.",
		&zerobus_max_inflight_bytes, 48 * 1024 * 1024, 1024 * 1024, INT_MAX,
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
	{"stream_max_records_per_second",
		"Records per second one Zerobus stream carries (the service's per-stream quota); a busier table gets more streams.",
		&zerobus_stream_max_records_per_second, 15000, 1, INT_MAX, PGC_SIGHUP, 0, false},
	{"stream_max_bytes_per_second",
		"Bytes per second one Zerobus stream carries (the service's per-stream quota); a busier table gets more streams.",
		&zerobus_stream_max_bytes_per_second, 100000000, 1024, INT_MAX,
		PGC_SIGHUP, GUC_UNIT_BYTE, false},
	{"max_streams_per_table",
		"Maximum number of Zerobus streams one table's records are spread over.",
		&zerobus_max_streams_per_table, 16, 1, ZB_MAX_STREAMS_PER_TABLE, PGC_SIGHUP, 0, false},
	/* a warehouse may have to start first: minutes for a classic one */
	{"statement_timeout",
		"Time a Databricks SQL statement (creating or altering a target table) may take, warehouse start included, before it is canceled.",
		&zerobus_statement_timeout, 300000, 1000, INT_MAX, PGC_SUSET, GUC_UNIT_MS, false},
};

/* Slots made by this server's zerobus functions, remembered for the sweep */
#define ZB_SLOT_LEDGER 64

/* Shared memory: the launcher and one slot per stream */
typedef struct ZerobusShared
{
	pid_t		launcher_pid;	/* 0 when no launcher runs */
	Latch	   *launcher_latch;

	/*
	 * The slots create_stream made (a ring: the oldest entry goes when it
	 * is full), until the launcher sees them belong to a stream.  Only these
	 * may be swept as orphans: a slot someone else named zerobus_* is never
	 * ours to drop.  Protected by zb_lock.
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
 * GUC check hook of zerobus.proxy: empty, or a URL with a scheme libcurl
 * takes for a proxy and a host, with no line break (it becomes a curl
 * option as it is).  The value may hold credentials: the message does not
 * show it.
 */
static bool
check_proxy(char **newval, void **extra, GucSource source)
{
	static const char *const schemes[] = {
		"http://", "https://", "socks4://", "socks4a://", "socks5://", "socks5h://"
	};
	const char *v = *newval;

	if (v == NULL || v[0] == '\0')
		return true;
	for (int i = 0; i < (int) lengthof(schemes); i++)
	{
		size_t		len = strlen(schemes[i]);

		if (pg_strncasecmp(v, schemes[i], len) == 0 && v[len] != '\0' &&
			v[len] != '/' && strpbrk(v, " \t\r\n") == NULL)
			return true;
	}
	GUC_check_errdetail("The proxy must be a URL of scheme http, https, socks4, socks4a, socks5 or socks5h with a host, such as http://proxy.example.com:3128.");
	return false;
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
	for (i = 0; i < (int) lengthof(int_settings); i++)
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
	DefineCustomStringVariable("zerobus.proxy",
							   "Proxy for the connections to Zerobus and to the OAuth endpoint; empty for the server's environment (https_proxy, http_proxy, all_proxy).",
							   "A URL such as http://proxy.example.com:3128 (credentials may be given as user:password@); gRPC goes through a CONNECT tunnel.",
							   &zerobus_proxy, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   check_proxy, NULL, NULL);
	DefineCustomStringVariable("zerobus.no_proxy",
							   "Hosts reached without the proxy, comma-separated; empty for the server's no_proxy environment variable.",
							   "\"*\" bypasses every proxy, also those of the environment.",
							   &zerobus_no_proxy, "",
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

	for (i = 0; i < (int) lengthof(int_settings); i++)
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
bool
zerobus_slot_ledger_forget(const char *slot_name)
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
 * Makes the calling process the launcher that zerobus_launcher_wakeup()
 * wakes (attach), or forgets it if it is (detach).
 */
void
zerobus_launcher_attach(bool attach)
{
	LWLockAcquire(zb_lock, LW_EXCLUSIVE);
	if (attach)
	{
		zb_shared->launcher_pid = MyProcPid;
		zb_shared->launcher_latch = MyLatch;
	}
	else if (zb_shared->launcher_pid == MyProcPid)
	{
		zb_shared->launcher_pid = 0;
		zb_shared->launcher_latch = NULL;
	}
	LWLockRelease(zb_lock);
}

/*
 * Frees the shared slot of every stream for which in_use(stream_id, arg)
 * says false: the launcher's call, for streams gone and without a worker.
 * in_use runs under the LWLock, so it must not take it or raise an error.
 */
void
zerobus_stream_release_unused(bool (*in_use) (int32 stream_id, void *arg),
							  void *arg)
{
	LWLockAcquire(zb_lock, LW_EXCLUSIVE);
	for (int i = 0; i < zerobus_max_streams; i++)
	{
		ZerobusStreamShared *s = &zb_shared->streams[i];

		if (s->stream_id == 0 || in_use(s->stream_id, arg))
			continue;
		SpinLockAcquire(&s->mutex);
		s->stream_id = 0;
		SpinLockRelease(&s->mutex);
	}
	LWLockRelease(zb_lock);
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

/*
 * Copies the shared state of every stream of the served database into
 * out (room for zerobus_max_streams), each under its mutex; returns how
 * many.
 */
int
zerobus_stream_shared_copy(ZerobusStreamShared *out)
{
	int			n = 0;

	zerobus_require_preload();
	for (int i = 0; i < zerobus_max_streams; i++)
	{
		ZerobusStreamShared *slot = &zb_shared->streams[i];

		SpinLockAcquire(&slot->mutex);
		memcpy(&out[n], slot, sizeof(ZerobusStreamShared));
		SpinLockRelease(&slot->mutex);
		if (out[n].stream_id != 0)
			n++;
	}
	return n;
}
