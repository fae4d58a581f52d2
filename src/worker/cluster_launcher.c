/*-------------------------------------------------------------------------
 *
 * cluster_launcher.c
 *	  The cluster launcher: a database launcher (launcher.c) running for
 *	  every database with streams to run, whichever databases there are.
 *
 * The cluster launcher is the static background worker _PG_init registers.
 * It connects to no database, which leaves it the shared catalogs: each
 * round it lists pg_database, and keeps its view of every database that
 * zerobus.databases serves (connectable, not being dropped, "*" leaving
 * out the templates).  It starts a database launcher, a dynamic background
 * worker given the database's OID,
 *
 *	- for every served database when it starts, and for every database it
 *	  sees for the first time (created since, or served since a reload), as
 *	  a probe: the database launcher finds out whether the extension is
 *	  installed and a stream wants a worker, and exits at once if not;
 *	- for a database whose backends asked for one (create_stream,
 *	  resume_stream, drop_stream... wake their database's launcher, and ask
 *	  for one when none runs: src/common/shared.c);
 *	- again, after a backoff, for one that exited with an error.
 *
 * At most ZB_MAX_PROBES database launchers run as probes at once, so that a
 * cluster with hundreds of databases does not take every background worker
 * slot at start; one that found streams to run says so and no longer
 * counts.  A database launcher that exited with nothing to do is not
 * started again until a backend of its database asks: the extension
 * created, a database created from a template holding it or a stream
 * created all come with a create_stream, which asks.
 *
 * A database dropped, or no longer served after a reload, is forgotten and
 * its launcher stopped (which stops its workers).  DROP DATABASE itself
 * does not wait for us: only databases with running streams have a
 * launcher, and their active slots make DROP DATABASE fail first anyway.
 *
 * src/worker/cluster_launcher.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "stream.h"

/* How long the cluster launcher sleeps when nothing is due (ms) */
#define CLUSTER_NAP_MS			60000
/* First and longest delay before restarting a failed database launcher (ms) */
#define DB_BACKOFF_MIN_MS		1000
#define DB_BACKOFF_MAX_MS		60000
/* How long a new cluster launcher waits for an old one's launchers (ms) */
#define RESET_WAIT_MS			30000

/* The cluster launcher's view of one database */
typedef struct ClusterDatabase
{
	Oid			dboid;			/* hash key */
	char		name[NAMEDATALEN];
	bool		listed;			/* in the latest listing of pg_database */
	bool		served;			/* by zerobus.databases */
	bool		start;			/* its launcher is to be started */
	BackgroundWorkerHandle *handle; /* NULL: no launcher */
	bool		terminating;	/* we asked it to stop */
	TimestampTz next_start;		/* not started before */
	int			backoff_ms;		/* delay of the next restart after a failure */
	bool		warned;			/* said that its launcher could not start */
} ClusterDatabase;

static HTAB *databases = NULL;

/* Stops the database launchers it started (which stop their workers). */
static void
cluster_launcher_on_exit(int code, Datum arg)
{
	HASH_SEQ_STATUS seq;
	ClusterDatabase *db;

	if (databases)
	{
		hash_seq_init(&seq, databases);
		while ((db = hash_seq_search(&seq)) != NULL)
			if (db->handle)
				TerminateBackgroundWorker(db->handle);
	}
	zerobus_cluster_launcher_attach(false);
}

/*
 * Reads pg_database: marks every database listed, notes whether it is
 * served, and has a launcher started for each served database it had not
 * seen.  A database that cannot be connected to (datallowconn false, or
 * left invalid by an interrupted DROP DATABASE) is not listed.
 */
