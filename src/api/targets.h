/*-------------------------------------------------------------------------
 *
 * targets.h
 *	  Creating a stream's target tables in Databricks (targets.c).
 *
 * src/api/targets.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ZEROBUS_TARGETS_H
#define ZEROBUS_TARGETS_H

#include "postgres.h"

#include "nodes/pg_list.h"

extern void zerobus_create_targets(int32 stream_id, List *relids,
								   bool mirrors);
extern List *zerobus_targets_paused(const char *name, int32 *stream_id);

#endif							/* ZEROBUS_TARGETS_H */
