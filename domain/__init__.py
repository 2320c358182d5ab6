"""The bottom floor: what the platform's rules are, with no input or output and no import of ours.

Errors and the field-violation reasons, who is calling (principal), money and ledger rules, currencies,
resource names, tokens and their key types, password rules, request validation and the settings every
floor reads. `storage/` and `interceptors/` build on it, `server/` (services and servicers) on those,
and `server/bootstrap.py` composes everything; tests/unit/test_floors.py fails when an import runs back up.
"""
