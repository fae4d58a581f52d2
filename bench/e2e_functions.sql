-- e2e_functions.sql
--	  Server-side helpers of bench/e2e_bench.sh.  They read the stream's live
--	  state from shared memory (zerobus.stream_shared_state(), what
--	  zerobus.stat_streams shows), so polling costs no connection or process
--	  per look.  Neither assigns a transaction id, so neither holds anything
--	  the stream waits for.

-- The acked LSN of stream "name", NULL while it has no worker.
CREATE FUNCTION e2e_acked(name text) RETURNS pg_lsn
LANGUAGE sql VOLATILE AS $$
	SELECT w.acked_lsn
	FROM zerobus.streams s JOIN zerobus.stream_shared_state() w ON w.stream_id = s.id
	WHERE s.name = $1
$$;

-- Waits, looking every 5 ms, until the stream's acked LSN reaches "target";
-- returns the clock_timestamp() at which it saw it.  Raises an error when
-- the stream stops on an error or "timeout_s" passes first.
CREATE FUNCTION e2e_wait_acked(name text, target pg_lsn, timeout_s float8)
RETURNS timestamptz LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + timeout_s * interval '1 second';
	reason text;
BEGIN
	LOOP
		IF e2e_acked(name) >= target THEN
			RETURN clock_timestamp();
		END IF;
		SELECT s.paused_reason INTO reason FROM zerobus.streams s WHERE s.name = $1;
		IF reason IS NOT NULL THEN
			RAISE EXCEPTION 'stream % stopped: %', name, reason;
		END IF;
		IF clock_timestamp() > deadline THEN
			RAISE EXCEPTION 'stream % did not ack up to % within % s (acked: %)',
				name, target, timeout_s, e2e_acked(name);
		END IF;
		PERFORM pg_sleep(0.005);
	END LOOP;
END
$$;

-- Samples the stream's acked LSN every "every_s" seconds for "seconds"
-- seconds and returns each change of it with the clock_timestamp() it was
-- first seen at and the number of looks so far (the last row is the last
-- look, changed or not, so the real interval can be computed): a
-- transaction committed at LSN c was acked by the first sample whose LSN is
-- past c, at most one interval (plus one look) late.
CREATE FUNCTION e2e_ack_samples(name text, seconds float8, every_s float8)
RETURNS TABLE (seen timestamptz, acked pg_lsn, looks bigint)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
	deadline timestamptz := clock_timestamp() + seconds * interval '1 second';
	last pg_lsn;
	cur pg_lsn;
BEGIN
	looks := 0;
	LOOP
		cur := e2e_acked(name);
		seen := clock_timestamp();
		looks := looks + 1;
		IF cur IS DISTINCT FROM last OR seen > deadline THEN
			acked := cur;
			RETURN NEXT;
			last := cur;
		END IF;
		EXIT WHEN seen > deadline;
		PERFORM pg_sleep(every_s);
	END LOOP;
END
$$;
