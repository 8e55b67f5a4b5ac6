"""Helpers shared by the test packages (unit, integration, models): fakes injected where the real
dependencies would be, the integration stack's helpers and sample records. No tests here."""
