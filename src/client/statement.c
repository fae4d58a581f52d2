/*-------------------------------------------------------------------------
 *
 * statement.c
 *	  A client of the Databricks SQL Statement Execution API: a statement
 *	  is submitted with POST <workspace>/api/2.0/sql/statements and
 *	  "wait_timeout": "0s" (the reply comes at once, with the statement's
 *	  id), then polled with GET .../statements/{id} until it ends, and
 *	  canceled with POST .../statements/{id}/cancel when it outlives its
 *	  timeout.
 *
 * Polling rather than waiting in the request (wait_timeout up to 50 s)
 * keeps every transfer short, so a caller's loop is never held by one,
 * and lets the statement's own timeout (zerobus.statement_timeout) be
 * anything: a warehouse that has to start first can take minutes.  Polls
 * come 100 ms after the submission, then at doubling intervals up to one
 * second.  A poll that fails for the network or with a 5xx or 429 is
 * tried again at the next interval; the submission is not (a statement
 * might run twice).
 *
 * The bearer token is a workspace token of the stream's service principal
 * (auth.c, with no table).  It travels in a header only; neither it nor
 * the client secret is ever put in an error message.
 *
 * src/client/statement.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "catalog/pg_type.h"
#include "common/jsonapi.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "auth.h"
#include "compat.h"
#include "grpc.h"
#include "statement.h"
#include "store.h"
#include "stream.h"
#include "token_reply.h"
#include "zerobus.h"

#define ZB_STMT_MAX_REPLY		(1024 * 1024)
#define ZB_STMT_MAX_DEPTH		64
#define ZB_STMT_FIRST_POLL_MS	100
#define ZB_STMT_MAX_POLL_MS		1000
/* one HTTP exchange: the replies are immediate, so this is for a hung peer */
#define ZB_STMT_TRANSFER_MS		30000
#define ZB_STMT_MAX_SOCKETS		16

typedef enum StatementPhase
{
	PH_SUBMIT,					/* to be submitted */
	PH_SUBMITTING,
	PH_WAIT,					/* waiting for the next poll */
	PH_POLLING,
	PH_CANCEL,					/* timed out: to be canceled */
	PH_CANCELING,
	PH_DONE
} StatementPhase;

/* A statement; everything in it is malloc'd */
struct ZerobusStatement
{
	char	   *base_url;		/* <workspace>/api/2.0/sql/statements */
	char	   *body;			/* the submission's JSON */
	char	   *ca_file;
	int			timeout_ms;
	StatementPhase phase;
	ZerobusStatementState state;
	TimestampTz deadline;		/* set at submission */
	TimestampTz next_poll;
	int			polls;
	/* the transfer running */
	CURL	   *easy;
	struct curl_slist *headers;
	char	   *url;
	ZerobusHttpReply reply;
	char		curl_error[CURL_ERROR_SIZE];
	/* what the warehouse said */
	char		id[128];
	char		outcome[32];
	char		error[1024];
};

/* The fields of a reply, collected by the JSON semantic actions */
typedef struct ReplyParse
{
	int			depth;
	char	   *path[4];		/* field names from the top, path[1] first */
	char	   *statement_id;
	char	   *state;			/* status.state */
	char	   *error_code;		/* status.error.error_code */
	char	   *message;		/* status.error.message */
	char	   *http_error_code;	/* error_code of an error reply */
	char	   *http_message;	/* message of an error reply */
} ReplyParse;


static ZB_JSON_ACTION_RESULT
reply_object_start(void *state)
{
	((ReplyParse *) state)->depth++;
	ZB_JSON_ACTION_RETURN;
}

static ZB_JSON_ACTION_RESULT
reply_object_end(void *state)
{
	((ReplyParse *) state)->depth--;
	ZB_JSON_ACTION_RETURN;
}

static ZB_JSON_ACTION_RESULT
reply_field_start(void *state, char *fname, bool isnull)
{
	ReplyParse *rp = state;

	if (rp->depth >= 1 && rp->depth < (int) lengthof(rp->path))
		rp->path[rp->depth] = fname;
	ZB_JSON_ACTION_RETURN;
}

static ZB_JSON_ACTION_RESULT
reply_field_end(void *state, char *fname, bool isnull)
{
	ReplyParse *rp = state;

	if (rp->depth >= 1 && rp->depth < (int) lengthof(rp->path))
		rp->path[rp->depth] = NULL;
	pfree(fname);
	ZB_JSON_ACTION_RETURN;
}

