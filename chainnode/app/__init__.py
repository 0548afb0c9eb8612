"""The deterministic state machine: the state overlay, block execution, and one module per application
(authority, governance, records), genesis and proofs.

Given (state, block) the result is fixed.  Imports only `chainnode.core`; never the node, the API or
the tools.  A new application module (assets, xchain) lands here.
"""
