/*-------------------------------------------------------------------------
 *
 * publication.c
 *	  The relation cache of the zerobus output plugin: publications, row
 *	  filters and column lists (with 18's published generated columns), as
 *	  pgoutput applies them.
 *
 * For every relation whose changes are decoded, an entry records whether
 * the client's publications publish it and for which actions, the ancestor
 * it is published as (publish_via_partition_root), the row filter states and
 * the column list; decoder.c adds the record plan.  Entries are built under
 * the historic snapshot of the change being decoded, so publication changes
 * take effect at their position in the WAL.  Invalidation callbacks only
 * mark entries invalid; they are rebuilt on next use.
 *
 * src/plugin/publication.c
 *
 *-------------------------------------------------------------------------
 */
#include "publication.h"

#include "access/tupconvert.h"
#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "catalog/pg_publication_rel.h"
#include "commands/extension.h"
#include "executor/executor.h"
#include "nodes/makefuncs.h"
#include "parser/parse_relation.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

/*
 * State of the session's cache.  The publications are reloaded into pub_cxt
 * after pg_publication changes.
 */
typedef struct ZerobusPubState
{
	MemoryContext cache_cxt;	/* entries; owned by the caller */
	MemoryContext pub_cxt;		/* the loaded publications */
	List	   *publication_names;
	List	   *publications;	/* Publication *, in pub_cxt */
} ZerobusPubState;

static ZerobusPubState pubstate;

/*
 * The caches are reached from invalidation callbacks, which cannot be
 * unregistered and so outlive a decoding session.  The pointers are reset
 * by a memory context callback when the cache context goes away, whether
 * decoding ended normally or by an error.
 */
static HTAB *ZerobusRelCache = NULL;
static bool zerobus_publications_valid = false;

/*
 * Check that every named publication exists now, so that a typo is reported
 * when decoding starts rather than at the first change.  A publication
 * dropped later is tolerated while decoding (see zb_load_publications).
 *
 * A walsender starts decoding outside any transaction; catalog access needs
 * one, so we open a short one then.
 */
void
zerobus_check_publications(List *names)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	bool		own_xact = !IsTransactionState();
	ListCell   *lc;

	if (own_xact)
		StartTransactionCommand();

	foreach(lc, names)
	{
		char	   *name = (char *) lfirst(lc);

		if (!OidIsValid(get_publication_oid(name, true)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("publication \"%s\" does not exist", name),
					 errhint("Create it with CREATE PUBLICATION or fix the publication_names option.")));
	}

	if (own_xact)
	{
		CommitTransactionCommand();
		MemoryContextSwitchTo(oldcxt);
	}
}

/* ----------------------------------------------------------------
 * Cache lifetime and invalidation
 * ----------------------------------------------------------------
 */

/*
 * Memory context callback: the caches are gone, forget them.
 */
static void
zb_cache_gone(void *arg)
{
	ZerobusRelCache = NULL;
	zerobus_publications_valid = false;
	memset(&pubstate, 0, sizeof(pubstate));
}

/*
 * Relcache invalidation: mark the entries that depend on relid invalid.  An
 * entry depends on its own relation, on the ancestor it is published as and
 * on the relations of the composite types its plan uses.  InvalidOid means
 * every relation.
 *
 * This may run in the middle of a callback (any catalog access can accept
 * invalidations), so it only sets flags.
 */
static void
zb_relcache_cb(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	ZerobusRelEntry *entry;

	if (ZerobusRelCache == NULL)
		return;

	hash_seq_init(&status, ZerobusRelCache);
	while ((entry = (ZerobusRelEntry *) hash_seq_search(&status)) != NULL)
	{
		int			i;

		if (!OidIsValid(relid) || entry->relid == relid ||
			entry->publish_as_relid == relid)
		{
			entry->valid = false;
			continue;
		}
		for (i = 0; i < entry->ndeps; i++)
		{
			if (entry->dep_relids[i] == relid)
			{
				entry->valid = false;
				break;
			}
		}
	}
}

/*
 * pg_type invalidation: a composite type used by a plan may have been
 * renamed or altered.  Hash value 0 means every type.
 */
