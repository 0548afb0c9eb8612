"""The node shell: runs the engine's effects, is the engine's Application, admits transactions into the
mempool, applies peer policy, and serves the API's NodeService; its config, health and wire framing.

Imports the layers below (app, consensus, storage, p2p, core) and the API it serves.
"""
