/*-------------------------------------------------------------------------
 *
 * stream.h
 *	  Streams: their configuration (the zerobus.streams catalog table, read
 *	  by store.c), their shared-memory state (shared.c), and the entry
 *	  points of the launcher and the stream workers (launcher.c, worker.c).
 *
 * A stream is a publication + a logical replication slot + a Zerobus
 * endpoint + a workspace + credentials + the mapping of source tables to
 * target tables.  Each enabled stream has one background worker.
 *
 * src/common/stream.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ZEROBUS_STREAM_H
#define ZEROBUS_STREAM_H

#include "postgres.h"

#include "access/xlogdefs.h"
#include "storage/latch.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

/* Worker states, as shown by zerobus.stat_streams.state */
typedef enum ZerobusStreamState
{
	ZB_STATE_STOPPED = 0,		/* no worker (disabled, or not started yet) */
	ZB_STATE_STARTING,			/* connecting: slot, token, Zerobus */
	ZB_STATE_STREAMING,			/* running */
	ZB_STATE_RETRYING,			/* transient failure, backing off */
	ZB_STATE_FAILED				/* paused by a permanent error */
} ZerobusStreamState;

/*
 * Per-stream shared state, one slot per stream with a worker (or with
 * statistics kept since), whatever its database.  Written by the stream's
 * worker, read by zerobus.stat_streams; protected by mutex.  A stream is
 * known by its database and its id: ids are only unique in a database.
 */
typedef struct ZerobusStreamShared
{
	slock_t		mutex;
	int32		stream_id;		/* zerobus.streams.id; 0 = free slot */
	Oid			dboid;			/* database of the stream */
	pid_t		pid;			/* worker pid, 0 if none */
	ZerobusStreamState state;
	XLogRecPtr	received_lsn;	/* end of the last transaction received */
	XLogRecPtr	acked_lsn;		/* end of the last transaction fully acked */
	XLogRecPtr	confirmed_lsn;	/* last position confirmed to the slot */
	TimestampTz acked_commit_time;	/* commit time of acked_lsn's xact */
	TimestampTz oldest_unacked_commit_time; /* 0 when nothing in flight */
	TimestampTz last_ack_time;
	uint64		records_sent;
	uint64		bytes_sent;
	uint64		records_acked;
	uint64		bytes_acked;
	uint64		reconnects;
	uint64		stream_reopens; /* Zerobus streams reopened within a
								 * session (sender.c: reopen_call) */
	uint64		truncates;		/* truncated tables seen, not sent */
	uint64		array_nulls;	/* arrays sent without their NULL elements
								 * (named in _array_nulls) */
	TimestampTz last_error_time;
	char		last_error[1024];
	TimestampTz started_at;
	bool		dropping;		/* zerobus.drop_stream() in progress: the
								 * launcher stops the worker and does not
								 * start another */
} ZerobusStreamShared;

/*
 * schema_policy, by its position among the choices (options.c): pause the
 * target, strip the columns it lacks (drop_missing_columns), or alter it
 * through the SQL statements of its warehouse (evolve).
 */
#define ZB_SCHEMA_PAUSE			0
#define ZB_SCHEMA_DROP_MISSING	1
#define ZB_SCHEMA_EVOLVE		2

/* One stream's configuration, as the worker reads it at start. */
typedef struct ZerobusStreamConfig
{
	int32		id;
	char	   *name;
	Oid			owner;
	char	   *publication;
	char	   *slot_name;
	char	   *endpoint;		/* Zerobus endpoint URL */
	char	   *workspace_url;	/* OAuth / Unity Catalog URL */
	char	   *workspace_id;	/* NULL: zerobus_workspace_id(endpoint) */
	char	   *client_id;
	char	   *client_secret;
	char	   *target_catalog; /* default catalog of target tables */
	char	   *target_schema;	/* default schema; NULL = source schema */
	bool		insecure;		/* allow http:// (h2c) to a loopback host */
	bool		shared_connection;	/* all Zerobus streams on one HTTP/2
									 * connection, not one each */
	char	   *ca_file;		/* NULL: system roots */
	char	   *conninfo;		/* replication connection; NULL: default */
	int			batch_max_records;
	int			batch_max_bytes;
	int			batch_max_delay_ms;
	int			max_inflight_bytes;
	int			ack_timeout_ms;
	int			schema_policy;	/* ZB_SCHEMA_*: what a target that rejects
								 * a descriptor gets */
	int			pause_array_nulls;	/* array_nulls: 1 (pause) to pause a
									 * table at a record with an array
									 * holding NULL elements, 0 (mark) to
									 * send it marked */
	char	   *warehouse_id;	/* SQL warehouse of the DDL; NULL: none */
	bool		create_targets; /* create missing target tables */
	int			ntargets;		/* table_map: source -> target table */
	char	  **target_sources; /* quote_qualified_identifier(schema, table) */
	char	  **target_tables;	/* catalog.schema.table */
} ZerobusStreamConfig;