static void
zb_type_cb(Datum arg, int cacheid, uint32 hashvalue)
{
	HASH_SEQ_STATUS status;
	ZerobusRelEntry *entry;

	if (ZerobusRelCache == NULL)
		return;

	hash_seq_init(&status, ZerobusRelCache);
	while ((entry = (ZerobusRelEntry *) hash_seq_search(&status)) != NULL)
	{
		int			i;

		for (i = 0; i < entry->ndeps; i++)
		{
			if (hashvalue == 0 || entry->dep_hashes[i] == hashvalue)
			{
				entry->valid = false;
				break;
			}
		}
	}
}

/*
 * pg_publication, pg_publication_rel and pg_publication_namespace
 * invalidations: the hash value does not tell which relations are affected,
 * so every entry is rebuilt, and the publications are reloaded after a
 * change of pg_publication.
 */
static void
zb_publication_cb(Datum arg, int cacheid, uint32 hashvalue)
{
	HASH_SEQ_STATUS status;
	ZerobusRelEntry *entry;

	if (cacheid == PUBLICATIONOID)
		zerobus_publications_valid = false;

	if (ZerobusRelCache == NULL)
		return;

	hash_seq_init(&status, ZerobusRelCache);
	while ((entry = (ZerobusRelEntry *) hash_seq_search(&status)) != NULL)
		entry->valid = false;
}

/*
 * Set up the relation cache of a decoding session in cache_cxt, which the
 * caller owns: the cache lives until that context is reset or deleted.
 * publication_names must live as long.  The invalidation callbacks are
 * registered once per process.
 */
void
zerobus_relcache_init(MemoryContext cache_cxt, List *publication_names)
{
	static bool callbacks_registered = false;
	MemoryContextCallback *gone;
	HASHCTL		hctl;

	hctl.keysize = sizeof(Oid);
	hctl.entrysize = sizeof(ZerobusRelEntry);
	hctl.hcxt = cache_cxt;
	ZerobusRelCache = hash_create("zerobus relation cache", 128, &hctl,
								  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	pubstate.cache_cxt = cache_cxt;
	pubstate.pub_cxt = AllocSetContextCreate(cache_cxt,
											 "zerobus publications",
											 ALLOCSET_SMALL_SIZES);
	pubstate.publication_names = publication_names;
	pubstate.publications = NIL;
	zerobus_publications_valid = false;

	gone = MemoryContextAlloc(cache_cxt, sizeof(MemoryContextCallback));
	gone->func = zb_cache_gone;
	gone->arg = NULL;
	MemoryContextRegisterResetCallback(cache_cxt, gone);

	if (callbacks_registered)
		return;

	CacheRegisterRelcacheCallback(zb_relcache_cb, (Datum) 0);
	CacheRegisterSyscacheCallback(TYPEOID, zb_type_cb, (Datum) 0);
	CacheRegisterSyscacheCallback(PUBLICATIONOID, zb_publication_cb,
								  (Datum) 0);
	CacheRegisterSyscacheCallback(PUBLICATIONRELMAP, zb_publication_cb,
								  (Datum) 0);
	CacheRegisterSyscacheCallback(PUBLICATIONNAMESPACEMAP, zb_publication_cb,
								  (Datum) 0);
	callbacks_registered = true;
}

/*
 * (Re)load the publications named by the client, as the historic snapshot of
 * the change being decoded sees them.  A publication that does not exist at
 * this point of the WAL (created later, or dropped) is skipped with a
 * warning, as pgoutput does in recent releases, so that dropping a
 * publication does not wedge the slot.
 */
static void
zb_load_publications(void)
{
	MemoryContext oldcxt;
	ListCell   *lc;

	/* set first: an invalidation arriving while we read must win */
	zerobus_publications_valid = true;

	MemoryContextReset(pubstate.pub_cxt);
	pubstate.publications = NIL;

	oldcxt = MemoryContextSwitchTo(pubstate.pub_cxt);
	foreach(lc, pubstate.publication_names)
	{
		char	   *name = (char *) lfirst(lc);
		Publication *pub = GetPublicationByName(name, true);

		if (pub == NULL)
			ereport(WARNING,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("skipped loading publication \"%s\"", name),
					 errdetail("The publication does not exist at this point in the WAL."),
					 errhint("Create the publication if it should exist, or remove it from publication_names.")));
		else
			pubstate.publications = lappend(pubstate.publications, pub);
	}
	MemoryContextSwitchTo(oldcxt);
}

/* ----------------------------------------------------------------
 * Relation entries: publication decision, row filters, column lists
 * ----------------------------------------------------------------
 */

