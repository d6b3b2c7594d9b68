"""finsent's entry points: the `finsent` command line, the embedded demo and the starters of
real services (Kafka, PostgreSQL, worker and API processes) for tests and the demo. The top
floor: it imports core/, models/, stream/, api/ and dashboards/; nothing imports it."""
