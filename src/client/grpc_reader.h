/*-------------------------------------------------------------------------
 *
 * grpc_reader.h
 *	  The reader of what a Zerobus server sends on an EphemeralStream
 *	  call (grpc_reader.c): gRPC message framing, the response messages,
 *	  and the protocol's rules on them.
 *
 * Everything here is fed from outside, so it checks everything and never
 * raises an error: it reports one.  It builds in the backend and, with
 * FRONTEND, in the libFuzzer harness fuzz/grpc_reader_fuzz.c.
 *
 * src/client/grpc_reader.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ZEROBUS_GRPC_READER_H
#define ZEROBUS_GRPC_READER_H

/*
 * Largest gRPC response message taken from the server (4 MiB, gRPC's
 * default); Zerobus's responses are a few bytes.
 */
#define ZB_GRPC_MAX_MESSAGE			(4 * 1024 * 1024)
/* receive room a call keeps after a larger message */
#define ZB_GRPC_RECV_KEEP			(64 * 1024)
/* the longest close delay a CloseStreamSignal may ask for */
#define ZB_GRPC_MAX_CLOSE_S			86400

/* One response message, once checked */
typedef enum ZerobusResponseKind
{
	ZB_RESPONSE_CREATED,		/* create_stream_response: stream_id */
	ZB_RESPONSE_ACK,			/* durability_ack_up_to_offset: offset */
	ZB_RESPONSE_CLOSE_SIGNAL	/* close_stream_signal: close_after_ms */
} ZerobusResponseKind;

typedef struct ZerobusResponse
{
	ZerobusResponseKind kind;
	int64		offset;
	int64		close_after_ms; /* 0 .. ZB_GRPC_MAX_CLOSE_S s */
	char		stream_id[64];
} ZerobusResponse;

/*
 * What a call has received so far.  Zero it to start; buf is malloc'd and
 * freed by zerobus_grpc_reader_free().
 */
typedef struct ZerobusGrpcReader
{
	char	   *buf;			/* bytes not yet a whole message */
	size_t		len;
	size_t		cap;
	bool		created;		/* create_stream_response seen */
	int64		acked_offset;	/* highest offset acknowledged, or -1 */
	char		failure[512];	/* why the last feed failed */
} ZerobusGrpcReader;

/*
 * Takes whatever was emitted for a response: NULL to go on, or the reason
 * to fail the call (which becomes the reader's failure).
 */
typedef const char *(*ZerobusResponseSink) (void *arg,
											const ZerobusResponse *response);

extern bool zerobus_buf_reserve(char **buf, size_t *cap, size_t len,
								size_t need);
extern void zerobus_grpc_reader_init(ZerobusGrpcReader *reader);
extern bool zerobus_grpc_reader_feed(ZerobusGrpcReader *reader,
									 const char *data, size_t len,
									 int64 sent_offset,
									 ZerobusResponseSink sink, void *arg);
extern void zerobus_grpc_reader_free(ZerobusGrpcReader *reader);

#endif							/* ZEROBUS_GRPC_READER_H */