/*
 * Whether the relation belongs to the zerobus extension (zerobus.streams,
 * zerobus.stream_tables, ...).  Those are never published, whatever the
 * publication says: a FOR ALL TABLES or TABLES IN SCHEMA publication would
 * otherwise send the worker's own bookkeeping (it writes stream_tables after
 * every snapshot chunk) to a target table that does not exist.  Membership
 * is read from pg_depend under the snapshot the entry is built with, so it
 * needs no cache of its own; in a database without the extension nothing
 * is a member.
 */
static bool
zb_is_extension_member(Oid relid)
{
	Oid			extoid = getExtensionOfObject(RelationRelationId, relid);
	char	   *extname;
	bool		result;

	if (!OidIsValid(extoid))
		return false;
	extname = get_extension_name(extoid);
	result = extname != NULL && strcmp(extname, "zerobus") == 0;
	if (extname)
		pfree(extname);
	return result;
}

/*
 * Decide whether and how the relation is published by the client's
 * publications: fill entry->pubactions and entry->publish_as_relid, and
 * return the publications that publish it as publish_as_relid (the ones
 * whose row filters and column lists apply).  The extension's own tables
 * are published by none.
 *
 * A partition is published as its topmost ancestor that some publication
 * with publish_via_partition_root includes; the topmost one across all
 * publications wins.  A partitioned table's own changes never exist, but
 * its truncation is published only via a root-publishing publication.
 */
static List *
zb_decide_publication(Relation relation, ZerobusRelEntry *entry)
{
	Oid			relid = RelationGetRelid(relation);
	List	   *own_pubs;
	List	   *schema_pubs;
	List	   *ancestors = NIL;
	List	   *result = NIL;
	int			best_level = 0;
	ListCell   *lc;

	entry->publish_as_relid = relid;
	if (zb_is_extension_member(relid))
		return NIL;

	own_pubs = GetRelationPublications(relid);
	schema_pubs = GetSchemaPublications(RelationGetNamespace(relation));
	if (relation->rd_rel->relispartition)
		ancestors = get_partition_ancestors(relid);

	foreach(lc, pubstate.publications)
	{
		Publication *pub = (Publication *) lfirst(lc);
		Oid			as_relid = relid;
		int			level = 0;
		bool		published;

		if (pub->alltables)
		{
			published = true;
			if (pub->pubviaroot && ancestors != NIL)
			{
				as_relid = llast_oid(ancestors);
				level = list_length(ancestors);
			}
		}
		else
		{
			published = list_member_oid(own_pubs, pub->oid) ||
				list_member_oid(schema_pubs, pub->oid);

			if (ancestors != NIL)
			{
				int			anc_level;
				Oid			ancestor;

				ancestor = GetTopMostAncestorInPublication(pub->oid, ancestors,
														   &anc_level);
				if (OidIsValid(ancestor))
				{
					published = true;
					if (pub->pubviaroot)
					{
						as_relid = ancestor;
						level = anc_level;
					}
				}
			}
		}

		if (!published ||
			(relation->rd_rel->relkind == RELKIND_PARTITIONED_TABLE &&
			 !pub->pubviaroot))
			continue;

		entry->pubactions.pubinsert |= pub->pubactions.pubinsert;
		entry->pubactions.pubupdate |= pub->pubactions.pubupdate;
		entry->pubactions.pubdelete |= pub->pubactions.pubdelete;
		entry->pubactions.pubtruncate |= pub->pubactions.pubtruncate;

		/* keep the publications of the topmost ancestor seen so far */
		if (level < best_level)
			continue;
		if (level > best_level)
		{
			best_level = level;
			entry->publish_as_relid = as_relid;
			list_free(result);
			result = NIL;
		}
		result = lappend(result, pub);
	}

	list_free(own_pubs);
	list_free(schema_pubs);
	list_free(ancestors);
	return result;
}

/*
 * Build the row filter expression states of an entry from the publications
 * that publish it.  For each action the filters of all publications are
 * OR'ed; a publication without a filter for the relation (including FOR ALL
 * TABLES and TABLES IN SCHEMA ones) means the action is not filtered at all.
 */
