/*-------------------------------------------------------------------------
 *
 * grpc.h
 *	  A minimal gRPC client for the Zerobus EphemeralStream RPC, over HTTP/2
 *	  with libcurl's multi interface (grpc.c).
 *
 * One ZerobusGrpc is a curl multi handle talking to one Zerobus endpoint;
 * each ZerobusGrpcCall is one EphemeralStream call on it, i.e. one Zerobus
 * stream writing one table.  Each call has an HTTP/2 connection of its own
 * (as the official SDKs do: one connection carries a limited rate), or all
 * share one (multiplexed).
 * Nothing here blocks: the caller waits on zerobus_grpc_sockets() together
 * with its latch, calls zerobus_grpc_perform() when a socket is ready or the
 * timeout it returned has passed, and then drains zerobus_grpc_next_event().
 * zerobus_grpc_open() and zerobus_grpc_send() only queue work: call
 * zerobus_grpc_perform() after them, before waiting, and wait at most the
 * timeout it returns.  The socket set and the events wanted on each socket
 * can change at every zerobus_grpc_perform(), so fetch them again before
 * each wait.
 *
 * Every call ends with exactly one ENDED event (unless closed first).  A
 * transport error (status ZB_GRPC_TRANSPORT_ERROR) on a shared connection
 * ends every call on it.
 * The server must reset the HTTP/2 stream after the trailers of a call the
 * client has not half-closed (grpc-go and grpc-core servers do); with
 * libcurl 7.88 a status that comes only as END_STREAM trailers is not seen
 * until then (see grpc.c).
 *
 * Memory: everything is malloc'd and owned by this module (never palloc),
 * because libcurl calls back into it at any time.  No function here raises
 * an ERROR from inside a libcurl callback; failures are reported as events
 * (or, for setup failures, as a false/NULL return with a message).
 *
 * src/client/grpc.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ZEROBUS_GRPC_H
#define ZEROBUS_GRPC_H

#include "postgres.h"

#include "grpc_reader.h"

/* gRPC status codes used by Zerobus (grpc/status.h) */
#define ZB_GRPC_OK					0
#define ZB_GRPC_CANCELLED			1
#define ZB_GRPC_UNKNOWN				2
#define ZB_GRPC_INVALID_ARGUMENT	3
#define ZB_GRPC_DEADLINE_EXCEEDED	4
#define ZB_GRPC_NOT_FOUND			5
#define ZB_GRPC_PERMISSION_DENIED	7
#define ZB_GRPC_RESOURCE_EXHAUSTED	8
#define ZB_GRPC_OUT_OF_RANGE		11
#define ZB_GRPC_UNIMPLEMENTED		12
#define ZB_GRPC_INTERNAL			13
#define ZB_GRPC_UNAVAILABLE			14
#define ZB_GRPC_UNAUTHENTICATED		16
/* not gRPC codes: the transport failed (connect, TLS, reset), or the server
 * broke the protocol (a malformed response, an ack of what was not sent) */
#define ZB_GRPC_TRANSPORT_ERROR		(-1)
#define ZB_GRPC_PROTOCOL_ERROR		(-2)

/*
 * Largest request message Zerobus takes (10 MiB; a larger one ends the
 * call with INVALID_ARGUMENT).
 */
#define ZB_GRPC_MAX_REQUEST			(10 * 1024 * 1024)

/* events queued between two reads by the caller; a flood fails its call */
#define ZB_GRPC_MAX_EVENTS			4096

typedef struct ZerobusGrpc ZerobusGrpc;
typedef struct ZerobusGrpcCall ZerobusGrpcCall;

typedef enum ZerobusGrpcEventKind
{
	ZB_GRPC_EV_CREATED,			/* create_stream_response: stream_id set */
	ZB_GRPC_EV_ACK,				/* durability_ack_up_to_offset: offset set */
	ZB_GRPC_EV_CLOSE_SIGNAL,	/* close_stream_signal: close_after_ms set */
	ZB_GRPC_EV_ENDED,			/* the call is over: status, message set */
	ZB_GRPC_EV_TRANSFER_DONE	/* a transfer of zerobus_grpc_add_transfer()
								 * is over: transfer, result set */
} ZerobusGrpcEventKind;

typedef struct ZerobusGrpcEvent
{
	ZerobusGrpcEventKind kind;
	ZerobusGrpcCall *call;
	void	   *user_data;		/* as given to zerobus_grpc_open() or
								 * zerobus_grpc_add_transfer() */
	int64		offset;			/* ACK */
	int64		close_after_ms; /* CLOSE_SIGNAL */
	int			status;			/* ENDED: gRPC status,
								 * ZB_GRPC_TRANSPORT_ERROR or
								 * ZB_GRPC_PROTOCOL_ERROR */
	void	   *transfer;		/* TRANSFER_DONE: its CURL easy handle */
	int			result;			/* TRANSFER_DONE: its CURLcode */
	char		stream_id[64];	/* CREATED */
	char		message[512];	/* ENDED: grpc-message or transport error */
} ZerobusGrpcEvent;

