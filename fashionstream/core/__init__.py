"""The foundation every layer imports: wire records, sightings, typed errors, the settings object
and the metrics vocabulary. It imports no other package of this project (ARCHITECTURE.md)."""
