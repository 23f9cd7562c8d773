-- the MLflow tracking server's backend store, beside mlmedic's event store (database "events")
CREATE DATABASE mlflow;
