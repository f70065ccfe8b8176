"""The GraphQL layer: app factory, schema, context, permissions, types, mutations.

Resolvers stay thin: parse input, check permission, call a rule in ``onboarding``, map
the result to a type here.
"""
