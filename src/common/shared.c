/*-------------------------------------------------------------------------
 *
 * shared.c
 *	  The shared memory of zerobus: one slot per stream, the entries of the
 *	  database launchers, the ledger of slots being created, and the
 *	  wakeups that connect the SQL functions to the launchers.
 *
 * Reserved when the module is preloaded (module.c calls
 * zerobus_shared_register from _PG_init): one ZerobusStreamShared per
 * possible stream, the latch of the cluster launcher
 * (src/worker/cluster_launcher.c), one entry per database launcher
 * (src/worker/launcher.c), the ledger.  The SQL functions of src/api wake
 * their database's launcher when their transaction commits, through the
 * functions here; when their database has no launcher running, they ask
 * the cluster launcher to start one.
 *
 * Stream ids are only unique within one database (zerobus.streams.id is a
 * serial of each database), so a stream's shared state is found by its
 * database and its id.  Every caller is connected to the stream's database:
 * the database is always MyDatabaseId.
 *
 * src/common/shared.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "stream.h"

/* Advisory lock key serializing slot creation against the orphan sweep */
#define SLOT_LOCK_KEY1			0x7a65726f	/* "zero" */
#define SLOT_LOCK_KEY2			0x62757300	/* "bus" */
#define SLOT_LOCK_FIELD4		0x5a42	/* outside pg_advisory_lock's 1, 2 */

/* Slots made by this server's zerobus functions, remembered for the sweep */
#define ZB_SLOT_LEDGER 64

/*
 * A database launcher, as the cluster launcher and the backends of its
 * database see it.  An entry exists from the moment a backend asks for a
 * launcher in its database (requested, not started) or the cluster launcher
 * starts one, until the cluster launcher has seen it exit.  Protected by
 * zb_lock.
 */
typedef struct ZerobusDatabaseEntry
{
	Oid			dboid;			/* InvalidOid: entry free */
	bool		started;		/* the cluster launcher started its launcher */
	pid_t		pid;			/* the launcher once attached; 0 after */
	Latch	   *latch;			/* its latch while attached */
	bool		wakeup;			/* a backend asked for a round since the
								 * launcher last read zerobus.streams */
	bool		serving;		/* it runs workers: no longer a probe */
	bool		idle;			/* it exited with nothing to do */
} ZerobusDatabaseEntry;

/* Shared memory: the launchers and one slot per stream */
typedef struct ZerobusShared
{
	pid_t		cluster_pid;	/* 0 when no cluster launcher runs */
	Latch	   *cluster_latch;
	bool		overflow;		/* a wakeup found no free database entry:
								 * the cluster launcher probes every
								 * database */

	/*
	 * The slots create_stream made (a ring: the oldest entry goes when it
	 * is full), until the launcher sees them belong to a stream.  Only these
	 * may be swept as orphans: a slot someone else named zerobus_* is never
	 * ours to drop.  Slot names are unique in the cluster, so one ledger
	 * serves every database.  Protected by zb_lock.
	 */
	int			ledger_next;
	NameData	ledger[ZB_SLOT_LEDGER];
	ZerobusStreamShared streams[FLEXIBLE_ARRAY_MEMBER];
} ZerobusShared;

static ZerobusShared *zb_shared = NULL;
static ZerobusDatabaseEntry *zb_databases = NULL;	/* after zb_shared */
static LWLock *zb_lock = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* Per-backend: what the SQL functions asked for at end of transaction */
static bool xact_callback_registered = false;
static bool wakeup_at_commit = false;
static List *dropping_streams = NIL;	/* stream ids, in TopMemoryContext */

/*
 * Entries for database launchers: one per database with streams running
 * (each has at least one stream, so zerobus.max_streams of them at most),
 * plus room for the probes and the requests of databases waiting for one.
 */
int
zerobus_max_database_entries(void)
{
	return zerobus_max_streams + 2 * ZB_MAX_PROBES + 8;
}

