/*-------------------------------------------------------------------------
 *
 * token_reply.c
 *	  The reader of an OAuth token endpoint's reply: the access token and
 *	  its life, from JSON a server sent.  Everything here is fed from
 *	  outside, so it checks everything (nesting before the recursive
 *	  parser runs, types, a token fit for an HTTP header, a life clamped to
 *	  a sane range) and never raises an error: it reports one.
 *
 *	  It builds in the backend (auth.c) and, with FRONTEND defined, against
 *	  libpgcommon alone, for the libFuzzer harness in fuzz/.
 *
 * src/client/token_reply.c
 *
 *-------------------------------------------------------------------------
 */
#ifdef FRONTEND
#include "postgres_fe.h"
#else
#include "postgres.h"

#include "utils/memutils.h"
#endif

#include <math.h>

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"

#include "compat.h"
#include "token_reply.h"

/* What the JSON semantic actions collect from the reply. */
typedef struct TokenParse
{
	int			depth;
	const char *field;			/* top-level field whose value comes next */
	char	   *access_token;
	char	   *expires_in;
	bool		bad_type;
} TokenParse;


static ZB_JSON_ACTION_RESULT
token_object_start(void *state)
{
	((TokenParse *) state)->depth++;
	ZB_JSON_ACTION_RETURN;
}

static ZB_JSON_ACTION_RESULT
token_object_end(void *state)
{
	((TokenParse *) state)->depth--;
	ZB_JSON_ACTION_RETURN;
}

static ZB_JSON_ACTION_RESULT
token_field_start(void *state, char *fname, bool isnull)
{
	TokenParse *tp = state;

	tp->field = NULL;
	if (tp->depth != 1)
		ZB_JSON_ACTION_RETURN;
	if (strcmp(fname, "access_token") == 0)
		tp->field = "access_token";
	else if (strcmp(fname, "expires_in") == 0)
		tp->field = "expires_in";
	ZB_JSON_ACTION_RETURN;
}

static ZB_JSON_ACTION_RESULT
token_field_end(void *state, char *fname, bool isnull)
{
	((TokenParse *) state)->field = NULL;
	pfree(fname);
	ZB_JSON_ACTION_RETURN;
}

/* Moves *value into *slot (a repeated key's last value wins) */
static void
keep(char **slot, char **value)
{
	if (*slot != NULL)
		pfree(*slot);
	*slot = *value;
	*value = NULL;
}

/* Keeps the scalar value of access_token or expires_in; frees the others. */
static ZB_JSON_ACTION_RESULT
token_scalar(void *state, char *token, JsonTokenType tokentype)
{
	TokenParse *tp = state;

	if (tp->field != NULL && strcmp(tp->field, "access_token") == 0 &&
		tokentype == JSON_TOKEN_STRING)
		keep(&tp->access_token, &token);
	/* a number, or a number in a string ("3600"), as some servers send */
	else if (tp->field != NULL && strcmp(tp->field, "expires_in") == 0 &&
			 (tokentype == JSON_TOKEN_NUMBER || tokentype == JSON_TOKEN_STRING))
		keep(&tp->expires_in, &token);
	else if (tp->field != NULL)
		tp->bad_type = true;
	tp->field = NULL;
	if (token != NULL)
		pfree(token);
	ZB_JSON_ACTION_RETURN;
}

/*
 * Is a token usable as an HTTP header value?  It must be non-empty and of
 * visible ASCII only, so a hostile reply cannot inject header lines.
 */
static bool
token_is_printable(const char *token)
{
	if (*token == '\0')
		return false;
	for (const char *p = token; *p; p++)
		if (*p <= 0x20 || *p >= 0x7f)
			return false;
	return true;
}

/*
 * Whether the JSON text nests objects and arrays no deeper than max_depth:
 * checked before parsing a server's reply, so that a hostile reply cannot
 * make the recursive parser exhaust the stack.  Brackets inside strings do
 * not count.
 */
