-- What a device last said of a point's own state beside its quality (telemetry's optional
-- `flags`: BACnet status flags and reliability, "fault,open-loop"); NULL when its latest
-- message said nothing. Kept for the latest value only: the telemetry history has no flags.
ALTER TABLE latest_values ADD COLUMN flags text;
