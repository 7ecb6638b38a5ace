"""Rules engine: rule evaluation, alarms (ISA-18.2 lifecycle) and work orders opened from
documented procedures."""
