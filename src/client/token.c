/*-------------------------------------------------------------------------
 *
 * token.c
 *	  The OAuth token of one target table of a sender (sender.c): its
 *	  request on the Zerobus connection's multi handle, the retries of a
 *	  request that failed for a transient cause, its refresh before it
 *	  expires, and its release.
 *
 * A token is scoped to one table (auth.c).  Its request never blocks the
 * worker: it is a transfer on the same multi handle as the calls, whose
 * completion the sender hands to zerobus_token_done().  A request that
 * failed for a transient cause (the endpoint unreachable or answering 5xx)
 * is tried again after ZB_REOPEN_BACKOFF_MS, doubling, as the official
 * SDKs retry it, and the session fails after ZB_MAX_REOPENS in a row.  A
 * token is replaced when less than min(5 minutes, 20% of its lifetime) is
 * left, while calls of its table are open (zerobus_token_due); the old one
 * serves until then.  The sender decides what the calls do meanwhile.
 *
 * Tokens are malloc'd by auth.c, kept off palloc so that they are wiped and
 * freed explicitly, and never logged: what the endpoint says is redacted.
 *
 * src/client/token.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "sender.h"
#include "token.h"

/* How long a token request may take */
#define ZB_TOKEN_TIMEOUT_MS		10000

/* Refresh a token when less than min(this, 20% of its lifetime) is left */
#define ZB_TOKEN_REFRESH_MARGIN_MS	(5 * 60 * 1000)

/*
 * Whether the token may start a call now: it exists and has not expired.
 * (A token due for refresh still serves while its successor is being
 * fetched.)
 */
bool
zerobus_token_usable(const ZerobusToken *tok, TimestampTz now)
{
	return tok->token != NULL && now < tok->expires;
}

/*
 * Prepares a token request of the stream's service principal (auth.c):
 * for one table's Zerobus writes, or with table NULL for the workspace's
 * APIs.  The caller runs its transfer; NULL, with the reason in errbuf,
 * when it cannot be made.
 */
ZerobusAuthRequest *
zerobus_token_start(const ZerobusStreamConfig *config, const char *table,
					long timeout_ms, char *errbuf, size_t errlen)
{
	return zerobus_auth_start(config->workspace_url,
							  config->workspace_id ? config->workspace_id :
							  zerobus_workspace_id(config->endpoint),
							  config->client_id, config->client_secret,
							  table, config->ca_file, timeout_ms,
							  errbuf, errlen);
}

/*
 * Starts a request for table's token, unless one is in flight or its
 * retry is not due.  user_data comes back with the transfer's completion
 * event (grpc.c).  The caller must have checked that table is a valid
 * Unity Catalog name: it goes into the request.  Raises an ERROR when the
 * request cannot even start.
 */
void
zerobus_token_request(ZerobusToken *tok, ZerobusGrpc *grpc,
					  const ZerobusStreamConfig *config, const char *table,
					  void *user_data, TimestampTz now)
{
	char		errbuf[512];

	if (tok->fetch != NULL || now < tok->retry_at)
		return;
	tok->fetch = zerobus_token_start(config, table, ZB_TOKEN_TIMEOUT_MS,
									 errbuf, sizeof(errbuf));
	if (tok->fetch != NULL &&
		!zerobus_grpc_add_transfer(grpc, zerobus_auth_easy(tok->fetch),
								   user_data, errbuf, sizeof(errbuf)))
	{
		zerobus_auth_free(tok->fetch);
		tok->fetch = NULL;
	}
	if (tok->fetch == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not request an OAuth token for table %s: %s",
						table, errbuf)));
}

/* Abandons the token request, if one is in flight. */
void
zerobus_token_cancel(ZerobusToken *tok, ZerobusGrpc *grpc)
{
	if (tok->fetch == NULL)
		return;
	zerobus_grpc_remove_transfer(grpc, zerobus_auth_easy(tok->fetch));
	zerobus_auth_free(tok->fetch);
	tok->fetch = NULL;
}

