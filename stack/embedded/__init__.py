"""Embedded infrastructure for the one-command demo and the tests: a private PostgreSQL
server and a mosquitto broker (with a private CA for its TLS listener), started as child
processes on loopback and stopped by pid."""
