/*-------------------------------------------------------------------------
 *
 * token.h
 *	  The OAuth token of one target table of a sender: requested, retried,
 *	  refreshed and dropped (token.c).
 *
 * src/client/token.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ZEROBUS_TOKEN_H
#define ZEROBUS_TOKEN_H

#include "postgres.h"

#include "datatype/timestamp.h"

#include "auth.h"
#include "grpc.h"
#include "stream.h"

/*
 * A call the server ended before it acked everything is reopened at most
 * this many times in a row without an ack (the official SDKs' default
 * number of recovery retries), and a token request that failed for a
 * transient cause is tried as many times; the first reopen at once, then
 * after ZB_REOPEN_BACKOFF_MS, doubling.  Past that, the session fails.
 */
#define ZB_MAX_REOPENS			4
#define ZB_REOPEN_BACKOFF_MS	1000

/* A target table's token and its request; zeroed when the target is made */
typedef struct ZerobusToken
{
	char	   *token;			/* malloc'd by auth.c, NULL when none */
	TimestampTz expires;
	TimestampTz refresh;		/* when to replace it */
	ZerobusAuthRequest *fetch;	/* request in flight, or NULL */
	int			failures;		/* requests failed in a row */
	TimestampTz retry_at;		/* no request before then */
} ZerobusToken;

/* How a token request ended (zerobus_token_done) */
typedef enum ZerobusTokenResult
{
	ZB_TOKEN_OK,				/* the new token is in place */
	ZB_TOKEN_RETRY,				/* failed; tried again at retry_at */
	ZB_TOKEN_FORBIDDEN,			/* HTTP 403: this table is not allowed */
	ZB_TOKEN_DENIED				/* the endpoint refused the client itself */
} ZerobusTokenResult;

extern ZerobusAuthRequest *zerobus_token_start(const ZerobusStreamConfig *config,
											   const char *table,
											   long timeout_ms, char *errbuf,
											   size_t errlen);
extern bool zerobus_token_usable(const ZerobusToken *tok, TimestampTz now);
extern void zerobus_token_request(ZerobusToken *tok, ZerobusGrpc *grpc,
								  const ZerobusStreamConfig *config,
								  const char *table, void *user_data,
								  TimestampTz now);
extern void zerobus_token_cancel(ZerobusToken *tok, ZerobusGrpc *grpc);
extern ZerobusTokenResult zerobus_token_done(ZerobusToken *tok,
											 ZerobusGrpc *grpc, int result,
											 TimestampTz now,
											 const ZerobusStreamConfig *config,
											 ZerobusStreamShared *shared,
											 const char *table, char **why);
extern bool zerobus_token_due(const ZerobusToken *tok, TimestampTz now,
							  bool in_use, long *timeout);
extern void zerobus_token_forget(ZerobusToken *tok);
extern void zerobus_token_release(ZerobusToken *tok, ZerobusGrpc *grpc);

#endif							/* ZEROBUS_TOKEN_H */