/*
 * The token request of table is over (libcurl's result).  On success the
 * new token replaces the old one (ZB_TOKEN_OK).  A transient failure is
 * logged, noted as the stream's last error and scheduled for a retry
 * (ZB_TOKEN_RETRY), or raises the ERROR that ends the session when it was
 * the ZB_MAX_REOPENS-th in a row.  A refusal returns ZB_TOKEN_FORBIDDEN
 * (this table) or ZB_TOKEN_DENIED (the client), with *why saying so in
 * words fit to be shown (redacted).
 */
ZerobusTokenResult
zerobus_token_done(ZerobusToken *tok, ZerobusGrpc *grpc, int result,
				   TimestampTz now, const ZerobusStreamConfig *config,
				   ZerobusStreamShared *shared, const char *table, char **why)
{
	char		errbuf[512];
	char	   *token = NULL;
	TimestampTz expires = 0;
	int64		margin;
	ZerobusAuthResult res;
	char	   *said;

	res = zerobus_auth_finish(tok->fetch, (CURLcode) result, &token,
							  &expires, errbuf, sizeof(errbuf));
	zerobus_token_cancel(tok, grpc);
	if (res == ZB_AUTH_OK)
	{
		tok->failures = 0;
		zerobus_token_forget(tok);
		tok->token = token;
		tok->expires = expires;
		margin = Min((int64) ZB_TOKEN_REFRESH_MARGIN_MS * 1000,
					 (expires - now) / 5);
		tok->refresh = expires - Max(margin, 0);
		return ZB_TOKEN_OK;
	}

	said = zerobus_auth_redact(errbuf, config->client_id,
							   config->client_secret, tok->token);
	if (res == ZB_AUTH_FORBIDDEN || res == ZB_AUTH_DENIED)
	{
		*why = psprintf("OAuth token request for table %s was denied: %s",
						table, said);
		return res == ZB_AUTH_FORBIDDEN ? ZB_TOKEN_FORBIDDEN : ZB_TOKEN_DENIED;
	}
	*why = psprintf("could not fetch an OAuth token for table %s: %s",
					table, said);
	if (tok->failures >= ZB_MAX_REOPENS)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("%s", *why),
				 errdetail("The token was requested %d times in a row.",
						   tok->failures + 1)));
	tok->retry_at = TimestampTzPlusMilliseconds(now,
												ZB_REOPEN_BACKOFF_MS << tok->failures);
	tok->failures++;
	ereport(LOG,
			(errmsg("%s; requesting it again in %d ms (attempt %d)", *why,
					ZB_REOPEN_BACKOFF_MS << (tok->failures - 1),
					tok->failures + 1)));
	zerobus_stream_note_error(shared, *why);
	return ZB_TOKEN_RETRY;
}

/*
 * Whether a token request should start now: a failed one's retry is due
 * (whoever waits for it), or the token nears its expiry while calls of its
 * table are open (in_use).  Else lowers *timeout to when one will be due.
 */
bool
zerobus_token_due(const ZerobusToken *tok, TimestampTz now, bool in_use,
				  long *timeout)
{
	TimestampTz due;

	if (tok->fetch != NULL)
		return false;
	if (tok->failures > 0 && !zerobus_token_usable(tok, now))
		due = tok->retry_at;
	else if (tok->token != NULL && in_use)
		due = Max(tok->refresh, tok->retry_at);
	else
		return false;
	if (now >= due)
		return true;
	zerobus_timeout_until(timeout, now, due);
	return false;
}

/* Wipes and frees the token (the server refused it, or a new one came). */
void
zerobus_token_forget(ZerobusToken *tok)
{
	if (tok->token == NULL)
		return;
	explicit_bzero(tok->token, strlen(tok->token));
	free(tok->token);
	tok->token = NULL;
}

/* Abandons the request in flight and forgets the token. */
void
zerobus_token_release(ZerobusToken *tok, ZerobusGrpc *grpc)
{
	zerobus_token_cancel(tok, grpc);
	zerobus_token_forget(tok);
}
