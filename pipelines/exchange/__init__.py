"""What travels between a partner and the hub: the extract file, sealed in a signed and
encrypted ``.plx`` envelope, and the keys of the hub, partners, approvers and the audit
log (docs/envelope.md). Used by the partner kit and the hub alike. No Dagster imports.
"""
