/*-------------------------------------------------------------------------
 *
 * evolve.c
 *	  schema_policy evolve: a target table that rejects a descriptor for
 *	  changes Delta applies in place (added and renamed columns, widened
 *	  types) is altered through the SQL Statement Execution API on the
 *	  stream's warehouse, inside the worker's loop, and the stream goes on
 *	  without a pause.
 *
 * When the target rejects the descriptor, the worker stops sending to it
 * and freezes the confirmable position before its first unsent record, as
 * for a pause, but records no pause: an evolution starts instead.  The
 * target's calls of the descriptor it accepted go on
 * (zerobus_sender_pause with drain) and the evolution waits until they are
 * acked and the slot has confirmed everything before the frozen position
 * (zerobus_worker_confirm_settled):
 * records encoded with the old descriptor (a column's old name, its
 * narrower type) fit the target only until it is altered, so none of them
 * may be left to the replay.  Then it fetches a workspace token and runs
 * the ALTER TABLE statements that zerobus.target_ddl(form => 'alter')
 * prints, one at a time (statement.c), their HTTP transfers on the
 * sender's connection with its traffic, so nothing in the loop waits for
 * them.  Once all succeeded, the
 * session ends with an ERROR, and the next one replays the slot from the
 * frozen position with the new descriptor, which the altered target
 * accepts: nothing is lost, and the slot is held until the records are
 * acked.  A statement that fails (or a token that cannot be had) pauses
 * the target with the statement's error and the reason the pause policy
 * gives.  Every statement run is recorded in zerobus.statement_log.
 *
 * src/worker/evolve.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "auth.h"
#include "statement.h"
#include "store.h"
#include "token.h"
#include "worker.h"

/* a workspace token request; statements have zerobus.statement_timeout */
#define ZB_EVOLVE_TOKEN_TIMEOUT_MS 30000

/* how often to look whether the slot confirmed the records before a change */
#define ZB_EVOLVE_SETTLE_POLL_MS 100

/* One target being altered; everything in its own memory context */
typedef struct Evolution
{
	MemoryContext cxt;
	ZerobusTarget *target;
	char	   *target_name;
	Oid			relid;			/* its source table */
	char	  **sql;			/* the ALTER TABLE statements */
	int			nsql;
	int			next;			/* the statement running or to run */
	ZerobusStatementResult *results;	/* of the statements run */
	char	   *reason;			/* the pause's reason, should it fail */
	ZerobusAuthRequest *auth;	/* the token request in flight */
	char	   *token;			/* malloc'd */
	ZerobusStatement *st;		/* the statement running */
	void	   *inflight;		/* the transfer on the sender, if any */
} Evolution;


/*
 * Starts the evolution of the target of a rejected descriptor, if
 * schema_policy evolve applies to it (zerobus_reaction_evolution); the
 * caller then stops sending to it and freezes the confirmable position.
 * Returns false when it does not apply, for the target to pause.
 */
