/*-------------------------------------------------------------------------
 *
 * auth.c
 *	  OAuth machine-to-machine tokens for Zerobus: the client-credentials
 *	  grant at <workspace URL>/oidc/v1/token, done with libcurl.
 *
 * A Zerobus token is scoped to one table: the request names the workspace
 * in its resource and asks for USE CATALOG, USE SCHEMA and SELECT + MODIFY
 * on the table in authorization_details.  The client secret travels only
 * in the Basic authorization header that libcurl builds; it is never put
 * in an error message, a log line or the request body, and curl's verbose
 * output is never enabled.
 *
 * The fetch blocks the caller, but polls libcurl in short steps so that the
 * caller's interrupt check runs at least every ZB_AUTH_POLL_MS.  Nothing is
 * palloc'd between curl's setup and cleanup, so no ERROR can leak curl
 * handles; the JSON reply is parsed with PostgreSQL's JSON parser after
 * the transfer is over.
 *
 * src/client/auth.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "auth.h"
#include "grpc.h"
#include "lib/stringinfo.h"
#include "utils/json.h"

#include "token_reply.h"

#define ZB_AUTH_POLL_MS 100
#define ZB_AUTH_MAX_REPLY (256 * 1024)

/* The reply being received, in malloc'd memory (filled by a callback). */
typedef struct AuthReply
{
	char	   *data;
	size_t		len;
	bool		too_large;
} AuthReply;

/*
 * CURLOPT_WRITEFUNCTION: keeps the reply, up to ZB_AUTH_MAX_REPLY bytes (a
 * token is a few KB); a larger reply ends the transfer.
 */
