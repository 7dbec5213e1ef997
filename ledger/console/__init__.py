"""The operator's console: the monthly cycle as web pages over the same service layer, rules,
identities and roles as the command line (`ledger console`)."""
