/*-------------------------------------------------------------------------
 *
 * publication.h
 *	  The relation cache of the zerobus output plugin: which relations the
 *	  client's publications publish, how (actions, ancestor, row filters,
 *	  column list), and the record plan of each.  Private to decoder.c and
 *	  publication.c.
 *
 * src/plugin/publication.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ZEROBUS_PUBLICATION_H
#define ZEROBUS_PUBLICATION_H

#include "zerobus.h"

#include "access/attmap.h"
#include "catalog/pg_publication.h"
#include "executor/tuptable.h"
#include "nodes/execnodes.h"
#include "replication/reorderbuffer.h"

/* The DML actions row filters are kept for, indexing ZerobusRelEntry.filter */
typedef enum ZerobusFilterAction
{
	ZB_FILTER_INSERT,
	ZB_FILTER_UPDATE,
	ZB_FILTER_DELETE,
	ZB_FILTER_NACTIONS
} ZerobusFilterAction;

/*
 * Relation cache entry, keyed by the OID of the relation whose changes are
 * decoded.  Everything an entry points to lives in entry_cxt, which is
 * deleted and recreated whenever the entry is rebuilt.
 */
typedef struct ZerobusRelEntry
{
	Oid			relid;			/* hash key */
	bool		valid;			/* false after an invalidation */
	bool		schema_checked; /* Relation message sent or known current */

	PublicationActions pubactions;

	/* relation the changes are published as (an ancestor, or relid) */
	Oid			publish_as_relid;
	AttrMap    *attrmap;		/* partition to ancestor, NULL if not needed */

	Bitmapset  *columns;		/* column list, NULL for all columns */

	/* row filters, NULL when an action is not filtered */
	ExprState  *filter[ZB_FILTER_NACTIONS];
	EState	   *estate;

	/* slots for the decoded tuples, and for them converted to the ancestor */
	TupleTableSlot *old_slot;
	TupleTableSlot *new_slot;
	TupleTableSlot *conv_old_slot;
	TupleTableSlot *conv_new_slot;
	TupleTableSlot *merged_slot;	/* new tuple completed from the old one */

	/* record plan of publish_as_relid, built when first needed */
	ZerobusRecordPlan *plan;
	char	  **pg_types;		/* format_type of each plan column */
	char	   *relation_msg;	/* serialized Relation message */
	int			relation_msg_len;

	/* composite types the plan depends on */
	int			ndeps;
	Oid		   *dep_relids;		/* their pg_class OIDs */
	uint32	   *dep_hashes;		/* TYPEOID syscache hash values */

	MemoryContext entry_cxt;
} ZerobusRelEntry;

extern void zerobus_check_publications(List *names);
extern void zerobus_relcache_init(MemoryContext cache_cxt,
								  List *publication_names);
extern ZerobusRelEntry *zerobus_relcache_get(Relation relation);
extern bool zerobus_row_filter(ZerobusRelEntry *entry,
							   ReorderBufferChangeType *action,
							   TupleTableSlot *old_slot,
							   TupleTableSlot **new_slot);

#endif							/* ZEROBUS_PUBLICATION_H */
