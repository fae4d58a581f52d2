/*-------------------------------------------------------------------------
 *
 * token_reply.h
 *	  Reading an OAuth token endpoint's reply (token_reply.c).
 *
 * src/client/token_reply.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ZEROBUS_TOKEN_REPLY_H
#define ZEROBUS_TOKEN_REPLY_H

/* a token's life when the reply gives none, and the range it is kept in */
#define ZB_TOKEN_DEFAULT_EXPIRES_S 3600
#define ZB_TOKEN_MIN_EXPIRES_S 10
#define ZB_TOKEN_MAX_EXPIRES_S 86400
/* nesting a token reply may have (it has one level) */
#define ZB_TOKEN_MAX_DEPTH 32

extern bool zerobus_token_reply_parse(char *body, size_t len, char **token,
									  long *expires_in, char *errbuf,
									  size_t errlen);

extern bool zerobus_json_depth_ok(const char *s, size_t len, int max_depth);

#endif							/* ZEROBUS_TOKEN_REPLY_H */
