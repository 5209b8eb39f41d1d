"""The ledger's tables: a table of tasks (a run's own, or its sub-tasks' under another name), the runs
and the rounds; how replanning a task updates its row; and the columns later versions added, which
a ledger written before them gains when it is opened."""

TASKS_TABLE = """
CREATE TABLE IF NOT EXISTS {table} (
    seq INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    outputs TEXT NOT NULL,
    est_cost REAL NOT NULL DEFAULT 0,
    plan INTEGER NOT NULL,  -- the id of the run that last planned the task
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    rate_limit_hits INTEGER NOT NULL DEFAULT 0,
    connection_errors INTEGER NOT NULL DEFAULT 0,
    error_kind TEXT,
    error TEXT,
    cost REAL NOT NULL DEFAULT 0,  -- all it was billed, wasted included
    wasted REAL NOT NULL DEFAULT 0,  -- billed for answers that could not be used (an image that never came)
    started_at REAL,
    finished_at REAL,
    duration_s REAL,
    healed INTEGER NOT NULL DEFAULT 0,
    provenance TEXT
);
"""
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started_at REAL NOT NULL,
    finished_at REAL,
    state TEXT NOT NULL DEFAULT 'running',
    message TEXT
);
CREATE TABLE IF NOT EXISTS rounds (
    scope TEXT PRIMARY KEY,
    number INTEGER NOT NULL,
    settings TEXT NOT NULL
);
"""

# Replanning leaves finished work untouched. Unfinished tasks join the new plan with the new payload; a failed one is tried again
# unless its failure was permanent (then only when asked).
UPSERT = """
INSERT INTO {table} (key, payload, outputs, est_cost, plan) VALUES (?, ?, ?, ?, ?)
ON CONFLICT(key) DO UPDATE SET
    plan = excluded.plan,
    est_cost = excluded.est_cost,
    payload = excluded.payload,
    outputs = excluded.outputs,
    status = CASE WHEN status = 'failed' AND (error_kind != 'permanent' OR ?) THEN 'pending' ELSE status END
WHERE status != 'done'
"""

ADDED_COLUMNS = {"wasted": "REAL NOT NULL DEFAULT 0"}  # name -> its declaration, added to older ledgers
