/*-------------------------------------------------------------------------
 *
 * grpc.c
 *	  A minimal gRPC client for Zerobus's EphemeralStream RPC, built on
 *	  libcurl's multi interface with HTTP/2 multiplexing.
 *
 * One ZerobusGrpc owns one curl multi handle.  Every call is an easy handle
 * doing a POST whose request body ends only when the call is half-closed:
 * the read callback hands curl whatever the call's send queue holds and
 * pauses the upload when the queue is empty; zerobus_grpc_send() appends to
 * the queue and unpauses it.  Each call has a connection of its own
 * (CURLOPT_FRESH_CONNECT, CURLOPT_FORBID_REUSE), or all share one HTTP/2
 * connection (CURLPIPE_MULTIPLEX, CURLOPT_PIPEWAIT, one connection per
 * host).  The response body is a sequence of gRPC
 * messages (1 flag byte, 4-byte big-endian length, protobuf bytes) parsed
 * incrementally; the final status arrives as trailers through the header
 * callback.
 *
 * libcurl 7.88 (Debian 12) has HTTP/2 bugs that matter for a streaming
 * upload; each is worked around where it bites:
 *	- a reused h2c prior-knowledge connection fails (curl issue 10634), so
 *	  there every plaintext call gets a fresh connection of its own;
 *	- trailers are delivered only once both halves of the stream are closed,
 *	  and a transfer whose upload is paused never completes.  gRPC servers
 *	  reset the stream (RST_STREAM NO_ERROR) after the trailers of a call
 *	  the client has not half-closed, which makes curl deliver them, and
 *	  zerobus_grpc_perform() ends a call as soon as its grpc-status is known;
 *	- the failure of a shared connection reaches one of its transfers only,
 *	  so a transport error ends every call;
 *	- an upload of unknown size busy-loops on a writable socket (curl issue
 *	  10618) and can leave the last DATA frame of a burst inside nghttp2:
 *	  see socket_wants_write() and kick_stalled_uploads().
 *
 * libcurl's callbacks run only inside curl_multi_socket_action(), called
 * from zerobus_grpc_perform().  They never raise a PostgreSQL error and
 * never palloc: failures are written into the call and turned into an
 * ENDED event once curl reports the transfer done.  Everything is malloc'd
 * so that an ERROR unwinding the caller cannot leave curl holding pointers
 * into a reset memory context.
 *
 * Requests are encoded by hand straight into the send queue (each record
 * byte is copied once there, and once more by curl into its upload
 * buffer); responses are small and decoded with the protobuf-c code
 * generated from proto/zerobus_service.proto.
 *
 * src/client/grpc.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <poll.h>
#include <curl/curl.h>

#include "grpc.h"
#include "stream.h"
#include "zerobus.h"
#include "zerobus_service.pb-c.h"
#include "port/pg_bswap.h"
#include "storage/latch.h"

#define ZB_GRPC_PATH "/databricks.zerobus.Zerobus/EphemeralStream"
#define ZB_GRPC_CONNECT_TIMEOUT_MS 10000L
#define ZB_GRPC_KEEP_SENDBUF (64 * 1024)
#define ZB_GRPC_IDLE_WRITE_MS 5
#define ZB_GRPC_KICK_MS 20

/* One socket libcurl asked us to watch. */
typedef struct GrpcSocket
{
	curl_socket_t fd;
	int			what;			/* CURL_POLL_IN, _OUT or _INOUT */
	bool		write_idle;		/* writable, but curl wrote nothing */
	int64		write_idle_since;	/* monotonic_ms() */
} GrpcSocket;

/* A transfer of the caller's run on the multi handle (add_transfer) */
typedef struct GrpcTransfer
{
	CURL	   *easy;
	void	   *user_data;
	struct GrpcTransfer *next;
	bool		done;			/* curl said it is over */
	bool		reported;		/* its TRANSFER_DONE event is queued */
	CURLcode	result;
} GrpcTransfer;

struct ZerobusGrpc
{
	CURLM	   *multi;
	char	   *url;			/* endpoint + ZB_GRPC_PATH */
	bool		plaintext;		/* h2c with prior knowledge */
	bool		multiplex;		/* all calls share one connection */
	char	   *ca_file;

	ZerobusGrpcCall *calls;		/* doubly linked list of open calls */
	GrpcTransfer *transfers;	/* the caller's other transfers */

	/* the socket set kept by socket_cb */
	GrpcSocket *socks;
	int			nsocks;
	int			maxsocks;
	uint64		socks_generation;	/* bumped when a socket joins or leaves */

	uint64		received;		/* response bytes seen by the callbacks */
	uint64		kick_progress;	/* transfer_progress() at kick_since */
	int64		kick_since;		/* monotonic_ms() */

	/* the timer kept by timer_cb */
	bool		timer_set;
	int64		timer_due;		/* monotonic_ms() */

	/* ring buffer of pending events */
	ZerobusGrpcEvent *events;
	int			ev_head;
	int			ev_count;
	int			ev_cap;
};

struct ZerobusGrpcCall
{
	ZerobusGrpc *grpc;
	ZerobusGrpcCall *prev;
	ZerobusGrpcCall *next;
	CURL	   *easy;
	struct curl_slist *headers;
	void	   *user_data;
	bool		done;			/* the call is over: its ENDED event is queued */

	/* send queue: bytes [send_head, send_len) are still to be uploaded */
	char	   *sendbuf;
	size_t		send_head;
	size_t		send_len;
	size_t		send_cap;
	bool		upload_paused;
	bool		half_closed;	/* the upload ends once the queue is sent */
	int64		sent_offset;	/* offset_id of the last request queued */

	/* response body not yet parsed into messages */
	ZerobusGrpcReader reader;	/* the response body (grpc_reader.c) */

	bool		headers_checked;	/* first header block examined */
	int			http_status;
	bool		grpc_content;	/* content-type is application/grpc */
	int			grpc_status;	/* -1 until a grpc-status header arrives */
	char		grpc_message[512];
	char		failure[512];	/* why the call failed, found by us */
	bool		violation;		/* failure is the server's protocol error */
	char		curl_error[CURL_ERROR_SIZE];
};

static void call_fail(ZerobusGrpcCall *call, const char *fmt,...)
			pg_attribute_printf(2, 3);

