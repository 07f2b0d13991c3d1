--
-- PostgreSQL database dump
--


-- Dumped from database version 15.20 (Debian 15.20-0+deb12u1)
-- Dumped by pg_dump version 15.20 (Debian 15.20-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: __SCHEMA__; Type: SCHEMA; Schema: -; Owner: -
--



SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: archive_intents; Type: TABLE; Schema: __SCHEMA__; Owner: -
--

CREATE TABLE __SCHEMA__.archive_intents (
    project_id text NOT NULL,
    offering_id text NOT NULL,
    archived boolean NOT NULL
);


--
-- Name: client_map; Type: TABLE; Schema: __SCHEMA__; Owner: -
--

CREATE TABLE __SCHEMA__.client_map (
    tool text NOT NULL,
    crm_client_id text NOT NULL,
    tool_client_id text NOT NULL,
    crm_client_name text,
    mapped_at timestamp with time zone NOT NULL
);


--
-- Name: event_runs; Type: TABLE; Schema: __SCHEMA__; Owner: -
--

CREATE TABLE __SCHEMA__.event_runs (
    source text NOT NULL,
    event_id text NOT NULL,
    runs integer NOT NULL
);


--
-- Name: event_steps; Type: TABLE; Schema: __SCHEMA__; Owner: -
--

CREATE TABLE __SCHEMA__.event_steps (
    source text NOT NULL,
    event_id text NOT NULL,
    step text NOT NULL,
    seq integer NOT NULL,
    outcomes text NOT NULL
);


--
-- Name: offering_links; Type: TABLE; Schema: __SCHEMA__; Owner: -
--

CREATE TABLE __SCHEMA__.offering_links (
    project_id text NOT NULL,
    offering_id text NOT NULL,
    tool text NOT NULL,
    timesheet_project_id text NOT NULL,
    timesheet_url text NOT NULL,
    timesheet_client_id text NOT NULL,
    archived boolean NOT NULL
);


--
-- Name: projects; Type: TABLE; Schema: __SCHEMA__; Owner: -
--

CREATE TABLE __SCHEMA__.projects (
    project_id text NOT NULL,
    snapshot text NOT NULL,
    snapshot_at timestamp with time zone NOT NULL,
    active boolean DEFAULT false NOT NULL,
    status text,
    status_at timestamp with time zone
);


--
-- Name: provision_intents; Type: TABLE; Schema: __SCHEMA__; Owner: -
--

CREATE TABLE __SCHEMA__.provision_intents (
    project_id text NOT NULL,
    offering_id text NOT NULL,
    tool text NOT NULL,
    started_at timestamp with time zone NOT NULL
);


--
-- Data for Name: archive_intents; Type: TABLE DATA; Schema: __SCHEMA__; Owner: -
--

INSERT INTO __SCHEMA__.archive_intents VALUES ('P-1', 'O-1b', true);


--
-- Data for Name: client_map; Type: TABLE DATA; Schema: __SCHEMA__; Owner: -
--

INSERT INTO __SCHEMA__.client_map VALUES ('harvest', 'C-acme', 'c1000', 'Acme Fixtures Ltd', '2026-11-30 12:30:51.077445+00');
INSERT INTO __SCHEMA__.client_map VALUES ('toggl', 'C-globex', 'tg-77', 'Globex', '2026-11-30 12:30:51.163598+00');


--
-- Data for Name: event_runs; Type: TABLE DATA; Schema: __SCHEMA__; Owner: -
--

INSERT INTO __SCHEMA__.event_runs VALUES ('crm-test', 'ev-7', 1);


--
-- Data for Name: event_steps; Type: TABLE DATA; Schema: __SCHEMA__; Owner: -
--

INSERT INTO __SCHEMA__.event_steps VALUES ('crm-test', 'ev-1', 'activate', 0, '[{"type": "project.activated", "data": {"project_id":"P-1","offering_ids":["O-1a","O-1b"]}}]');
INSERT INTO __SCHEMA__.event_steps VALUES ('crm-test', 'ev-1', '(processed)', 1000000, '[]');
INSERT INTO __SCHEMA__.event_steps VALUES ('crm-test', 'ev-2', 'offering:O-1a', 0, '[{"type": "timesheet.provisioned", "data": {"project_id":"P-1","offering_id":"O-1a","tool":"harvest","timesheet_project_id":"1001","timesheet_url":"https://mem.example/projects/1001","timesheet_client_id":"c1000","team_assigned":[],"team_missing":[],"budget_hours":40.0,"created":true,"warnings":[]}}]');
INSERT INTO __SCHEMA__.event_steps VALUES ('crm-test', 'ev-2', 'offering:O-1b', 1, '[{"type": "timesheet.provisioned", "data": {"project_id":"P-1","offering_id":"O-1b","tool":"harvest","timesheet_project_id":"1002","timesheet_url":"https://mem.example/projects/1002","timesheet_client_id":"c1000","team_assigned":[],"team_missing":[],"budget_hours":40.0,"created":true,"warnings":[]}}]');
INSERT INTO __SCHEMA__.event_steps VALUES ('crm-test', 'ev-2', '(processed)', 1000000, '[]');
INSERT INTO __SCHEMA__.event_steps VALUES ('crm-test', 'ev-3', 'activate', 0, '[{"type": "project.activated", "data": {"project_id":"P-2","offering_ids":["O-2a"]}}]');
INSERT INTO __SCHEMA__.event_steps VALUES ('crm-test', 'ev-3', '(processed)', 1000000, '[]');
INSERT INTO __SCHEMA__.event_steps VALUES ('crm-test', 'ev-4', 'offering:O-2a', 0, '[{"type": "timesheet.provisioned", "data": {"project_id":"P-2","offering_id":"O-2a","tool":"harvest","timesheet_project_id":"1003","timesheet_url":"https://mem.example/projects/1003","timesheet_client_id":"c1000","team_assigned":[],"team_missing":[],"budget_hours":40.0,"created":true,"warnings":[]}}]');
INSERT INTO __SCHEMA__.event_steps VALUES ('crm-test', 'ev-4', '(processed)', 1000000, '[]');
INSERT INTO __SCHEMA__.event_steps VALUES ('crm-test', 'ev-5', 'archive:O-2a', 0, '[{"type": "timesheet.archived", "data": {"project_id":"P-2","offering_id":"O-2a","tool":"harvest","timesheet_project_id":"1003"}}]');
INSERT INTO __SCHEMA__.event_steps VALUES ('crm-test', 'ev-5', '(processed)', 1000000, '[]');
INSERT INTO __SCHEMA__.event_steps VALUES ('crm-test', 'ev-6', 'activate', 0, '[{"type": "project.activated", "data": {"project_id":"P-3","offering_ids":["O-3a"]}}]');
INSERT INTO __SCHEMA__.event_steps VALUES ('crm-test', 'ev-6', '(processed)', 1000000, '[]');


--
-- Data for Name: offering_links; Type: TABLE DATA; Schema: __SCHEMA__; Owner: -
--

INSERT INTO __SCHEMA__.offering_links VALUES ('P-1', 'O-1a', 'harvest', '1001', 'https://mem.example/projects/1001', 'c1000', false);
INSERT INTO __SCHEMA__.offering_links VALUES ('P-1', 'O-1b', 'harvest', '1002', 'https://mem.example/projects/1002', 'c1000', false);
INSERT INTO __SCHEMA__.offering_links VALUES ('P-2', 'O-2a', 'harvest', '1003', 'https://mem.example/projects/1003', 'c1000', true);


--
-- Data for Name: projects; Type: TABLE DATA; Schema: __SCHEMA__; Owner: -
--

INSERT INTO __SCHEMA__.projects VALUES ('P-1', '{"id":"P-1","name":"Website Rebuild","client":{"id":"C-acme","name":"Acme Fixtures Ltd"},"offerings":[{"id":"O-1a","name":"Discovery","sold":true,"budget_hours":40.0,"starts_on":null,"ends_on":null,"billable":true,"kind":null,"team":[]},{"id":"O-1b","name":"Build","sold":true,"budget_hours":40.0,"starts_on":null,"ends_on":null,"billable":true,"kind":null,"team":[]}]}', '2026-11-01 00:00:01+00', true, 'in_progress', '2026-11-01 00:00:02+00');
INSERT INTO __SCHEMA__.projects VALUES ('P-2', '{"id":"P-2","name":"Website Rebuild","client":{"id":"C-acme","name":"Acme Fixtures Ltd"},"offerings":[{"id":"O-2a","name":"Support","sold":true,"budget_hours":40.0,"starts_on":null,"ends_on":null,"billable":true,"kind":null,"team":[]}]}', '2026-11-01 00:00:03+00', true, 'on_hold', '2026-11-01 00:00:05+00');
INSERT INTO __SCHEMA__.projects VALUES ('P-3', '{"id":"P-3","name":"Website Rebuild","client":{"id":"C-globex","name":"Globex"},"offerings":[{"id":"O-3a","name":"Audit","sold":true,"budget_hours":40.0,"starts_on":null,"ends_on":null,"billable":true,"kind":null,"team":[]}]}', '2026-11-01 00:00:06+00', true, NULL, NULL);


--
-- Data for Name: provision_intents; Type: TABLE DATA; Schema: __SCHEMA__; Owner: -
--

INSERT INTO __SCHEMA__.provision_intents VALUES ('P-1', 'O-1a', 'harvest', '2026-11-30 12:30:51.083545+00');
INSERT INTO __SCHEMA__.provision_intents VALUES ('P-1', 'O-1b', 'harvest', '2026-11-30 12:30:51.091348+00');
INSERT INTO __SCHEMA__.provision_intents VALUES ('P-2', 'O-2a', 'harvest', '2026-11-30 12:30:51.119996+00');


--
-- Name: archive_intents archive_intents_pkey; Type: CONSTRAINT; Schema: __SCHEMA__; Owner: -
--

ALTER TABLE ONLY __SCHEMA__.archive_intents
    ADD CONSTRAINT archive_intents_pkey PRIMARY KEY (project_id, offering_id);


--
-- Name: client_map client_map_pkey; Type: CONSTRAINT; Schema: __SCHEMA__; Owner: -
--

ALTER TABLE ONLY __SCHEMA__.client_map
    ADD CONSTRAINT client_map_pkey PRIMARY KEY (tool, crm_client_id);


--
-- Name: event_runs event_runs_pkey; Type: CONSTRAINT; Schema: __SCHEMA__; Owner: -
--

ALTER TABLE ONLY __SCHEMA__.event_runs
    ADD CONSTRAINT event_runs_pkey PRIMARY KEY (source, event_id);


--
-- Name: event_steps event_steps_pkey; Type: CONSTRAINT; Schema: __SCHEMA__; Owner: -
--

ALTER TABLE ONLY __SCHEMA__.event_steps
    ADD CONSTRAINT event_steps_pkey PRIMARY KEY (source, event_id, step);


--
-- Name: offering_links offering_links_pkey; Type: CONSTRAINT; Schema: __SCHEMA__; Owner: -
--

ALTER TABLE ONLY __SCHEMA__.offering_links
    ADD CONSTRAINT offering_links_pkey PRIMARY KEY (project_id, offering_id);


--
-- Name: client_map one_crm_client_per_tool_client; Type: CONSTRAINT; Schema: __SCHEMA__; Owner: -
--

ALTER TABLE ONLY __SCHEMA__.client_map
    ADD CONSTRAINT one_crm_client_per_tool_client UNIQUE (tool, tool_client_id);


--
-- Name: projects projects_pkey; Type: CONSTRAINT; Schema: __SCHEMA__; Owner: -
--

ALTER TABLE ONLY __SCHEMA__.projects
    ADD CONSTRAINT projects_pkey PRIMARY KEY (project_id);


--
-- Name: provision_intents provision_intents_pkey; Type: CONSTRAINT; Schema: __SCHEMA__; Owner: -
--

ALTER TABLE ONLY __SCHEMA__.provision_intents
    ADD CONSTRAINT provision_intents_pkey PRIMARY KEY (project_id, offering_id, tool);


--
-- PostgreSQL database dump complete
--


