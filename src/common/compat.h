/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  Differences between the PostgreSQL major versions zerobus builds
 *	  against (15 today; 16-18 next).  Keep every #if PG_VERSION_NUM here.
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
 * Frees a JSON lexer made by makeJsonLexContextCstringLen(..., true): 17
 * has freeJsonLexContext(); before, the context and its string buffer are
 * plain pallocs.
 */
#if PG_VERSION_NUM >= 170000
#define zerobus_free_json_lex(lex) freeJsonLexContext(lex)
#else
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

#endif							/* ZEROBUS_COMPAT_H */