/*
 * Records a protocol failure found inside a libcurl callback; the first one
 * wins.  The callback then returns an error to curl, which ends the
 * transfer, and the failure becomes the call's ENDED message.
 */
static void
call_fail(ZerobusGrpcCall *call, const char *fmt,...)
{
	va_list		ap;

	if (call->failure[0] != '\0')
		return;
	call->violation = true;
	va_start(ap, fmt);
	vsnprintf(call->failure, sizeof(call->failure), fmt, ap);
	va_end(ap);
}

/*
 * Appends an event.  Consecutive acks of one call are merged (acks are
 * cumulative, only the latest matters).  Returns false when out of memory;
 * callers inside libcurl callbacks then fail the call.
 */
static bool
push_event(ZerobusGrpc *grpc, const ZerobusGrpcEvent *ev)
{
	if ((ev->kind == ZB_GRPC_EV_ACK || ev->kind == ZB_GRPC_EV_CLOSE_SIGNAL) &&
		grpc->ev_count > 0)
	{
		ZerobusGrpcEvent *last;

		last = &grpc->events[(grpc->ev_head + grpc->ev_count - 1) % grpc->ev_cap];
		if (last->kind == ev->kind && last->call == ev->call)
		{
			/* acks are cumulative; of close signals the nearest counts */
			last->offset = Max(last->offset, ev->offset);
			last->close_after_ms = Min(last->close_after_ms, ev->close_after_ms);
			return true;
		}
	}
	if (grpc->ev_count >= ZB_GRPC_MAX_EVENTS && ev->kind != ZB_GRPC_EV_ENDED &&
		ev->kind != ZB_GRPC_EV_TRANSFER_DONE)
		return false;
	if (grpc->ev_count == grpc->ev_cap)
	{
		int			newcap = grpc->ev_cap ? grpc->ev_cap * 2 : 16;
		ZerobusGrpcEvent *n = malloc(sizeof(ZerobusGrpcEvent) * newcap);

		if (n == NULL)
			return false;
		for (int i = 0; i < grpc->ev_count; i++)
			n[i] = grpc->events[(grpc->ev_head + i) % grpc->ev_cap];
		free(grpc->events);
		grpc->events = n;
		grpc->ev_head = 0;
		grpc->ev_cap = newcap;
	}
	grpc->events[(grpc->ev_head + grpc->ev_count) % grpc->ev_cap] = *ev;
	grpc->ev_count++;
	return true;
}

/*
 * Drops the queued events of a call that is being closed (call), or of a
 * transfer being removed (transfer); the other one is NULL.
 */
static void
purge_events(ZerobusGrpc *grpc, ZerobusGrpcCall *call, void *transfer)
{
	int			kept = 0;

	for (int i = 0; i < grpc->ev_count; i++)
	{
		ZerobusGrpcEvent *ev = &grpc->events[(grpc->ev_head + i) % grpc->ev_cap];

		if (call ? ev->call != call : ev->transfer != transfer)
			grpc->events[(grpc->ev_head + kept++) % grpc->ev_cap] = *ev;
	}
	grpc->ev_count = kept;
}

/* The entry of a socket in the watched set, or NULL. */
static GrpcSocket *
find_socket(ZerobusGrpc *grpc, curl_socket_t fd)
{
	for (int i = 0; i < grpc->nsocks; i++)
		if (grpc->socks[i].fd == fd)
			return &grpc->socks[i];
	return NULL;
}

/*
 * CURLMOPT_SOCKETFUNCTION: keeps grpc->socks equal to the set of sockets
 * libcurl wants watched, which zerobus_grpc_sockets() reports.
 */
static int
socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	ZerobusGrpc *grpc = userp;
	GrpcSocket *sock = find_socket(grpc, fd);

	if (what == CURL_POLL_REMOVE)
	{
		if (sock != NULL)
		{
			*sock = grpc->socks[--grpc->nsocks];
			grpc->socks_generation++;
		}
		return 0;
	}
	if (sock == NULL)
	{
		if (grpc->nsocks == grpc->maxsocks)
		{
			int			newmax = grpc->maxsocks ? grpc->maxsocks * 2 : 4;
			GrpcSocket *n = realloc(grpc->socks, sizeof(GrpcSocket) * newmax);

			if (n == NULL)
				return -1;		/* curl fails the transfers on it */
			grpc->socks = n;
			grpc->maxsocks = newmax;
		}
		sock = &grpc->socks[grpc->nsocks++];
		sock->fd = fd;
		grpc->socks_generation++;
	}
	sock->what = what;
	sock->write_idle = false;
	return 0;
}

/* Milliseconds on a clock that never jumps, for the timers kept here. */
static int64
monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* CURLMOPT_TIMERFUNCTION: remembers when libcurl wants to be called. */
static int
timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	ZerobusGrpc *grpc = userp;

	grpc->timer_set = (timeout_ms >= 0);
	if (grpc->timer_set)
		grpc->timer_due = monotonic_ms() + timeout_ms;
	return 0;
}

/*
 * CURLOPT_READFUNCTION: feeds the upload from the send queue.  An empty
 * queue pauses the upload, which zerobus_grpc_send() resumes, or ends it
 * after zerobus_grpc_half_close().
 */
static size_t
read_cb(char *dest, size_t size, size_t nitems, void *userp)
{
	ZerobusGrpcCall *call = userp;
	size_t		avail = call->send_len - call->send_head;
	size_t		n = Min(avail, size * nitems);

	if (n == 0)
	{
		if (call->half_closed)
			return 0;			/* END_STREAM */
		call->upload_paused = true;
		return CURL_READFUNC_PAUSE;
	}
	memcpy(dest, call->sendbuf + call->send_head, n);
	call->send_head += n;
	if (call->send_head == call->send_len)
	{
		call->send_head = call->send_len = 0;
		/* an idle call keeps no large buffer (a table may have many) */
		if (call->send_cap > ZB_GRPC_KEEP_SENDBUF)
		{
			free(call->sendbuf);
			call->sendbuf = NULL;
			call->send_cap = 0;
		}
	}
	return n;
}

/*
 * ZerobusResponseSink of a call's reader: queues the event of a checked
 * response message.
 */
