"""The Dagster side of the webhooks: the inbox sensor, its runless events and the check."""
