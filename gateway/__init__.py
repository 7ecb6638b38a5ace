"""The edge gateway: polls the Modbus TCP and BACnet/IP devices of one gateway and publishes
their values per the MQTT v1 contract. Entry point: ``gateway.service.run_gateway``."""
