"""Keys and access: API keys, stored as hashes and checked by the authorizer (`keys`), the
scopes each route needs and the tasks a key is limited to (`scopes`), and each key's usage-
plan key, by which API Gateway throttles it (`usage`).
"""
