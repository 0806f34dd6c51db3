"""Village books: ledger, members and shares, distribution, public disclosure."""
