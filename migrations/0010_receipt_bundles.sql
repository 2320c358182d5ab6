-- Receipts are archived in bundles: the background writer stores each batch of receipts as ONE
-- JSON-lines object (`tenants/{tenant}/receipts/bundles/YYYY/MM/DD/{first payment id}.jsonl`, one
-- receipt document per line) instead of one object per payment — one S3 write per batch instead of
-- one per payment, which was a quarter of the machine's CPU under load (issue #6). The per-payment
-- object `receipts/{id}.json` that GetReceipt reads and links to is made when a receipt is first asked
-- for (from the same deterministic rendering). `bundle_key` says where the writer archived each one.
alter table receipt_outbox add column bundle_key text check (length(bundle_key) between 1 and 300);
grant update (bundle_key) on receipt_outbox to emoney_app;
