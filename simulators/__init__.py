"""Device simulators: plausible device models (pure logic driven by a `now` in seconds),
Modbus TCP and BACnet/IP servers that serve the models' points laid out by the same profiles
the gateway reads, and a scenario runner that injects timed faults. `run_simulators` in
`simulators.runner` is the entry point the CLI calls."""