bool
zerobus_json_depth_ok(const char *s, size_t len, int max_depth)
{
	int			depth = 0;
	bool		in_string = false;

	for (size_t i = 0; i < len; i++)
	{
		char		c = s[i];

		if (in_string)
		{
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		}
		else if (c == '"')
			in_string = true;
		else if (c == '{' || c == '[')
		{
			if (++depth > max_depth)
				return false;
		}
		else if (c == '}' || c == ']')
			depth--;
	}
	return true;
}

/* The token and its life from the fields parse_reply collected */
static bool
read_fields(TokenParse *tp, char **token, long *expires_in, char *errbuf,
			size_t errlen)
{
	if (tp->bad_type || tp->access_token == NULL || !token_is_printable(tp->access_token))
	{
		snprintf(errbuf, errlen, "token endpoint reply has no valid access_token");
		return false;
	}
	*expires_in = ZB_TOKEN_DEFAULT_EXPIRES_S;
	if (tp->expires_in != NULL)
	{
		char	   *end;
		double		v = strtod(tp->expires_in, &end);

		if (end == tp->expires_in || *end != '\0' || isnan(v))
		{
			snprintf(errbuf, errlen, "token endpoint reply has an invalid expires_in");
			return false;
		}
		/* whatever the server says (0, -5, 1e309, 20 digits): a sane life */
		*expires_in = (long) Max(Min(v, (double) ZB_TOKEN_MAX_EXPIRES_S),
								 (double) ZB_TOKEN_MIN_EXPIRES_S);
	}
	*token = strdup(tp->access_token);
	if (*token == NULL)
	{
		snprintf(errbuf, errlen, "out of memory");
		return false;
	}
	return true;
}

/* zerobus_token_reply_parse's work; frees what the JSON parser allocated */
static bool
parse_reply(char *body, size_t len, char **token, long *expires_in,
			char *errbuf, size_t errlen)
{
	JsonLexContext *lex;
	JsonSemAction sem;
	TokenParse	tp;
	JsonParseErrorType jerr;
	bool		ok = false;

	memset(&tp, 0, sizeof(tp));
	memset(&sem, 0, sizeof(sem));
	sem.semstate = &tp;
	sem.object_start = token_object_start;
	sem.object_end = token_object_end;
	sem.object_field_start = token_field_start;
	sem.object_field_end = token_field_end;
	sem.scalar = token_scalar;

	if (!zerobus_json_depth_ok(body, len, ZB_TOKEN_MAX_DEPTH))
	{
		snprintf(errbuf, errlen, "token endpoint sent a reply nested deeper than %d levels",
				 ZB_TOKEN_MAX_DEPTH);
		return false;
	}
	lex = zerobus_make_json_lex(body, len, PG_UTF8, true);
	jerr = pg_parse_json(lex, &sem);
	zerobus_free_json_lex(lex);
	if (jerr != JSON_SUCCESS)
		snprintf(errbuf, errlen, "token endpoint sent a reply that is not JSON");
	else
		ok = read_fields(&tp, token, expires_in, errbuf, errlen);
	if (tp.access_token)
		pfree(tp.access_token);
	if (tp.expires_in)
		pfree(tp.expires_in);
	return ok;
}


/*
 * Parses the body of a 2xx reply of a token endpoint (len bytes; body[len]
 * must be '\0').  On success sets *token (malloc'd: the caller frees it)
 * and *expires_in (seconds, clamped to ZB_TOKEN_MIN_EXPIRES_S ..
 * ZB_TOKEN_MAX_EXPIRES_S; ZB_TOKEN_DEFAULT_EXPIRES_S when absent) and
 * returns true; otherwise fills errbuf and returns false.
 */
bool
zerobus_token_reply_parse(char *body, size_t len, char **token,
						  long *expires_in, char *errbuf, size_t errlen)
{
#ifdef FRONTEND
	/* the fuzzing harness: what the JSON parser allocates is left */
	return parse_reply(body, len, token, expires_in, errbuf, errlen);
#else
	/* the JSON parser's allocations (lexer, field names) go with cxt */
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext,
											  "zerobus token reply",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext oldcxt = MemoryContextSwitchTo(cxt);
	bool		ok = parse_reply(body, len, token, expires_in, errbuf, errlen);

	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(cxt);
	return ok;
#endif
}
