/*-------------------------------------------------------------------------
 *
 * auth.c
 *	  OAuth machine-to-machine tokens for Zerobus: the client-credentials
 *	  grant at <workspace URL>/oidc/v1/token, done with libcurl.
 *
 * A Zerobus token is scoped to one table: the request names the workspace
 * in its resource and asks for USE CATALOG, USE SCHEMA and SELECT + MODIFY
 * on the table in authorization_details.  A request for no table asks for
 * neither: it gets a workspace token, for the workspace's REST APIs (the
 * SQL statements of statement.c), with the service principal's own
 * privileges.  The client secret travels only
 * in the Basic authorization header that libcurl builds; it is never put
 * in an error message, a log line or the request body, and curl's verbose
 * output is never enabled.
 *
 * A request never blocks: zerobus_auth_start() sets up a transfer that the
 * caller runs on its own multi handle with its other traffic (the sender
 * runs it on its gRPC connection's, see grpc.h), and zerobus_auth_finish()
 * reads the outcome once the transfer is over.  A request and everything
 * curl reads or writes for it are malloc'd, off PostgreSQL's memory
 * contexts, and freed by zerobus_auth_free(); the JSON reply is parsed
 * with PostgreSQL's JSON parser after the transfer.
 *
 * src/client/auth.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "auth.h"
#include "common/base64.h"
#include "compat.h"
#include "grpc.h"
#include "lib/stringinfo.h"
#include "utils/json.h"

#include "token_reply.h"
#include "zerobus.h"

#define ZB_AUTH_MAX_REPLY (256 * 1024)

/* Appends text with every occurrence of secret (if long enough) redacted */
static void
append_redacted(StringInfo out, const char *text, const char *secret)
{
	size_t		slen = secret ? strlen(secret) : 0;
	const char *hit;

	while (slen >= 4 && (hit = strstr(text, secret)) != NULL)
	{
		appendBinaryStringInfo(out, text, hit - text);
		appendStringInfoString(out, "[redacted]");
		text = hit + slen;
	}
	appendStringInfoString(out, text);
}

/*
 * A server's words (a grpc-message, a token endpoint's reply), made fit to
 * be shown and stored: every byte that is not printable ASCII becomes '?'
 * (so the text is valid in any server encoding and holds no line break),
 * and the credentials a hostile or careless server could echo (the client
 * secret, the HTTP Basic value carrying it with client_id, the token, any
 * of them NULL when unknown) are redacted.  palloc'd.
 */
char *
zerobus_auth_redact(const char *text, const char *client_id,
					const char *client_secret, const char *token)
{
	char	   *ascii = pstrdup(text);
	char	   *basic;
	char	   *basic64;
	int			len;
	StringInfoData a;
	StringInfoData b;

	for (char *p = ascii; *p; p++)
		if ((unsigned char) *p < 0x20 || (unsigned char) *p >= 0x7f)
			*p = '?';

	basic = psprintf("%s:%s", client_id, client_secret);
	basic64 = palloc(pg_b64_enc_len(strlen(basic)) + 1);
	len = zerobus_b64_encode(basic, strlen(basic), basic64,
							 pg_b64_enc_len(strlen(basic)));
	basic64[Max(len, 0)] = '\0';

	initStringInfo(&a);
	append_redacted(&a, ascii, client_secret);
	initStringInfo(&b);
	append_redacted(&b, a.data, basic64);
	resetStringInfo(&a);
	append_redacted(&a, b.data, token);

	explicit_bzero(basic, strlen(basic));
	pfree(basic);
	pfree(basic64);
	pfree(ascii);
	pfree(b.data);
	return a.data;
}

/*
 * Sets up easy for a REST request of ours (a token, a SQL statement) to
 * url that keeps its reply in reply, up to max_reply bytes: no signals
 * (the backend owns them), our user-agent, HTTP(S) only and no redirects
 * (a credential must not follow one), at most timeout_ms in all and 10 s
 * to connect, the CA file when given, and the proxy settings.  url,
 * curl_error (CURL_ERROR_SIZE bytes) and ca_file must outlive the
 * transfer.
 */
void
zerobus_http_easy_setup(CURL *easy, const char *url, char *curl_error,
						long timeout_ms, const char *ca_file,
						ZerobusHttpReply *reply, size_t max_reply)
{
	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, ZEROBUS_USER_AGENT);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, curl_error);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, Min(timeout_ms, 10000L));
	if (ca_file != NULL)
		curl_easy_setopt(easy, CURLOPT_CAINFO, ca_file);
	zerobus_curl_set_proxy(easy, false);
	reply->max = max_reply;
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, zerobus_http_reply_cb);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, reply);
}

/*
 * CURLOPT_WRITEFUNCTION of a ZerobusHttpReply: keeps the reply, up to
 * reply->max bytes; a larger reply ends the transfer (too_large).  Used by
 * every request of ours that reads a JSON reply (tokens here, SQL
 * statements in statement.c).
 */