/* Whether the scalar being read is at the path a[, b[, c]] */
static bool
at_path(ReplyParse *rp, const char *a, const char *b, const char *c)
{
	int			n = c ? 3 : b ? 2 : 1;

	return rp->depth == n &&
		rp->path[1] && strcmp(rp->path[1], a) == 0 &&
		(n < 2 || (rp->path[2] && strcmp(rp->path[2], b) == 0)) &&
		(n < 3 || (rp->path[3] && strcmp(rp->path[3], c) == 0));
}

/* Keeps the string values of the fields ReplyParse names. */
static ZB_JSON_ACTION_RESULT
reply_scalar(void *state, char *token, JsonTokenType tokentype)
{
	ReplyParse *rp = state;
	char	  **slot = NULL;

	if (tokentype != JSON_TOKEN_STRING)
		slot = NULL;
	else if (at_path(rp, "statement_id", NULL, NULL))
		slot = &rp->statement_id;
	else if (at_path(rp, "error_code", NULL, NULL))
		slot = &rp->http_error_code;
	else if (at_path(rp, "message", NULL, NULL))
		slot = &rp->http_message;
	else if (at_path(rp, "status", "state", NULL))
		slot = &rp->state;
	else if (at_path(rp, "status", "error", "error_code"))
		slot = &rp->error_code;
	else if (at_path(rp, "status", "error", "message"))
		slot = &rp->message;
	if (slot != NULL)
		*slot = token;
	else if (token != NULL)
		pfree(token);
	ZB_JSON_ACTION_RETURN;
}

/*
 * Parses the reply into rp (strings in the current memory context, which
 * the caller deletes); false when it is not JSON.
 */
static bool
parse_reply(const ZerobusHttpReply *reply, ReplyParse *rp)
{
	JsonLexContext *lex;
	JsonSemAction sem;
	JsonParseErrorType jerr;

	memset(rp, 0, sizeof(*rp));
	memset(&sem, 0, sizeof(sem));
	sem.semstate = rp;
	sem.object_start = reply_object_start;
	sem.object_end = reply_object_end;
	sem.object_field_start = reply_field_start;
	sem.object_field_end = reply_field_end;
	sem.scalar = reply_scalar;
	if (reply->data == NULL ||
		!zerobus_json_depth_ok(reply->data, reply->len, ZB_STMT_MAX_DEPTH))
		return false;
	lex = zerobus_make_json_lex(reply->data, reply->len, PG_UTF8, true);
	jerr = pg_parse_json(lex, &sem);
	zerobus_free_json_lex(lex);
	return jerr == JSON_SUCCESS;
}

/*
 * Creates a statement.  See statement.h.  The request body is built in
 * palloc'd memory and copied off palloc.
 */
ZerobusStatement *
zerobus_statement_create(const char *workspace_url, const char *warehouse_id,
						 const char *sql, const char *ca_file, int timeout_ms)
{
	ZerobusStatement *st;
	StringInfoData body;
	size_t		urllen = strlen(workspace_url);
	char	   *url;

	while (urllen > 0 && workspace_url[urllen - 1] == '/')
		urllen--;
	url = psprintf("%.*s/api/2.0/sql/statements", (int) urllen, workspace_url);
	initStringInfo(&body);
	appendStringInfoString(&body, "{\"statement\":");
	escape_json(&body, sql);
	appendStringInfoString(&body, ",\"warehouse_id\":");
	escape_json(&body, warehouse_id);
	appendStringInfoString(&body, ",\"wait_timeout\":\"0s\"}");

	st = calloc(1, sizeof(ZerobusStatement));
	if (st == NULL ||
		(st->base_url = strdup(url)) == NULL ||
		(st->body = strdup(body.data)) == NULL ||
		(ca_file != NULL && (st->ca_file = strdup(ca_file)) == NULL))
	{
		zerobus_statement_free(st);
		st = NULL;
	}
	pfree(url);
	pfree(body.data);
	if (st == NULL)
		return NULL;
	st->timeout_ms = timeout_ms;
	st->phase = PH_SUBMIT;
	st->state = ZB_STMT_RUNNING;
	return st;
}

/* Ends the statement with outcome and, for a failure, the error. */
static void
finish(ZerobusStatement *st, bool ok, const char *outcome, const char *fmt,...)
	pg_attribute_printf(4, 5);

