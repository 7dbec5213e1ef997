"""The service layer: one command handler per operator command, grouped by context
(enrolment, deaths, reference data, payroll, settlement). A handler reads what it needs in bulk
through the ports, asks the aggregates and the pure rules, and saves the new events in one
transaction. It imports no adapter: `ledger.bootstrap` injects them."""
