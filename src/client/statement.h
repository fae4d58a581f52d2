/*-------------------------------------------------------------------------
 *
 * statement.h
 *	  A client of the Databricks SQL Statement Execution API (statement.c):
 *	  one SQL statement run on a SQL warehouse, submitted and then polled
 *	  to its end.
 *
 * A ZerobusStatement is a state machine that never blocks and never
 * raises an ERROR from libcurl's callbacks: it hands its caller one HTTP
 * transfer at a time (zerobus_statement_next()), which the caller runs on
 * a multi handle of its own with its other traffic (zerobus_grpc_add_transfer()),
 * and is told when the transfer is over (zerobus_statement_done()).  Between
 * transfers it waits for its next poll, whose time next() returns.  So a
 * stream worker can run statements inside its loop; a backend runs them
 * with zerobus_statements_run(), which waits on its latch and the sockets.
 * Its functions may raise an ERROR only when out of memory (they palloc
 * briefly to build a request or parse a reply, never inside a callback).
 *
 * Memory: a statement and everything libcurl reads or writes for it are
 * malloc'd, freed by zerobus_statement_free().
 *
 * src/client/statement.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ZEROBUS_STATEMENT_H
#define ZEROBUS_STATEMENT_H

#include "postgres.h"

#include <curl/curl.h>

/* What a statement needs besides its SQL: where, and as whom */
typedef struct ZerobusWorkspace
{
	const char *workspace_url;
	const char *workspace_id;
	const char *warehouse_id;
	const char *client_id;
	const char *client_secret;
	const char *ca_file;		/* NULL: system roots */
	bool		insecure;		/* allow http:// to a loopback host */
} ZerobusWorkspace;

typedef enum ZerobusStatementState
{
	ZB_STMT_RUNNING,			/* submitted or being submitted */
	ZB_STMT_SUCCEEDED,
	ZB_STMT_FAILED				/* failed, canceled, timed out or never
								 * reached the warehouse */
} ZerobusStatementState;

typedef struct ZerobusStatement ZerobusStatement;

/*
 * A statement of sql for warehouse_id at workspace_url, to end within
 * timeout_ms (then it is canceled and fails).  Nothing is sent yet.
 * Returns NULL only when out of memory.
 */
extern ZerobusStatement *zerobus_statement_create(const char *workspace_url,
												  const char *warehouse_id,
												  const char *sql,
												  const char *ca_file,
												  int timeout_ms);

/*
 * The transfer to run now, with the workspace token token (the caller
 * adds it to its multi handle and calls zerobus_statement_done() once
 * libcurl says it is over), or NULL when there is none: then *wait_ms is
 * how long to wait before asking again (-1 when the statement is over or
 * a transfer of it is running).
 */
extern CURL *zerobus_statement_next(ZerobusStatement *st, const char *token,
									long *wait_ms);

/*
 * The transfer next() gave is over with result: reads its reply and frees
 * it.  The caller has taken it off its multi handle first.
 */
extern void zerobus_statement_done(ZerobusStatement *st, CURLcode result);

extern ZerobusStatementState zerobus_statement_state(const ZerobusStatement *st);

/* The statement id the warehouse gave, or "" before it answered */
extern const char *zerobus_statement_id(const ZerobusStatement *st);

/*
 * The outcome in words: the final state (SUCCEEDED, FAILED, CANCELED,
 * CLOSED, TIMED OUT, ERROR), and for a failure the statement's error
 * ("[error_code] message") or the HTTP or network failure.
 */
extern const char *zerobus_statement_outcome(const ZerobusStatement *st);
extern const char *zerobus_statement_error(const ZerobusStatement *st);

/* Frees st (NULL is fine); no transfer of it may be on a multi handle. */
extern void zerobus_statement_free(ZerobusStatement *st);

/* The outcome of one statement run by zerobus_statements_run() */
typedef struct ZerobusStatementResult
{
	bool		succeeded;
	char	   *statement_id;	/* NULL: the warehouse never answered */
	char	   *state;			/* as zerobus_statement_outcome() */
	char	   *error;			/* NULL when succeeded */
	TimestampTz started_at;
	TimestampTz finished_at;
} ZerobusStatementResult;

/*
 * Runs nsql statements one after the other in a backend, with a workspace
 * token of the service principal, and fills results[] (palloc'd strings);
 * stops at the first failure (the results of the statements not run are
 * left zeroed).  Waits on the latch and the sockets together and answers
 * interrupts.  Returns the number of statements run.
 */
extern int	zerobus_statements_run(const ZerobusWorkspace *ws,
								   const char *const *sql, int nsql,
								   ZerobusStatementResult *results);

/* Records a statement run in zerobus.statement_log (needs SPI) */
extern void zerobus_statement_record(int32 stream_id, Oid relid,
									 const char *target_table, const char *sql,
									 const ZerobusStatementResult *r);

#endif							/* ZEROBUS_STATEMENT_H */
