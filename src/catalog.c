/*-------------------------------------------------------------------------
 *
 * catalog.c
 *	  SQL-callable functions of the zerobus extension.
 *
 * src/catalog.c
 *
 *-------------------------------------------------------------------------
 */
#include "zerobus.h"

#include "fmgr.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(zerobus_target_ddl);

char *
zerobus_target_ddl_text(const ZerobusRecordPlan *plan, const char *target_table)
{
	return pstrdup("");
}

Datum
zerobus_target_ddl(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(""));
}
