"""Infrastructure: SQL migrations and the embedded local stack (broker + Postgres)."""