static void
zb_init_row_filters(ZerobusRelEntry *entry, List *pubs, Relation target)
{
	List	   *quals[ZB_FILTER_NACTIONS] = {NIL, NIL, NIL};
	bool		unfiltered[ZB_FILTER_NACTIONS] = {false, false, false};
	Oid			nspid = RelationGetNamespace(target);
	bool		any = false;
	RangeTblEntry *rte;
	ListCell   *lc;
	int			i;

	foreach(lc, pubs)
	{
		Publication *pub = (Publication *) lfirst(lc);
		bool		acts[ZB_FILTER_NACTIONS];
		HeapTuple	tuple = NULL;
		Datum		qual = (Datum) 0;
		bool		qual_null = true;

		acts[ZB_FILTER_INSERT] = pub->pubactions.pubinsert;
		acts[ZB_FILTER_UPDATE] = pub->pubactions.pubupdate;
		acts[ZB_FILTER_DELETE] = pub->pubactions.pubdelete;

		if (!pub->alltables &&
			!SearchSysCacheExists2(PUBLICATIONNAMESPACEMAP,
								   ObjectIdGetDatum(nspid),
								   ObjectIdGetDatum(pub->oid)))
		{
			tuple = SearchSysCache2(PUBLICATIONRELMAP,
									ObjectIdGetDatum(entry->publish_as_relid),
									ObjectIdGetDatum(pub->oid));
			if (HeapTupleIsValid(tuple))
				qual = SysCacheGetAttr(PUBLICATIONRELMAP, tuple,
									   Anum_pg_publication_rel_prqual,
									   &qual_null);
		}

		for (i = 0; i < ZB_FILTER_NACTIONS; i++)
		{
			if (!acts[i])
				continue;
			if (qual_null)
				unfiltered[i] = true;
			else
				quals[i] = lappend(quals[i],
								   stringToNode(TextDatumGetCString(qual)));
		}

		if (HeapTupleIsValid(tuple))
			ReleaseSysCache(tuple);
	}

	for (i = 0; i < ZB_FILTER_NACTIONS; i++)
		if (!unfiltered[i] && quals[i] != NIL)
			any = true;
	if (!any)
		return;

	/* an executor state whose range table is just the target relation */
	entry->estate = CreateExecutorState();
	rte = makeNode(RangeTblEntry);
	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(target);
	rte->relkind = target->rd_rel->relkind;
	rte->rellockmode = AccessShareLock;
	zerobus_exec_init_range_table(entry->estate, rte);
	entry->estate->es_output_cid = GetCurrentCommandId(false);

	for (i = 0; i < ZB_FILTER_NACTIONS; i++)
	{
		if (unfiltered[i] || quals[i] == NIL)
			continue;
		entry->filter[i] = ExecPrepareExpr(make_orclause(quals[i]),
										   entry->estate);
	}
}

/*
 * The columns a publication without a column list publishes: every live
 * column but the generated ones, and with stored_generated the stored
 * generated ones too (18's publish_generated_columns = stored; virtual
 * generated columns are never published), allocated in cxt.
 */
static Bitmapset *
zb_all_columns(Relation rel, bool stored_generated, MemoryContext cxt)
{
	TupleDesc	desc = RelationGetDescr(rel);
	MemoryContext oldcxt = MemoryContextSwitchTo(cxt);
	Bitmapset  *cols = NULL;
	int			i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		if (att->attgenerated &&
			(!stored_generated || att->attgenerated != ATTRIBUTE_GENERATED_STORED))
			continue;
		cols = bms_add_member(cols, att->attnum);
	}
	MemoryContextSwitchTo(oldcxt);
	return cols;
}

/*
 * Set entry->columns from the column lists of the publications that publish
 * the relation, as pgoutput does: a publication without a list (no list,
 * FOR ALL TABLES, TABLES IN SCHEMA) publishes zb_all_columns(), and all of
 * them must publish the same columns.  NULL stands for every live column but
 * the generated ones, which is what the record plan takes without a list.
 */
