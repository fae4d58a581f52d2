/*-------------------------------------------------------------------------
 *
 * grpc_reader.c
 *	  The reader of what a Zerobus server sends on an EphemeralStream
 *	  call: gRPC length-prefixed messages, decoded as
 *	  EphemeralStreamResponse and held to the protocol's rules.
 *
 * A server is trusted with nothing: a message must be uncompressed (none
 * was negotiated) and at most ZB_GRPC_MAX_MESSAGE bytes; the stream is
 * created once, before any ack; an ack names an offset that was sent and
 * never goes backwards (believing one beyond what was sent would confirm
 * data the server never got); a close delay is clamped to a day.  The
 * reader keeps a partial message across feeds, and gives room back after
 * a large one.
 *
 * src/client/grpc_reader.c
 *
 *-------------------------------------------------------------------------
 */
#ifdef FRONTEND
#include "postgres_fe.h"
#else
#include "postgres.h"
#endif

#include "port/pg_bswap.h"

#include "grpc_reader.h"
#include "zerobus_service.pb-c.h"

static bool fail(ZerobusGrpcReader *reader, const char *fmt,...)
			pg_attribute_printf(2, 3);

/* Records why the feed fails; returns false for the caller to return. */
static bool
fail(ZerobusGrpcReader *reader, const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(reader->failure, sizeof(reader->failure), fmt, ap);
	va_end(ap);
	return false;
}

/*
 * Makes room for need more bytes after the len used of a malloc'd buffer
 * of *cap bytes, doubling it; false when out of memory (the buffer is kept).
 */
bool
zerobus_buf_reserve(char **buf, size_t *cap, size_t len, size_t need)
{
	size_t		newcap;
	char	   *n;

	if (len + need <= *cap)
		return true;
	newcap = *cap ? *cap : 4096;
	while (newcap < len + need)
		newcap *= 2;
	n = realloc(*buf, newcap);
	if (n == NULL)
		return false;
	*buf = n;
	*cap = newcap;
	return true;
}

/* Starts a reader for a new call. */
void
zerobus_grpc_reader_init(ZerobusGrpcReader *reader)
{
	memset(reader, 0, sizeof(*reader));
	reader->acked_offset = -1;
}

/* Frees what the reader holds. */
void
zerobus_grpc_reader_free(ZerobusGrpcReader *reader)
{
	free(reader->buf);
	reader->buf = NULL;
	reader->len = reader->cap = 0;
}

/*
 * Checks one decoded response against what the call sent (sent_offset,
 * the last offset_id queued, -1 if none) and fills *out.
 */
