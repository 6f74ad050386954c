"""Placeholder until the mosquitto fixture plugin lands."""
