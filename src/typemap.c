/*-------------------------------------------------------------------------
 *
 * typemap.c
 *	  Mapping of PostgreSQL types to Delta types and protobuf kinds.
 *
 * src/typemap.c
 *
 *-------------------------------------------------------------------------
 */
#include "zerobus.h"

#include "utils/memutils.h"

ZerobusType *
zerobus_type_build(Oid typid, int32 typmod, MemoryContext cxt)
{
	ZerobusType *t = MemoryContextAllocZero(cxt, sizeof(ZerobusType));

	t->typid = typid;
	t->typmod = typmod;
	t->delta_type = MemoryContextStrdup(cxt, "STRING");
	t->kind = ZB_PROTO_STRING;
	t->as_text = true;
	return t;
}
