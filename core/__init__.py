"""finsent's shared core: settings, structured logging, database tables, migrations and
partition upkeep. The floor of the project: imported by models/, stream/, api/ and
dashboards/, it imports none of them (and holds no entry points)."""
