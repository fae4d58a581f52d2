/*-------------------------------------------------------------------------
 *
 * shards.c
 *	  Chooses over how many Zerobus streams ("shards") a target table's
 *	  records are spread, from the rate they come at and the service's
 *	  per-stream quotas.
 *
 * The service holds each stream to a quota of records and bytes per
 * second, and "additional streams can be opened to increase client
 * throughput".  The sender (sender.c) counts every record of a table here
 * (zerobus_shards_count); every ZB_SHARD_WINDOW_MS the rate of the window
 * gone by decides the number of shards (zerobus_shards_choose), and the
 * sender spreads the table's records over that many calls per lane by a
 * hash of their key, retiring the calls of shards given up.  This file
 * knows nothing of calls: the sender tells it how far behind its acks
 * are.
 *
 * src/client/shards.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "sender.h"
#include "shards.h"
#include "stream.h"

/*
 * A table's rate is measured over windows of this length, and it gets
 * fewer streams only after this many windows in a row that wanted fewer
 * (10 s), so that a burst does not make the streams come and go.
 */
#define ZB_SHARD_WINDOW_MS		250
#define ZB_SHARD_QUIET_WINDOWS	40

/*
 * A bulk of records (a table's snapshot) that one stream would take more
 * than this many seconds to carry at its quota starts on every stream a
 * table may have (zerobus_shards_expect).
 */
#define ZB_SHARD_BULK_SECONDS	10

/* A table starts on one stream. */
void
zerobus_shards_init(ZerobusShardRate *rate)
{
	memset(rate, 0, sizeof(*rate));
	rate->nshards = 1;
}

/* Counts one record of bytes bytes of the table, taken at now. */
void
zerobus_shards_count(ZerobusShardRate *rate, TimestampTz now, size_t bytes)
{
	if (rate->window_records == 0 && rate->nshards == 1)
		rate->window_start = now;	/* a quiet table wakes up */
	rate->window_records++;
	rate->window_bytes += bytes;
}

/*
 * Prepares for a bulk of about records records of the table to come as
 * fast as they can be read (its snapshot): when one stream would take
 * longer than ZB_SHARD_BULK_SECONDS to carry them at its quota, the table
 * goes over zerobus.max_streams_per_table streams at once.  Ramping up
 * window by window would cost more than the time the ramp takes: the
 * records queued meanwhile stay on the few streams they were given, and
 * drain at those streams' quota.  The windows that follow bring the
 * number down when the rate shows fewer are enough.  Returns whether the
 * number of shards rose; the change is logged, naming table.
 */
bool
zerobus_shards_expect(ZerobusShardRate *rate, TimestampTz now, double records,
					  const char *table)
{
	int			want = zerobus_max_streams_per_table;

	if (records < (double) ZB_SHARD_BULK_SECONDS *
		zerobus_stream_max_records_per_second || rate->nshards >= want)
		return false;
	ereport(LOG,
			(errmsg("zerobus: the records of table %s now go over %d Zerobus streams (a bulk of about %.0f records comes)",
					table, want, records)));
	rate->nshards = want;
	rate->quiet_windows = 0;
	rate->window_start = now;
	rate->window_records = 0;
	rate->window_bytes = 0;
	return true;
}

/*
 * Whether the table's measuring window is over, so that
 * zerobus_shards_choose() must run now.  Otherwise lowers *timeout to the
 * window's end.  A quiet table on one stream is never due and costs no
 * timer.
 */
bool
zerobus_shards_due(ZerobusShardRate *rate, TimestampTz now, long *timeout)
{
	TimestampTz due = TimestampTzPlusMilliseconds(rate->window_start,
												  ZB_SHARD_WINDOW_MS);

	if (rate->window_records == 0 && rate->nshards == 1)
		return false;
	if (now < due)
	{
		zerobus_timeout_until(timeout, now, due);
		return false;
	}
	return true;
}

/*
 * Ends the table's measuring window (zerobus_shards_due() said it is over)
 * and returns the number of shards from now on: as many as the window's
 * rate needs at 70% of a quota each (zerobus.stream_max_records_per_second,
 * ..._bytes_per_second), up to zerobus.max_streams_per_table.  The service
 * holds a stream back at its quota (and the sender holds the worker back
 * before a stream's backlog grows), so a table whose streams run near it
 * (above 80%) while their acks lag gets at least twice as many at once;
 * acks lag when one of its current calls has half a second of its quota
 * or more unacked (most_unacked records).  A service that acks at once
 * never gets there, and then a table stays on the streams it has, however
 * busy.  It gets fewer only after ZB_SHARD_QUIET_WINDOWS windows in a row
 * that wanted fewer.  A change is logged, naming table.
 */
int
zerobus_shards_choose(ZerobusShardRate *rate, TimestampTz now,
					  int64 most_unacked, const char *table, long *timeout)
{
	double		secs;
	double		records_rate;
	double		bytes_rate;
	double		quota_records = zerobus_stream_max_records_per_second;
	double		quota_bytes = zerobus_stream_max_bytes_per_second;
	int			n = rate->nshards;
	int			want;

	secs = (double) (now - rate->window_start) / USECS_PER_SEC;
	records_rate = rate->window_records / secs;
	bytes_rate = rate->window_bytes / secs;
	want = (int) ceil(Max(records_rate / (0.7 * quota_records),
						  bytes_rate / (0.7 * quota_bytes)));
	want = Max(1, Min(want, zerobus_max_streams_per_table));

	if (want >= n)
		rate->quiet_windows = 0;
	if (want < n && n <= zerobus_max_streams_per_table &&
		++rate->quiet_windows < ZB_SHARD_QUIET_WINDOWS)
		want = n;				/* fewer, but not for long enough yet */
	else if (want > n && ((records_rate <= 0.8 * n * quota_records &&
							bytes_rate <= 0.8 * n * quota_bytes) ||
						   most_unacked < quota_records / 2))
		want = n;				/* the streams keep up */
	else if (want > n)
	{
		/* held back at the quota: the need may be more than it shows */
		want = Min(Max(want, 2 * n), zerobus_max_streams_per_table);
	}
	if (want != n)
	{
		ereport(LOG,
				(errmsg("zerobus: the changes of table %s now go over %d Zerobus streams (%.0f records/s, %.0f bytes/s)",
						table, want, records_rate, bytes_rate)));
		rate->nshards = want;
		rate->quiet_windows = 0;
	}
	rate->window_start = now;
	rate->window_records = 0;
	rate->window_bytes = 0;
	if (want > 1)
		zerobus_timeout_until(timeout, now,
							  TimestampTzPlusMilliseconds(now,
														  ZB_SHARD_WINDOW_MS));
	return want;
}
