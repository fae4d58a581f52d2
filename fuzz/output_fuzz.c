/*-------------------------------------------------------------------------
 *
 * output_fuzz.c
 *	  libFuzzer harness for the worker's reader of the output plugin's
 *	  messages: zerobus_output_read() (src/common/wire.c), protobuf-c's
 *	  unpacking of the kinds the worker reads with it, and the column
 *	  stripping of schema_policy drop_missing_columns
 *	  (zerobus_wire_strip()).  A slot's bytes are trusted no more than a
 *	  server's: any input must be refused with a message or split into
 *	  parts that lie inside it; AddressSanitizer watches the memory.
 *
 *	  Built and run by fuzz/run.sh (the test command runs it for a bounded
 *	  time on the committed corpus in fuzz/corpus/output/).
 *
 * fuzz/output_fuzz.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "wire.h"
#include "zerobus_output.pb-c.h"

int			LLVMFuzzerTestOneInput(const uint8 *data, size_t size);

/* Aborts (a finding for libFuzzer) unless [part, part + len) is in [in, in + size) */
static void
check_inside(const char *in, size_t size, const char *part, size_t len)
{
	if (part < in || part > in + size || len > (size_t) (in + size - part))
		abort();
}

/*
 * Strips the columns fields from data both ways: the result is never
 * longer than the input, and stripping nothing gives the input back.
 */
static void
strip_checks(const char *data, size_t len)
{
	static const int fields[] = {1, 2, 3, 5, 2001};
	StringInfoData out;
	bool		descriptor;

	initStringInfo(&out);
	for (int i = 0; i < 2; i++)
	{
		descriptor = i == 1;
		resetStringInfo(&out);
		if (zerobus_wire_strip(&out, data, len, fields, lengthof(fields),
							   descriptor) == NULL && (size_t) out.len > len)
			abort();
		resetStringInfo(&out);
		if (zerobus_wire_strip(&out, data, len, NULL, 0, descriptor) == NULL &&
			((size_t) out.len != len || memcmp(out.data, data, len) != 0))
			abort();
	}
	pfree(out.data);
}

int
LLVMFuzzerTestOneInput(const uint8 *data, size_t size)
{
	const char *in = (const char *) data;
	ZerobusOutputMessage msg;
	ProtobufCMessage *unpacked = NULL;

	strip_checks(in, size);
	if (zerobus_output_read(in, size, &msg) != NULL)
		return 0;
	check_inside(in, size, msg.body, msg.body_len);
	switch (msg.kind)
	{
		case ZB_OUT_MESSAGE_CHANGE:
			if (msg.record)
			{
				check_inside(msg.body, msg.body_len, msg.record, msg.record_len);
				strip_checks(msg.record, msg.record_len);
			}
			break;
		case ZB_OUT_MESSAGE_BEGIN:
			unpacked = (ProtobufCMessage *)
				zerobus__output__begin__unpack(NULL, msg.body_len,
											   (const uint8 *) msg.body);
			break;
		case ZB_OUT_MESSAGE_COMMIT:
			unpacked = (ProtobufCMessage *)
				zerobus__output__commit__unpack(NULL, msg.body_len,
												(const uint8 *) msg.body);
			break;
		case ZB_OUT_MESSAGE_RELATION:
			{
				Zerobus__Output__Relation *rel;

				rel = zerobus__output__relation__unpack(NULL, msg.body_len,
														(const uint8 *) msg.body);
				unpacked = (ProtobufCMessage *) rel;
				if (rel && rel->has_descriptor_proto)
					strip_checks((const char *) rel->descriptor_proto.data,
								 rel->descriptor_proto.len);
				break;
			}
		case ZB_OUT_MESSAGE_TRUNCATE:
			unpacked = (ProtobufCMessage *)
				zerobus__output__truncate__unpack(NULL, msg.body_len,
												  (const uint8 *) msg.body);
			break;
		case ZB_OUT_MESSAGE_MESSAGE:
			break;
		default:
			abort();			/* zerobus_output_read() let an unknown kind by */
	}
	if (unpacked)
		protobuf_c_message_free_unpacked(unpacked, NULL);
	return 0;
}
