"""Domain rules of portal onboarding, as plain async functions the GraphQL layer calls.

Each module is one workflow of SPEC section 2; resolvers in ``graph/`` parse input,
check permission, call one of these and map the result.
"""
