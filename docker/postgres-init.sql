-- Run once by the postgres image on an empty data volume (/docker-entrypoint-initdb.d/),
-- as POSTGRES_USER. Prefect and MLflow each get their own database: both keep their schema
-- version in an Alembic `alembic_version` table, so they must not share one.
CREATE DATABASE prefect;
CREATE DATABASE mlflow;
-- impactflow's privacy-budget ledger (tasks/ledger_store.py creates its table on first use)
CREATE DATABASE ledger;