static const char *
push_response(void *arg, const ZerobusResponse *response)
{
	ZerobusGrpcCall *call = arg;
	ZerobusGrpcEvent ev;

	memset(&ev, 0, sizeof(ev));
	ev.call = call;
	ev.user_data = call->user_data;
	switch (response->kind)
	{
		case ZB_RESPONSE_CREATED:
			ev.kind = ZB_GRPC_EV_CREATED;
			strlcpy(ev.stream_id, response->stream_id, sizeof(ev.stream_id));
			break;
		case ZB_RESPONSE_ACK:
			ev.kind = ZB_GRPC_EV_ACK;
			ev.offset = response->offset;
			break;
		case ZB_RESPONSE_CLOSE_SIGNAL:
			ev.kind = ZB_GRPC_EV_CLOSE_SIGNAL;
			ev.close_after_ms = response->close_after_ms;
			break;
	}
	if (push_event(call->grpc, &ev))
		return NULL;
	if (call->grpc->ev_count < ZB_GRPC_MAX_EVENTS)
		return "out of memory";
	return "server sent more than " CppAsString2(ZB_GRPC_MAX_EVENTS) " messages between two reads";
}

/*
 * CURLOPT_WRITEFUNCTION: accumulates the response body and handles every
 * complete gRPC message in it.  Returning a short count makes curl end the
 * transfer with an error.
 */
static size_t
write_cb(char *data, size_t size, size_t nmemb, void *userp)
{
	ZerobusGrpcCall *call = userp;
	size_t		n = size * nmemb;

	call->grpc->received += n;
	if (!call->grpc_content)
	{
		call_fail(call, "response is not application/grpc (HTTP status %d)",
				  call->http_status);
		return 0;
	}
	if (!zerobus_grpc_reader_feed(&call->reader, data, n, call->sent_offset,
								  push_response, call))
	{
		call_fail(call, "%s", call->reader.failure);
		return 0;
	}
	return n;
}

/*
 * The gRPC status of an HTTP error status that came without a grpc-status,
 * as the gRPC specification's "HTTP to gRPC Status Code Mapping" says.
 */
static int
http_status_to_grpc(int http_status)
{
	switch (http_status)
	{
		case 400:
			return ZB_GRPC_INTERNAL;
		case 401:
			return ZB_GRPC_UNAUTHENTICATED;
		case 403:
			return ZB_GRPC_PERMISSION_DENIED;
		case 404:
			return ZB_GRPC_UNIMPLEMENTED;
		case 429:
		case 502:
		case 503:
		case 504:
			return ZB_GRPC_UNAVAILABLE;
		default:
			return ZB_GRPC_UNKNOWN;
	}
}

/* Whether the official SDKs give up (rather than retry) on this status. */
bool
zerobus_grpc_status_permanent(int status)
{
	switch (status)
	{
		case ZB_GRPC_INVALID_ARGUMENT:
		case ZB_GRPC_NOT_FOUND:
		case ZB_GRPC_PERMISSION_DENIED:
		case ZB_GRPC_OUT_OF_RANGE:
		case ZB_GRPC_UNIMPLEMENTED:
		case ZB_GRPC_UNAUTHENTICATED:
			return true;
		default:
			return false;
	}
}

/* The name of a gRPC status code, for messages. */
const char *
zerobus_grpc_status_name(int status)
{
	static const char *const names[] = {
		"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
		"NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED",
		"RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
		"OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE",
		"DATA_LOSS", "UNAUTHENTICATED"
	};

	if (status >= 0 && status < (int) lengthof(names))
		return names[status];
	return "UNRECOGNIZED";
}

/*
 * Copies a percent-encoded grpc-message value (gRPC spec) decoded into
 * dst, dropping control characters so the text is safe to log.
 */
static void
percent_decode(char *dst, size_t dstlen, const char *src, size_t srclen)
{
	size_t		o = 0;

	for (size_t i = 0; i < srclen && o + 1 < dstlen; i++)
	{
		int			c = (unsigned char) src[i];

		if (c == '%' && i + 2 < srclen && isxdigit((unsigned char) src[i + 1]) &&
			isxdigit((unsigned char) src[i + 2]))
		{
			char		hex[3] = {src[i + 1], src[i + 2], '\0'};

			c = (int) strtol(hex, NULL, 16);
			i += 2;
		}
		if (c >= 0x20 && c != 0x7f)
			dst[o++] = (char) c;
	}
	dst[o] = '\0';
}

/*
 * CURLOPT_HEADERFUNCTION: sees the status line, the response headers and,
 * after the body, the trailers.  grpc-status may come in either block (a
 * "trailers-only" response carries it in the headers).
 */
static size_t
header_cb(char *line, size_t size, size_t nitems, void *userp)
{
	ZerobusGrpcCall *call = userp;
	size_t		len = size * nitems;
	const char *colon;
	size_t		namelen;
	const char *value;
	size_t		vlen;

	call->grpc->received += len;
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;

	if (len >= 5 && strncmp(line, "HTTP/", 5) == 0)
	{
		if (strncmp(line, "HTTP/2", 6) != 0)
		{
			call_fail(call, "server did not negotiate HTTP/2 (ALPN h2): it answered \"%.*s\"",
					  (int) Min(len, 40), line);
			return 0;
		}
		call->http_status = 0;
		if (len > 7)
			call->http_status = atoi(line + 7);
		return size * nitems;
	}
	if (len == 0)
	{
		/* end of the first header block */
		if (!call->headers_checked)
		{
			call->headers_checked = true;
			if (call->http_status != 200 && call->grpc_status < 0)
			{
				/* as gRPC clients map an HTTP error without a gRPC status */
				call->grpc_status = http_status_to_grpc(call->http_status);
				snprintf(call->grpc_message, sizeof(call->grpc_message),
						 "server answered HTTP status %d without a grpc-status",
						 call->http_status);
				return 0;
			}
		}
		return size * nitems;
	}

	colon = memchr(line, ':', len);
	if (colon == NULL)
		return size * nitems;
	namelen = colon - line;
	value = colon + 1;
	while (value < line + len && (*value == ' ' || *value == '\t'))
		value++;
	vlen = line + len - value;

	if (namelen == 12 && pg_strncasecmp(line, "content-type", 12) == 0)
		call->grpc_content = (vlen >= 16 &&
							  pg_strncasecmp(value, "application/grpc", 16) == 0);
	else if (namelen == 11 && pg_strncasecmp(line, "grpc-status", 11) == 0)
	{
		int			code = 0;

		/* a code is 0 to 16; any other number is UNKNOWN, anything else a violation */
		if (vlen == 0 || vlen > 3 || strspn(value, "0123456789") < vlen)
		{
			call_fail(call, "server sent an invalid grpc-status");
			return 0;
		}
		for (size_t i = 0; i < vlen; i++)
			code = code * 10 + (value[i] - '0');
		call->grpc_status = code <= ZB_GRPC_UNAUTHENTICATED ? code : ZB_GRPC_UNKNOWN;
	}
	else if (namelen == 12 && pg_strncasecmp(line, "grpc-message", 12) == 0)
		percent_decode(call->grpc_message, sizeof(call->grpc_message), value, vlen);
	return size * nitems;
}

