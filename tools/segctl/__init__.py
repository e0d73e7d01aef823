"""segctl: the local runner (embedded AWS via moto, no Docker)."""
