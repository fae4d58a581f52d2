/*-------------------------------------------------------------------------
 *
 * token_reply_fuzz.c
 *	  libFuzzer harness for zerobus_token_reply_parse() (src/client/token_reply.c),
 *	  the reader of what an OAuth token endpoint sends.  Any input must be
 *	  either refused with a message or give a token fit for an HTTP header
 *	  and a life in range; AddressSanitizer watches the memory.
 *
 *	  Built and run by fuzz/run.sh (the test command runs it for a bounded
 *	  time on the committed corpus in fuzz/corpus/token_reply/).
 *
 * fuzz/token_reply_fuzz.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "token_reply.h"

int			LLVMFuzzerTestOneInput(const uint8 *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8 *data, size_t size)
{
	char	   *body = malloc(size + 1);
	char	   *token = NULL;
	long		expires_in = 0;
	char		errbuf[256];

	if (body == NULL)
		return 0;
	memcpy(body, data, size);
	body[size] = '\0';
	errbuf[0] = '\0';
	if (zerobus_token_reply_parse(body, size, &token, &expires_in,
								  errbuf, sizeof(errbuf)))
	{
		if (token == NULL || token[0] == '\0' ||
			expires_in < ZB_TOKEN_MIN_EXPIRES_S ||
			expires_in > ZB_TOKEN_MAX_EXPIRES_S)
			abort();
		for (const char *p = token; *p; p++)
			if (*p <= 0x20 || *p >= 0x7f)
				abort();
		free(token);
	}
	else if (errbuf[0] == '\0')
		abort();				/* a refusal must say why */
	free(body);
	return 0;
}
