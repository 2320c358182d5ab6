-- Live payment events: one NOTIFY on the channel `emoney_payment_events` per change of a payment.
--
-- PostgreSQL delivers a notification when, and only when, the transaction that sent it commits (never
-- for a rolled-back change), in commit order, to every server process listening; each server's
-- PaymentEventHub (server/payment_events.py) hands it to the WatchPayments streams it matches.
--
-- The payload is built here and nowhere else: the one-statement entry points call this function, and so
-- does the service layer for the movements it finishes in Python (server/payment_events.py
-- notify_payment_event: top-ups, withdrawals, refunds, captures, voids, expiries). Python only decodes it
-- (PaymentEvent.from_payload); tests/integration/test_payment_events.py checks that the two agree.
--
--   {"tenantId": uuid, "paymentId": uuid (a transfer or a hold),
--    "event": "created" | "captured" | "voided" | "expired" | "refunded",
--    "terminalId": uuid or null, "accountIds": [uuid, ...] (the payer's and the merchant's; at most 8)}
--
-- Identifiers only, no amounts or names: every role that may LISTEN on this database is one of ours, but
-- the channel is shared by all tenants. A payload stays far below PostgreSQL's 8000-byte limit.
--
-- One SQL expression, no SET clause: PostgreSQL inlines the function into its caller, so announcing costs
-- what the pg_notify call costs.
create or replace function payments_notify(
    tenant uuid, payment_id uuid, event text, terminal_id uuid, account_ids uuid[]
) returns void
    language sql
    return pg_notify('emoney_payment_events', json_build_object(
        'tenantId', tenant, 'paymentId', payment_id, 'event', event, 'terminalId', terminal_id,
        'accountIds', to_json(account_ids))::text);

grant execute on function payments_notify(uuid, uuid, text, uuid, uuid[]) to emoney_app, emoney_ledger;
