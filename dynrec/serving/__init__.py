"""The online side: artefacts, the item store and catalogue view, user state and ranking.

Plain library code; `deployments/` wraps these classes as Ray Serve deployments.
"""
