"""The engine every pipeline runs on: ledger, runner, run control, progress events, stats."""
