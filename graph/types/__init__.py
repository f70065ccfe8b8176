"""One module per GraphQL type (or a type and its small satellites)."""