/*
 * Connects lazily to endpoint ("https://host[:port]"; a bare "host[:port]"
 * means https; "http://host:port" for h2c with prior knowledge only when
 * allow_plaintext is true and the host is localhost, 127.0.0.0/8 or [::1]).
 * A path or query is refused.  ca_file may be NULL (system roots).  With
 * shared, the calls are multiplexed over one connection, else each opens
 * its own.  On a bad endpoint returns NULL with errbuf filled; nothing
 * connects, so this also serves to validate an endpoint.
 */
extern ZerobusGrpc *zerobus_grpc_create(const char *endpoint,
										bool allow_plaintext,
										const char *ca_file, bool shared,
										char *errbuf, size_t errlen);
extern void zerobus_grpc_destroy(ZerobusGrpc *grpc);

/*
 * Starts an EphemeralStream call for table_name ("catalog.schema.table")
 * with the bearer token, and queues its create_stream request with the
 * serialized DescriptorProto (PROTO record type).  Returns NULL only when
 * out of memory or libcurl refuses the handle (errbuf filled).
 */
extern ZerobusGrpcCall *zerobus_grpc_open(ZerobusGrpc *grpc,
										  const char *table_name,
										  const char *token,
										  const char *descriptor,
										  size_t descriptor_len,
										  void *user_data,
										  char *errbuf, size_t errlen);

/*
 * Queues one ingest request: a batch of nrecords (> 0) serialized records
 * (sent as ingest_record when nrecords == 1) with the given offset_id.  The
 * bytes are copied.  The caller keeps each request under
 * ZB_GRPC_MAX_REQUEST.  A request on a call that has ended is dropped (its
 * ENDED event is queued).  Raises ERROR only when out of memory.
 */
extern void zerobus_grpc_send(ZerobusGrpcCall *call, int64 offset_id,
							  int nrecords, const char *const *records,
							  const size_t *lens);

/*
 * Ends the call's requests after those queued (the client's half of the
 * HTTP/2 stream is closed), as gRPC clients finish a call: the server then
 * ends it with a status, OK once it acked everything, and its ENDED event
 * follows.  Nothing may be sent on the call afterwards.
 */
extern void zerobus_grpc_half_close(ZerobusGrpcCall *call);

/* Bytes queued on the call and not yet handed to the network. */
extern size_t zerobus_grpc_queued_bytes(ZerobusGrpcCall *call);

/* Cancels the call if still running and frees it; no event follows. */
extern void zerobus_grpc_close(ZerobusGrpcCall *call);

/*
 * Runs another transfer (an easy handle the caller set up, e.g. an OAuth
 * token request) on the connection's multi handle, with its traffic: it
 * waits on no socket of its own.  When it is over, a
 * ZB_GRPC_EV_TRANSFER_DONE event says so; the caller then reads it and
 * calls zerobus_grpc_remove_transfer() before freeing the handle.  Returns
 * false, with errbuf filled, when libcurl refuses the handle.
 */
extern bool zerobus_grpc_add_transfer(ZerobusGrpc *grpc, void *easy,
									  void *user_data,
									  char *errbuf, size_t errlen);

/* Takes a transfer off the multi handle, done or not; no event follows. */
extern void zerobus_grpc_remove_transfer(ZerobusGrpc *grpc, void *easy);

/*
 * Sets the proxy of a transfer from zerobus.proxy and zerobus.no_proxy
 * (each left to libcurl's environment variables when empty).  With tunnel,
 * the transfer goes through a CONNECT tunnel, as HTTP/2 must.
 */
extern void zerobus_curl_set_proxy(void *easy, bool tunnel);

/*
 * Initializes libcurl once per process, before its first handle.  Returns
 * false, with errbuf filled, when it cannot.
 */
extern bool zerobus_curl_init(char *errbuf, size_t errlen);

/*
 * Does all the I/O that can be done now without blocking and queues the
 * resulting events.  Returns the number of milliseconds after which it
 * must be called again even if no socket becomes ready (0: events are
 * waiting or work is pending; -1: no timer).
 */
extern long zerobus_grpc_perform(ZerobusGrpc *grpc);

/*
 * Pops the next event; false when there is none.  Consecutive acks of a
 * call are merged into one (they are cumulative).
 */
extern bool zerobus_grpc_next_event(ZerobusGrpc *grpc, ZerobusGrpcEvent *ev);

/*
 * The sockets libcurl wants watched: fills up to max entries of socks[] and
 * events[] (WL_SOCKET_READABLE and/or WL_SOCKET_WRITEABLE, never 0) and
 * returns how many.  *generation changes whenever a socket was opened or
 * closed since the last call (a new socket may reuse a closed one's number,
 * which a kept WaitEventSet would not watch).
 */
extern int	zerobus_grpc_sockets(ZerobusGrpc *grpc, pgsocket *socks,
								 int *events, int max, uint64 *generation);

/* Whether the official SDKs give up (rather than retry) on a status. */
extern bool zerobus_grpc_status_permanent(int status);

/* The name of a gRPC status code ("UNAVAILABLE"), for messages. */
extern const char *zerobus_grpc_status_name(int status);

#endif							/* ZEROBUS_GRPC_H */