static void
zb_init_column_list(ZerobusRelEntry *entry, List *pubs, Relation target)
{
	bool		first = true;
	ListCell   *lc;
	Bitmapset  *plain;

	foreach(lc, pubs)
	{
		Publication *pub = (Publication *) lfirst(lc);
		Bitmapset  *cols = NULL;

		if (!pub->alltables)
		{
			HeapTuple	tuple;

			tuple = SearchSysCache2(PUBLICATIONRELMAP,
									ObjectIdGetDatum(entry->publish_as_relid),
									ObjectIdGetDatum(pub->oid));
			if (HeapTupleIsValid(tuple))
			{
				bool		isnull;
				Datum		attrs;

				attrs = SysCacheGetAttr(PUBLICATIONRELMAP, tuple,
										Anum_pg_publication_rel_prattrs,
										&isnull);
				if (!isnull)
					cols = pub_collist_to_bitmapset(NULL, attrs,
													entry->entry_cxt);
				ReleaseSysCache(tuple);
			}
		}
		if (cols == NULL)
			cols = zb_all_columns(target, zerobus_pub_publishes_stored_generated(pub),
								  entry->entry_cxt);

		if (first)
			entry->columns = cols;
		else if (!bms_equal(entry->columns, cols))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot use different column lists for table \"%s.%s\" in different publications",
							get_namespace_name(RelationGetNamespace(target)),
							RelationGetRelationName(target)),
					 errhint("Give the table the same column list in every publication in publication_names.")));
		first = false;
	}

	plain = zb_all_columns(target, false, CurrentMemoryContext);
	if (bms_equal(entry->columns, plain))
	{
		bms_free(entry->columns);
		entry->columns = NULL;
	}
	bms_free(plain);
}

/*
 * Make the slots the decoded tuples are stored in, and when the changes are
 * published as an ancestor with a different column layout, the map and the
 * slots for the converted tuples.  The descriptors are copies, so the slots
 * hold no relcache references.
 */
static void
zb_init_slots(ZerobusRelEntry *entry, Relation relation, Relation target)
{
	TupleDesc	desc = CreateTupleDescCopy(RelationGetDescr(relation));
	TupleDesc	target_desc = desc;

	entry->old_slot = MakeSingleTupleTableSlot(desc, &TTSOpsHeapTuple);
	entry->new_slot = MakeSingleTupleTableSlot(desc, &TTSOpsHeapTuple);

	if (target != relation)
	{
		entry->attrmap = zerobus_attrmap_by_name_if_req(RelationGetDescr(relation),
														RelationGetDescr(target));
		if (entry->attrmap != NULL)
		{
			target_desc = CreateTupleDescCopy(RelationGetDescr(target));
			entry->conv_old_slot = MakeSingleTupleTableSlot(target_desc,
															&TTSOpsVirtual);
			entry->conv_new_slot = MakeSingleTupleTableSlot(target_desc,
															&TTSOpsVirtual);
		}
	}
	entry->merged_slot = MakeSingleTupleTableSlot(target_desc, &TTSOpsVirtual);
}

/*
 * Release what an entry holds, leaving it empty and invalid.
 */
static void
zb_clear_entry(ZerobusRelEntry *entry)
{
	if (entry->plan != NULL)
		zerobus_plan_free(entry->plan);
	if (entry->estate != NULL)
		FreeExecutorState(entry->estate);
	if (entry->entry_cxt != NULL)
		MemoryContextDelete(entry->entry_cxt);

	/* everything after the key */
	memset((char *) entry + offsetof(ZerobusRelEntry, valid), 0,
		   sizeof(ZerobusRelEntry) - offsetof(ZerobusRelEntry, valid));
}

/*
 * Find the cache entry of a relation, building it if it is new or was
 * invalidated.
 */
ZerobusRelEntry *
zerobus_relcache_get(Relation relation)
{
	Oid			relid = RelationGetRelid(relation);
	ZerobusRelEntry *entry;
	bool		found;
	List	   *pubs;
	MemoryContext oldcxt;
	Relation	target;

	entry = (ZerobusRelEntry *) hash_search(ZerobusRelCache, &relid,
											HASH_ENTER, &found);
	if (!found)
	{
		entry->entry_cxt = NULL;
		entry->plan = NULL;
		entry->estate = NULL;
		zb_clear_entry(entry);
	}
	if (entry->valid)
		return entry;

	zb_clear_entry(entry);

	/* set first: an invalidation arriving while we build must win */
	entry->valid = true;

	if (!zerobus_publications_valid)
		zb_load_publications();

	entry->entry_cxt = AllocSetContextCreate(pubstate.cache_cxt,
											 "zerobus relation entry",
											 ALLOCSET_SMALL_SIZES);
	MemoryContextCopyAndSetIdentifier(entry->entry_cxt,
									  RelationGetRelationName(relation));

	oldcxt = MemoryContextSwitchTo(entry->entry_cxt);

	pubs = zb_decide_publication(relation, entry);

	if (entry->pubactions.pubinsert || entry->pubactions.pubupdate ||
		entry->pubactions.pubdelete)
	{
		target = relation;
		if (entry->publish_as_relid != relid)
			target = RelationIdGetRelation(entry->publish_as_relid);

		zb_init_slots(entry, relation, target);
		zb_init_row_filters(entry, pubs, target);
		zb_init_column_list(entry, pubs, target);

		if (target != relation)
			RelationClose(target);
	}

	list_free(pubs);
	MemoryContextSwitchTo(oldcxt);

	return entry;
}

