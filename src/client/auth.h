/*-------------------------------------------------------------------------
 *
 * auth.h
 *	  OAuth machine-to-machine tokens for Zerobus (auth.c).
 *
 * A Zerobus token is scoped to one table, so tokens are cached per target
 * table and refreshed before they expire.  Requests never block: their
 * transfers run on the caller's multi handle.
 *
 * src/client/auth.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ZEROBUS_AUTH_H
#define ZEROBUS_AUTH_H

#include "postgres.h"

#include <curl/curl.h>

#include "utils/timestamp.h"

typedef enum ZerobusAuthResult
{
	ZB_AUTH_OK,
	ZB_AUTH_RETRY,				/* 5xx, timeout, network: retry with backoff */
	ZB_AUTH_DENIED,				/* 4xx or malformed reply: permanent */
	ZB_AUTH_FORBIDDEN			/* 403: the client may not write this table */
} ZerobusAuthResult;

/* A reply being received, in malloc'd memory, up to max bytes */
typedef struct ZerobusHttpReply
{
	char	   *data;			/* NUL-terminated; free() it */
	size_t		len;
	size_t		max;
	bool		too_large;		/* the reply passed max: transfer ended */
} ZerobusHttpReply;

extern size_t zerobus_http_reply_cb(char *data, size_t size, size_t nmemb,
									void *userp);
extern void zerobus_http_reply_excerpt(char *dst, size_t dstlen,
									   const ZerobusHttpReply *reply);
extern void zerobus_http_easy_setup(CURL *easy, const char *url,
									char *curl_error, long timeout_ms,
									const char *ca_file,
									ZerobusHttpReply *reply,
									size_t max_reply);

/* A token request in flight (auth.c) */
typedef struct ZerobusAuthRequest ZerobusAuthRequest;

/*
 * Sets up a client-credentials token request for one table (a Zerobus
 * token), or with table_name NULL for the workspace (a token for its REST
 * APIs, such as the SQL statements), to
 * <workspace_url>/oidc/v1/token (zerobus-wire.md, "OAuth"), to take at
 * most timeout_ms.  Nothing is sent yet: the caller adds the transfer
 * (zerobus_auth_easy()) to a multi handle of its own and, once libcurl says
 * it is done, calls zerobus_auth_finish(), then removes the transfer and
 * calls zerobus_auth_free().  Returns NULL, with the reason in errbuf, when
 * the request cannot be made (a target name that is not
 * catalog.schema.table, no memory).  The secret is never written to errbuf
 * or any log.
 */
extern ZerobusAuthRequest *zerobus_auth_start(const char *workspace_url,
											  const char *workspace_id,
											  const char *client_id,
											  const char *client_secret,
											  const char *table_name,
											  const char *ca_file,
											  int timeout_ms,
											  char *errbuf, size_t errlen);
extern CURL *zerobus_auth_easy(ZerobusAuthRequest *req);

/*
 * The outcome of a request whose transfer libcurl reported done with
 * result.  On success *token is a malloc'd string the caller frees with
 * free(), and *expires_at is when it expires; else errbuf says why.
 */
extern ZerobusAuthResult zerobus_auth_finish(ZerobusAuthRequest *req,
											 CURLcode result, char **token,
											 TimestampTz *expires_at,
											 char *errbuf, size_t errlen);
extern void zerobus_auth_free(ZerobusAuthRequest *req);

/*
 * The workspace id of a Zerobus endpoint: the first DNS label of its host,
 * as the official SDKs derive it ("127" for http://127.0.0.1:port).
 * palloc'd.
 */
extern char *zerobus_workspace_id(const char *endpoint);

/*
 * A server's words with every non-printable byte made '?' and the given
 * credentials redacted.  palloc'd.
 */
extern char *zerobus_auth_redact(const char *text, const char *client_id,
								 const char *client_secret, const char *token);

#endif							/* ZEROBUS_AUTH_H */
