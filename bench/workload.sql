-- workload.sql
--	  The benchmark workload shared by bench/decode_bench.sh and
--	  bench/e2e_bench.sh: table "bench" (~200-byte rows), publication "bench"
--	  and the procedures that generate the changes.
--
-- After this script, CALL bench_workload(n_insert, n_update, n_delete,
-- n_single, batch) makes n_insert inserts in batch-row transactions, then
-- updates ids [1, n_update] and deletes the next n_delete ids in batch-row
-- transactions, then n_single one-row insert transactions (ids after the
-- bulk inserts).  It must be CALLed outside an explicit transaction block,
-- since it commits.

CREATE TABLE bench (
	id bigint PRIMARY KEY,
	account int NOT NULL,
	branch int NOT NULL,
	qty int NOT NULL,
	amount numeric(12, 2) NOT NULL,
	created timestamptz NOT NULL,
	status text NOT NULL,
	note text NOT NULL
);
CREATE PUBLICATION bench FOR TABLE bench;

-- Rows of ~200 bytes: 8 + 3 * 4 + numeric + 8 + short text + 140 chars.
CREATE FUNCTION bench_rows(first bigint, last bigint)
RETURNS SETOF bench LANGUAGE sql AS $$
	SELECT i, (i % 100000)::int, (i % 100)::int, (i % 1000)::int,
		   ((i % 1000000) / 100.0)::numeric(12, 2),
		   timestamptz '2024-01-01 00:00:00+00' + i * interval '1 second',
		   'new-' || (i % 7),
		   substr(repeat(md5(i::text), 5), 1, 140)
	FROM generate_series(first, last) AS i
$$;

-- One transaction per batch of ids in [first, first + total).
CREATE PROCEDURE bench_batches(op text, first bigint, total bigint, batch int)
LANGUAGE plpgsql AS $$
DECLARE
	lo bigint := first;
	hi bigint;
BEGIN
	WHILE lo < first + total LOOP
		hi := least(lo + batch, first + total) - 1;
		IF op = 'insert' THEN
			INSERT INTO bench SELECT * FROM bench_rows(lo, hi);
		ELSIF op = 'update' THEN
			UPDATE bench SET qty = qty + 1, amount = amount + 1,
				status = 'updated'
			WHERE id BETWEEN lo AND hi;
		ELSE
			DELETE FROM bench WHERE id BETWEEN lo AND hi;
		END IF;
		COMMIT;
		lo := hi + 1;
	END LOOP;
END
$$;

CREATE PROCEDURE bench_workload(n_insert bigint, n_update bigint,
								n_delete bigint, n_single bigint, batch int)
LANGUAGE plpgsql AS $$
BEGIN
	CALL bench_batches('insert', 1, n_insert, batch);
	CALL bench_batches('update', 1, n_update, batch);
	CALL bench_batches('delete', n_update + 1, n_delete, batch);
	CALL bench_batches('insert', n_insert + 1, n_single, 1);
END
$$;
