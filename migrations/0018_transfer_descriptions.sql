-- 0018: a transfer's optional description (issue 15): what the payer wrote ("rent March", "lunch"), at most
-- 140 characters, shown on both parties' statements, the payment and its receipt. Written once with the
-- transfer, by the ledger's functions, and never changed (the application role has no UPDATE on it).
--
-- The entry points that take it change their arguments, which CREATE OR REPLACE cannot do: they are dropped
-- here and defined again, with the new argument, by migrations/current/10_movements.sql (IF EXISTS: on a fresh
-- database the history runs before current/, and the group-commit entry point exists only there).
alter table transfers
    add column description text check (description is null or (length(description) between 1 and 140
                                                              and description !~ '[[:cntrl:]]'));

alter type ledger_transfer_outcome add attribute description text;

drop function if exists payments_create_transfers_in(uuid, uuid[], boolean[], uuid[], uuid[], bigint[], text[], text[],
                                                     text[], text[], bytea[]);
drop function if exists payments_create_transfer_in(uuid, uuid, boolean, uuid, uuid, bigint, text, text, text, text, bytea);
drop function if exists payments_create_transfer(uuid, boolean, uuid, uuid, bigint, text, text, text, text, bytea);
drop function if exists ledger_post_transfer(text, uuid, uuid, bigint, text, uuid, text, text, text, bytea);
drop function if exists ledger_write_transfer(uuid, uuid, text, accounts, accounts, bigint, text, text, uuid, uuid, uuid, bigint);
