"""CLI subcommands of this package (registered on import)."""
