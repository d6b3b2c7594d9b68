-- The read-only role Grafana's Postgres datasource logs in as: SELECT on the tables the
-- dashboards read, nothing on API keys, subscriptions (webhook secrets) or deliveries.
-- Run by the `grafana-db` service of docker-compose.yml after the migrations:
--   psql -v ON_ERROR_STOP=1 -v password="$GRAFANA_PG_PASSWORD" -f grafana-reader.sql
SELECT format('CREATE ROLE grafana_reader LOGIN PASSWORD %L', :'password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'grafana_reader') \gexec
ALTER ROLE grafana_reader PASSWORD :'password';
ALTER ROLE grafana_reader SET statement_timeout = '30s';
ALTER ROLE grafana_reader SET default_transaction_read_only = on;
GRANT USAGE ON SCHEMA public TO grafana_reader;
GRANT SELECT ON scored_event, event_entity, event_rollup_minute, alert, alert_event, story TO grafana_reader;
