-- 0016: a money movement's request_id is at most 64 characters, in the database as in the contract.
--
-- The domain request_id_text (0004) allows 1..100 characters: the audit log's request_id column holds
-- both a movement's request_id and, for changes that move no money, the call's x-request-id (up to 100,
-- domain/ledger_rules.py MAX_CALL_ID_LENGTH). The tables of money movements and their idempotency keys
-- hold only a client's request_id, which the contract and domain/ledger_rules.py MAX_REQUEST_ID_LENGTH
-- bound at 64: said here once more, so that no path around the service layer can store a longer one.
--
-- NOT VALID: rows written before this migration are not re-read (the servers already refused longer
-- ids); every row written from now on is checked. tests/integration/test_ledger_rules_agree.py keeps the
-- literal 64 and the Python constant together.
alter table transfers
    add constraint transfers_request_id_at_most_64 check (length(request_id) <= 64) not valid;
alter table holds
    add constraint holds_request_id_at_most_64 check (length(request_id) <= 64) not valid;
alter table idempotency_keys
    add constraint idempotency_keys_request_id_at_most_64 check (length(request_id) <= 64) not valid;
