/*-------------------------------------------------------------------------
 *
 * url.c
 *	  The one check of the URLs a stream names (its Zerobus endpoint and
 *	  its workspace URL), used both where a stream is created or altered
 *	  and where the worker connects, so that the two can never disagree.
 *
 * A URL is a scheme (https, or http to a loopback host when the stream is
 * insecure), a host name, IPv4 address or bracketed IPv6 address, and an
 * optional port, with no path but "/", no query, no user information.  The
 * check is by hand rather than by libcurl's parser, which accepts more
 * than zerobus wants (a default scheme, user information, a path).
 *
 * src/common/url.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "zerobus.h"

#define HOST_CHARS \
	"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-."

/* Whether the host of a URL (IPv6 in brackets) is a loopback address */
static bool
host_is_loopback(const char *host, size_t len)
{
	int			dots = 0;

	if ((len == 9 && pg_strncasecmp(host, "localhost", 9) == 0) ||
		(len == 5 && strncmp(host, "[::1]", 5) == 0))
		return true;
	if (len < 4 || strncmp(host, "127.", 4) != 0)
		return false;
	for (size_t i = 0; i < len; i++)
	{
		if (host[i] == '.')
			dots++;
		else if (host[i] < '0' || host[i] > '9')
			return false;
	}
	return dots == 3;
}

/*
 * Checks url as described above: ZB_URL_OK, or what is wrong with it.
 */
ZerobusUrlProblem
zerobus_url_check(const char *url, bool insecure)
{
	const char *host;
	const char *host_end;
	const char *p;
	bool		plain = false;
	bool		valid;

	if (pg_strncasecmp(url, "https://", 8) == 0)
		host = url + 8;
	else if (pg_strncasecmp(url, "http://", 7) == 0)
	{
		host = url + 7;
		plain = true;
	}
	else
		return ZB_URL_SCHEME;

	/* a host name or IPv4 address, or an IPv6 address in brackets */
	p = host;
	if (*p == '[')
	{
		p += strspn(p + 1, "0123456789abcdefABCDEF:.") + 1;
		valid = (*p == ']' && p > host + 1);
		if (valid)
			p++;
	}
	else
	{
		p += strspn(p, HOST_CHARS);
		valid = (p > host);
	}
	host_end = p;
	if (*p == ':')
	{
		const char *port = ++p;

		p += strspn(p, "0123456789");
		if (p == port || p - port > 5 || atoi(port) == 0 || atoi(port) > 65535)
			valid = false;
	}
	if (*p == '/')
		p++;
	if (!valid || *p != '\0')
		return ZB_URL_FORM;
	if (plain && !(insecure && host_is_loopback(host, host_end - host)))
		return ZB_URL_PLAINTEXT;
	return ZB_URL_OK;
}

/* What is wrong with a URL, as a sentence for an errdetail */
const char *
zerobus_url_problem_detail(ZerobusUrlProblem problem)
{
	switch (problem)
	{
		case ZB_URL_OK:
			break;
		case ZB_URL_SCHEME:
			return "The URL must start with https://.";
		case ZB_URL_FORM:
			return "The URL must be made of a scheme, a host and an optional port, with no path.";
		case ZB_URL_PLAINTEXT:
			return "Plain http:// is only allowed to a loopback host and with insecure => true.";
	}
	return "The URL is fine.";
}