static void
list_databases(void)
{
	HASH_SEQ_STATUS seq;
	ClusterDatabase *db;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	hash_seq_init(&seq, databases);
	while ((db = hash_seq_search(&seq)) != NULL)
		db->listed = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	pgstat_report_activity(STATE_RUNNING, "listing databases");
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database form = (Form_pg_database) GETSTRUCT(tup);
		bool		found;
		bool		served;

		if (!form->datallowconn || database_is_invalid_form(form))
			continue;
		served = zerobus_database_served(NameStr(form->datname),
										 form->datistemplate);
		db = hash_search(databases, &form->oid, HASH_ENTER, &found);
		if (!found)
		{
			memset((char *) db + sizeof(Oid), 0, sizeof(*db) - sizeof(Oid));
			db->backoff_ms = DB_BACKOFF_MIN_MS;
		}
		if (served && (!found || !db->served))
			db->start = true;	/* new, or newly served: probe it */
		strlcpy(db->name, NameStr(form->datname), NAMEDATALEN);
		db->listed = true;
		db->served = served;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* Whether shared stream slots of database dboid are still needed */
static bool
database_kept(Oid dboid, void *arg)
{
	ClusterDatabase *db = hash_search(databases, &dboid, HASH_FIND, NULL);

	return db && ((db->listed && db->served) || db->handle);
}

/*
 * Takes the requests of the backends: a database asking for a launcher is
 * started, if served; other requests are dropped.  A request that found
 * no room in shared memory makes every served database a probe.
 */
static void
take_requests(void)
{
	int			max = zerobus_max_database_entries();
	Oid		   *dboids = palloc(sizeof(Oid) * max);
	bool		overflow;
	int			n = zerobus_dblauncher_requests(dboids, max, &overflow);

	for (int i = 0; i < n; i++)
	{
		ClusterDatabase *db = hash_search(databases, &dboids[i], HASH_FIND, NULL);

		if (db == NULL || !db->listed || !db->served)
			zerobus_dblauncher_forget(dboids[i]);
		else if (db->handle == NULL)
		{
			db->start = true;
			db->next_start = 0; /* asked: no backoff */
		}
		/* else it is starting: it reads zerobus.streams after attaching */
	}
	pfree(dboids);

	if (overflow)
	{
		HASH_SEQ_STATUS seq;
		ClusterDatabase *db;

		hash_seq_init(&seq, databases);
		while ((db = hash_seq_search(&seq)) != NULL)
			if (db->served)
				db->start = true;
	}
}

/* Notes that the launcher of db has exited, and whether to start another. */
static void
launcher_exited(ClusterDatabase *db, TimestampTz now)
{
	bool		asked;
	bool		idle = zerobus_dblauncher_stopped(db->dboid, &asked);

	pfree(db->handle);
	db->handle = NULL;
	if (asked)
		db->start = true;		/* a backend asked meanwhile: at once */
	else if (!idle && !db->terminating && db->listed && db->served)
	{
		ereport(LOG,
				(errmsg("zerobus launcher of database \"%s\" exited, restarting it in %d ms",
						db->name, db->backoff_ms)));
		db->start = true;
		db->next_start = TimestampTzPlusMilliseconds(now, db->backoff_ms);
		db->backoff_ms = Min(db->backoff_ms * 2, DB_BACKOFF_MAX_MS);
	}
	else if (idle)
		db->backoff_ms = DB_BACKOFF_MIN_MS;
	db->terminating = false;
}

/*
 * Registers the launcher of db.  False when it could not (no free entry or
 * no free background worker slot): it is tried again later.
 */
static bool
start_launcher(ClusterDatabase *db)
{
	BackgroundWorker bgw;

	if (!zerobus_dblauncher_start(db->dboid))
		return false;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "zerobus");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "zerobus_launcher_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, "zerobus launcher for database %s",
			 db->name);
	snprintf(bgw.bgw_type, BGW_MAXLEN, "zerobus launcher");
	bgw.bgw_main_arg = ObjectIdGetDatum(db->dboid);
	bgw.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&bgw, &db->handle))
	{
		bool		asked;

		db->handle = NULL;
		(void) zerobus_dblauncher_stopped(db->dboid, &asked);
		/* said once until it starts: it is tried again every second */
		if (!db->warned)
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("zerobus could not start the launcher of database \"%s\"",
							db->name),
					 errdetail("Every background worker slot is taken; the launcher is tried again every second."),
					 errhint("Increase max_worker_processes.")));
		db->warned = true;
		return false;
	}
	if (db->warned)
		ereport(LOG,
				(errmsg("zerobus started the launcher of database \"%s\"", db->name)));
	db->warned = false;
	db->start = false;
	db->terminating = false;
	return true;
}

