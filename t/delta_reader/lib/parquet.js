/*
 * parquet.js
 *    Reads one Parquet data file with hyparquet (a pure-JS Parquet reader,
 *    not the DuckDB the emulator writes with) as raw physical values.
 *
 * hyparquet turns annotated values into JavaScript conveniences that lose
 * information: DECIMAL into a double, DATE and TIMESTAMP into Date objects
 * (millisecond precision, and an Invalid Date beyond its range), MAP into an
 * object with string keys.  So the file's schema is handed to it with every
 * annotation (converted_type, logical_type) removed: each leaf then comes
 * back as its physical value (boolean, int32 as a number, int64 as a BigInt,
 * float and double as numbers, BYTE_ARRAY and FIXED_LEN_BYTE_ARRAY as
 * Uint8Array), each group as an object of its children by name and each
 * repeated field as an array.  LIST and MAP groups thus read as
 * {<repeated name>: [...]}, which lib/values.js unwraps.  The annotations
 * are kept in the schema tree returned beside the rows, where lib/values.js
 * checks them against the Delta type.
 */

import fs from 'node:fs';
import { parquetMetadata, parquetReadObjects, parquetSchema } from 'hyparquet';

/* A copy of the metadata whose schema elements carry no annotation. */
function rawMetadata(metadata) {
	return {
		...metadata,
		schema: metadata.schema.map(e => {
			const { converted_type: _c, logical_type: _l, ...rest } = e;
			return rest;
		}),
	};
}

/*
 * Read the file at `file`.  Returns {tree, rows}: tree is hyparquet's schema
 * tree with the annotations ({element, children}), rows the raw row objects.
 */
export async function readParquetRaw(file) {
	const buf = fs.readFileSync(file);
	const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
	const metadata = parquetMetadata(ab, { geoparquet: false });
	const tree = parquetSchema(metadata);
	const rows = await parquetReadObjects({ file: ab, metadata: rawMetadata(metadata), utf8: false, geoparquet: false });
	return { tree, rows };
}
