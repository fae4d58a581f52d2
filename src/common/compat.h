/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  Differences between the PostgreSQL major versions zerobus builds
 *	  against (15 to 18).  Keep every #if PG_VERSION_NUM here.
 *
 * Everything is a macro, expanded where it is used: this header is
 * included everywhere (through zerobus.h) and, with FRONTEND defined, by
 * the fuzz harnesses, so it includes no header itself; a file using a
 * wrapper includes what the wrapper calls (noted with each one).
 *
 * src/common/compat.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ZEROBUS_COMPAT_H
#define ZEROBUS_COMPAT_H

#if PG_VERSION_NUM < 150000
#error "zerobus requires PostgreSQL 15 or later"
#endif

/*
 * A function that never returns: 18 replaced pg_attribute_noreturn(),
 * written after the declarator, by the C11-style pg_noreturn, written
 * before the declaration ("pg_noreturn static void f(void);").  With
 * GCC and clang the older attribute is accepted there too.
 */
#if PG_VERSION_NUM < 180000
#define pg_noreturn pg_attribute_noreturn()
#endif

/*
 * JSON semantic actions (common/jsonapi.h): from 16 on they return a
 * JsonParseErrorType (JSON_SUCCESS to go on), before they return nothing.
 * Declare an action "static ZB_JSON_ACTION_RESULT f(void *state)" and leave
 * it by ZB_JSON_ACTION_RETURN;.
 */
#if PG_VERSION_NUM >= 160000
#define ZB_JSON_ACTION_RESULT JsonParseErrorType
#define ZB_JSON_ACTION_RETURN return JSON_SUCCESS
#else
#define ZB_JSON_ACTION_RESULT void
#define ZB_JSON_ACTION_RETURN return
#endif

/*
 * A JSON lexer for a string of a known length, and its release (with
 * need_escapes, for the token strings the actions receive).  17 takes the
 * lexer to fill first (NULL: palloc one) and has freeJsonLexContext();
 * before, the context and its string buffer are plain pallocs.
 */
#if PG_VERSION_NUM >= 170000
#define zerobus_make_json_lex(json, len, encoding, need_escapes) \
	makeJsonLexContextCstringLen(NULL, (json), (len), (encoding), (need_escapes))
#define zerobus_free_json_lex(lex) freeJsonLexContext(lex)
#else
#define zerobus_make_json_lex(json, len, encoding, need_escapes) \
	makeJsonLexContextCstringLen((json), (len), (encoding), (need_escapes))
#define zerobus_free_json_lex(lex) \
	do { \
		if ((lex)->strval != NULL) \
		{ \
			pfree((lex)->strval->data); \
			pfree((lex)->strval); \
		} \
		pfree(lex); \
	} while (0)
#endif

/*
 * Base64 (common/base64.h): 18 takes and gives the binary side as uint8,
 * before as char.
 */
#if PG_VERSION_NUM >= 180000
#define zerobus_b64_encode(src, len, dst, dstlen) \
	pg_b64_encode((const uint8 *) (src), (len), (dst), (dstlen))
#else
#define zerobus_b64_encode(src, len, dst, dstlen) \
	pg_b64_encode((const char *) (src), (len), (dst), (dstlen))
#endif

/*
 * The heap tuple of a decoded change (change->data.tp.newtuple or
 * oldtuple, non-NULL): 17 dropped ReorderBufferTupleBuf, the change points
 * at a HeapTuple.
 */
#if PG_VERSION_NUM >= 170000
#define zerobus_change_tuple(tb) (tb)
#else
#define zerobus_change_tuple(tb) (&(tb)->tuple)
#endif

/*
 * A logical decoding message (replication/message.h), not flushed: 17
 * added the flush argument (false: as before, the WAL is flushed by the
 * next commit).
 */
#if PG_VERSION_NUM >= 170000
#define zerobus_log_logical_message(prefix, message, size, transactional) \
	LogLogicalMessage((prefix), (message), (size), (transactional), false)
#else
#define zerobus_log_logical_message(prefix, message, size, transactional) \
	LogLogicalMessage((prefix), (message), (size), (transactional))
#endif

/*
 * A logical replication connection (replication/walreceiver.h), of a
 * background worker of ours: 16 added must_use_password, false as for a
 * subscription a superuser owns (only superusers set a stream's conninfo;
 * the default one is a loopback as the bootstrap superuser); 17 added
 * replication (true: a replication connection, not a plain one).
 */
#if PG_VERSION_NUM >= 170000
#define zerobus_walrcv_connect(conninfo, appname, err) \
	walrcv_connect((conninfo), true, true, false, (appname), (err))
#elif PG_VERSION_NUM >= 160000
#define zerobus_walrcv_connect(conninfo, appname, err) \
	walrcv_connect((conninfo), true, false, (appname), (err))
#else
#define zerobus_walrcv_connect(conninfo, appname, err) \
	walrcv_connect((conninfo), true, (appname), (err))
#endif