bool
zerobus_evolve_start(ZerobusWorkerState *ws, const ZerobusOutcome *outcome)
{
	MemoryContext cxt = AllocSetContextCreate(ws->cxt, "zerobus evolution",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext oldcxt = MemoryContextSwitchTo(cxt);
	Evolution  *ev;
	int			nsql;
	Oid			relid = InvalidOid;
	char	  **sql = zerobus_reaction_evolution(ws, outcome, &nsql, &relid);

	if (sql == NULL)
	{
		MemoryContextSwitchTo(oldcxt);
		MemoryContextDelete(cxt);
		return false;
	}
	ev = palloc0(sizeof(Evolution));
	ev->cxt = cxt;
	ev->target = outcome->target;
	ev->target_name = pstrdup(outcome->target_name);
	ev->relid = relid;
	ev->sql = sql;
	ev->nsql = nsql;
	ev->results = palloc0(sizeof(ZerobusStatementResult) * nsql);
	ev->reason = zerobus_reaction_rejected(ws, outcome);
	MemoryContextSwitchTo(ws->cxt);
	ws->evolutions = lappend(ws->evolutions, ev);
	MemoryContextSwitchTo(oldcxt);

	ereport(LOG,
			(errmsg("zerobus stream \"%s\": target table %s rejected a new descriptor; altering it (schema_policy evolve)",
					ws->config->name, ev->target_name),
			 errdetail_internal("%s", sql[0])));
	return true;
}

/* Abandons what an evolution has in flight and frees it. */
static void
evolution_free(ZerobusWorkerState *ws, Evolution *ev)
{
	if (ev->inflight != NULL)
		zerobus_sender_remove_transfer(ws->sender, ev->inflight);
	zerobus_auth_free(ev->auth);
	zerobus_statement_free(ev->st);
	if (ev->token != NULL)
	{
		explicit_bzero(ev->token, strlen(ev->token));
		free(ev->token);
	}
	MemoryContextDelete(ev->cxt);
}

/* Records the statements an evolution ran in zerobus.statement_log. */
static void
record_statements(ZerobusWorkerState *ws, Evolution *ev)
{
	ZerobusXact xact;

	zerobus_xact_begin(&xact, true);
	for (int i = 0; i < ev->next; i++)
	{
		zerobus_statement_record(ws->config->id, ev->relid, ev->target_name,
								 ev->sql[i], &ev->results[i]);
	}
	zerobus_xact_end(&xact);
}

/*
 * Ends an evolution that failed: records its statements and pauses its
 * target (already stopped) with what went wrong and the pause policy's
 * reason.
 */
static void
evolution_failed(ZerobusWorkerState *ws, Evolution *ev, const char *what)
{
	char	   *reason = psprintf("schema_policy evolve could not alter target table %s: %s. %s",
								  ev->target_name, what, ev->reason);

	record_statements(ws, ev);
	ws->evolutions = list_delete_ptr(ws->evolutions, ev);
	zerobus_reaction_record_pause(ws, ev->target_name, reason);
	evolution_free(ws, ev);
}

/* Puts a transfer of ev on the sender; false (ev failed) when refused. */
static bool
start_transfer(ZerobusWorkerState *ws, Evolution *ev, CURL *easy,
			   long *timeout)
{
	char		errbuf[256];

	if (!zerobus_sender_add_transfer(ws->sender, easy, errbuf, sizeof(errbuf)))
	{
		evolution_failed(ws, ev, psprintf("could not start a request: %s", errbuf));
		return false;
	}
	ev->inflight = easy;
	*timeout = 0;				/* libcurl starts it at the next perform */
	return true;
}

/*
 * Starts what the evolutions can do now: once the slot confirmed the
 * records before the change, a token request, then a statement's
 * submission or poll.  Lowers *timeout to the time of the next poll.
 */
void
zerobus_evolve_step(ZerobusWorkerState *ws, long *timeout)
{
	ZerobusStreamConfig *config = ws->config;
	List	   *evolutions;
	ListCell   *lc;

	if (ws->evolutions == NIL)
		return;
	/* a copy: an evolution that fails leaves the list */
	evolutions = list_copy(ws->evolutions);
	foreach(lc, evolutions)
	{
		Evolution  *ev = lfirst(lc);
		char		errbuf[512];
		long		wait_ms;
		CURL	   *easy;

		if (ev->inflight != NULL)
			continue;
		if (ev->token == NULL)
		{
			/* first the old descriptor's records, acked and confirmed */
			if (!zerobus_worker_confirm_settled())
			{
				if (*timeout < 0 || *timeout > ZB_EVOLVE_SETTLE_POLL_MS)
					*timeout = ZB_EVOLVE_SETTLE_POLL_MS;
				continue;
			}
			ev->auth = zerobus_token_start(config, NULL,
										   ZB_EVOLVE_TOKEN_TIMEOUT_MS,
										   errbuf, sizeof(errbuf));
			if (ev->auth == NULL)
				evolution_failed(ws, ev, psprintf("could not request a workspace token: %s", errbuf));
			else
				start_transfer(ws, ev, zerobus_auth_easy(ev->auth), timeout);
			continue;
		}
		if (ev->st == NULL)
		{
			ev->results[ev->next].started_at = GetCurrentTimestamp();
			ev->st = zerobus_statement_create(config->workspace_url,
											  config->warehouse_id,
											  ev->sql[ev->next], config->ca_file,
											  zerobus_statement_timeout);
			if (ev->st == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_OUT_OF_MEMORY),
						 errmsg("out of memory")));
		}
		easy = zerobus_statement_next(ev->st, ev->token, &wait_ms);
		if (easy != NULL)
			start_transfer(ws, ev, easy, timeout);
		else if (wait_ms >= 0 && (*timeout < 0 || wait_ms < *timeout))
			*timeout = wait_ms;
	}
	list_free(evolutions);
}

