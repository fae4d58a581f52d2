/*
 * schema.js
 *    The Delta schema of a table (metaData.schemaString) as a type tree that
 *    drives the reading: which Parquet field holds each column (its physical
 *    name under column mapping) and how each value is printed.
 *
 * A type is {kind} for the primitives ('boolean', 'byte', 'short',
 * 'integer', 'long', 'float', 'double', 'string', 'binary', 'date',
 * 'timestamp', 'timestamp_ntz'), {kind: 'decimal', precision, scale},
 * {kind: 'array', element}, {kind: 'map', key, value} or
 * {kind: 'struct', fields: [{name, physicalName, type, nullable}]}.
 *
 * Column mapping: with metaData.configuration["delta.columnMapping.mode"]
 * = "name", every struct field, at any depth (top-level columns, fields of
 * structs, of structs inside arrays and maps), is stored in the Parquet
 * files under its metadata "delta.columnMapping.physicalName"; output uses
 * the logical name.  Mode "id" (fields matched by Parquet field id) is
 * refused.
 */

export class SchemaError extends Error {}

const PRIMITIVES = new Set(['boolean', 'byte', 'short', 'integer', 'long', 'float', 'double',
	'string', 'binary', 'date', 'timestamp', 'timestamp_ntz']);

const PHYSICAL_NAME = 'delta.columnMapping.physicalName';

function parseType(t, mapped, where) {
	if (typeof t === 'string') {
		if (PRIMITIVES.has(t))
			return { kind: t };
		const m = /^decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)$/.exec(t);
		if (m) {
			const precision = Number(m[1]), scale = Number(m[2]);
			if (precision < 1 || precision > 38 || scale > precision)
				throw new SchemaError(`${where}: invalid type ${t}`);
			return { kind: 'decimal', precision, scale };
		}
		throw new SchemaError(`${where}: unknown Delta type ${JSON.stringify(t)}`);
	}
	if (t && t.type === 'array')
		return { kind: 'array', element: parseType(t.elementType, mapped, `${where}[]`) };
	if (t && t.type === 'map')
		return { kind: 'map', key: parseType(t.keyType, mapped, `${where}.key`),
			value: parseType(t.valueType, mapped, `${where}.value`) };
	if (t && t.type === 'struct')
		return parseStruct(t, mapped, where);
	throw new SchemaError(`${where}: unknown Delta type ${JSON.stringify(t)}`);
}

function parseStruct(t, mapped, where) {
	if (!Array.isArray(t.fields))
		throw new SchemaError(`${where}: struct without fields`);
	return {
		kind: 'struct',
		fields: t.fields.map(f => {
			const name = f.name;
			const at = where ? `${where}.${name}` : name;
			const meta = f.metadata || {};
			let physicalName = name;
			if (mapped) {
				physicalName = meta[PHYSICAL_NAME];
				if (typeof physicalName !== 'string' || physicalName === '')
					throw new SchemaError(`${at}: column mapping is on but the field has no ${PHYSICAL_NAME}`);
			}
			return { name, physicalName, type: parseType(f.type, mapped, at), nullable: f.nullable !== false,
				variant: meta['zerobus.type'] === 'VARIANT' };
		}),
	};
}

/* The table's row type (a struct) from a metaData action. */
export function tableType(metaData) {
	const mode = (metaData.configuration || {})['delta.columnMapping.mode'] || 'none';
	if (mode !== 'none' && mode !== 'name')
		throw new SchemaError(`column mapping mode "${mode}" is not supported`);
	let schema;
	try {
		schema = JSON.parse(metaData.schemaString);
	} catch (e) {
		throw new SchemaError(`schemaString is not JSON: ${e.message}`);
	}
	if (!schema || schema.type !== 'struct')
		throw new SchemaError('schemaString is not a struct');
	return parseStruct(schema, mode === 'name', '');
}
