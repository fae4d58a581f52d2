/*-------------------------------------------------------------------------
 *
 * render.c
 *	  Text and JSON renderings of encoded records.
 *
 * src/render.c
 *
 *-------------------------------------------------------------------------
 */
#include "zerobus.h"

void
zerobus_render_record(StringInfo out, const ZerobusRecordPlan *plan,
					  const char *data, int len, bool json,
					  bool include_volatile)
{
	appendStringInfoString(out, json ? "{}" : "(record)");
}
