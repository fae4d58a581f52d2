-- Trust boundaries of the SQL API: no way from a database role to the
-- superuser through the zerobus functions, no secret handed back or shown
-- to roles that are not the stream's owner, no crash on a bad table OID.
--
-- The attacker is an ordinary role with USAGE on schema zerobus (as an
-- administrator grants a monitoring role or a stream owner) and a schema of
-- its own, where it plants int4 and text = operators whose functions try
-- to make it superuser.  Each planted function writes a row to sec_audit
-- when it runs with superuser rights; the test passes when that table
-- stays empty and the role's rolsuper stays false.
CREATE TABLE sec_src (id int PRIMARY KEY, v text);
CREATE TABLE sec_private (id int PRIMARY KEY, secret text);
CREATE PUBLICATION sec_pub FOR TABLE sec_src;
CREATE PUBLICATION sec_private_pub FOR TABLE sec_private;
CREATE TABLE sec_audit (who name, what text);
GRANT INSERT ON sec_audit TO PUBLIC;
CREATE ROLE regress_sec_attacker;
CREATE ROLE regress_sec_owner;
CREATE SCHEMA sec_evil AUTHORIZATION regress_sec_attacker;
GRANT USAGE ON SCHEMA zerobus TO regress_sec_attacker, regress_sec_owner;
GRANT SELECT ON sec_src TO regress_sec_owner;

SELECT zerobus.create_stream('sec', 'sec_pub', 'https://e.example.com',
	'https://w.example.com', 'sec_client', 'sec_secret_value', 'main',
	conninfo => 'host=/tmp user=postgres password=sec_conn_password',
	owner => 'regress_sec_owner', enabled => false, snapshot => false) > 0
	AS created;

