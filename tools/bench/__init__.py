"""`make bench`: k6 load against the whole local stack (see run.py)."""