/*
 * What the launcher passes a stream worker: bgw_main_arg is the stream id,
 * bgw_extra holds this struct.
 */
typedef struct ZerobusWorkerArgs
{
	Oid			dboid;			/* database holding zerobus.streams */
} ZerobusWorkerArgs;

/* A stream's slot is "zerobus_" + its name, which must fit NAMEDATALEN. */
#define ZB_SLOT_PREFIX "zerobus_"
#define ZB_STREAM_NAME_MAXLEN (NAMEDATALEN - (int) sizeof(ZB_SLOT_PREFIX))

/*
 * Most database launchers that the cluster launcher runs at once as probes
 * (not yet known to have streams to run), so that many databases do not
 * take every background worker slot.
 */
#define ZB_MAX_PROBES			2

/* module.c: settings (zerobus.*), the defaults of per-stream options */
extern char *zerobus_databases;
extern char *zerobus_database;
extern int	zerobus_max_streams;
extern int	zerobus_batch_max_records;
extern int	zerobus_batch_max_bytes;
extern int	zerobus_batch_max_delay;
extern int	zerobus_max_inflight_bytes;
extern int	zerobus_ack_timeout;
extern int	zerobus_restart_backoff_max;
extern int	zerobus_snapshot_chunk_rows;
extern char *zerobus_ca_file;
extern int	zerobus_statement_timeout;
extern char *zerobus_proxy;
extern char *zerobus_no_proxy;
extern int	zerobus_stream_max_records_per_second;
extern int	zerobus_stream_max_bytes_per_second;
extern int	zerobus_max_streams_per_table;

/* upper limit of zerobus.max_streams_per_table */
#define ZB_MAX_STREAMS_PER_TABLE	64

extern void zerobus_check_stream_option(const char *name, int value);
extern void zerobus_require_preload(void);
extern bool zerobus_preloaded;
extern bool zerobus_in_served_database(void);
extern bool zerobus_database_served(const char *datname, bool istemplate);

/* shared.c: shared memory */
extern void zerobus_shared_register(void);
extern ZerobusStreamShared *zerobus_stream_shared(int32 stream_id,
												  bool create);
extern ZerobusStreamShared *zerobus_stream_shared_reserve(int32 stream_id);
extern int	zerobus_stream_slots_elsewhere(void);
extern void zerobus_launcher_wakeup(void);
extern void zerobus_cluster_launcher_wakeup(void);
extern void zerobus_stream_note_error(ZerobusStreamShared *shared,
									  const char *message);
extern void zerobus_launcher_wakeup_at_commit(void);
extern void zerobus_stream_mark_dropping(int32 stream_id);
extern void zerobus_stream_unmark_dropping(int32 stream_id);
extern bool zerobus_slot_lock(bool exclusive, bool wait);
extern void zerobus_slot_ledger_add(const char *slot_name);
extern bool zerobus_slot_ledger_forget(const char *slot_name);
extern int	zerobus_stream_shared_copy(ZerobusStreamShared *out);
extern void zerobus_stream_release_unused(bool (*in_use) (int32 stream_id,
														 void *arg),
										  void *arg);
extern void zerobus_stream_release_databases(bool (*keep) (Oid dboid,
														   void *arg),
											 void *arg);

