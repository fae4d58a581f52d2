--
-- intervals: the ISO 8601 text the plugin sends for an interval equals
-- PostgreSQL's own intervalstyle iso_8601 output, for every combination of
-- zero, positive and negative month, day and time parts and at the ends of
-- the range (the "T" only before a time part, "PT0S" for zero).
--
\pset format unaligned

CREATE TABLE ivals (id serial PRIMARY KEY, iv interval);
CREATE PUBLICATION ivals_pub FOR TABLE ivals;
SELECT 'init' FROM pg_create_logical_replication_slot('ivals_slot', 'zerobus');

-- every combination of these month, day and microsecond parts
INSERT INTO ivals (iv)
SELECT make_interval(months => m, days => d) + t * interval '1 microsecond'
FROM unnest(ARRAY[0, 1, -1, 11, 12, -12, 13, -13, 1200, -1201]) AS m,
	 unnest(ARRAY[0, 1, -1, 31, -400]) AS d,
	 unnest(ARRAY[0, 1, -1, 500000, -500000, 999999, 1000000, -1000000,
				  60000000, -60000000, 3600000000, -3600000000, 3600000001,
				  86399999999, -86399999999, 90061000001]::int8[]) AS t;

-- ends of the range and values written by hand
INSERT INTO ivals (iv) VALUES
	('178000000 years'), ('-178000000 years'),
	('2147483647 days'), ('-2147483648 days'),
	('2562047788:00:54.775807'), ('-2562047788:00:54.775807'),
	('-1 day'), ('100 years'), ('1 mon -1 day'), ('-00:00:00.000001'),
	('1 year 2 mons 3 days 04:05:06.5'), ('-1 year -2 mons +3 days -04:05:06.000001'),
	('0'), ('1 day -00:00:00.5'), ('00:01'), ('-00:01:00.5');

-- the text sent for each row
CREATE TEMP VIEW sent AS
	SELECT substring(data FROM 'id\[integer\]:(\d+)')::int AS id,
		   substring(data FROM 'iv\[interval\]:''([^'']*)''') AS iso
	FROM pg_logical_slot_peek_changes('ivals_slot', NULL, NULL,
		'publication_names', 'ivals_pub', 'format', 'text', 'include_volatile', 'off')
	WHERE data LIKE 'table %';

-- rows whose sent text differs from PostgreSQL's iso_8601 output, or does
-- not read back as the same interval: none
SET intervalstyle = iso_8601;
SELECT i.id, i.iv::text AS postgres, s.iso AS sent
FROM ivals i LEFT JOIN sent s USING (id)
WHERE s.iso IS DISTINCT FROM i.iv::text
   OR s.iso::interval::text IS DISTINCT FROM i.iv::text;

-- how many were compared, and a few of them
SELECT count(*) AS compared, count(*) FILTER (WHERE iso = iv::text) AS equal
FROM ivals JOIN sent USING (id);
SELECT data FROM pg_logical_slot_get_changes('ivals_slot', NULL, NULL,
	'publication_names', 'ivals_pub', 'format', 'text', 'include_volatile', 'off')
WHERE data ~ 'id\[integer\]:(801|802|803|804|805|806|807|808|809|810|811|812|813|814|815|816) ';

DROP VIEW sent;
SELECT pg_drop_replication_slot('ivals_slot');
DROP PUBLICATION ivals_pub;
DROP TABLE ivals;
