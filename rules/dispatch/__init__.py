"""Dispatch: on-call rosters, automatic assignment, SLA timers and escalation, notifications
and preventive maintenance, run inside the rules service."""