/* shared.c: the launchers' shared state (see there) */
extern int	zerobus_max_database_entries(void);
extern void zerobus_cluster_launcher_attach(bool attach);
extern bool zerobus_dblauncher_attach(void);
extern void zerobus_dblauncher_begin_round(void);
extern void zerobus_dblauncher_set_serving(void);
extern bool zerobus_dblauncher_detach(bool idle);
extern int	zerobus_dblauncher_requests(Oid *dboids, int max, bool *overflow);
extern bool zerobus_dblauncher_start(Oid dboid);
extern bool zerobus_dblauncher_stopped(Oid dboid, bool *asked);
extern bool zerobus_dblauncher_serving(Oid dboid);
extern void zerobus_dblauncher_forget(Oid dboid);
extern bool zerobus_dblauncher_reset(void);

/* store.c: whether a stream's owner may have a table read (see there) */
typedef enum ZerobusOwnerRead
{
	ZB_READ_OK,
	ZB_READ_NO_SELECT,			/* no SELECT privilege */
	ZB_READ_RLS					/* row-level security applies */
} ZerobusOwnerRead;

extern ZerobusOwnerRead zerobus_owner_can_read(Oid owner, Oid relid);

/* options.c: the options of a stream, described once (see there) */
typedef enum ZerobusOptionKind
{
	ZB_OPT_TEXT,				/* non-empty text */
	ZB_OPT_URL,					/* endpoint, workspace_url: checked together
								 * with insecure */
	ZB_OPT_PUBLICATION,			/* name of an existing publication */
	ZB_OPT_TARGET_PART,			/* part of a Unity Catalog name */
	ZB_OPT_TABLE_MAP,			/* jsonb, normalized */
	ZB_OPT_TUNING,				/* int, in the limits of zerobus.<name>,
								 * which gives its default */
	ZB_OPT_BOOL,
	ZB_OPT_POLICY,				/* one of choices; the int field holds its
								 * position */
	ZB_OPT_CONNINFO,			/* libpq connection string */
	ZB_OPT_OWNER				/* regrole */
} ZerobusOptionKind;

#define ZB_OPT_SECRET		0x01	/* in zerobus.stream_secrets */
#define ZB_OPT_REQUIRED		0x02	/* create_stream: must be given */
#define ZB_OPT_SUPERUSER	0x04	/* set or reset by superusers only */
#define ZB_OPT_CREATE_ONLY	0x08	/* not an argument of alter_stream */

typedef struct ZerobusStreamOption
{
	const char *name;			/* column and argument name */
	ZerobusOptionKind kind;
	Oid			type;			/* of the column and the arguments */
	int			flags;			/* ZB_OPT_* */
	int			config_offset;	/* of its ZerobusStreamConfig field, or -1 */
	int		   *tuning_default; /* ZB_OPT_TUNING: the zerobus.* setting */
	char	  **text_default;	/* text: the zerobus.* setting used when the
								 * stream sets none */
	const char *const *choices; /* ZB_OPT_POLICY: the values, the default
								 * first, NULL-terminated */
} ZerobusStreamOption;

extern const ZerobusStreamOption zerobus_stream_options[];
extern const int zerobus_stream_noptions;

/* options.c: reading the configuration (needs a transaction) */
extern ZerobusStreamConfig *zerobus_stream_load(int32 stream_id,
												bool credentials);
extern void zerobus_stream_retune(ZerobusStreamConfig *config,
								  const ZerobusStreamConfig *fresh);
/* store.c */
extern char *zerobus_stream_target_table(ZerobusStreamConfig *config,
										 const char *schema_name,
										 const char *table_name);
extern void zerobus_stream_set_failed(int32 stream_id, const char *reason);

/* launcher.c: error recovery of a launcher's round, for both launchers */
extern void zerobus_launcher_round_failed(void);

/* background worker entry points */
extern PGDLLEXPORT void zerobus_cluster_launcher_main(Datum main_arg);
extern PGDLLEXPORT void zerobus_launcher_main(Datum main_arg);
extern PGDLLEXPORT void zerobus_worker_main(Datum main_arg);

#endif							/* ZEROBUS_STREAM_H */