SET ROLE regress_sec_attacker;
CREATE TABLE sec_evil.mine (id int PRIMARY KEY);
CREATE FUNCTION sec_evil.planted(what text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO public.sec_audit SELECT current_user, what
		FROM pg_catalog.pg_roles WHERE rolname = current_user AND rolsuper;
	BEGIN
		EXECUTE 'ALTER ROLE regress_sec_attacker SUPERUSER';
	EXCEPTION WHEN insufficient_privilege THEN NULL;
	END;
END $$;
CREATE FUNCTION sec_evil.int4eq(int4, int4) RETURNS bool
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM sec_evil.planted('int4eq');
	RETURN $1 OPERATOR(pg_catalog.=) $2;
END $$;
CREATE OPERATOR sec_evil.= (LEFTARG = int4, RIGHTARG = int4,
	FUNCTION = sec_evil.int4eq);
CREATE FUNCTION sec_evil.texteq(text, text) RETURNS bool
LANGUAGE plpgsql AS $$
BEGIN
	PERFORM sec_evil.planted('texteq');
	RETURN $1 OPERATOR(pg_catalog.=) $2;
END $$;
CREATE OPERATOR sec_evil.= (LEFTARG = text, RIGHTARG = text,
	FUNCTION = sec_evil.texteq);
SET search_path = sec_evil, pg_catalog, public;

-- item 1: target_ddl with a stream used to load the stream as the
-- superuser under the caller's search_path
SELECT zerobus.target_ddl('sec_evil.mine', stream => 'sec') IS NOT NULL AS ddl;
SELECT zerobus.target_ddl('sec_evil.mine', 'main.a.b') IS NOT NULL AS ddl;
-- the other functions an ordinary role may call
SELECT count(*) >= 0 AS ok FROM zerobus.stat_streams;
SELECT count(*) >= 0 AS ok FROM zerobus.stat_snapshots;
SELECT zerobus.pause_stream('sec');
SELECT * FROM zerobus.stream_credentials('sec');
SELECT zerobus.snapshot_table('sec', 'sec_evil.mine');
SELECT zerobus.drop_stream('sec');
SELECT zerobus.alter_stream('sec', batch_max_records => 5);
RESET search_path;
RESET ROLE;

SELECT * FROM sec_audit;
SELECT rolsuper FROM pg_roles WHERE rolname = 'regress_sec_attacker';

-- item 4: the settings that choose what is read and how the server
-- connects are the superuser's, even for the stream's owner
SET ROLE regress_sec_owner;
SELECT zerobus.alter_stream('sec', publication => 'sec_private_pub');
SELECT zerobus.alter_stream('sec', conninfo => 'host=/tmp user=postgres');
SELECT zerobus.alter_stream('sec', ca_file => '/etc/passwd');
SELECT zerobus.alter_stream('sec', insecure => true);
SELECT zerobus.alter_stream('sec', reset => ARRAY['conninfo']);
SELECT zerobus.alter_stream('sec', reset => ARRAY['ca_file']);
-- the owner may still change the rest
SELECT zerobus.alter_stream('sec', batch_max_records => 50);
-- item 9: no conninfo password handed back, even to the owner
SELECT * FROM zerobus.stream_credentials('sec');
RESET ROLE;

-- item 4: a stream's owner must be able to read every table it publishes
SELECT zerobus.alter_stream('sec', publication => 'sec_private_pub');
SELECT zerobus.create_stream('sec2', 'sec_private_pub', 'https://e.example.com',
	'https://w.example.com', 'c', 's', 'main', owner => 'regress_sec_owner',
	enabled => false, snapshot => false);
SELECT zerobus.alter_stream('sec', owner => 'regress_sec_attacker');
SELECT publication, owner FROM zerobus.streams WHERE name = 'sec';
-- row-level security that applies to the owner: the stream would read past it
ALTER TABLE sec_src ENABLE ROW LEVEL SECURITY;
SELECT zerobus.alter_stream('sec', batch_max_records => 20);
ALTER TABLE sec_src DISABLE ROW LEVEL SECURITY;
SELECT zerobus.alter_stream('sec', batch_max_records => 20);

-- item 9: a conninfo that does not parse is refused, and its text is not
-- repeated
SELECT zerobus.alter_stream('sec', conninfo => 'host=/tmp password=topsecret bogus');
SELECT zerobus.alter_stream('sec', conninfo => 'host=/tmp nosuchoption=1');
SELECT zerobus.alter_stream('sec', conninfo => 'host=/tmp password=p dbname=x');
SELECT * FROM zerobus.stream_credentials('sec');

-- item 9: an error's text, a pause reason and primary-key values are the
-- owner's and the superusers' to read
UPDATE zerobus.streams SET paused_reason = 'rejected: key 42 of the secret row'
WHERE name = 'sec';
UPDATE zerobus.stream_tables SET snapshot_key = '{42}',
	paused_reason = 'the target rejected key 42'
WHERE stream_id = (SELECT id FROM zerobus.streams WHERE name = 'sec');
SET ROLE regress_sec_attacker;
SELECT name, state, last_error, paused_reason FROM zerobus.stat_streams WHERE name = 'sec';
SELECT stream, last_key, paused_reason FROM zerobus.stat_snapshots WHERE stream = 'sec';
SELECT paused_reason FROM zerobus.streams;
SELECT snapshot_key FROM zerobus.stream_tables;
SELECT paused_reason FROM zerobus.stream_tables;
SELECT count(*) > 0 AS readable FROM zerobus.streams;
SELECT name, publication, enabled FROM zerobus.streams WHERE name = 'sec';
SET ROLE regress_sec_owner;
SELECT name, state, last_error, paused_reason FROM zerobus.stat_streams WHERE name = 'sec';
SELECT stream, last_key, paused_reason FROM zerobus.stat_snapshots WHERE stream = 'sec';
RESET ROLE;

-- item 8: a table OID that names no table is an error, not a crash
SELECT zerobus.snapshot_table('sec', 999999::regclass);
SELECT zerobus.target_ddl(999999::regclass, 'main.a.b');
SELECT zerobus.create_stream('sec3', 'sec_pub', 'https://e.example.com',
	'https://w.example.com', 'c', 's', 'main',
	table_map => '{"public.sec_gone": "main.a.b"}', enabled => false);

SELECT zerobus.drop_stream('sec');
DROP PUBLICATION sec_pub, sec_private_pub;
DROP TABLE sec_src, sec_private, sec_audit;
DROP SCHEMA sec_evil CASCADE;
REVOKE USAGE ON SCHEMA zerobus FROM regress_sec_attacker, regress_sec_owner;
DROP ROLE regress_sec_attacker, regress_sec_owner;
