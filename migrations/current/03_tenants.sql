-- The directory lookups that must work before a tenant is known (login, public sign-up pages,
-- platform administration, the servers' start).
--
-- They are SECURITY DEFINER functions of the schema owner: the owner has a read policy across tenants
-- on `tenants` and `terminals` (0002, 0003), the application role has none, so these are its only
-- cross-tenant reads, and each returns only the fields it names. Every SECURITY DEFINER function searches
-- pg_temp last (0012): unnamed, PostgreSQL would search the caller's temporary tables first.

-- Public profile of an active tenant, by slug. The platform tenant (kind `platform`, the platform
-- administrators' own) is not in the public directory, so nobody can sign up to it.
create or replace function public_tenant_by_slug(requested_slug text)
    returns table (tenant_id uuid, slug text, display_name text, default_currency text)
    language sql stable security definer
    set search_path = pg_catalog, public, pg_temp
as $$
    select t.tenant_id, t.slug, t.display_name, t.default_currency
      from public.tenants t
     where t.slug = requested_slug and t.status = 'active' and t.kind = 'organisation'
$$;

-- A terminal logs in with only its client id: find its tenant first.
create or replace function terminal_by_client_id(requested_client_id text)
    returns table (tenant_id uuid, terminal_id uuid, secret_hash bytea, status text, tenant_status text)
    language sql stable security definer
    set search_path = pg_catalog, public, pg_temp
as $$
    select t.tenant_id, t.terminal_id, t.secret_hash, t.status, tn.status
      from public.terminals t join public.tenants tn on tn.tenant_id = t.tenant_id
     where t.client_id = requested_client_id
$$;

-- Platform administration needs to find a tenant whatever its status; the
-- application checks the caller is a platform administrator before calling.
create or replace function tenant_by_slug_any_status(requested_slug text)
    returns table (tenant_id uuid, slug text, display_name text, default_currency text, status text,
                   created_at timestamptz, kind text)
    language sql stable security definer
    set search_path = pg_catalog, public, pg_temp
as $$
    select t.tenant_id, t.slug, t.display_name, t.default_currency, t.status, t.created_at, t.kind
      from public.tenants t where t.slug = requested_slug
$$;

-- Platform administration's list of tenants, a page at a time (keyset on the slug).
create or replace function tenants_page(after_slug text, page_limit integer)
    returns table (tenant_id uuid, slug text, display_name text, default_currency text, status text, created_at timestamptz)
    language sql stable security definer
    set search_path = pg_catalog, public, pg_temp
as $$
    select t.tenant_id, t.slug, t.display_name, t.default_currency, t.status, t.created_at
      from public.tenants t
     where t.slug > coalesce(after_slug, '')
     order by t.slug
     limit least(greatest(page_limit, 1), 101)
$$;

-- Servers copy suspensions into Redis at start (Redis is where every call checks them).
create or replace function suspended_tenant_ids()
    returns setof uuid
    language sql stable security definer
    set search_path = pg_catalog, public, pg_temp
as $$
    select t.tenant_id from public.tenants t where t.status = 'suspended'
$$;

revoke all on function
    public_tenant_by_slug(text), terminal_by_client_id(text), tenant_by_slug_any_status(text),
    tenants_page(text, integer), suspended_tenant_ids()
from public;
grant execute on function
    public_tenant_by_slug(text), terminal_by_client_id(text), tenant_by_slug_any_status(text),
    tenants_page(text, integer), suspended_tenant_ids()
to emoney_app;
