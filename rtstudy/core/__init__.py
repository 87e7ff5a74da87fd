"""The track-agnostic core: masks, ticket patterns and schemes, descriptions, the store, statistics."""