/*
 * A wait event set for the life of a session, freed by FreeWaitEventSet()
 * only (storage/latch.h; storage/waiteventset.h from 18): 17 tracks a set
 * with a resource owner instead of allocating it in a memory context (NULL:
 * none, the set is in TopMemoryContext until freed).
 */
#if PG_VERSION_NUM >= 170000
#define zerobus_create_wait_event_set(cxt, nevents) \
	CreateWaitEventSet(NULL, (nevents))
#else
#define zerobus_create_wait_event_set(cxt, nevents) \
	CreateWaitEventSet((cxt), (nevents))
#endif

/*
 * A qualified name from a string (utils/regproc.h), an invalid one an
 * ERROR: 16 added the soft-error context (NULL: raise).
 */
#if PG_VERSION_NUM >= 160000
#define zerobus_qualified_name_list(string) stringToQualifiedNameList((string), NULL)
#else
#define zerobus_qualified_name_list(string) stringToQualifiedNameList(string)
#endif

/*
 * The map from one tuple descriptor to another by column name, NULL when
 * none is needed (access/attmap.h): 16 added missing_ok (false: every
 * column of the output must be found, as before).
 */
#if PG_VERSION_NUM >= 160000
#define zerobus_attrmap_by_name_if_req(indesc, outdesc) \
	build_attrmap_by_name_if_req((indesc), (outdesc), false)
#else
#define zerobus_attrmap_by_name_if_req(indesc, outdesc) \
	build_attrmap_by_name_if_req((indesc), (outdesc))
#endif

/*
 * The primary key index of a relation, InvalidOid when none (or when it is
 * DEFERRABLE) (utils/relcache.h): up to 17 the relcache ignores a deferrable
 * primary key; 18 records it and asks whether the caller takes one
 * (false: no, as before).
 */
#if PG_VERSION_NUM >= 180000
#define zerobus_primary_key_index(relation) RelationGetPrimaryKeyIndex((relation), false)
#else
#define zerobus_primary_key_index(relation) RelationGetPrimaryKeyIndex(relation)
#endif

/*
 * The range table of an executor state made by hand, one relation read
 * with AccessShareLock (executor/executor.h; as pgoutput's
 * create_estate_for_relation): 16 moved the permission checks into
 * RTEPermissionInfo entries passed along (addRTEPermissionInfo,
 * parser/parse_relation.h), 18 added the relations left after initial
 * partition pruning (all of it: RT index 1).
 */
#if PG_VERSION_NUM >= 180000
#define zerobus_exec_init_range_table(estate, rte) \
	do { \
		List	   *zb_perminfos_ = NIL; \
		addRTEPermissionInfo(&zb_perminfos_, (rte)); \
		ExecInitRangeTable((estate), list_make1(rte), zb_perminfos_, \
						   bms_make_singleton(1)); \
	} while (0)
#elif PG_VERSION_NUM >= 160000
#define zerobus_exec_init_range_table(estate, rte) \
	do { \
		List	   *zb_perminfos_ = NIL; \
		addRTEPermissionInfo(&zb_perminfos_, (rte)); \
		ExecInitRangeTable((estate), list_make1(rte), zb_perminfos_); \
	} while (0)
#else
#define zerobus_exec_init_range_table(estate, rte) \
	ExecInitRangeTable((estate), list_make1(rte))
#endif

/*
 * Does a publication (catalog/pg_publication.h) publish stored generated
 * columns without a column list naming them?  18's publish_generated_columns
 * = stored; before 18 generated columns are never published.
 */
#if PG_VERSION_NUM >= 180000
#define zerobus_pub_publishes_stored_generated(pub) \
	((pub)->pubgencols_type == PUBLISH_GENCOLS_STORED)
#else
#define zerobus_pub_publishes_stored_generated(pub) ((void) (pub), false)
#endif

/*
 * Can a publication publish a generated column at all (18: a column list
 * naming it, or publish_generated_columns)?  Before 18 it never does, while
 * pg_publication_tables.attnames lists a table's generated columns too when
 * the publication has no column list.
 */
#define ZB_GENERATED_COLUMNS_PUBLISHED (PG_VERSION_NUM >= 180000)

/*
 * Failover slots (17+): a logical slot created with failover is copied to
 * standbys that run slot synchronization, so a promoted standby's stream
 * goes on from it.  ZB_CREATE_SLOT_SQL creates a stream's slot with $1 the
 * slot name and $2 failover (before 17 always false, and unused).
 */
#if PG_VERSION_NUM >= 170000
#define ZB_HAVE_FAILOVER_SLOTS true
#define ZB_CREATE_SLOT_SQL \
	"SELECT pg_catalog.pg_create_logical_replication_slot($1, 'zerobus', false, false, $2)"
#else
#define ZB_HAVE_FAILOVER_SLOTS false
#define ZB_CREATE_SLOT_SQL \
	"SELECT pg_catalog.pg_create_logical_replication_slot($1, 'zerobus') WHERE NOT $2"
#endif

#endif							/* ZEROBUS_COMPAT_H */