/* ----------------------------------------------------------------
 * Row filters
 * ----------------------------------------------------------------
 */

/*
 * Evaluate a row filter on a slot; NULL counts as false.
 */
static bool
zb_filter_matches(ZerobusRelEntry *entry, ExprState *filter,
				  TupleTableSlot *slot)
{
	ExprContext *econtext;
	Datum		result;
	bool		isnull;

	ResetPerTupleExprContext(entry->estate);
	econtext = GetPerTupleExprContext(entry->estate);
	econtext->ecxt_scantuple = slot;
	result = ExecEvalExprSwitchContext(filter, econtext, &isnull);
	return !isnull && DatumGetBool(result);
}

/*
 * Apply the row filter of *action to a change, pgoutput's way.  Returns
 * false if the change is not published.  For an UPDATE with both tuples,
 * the old and new rows are checked separately: old only matching turns it
 * into a DELETE (of the old row), new only matching into an INSERT (of the
 * new row, completed with replica identity values that only the old tuple
 * carries, which *new_slot then points to).
 */
bool
zerobus_row_filter(ZerobusRelEntry *entry, ReorderBufferChangeType *action,
			  TupleTableSlot *old_slot, TupleTableSlot **new_slot)
{
	ExprState  *filter;
	TupleTableSlot *merged = NULL;
	TupleDesc	desc;
	bool		old_match;
	bool		new_match;
	int			i;

	switch (*action)
	{
		case REORDER_BUFFER_CHANGE_INSERT:
			filter = entry->filter[ZB_FILTER_INSERT];
			break;
		case REORDER_BUFFER_CHANGE_UPDATE:
			filter = entry->filter[ZB_FILTER_UPDATE];
			break;
		default:
			filter = entry->filter[ZB_FILTER_DELETE];
			break;
	}
	if (filter == NULL)
		return true;

	if (old_slot == NULL || *new_slot == NULL)
		return zb_filter_matches(entry, filter,
								 old_slot != NULL ? old_slot : *new_slot);

	/*
	 * An unchanged TOASTed replica identity value is in the old tuple only;
	 * the new row must be judged with it.
	 */
	slot_getallattrs(old_slot);
	slot_getallattrs(*new_slot);
	desc = (*new_slot)->tts_tupleDescriptor;
	for (i = 0; i < desc->natts; i++)
	{
		Datum		newval = (*new_slot)->tts_values[i];
		Datum		oldval = old_slot->tts_values[i];

		if (TupleDescAttr(desc, i)->attlen != -1 ||
			(*new_slot)->tts_isnull[i] || old_slot->tts_isnull[i] ||
			!VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(newval)) ||
			VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(oldval)))
			continue;

		if (merged == NULL)
		{
			merged = entry->merged_slot;
			ExecClearTuple(merged);
			memcpy(merged->tts_values, (*new_slot)->tts_values,
				   desc->natts * sizeof(Datum));
			memcpy(merged->tts_isnull, (*new_slot)->tts_isnull,
				   desc->natts * sizeof(bool));
		}
		merged->tts_values[i] = oldval;
	}
	if (merged != NULL)
		ExecStoreVirtualTuple(merged);

	old_match = zb_filter_matches(entry, filter, old_slot);
	new_match = zb_filter_matches(entry, filter,
								  merged != NULL ? merged : *new_slot);

	if (!old_match && !new_match)
		return false;
	if (!old_match)
	{
		*action = REORDER_BUFFER_CHANGE_INSERT;
		if (merged != NULL)
			*new_slot = merged;
	}
	else if (!new_match)
		*action = REORDER_BUFFER_CHANGE_DELETE;
	return true;
}
