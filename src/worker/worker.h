/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  What the parts of a stream worker share: the stream, the relations
 *	  its slot described, and the reactions to what happens to a target
 *	  table (reactions.c).  Private to the worker; the launcher sees only
 *	  stream.h, the Zerobus side is sender.h.
 *
 * src/worker/worker.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ZEROBUS_WORKER_H
#define ZEROBUS_WORKER_H

#include "postgres.h"

#include "delta_schema.h"
#include "sender.h"
#include "stream.h"
#include "utils/hsearch.h"

/*
 * Columns left out under schema_policy drop_missing_columns: for one
 * descriptor of a relation that the target rejected, the fields the target
 * lacks.  Kept for the worker's life, so that the sessions after the
 * rejection leave them out of the descriptor and of every record.
 */
typedef struct ZerobusColumnDrop
{
	uint32		relid;
	char	   *descriptor;		/* as the plugin sent it */
	int			descriptor_len;
	int		   *fields;			/* field numbers left out */
	int			nfields;
	char	   *notice;			/* shown by zerobus.stat_streams */
} ZerobusColumnDrop;

/*
 * A descriptor a relation had before its last Relation message in this
 * session: calls opened with it may still be accepted or rejected, and
 * their outcomes need its columns.
 */
typedef struct ZerobusRelationVersion
{
	char	   *descriptor;
	int			descriptor_len;
	ZerobusColumnSet columns;
	bool		accepted_stored;
} ZerobusRelationVersion;

/* A source relation, as last described by a Relation message. */
typedef struct ZerobusRelation
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
	const ZerobusColumnDrop *drop;	/* columns left out, or NULL */
	uint64		call_epoch;		/* sender's descriptor epoch known to
								 * match (zerobus_sender_add) */
	Bitmapset  *key_fields;		/* field numbers of the replica identity
								 * key's columns */
	List	   *previous;		/* ZerobusRelationVersion, this session's
								 * earlier descriptors that calls of the
								 * target still use */
} ZerobusRelation;

/*
 * The worker's state that the reactions work on, passed to them
 * explicitly.  sender and relations belong to the current session (NULL
 * between sessions).
 */
typedef struct ZerobusWorkerState
{
	ZerobusStreamConfig *config;
	ZerobusStreamShared *shared;
	MemoryContext cxt;			/* lives as long as the worker */
	List	   *column_drops;	/* ZerobusColumnDrop, in cxt */
	ZerobusSender *sender;
	HTAB	   *relations;		/* ZerobusRelation by relid */
	List	   *evolutions;		/* targets being altered (evolve.c), in
								 * cxt; of the current session */
} ZerobusWorkerState;

/* worker.c */
extern bool zerobus_worker_confirm_settled(void);
extern bool zerobus_worker_array_nulls_sendable(ZerobusTarget *target,
												const char *target_name,
												const char *qualname,
												uint32 narrays);

/* reactions.c */
extern char *zerobus_reaction_read_refusal(ZerobusStreamConfig *config,
										   Oid relid, const char *qualname);
extern char *zerobus_reaction_read_refusal_in_xact(ZerobusStreamConfig *config,
												   Oid relid,
												   const char *qualname);
extern const ZerobusColumnDrop *zerobus_reaction_find_drop(ZerobusWorkerState *ws,
														   Oid relid,
														   const char *descriptor,
														   int len);
extern void zerobus_reaction_strip(StringInfo out, const char *data,
								   size_t len, const ZerobusColumnDrop *drop,
								   bool descriptor);
extern void zerobus_reaction_column_drop(ZerobusWorkerState *ws,
										 ZerobusRelation *rel);
extern void zerobus_reaction_drop_columns(ZerobusColumnSet *set,
										  const ZerobusColumnDrop *drop);
extern void zerobus_reaction_store_accepted(ZerobusWorkerState *ws, Oid relid,
											const ZerobusColumnSet *columns,
											const char *notice);
extern bool zerobus_reaction_accepted(ZerobusWorkerState *ws,
									  const ZerobusOutcome *outcome);
extern char *zerobus_reaction_rejected(ZerobusWorkerState *ws,
									   const ZerobusOutcome *outcome);
extern void zerobus_reaction_record_pause(ZerobusWorkerState *ws,
										  const char *target_name,
										  const char *reason);
extern void zerobus_reaction_load_pauses(ZerobusWorkerState *ws);
extern char **zerobus_reaction_evolution(ZerobusWorkerState *ws,
										 const ZerobusOutcome *outcome,
										 int *nsql, Oid *relid);

/* evolve.c */
extern bool zerobus_evolve_start(ZerobusWorkerState *ws,
								 const ZerobusOutcome *outcome);
extern void zerobus_evolve_step(ZerobusWorkerState *ws, long *timeout);
extern void zerobus_evolve_transfer_done(ZerobusWorkerState *ws,
										 void *transfer, int result);
extern void zerobus_evolve_end(ZerobusWorkerState *ws);

#endif							/* ZEROBUS_WORKER_H */