static bool
check_response(ZerobusGrpcReader *reader,
			   const Databricks__Zerobus__EphemeralStreamResponse *resp,
			   int64 sent_offset, ZerobusResponse *out)
{
	memset(out, 0, sizeof(*out));
	switch (resp->payload_case)
	{
		case DATABRICKS__ZEROBUS__EPHEMERAL_STREAM_RESPONSE__PAYLOAD_CREATE_STREAM_RESPONSE:
			if (reader->created)
				return fail(reader, "server sent a second create_stream_response");
			if (resp->create_stream_response->stream_id == NULL ||
				resp->create_stream_response->stream_id[0] == '\0')
				return fail(reader, "create_stream_response has no stream_id");
			reader->created = true;
			out->kind = ZB_RESPONSE_CREATED;
			strlcpy(out->stream_id, resp->create_stream_response->stream_id,
					sizeof(out->stream_id));
			return true;
		case DATABRICKS__ZEROBUS__EPHEMERAL_STREAM_RESPONSE__PAYLOAD_INGEST_RECORD_RESPONSE:
			{
				const Databricks__Zerobus__IngestRecordResponse *ack =
					resp->ingest_record_response;

				if (!reader->created)
					return fail(reader, "server acknowledged records before creating the stream");
				if (!ack->has_durability_ack_up_to_offset)
					return fail(reader, "ingest_record_response has no durability_ack_up_to_offset");
				/* believing it would confirm data the server never got */
				if (ack->durability_ack_up_to_offset > sent_offset)
					return fail(reader, "server acknowledged offset " INT64_FORMAT " but the last offset sent was " INT64_FORMAT,
								ack->durability_ack_up_to_offset, sent_offset);
				if (ack->durability_ack_up_to_offset < reader->acked_offset)
					return fail(reader, "server acknowledged offset " INT64_FORMAT " after offset " INT64_FORMAT,
								ack->durability_ack_up_to_offset,
								reader->acked_offset);
				reader->acked_offset = ack->durability_ack_up_to_offset;
				out->kind = ZB_RESPONSE_ACK;
				out->offset = ack->durability_ack_up_to_offset;
				return true;
			}
		case DATABRICKS__ZEROBUS__EPHEMERAL_STREAM_RESPONSE__PAYLOAD_CLOSE_STREAM_SIGNAL:
			{
				const Databricks__Zerobus__Duration *d =
					resp->close_stream_signal->duration;

				out->kind = ZB_RESPONSE_CLOSE_SIGNAL;
				/* a day at most: any int64 must not overflow */
				if (d != NULL)
					out->close_after_ms =
						Max(Min(d->seconds, ZB_GRPC_MAX_CLOSE_S), 0) * 1000 +
						Max(Min(d->nanos, 999999999), 0) / 1000000;
				return true;
			}
		default:
			return fail(reader, "response message has no payload");
	}
}

/*
 * Feeds len bytes of the response body.  Each whole message is decoded,
 * checked and handed to sink, in order.  Returns false, with the reason in
 * reader->failure, on the first thing wrong (then the call must end).
 */
bool
zerobus_grpc_reader_feed(ZerobusGrpcReader *reader, const char *data,
						 size_t len, int64 sent_offset,
						 ZerobusResponseSink sink, void *arg)
{
	size_t		pos = 0;

	if (!zerobus_buf_reserve(&reader->buf, &reader->cap, reader->len, len))
		return fail(reader, "out of memory");
	memcpy(reader->buf + reader->len, data, len);
	reader->len += len;

	while (reader->len - pos >= 5)
	{
		const uint8 *p = (const uint8 *) reader->buf + pos;
		Databricks__Zerobus__EphemeralStreamResponse *resp;
		ZerobusResponse out;
		uint32		mlen;
		bool		ok;
		const char *refused;

		memcpy(&mlen, p + 1, 4);
		mlen = pg_ntoh32(mlen);
		if (p[0] != 0)
			return fail(reader, "server sent a compressed message, which was not negotiated");
		if (mlen > ZB_GRPC_MAX_MESSAGE)
			return fail(reader, "server sent a message of %u bytes, more than the limit", mlen);
		if (reader->len - pos - 5 < mlen)
			break;

		resp = databricks__zerobus__ephemeral_stream_response__unpack(NULL, mlen, p + 5);
		if (resp == NULL)
			return fail(reader, "could not decode a response message of %u bytes", mlen);
		ok = check_response(reader, resp, sent_offset, &out);
		databricks__zerobus__ephemeral_stream_response__free_unpacked(resp, NULL);
		if (!ok)
			return false;
		if ((refused = sink(arg, &out)) != NULL)
			return fail(reader, "%s", refused);
		pos += 5 + mlen;
	}

	if (pos > 0)
	{
		memmove(reader->buf, reader->buf + pos, reader->len - pos);
		reader->len -= pos;
		/* a large message passed: give its room back */
		if (reader->cap > ZB_GRPC_RECV_KEEP && reader->len <= ZB_GRPC_RECV_KEEP)
		{
			char	   *smaller = realloc(reader->buf, ZB_GRPC_RECV_KEEP);

			if (smaller != NULL)
			{
				reader->buf = smaller;
				reader->cap = ZB_GRPC_RECV_KEEP;
			}
		}
	}
	return true;
}
