/*-------------------------------------------------------------------------
 *
 * auth.h
 *	  OAuth machine-to-machine tokens for Zerobus (auth.c).
 *
 * A Zerobus token is scoped to one table, so tokens are cached per target
 * table and refreshed before they expire.
 *
 * src/client/auth.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ZEROBUS_AUTH_H
#define ZEROBUS_AUTH_H

#include "postgres.h"

#include "utils/timestamp.h"

typedef enum ZerobusAuthResult
{
	ZB_AUTH_OK,
	ZB_AUTH_RETRY,				/* 5xx, timeout, network: retry with backoff */
	ZB_AUTH_DENIED,				/* 4xx or malformed reply: permanent */
	ZB_AUTH_FORBIDDEN			/* 403: the client may not write this table */
} ZerobusAuthResult;

/*
 * Fetches a client-credentials token for one table from
 * <workspace_url>/oidc/v1/token (zerobus-wire.md, "OAuth").  Blocks for at
 * most timeout_ms, but returns early (ZB_AUTH_RETRY, "interrupted") when
 * interrupt_pending() (may be NULL) says the process must stop.  On success
 * *token is a malloc'd string the caller frees with free(), and *expires_at
 * is when it expires.  The secret is never written to errbuf or any log.
 */
extern ZerobusAuthResult zerobus_auth_fetch(const char *workspace_url,
											const char *workspace_id,
											const char *client_id,
											const char *client_secret,
											const char *table_name,
											const char *ca_file,
											int timeout_ms,
											bool (*interrupt_pending) (void),
											char **token,
											TimestampTz *expires_at,
											char *errbuf, size_t errlen);

/*
 * The workspace id of a Zerobus endpoint: the first DNS label of its host,
 * as the official SDKs derive it ("127" for http://127.0.0.1:port).
 * palloc'd.
 */
extern char *zerobus_workspace_id(const char *endpoint);

#endif							/* ZEROBUS_AUTH_H */