size_t
zerobus_http_reply_cb(char *data, size_t size, size_t nmemb, void *userp)
{
	ZerobusHttpReply *reply = userp;
	size_t		n = size * nmemb;
	char	   *grown;

	if (reply->len + n > reply->max)
	{
		reply->too_large = true;
		return 0;
	}
	grown = realloc(reply->data, reply->len + n + 1);
	if (grown == NULL)
		return 0;
	reply->data = grown;
	memcpy(reply->data + reply->len, data, n);
	reply->len += n;
	reply->data[reply->len] = '\0';
	return n;
}


/* Appends "&name=<value url-encoded>" (no '&' for the first field). */
static void
append_form_field(StringInfo form, const char *name, const char *value)
{
	char	   *esc = curl_easy_escape(NULL, value, 0);

	if (esc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	appendStringInfo(form, "%s%s=%s", form->len > 0 ? "&" : "", name, esc);
	curl_free(esc);
}

/*
 * Appends one unity_catalog_privileges entry of authorization_details;
 * operations (a JSON array's items) is NULL for none.
 */
static void
append_privilege(StringInfo json, const char *privileges,
				 const char *object_type, const char *path,
				 const char *operations)
{
	appendStringInfo(json,
					 "{\"type\":\"unity_catalog_privileges\",\"privileges\":[%s],"
					 "\"object_type\":\"%s\",\"object_full_path\":",
					 privileges, object_type);
	escape_json(json, path);
	if (operations != NULL)
		appendStringInfo(json, ",\"operations\":[%s]", operations);
	appendStringInfoChar(json, '}');
}

/*
 * Builds the authorization_details JSON for catalog.schema.table.  Returns
 * NULL (errbuf filled) when the name does not have exactly three parts.
 */
static char *
authorization_details(const char *table_name, char *errbuf, size_t errlen)
{
	const char *dot1 = strchr(table_name, '.');
	const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
	StringInfoData json;
	char	   *catalog;
	char	   *schema;

	if (dot1 == NULL || dot2 == NULL || dot1 == table_name || dot2 == dot1 + 1 ||
		dot2[1] == '\0' || strchr(dot2 + 1, '.') != NULL)
	{
		snprintf(errbuf, errlen,
				 "target table name \"%s\" is not of the form catalog.schema.table",
				 table_name);
		return NULL;
	}
	catalog = pnstrdup(table_name, dot1 - table_name);
	schema = pnstrdup(table_name, dot2 - table_name);

	initStringInfo(&json);
	appendStringInfoChar(&json, '[');
	append_privilege(&json, "\"USE CATALOG\"", "CATALOG", catalog, NULL);
	appendStringInfoChar(&json, ',');
	append_privilege(&json, "\"USE SCHEMA\"", "SCHEMA", schema, NULL);
	appendStringInfoChar(&json, ',');
	/* the write operation, as the official SDKs ask for it since 2.2.0 */
	append_privilege(&json, "\"SELECT\",\"MODIFY\"", "TABLE", table_name,
					 "\"zerobuswrite\"");
	appendStringInfoChar(&json, ']');
	pfree(catalog);
	pfree(schema);
	return json.data;
}

/*
 * A short, printable excerpt of an error reply for an error message (the
 * body of a 4xx/5xx never holds a secret: secrets travel in the request
 * body or the authorization header, never in a reply).
 */
void
zerobus_http_reply_excerpt(char *dst, size_t dstlen,
						   const ZerobusHttpReply *reply)
{
	size_t		o = 0;

	for (size_t i = 0; i < reply->len && o + 1 < dstlen && o < 200; i++)
	{
		unsigned char c = (unsigned char) reply->data[i];

		dst[o++] = (c < 0x20 || c == 0x7f) ? ' ' : (char) c;
	}
	dst[o] = '\0';
}

/* A token request in flight; everything in it is malloc'd */
struct ZerobusAuthRequest
{
	CURL	   *easy;
	struct curl_slist *headers;
	char	   *url;
	char	   *form;			/* the request body, kept while curl sends it */
	ZerobusHttpReply reply;
	char		curl_error[CURL_ERROR_SIZE];
	TimestampTz started;
};

/*
 * Starts a token request for one table, or for the workspace when
 * table_name is NULL.  See auth.h.  The form is built in
 * palloc'd memory first and copied off palloc, so that an ERROR cannot
 * leak a curl handle: nothing can fail between the handle's creation and
 * the return.
 */
ZerobusAuthRequest *
zerobus_auth_start(const char *workspace_url, const char *workspace_id,
				   const char *client_id, const char *client_secret,
				   const char *table_name, const char *ca_file,
				   int timeout_ms, char *errbuf, size_t errlen)
{
	ZerobusAuthRequest *req;
	char	   *details;
	char	   *resource;
	char	   *url;
	StringInfoData form;
	size_t		urllen = strlen(workspace_url);

	errbuf[0] = '\0';
	if (!zerobus_curl_init(errbuf, errlen))
		return NULL;
	while (urllen > 0 && workspace_url[urllen - 1] == '/')
		urllen--;
	url = psprintf("%.*s/oidc/v1/token", (int) urllen, workspace_url);
	initStringInfo(&form);
	append_form_field(&form, "grant_type", "client_credentials");
	append_form_field(&form, "scope", "all-apis");
	if (table_name != NULL)
	{
		details = authorization_details(table_name, errbuf, errlen);
		if (details == NULL)
			return NULL;
		resource = psprintf("api://databricks/workspaces/%s/zerobusDirectWriteApi",
							workspace_id);
		append_form_field(&form, "resource", resource);
		append_form_field(&form, "authorization_details", details);
		pfree(details);
		pfree(resource);
	}

	req = calloc(1, sizeof(ZerobusAuthRequest));
	if (req == NULL ||
		(req->url = strdup(url)) == NULL ||
		(req->form = strdup(form.data)) == NULL ||
		(req->headers = curl_slist_append(NULL, "Content-Type: application/x-www-form-urlencoded")) == NULL ||
		(req->easy = curl_easy_init()) == NULL)
	{
		zerobus_auth_free(req);
		req = NULL;
		snprintf(errbuf, errlen, "out of memory");
	}
	pfree(form.data);
	pfree(url);
	if (req == NULL)
		return NULL;

	req->started = GetCurrentTimestamp();
	/* a token is a few KB */
	zerobus_http_easy_setup(req->easy, req->url, req->curl_error,
							(long) timeout_ms, ca_file, &req->reply,
							ZB_AUTH_MAX_REPLY);
	curl_easy_setopt(req->easy, CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC);
	curl_easy_setopt(req->easy, CURLOPT_USERNAME, client_id);
	curl_easy_setopt(req->easy, CURLOPT_PASSWORD, client_secret);
	curl_easy_setopt(req->easy, CURLOPT_HTTPHEADER, req->headers);
	curl_easy_setopt(req->easy, CURLOPT_POSTFIELDS, req->form);
	curl_easy_setopt(req->easy, CURLOPT_POSTFIELDSIZE, (long) strlen(req->form));
	return req;
}

/* The transfer of a request, for the caller to run on its multi handle */
CURL *
zerobus_auth_easy(ZerobusAuthRequest *req)
{
	return req->easy;
}

/*
 * Reads the outcome of a request whose transfer is over (result is what
 * libcurl reported).  See auth.h.
 */
ZerobusAuthResult
zerobus_auth_finish(ZerobusAuthRequest *req, CURLcode result, char **token,
					TimestampTz *expires_at, char *errbuf, size_t errlen)
{
	long		http_status = 0;
	long		expires_in = 0;
	char		excerpt[256];

	*token = NULL;
	errbuf[0] = '\0';
	if (result != CURLE_OK)
	{
		if (req->reply.too_large)
			snprintf(errbuf, errlen, "token endpoint %s sent a reply of more than %d bytes",
					 req->url, ZB_AUTH_MAX_REPLY);
		else
			snprintf(errbuf, errlen, "token request to %s failed: %s", req->url,
					 req->curl_error[0] ? req->curl_error : curl_easy_strerror(result));
		return ZB_AUTH_RETRY;
	}

	curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &http_status);
	if (http_status < 200 || http_status >= 300)
	{
		zerobus_http_reply_excerpt(excerpt, sizeof(excerpt), &req->reply);
		snprintf(errbuf, errlen, "token endpoint %s answered HTTP %ld: %s",
				 req->url, http_status, excerpt);
		return http_status >= 500 ? ZB_AUTH_RETRY :
			http_status == 403 ? ZB_AUTH_FORBIDDEN : ZB_AUTH_DENIED;
	}

	/* a 2xx reply that cannot be used is permanent */
	if (!zerobus_token_reply_parse(req->reply.data ? req->reply.data : "",
								   req->reply.len, token, &expires_in,
								   errbuf, errlen))
		return ZB_AUTH_DENIED;
	*expires_at = req->started + (TimestampTz) expires_in * USECS_PER_SEC;
	return ZB_AUTH_OK;
}

/*
 * Frees a request (NULL is fine).  Its transfer must not be on a multi
 * handle any more.
 */
void
zerobus_auth_free(ZerobusAuthRequest *req)
{
	if (req == NULL)
		return;
	if (req->easy)
		curl_easy_cleanup(req->easy);
	curl_slist_free_all(req->headers);
	free(req->url);
	free(req->form);
	free(req->reply.data);
	free(req);
}

/*
 * The workspace id of a Zerobus endpoint, as the official SDKs derive it:
 * the first DNS label of the host, after the scheme (so "127" for
 * http://127.0.0.1:port, which only the emulator uses).  palloc'd.
 */
char *
zerobus_workspace_id(const char *endpoint)
{
	const char *host = strstr(endpoint, "://");

	host = host ? host + 3 : endpoint;
	return pnstrdup(host, strcspn(host, ".:/"));
}