static Size
zerobus_shmem_size(void)
{
	Size		size;

	size = add_size(offsetof(ZerobusShared, streams),
					mul_size(zerobus_max_streams, sizeof(ZerobusStreamShared)));
	size = MAXALIGN(size);
	return add_size(size, mul_size(zerobus_max_database_entries(),
								   sizeof(ZerobusDatabaseEntry)));
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
	zb_databases = (ZerobusDatabaseEntry *)
		((char *) zb_shared +
		 MAXALIGN(offsetof(ZerobusShared, streams) +
				  zerobus_max_streams * sizeof(ZerobusStreamShared)));
	zb_lock = &(GetNamedLWLockTranche("zerobus"))->lock;
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Reserves the shared memory and its lock: called by _PG_init, in the
 * postmaster loading the module through shared_preload_libraries.
 */
void
zerobus_shared_register(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = zerobus_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = zerobus_shmem_startup;
}

/*
 * The shared slot of stream stream_id of this backend's database, or NULL
 * when it has none and create is false.  With create, a free slot is taken
 * (counters zeroed, state stopped); running out of slots is an ERROR, or
 * with missing_ok a NULL.  The result stays valid while the stream exists;
 * read and write its fields under its mutex.
 */
static ZerobusStreamShared *
stream_shared(int32 stream_id, bool create, bool missing_ok)
{
	ZerobusStreamShared *free_slot = NULL;
	int			i;

	zerobus_require_preload();
	Assert(stream_id > 0);
	Assert(OidIsValid(MyDatabaseId));

	LWLockAcquire(zb_lock, create ? LW_EXCLUSIVE : LW_SHARED);
	for (i = 0; i < zerobus_max_streams; i++)
	{
		ZerobusStreamShared *s = &zb_shared->streams[i];

		if (s->stream_id == stream_id && s->dboid == MyDatabaseId)
		{
			LWLockRelease(zb_lock);
			return s;
		}
		if (s->stream_id == 0 && free_slot == NULL)
			free_slot = s;
	}
	if (!create || (free_slot == NULL && missing_ok))
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
				 errdetail("The streams of all databases share zerobus.max_streams slots."),
				 errhint("Increase zerobus.max_streams.")));
	}
	SpinLockAcquire(&free_slot->mutex);
	memset((char *) free_slot + offsetof(ZerobusStreamShared, stream_id), 0,
		   sizeof(ZerobusStreamShared) - offsetof(ZerobusStreamShared, stream_id));
	free_slot->stream_id = stream_id;
	free_slot->dboid = MyDatabaseId;
	free_slot->state = ZB_STATE_STOPPED;
	SpinLockRelease(&free_slot->mutex);
	LWLockRelease(zb_lock);
	return free_slot;
}

/*
 * The shared slot of a stream of this backend's database (see
 * stream_shared); with create, one is taken if it has none, and none left
 * is an ERROR, which cannot happen for a stream that has a worker: its
 * launcher took the slot before starting it.
 */
ZerobusStreamShared *
zerobus_stream_shared(int32 stream_id, bool create)
{
	return stream_shared(stream_id, create, false);
}

/*
 * The shared slot of a stream of this backend's database, taken if it has
 * none; NULL when every slot is taken, for the launcher, which waits for
 * one rather than failing its round.
 */
ZerobusStreamShared *
zerobus_stream_shared_reserve(int32 stream_id)
{
	return stream_shared(stream_id, true, true);
}

/*
 * How many shared stream slots the streams of other databases hold: with
 * this database's streams, create_stream keeps the total within
 * zerobus.max_streams.
 */
int
zerobus_stream_slots_elsewhere(void)
{
	int			n = 0;

	LWLockAcquire(zb_lock, LW_SHARED);
	for (int i = 0; i < zerobus_max_streams; i++)
		if (zb_shared->streams[i].stream_id != 0 &&
			zb_shared->streams[i].dboid != MyDatabaseId)
			n++;
	LWLockRelease(zb_lock);
	return n;
}

