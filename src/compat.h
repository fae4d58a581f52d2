/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  Differences between the PostgreSQL major versions zerobus builds
 *	  against (15 today; 16-18 next).  Keep every #if PG_VERSION_NUM here.
 *
 * src/compat.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef ZEROBUS_COMPAT_H
#define ZEROBUS_COMPAT_H

#if PG_VERSION_NUM < 150000
#error "zerobus requires PostgreSQL 15 or later"
#endif

#endif							/* ZEROBUS_COMPAT_H */