static void
finish(ZerobusStatement *st, bool ok, const char *outcome, const char *fmt,...)
{
	st->phase = PH_DONE;
	st->state = ok ? ZB_STMT_SUCCEEDED : ZB_STMT_FAILED;
	strlcpy(st->outcome, outcome, sizeof(st->outcome));
	st->error[0] = '\0';
	if (fmt != NULL)
	{
		va_list		ap;

		va_start(ap, fmt);
		vsnprintf(st->error, sizeof(st->error), fmt, ap);
		va_end(ap);
	}
}

/* Frees the transfer that ran (its handle is off every multi handle). */
static void
end_transfer(ZerobusStatement *st)
{
	if (st->easy)
		curl_easy_cleanup(st->easy);
	st->easy = NULL;
	curl_slist_free_all(st->headers);
	st->headers = NULL;
	free(st->url);
	st->url = NULL;
	free(st->reply.data);
	memset(&st->reply, 0, sizeof(st->reply));
	st->curl_error[0] = '\0';
}

/*
 * Sets up a transfer to url: a POST of body, or a GET when body is NULL.
 * Returns NULL when out of memory (the statement then fails).
 */
static CURL *
start_transfer(ZerobusStatement *st, const char *url, const char *body,
			   const char *token)
{
	char		auth[8192];
	long		remaining = (long) ((st->deadline - GetCurrentTimestamp()) / 1000);

	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
	if ((st->url = strdup(url)) == NULL ||
		(st->headers = curl_slist_append(NULL, auth)) == NULL ||
		curl_slist_append(st->headers, "Content-Type: application/json") == NULL ||
		curl_slist_append(st->headers, "Accept: application/json") == NULL ||
		(st->easy = curl_easy_init()) == NULL)
	{
		explicit_bzero(auth, sizeof(auth));
		end_transfer(st);
		finish(st, false, "ERROR", "out of memory");
		return NULL;
	}
	explicit_bzero(auth, sizeof(auth));
	/* a cancel gets its full time even though the deadline has passed */
	zerobus_http_easy_setup(st->easy, st->url, st->curl_error,
							Max(Min(remaining, ZB_STMT_TRANSFER_MS), 1000),
							st->ca_file, &st->reply, ZB_STMT_MAX_REPLY);
	curl_easy_setopt(st->easy, CURLOPT_HTTPHEADER, st->headers);
	if (body != NULL)
	{
		curl_easy_setopt(st->easy, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(st->easy, CURLOPT_POSTFIELDSIZE, (long) strlen(body));
	}
	return st->easy;
}

/* The next transfer, or the time to wait for it.  See statement.h. */
CURL *
zerobus_statement_next(ZerobusStatement *st, const char *token, long *wait_ms)
{
	TimestampTz now = GetCurrentTimestamp();
	char	   *url;
	CURL	   *easy;

	*wait_ms = -1;
	switch (st->phase)
	{
		case PH_SUBMIT:
			st->deadline = TimestampTzPlusMilliseconds(now, st->timeout_ms);
			st->phase = PH_SUBMITTING;
			return start_transfer(st, st->base_url, st->body, token);
		case PH_WAIT:
			if (now >= st->deadline)
			{
				st->phase = PH_CANCEL;
				return zerobus_statement_next(st, token, wait_ms);
			}
			if (now < st->next_poll)
			{
				TimestampTz until = Min(st->next_poll, st->deadline);

				*wait_ms = (long) ((until - now + 999) / 1000);
				return NULL;
			}
			url = psprintf("%s/%s", st->base_url, st->id);
			st->phase = PH_POLLING;
			easy = start_transfer(st, url, NULL, token);
			pfree(url);
			return easy;
		case PH_CANCEL:
			url = psprintf("%s/%s/cancel", st->base_url, st->id);
			st->phase = PH_CANCELING;
			easy = start_transfer(st, url, "{}", token);
			pfree(url);
			return easy;
		case PH_SUBMITTING:
		case PH_POLLING:
		case PH_CANCELING:
		case PH_DONE:
			break;
	}
	return NULL;
}

/* Waits for the next poll: 100 ms after the last, doubling up to 1 s. */
static void
schedule_poll(ZerobusStatement *st)
{
	int			delay = ZB_STMT_FIRST_POLL_MS << Min(st->polls, 4);

	st->polls++;
	st->phase = PH_WAIT;
	st->next_poll = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												Min(delay, ZB_STMT_MAX_POLL_MS));
}

