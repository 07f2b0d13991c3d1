-- The state store of release 0.1.0 on postgresql, as that release made it (the SCHEMA list
-- of adapters/store.py at commit 0d8a446, timestamps as TIMESTAMP WITH TIME ZONE).
-- A database made by 0.1.0 has these tables and no bookkeeping of migrations: it is
-- baselined (recorded as at this migration, which is not run again).

CREATE TABLE IF NOT EXISTS projects (
        project_id TEXT PRIMARY KEY,
        snapshot TEXT NOT NULL,
        snapshot_at TIMESTAMP WITH TIME ZONE NOT NULL,
        active BOOLEAN NOT NULL DEFAULT FALSE,
        status TEXT,
        status_at TIMESTAMP WITH TIME ZONE);

CREATE TABLE IF NOT EXISTS offering_links (
        project_id TEXT NOT NULL,
        offering_id TEXT NOT NULL,
        tool TEXT NOT NULL,
        timesheet_project_id TEXT NOT NULL,
        timesheet_url TEXT NOT NULL,
        timesheet_client_id TEXT NOT NULL,
        archived BOOLEAN NOT NULL,
        PRIMARY KEY (project_id, offering_id));

CREATE TABLE IF NOT EXISTS client_map (
        tool TEXT NOT NULL,
        crm_client_id TEXT NOT NULL,
        tool_client_id TEXT NOT NULL,
        crm_client_name TEXT,
        mapped_at TIMESTAMP WITH TIME ZONE NOT NULL,
        PRIMARY KEY (tool, crm_client_id),
        CONSTRAINT one_crm_client_per_tool_client UNIQUE (tool, tool_client_id));

CREATE TABLE IF NOT EXISTS provision_intents (
        project_id TEXT NOT NULL,
        offering_id TEXT NOT NULL,
        tool TEXT NOT NULL,
        started_at TIMESTAMP WITH TIME ZONE NOT NULL,
        PRIMARY KEY (project_id, offering_id, tool));

CREATE TABLE IF NOT EXISTS event_steps (
        source TEXT NOT NULL,
        event_id TEXT NOT NULL,
        step TEXT NOT NULL,
        seq INTEGER NOT NULL,
        outcomes TEXT NOT NULL,
        PRIMARY KEY (source, event_id, step));

CREATE TABLE IF NOT EXISTS event_runs (
        source TEXT NOT NULL,
        event_id TEXT NOT NULL,
        runs INTEGER NOT NULL,
        PRIMARY KEY (source, event_id));

CREATE TABLE IF NOT EXISTS archive_intents (
        project_id TEXT NOT NULL,
        offering_id TEXT NOT NULL,
        archived BOOLEAN NOT NULL,
        PRIMARY KEY (project_id, offering_id));
