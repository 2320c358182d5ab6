-- 0001: the roles the application runs as, and the locked-down public schema.
--
-- Migrations run as the schema owner (the role that owns every table). The
-- server connects as `emoney_app`, which owns nothing, is no superuser and has
-- no BYPASSRLS, so row-level security always applies to it. Its password is
-- set outside migrations (by the local stack, or by the DBA in production):
-- secrets never live in this repository.
do $$
begin
    if not exists (select from pg_catalog.pg_roles where rolname = 'emoney_app') then
        create role emoney_app nologin nosuperuser nocreatedb nocreaterole noinherit nobypassrls;
    end if;
end
$$;

revoke all on schema public from public;
grant usage on schema public to emoney_app;

-- Tables created later by the owner grant nothing by default; each migration
-- grants exactly what the application needs, table by table.
alter default privileges revoke all on tables from public;
alter default privileges revoke execute on functions from public;