/* Goes on from the state the warehouse reported. */
static void
apply_state(ZerobusStatement *st, const ReplyParse *rp)
{
	const char *state = rp->state;

	if (strcmp(state, "SUCCEEDED") == 0 || strcmp(state, "CLOSED") == 0)
		/* CLOSED: succeeded, and its result is no longer kept */
		finish(st, true, state, NULL);
	else if (strcmp(state, "FAILED") == 0 || strcmp(state, "CANCELED") == 0)
	{
		if (rp->message != NULL)
			finish(st, false, state, "[%s] %s",
				   rp->error_code ? rp->error_code : "UNKNOWN", rp->message);
		else
			finish(st, false, state, "the statement was %s without an error message",
				   state[0] == 'F' ? "failed" : "canceled");
	}
	else if (strcmp(state, "PENDING") == 0 || strcmp(state, "RUNNING") == 0)
		schedule_poll(st);
	else
		finish(st, false, "ERROR", "the warehouse reported the unknown state \"%.64s\"",
			   state);
}

/*
 * Reads the reply of the transfer that ended with result (the caller took
 * it off its multi handle).  Parsing happens here, outside libcurl's
 * callbacks, in a memory context of its own.
 */
void
zerobus_statement_done(ZerobusStatement *st, CURLcode result)
{
	long		http_status = 0;
	char		excerpt[256];
	MemoryContext cxt;
	MemoryContext oldcxt;
	ReplyParse	rp;
	bool		json;
	StatementPhase phase = st->phase;

	if (result == CURLE_OK)
		curl_easy_getinfo(st->easy, CURLINFO_RESPONSE_CODE, &http_status);
	cxt = AllocSetContextCreate(CurrentMemoryContext, "zerobus statement reply",
								ALLOCSET_SMALL_SIZES);
	oldcxt = MemoryContextSwitchTo(cxt);
	json = result == CURLE_OK && parse_reply(&st->reply, &rp);
	zerobus_http_reply_excerpt(excerpt, sizeof(excerpt), &st->reply);

	if (phase == PH_CANCELING)
		/* whatever the cancel's fate, the statement has run out of time */
		finish(st, false, "TIMED OUT",
			   "the statement did not end within %d ms (zerobus.statement_timeout); it was canceled",
			   st->timeout_ms);
	else if (result != CURLE_OK && phase == PH_POLLING)
		schedule_poll(st);		/* polled again at the next interval */
	else if (result != CURLE_OK)
		finish(st, false, "ERROR", "could not submit the statement to %s: %s",
			   st->base_url,
			   st->reply.too_large ? "the reply is too large" :
			   st->curl_error[0] ? st->curl_error : curl_easy_strerror(result));
	else if (phase == PH_POLLING && (http_status >= 500 || http_status == 429))
		schedule_poll(st);
	else if (http_status < 200 || http_status >= 300)
		finish(st, false, "ERROR", "%s answered HTTP %ld: %s%s%s%s", st->url,
			   http_status,
			   json && rp.http_error_code ? "[" : "",
			   json && rp.http_error_code ? rp.http_error_code : "",
			   json && rp.http_error_code ? "] " : "",
			   json && rp.http_message ? rp.http_message : excerpt);
	else if (!json || rp.state == NULL ||
			 (phase == PH_SUBMITTING &&
			  (rp.statement_id == NULL || rp.statement_id[0] == '\0' ||
			   strlen(rp.statement_id) >= sizeof(st->id) ||
			   strspn(rp.statement_id, "0123456789abcdefABCDEF-") != strlen(rp.statement_id))))
		finish(st, false, "ERROR", "%s sent a reply without a valid statement_id and status.state: %s",
			   st->url, excerpt);
	else
	{
		if (phase == PH_SUBMITTING)
			strlcpy(st->id, rp.statement_id, sizeof(st->id));
		apply_state(st, &rp);
	}
	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(cxt);
	end_transfer(st);
}

ZerobusStatementState
zerobus_statement_state(const ZerobusStatement *st)
{
	return st->state;
}

const char *
zerobus_statement_id(const ZerobusStatement *st)
{
	return st->id;
}

const char *
zerobus_statement_outcome(const ZerobusStatement *st)
{
	return st->phase == PH_DONE ? st->outcome : "RUNNING";
}

