"""The dashboard's HTTP API: thin views over failover, trading and integration-run services."""