/*
 * Initializes libcurl once per process, before its first handle, as
 * libcurl asks of every program using it (PostgreSQL's libpq-oauth does
 * the same).  The worker is single-threaded, so no lock is needed.
 * Returns false, with the reason in errbuf, when libcurl cannot start.
 */
bool
zerobus_curl_init(char *errbuf, size_t errlen)
{
	static bool initialized = false;

	if (initialized)
		return true;
	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
	{
		snprintf(errbuf, errlen, "could not initialize libcurl");
		return false;
	}
	initialized = true;
	return true;
}

/*
 * Proxy settings of a transfer.  See grpc.h.  An empty zerobus.proxy sets
 * nothing, so that libcurl reads https_proxy, http_proxy, all_proxy and
 * no_proxy from the server's environment.
 */
void
zerobus_curl_set_proxy(void *easy, bool tunnel)
{
	if (zerobus_proxy != NULL && zerobus_proxy[0] != '\0')
		curl_easy_setopt(easy, CURLOPT_PROXY, zerobus_proxy);
	if (zerobus_no_proxy != NULL && zerobus_no_proxy[0] != '\0')
		curl_easy_setopt(easy, CURLOPT_NOPROXY, zerobus_no_proxy);
	if (tunnel)
	{
		curl_easy_setopt(easy, CURLOPT_HTTPPROXYTUNNEL, 1L);
		/* the proxy's CONNECT reply is no response of the call */
		curl_easy_setopt(easy, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
	}
}

/*
 * Parses and checks the endpoint, then sets up the multi handle.  Nothing
 * connects yet.  See grpc.h.
 */
ZerobusGrpc *
zerobus_grpc_create(const char *endpoint, bool allow_plaintext,
					const char *ca_file, bool shared, char *errbuf, size_t errlen)
{
	CURLU	   *u;
	char	   *url = NULL;
	ZerobusGrpc *grpc = NULL;
	CURLUcode	rc;
	ZerobusUrlProblem problem;

	if (!zerobus_curl_init(errbuf, errlen))
		return NULL;
	problem = zerobus_url_check(endpoint, allow_plaintext);
	if (problem != ZB_URL_OK)
	{
		snprintf(errbuf, errlen, "invalid Zerobus endpoint \"%s\": %s",
				 endpoint, zerobus_url_problem_detail(problem));
		return NULL;
	}
	u = curl_url();
	if (u == NULL)
	{
		snprintf(errbuf, errlen, "out of memory");
		return NULL;
	}
	rc = curl_url_set(u, CURLUPART_URL, endpoint, 0);
	if (rc != CURLUE_OK)
	{
		snprintf(errbuf, errlen, "invalid Zerobus endpoint \"%s\": %s",
				 endpoint, curl_url_strerror(rc));
		goto done;
	}
	if (curl_url_set(u, CURLUPART_PATH, ZB_GRPC_PATH, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_URL, &url, 0) != CURLUE_OK)
	{
		snprintf(errbuf, errlen, "out of memory");
		goto done;
	}

	grpc = calloc(1, sizeof(ZerobusGrpc));
	if (grpc == NULL ||
		(grpc->url = strdup(url)) == NULL ||
		(ca_file != NULL && (grpc->ca_file = strdup(ca_file)) == NULL) ||
		(grpc->multi = curl_multi_init()) == NULL)
	{
		snprintf(errbuf, errlen, "out of memory");
		if (grpc != NULL)
			zerobus_grpc_destroy(grpc);
		grpc = NULL;
		goto done;
	}
	grpc->plaintext = pg_strncasecmp(endpoint, "http://", 7) == 0;

	/*
	 * libcurl before 7.89 fails every transfer after the first on a reused
	 * h2c prior-knowledge connection ("Error in the HTTP2 framing layer",
	 * curl issue 10634), so there each plaintext call gets a fresh
	 * connection of its own (see zerobus_grpc_open) even when asked to
	 * share.  TLS connections (ALPN h2) multiplex fine.
	 */
	grpc->multiplex = shared &&
		(!grpc->plaintext ||
		 curl_version_info(CURLVERSION_NOW)->version_num >= 0x075900);
	curl_multi_setopt(grpc->multi, CURLMOPT_PIPELINING,
					  grpc->multiplex ? CURLPIPE_MULTIPLEX : CURLPIPE_NOTHING);
	if (grpc->multiplex)
		curl_multi_setopt(grpc->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 1L);
	curl_multi_setopt(grpc->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(grpc->multi, CURLMOPT_SOCKETDATA, grpc);
	curl_multi_setopt(grpc->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(grpc->multi, CURLMOPT_TIMERDATA, grpc);

done:
	curl_free(url);
	curl_url_cleanup(u);
	return grpc;
}

/* Closes every call (no events follow) and the connection. */
void
zerobus_grpc_destroy(ZerobusGrpc *grpc)
{
	while (grpc->calls != NULL)
		zerobus_grpc_close(grpc->calls);
	while (grpc->transfers != NULL)
		zerobus_grpc_remove_transfer(grpc, grpc->transfers->easy);
	if (grpc->multi != NULL)
		curl_multi_cleanup(grpc->multi);
	free(grpc->socks);
	free(grpc->events);
	free(grpc->url);
	free(grpc->ca_file);
	free(grpc);
}

/* The size of a length-delimited field of len bytes (tag < 16). */
static inline size_t
len_field_size(size_t len)
{
	return 1 + zerobus_wire_varint_size(len) + len;
}

/* Writes the tag and length of a length-delimited field; returns bytes. */
static inline size_t
put_len_header(char *p, int field, size_t len)
{
	p[0] = (char) ((field << 3) | ZB_WIRE_LEN);
	return 1 + zerobus_wire_varint_raw(p + 1, len);
}

/*
 * Reserves room for a gRPC message of msglen bytes at the end of the send
 * queue, writes its 5-byte prefix, and returns where the message goes.
 * Returns NULL when out of memory.
 */
static char *
queue_message(ZerobusGrpcCall *call, size_t msglen)
{
	char	   *p;
	uint32		belen = pg_hton32((uint32) msglen);

	/* reclaim what curl has already consumed before growing */
	if (call->send_head > 0 && call->send_len + 5 + msglen > call->send_cap)
	{
		memmove(call->sendbuf, call->sendbuf + call->send_head,
				call->send_len - call->send_head);
		call->send_len -= call->send_head;
		call->send_head = 0;
	}
	if (!zerobus_buf_reserve(&call->sendbuf, &call->send_cap, call->send_len, 5 + msglen))
		return NULL;
	p = call->sendbuf + call->send_len;
	p[0] = 0;
	memcpy(p + 1, &belen, 4);
	call->send_len += 5 + msglen;
	return p + 5;
}

/* Lets curl upload again after the read callback paused it. */
static void
resume_upload(ZerobusGrpcCall *call)
{
	if (call->upload_paused && !call->done)
	{
		call->upload_paused = false;
		curl_easy_pause(call->easy, CURLPAUSE_CONT);
	}
}

/*
 * Appends a header line to a call's list.  On failure frees the whole list
 * and sets it to NULL, so that a NULL list means out of memory.
 */
static bool
add_header(struct curl_slist **list, const char *line)
{
	struct curl_slist *n = curl_slist_append(*list, line);

	if (n == NULL)
	{
		curl_slist_free_all(*list);
		*list = NULL;
		return false;
	}
	*list = n;
	return true;
}

/*
 * Opens an EphemeralStream call and queues its create_stream request.  See
 * grpc.h.
 */
ZerobusGrpcCall *
zerobus_grpc_open(ZerobusGrpc *grpc, const char *table_name, const char *token,
				  const char *descriptor, size_t descriptor_len,
				  void *user_data, char *errbuf, size_t errlen)
{
	ZerobusGrpcCall *call;
	char	   *line;
	size_t		tlen = strlen(table_name);
	size_t		create_len;
	size_t		msglen;
	char	   *p;
	CURLMcode	mrc;

	call = calloc(1, sizeof(ZerobusGrpcCall));
	if (call == NULL)
	{
		snprintf(errbuf, errlen, "out of memory");
		return NULL;
	}
	call->grpc = grpc;
	call->user_data = user_data;
	call->grpc_status = -1;
	call->sent_offset = -1;
	zerobus_grpc_reader_init(&call->reader);

	/* headers; the token header is built in memory only */
	line = malloc(strlen(token) + tlen + 64);
	if (line != NULL)
	{
		bool		ok;

		ok = add_header(&call->headers, "content-type: application/grpc") &&
			add_header(&call->headers, "te: trailers") &&
			add_header(&call->headers, "Expect:");
		sprintf(line, "x-databricks-zerobus-table-name: %s", table_name);
		ok = ok && add_header(&call->headers, line);
		sprintf(line, "authorization: Bearer %s", token);
		ok = ok && add_header(&call->headers, line);
		explicit_bzero(line, strlen(line));
		free(line);
	}

	/* create_stream{table_name = 1, descriptor_proto = 3, record_type = 4} */
	create_len = len_field_size(tlen) + len_field_size(descriptor_len) + 2;
	msglen = len_field_size(create_len);
	p = (call->headers != NULL) ? queue_message(call, msglen) : NULL;
	if (p == NULL || (call->easy = curl_easy_init()) == NULL)
	{
		snprintf(errbuf, errlen, "out of memory");
		goto fail;
	}
	p += put_len_header(p, 1, create_len);
	p += put_len_header(p, 1, tlen);
	memcpy(p, table_name, tlen);
	p += tlen;
	p += put_len_header(p, 3, descriptor_len);
	memcpy(p, descriptor, descriptor_len);
	p += descriptor_len;
	*p++ = (4 << 3) | ZB_WIRE_VARINT;
	*p++ = 1;					/* RecordType PROTO */

	curl_easy_setopt(call->easy, CURLOPT_URL, grpc->url);
	curl_easy_setopt(call->easy, CURLOPT_PRIVATE, call);
	curl_easy_setopt(call->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(call->easy, CURLOPT_USERAGENT, ZEROBUS_USER_AGENT);
	curl_easy_setopt(call->easy, CURLOPT_ERRORBUFFER, call->curl_error);
	curl_easy_setopt(call->easy, CURLOPT_PROTOCOLS_STR, grpc->plaintext ? "http" : "https");
	curl_easy_setopt(call->easy, CURLOPT_HTTP_VERSION,
					 grpc->plaintext ? CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE :
					 CURL_HTTP_VERSION_2TLS);
	if (grpc->multiplex)
		curl_easy_setopt(call->easy, CURLOPT_PIPEWAIT, 1L);
	else
	{
		curl_easy_setopt(call->easy, CURLOPT_FRESH_CONNECT, 1L);
		curl_easy_setopt(call->easy, CURLOPT_FORBID_REUSE, 1L);
	}
	curl_easy_setopt(call->easy, CURLOPT_CONNECTTIMEOUT_MS, ZB_GRPC_CONNECT_TIMEOUT_MS);
	curl_easy_setopt(call->easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(call->easy, CURLOPT_TCP_KEEPIDLE, 30L);
	curl_easy_setopt(call->easy, CURLOPT_TCP_KEEPINTVL, 10L);
	curl_easy_setopt(call->easy, CURLOPT_TCP_NODELAY, 1L);
	if (grpc->ca_file != NULL)
		curl_easy_setopt(call->easy, CURLOPT_CAINFO, grpc->ca_file);
	zerobus_curl_set_proxy(call->easy, true);
	curl_easy_setopt(call->easy, CURLOPT_HTTPHEADER, call->headers);
	curl_easy_setopt(call->easy, CURLOPT_POST, 1L);
	curl_easy_setopt(call->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) -1);

	/*
	 * CURLOPT_UPLOAD_BUFFERSIZE stays libcurl's 64 kB: the buffer is per
	 * easy handle and a table may have dozens of calls (at 512 kB, 26 calls
	 * held 13 MB); a larger one saves only read callbacks, as HTTP/2 DATA
	 * frames are 16 kB anyway.
	 */
	curl_easy_setopt(call->easy, CURLOPT_READFUNCTION, read_cb);
	curl_easy_setopt(call->easy, CURLOPT_READDATA, call);
	curl_easy_setopt(call->easy, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(call->easy, CURLOPT_WRITEDATA, call);
	curl_easy_setopt(call->easy, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(call->easy, CURLOPT_HEADERDATA, call);

	mrc = curl_multi_add_handle(grpc->multi, call->easy);
	if (mrc != CURLM_OK)
	{
		snprintf(errbuf, errlen, "could not start a call: %s", curl_multi_strerror(mrc));
		goto fail;
	}

	call->next = grpc->calls;
	if (grpc->calls != NULL)
		grpc->calls->prev = call;
	grpc->calls = call;
	return call;

fail:
	if (call->easy != NULL)
		curl_easy_cleanup(call->easy);
	curl_slist_free_all(call->headers);
	free(call->sendbuf);
	free(call);
	return NULL;
}

/*
 * Queues one ingest request.  The records are encoded straight into the
 * send queue: ingest_record{offset_id = 1, proto_encoded_record = 2} for one
 * record, else ingest_record_batch{offset_id = 1, proto_encoded_batch = 2
 * {records = 1...}}.  Out of memory is an ERROR (we are not in a libcurl
 * callback here).
 */
void
zerobus_grpc_send(ZerobusGrpcCall *call, int64 offset_id, int nrecords,
				  const char *const *records, const size_t *lens)
{
	size_t		batch = 0;
	size_t		inner;
	size_t		body;
	size_t		msglen;
	char	   *p;

	Assert(nrecords > 0);
	if (call->done)
		return;					/* its ENDED event is queued already */

	if (nrecords == 1)
		inner = len_field_size(lens[0]);
	else
	{
		for (int i = 0; i < nrecords; i++)
			batch += len_field_size(lens[i]);
		inner = len_field_size(batch);
	}
	body = 1 + zerobus_wire_varint_size((uint64) offset_id) + inner;
	msglen = len_field_size(body);

	p = queue_message(call, msglen);
	if (p == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory"),
				 errdetail("Failed to queue a Zerobus request of %zu bytes.", msglen)));

	p += put_len_header(p, nrecords == 1 ? 2 : 3, body);
	*p++ = (1 << 3) | ZB_WIRE_VARINT;
	p += zerobus_wire_varint_raw(p, (uint64) offset_id);
	if (nrecords == 1)
	{
		p += put_len_header(p, 2, lens[0]);
		memcpy(p, records[0], lens[0]);
	}
	else
	{
		p += put_len_header(p, 2, batch);
		for (int i = 0; i < nrecords; i++)
		{
			p += put_len_header(p, 1, lens[i]);
			memcpy(p, records[i], lens[i]);
			p += lens[i];
		}
	}
	call->sent_offset = offset_id;
	resume_upload(call);
}

/*
 * Half-closes the call: once its queued requests are sent, the upload ends
 * (END_STREAM), which tells the server that nothing more comes; it then
 * ends the call, with OK once everything is acked.
 */
void
zerobus_grpc_half_close(ZerobusGrpcCall *call)
{
	call->half_closed = true;
	resume_upload(call);
}

/* Bytes queued on the call and not yet taken by curl. */
size_t
zerobus_grpc_queued_bytes(ZerobusGrpcCall *call)
{
	return call->send_len - call->send_head;
}

/*
 * Ends the call (curl resets its HTTP/2 stream if it is still open), frees
 * it and drops its queued events.
 */
void
zerobus_grpc_close(ZerobusGrpcCall *call)
{
	ZerobusGrpc *grpc = call->grpc;

	curl_multi_remove_handle(grpc->multi, call->easy);
	curl_easy_cleanup(call->easy);
	curl_slist_free_all(call->headers);
	purge_events(grpc, call, NULL);

	if (call->prev != NULL)
		call->prev->next = call->next;
	else
		grpc->calls = call->next;
	if (call->next != NULL)
		call->next->prev = call->prev;

	free(call->sendbuf);
	zerobus_grpc_reader_free(&call->reader);
	free(call);
}

/* Runs a transfer of the caller's on the multi handle.  See grpc.h. */
bool
zerobus_grpc_add_transfer(ZerobusGrpc *grpc, void *easy, void *user_data,
						  char *errbuf, size_t errlen)
{
	GrpcTransfer *t = calloc(1, sizeof(GrpcTransfer));
	CURLMcode	rc;

	if (t == NULL)
	{
		snprintf(errbuf, errlen, "out of memory");
		return false;
	}
	rc = curl_multi_add_handle(grpc->multi, easy);
	if (rc != CURLM_OK)
	{
		snprintf(errbuf, errlen, "%s", curl_multi_strerror(rc));
		free(t);
		return false;
	}
	t->easy = easy;
	t->user_data = user_data;
	t->next = grpc->transfers;
	grpc->transfers = t;
	return true;
}

/* Takes a transfer of the caller's off the multi handle.  See grpc.h. */
void
zerobus_grpc_remove_transfer(ZerobusGrpc *grpc, void *easy)
{
	for (GrpcTransfer **p = &grpc->transfers; *p != NULL; p = &(*p)->next)
	{
		GrpcTransfer *t = *p;

		if (t->easy != easy)
			continue;
		curl_multi_remove_handle(grpc->multi, easy);
		purge_events(grpc, NULL, easy);
		*p = t->next;
		free(t);
		return;
	}
}

/* Queues the ENDED event of a call curl reports done. */
static void
finish_call(ZerobusGrpc *grpc, ZerobusGrpcCall *call, CURLcode result)
{
	ZerobusGrpcEvent ev;

	call->done = true;
	memset(&ev, 0, sizeof(ev));
	ev.kind = ZB_GRPC_EV_ENDED;
	ev.call = call;
	ev.user_data = call->user_data;

	if (call->failure[0] != '\0')
	{
		ev.status = call->violation ? ZB_GRPC_PROTOCOL_ERROR :
			ZB_GRPC_TRANSPORT_ERROR;
		strlcpy(ev.message, call->failure, sizeof(ev.message));
	}
	else if (call->grpc_status == ZB_GRPC_OK && call->reader.len > 0)
	{
		ev.status = ZB_GRPC_PROTOCOL_ERROR;
		snprintf(ev.message, sizeof(ev.message),
				 "server ended the call with status OK in the middle of a message");
	}
	else if (call->grpc_status >= 0)
	{
		ev.status = call->grpc_status;
		strlcpy(ev.message, call->grpc_message, sizeof(ev.message));
	}
	else
	{
		ev.status = ZB_GRPC_TRANSPORT_ERROR;
		if (result == CURLE_OK)
			snprintf(ev.message, sizeof(ev.message),
					 "server ended the call without a grpc-status");
		else
			snprintf(ev.message, sizeof(ev.message), "%s",
					 call->curl_error[0] ? call->curl_error : curl_easy_strerror(result));
	}

	if (!push_event(grpc, &ev))
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
}

/*
 * Does curl's wish to write a socket count now?  libcurl 7.88 keeps asking
 * to write an HTTP/2 connection during an upload of unknown size even when
 * it then writes nothing (curl issue 10618), which turns every wait into a
 * busy loop.  So a socket on which a write-ready action made no progress is
 * watched for reading only until something is read from it, curl changes
 * its wishes for it, or ZB_GRPC_IDLE_WRITE_MS pass.
 */
static bool
socket_wants_write(const GrpcSocket *sock, int64 now)
{
	if (!(sock->what & CURL_POLL_OUT))
		return false;
	return !sock->write_idle ||
		now - sock->write_idle_since >= ZB_GRPC_IDLE_WRITE_MS;
}

/* The smaller of two timeouts in milliseconds, where -1 means none. */
static long
min_timeout(long a, long b)
{
	if (a < 0)
		return b;
	if (b < 0)
		return a;
	return Min(a, b);
}

/* Bytes moved so far on all calls, both ways: tells whether curl did work. */
static uint64
transfer_progress(ZerobusGrpc *grpc)
{
	uint64		total = grpc->received;

	for (ZerobusGrpcCall *call = grpc->calls; call != NULL; call = call->next)
	{
		curl_off_t	up = 0;

		curl_easy_getinfo(call->easy, CURLINFO_SIZE_UPLOAD_T, &up);
		total += up;
	}
	return total;
}

/* Milliseconds until the curl timer is due: 0 if due, -1 if none. */
static long
timer_remaining(ZerobusGrpc *grpc, int64 now)
{
	if (!grpc->timer_set)
		return -1;
	return (long) Max(grpc->timer_due - now, 0);
}

/*
 * Has the call handed curl all it has, and does it wait for an answer: the
 * creation of its stream, or acks?
 */
static inline bool
upload_waits_for_answer(const ZerobusGrpcCall *call)
{
	return !call->done && call->upload_paused &&
		(!call->reader.created ||
		 call->reader.acked_offset < call->sent_offset);
}

/*
 * Unsticks uploads that libcurl 7.88 has stopped sending.  When the socket
 * is full as nghttp2 packs the last DATA frame of a burst, and that frame
 * uses up the flow-control window, curl stops watching the socket for
 * writing (it wants a window first) while the frame waits in nghttp2: the
 * server never gets it and so never opens the window.  Resuming the upload
 * makes curl flush nghttp2.  Resuming also makes it take a response that
 * ended the stream while the upload was paused (an HTTP error answering a
 * stream's creation), which it otherwise leaves unread.  So when calls wait
 * for an answer (their stream's creation, or acks), their upload is paused
 * (all queued bytes were taken) and nothing has moved for ZB_GRPC_KICK_MS,
 * they are resumed.  Returns the milliseconds until the next check is due,
 * or -1 when no call waits.
 */
static long
kick_stalled_uploads(ZerobusGrpc *grpc, int64 now)
{
	uint64		progress = transfer_progress(grpc);
	bool		waiting = false;

	for (ZerobusGrpcCall *call = grpc->calls; call != NULL; call = call->next)
		if (upload_waits_for_answer(call))
			waiting = true;
	if (!waiting)
		return -1;

	if (progress != grpc->kick_progress)
	{
		grpc->kick_progress = progress;
		grpc->kick_since = now;
		return ZB_GRPC_KICK_MS;
	}
	if (now - grpc->kick_since < ZB_GRPC_KICK_MS)
		return (long) (grpc->kick_since + ZB_GRPC_KICK_MS - now);

	for (ZerobusGrpcCall *call = grpc->calls; call != NULL; call = call->next)
		if (upload_waits_for_answer(call))
			resume_upload(call);
	grpc->kick_since = now;
	return 0;					/* run curl for the resumed uploads */
}

/*
 * Runs libcurl for the sockets that are ready now (one poll() that does not
 * wait), noting the sockets where being writable led to nothing.
 */
static void
run_ready_sockets(ZerobusGrpc *grpc, int64 now)
{
	struct pollfd stackfds[8];
	struct pollfd *fds = stackfds;
	int			nfds = grpc->nsocks;
	int			running;

	if (nfds > (int) lengthof(stackfds))
	{
		fds = malloc(sizeof(struct pollfd) * nfds);
		if (fds == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory")));
	}
	for (int i = 0; i < nfds; i++)
	{
		fds[i].fd = grpc->socks[i].fd;
		fds[i].events = 0;
		if (grpc->socks[i].what & CURL_POLL_IN)
			fds[i].events |= POLLIN;
		if (socket_wants_write(&grpc->socks[i], now))
			fds[i].events |= POLLOUT;
		fds[i].revents = 0;
	}
	if (nfds > 0 && poll(fds, nfds, 0) > 0)
	{
		for (int i = 0; i < nfds; i++)
		{
			int			mask = 0;
			uint64		progress = 0;
			GrpcSocket *sock;

			if (fds[i].revents & (POLLIN | POLLHUP))
				mask |= CURL_CSELECT_IN;
			if (fds[i].revents & POLLOUT)
				mask |= CURL_CSELECT_OUT;
			if (fds[i].revents & (POLLERR | POLLNVAL))
				mask |= CURL_CSELECT_ERR;
			if (mask == 0)
				continue;
			if (mask == CURL_CSELECT_OUT)
				progress = transfer_progress(grpc);
			curl_multi_socket_action(grpc->multi, fds[i].fd, mask, &running);

			/* socket_cb may have changed the set: look the socket up again */
			sock = find_socket(grpc, fds[i].fd);
			if (sock == NULL)
				continue;
			if (mask != CURL_CSELECT_OUT)
				sock->write_idle = false;
			else if (transfer_progress(grpc) == progress)
			{
				sock->write_idle = true;
				sock->write_idle_since = now;
			}
		}
	}
	if (fds != stackfds)
		free(fds);

	/* the timer is one-shot: curl sets it again if it still needs one */
	if (timer_remaining(grpc, monotonic_ms()) == 0)
	{
		grpc->timer_set = false;
		curl_multi_socket_action(grpc->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
}

/*
 * Queues the ENDED events of the calls that are over: those curl reports
 * done, those whose grpc-status arrived while curl still runs them, and,
 * after a transport error on a shared connection, all the others.
 */
static void
collect_ended_calls(ZerobusGrpc *grpc)
{
	CURLMsg    *msg;
	int			left;
	const char *connection_failed = NULL;

	while ((msg = curl_multi_info_read(grpc->multi, &left)) != NULL)
	{
		ZerobusGrpcCall *call;
		GrpcTransfer *t;

		if (msg->msg != CURLMSG_DONE)
			continue;
		for (t = grpc->transfers; t != NULL; t = t->next)
			if (t->easy == msg->easy_handle)
				break;
		if (t != NULL)
		{
			t->done = true;
			t->result = msg->data.result;
			continue;
		}
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &call);
		if (call->done)
			continue;
		finish_call(grpc, call, msg->data.result);
		if (call->grpc_status < 0 || call->failure[0] != '\0')
			connection_failed = call->failure[0] ? call->failure :
				call->curl_error[0] ? call->curl_error :
				curl_easy_strerror(msg->data.result);
	}

	/* the caller's transfers that are over; retried when out of memory */
	for (GrpcTransfer *t = grpc->transfers; t != NULL; t = t->next)
	{
		ZerobusGrpcEvent ev;

		if (!t->done || t->reported)
			continue;
		memset(&ev, 0, sizeof(ev));
		ev.kind = ZB_GRPC_EV_TRANSFER_DONE;
		ev.user_data = t->user_data;
		ev.transfer = t->easy;
		ev.result = (int) t->result;
		t->reported = push_event(grpc, &ev);
	}

	/*
	 * A call whose status arrived is over even if curl does not say so:
	 * libcurl 7.88 keeps an HTTP/2 transfer running while its upload is
	 * paused, although the server has closed the stream.
	 */
	for (ZerobusGrpcCall *call = grpc->calls; call != NULL; call = call->next)
		if (!call->done && (call->grpc_status >= 0 || call->failure[0] != '\0'))
			finish_call(grpc, call, CURLE_OK);

	/*
	 * When the shared connection fails, libcurl 7.88 reports it to the one
	 * transfer that read the end of it and leaves the others waiting on a
	 * socket it no longer watches.  So a transport error ends every call.
	 */
	if (grpc->multiplex && connection_failed != NULL)
	{
		for (ZerobusGrpcCall *call = grpc->calls; call != NULL; call = call->next)
			if (!call->done)
			{
				snprintf(call->failure, sizeof(call->failure),
						 "the connection failed: %s", connection_failed);
				finish_call(grpc, call, CURLE_OK);
			}
	}
}

/*
 * Does all the I/O that can be done now, queues the resulting events and
 * says when to come back.  See grpc.h.
 */
long
zerobus_grpc_perform(ZerobusGrpc *grpc)
{
	int64		now;
	long		timeout;

	run_ready_sockets(grpc, monotonic_ms());
	collect_ended_calls(grpc);

	now = monotonic_ms();
	timeout = min_timeout(timer_remaining(grpc, now),
						  kick_stalled_uploads(grpc, now));
	if (grpc->ev_count > 0)
		return 0;
	for (int i = 0; i < grpc->nsocks; i++)
	{
		GrpcSocket *sock = &grpc->socks[i];

		if ((sock->what & CURL_POLL_OUT) && sock->write_idle)
			timeout = min_timeout(timeout,
								  Max(sock->write_idle_since + ZB_GRPC_IDLE_WRITE_MS - now, 1));
	}
	return timeout;
}

/* Pops the oldest queued event. */
bool
zerobus_grpc_next_event(ZerobusGrpc *grpc, ZerobusGrpcEvent *ev)
{
	if (grpc->ev_count == 0)
		return false;
	*ev = grpc->events[grpc->ev_head];
	grpc->ev_head = (grpc->ev_head + 1) % grpc->ev_cap;
	grpc->ev_count--;
	return true;
}

/*
 * Reports the sockets to wait on, as WaitEventSet events.  A socket that
 * curl wants written but on which writing is held back (see
 * socket_wants_write()) is left out; zerobus_grpc_perform()'s timeout
 * covers it.  *generation changes whenever a socket was opened or closed
 * since, even if a new one got the number of an old one.
 */
int
zerobus_grpc_sockets(ZerobusGrpc *grpc, pgsocket *socks, int *events, int max,
					 uint64 *generation)
{
	int64		now = monotonic_ms();
	int			n = 0;

	for (int i = 0; i < grpc->nsocks && n < max; i++)
	{
		int			ev = 0;

		if (grpc->socks[i].what & CURL_POLL_IN)
			ev |= WL_SOCKET_READABLE;
		if (socket_wants_write(&grpc->socks[i], now))
			ev |= WL_SOCKET_WRITEABLE;
		if (ev == 0)
			continue;
		socks[n] = grpc->socks[i].fd;
		events[n++] = ev;
	}
	*generation = grpc->socks_generation;
	return n;
}
