'use strict';
/*
 * hostile_zerobus.js
 *    A Zerobus endpoint that breaks the gRPC protocol on purpose, for the
 *    worker's tests (t/096_hostile_transport.pl).  Plain HTTP/2 (h2c) on
 *    loopback, Node's own http2 module: it can send what no gRPC server
 *    library would, byte by byte.  Every call gets the answer of the mode
 *    given as the first argument; the requests are read and ignored.
 *
 *    node hostile_zerobus.js MODE      prints "port N" once listening
 */

const http2 = require('http2');

const mode = process.argv[2];

function varint(n) {
	const out = [];
	let v = BigInt(n);
	do {
		let b = Number(v & 0x7fn);
		v >>= 7n;
		if (v > 0n)
			b |= 0x80;
		out.push(b);
	} while (v > 0n);
	return Buffer.from(out);
}

/* A length-delimited protobuf field. */
const field = (num, bytes) => Buffer.concat([varint((num << 3) | 2), varint(bytes.length), bytes]);

/* A gRPC message: compressed flag, 4-byte big-endian length, the bytes. */
function frame(payload, { flag = 0, length = payload.length } = {}) {
	const head = Buffer.alloc(5);
	head[0] = flag;
	head.writeUInt32BE(length, 1);
	return Buffer.concat([head, payload]);
}

/* EphemeralStreamResponse{create_stream_response{stream_id}} */
const created = frame(field(1, field(1, Buffer.from('hostile-stream'))));
/* EphemeralStreamResponse{close_stream_signal{}}: 7 bytes framed */
const closeSignal = frame(field(3, Buffer.alloc(0)));
/* close_stream_signal{duration{seconds = INT64_MAX}} */
const closeForever = frame(field(3, field(1, Buffer.concat([varint(8), varint(2n ** 63n - 1n)]))));

const grpcHeaders = { ':status': 200, 'content-type': 'application/grpc' };

/*
 * Sends the trailers, then resets the stream with NO_ERROR as grpc-go and
 * grpc-core servers do (libcurl 7.88 delivers the trailers of a stream only
 * once both halves are closed).
 */
function trailers(stream, status, message) {
	stream.sendTrailers({ 'grpc-status': status, 'grpc-message': message });
	setImmediate(() => {
		if (!stream.destroyed && !stream.closed)
			stream.close(http2.constants.NGHTTP2_NO_ERROR);
	});
}

/* Answers with body chunks, then trailers (grpc-status, grpc-message). */
function answer(stream, chunks, status, message = 'hostile') {
	stream.respond(grpcHeaders, { waitForTrailers: status !== undefined });
	if (status !== undefined)
		stream.on('wantTrailers', () => trailers(stream, status, message));
	for (const c of chunks)
		stream.write(c);
	if (status !== undefined)
		stream.end();
}

const modes = {
	status_abc: (s) => answer(s, [created], 'abc'),
	status_negative: (s) => answer(s, [created], '-1'),
	status_11_digits: (s) => answer(s, [created], '12345678901'),
	status_99: (s) => answer(s, [created], '99', 'a code from the future'),
	length_4mib_plus_1: (s) => answer(s, [created, frame(Buffer.alloc(0), { length: 4 * 1024 * 1024 + 1 })]),
	length_ffffffff: (s) => answer(s, [created, frame(Buffer.alloc(0), { length: 0xffffffff })]),
	length_zero: (s) => answer(s, [created, frame(Buffer.alloc(0))]),
	compressed: (s) => answer(s, [frame(field(1, field(1, Buffer.from('x'))), { flag: 1 })]),
	truncated_then_ok: (s) => answer(s, [created, created.subarray(0, 8)], '0'),
	close_forever: (s) => answer(s, [created, closeForever]),
	close_flood: (s) => answer(s, [created, Buffer.concat(Array(100000).fill(closeSignal))]),
	http_403: (s) => {
		s.respond({ ':status': 403, 'content-type': 'text/plain' });
		s.end('forbidden');
	},
	http_503: (s) => {
		s.respond({ ':status': 503, 'content-type': 'text/plain' });
		s.end('busy');
	},
	not_grpc: (s) => {
		s.respond({ ':status': 200, 'content-type': 'text/html' });
		s.end('<html>not gRPC</html>');
	},
	/* the create response one byte per DATA frame, then UNAVAILABLE */
	one_byte_chunks: (s) => {
		s.respond(grpcHeaders, { waitForTrailers: true });
		s.on('wantTrailers', () => trailers(s, '14', 'bye after bytes'));
		let i = 0;
		const next = () => {
			if (s.destroyed)
				return;
			if (i < created.length) {
				s.write(created.subarray(i, i + 1));
				i++;
				setTimeout(next, 2);
			} else
				s.end();
		};
		next();
	},
};

if (!modes[mode]) {
	console.error(`unknown mode "${mode}"; modes: ${Object.keys(modes).join(', ')}`);
	process.exit(2);
}

const server = http2.createServer();
server.on('stream', (stream) => {
	stream.on('data', () => {});
	stream.on('error', () => {});
	modes[mode](stream);
});
server.on('sessionError', () => {});
server.listen(0, '127.0.0.1', () => console.log(`port ${server.address().port}`));
