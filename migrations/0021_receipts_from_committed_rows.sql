-- 0021: receipts are read from the committed transfers themselves; the per-payment outbox row is gone
-- (issue 14, "each row written once").
--
-- Until now every transfer inserted a `receipt_outbox` row in its own transaction (a heap row, two index
-- entries, a speculative-insert confirmation and a key-share lock on the tenant's row for the foreign key,
-- which concurrent transfers turned into a new MultiXact each time), and the receipt writer later updated
-- that row (a second heap row and index entry): about 600 bytes of WAL per transfer, measured with
-- pg_waldump. Now a transfer carries `created_xid`, the 64-bit id of the transaction that wrote it, and
-- each tenant has one cursor row: every transfer with created_xid >= the cursor's next_xid still needs its
-- receipt (migrations/current/07_receipts.sql says how the writer reads them without missing one).

alter table transfers add column created_xid bigint not null default 0;
-- Rows written from now on carry their transaction's id; rows already there keep 0 ("before cursors"),
-- stored as the column's missing value, so no existing row is rewritten.
alter table transfers alter column created_xid set default (pg_current_xact_id()::text::bigint);
alter table transfers add constraint transfers_created_xid_non_negative check (created_xid >= 0);
-- A BRIN index, not a btree: every transfer's key is its transaction's id, so all concurrent transfers
-- would insert at the btree's right edge (measured: P2P through Envoy 404-411 transfers/s with a btree
-- on (tenant_id, created_xid), 510 with no index, PostgreSQL CPU per transfer 2.0 against 1.4 ms). Rows are
-- appended in about the order of their ids, so block ranges summarise them well; a range is summarised
-- when it fills (autosummarize), and the writer reads the few unsummarised pages at the end as well.
create index transfers_by_created_xid on transfers using brin (created_xid) with (pages_per_range = 16, autosummarize = on);

-- The owner reads across tenants for the SECURITY DEFINER lookup of tenants with receipts to write (as
-- for holds and terminals), but only while no tenant is set: with a tenant set the owner sees that tenant's
-- transfers and nothing else, like everyone (the restore drill reconciles each tenant's ledger as the
-- owner). The application role gets no such policy.
create policy transfers_owner_read on transfers for select to current_user
    using (nullif(current_setting('app.tenant_id', true), '') is null);

create table receipt_cursors (
    tenant_id        uuid        primary key references tenants (tenant_id),
    next_xid         bigint      not null check (next_xid >= 0),
    receipts_written bigint      not null default 0 check (receipts_written >= 0),
    attempts         integer     not null default 0 check (attempts between 0 and 1000000000),
    last_error_kind  text        check (length(last_error_kind) between 1 and 100),
    updated_at       timestamptz not null default now()
);

-- Receipts the outbox still had pending are handed over: their transfers get created_xid 1 and every
-- tenant's cursor starts at 1, so the writer's first pass for a tenant archives exactly those plus every
-- transfer written from now on. The owner is subject to the tables' forced row-level security; it is lifted
-- for these statements only (this file is one transaction), and receipt_cursors gets its policies after.
alter table transfers no force row level security;
alter table receipt_outbox no force row level security;
update transfers t set created_xid = 1
  from receipt_outbox r
 where r.written_at is null and r.tenant_id = t.tenant_id and r.payment_id = t.transfer_id;
alter table transfers force row level security;
insert into receipt_cursors (tenant_id, next_xid) select tenant_id, 1 from tenants;

alter table receipt_cursors enable row level security;
alter table receipt_cursors force row level security;
create policy receipt_cursors_isolation on receipt_cursors
    using (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    with check (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
create policy receipt_cursors_owner_read on receipt_cursors for select to current_user
    using (nullif(current_setting('app.tenant_id', true), '') is null);
grant select, insert on receipt_cursors to emoney_app;
grant update (next_xid, receipts_written, attempts, last_error_kind, updated_at) on receipt_cursors to emoney_app;

drop function if exists receipts_request(uuid, uuid);
drop function if exists tenants_with_pending_receipts(integer);
drop function if exists payments_code_redeemed(bytea, text, text, uuid, uuid, text, uuid, uuid, uuid);
drop table receipt_outbox;
