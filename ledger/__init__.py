"""ansinh: an event-sourced payments ledger for monthly social assistance."""
