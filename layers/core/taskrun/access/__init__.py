"""Keys and access: API keys, stored as hashes and checked (`keys`), the authorizer's policy
from a key (`authorizer`), the scopes each route needs and the tasks a key is limited to
(`scopes`), and each key's usage-plan key, by which API Gateway throttles it (`usage`).
"""
