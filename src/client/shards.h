/*-------------------------------------------------------------------------
 *
 * shards.h
 *	  Over how many Zerobus streams a busy table's records are spread
 *	  (shards.c).
 *
 * src/client/shards.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ZEROBUS_SHARDS_H
#define ZEROBUS_SHARDS_H

#include "postgres.h"

#include "datatype/timestamp.h"

/* The rate of one target table's records, and its number of shards */
typedef struct ZerobusShardRate
{
	int			nshards;		/* streams per lane its records go over */
	TimestampTz window_start;	/* the current measuring window */
	int64		window_records;
	int64		window_bytes;
	int			quiet_windows;	/* windows in a row that wanted fewer */
} ZerobusShardRate;

extern void zerobus_shards_init(ZerobusShardRate *rate);
extern void zerobus_shards_count(ZerobusShardRate *rate, TimestampTz now,
								 size_t bytes);
extern bool zerobus_shards_expect(ZerobusShardRate *rate, TimestampTz now,
								  double records, const char *table);
extern bool zerobus_shards_due(ZerobusShardRate *rate, TimestampTz now,
							   long *timeout);
extern int	zerobus_shards_choose(ZerobusShardRate *rate, TimestampTz now,
								  int64 most_unacked, const char *table,
								  long *timeout);

#endif							/* ZEROBUS_SHARDS_H */
