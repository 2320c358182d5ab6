-- Statement exports (migration 0020): which tenants have an export to write, for the workers
-- (server/services/statements.py) before they know a tenant. Pending exports, and running ones whose
-- worker has not been heard of for a minute (its process died: another takes it over).
create or replace function tenants_with_pending_exports(tenant_limit integer) returns setof uuid
    language sql stable security definer
    set search_path = pg_catalog, public, pg_temp
as $$
    select distinct e.tenant_id from public.statement_exports e
     where e.state = 'pending' or (e.state = 'running' and e.claimed_at < now() - interval '1 minute')
     limit least(greatest(tenant_limit, 1), 1000)
$$;

revoke all on function tenants_with_pending_exports(integer) from public;
grant execute on function tenants_with_pending_exports(integer) to emoney_app;