/*
 * A transfer of an evolution is over (ZB_OUTCOME_TRANSFER_DONE): reads the
 * token or the statement's state.  When the last statement succeeded,
 * ends the session with an ERROR, for the next one to replay the slot
 * with the new descriptor.
 */
void
zerobus_evolve_transfer_done(ZerobusWorkerState *ws, void *transfer,
							 int result)
{
	Evolution  *ev = NULL;
	ZerobusStatementResult *r;
	ListCell   *lc;
	char		errbuf[512];

	foreach(lc, ws->evolutions)
	{
		if (((Evolution *) lfirst(lc))->inflight == transfer)
			ev = lfirst(lc);
	}
	if (ev == NULL)
		return;
	zerobus_sender_remove_transfer(ws->sender, transfer);
	ev->inflight = NULL;

	if (ev->auth != NULL)
	{
		TimestampTz expires_at;
		ZerobusAuthResult ar = zerobus_auth_finish(ev->auth, (CURLcode) result,
												   &ev->token, &expires_at,
												   errbuf, sizeof(errbuf));

		zerobus_auth_free(ev->auth);
		ev->auth = NULL;
		if (ar != ZB_AUTH_OK)
			evolution_failed(ws, ev, psprintf("could not get a workspace token: %s", errbuf));
		return;
	}

	zerobus_statement_done(ev->st, (CURLcode) result);
	if (zerobus_statement_state(ev->st) == ZB_STMT_RUNNING)
		return;
	r = &ev->results[ev->next++];
	r->finished_at = GetCurrentTimestamp();
	r->succeeded = zerobus_statement_state(ev->st) == ZB_STMT_SUCCEEDED;
	r->statement_id = zerobus_statement_id(ev->st)[0] ?
		MemoryContextStrdup(ev->cxt, zerobus_statement_id(ev->st)) : NULL;
	r->state = MemoryContextStrdup(ev->cxt, zerobus_statement_outcome(ev->st));
	r->error = r->succeeded ? NULL :
		MemoryContextStrdup(ev->cxt, zerobus_statement_error(ev->st));
	zerobus_statement_free(ev->st);
	ev->st = NULL;

	if (!r->succeeded)
		evolution_failed(ws, ev, psprintf("statement %s ended %s: %s",
										  r->statement_id ? r->statement_id : "(not submitted)",
										  r->state, r->error));
	else if (ev->next == ev->nsql)
	{
		char	   *target_name = pstrdup(ev->target_name);
		int			nsql = ev->nsql;

		record_statements(ws, ev);
		ws->evolutions = list_delete_ptr(ws->evolutions, ev);
		evolution_free(ws, ev);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("zerobus stream \"%s\": target table %s altered by schema_policy evolve",
						ws->config->name, target_name),
				 errdetail_plural("%d statement ran in the warehouse; the stream replays from its slot with the new columns.",
								  "%d statements ran in the warehouse; the stream replays from its slot with the new columns.",
								  nsql, nsql)));
	}
}

/* Abandons every evolution, at the end of a session. */
void
zerobus_evolve_end(ZerobusWorkerState *ws)
{
	ListCell   *lc;

	foreach(lc, ws->evolutions)
		evolution_free(ws, lfirst(lc));
	list_free(ws->evolutions);
	ws->evolutions = NIL;
}