const char *
zerobus_statement_error(const ZerobusStatement *st)
{
	return st->error;
}

void
zerobus_statement_free(ZerobusStatement *st)
{
	if (st == NULL)
		return;
	end_transfer(st);
	free(st->base_url);
	free(st->body);
	free(st->ca_file);
	free(st);
}


/*
 * Running statements in a backend.  The transfers run on a ZerobusGrpc
 * multi handle that opens no call of its own; the backend waits on its
 * latch and libcurl's sockets together, so a cancel request or a
 * terminated backend is answered at once.
 */
typedef struct BackendRun
{
	ZerobusGrpc *grpc;
	CURL	   *inflight;		/* the transfer on grpc, if any */
	ZerobusAuthRequest *auth;
	ZerobusStatement *st;
} BackendRun;

/* Waits up to timeout_ms (-1: no timer) for the latch or a socket. */
static void
backend_wait(BackendRun *run, long timeout_ms)
{
	pgsocket	socks[ZB_STMT_MAX_SOCKETS];
	int			events[ZB_STMT_MAX_SOCKETS];
	WaitEvent	occurred[ZB_STMT_MAX_SOCKETS + 2];
	WaitEventSet *wes;
	uint64		generation;
	int			n;

	n = zerobus_grpc_sockets(run->grpc, socks, events, ZB_STMT_MAX_SOCKETS,
							 &generation);
	wes = zerobus_create_wait_event_set(CurrentMemoryContext, n + 2);
	AddWaitEventToSet(wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	for (int i = 0; i < n; i++)
		AddWaitEventToSet(wes, events[i], socks[i], NULL, NULL);
	(void) WaitEventSetWait(wes, timeout_ms, occurred, lengthof(occurred),
							PG_WAIT_EXTENSION);
	FreeWaitEventSet(wes);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

/* Runs one transfer to its end and returns its result. */
static CURLcode
backend_transfer(BackendRun *run, CURL *easy)
{
	char		errbuf[256];

	if (!zerobus_grpc_add_transfer(run->grpc, easy, NULL, errbuf, sizeof(errbuf)))
		return CURLE_FAILED_INIT;
	run->inflight = easy;
	for (;;)
	{
		long		timeout = zerobus_grpc_perform(run->grpc);
		ZerobusGrpcEvent ev;

		while (zerobus_grpc_next_event(run->grpc, &ev))
		{
			if (ev.kind == ZB_GRPC_EV_TRANSFER_DONE && ev.transfer == easy)
			{
				zerobus_grpc_remove_transfer(run->grpc, easy);
				run->inflight = NULL;
				return (CURLcode) ev.result;
			}
		}
		if (timeout != 0)
			backend_wait(run, timeout);
	}
}

/* A workspace token for ws's service principal (malloc'd), or an ERROR. */
static char *
backend_token(BackendRun *run, const ZerobusWorkspace *ws)
{
	char		errbuf[512];
	char	   *token = NULL;
	TimestampTz expires_at;
	CURLcode	result;
	ZerobusAuthResult ar;

	run->auth = zerobus_auth_start(ws->workspace_url, ws->workspace_id,
								   ws->client_id, ws->client_secret, NULL,
								   ws->ca_file,
								   Min(zerobus_statement_timeout, ZB_STMT_TRANSFER_MS),
								   errbuf, sizeof(errbuf));
	if (run->auth == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not request a workspace token: %s", errbuf)));
	result = backend_transfer(run, zerobus_auth_easy(run->auth));
	ar = zerobus_auth_finish(run->auth, result, &token, &expires_at,
							 errbuf, sizeof(errbuf));
	zerobus_auth_free(run->auth);
	run->auth = NULL;
	if (ar != ZB_AUTH_OK)
		ereport(ERROR,
				(errcode(ar == ZB_AUTH_RETRY ? ERRCODE_CONNECTION_FAILURE :
						 ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("could not get a workspace token for the SQL statements"),
				 errdetail_internal("%s", zerobus_auth_redact(errbuf, ws->client_id,
															   ws->client_secret,
															   NULL))));
	return token;
}

/* Runs one statement to its end and fills *result. */
static void
backend_statement(BackendRun *run, const ZerobusWorkspace *ws,
				  const char *token, const char *sql,
				  ZerobusStatementResult *result)
{
	ZerobusStatement *st;
	const char *id;

	result->started_at = GetCurrentTimestamp();
	st = run->st = zerobus_statement_create(ws->workspace_url, ws->warehouse_id,
											sql, ws->ca_file,
											zerobus_statement_timeout);
	if (st == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	while (zerobus_statement_state(st) == ZB_STMT_RUNNING)
	{
		long		wait_ms;
		CURL	   *easy = zerobus_statement_next(st, token, &wait_ms);

		if (easy != NULL)
			zerobus_statement_done(st, backend_transfer(run, easy));
		else if (zerobus_statement_state(st) == ZB_STMT_RUNNING)
			backend_wait(run, wait_ms);
	}
	result->finished_at = GetCurrentTimestamp();
	result->succeeded = zerobus_statement_state(st) == ZB_STMT_SUCCEEDED;
	id = zerobus_statement_id(st);
	result->statement_id = id[0] ? pstrdup(id) : NULL;
	result->state = pstrdup(zerobus_statement_outcome(st));
	result->error = result->succeeded ? NULL : pstrdup(zerobus_statement_error(st));
	zerobus_statement_free(st);
	run->st = NULL;
}

/* Runs statements in a backend.  See statement.h. */
int
zerobus_statements_run(const ZerobusWorkspace *ws, const char *const *sql,
					   int nsql, ZerobusStatementResult *results)
{
	BackendRun	run = {0};
	char		errbuf[512];
	char	   *volatile token = NULL;
	volatile int nrun = 0;

	memset(results, 0, sizeof(ZerobusStatementResult) * nsql);
	run.grpc = zerobus_grpc_create(ws->workspace_url, ws->insecure, ws->ca_file,
								   false, errbuf, sizeof(errbuf));
	if (run.grpc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid workspace URL \"%s\": %s", ws->workspace_url, errbuf)));
	PG_TRY();
	{
		token = backend_token(&run, ws);
		while (nrun < nsql)
		{
			backend_statement(&run, ws, token, sql[nrun], &results[nrun]);
			if (!results[nrun++].succeeded)
				break;
		}
	}
	PG_FINALLY();
	{
		if (run.inflight != NULL)
			zerobus_grpc_remove_transfer(run.grpc, run.inflight);
		zerobus_auth_free(run.auth);
		zerobus_statement_free(run.st);
		zerobus_grpc_destroy(run.grpc);
		if (token != NULL)
		{
			explicit_bzero(token, strlen(token));
			free(token);
		}
	}
	PG_END_TRY();
	return nrun;
}

/*
 * Records statement sql, run for the target target_table of table relid of
 * stream stream_id with result r, in zerobus.statement_log (shown by the
 * zerobus.statements view).  The caller has SPI connected as the
 * extension's owner (zerobus_catalog_begin() or zerobus_xact_begin()).
 */
void
zerobus_statement_record(int32 stream_id, Oid relid, const char *target_table,
						 const char *sql, const ZerobusStatementResult *r)
{
	ZerobusColumnValues args = {0};

	zerobus_add_column(&args, "stream_id", INT4OID, Int32GetDatum(stream_id), false);
	zerobus_add_column(&args, "relid", OIDOID, ObjectIdGetDatum(relid), false);
	zerobus_add_column(&args, "target_table", TEXTOID,
					   CStringGetTextDatum(target_table), false);
	zerobus_add_column(&args, "statement_id", TEXTOID,
					   r->statement_id ? CStringGetTextDatum(r->statement_id) : (Datum) 0,
					   r->statement_id == NULL);
	zerobus_add_column(&args, "statement", TEXTOID, CStringGetTextDatum(sql), false);
	zerobus_add_column(&args, "state", TEXTOID, CStringGetTextDatum(r->state), false);
	zerobus_add_column(&args, "error", TEXTOID,
					   r->error ? CStringGetTextDatum(r->error) : (Datum) 0,
					   r->error == NULL);
	zerobus_add_column(&args, "started_at", TIMESTAMPTZOID,
					   TimestampTzGetDatum(r->started_at), false);
	zerobus_add_column(&args, "finished_at", TIMESTAMPTZOID,
					   TimestampTzGetDatum(r->finished_at), false);
	zerobus_execute_with_values("INSERT INTO zerobus.statement_log"
								" (stream_id, relid, target_table, statement_id,"
								"  statement, state, error, started_at, finished_at)"
								" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
								&args, SPI_OK_INSERT);
}