/* The entry of database dboid, or NULL.  The caller holds zb_lock. */
static ZerobusDatabaseEntry *
database_entry(Oid dboid)
{
	for (int i = 0; i < zerobus_max_database_entries(); i++)
		if (zb_databases[i].dboid == dboid)
			return &zb_databases[i];
	return NULL;
}

/* A free database entry for dboid, or NULL.  The caller holds zb_lock. */
static ZerobusDatabaseEntry *
database_entry_new(Oid dboid)
{
	for (int i = 0; i < zerobus_max_database_entries(); i++)
	{
		ZerobusDatabaseEntry *e = &zb_databases[i];

		if (e->dboid == InvalidOid)
		{
			memset(e, 0, sizeof(*e));
			e->dboid = dboid;
			return e;
		}
	}
	return NULL;
}

/*
 * Wakes the launcher of this backend's database: sets its latch if it
 * runs, and in any case notes that a round was asked for, so that a
 * launcher about to exit for want of work stays (see
 * zerobus_dblauncher_detach).  With no launcher running, asks the cluster
 * launcher for one; with no entry free for the request, has the cluster
 * launcher probe every database.
 */
void
zerobus_launcher_wakeup(void)
{
	ZerobusDatabaseEntry *e;
	bool		wake_cluster = false;

	if (!zerobus_preloaded || !OidIsValid(MyDatabaseId))
		return;
	LWLockAcquire(zb_lock, LW_EXCLUSIVE);
	e = database_entry(MyDatabaseId);
	if (e == NULL)
	{
		e = database_entry_new(MyDatabaseId);
		if (e == NULL)
			zb_shared->overflow = true;
		wake_cluster = true;
	}
	if (e)
	{
		e->wakeup = true;
		if (e->latch)
			SetLatch(e->latch);
		else
			wake_cluster = true;	/* not started, starting or exited */
	}
	if (wake_cluster && zb_shared->cluster_latch)
		SetLatch(zb_shared->cluster_latch);
	LWLockRelease(zb_lock);
}