/*
 * One round: list the databases, take the requests, reap the launchers
 * that exited, stop those of databases gone or no longer served, start
 * the launchers due within the probe budget.  Returns how long to sleep.
 */
static long
cluster_round(void)
{
	TimestampTz now;
	HASH_SEQ_STATUS seq;
	ClusterDatabase *db;
	long		timeout = CLUSTER_NAP_MS;
	int			probes = 0;
	bool		short_of_slots = false;

	list_databases();
	take_requests();
	now = GetCurrentTimestamp();

	hash_seq_init(&seq, databases);
	while ((db = hash_seq_search(&seq)) != NULL)
	{
		pid_t		pid;

		if (db->handle &&
			GetBackgroundWorkerPid(db->handle, &pid) == BGWH_STOPPED)
			launcher_exited(db, now);
		if (db->handle && !db->terminating && (!db->listed || !db->served))
		{
			TerminateBackgroundWorker(db->handle);
			db->terminating = true;
		}
		if (db->handle && !zerobus_dblauncher_serving(db->dboid))
			probes++;
	}

	/* forget the databases dropped, and the stream slots of their streams */
	zerobus_stream_release_databases(database_kept, NULL);
	hash_seq_init(&seq, databases);
	while ((db = hash_seq_search(&seq)) != NULL)
		if (!db->listed && db->handle == NULL)
			(void) hash_search(databases, &db->dboid, HASH_REMOVE, NULL);

	hash_seq_init(&seq, databases);
	while ((db = hash_seq_search(&seq)) != NULL)
	{
		if (!db->start || db->handle || !db->listed || !db->served)
			continue;
		if (db->next_start > now)
		{
			long		ms = (long) ((db->next_start - now) / 1000) + 1;

			timeout = Min(timeout, ms);
			continue;
		}
		if (probes >= ZB_MAX_PROBES || short_of_slots)
			continue;			/* woken when a probe exits or serves */
		if (start_launcher(db))
			probes++;
		else
			short_of_slots = true;
	}
	if (short_of_slots)
		timeout = Min(timeout, DB_BACKOFF_MIN_MS);
	return timeout;
}

/*
 * The cluster launcher's main function.  Errors of a round are logged and
 * the round retried later; the database launchers keep running meanwhile.
 */
void
zerobus_cluster_launcher_main(Datum main_arg)
{
	HASHCTL		ctl;
	int			waited_ms = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	/* no database: pg_database and the other shared catalogs only */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(ClusterDatabase);
	ctl.hcxt = TopMemoryContext;
	databases = hash_create("zerobus databases", 64, &ctl,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	/*
	 * The database launchers of an earlier cluster launcher were stopped
	 * when it exited; wait until they are gone, so that no database gets
	 * two.
	 */
	while (!zerobus_dblauncher_reset() && waited_ms < RESET_WAIT_MS)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 100, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		waited_ms += 100;
	}

	zerobus_cluster_launcher_attach(true);
	before_shmem_exit(cluster_launcher_on_exit, (Datum) 0);

	ereport(LOG,
			(errmsg("zerobus cluster launcher started")));
	if (zerobus_database[0] != '\0')
		ereport(WARNING,
				(errcode(ERRCODE_WARNING_DEPRECATED_FEATURE),
				 errmsg("zerobus.database is deprecated"),
				 errdetail("Only database \"%s\" runs streams, whatever zerobus.databases says.",
						   zerobus_database),
				 errhint("Set zerobus.databases = '%s' instead.", zerobus_database)));

	for (;;)
	{
		long		timeout;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		PG_TRY();
		{
			timeout = cluster_round();
		}
		PG_CATCH();
		{
			zerobus_launcher_round_failed();
			timeout = 10000;
		}
		PG_END_TRY();

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
