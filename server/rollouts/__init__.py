"""Rollouts: a published bundle goes to a selection of devices wave by wave, gated on their health.

Everything lives in PostgreSQL (rollouts, their devices, their decisions); any worker may run the
controller, and row locks keep two of them from deciding for the same rollout at once.
"""
