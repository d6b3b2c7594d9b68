"""finsent's small shared package: settings, logging, record schemas, database tables and
the `finsent` command line. Imported by stream/, api/ and the scripts; imports none of them
at module level."""
