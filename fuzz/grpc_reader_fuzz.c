/*-------------------------------------------------------------------------
 *
 * grpc_reader_fuzz.c
 *	  libFuzzer harness for the reader of what a Zerobus server sends
 *	  (src/client/grpc_reader.c): gRPC framing, EphemeralStreamResponse
 *	  decoding and the protocol's rules.  Any input, cut into any chunks,
 *	  must be refused with a message or give responses that keep the rules:
 *	  one create before any ack, acks that never go backwards nor past the
 *	  last offset sent, close delays within a day.  AddressSanitizer watches
 *	  the memory.
 *
 *	  The first 8 bytes of an input are the last offset sent, the next one
 *	  the chunk size; the rest is the response body.
 *
 *	  Built and run by fuzz/run.sh (the test command runs it for a bounded
 *	  time on the committed corpus in fuzz/corpus/grpc_reader/).
 *
 * fuzz/grpc_reader_fuzz.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "grpc_reader.h"

int			LLVMFuzzerTestOneInput(const uint8 *data, size_t size);

/* What the responses so far say, to hold each new one to the rules */
typedef struct Seen
{
	int64		sent_offset;
	bool		created;
	int64		acked;
} Seen;

static const char *
check(void *arg, const ZerobusResponse *response)
{
	Seen	   *seen = arg;

	switch (response->kind)
	{
		case ZB_RESPONSE_CREATED:
			if (seen->created || response->stream_id[0] == '\0')
				abort();
			seen->created = true;
			break;
		case ZB_RESPONSE_ACK:
			if (!seen->created || response->offset > seen->sent_offset ||
				response->offset < seen->acked)
				abort();
			seen->acked = response->offset;
			break;
		case ZB_RESPONSE_CLOSE_SIGNAL:
			if (response->close_after_ms < 0 ||
				response->close_after_ms > ZB_GRPC_MAX_CLOSE_S * 1000 + 999)
				abort();
			break;
		default:
			abort();
	}
	return NULL;
}

int
LLVMFuzzerTestOneInput(const uint8 *data, size_t size)
{
	ZerobusGrpcReader reader;
	Seen		seen = {0};
	size_t		chunk;
	size_t		pos = 9;

	if (size < 9)
		return 0;
	memcpy(&seen.sent_offset, data, 8);
	seen.acked = -1;
	chunk = data[8] ? data[8] : 4096;

	zerobus_grpc_reader_init(&reader);
	while (pos < size)
	{
		size_t		n = Min(chunk, size - pos);

		if (!zerobus_grpc_reader_feed(&reader, (const char *) data + pos, n,
									  seen.sent_offset, check, &seen))
		{
			if (reader.failure[0] == '\0')
				abort();		/* refused without a reason */
			break;
		}
		if (reader.len > ZB_GRPC_MAX_MESSAGE + 5)
			abort();			/* holds more than one message's worth */
		pos += n;
	}
	zerobus_grpc_reader_free(&reader);
	return 0;
}
