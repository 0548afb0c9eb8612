"""The HTTP API: route tables per area, JSON forms, errors as JSON.

Imports app and core; reaches the node only through the `NodeService` protocol it declares.
"""
