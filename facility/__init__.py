"""Shared kernel of the facility platform: site model, MQTT contract, configuration,
database schema and the process runner. Model and schema modules here do no I/O."""