static size_t
reply_cb(char *data, size_t size, size_t nmemb, void *userp)
{
	AuthReply  *reply = userp;
	size_t		n = size * nmemb;
	char	   *grown;

	if (reply->len + n > ZB_AUTH_MAX_REPLY)
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

/* Appends one unity_catalog_privileges entry of authorization_details. */
static void
append_privilege(StringInfo json, const char *privileges,
				 const char *object_type, const char *path)
{
	appendStringInfo(json,
					 "{\"type\":\"unity_catalog_privileges\",\"privileges\":[%s],"
					 "\"object_type\":\"%s\",\"object_full_path\":",
					 privileges, object_type);
	escape_json(json, path);
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
	append_privilege(&json, "\"USE CATALOG\"", "CATALOG", catalog);
	appendStringInfoChar(&json, ',');
	append_privilege(&json, "\"USE SCHEMA\"", "SCHEMA", schema);
	appendStringInfoChar(&json, ',');
	append_privilege(&json, "\"SELECT\",\"MODIFY\"", "TABLE", table_name);
	appendStringInfoChar(&json, ']');
	pfree(catalog);
	pfree(schema);
	return json.data;
}

/*
 * A short, printable excerpt of an error reply for the error message (the
 * body of a 4xx/5xx never holds the secret: it was not in the request
 * body, only in the authorization header).
 */
static void
reply_excerpt(char *dst, size_t dstlen, const AuthReply *reply)
{
	size_t		o = 0;

	for (size_t i = 0; i < reply->len && o + 1 < dstlen && o < 200; i++)
	{
		unsigned char c = (unsigned char) reply->data[i];

		dst[o++] = (c < 0x20 || c == 0x7f) ? ' ' : (char) c;
	}
	dst[o] = '\0';
}

/*
 * Fetches a token for one table.  See auth.h.  The caller must not hold
 * anything that an interrupt could invalidate: this only returns early, it
 * never processes the interrupt itself.
 */
ZerobusAuthResult
zerobus_auth_fetch(const char *workspace_url, const char *workspace_id,
				   const char *client_id, const char *client_secret,
				   const char *table_name, const char *ca_file, int timeout_ms,
				   bool (*interrupt_pending) (void), char **token,
				   TimestampTz *expires_at, char *errbuf, size_t errlen)
{
	ZerobusAuthResult result = ZB_AUTH_RETRY;
	TimestampTz started = GetCurrentTimestamp();
	char	   *details;
	char	   *resource;
	char	   *url;
	StringInfoData form;
	CURLM	   *multi = NULL;
	CURL	   *easy = NULL;
	struct curl_slist *headers = NULL;
	AuthReply	reply = {0};
	char		curl_error[CURL_ERROR_SIZE] = "";
	CURLcode	done_code = CURLE_OK;
	bool		finished = false;
	bool		got_2xx = false;
	size_t		urllen = strlen(workspace_url);
	long		http_status = 0;
	long		expires_in = 0;
	char		excerpt[256];

	*token = NULL;
	errbuf[0] = '\0';
	if (!zerobus_curl_init(errbuf, errlen))
		return ZB_AUTH_RETRY;
	while (urllen > 0 && workspace_url[urllen - 1] == '/')
		urllen--;

	/* everything palloc'd is built before curl is set up */
	details = authorization_details(table_name, errbuf, errlen);
	if (details == NULL)
		return ZB_AUTH_DENIED;
	resource = psprintf("api://databricks/workspaces/%s/zerobusDirectWriteApi",
						workspace_id);
	url = psprintf("%.*s/oidc/v1/token", (int) urllen, workspace_url);
	initStringInfo(&form);
	append_form_field(&form, "grant_type", "client_credentials");
	append_form_field(&form, "scope", "all-apis");
	append_form_field(&form, "resource", resource);
	append_form_field(&form, "authorization_details", details);

	easy = curl_easy_init();
	multi = curl_multi_init();
	headers = curl_slist_append(NULL, "Content-Type: application/x-www-form-urlencoded");
	if (easy == NULL || multi == NULL || headers == NULL)
	{
		snprintf(errbuf, errlen, "out of memory");
		goto cleanup;
	}

	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, curl_error);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) timeout_ms);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) Min(timeout_ms, 10000));
	if (ca_file != NULL)
		curl_easy_setopt(easy, CURLOPT_CAINFO, ca_file);
	curl_easy_setopt(easy, CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC);
	curl_easy_setopt(easy, CURLOPT_USERNAME, client_id);
	curl_easy_setopt(easy, CURLOPT_PASSWORD, client_secret);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, form.data);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long) form.len);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, reply_cb);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, &reply);
	curl_multi_add_handle(multi, easy);

	while (!finished)
	{
		int			running;
		CURLMsg    *msg;
		int			left;
		CURLMcode	mrc;

		mrc = curl_multi_perform(multi, &running);
		if (mrc == CURLM_OK)
			mrc = curl_multi_poll(multi, NULL, 0, ZB_AUTH_POLL_MS, NULL);
		if (mrc != CURLM_OK)
		{
			snprintf(errbuf, errlen, "token request failed: %s", curl_multi_strerror(mrc));
			goto cleanup;
		}
		while ((msg = curl_multi_info_read(multi, &left)) != NULL)
		{
			if (msg->msg == CURLMSG_DONE)
			{
				done_code = msg->data.result;
				finished = true;
			}
		}
		if (!finished && interrupt_pending != NULL && interrupt_pending())
		{
			snprintf(errbuf, errlen, "interrupted");
			goto cleanup;
		}
	}

	if (done_code != CURLE_OK)
	{
		if (reply.too_large)
			snprintf(errbuf, errlen, "token endpoint %s sent a reply of more than %d bytes",
					 url, ZB_AUTH_MAX_REPLY);
		else
			snprintf(errbuf, errlen, "token request to %s failed: %s", url,
					 curl_error[0] ? curl_error : curl_easy_strerror(done_code));
		goto cleanup;
	}

	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &http_status);
	reply_excerpt(excerpt, sizeof(excerpt), &reply);
	if (http_status >= 500)
		snprintf(errbuf, errlen, "token endpoint %s answered HTTP %ld: %s",
				 url, http_status, excerpt);
	else if (http_status < 200 || http_status >= 300)
	{
		result = http_status == 403 ? ZB_AUTH_FORBIDDEN : ZB_AUTH_DENIED;
		snprintf(errbuf, errlen, "token endpoint %s answered HTTP %ld: %s",
				 url, http_status, excerpt);
	}
	else
		got_2xx = true;

cleanup:
	if (multi != NULL && easy != NULL)
		curl_multi_remove_handle(multi, easy);
	if (easy != NULL)
		curl_easy_cleanup(easy);
	if (multi != NULL)
		curl_multi_cleanup(multi);
	curl_slist_free_all(headers);

	/* a 2xx reply is parsed now that curl is gone; a bad one is permanent */
	if (got_2xx)
	{
		if (zerobus_token_reply_parse(reply.data ? reply.data : "", reply.len,
							  token, &expires_in, errbuf, errlen))
		{
			result = ZB_AUTH_OK;
			*expires_at = started + (TimestampTz) expires_in * USECS_PER_SEC;
		}
		else
			result = ZB_AUTH_DENIED;
	}
	free(reply.data);
	pfree(form.data);
	pfree(details);
	pfree(resource);
	pfree(url);
	return result;
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
