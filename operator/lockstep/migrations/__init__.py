"""Versioned migrations: where they come from, the ledger, the plan and the apply engine."""