/* Sets the cluster launcher's latch, if it runs. */
void
zerobus_cluster_launcher_wakeup(void)
{
	LWLockAcquire(zb_lock, LW_SHARED);
	if (zb_shared->cluster_latch)
		SetLatch(zb_shared->cluster_latch);
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

/*
 * Asks for the launcher of this database to be woken (or started) when the
 * current transaction commits.
 */
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
 * Tells the launcher of this database, right away, to stop the worker of a
 * stream being dropped by the current transaction and not to start
 * another.  Undone if the transaction aborts.  Only for streams of a
 * served database.
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
 * Makes the calling process the cluster launcher (attach), or forgets it
 * if it is (detach).
 */
void
zerobus_cluster_launcher_attach(bool attach)
{
	LWLockAcquire(zb_lock, LW_EXCLUSIVE);
	if (attach)
	{
		zb_shared->cluster_pid = MyProcPid;
		zb_shared->cluster_latch = MyLatch;
	}
	else if (zb_shared->cluster_pid == MyProcPid)
	{
		zb_shared->cluster_pid = 0;
		zb_shared->cluster_latch = NULL;
	}
	LWLockRelease(zb_lock);
}

/*
 * Makes the calling process the launcher of its database, the one
 * zerobus_launcher_wakeup() wakes there, and clears the request for a
 * round.  False when the database has no entry (the cluster launcher did
 * not start us) or another launcher is attached to it.
 */
bool
zerobus_dblauncher_attach(void)
{
	ZerobusDatabaseEntry *e;
	bool		ok = false;

	LWLockAcquire(zb_lock, LW_EXCLUSIVE);
	e = database_entry(MyDatabaseId);
	if (e && e->started && e->pid == 0)
	{
		e->pid = MyProcPid;
		e->latch = MyLatch;
		e->idle = false;
		e->wakeup = false;
		ok = true;
	}
	LWLockRelease(zb_lock);
	return ok;
}

/*
 * Called by the launcher of this database before it reads zerobus.streams:
 * the wakeups from now on ask for another round.
 */
void
zerobus_dblauncher_begin_round(void)
{
	ZerobusDatabaseEntry *e;

	LWLockAcquire(zb_lock, LW_EXCLUSIVE);
	e = database_entry(MyDatabaseId);
	if (e && e->pid == MyProcPid)
		e->wakeup = false;
	LWLockRelease(zb_lock);
}

/*
 * Called by the launcher of this database once it runs workers: it is no
 * longer a probe, and the cluster launcher may start another probe.
 */
void
zerobus_dblauncher_set_serving(void)
{
	ZerobusDatabaseEntry *e;

	LWLockAcquire(zb_lock, LW_EXCLUSIVE);
	e = database_entry(MyDatabaseId);
	if (e && e->pid == MyProcPid && !e->serving)
	{
		e->serving = true;
		if (zb_shared->cluster_latch)
			SetLatch(zb_shared->cluster_latch);
	}
	LWLockRelease(zb_lock);
}

/*
 * Detaches the launcher of this database, which is about to exit: with
 * idle, because it found nothing to do, which it may only do if no
 * backend asked for a round since it read zerobus.streams (else it
 * returns false and stays attached, to read again).  The cluster launcher
 * restarts an idle launcher only when asked; any other exit is a failure
 * it retries.
 */
bool
zerobus_dblauncher_detach(bool idle)
{
	ZerobusDatabaseEntry *e;

	LWLockAcquire(zb_lock, LW_EXCLUSIVE);
	e = database_entry(MyDatabaseId);
	if (e && e->pid == MyProcPid)
	{
		if (idle && e->wakeup)
		{
			LWLockRelease(zb_lock);
			return false;
		}
		e->pid = 0;
		e->latch = NULL;
		e->idle = idle;
		if (zb_shared->cluster_latch)
			SetLatch(zb_shared->cluster_latch);
	}
	LWLockRelease(zb_lock);
	return true;
}

/*
 * For the cluster launcher: the databases whose backends asked for a
 * launcher that is not started (at most max of them, into dboids); returns
 * how many.  *overflow tells, once, that some request found no free entry.
 */
int
zerobus_dblauncher_requests(Oid *dboids, int max, bool *overflow)
{
	int			n = 0;

	LWLockAcquire(zb_lock, LW_EXCLUSIVE);
	for (int i = 0; i < zerobus_max_database_entries() && n < max; i++)
		if (zb_databases[i].dboid != InvalidOid && !zb_databases[i].started)
			dboids[n++] = zb_databases[i].dboid;
	*overflow = zb_shared->overflow;
	zb_shared->overflow = false;
	LWLockRelease(zb_lock);
	return n;
}

/*
 * For the cluster launcher, before it starts the launcher of database
 * dboid: marks its entry started (taking a free one if it has none).
 * False when no entry is free.
 */
bool
zerobus_dblauncher_start(Oid dboid)
{
	ZerobusDatabaseEntry *e;

	LWLockAcquire(zb_lock, LW_EXCLUSIVE);
	e = database_entry(dboid);
	if (e == NULL)
		e = database_entry_new(dboid);
	if (e)
	{
		e->started = true;
		e->pid = 0;
		e->latch = NULL;
		e->serving = false;
		e->idle = false;
	}
	LWLockRelease(zb_lock);
	return e != NULL;
}

/*
 * For the cluster launcher, once the launcher of database dboid has exited
 * (or could not be started): frees its entry, unless a backend asked for a
 * round meanwhile, which keeps it as a request.  Returns whether it exited
 * idle; *asked whether it was asked for a round.
 */
bool
zerobus_dblauncher_stopped(Oid dboid, bool *asked)
{
	ZerobusDatabaseEntry *e;
	bool		idle = false;

	*asked = false;
	LWLockAcquire(zb_lock, LW_EXCLUSIVE);
	e = database_entry(dboid);
	if (e)
	{
		idle = e->idle;
		*asked = e->wakeup;
		if (e->wakeup)
		{
			e->started = false;
			e->pid = 0;
			e->latch = NULL;
			e->serving = false;
			e->idle = false;
		}
		else
			e->dboid = InvalidOid;
	}
	LWLockRelease(zb_lock);
	return idle;
}

/*
 * For the cluster launcher: whether the launcher of database dboid runs
 * workers (is no longer a probe).
 */
bool
zerobus_dblauncher_serving(Oid dboid)
{
	ZerobusDatabaseEntry *e;
	bool		serving;

	LWLockAcquire(zb_lock, LW_SHARED);
	e = database_entry(dboid);
	serving = e && e->serving;
	LWLockRelease(zb_lock);
	return serving;
}

/* For the cluster launcher: forgets a request for database dboid. */
void
zerobus_dblauncher_forget(Oid dboid)
{
	ZerobusDatabaseEntry *e;

	LWLockAcquire(zb_lock, LW_EXCLUSIVE);
	e = database_entry(dboid);
	if (e && !e->started)
		e->dboid = InvalidOid;
	LWLockRelease(zb_lock);
}

/*
 * For a new cluster launcher: forgets what an earlier one started (their
 * launchers exited with it, see cluster_launcher.c) but keeps the requests.
 * Returns false while a database launcher is still attached.
 */
bool
zerobus_dblauncher_reset(void)
{
	bool		clean = true;

	LWLockAcquire(zb_lock, LW_EXCLUSIVE);
	for (int i = 0; i < zerobus_max_database_entries(); i++)
	{
		ZerobusDatabaseEntry *e = &zb_databases[i];

		if (e->dboid == InvalidOid || !e->started)
			continue;
		if (e->pid != 0)
			clean = false;
		else
			e->started = false; /* asked again: each gets a round */
	}
	LWLockRelease(zb_lock);
	return clean;
}

/* Frees stream slot s.  The caller holds zb_lock exclusively. */
static void
free_stream_slot(ZerobusStreamShared *s)
{
	SpinLockAcquire(&s->mutex);
	s->stream_id = 0;
	s->dboid = InvalidOid;
	SpinLockRelease(&s->mutex);
}

/*
 * Frees the shared slot of every stream of this database for which
 * in_use(stream_id, arg) says false: the database launcher's call, for
 * streams gone and without a worker.  in_use runs under the LWLock, so it
 * must not take it or raise an error.
 */
void
zerobus_stream_release_unused(bool (*in_use) (int32 stream_id, void *arg),
							  void *arg)
{
	LWLockAcquire(zb_lock, LW_EXCLUSIVE);
	for (int i = 0; i < zerobus_max_streams; i++)
	{
		ZerobusStreamShared *s = &zb_shared->streams[i];

		if (s->stream_id != 0 && s->dboid == MyDatabaseId &&
			!in_use(s->stream_id, arg))
			free_stream_slot(s);
	}
	LWLockRelease(zb_lock);
}

/*
 * Frees the shared slots of the streams of every database for which
 * keep(dboid, arg) says false: the cluster launcher's call, for databases
 * dropped or no longer served, whose launcher has exited.  The launcher of
 * a database whose streams are all paused exits too but keeps their slots,
 * so that stat_streams still shows their counters.  keep runs under the
 * LWLock, so it must not take it or raise an error.
 */
void
zerobus_stream_release_databases(bool (*keep) (Oid dboid, void *arg),
								 void *arg)
{
	LWLockAcquire(zb_lock, LW_EXCLUSIVE);
	for (int i = 0; i < zerobus_max_streams; i++)
	{
		ZerobusStreamShared *s = &zb_shared->streams[i];

		if (s->stream_id != 0 && !keep(s->dboid, arg) &&
			database_entry(s->dboid) == NULL)
			free_stream_slot(s);
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
 * Copies the shared state of every stream of this backend's database into
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
		if (out[n].stream_id != 0 && out[n].dboid == MyDatabaseId)
			n++;
	}
	return n;
}

