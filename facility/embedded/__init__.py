"""Embedded infrastructure for the one-command demo and the tests: a private PostgreSQL
server and an MQTT broker (mosquitto when installed, else amqtt), started as child
processes on loopback and stopped by pid."""
