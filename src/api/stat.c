/*-------------------------------------------------------------------------
 *
 * stat.c
 *	  zerobus.stream_shared_state(), the live state of the stream workers
 *	  from shared memory, behind the zerobus.stat_streams view.
 *
 * last_error holds a server's words, so only the stream's owner (and
 * superusers) see it; everything else is for everyone.
 *
 * src/api/stat.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"

#include "store.h"
#include "stream.h"

PG_FUNCTION_INFO_V1(zerobus_stream_shared_state);

/* zerobus.stat_streams.state, by ZerobusStreamState */
static const char *const state_names[] = {
	"stopped", "starting", "streaming", "retrying", "failed"
};
StaticAssertDecl(lengthof(state_names) == ZB_STATE_FAILED + 1,
				 "one name per worker state");

/* pg_lsn datum of lsn, or NULL when invalid */
static void
put_lsn(Datum *values, bool *nulls, int i, XLogRecPtr lsn)
{
	values[i] = LSNGetDatum(lsn);
	nulls[i] = XLogRecPtrIsInvalid(lsn);
}

static void
put_time(Datum *values, bool *nulls, int i, TimestampTz t)
{
	values[i] = TimestampTzGetDatum(t);
	nulls[i] = (t == 0);
}

/*
 * The ids of the streams whose owner the caller has the privileges of, as a
 * list of ints.  Needs a transaction.
 */
static List *
owned_streams(void)
{
	ZerobusCatalogAccess access;
	ZerobusColumnValues args = {0};
	MemoryContext cxt = CurrentMemoryContext;
	List	   *ids = NIL;
	uint64		i;

	zerobus_catalog_begin(&access);
	zerobus_add_column(&args, "caller", OIDOID, ObjectIdGetDatum(access.caller), false);
	zerobus_execute_with_values("SELECT id FROM zerobus.streams"
								" WHERE pg_catalog.pg_has_role($1, owner, 'USAGE')",
								&args, SPI_OK_SELECT);
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		MemoryContext oldcxt = MemoryContextSwitchTo(cxt);

		ids = lappend_int(ids, DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[i],
														   SPI_tuptable->tupdesc,
														   1, &isnull)));
		MemoryContextSwitchTo(oldcxt);
	}
	zerobus_catalog_end(&access);
	return ids;
}

/*
 * zerobus.stream_shared_state() returns setof record
 *
 * The shared state of the streams of the served database; nothing in any
 * other database.  last_error, which holds a server's words, only for the
 * streams whose owner the caller has the privileges of.
 */
Datum
zerobus_stream_shared_state(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bool		sees_all = superuser();
	List	   *owned;
	ZerobusStreamShared *streams;
	int			nstreams;
	int			i;

	zerobus_require_preload();
	InitMaterializedSRF(fcinfo, 0);
	if (!zerobus_in_served_database())
		PG_RETURN_VOID();
	owned = sees_all ? NIL : owned_streams();

	streams = palloc(sizeof(ZerobusStreamShared) * zerobus_max_streams);
	nstreams = zerobus_stream_shared_copy(streams);
	for (i = 0; i < nstreams; i++)
	{
		ZerobusStreamShared *s = &streams[i];
		Datum		values[20];
		bool		nulls[20] = {0};

		values[0] = Int32GetDatum(s->stream_id);
		values[1] = Int32GetDatum(s->pid);
		nulls[1] = (s->pid == 0);
		values[2] = CStringGetTextDatum(state_names[s->state]);
		put_lsn(values, nulls, 3, s->received_lsn);
		put_lsn(values, nulls, 4, s->acked_lsn);
		put_lsn(values, nulls, 5, s->confirmed_lsn);
		put_time(values, nulls, 6, s->acked_commit_time);
		put_time(values, nulls, 7, s->oldest_unacked_commit_time);
		put_time(values, nulls, 8, s->last_ack_time);
		values[9] = Int64GetDatum((int64) s->records_sent);
		values[10] = Int64GetDatum((int64) s->bytes_sent);
		values[11] = Int64GetDatum((int64) s->records_acked);
		values[12] = Int64GetDatum((int64) s->bytes_acked);
		values[13] = Int64GetDatum((int64) s->reconnects);
		s->last_error[sizeof(s->last_error) - 1] = '\0';
		values[14] = CStringGetTextDatum(s->last_error);
		nulls[14] = (s->last_error[0] == '\0') ||
			(!sees_all && !list_member_int(owned, s->stream_id));
		put_time(values, nulls, 15, s->last_error_time);
		put_time(values, nulls, 16, s->started_at);
		values[17] = Int64GetDatum((int64) s->truncates);
		values[18] = Int64GetDatum((int64) s->stream_reopens);
		values[19] = Int64GetDatum((int64) s->array_nulls);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
}
