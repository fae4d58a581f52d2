#!/usr/bin/env node
/*
 * iso-duration.js
 *    Reads ISO 8601 duration strings, one per line on stdin, and prints one
 *    JSON object per line with the verdict and components of parsers that
 *    are not ours, so that a TAP test can compare PostgreSQL's
 *    intervalstyle=iso_8601 output (P-1Y-2M3DT-4H-5M-6.5S: a sign on each
 *    part) with PostgreSQL's own extract() of the interval:
 *
 *      {"input":"P-1Y-2M3DT-4H-5M-6.5S","valid":true,"negative":false,
 *       "years":-1,"months":-2,"weeks":0,"days":3,"hours":-4,"minutes":-5,
 *       "seconds":"-6.5"}
 *      {"input":"P1Dx","valid":false,"error":"..."}
 *
 * Two npm parsers, because neither is enough alone:
 *  - tinyduration gives the components, seconds with their fraction (a
 *    double from the text, printed back as exact decimal text: exact for up
 *    to 15 significant digits, and PostgreSQL's seconds have at most 8,
 *    SS.ffffff), but its pattern is not anchored (it takes "P1Dxx" for P1D);
 *  - luxon's Duration.fromISO matches the whole text, but keeps only
 *    milliseconds (PT0.000001S reads as zero).
 * A line is valid when both accept it and their components agree (luxon's
 * seconds to the millisecond).  Components are the numbers as written in
 * the text, absent ones 0; "negative" is a leading "-", which negates all
 * of them (PostgreSQL never writes one).  Line ends (\n or \r\n) are not
 * part of the input.
 */

import readline from 'node:readline';
import { examine } from './lib/duration.js';

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl)
	process.stdout.write(JSON.stringify(examine(line.replace(/\r$/, ''))) + '\n');
